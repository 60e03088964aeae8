"""What the xlate commands share: options, progress lines, report output, the parity gate.

Only click and the standard library are imported at module level, so that ``xlate --help``
stays fast; everything heavy is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import click

LARGE_MODEL_PARAMS = 1_000_000  # from about here, loading/converting/checking takes seconds


def model_options(fn):
    """--model-class, --input-shape, --input-dtype, --trust: how to rebuild and feed a torch model."""
    fn = click.option("--trust", is_flag=True,
                      help="Allow loading a whole pickled model (runs code from the file) or a Keras file with "
                           "Lambda layers. Only for files whose source you trust.")(fn)
    fn = click.option("--input-dtype", "input_dtypes", multiple=True, metavar="DTYPE",
                      help="dtype of each --input-shape (one for all, or one per shape). Default float32.")(fn)
    fn = click.option("--input-shape", "input_shapes", multiple=True, metavar="N,C,H,W",
                      help="Example input shape, batch first (repeat for several inputs).")(fn)
    fn = click.option("--model-class", metavar="MODULE:CLASS",
                      help="Class to rebuild a state_dict into (importable from the current folder, or "
                           "path/to/file.py:Class); constructed without arguments.")(fn)
    return fn


def tolerance_options(fn):
    fn = click.option("--rtol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
                      help="Relative tolerance.")(fn)
    fn = click.option("--atol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
                      help="Absolute tolerance.")(fn)
    return fn


def conversion_options(fn):
    fn = click.option("--report", "report_path", type=click.Path(path_type=Path), metavar="REPORT.html|png",
                      help="Write a picture of the parity error along the network (per layer when the gate "
                           "fails).")(fn)
    fn = click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="REPORT.json",
                      help="Also write the parity report as JSON.")(fn)
    fn = click.option("--io-layout", type=click.Choice(["source", "native"]), default="source", show_default=True,
                      help="source: the converted model takes the source's layout (drop-in); native: the target "
                           "framework's own layout (NHWC in Keras, NCHW in PyTorch).")(fn)
    fn = click.option("--via", type=click.Choice(["auto", "direct", "onnx"]), default="auto", show_default=True,
                      help="Conversion path: direct, through ONNX, or direct with ONNX as fallback.")(fn)
    fn = tolerance_options(fn)
    fn = click.option("--no-check", is_flag=True, help="Skip the parity gate (not recommended).")(fn)
    fn = click.option("--force", is_flag=True, help="Replace the output if it exists.")(fn)
    return fn


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def parameter_count(model) -> int:
    try:
        if hasattr(model, "parameters") and callable(model.parameters):
            return int(sum(p.numel() for p in model.parameters()))
        return int(model.count_params())
    except Exception:  # noqa: BLE001 - unbuilt Keras models, inference wrappers: no count
        return 0


class Steps:
    """Progress for runs that take seconds: a spinner on a terminal, one line per step in a log.

    Shown when the model is large (``LARGE_MODEL_PARAMS``) or ``XLATE_PROGRESS=1``; small models
    finish before a spinner would be seen and keep the output clean.
    """

    def __init__(self, show: bool = False):
        self.console = stderr_console()
        self.show = show or os.environ.get("XLATE_PROGRESS") == "1"

    def for_model(self, model) -> Steps:
        n = parameter_count(model)
        if n >= LARGE_MODEL_PARAMS:
            self.show = True
        if self.show:
            self.console.print(f"[dim]model: {n:,} parameters[/dim]")
        return self

    @contextlib.contextmanager
    def step(self, text: str):
        start = time.perf_counter()
        if not self.show:
            yield
            return
        if self.console.is_terminal:
            with self.console.status(f"{text}..."):
                yield
        else:
            self.console.print(f"{text}...")
            yield
        self.console.print(f"[dim]{text}: done in {time.perf_counter() - start:.1f} s[/dim]")


def print_report(report, title: str | None = None) -> None:
    console = stdout_console()
    if getattr(report, "cli_width", None) and not console.is_terminal:  # wide per-step tables stay readable in logs
        console.width = max(console.width, report.cli_width)
    if title:
        console.print(f"[bold]{title}[/bold]")
    report.render(console)


def write_json_report(report, path: Path | None, **extra) -> None:
    """Write the parity report as JSON (fields: passed, max_abs_err, max_rel_err, per_output,
    tolerance, device, versions, ...), with the files compared under ``files``."""
    if path is None:
        return
    data = report.to_dict()
    if extra:
        data["files"] = {k: str(v) for k, v in extra.items()}
    from xlate.parity import _json_default

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    text = json.dumps(_finite(json.loads(json.dumps(data, default=_json_default))), indent=2, allow_nan=False)
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def write_picture(report, path: Path | None) -> None:
    """The HTML/PNG picture of the report (xlate.report), when asked for."""
    if path is None:
        return
    from xlate.report import write_report

    click.echo(f"picture written to {write_report(report, path)}", err=True)


def _finite(value):
    """Strict JSON has no Infinity/NaN (an output of the wrong shape has an infinite error): write
    them as the strings "inf", "-inf", "nan" so every JSON reader accepts the report."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class ParityFailed(Exception):
    """The written artifact failed its parity check; carries the report (the command exits 1)."""

    def __init__(self, report, what: str = "the converted model"):
        super().__init__(f"parity check of {what} failed")
        self.report = report
        self.what = what


def gate_and_write(source, converted, output: Path, *, write, reload, converted_what: str, written_what: str,
                   check: bool, atol: float, rtol: float, steps: Steps):
    """Gate the converted model, write it atomically, and gate what was written before it is renamed into place.

    ``write(model, output, verify=...)`` is ``save_keras``/``save_torch``; ``reload(tmp)`` loads the
    written artifact as a user would. Returns (report of the written artifact or None with
    ``check=False``, conversion path). Raises ``ParityFailed`` (nothing written) when a gate fails.
    """
    from ..parity import check_parity
    from ..record import record_of

    record = record_of(converted)
    path_used = record.path if record else None
    final = []
    verify = None
    if check:
        gate_converted(source, converted, atol=atol, rtol=rtol, path=path_used, what=converted_what, steps=steps)

        def verify(tmp: Path) -> None:
            with steps.step(f"checking {written_what}"):
                reloaded = reload(tmp)
                spec = getattr(converted, "_xlate_io", None)
                if spec is not None:  # the same inputs, in the same layout, as the converted model
                    object.__setattr__(reloaded, "_xlate_io", spec)
                report = check_parity(source, reloaded, atol=atol, rtol=rtol, path=path_used)
            if not report.passed:
                raise ParityFailed(report, written_what)
            final.append(report)

    with steps.step(f"writing {output}"):
        write(converted, output, verify=verify)
    return (final[0] if final else None), path_used


def gate_converted(source, converted, *, atol, rtol, path, what: str, steps: Steps):
    """The parity gate on a freshly converted model; on failure, rerun per layer and raise ``ParityFailed``.

    The per-layer rerun goes through the conversion record, so the report says where the
    divergence starts, not just that there is one.
    """
    from ..parity import check_parity

    with steps.step(f"checking parity of {what}"):
        report = check_parity(source, converted, atol=atol, rtol=rtol, path=path)
    if not report.passed:
        report = check_parity(source, converted, atol=atol, rtol=rtol, path=path, per_layer=True)
        raise ParityFailed(report, what)
    return report


def convert_reporting(convert_and_save, loaded, output: Path, *, model, label: str, json_path, report_path,
                      **options) -> str:
    """Run a command's ``convert_and_save`` and report: the table, the JSON and the picture.

    A failed gate exits 1 (through ``fail_parity``). Returns " via the X path" for the closing line.
    """
    files = {"source": model, "target": output}
    try:
        _, report, path_used = convert_and_save(loaded, output, **options)
    except ParityFailed as e:
        write_picture(e.report, report_path)
        fail_parity(e.report, json_path, f"{model} -> {e.what}: parity FAILED", **files)
    if report is not None:
        print_report(report, f"{model} -> {output} ({label})")
        write_json_report(report, json_path, **files)
        write_picture(report, report_path)
    else:
        click.echo("parity check skipped (--no-check)")
    return f" via the {path_used} path" if path_used else ""


def fail_parity(report, json_path, title: str, **files) -> None:
    """Print the failed report, write the JSON, and exit 1."""
    print_report(report, title)
    write_json_report(report, json_path, **files)
    click.echo(f"error: parity check failed: max abs err {report.max_abs_err:.3g} > atol {report.atol:g} "
               f"(rtol {report.rtol:g}); nothing was written", err=True)
    click.echo("hint: `xlate check` on the models with --json shows every output; loosen --atol/--rtol only "
               "if the difference is expected", err=True)
    sys.exit(1)


def human_size(path: Path) -> str:
    path = Path(path)
    n = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
