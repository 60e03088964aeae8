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
import threading
import time
from pathlib import Path

import click

LARGE_MODEL_PARAMS = 1_000_000  # from about here, loading/converting/checking takes seconds


def model_options(fn):
    """How to build and feed a torch model: --model-class/--model-args/--weights for a class or factory,
    --hf-class/--output-key/--seq-len for a Hugging Face folder, --input-shape/--input-dtype, --trust."""
    fn = click.option("--trust", is_flag=True,
                      help="Allow loading a whole pickled model (runs code from the file) or a Keras file with "
                           "Lambda layers. Only for files whose source you trust.")(fn)
    fn = click.option("--input-dtype", "input_dtypes", multiple=True, metavar="DTYPE",
                      help="dtype of each --input-shape (one for all, or one per shape). Default float32.")(fn)
    fn = click.option("--input-shape", "input_shapes", multiple=True, metavar="N,C,H,W",
                      help="Example input shape, batch first (repeat for several inputs); ? or -1 marks a size "
                           "that must stay dynamic, e.g. 1,3,?,?.")(fn)
    fn = click.option("--seq-len", type=click.IntRange(1), metavar="N",
                      help="Hugging Face folder: length of the example token ids (default 16, at most "
                           "max_position_embeddings).")(fn)
    fn = click.option("--output-key", metavar="NAME",
                      help="Hugging Face folder: which output to convert (logits, last_hidden_state, "
                           "pooler_output...); default: the head's main output.")(fn)
    fn = click.option("--hf-class", metavar="CLASS",
                      help="Hugging Face folder: the class to build, e.g. AutoModelForSequenceClassification "
                           "(default: config.architectures).")(fn)
    fn = click.option("--weights", type=click.Path(path_type=Path), metavar="FILE",
                      help="State_dict (.safetensors, .pth) to load into the --model-class model (default: the "
                           "factory's own initialization).")(fn)
    fn = click.option("--model-args", metavar="JSON",
                      help="Arguments for --model-class: a JSON object (keywords), e.g. '{\"num_classes\": 10}', "
                           "or a list (positional), e.g. '[\"resnet50\"]'.")(fn)
    fn = click.option("--model-class", metavar="MODULE:CALLABLE",
                      help="Class or factory function that builds the model (importable from the current folder, "
                           "or path/to/file.py:Net); timm:NAME is timm.create_model(NAME). Nothing is "
                           "downloaded.")(fn)
    return fn


TORCH_OPTION_NAMES = ("model_args", "weights", "hf_class", "output_key", "seq_len")


def torch_options(options: dict) -> dict:
    """The load_torch options of ``model_options`` beyond --model-class/--input-shape/--input-dtype/--trust."""
    return {k: options[k] for k in TORCH_OPTION_NAMES if options.get(k) is not None}


def dynamic_options(fn):
    """--static: every input size fixed at the example's (default: each one the model accepts at
    other values stays dynamic)."""
    return click.option("--static", is_flag=True,
                        help="Fix every input size at the example's. Default: every size the model accepts at "
                             "other values (batch, sequence length, height, width...) stays dynamic.")(fn)


def tolerance_options(fn):
    fn = click.option("--floor-factor", type=click.FloatRange(min=0), default=3.0, show_default=True,
                      help="Outputs outside atol/rtol still pass when the target is within this many times the "
                           "source's own float32 rounding of a float64 run of the source (deep networks); "
                           "0: atol/rtol alone.")(fn)
    fn = click.option("--rtol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
                      help="Relative tolerance.")(fn)
    fn = click.option("--atol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
                      help="Absolute tolerance.")(fn)
    return fn


def conversion_options(fn):
    fn = click.option("--report", "report_path", type=click.Path(path_type=Path), metavar="REPORT.html|png",
                      help="Write a picture of the parity error along the network (per layer when the gate "
                           "fails).")(fn)
    fn = click.option("--quiet", "-q", is_flag=True,
                      help="Print nothing but the result (the closing line); errors still go to stderr.")(fn)
    fn = click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="REPORT.json|-",
                      help="Also write the parity report as JSON; '-' prints it to stdout instead of anything "
                           "else.")(fn)
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


SHOW_AFTER_S = 2.0  # a stage that takes longer than this shows its progress


def progress_mode(quiet: bool = False) -> str:
    """"quiet" (--quiet, --json -), "rich" (stderr is a terminal, not CI) or "plain" (log lines)."""
    if quiet:
        return "quiet"
    if os.environ.get("CI", "").strip().lower() in ("true", "1") or not stderr_console().is_terminal:
        return "plain"
    return "rich"


class Steps:
    """Progress for runs that take seconds, on stderr (stdout keeps only the result).

    A stage that runs longer than ``SHOW_AFTER_S`` shows itself: on a terminal a rich display (the
    stage, layers done of total when the library reports them, time so far) that disappears when
    the stage ends; in a log (no terminal, or ``CI=true``) plain lines. A large model
    (``LARGE_MODEL_PARAMS``) or ``XLATE_PROGRESS=1`` shows every stage from its start. ``quiet``
    shows nothing.
    """

    def __init__(self, show: bool = False, quiet: bool = False):
        self.console = stderr_console()
        self.mode = progress_mode(quiet)
        self.show = self.mode != "quiet" and (show or os.environ.get("XLATE_PROGRESS") == "1")

    def for_model(self, model) -> Steps:
        n = parameter_count(model)
        if n >= LARGE_MODEL_PARAMS and self.mode != "quiet":
            self.show = True
        if self.show:
            self.console.print(f"[dim]model: {n:,} parameters[/dim]")
        return self

    @contextlib.contextmanager
    def step(self, text: str):
        from .. import progress

        if self.mode == "quiet":
            yield
            return
        view = _RichStage(self.console, text) if self.mode == "rich" else _PlainStage(self.console, text)
        timer = threading.Timer(SHOW_AFTER_S, view.start)
        timer.daemon = True
        if self.show:
            view.start()
        else:
            timer.start()
        failed = True
        try:
            with progress.listening(view.update):
                yield
            failed = False
        finally:
            timer.cancel()
            view.stop(failed=failed)  # a stage that raised is not "done": its error line follows


class _PlainStage:
    """Log lines: "stage..." once it has run a while, a line at each quarter of its layers, the end."""

    def __init__(self, console, text: str):
        self.console, self.text = console, text
        self.begin = time.perf_counter()
        self.started = False
        self.lock = threading.Lock()
        self.quarter = 0
        self.counts = None

    def start(self) -> None:
        with self.lock:
            if not self.started:
                self.started = True
                self.console.print(f"{self.text}...")

    def update(self, done: int, total: int, what: str) -> None:
        self.counts = (done, total, what)
        quarter = 4 * done // total if total else 0
        if self.started and 0 < quarter < 4 and quarter > self.quarter:
            self.quarter = quarter
            self.console.print(f"{self.text}: {done}/{total} {what}")

    def stop(self, failed: bool = False) -> None:
        with self.lock:
            if not self.started or failed:
                return
        counts = f" ({self.counts[1]} {self.counts[2]})" if self.counts else ""
        self.console.print(f"[dim]{self.text}: done in {time.perf_counter() - self.begin:.1f} s{counts}[/dim]")


class _RichStage:
    """A transient rich progress display (spinner, stage, bar, layers done of total, elapsed time)."""

    def __init__(self, console, text: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.text = text
        self.begin = time.perf_counter()
        self.display = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[what]}"), TimeElapsedColumn(), console=console,
                                transient=True)
        self.task = self.display.add_task(text, total=None, what="")
        self.lock = threading.Lock()
        self.started = self.stopped = False

    def start(self) -> None:
        with self.lock:
            if not (self.started or self.stopped):
                self.started = True
                self.display.start()

    def update(self, done: int, total: int, what: str) -> None:
        self.display.update(self.task, completed=done, total=total, what=what)

    def stop(self, failed: bool = False) -> None:
        with self.lock:
            self.stopped = True
            if not self.started:
                return
            self.display.stop()
        if failed:
            return
        self.display.console.print(f"[dim]{self.text}: done in {time.perf_counter() - self.begin:.1f} s[/dim]")


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
    from xlate.parity_report import json_default

    text = json.dumps(_finite(json.loads(json.dumps(data, default=json_default))), indent=2, allow_nan=False)
    if json_to_stdout(path):
        click.echo(text)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def json_to_stdout(path) -> bool:
    """``--json -``: the JSON report is the command's only output on stdout."""
    return path is not None and str(path) == "-"


def say_result(line: str, json_path=None) -> None:
    """The closing line of a command (the result), unless stdout carries the JSON report."""
    if not json_to_stdout(json_path):
        click.echo(line)


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
                   check: bool, atol: float, rtol: float, steps: Steps, floor_factor: float | None = 3.0):
    """Gate the converted model, write it atomically, and gate what was written before it is renamed into place.

    ``write(model, output, verify=...)`` is ``save_keras``/``save_torch``; ``reload(tmp)`` loads the
    written artifact as a user would. Returns (report of the written artifact or None with
    ``check=False``, conversion path). Raises ``ParityFailed`` (nothing written) when a gate fails.
    """
    from ..parity_shapes import check_parity_shapes
    from ..record import record_of

    record = record_of(converted)
    path_used = record.path if record else None
    final = []
    verify = None
    if check:
        gate_converted(source, converted, atol=atol, rtol=rtol, path=path_used, what=converted_what, steps=steps,
                       floor_factor=floor_factor)

        def verify(tmp: Path) -> None:
            with steps.step(f"checking {written_what}"):
                reloaded = reload(tmp)
                spec = getattr(converted, "_xlate_io", None)
                if spec is not None:  # the same inputs, in the same layout, as the converted model
                    object.__setattr__(reloaded, "_xlate_io", spec)
                report = check_parity_shapes(source, reloaded, atol=atol, rtol=rtol, path=path_used,
                                             floor_factor=floor_factor, **gate_options(source, reloaded))
            if not report.passed:
                raise ParityFailed(report, written_what)
            final.append(report)

    with steps.step(f"writing {output}"):
        write(converted, output, verify=verify)
    return (final[0] if final else None), path_used


def gate_options(source, target) -> dict:
    """The gate's samples (fewer for a large model) and precision (the models' own bfloat16/float16)."""
    from ..convert import gate_dtype, gate_samples

    return {"samples": gate_samples(source), "dtype": gate_dtype(source, target)}


def gate_converted(source, converted, *, atol, rtol, path, what: str, steps: Steps, floor_factor=3.0):
    """The parity gate on a freshly converted model; on failure, rerun per layer and raise ``ParityFailed``.

    The per-layer rerun goes through the conversion record, so the report says where the
    divergence starts, not just that there is one.
    """
    from ..parity import check_parity
    from ..parity_shapes import check_parity_shapes

    options = gate_options(source, converted)
    with steps.step(f"checking parity of {what}"):
        report = check_parity_shapes(source, converted, atol=atol, rtol=rtol, path=path, floor_factor=floor_factor,
                                     **options)
    if not report.passed:
        # per layer at the example's shape; a failure only at other sizes keeps the report that shows it
        layers = check_parity(source, converted, atol=atol, rtol=rtol, path=path, per_layer=True,
                              floor_factor=floor_factor, **options)
        raise ParityFailed(layers if not layers.passed else report, what)
    return report


def convert_reporting(convert_and_save, loaded, output: Path, *, model, label: str, json_path, report_path,
                      quiet: bool = False, **options) -> str:
    """Run a command's ``convert_and_save`` and report: the table, the JSON and the picture.

    ``quiet`` (or ``--json -``) leaves out the table. A failed gate exits 1 (through
    ``fail_parity``). Returns " via the X path" for the closing line.
    """
    files = {"source": model, "target": output}
    quiet = quiet or json_to_stdout(json_path)
    try:
        _, report, path_used = convert_and_save(loaded, output, **options)
    except ParityFailed as e:
        write_picture(e.report, report_path)
        fail_parity(e.report, json_path, f"{model} -> {e.what}: parity FAILED", quiet=quiet, **files)
    if report is not None:
        if not quiet:
            print_report(report, f"{model} -> {output} ({label})")
        write_json_report(report, json_path, **files)
        write_picture(report, report_path)
    elif not quiet:
        click.echo("parity check skipped (--no-check)")
    return f" via the {path_used} path" if path_used else ""


def fail_parity(report, json_path, title: str, *, quiet: bool = False, **files) -> None:
    """Print the failed report (unless quiet), write the JSON, and exit 1."""
    if not (quiet or json_to_stdout(json_path)):
        print_report(report, title)
    write_json_report(report, json_path, **files)
    if hasattr(report, "failure_message"):  # a quantization report: its own metrics and thresholds
        message, hint = report.failure_message()
    else:
        failing = next((o for o in report.per_output if not o.passed), None)
        why = (f"{failing.name} {failing.reason}" if failing is not None and failing.floor is not None else
               f"max abs err {report.max_abs_err:.3g} > atol {report.atol:g} (rtol {report.rtol:g})")
        message = f"parity check failed: {why}"
        hint = ("`xlate check` on the models with --json shows every output; loosen --atol/--rtol only if the "
                "difference is expected")
    click.echo(f"error: {message}; nothing was written", err=True)
    click.echo(f"hint: {hint}", err=True)
    sys.exit(1)


def human_size(path: Path) -> str:
    path = Path(path)
    n = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
