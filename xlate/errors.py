"""Exceptions raised by xlate. The CLI maps each family to an exit code."""

from __future__ import annotations


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed), cut at ``limit`` characters with "..."."""
    text = " ".join(str(error).split())
    return text[:limit] + ("..." if len(text) > limit else "")


class XlateError(Exception):
    """Base class for every error xlate raises on purpose."""

    exit_code = 2
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class BadInputError(XlateError):
    """A file, argument or tensor that cannot be used as given (exit code 2)."""

    exit_code = 2


class DamagedFileError(BadInputError):
    """A model or data file whose bytes cannot be what its writer wrote: cut short, overwritten, sizes
    that do not fit in the file, or a read that does not finish (exit code 2)."""

    exit_code = 2
    hint = "the file was damaged while copying, downloading or saving; write it again from the source model"


class UnsupportedOpError(XlateError):
    """The model uses ops no table row covers. Lists every one of them at once (exit code 3)."""

    exit_code = 3

    def __init__(self, unsupported: list[tuple[str, str]], *, direction: str, hint: str | None = None):
        # unsupported: (op or layer name, where it occurs) pairs, in graph order, deduplicated
        self.unsupported = list(dict.fromkeys(unsupported))
        self.direction = direction
        ops = sorted({op for op, _ in self.unsupported})
        where = "; ".join(f"{op} at {loc}" for op, loc in self.unsupported)
        super().__init__(
            f"{len(ops)} unsupported op(s) for {direction}: {', '.join(ops)} ({where})",
            hint=hint or "run `xlate inspect MODEL` for the coverage of every layer; via='onnx' may still convert it",
        )


class ConverterFailure(UnsupportedOpError):
    """A converter failed on one op of the model: an xlate bug, not a gap in the table. Reported
    like an unsupported op (exit code 3), naming the op, its module path and the cause, so that
    the failure is one line and the ONNX fallback can still be tried."""

    def __init__(self, op: str, where: str, cause: BaseException, *, direction: str):
        self.cause = f"{type(cause).__name__}: {one_line(cause, 160)}"
        super().__init__([(f"{op} (converter failed: {self.cause})", where)], direction=direction,
                         hint="this is a bug in xlate; please report it with the model; via='onnx' may still convert it")


class ParityError(XlateError):
    """The converted model does not compute the same numbers as the source (exit code 1)."""

    exit_code = 1

    def __init__(self, report, message: str | None = None):
        self.report = report
        super().__init__(message or f"parity check failed:\n{report}")


class TableError(XlateError):
    """A mapping-table row is malformed (names an unknown transform, duplicates an id...)."""

    exit_code = 2
