"""``xlate check SOURCE TARGET``: does a converted model compute the same numbers as its source?

Exit 0 when parity holds, 1 when it fails, 2 on bad input. Prints the report as a table and,
with ``--json``, writes it for CI. The library side is ``xlate.testing.compare_models``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import (
    Steps,
    json_to_stdout,
    model_options,
    print_report,
    say_result,
    tolerance_options,
    torch_options,
    write_json_report,
)
from ._errors import handles_errors


@click.command("check")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--inputs", "inputs_path", type=click.Path(path_type=Path), metavar="DATA.npz",
              help="Inputs to compare on (.npz with one array per model input, in order, source layout). "
                   "Default: seeded random inputs from the models' signatures.")
@tolerance_options
@click.option("--samples", type=click.IntRange(1), default=4, show_default=True,
              help="How many seeded random batches (ignored with --inputs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the PyTorch side runs (TF32 off on both sides).")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True,
              help="Precision both sides run in; tolerances are raised to fit it.")
@click.option("--io-layout", type=click.Choice(["source", "native"]), default="source", show_default=True,
              help="How TARGET was converted: source (drop-in, the default of torch2tf/tf2torch) or native "
                   "(channels-last on the Keras side, channels-first on the PyTorch side).")
@click.option("--per-layer", is_flag=True,
              help="Also compare layer by layer and name the first layer whose output departs.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), metavar="REPORT.html|png",
              help="Write a picture of the error along the network (implies --per-layer).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="REPORT.json|-",
              help="Write the report as JSON (passed, max_abs_err, max_rel_err, per_output with each output's "
                   "rule, floor and target_vs_ref64, tolerance, reference, device, versions); '-' prints it to "
                   "stdout instead of anything else.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the one-line verdict.")
@model_options
@handles_errors
def check(source, target, inputs_path, atol, rtol, floor_factor, samples, seed, device, dtype, io_layout, per_layer,
          report_path, json_path, quiet, model_class, input_shapes, input_dtypes, trust, **options):
    """Compare SOURCE with TARGET (one PyTorch, one Keras/TF model) on the same inputs.

    Exit 0 when every output matches within atol + rtol * |expected| (or, for a deep model, within
    --floor-factor x the source's own float32 rounding of its float64 result), 1 when parity
    fails, 2 on bad input. Reads every format `xlate torch2tf`/`tf2torch` read and write, including
    SavedModel folders and .tflite (run as they would be deployed).
    """
    from ..testing import compare_models

    quiet = quiet or json_to_stdout(json_path)
    steps = Steps(quiet=quiet)
    with steps.step("checking"):
        report = compare_models(source, target, inputs_path, atol=atol, rtol=rtol, floor_factor=floor_factor,
                                samples=samples, seed=seed,
                                device=device, dtype=dtype, io_layout=io_layout, model_class=model_class,
                                input_shapes=input_shapes,
                                input_dtypes=input_dtypes, trust=trust, per_layer=per_layer or bool(report_path),
                                torch_options=torch_options(options))
    if quiet:
        say_result(f"{'PASS' if report.passed else 'FAIL'} {source} vs {target}: max abs err "
                   f"{report.max_abs_err:.3g}", json_path)
    else:
        print_report(report, f"{source} vs {target}")
    write_json_report(report, json_path, source=source, target=target)
    if json_path and not quiet:
        click.echo(f"report written to {json_path}")
    if report_path:
        from ..report import write_report

        written = write_report(report, report_path)
        if not quiet:
            click.echo(f"picture written to {written}")
    sys.exit(0 if report.passed else 1)
