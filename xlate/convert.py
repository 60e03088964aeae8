"""The two conversion entry points: pick the path (direct or ONNX), run it, gate on parity."""

from __future__ import annotations

import time

from .errors import BadInputError, ParityError, UnsupportedOpError, XlateError
from .record import record_of

VIA = ("auto", "direct", "onnx")
IO_LAYOUTS = ("source", "native")


def _check_args(via: str, io_layout: str) -> None:
    if via not in VIA:
        raise BadInputError(f"via must be one of {', '.join(VIA)}, got {via!r}")
    if io_layout not in IO_LAYOUTS:
        raise BadInputError(f"io_layout must be 'source' or 'native', got {io_layout!r}")


def _run_paths(direct, onnx, via: str):
    """Try the direct path, falling back to ONNX under via='auto'. Returns (result, note)."""
    if via == "onnx":
        return onnx(), "via='onnx' was asked for"
    try:
        return direct(), "direct path"
    except UnsupportedOpError as e:
        if via == "direct":
            raise
        direct_error = e
    try:
        return onnx(), f"direct path cannot convert it ({direct_error}); fell back to ONNX"
    except XlateError as onnx_error:
        raise UnsupportedOpError(direct_error.unsupported, direction=direct_error.direction,
                                 hint=f"the ONNX fallback failed too: {onnx_error}") from onnx_error


def _gate(source, target, *, check: bool, atol: float, rtol: float, floor_factor, inputs=None):
    record = record_of(target)
    if not check:
        return
    from .parity import check_parity

    report = check_parity(source, target, inputs, atol=atol, rtol=rtol, path=record.path if record else None,
                          floor_factor=floor_factor)
    if not report.passed:
        raise ParityError(report)
    if record is not None:
        how = "; ".join(f"{o.name} {o.reason}" for o in report.per_output if o.rule == "floor")
        record.notes.append(f"parity: max abs err {report.max_abs_err:.3g} on {report.samples} sample(s)"
                            + (f" ({how})" if how else ""))


def _convert(source, direct, onnx, *, via: str, check: bool, atol: float, rtol: float, floor_factor):
    """Run the chosen path, note which one and how long it took, then the parity gate."""
    start = time.perf_counter()
    target, note = _run_paths(direct, onnx, via)
    record = record_of(target)
    if record is not None:
        record.seconds = time.perf_counter() - start
        record.notes.append(note)
    _gate(source, target, check=check, atol=atol, rtol=rtol, floor_factor=floor_factor)
    return target


def torch_to_keras(module, example_inputs, *, io_layout="source", via="auto", check=True, atol=1e-5, rtol=1e-4,
                   floor_factor=3.0):
    _check_args(via, io_layout)
    from . import onnx_path
    from .torch2keras import convert as direct

    return _convert(module,
                    lambda: direct.torch_to_keras(module, example_inputs, io_layout=io_layout),
                    lambda: onnx_path.torch_to_keras(module, example_inputs, io_layout=io_layout),
                    via=via, check=check, atol=atol, rtol=rtol, floor_factor=floor_factor)


def keras_to_torch(model, *, example_inputs=None, io_layout="source", via="auto", check=True, atol=1e-5, rtol=1e-4,
                   floor_factor=3.0):
    _check_args(via, io_layout)
    from . import onnx_path
    from .keras2torch import convert as direct

    return _convert(model,
                    lambda: direct.keras_to_torch(model, example_inputs=example_inputs, io_layout=io_layout),
                    lambda: onnx_path.keras_to_torch(model, example_inputs=example_inputs, io_layout=io_layout),
                    via=via, check=check, atol=atol, rtol=rtol, floor_factor=floor_factor)
