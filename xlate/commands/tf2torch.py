"""``xlate tf2torch MODEL -o OUTDIR``: a Keras model (.keras, .h5, SavedModel) to a PyTorch folder.

OUTDIR gets ``model.py`` (readable source of an ``nn.Module``) and the weights. As with torch2tf,
the parity gate runs on the converted module and again on the folder reloaded from its temporary
path; a failure exits 1 and leaves nothing behind.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import click

from ._common import (
    Steps,
    conversion_options,
    convert_reporting,
    gate_and_write,
    human_size,
    say_result,
)
from ._errors import handles_errors


def convert_and_save(loaded, output: Path, *, force=False, check=True, atol=1e-5, rtol=1e-4, via="auto",
                     io_layout="source", steps: Steps | None = None, floor_factor: float | None = 3.0):
    """Convert a loaded Keras model, gate it, write the folder atomically and gate the written folder.

    Returns (module, report of the written folder or None with check=False, conversion path).
    Raises ``ParityFailed`` (nothing written) when either gate fails.
    """
    import xlate

    from ..load import load_torch_package
    from ..save import save_torch

    steps = steps or Steps()
    with steps.step("converting"):
        module = xlate.keras_to_torch(loaded.model, io_layout=io_layout, via=via, check=False)
    report, path_used = gate_and_write(
        loaded.model, module, output, write=functools.partial(save_torch, force=force), reload=load_torch_package,
        converted_what="the converted PyTorch module", written_what="the written PyTorch folder", check=check,
        atol=atol, rtol=rtol, steps=steps, floor_factor=floor_factor)
    return module, report, path_used


@click.command("tf2torch")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Folder to write model.py and the weights to.")
@click.option("--trust", is_flag=True, help="Allow Keras files with Lambda layers (they run code).")
@conversion_options
@handles_errors
def tf2torch(model, output, trust, force, no_check, atol, rtol, floor_factor, via, io_layout, json_path, quiet,
             report_path):
    """Convert a Keras MODEL (.keras, .h5, or a SavedModel written by xlate) to PyTorch, with proof.

    Writes OUTPUT/model.py (the module's source) and its weights.
    """
    from ..load import load_keras
    from ..save import check_destination, check_torch_folder

    start = time.perf_counter()
    check_destination(check_torch_folder(output), force=force)
    steps = Steps(quiet=quiet or str(json_path) == "-")
    with steps.step("loading"):
        loaded = load_keras(model, trust=trust, architecture=True)
    steps.for_model(loaded.model)
    via_note = convert_reporting(convert_and_save, loaded, output, model=model, label="PyTorch", json_path=json_path,
                                 report_path=report_path, quiet=quiet, force=force, check=not no_check, atol=atol,
                                 rtol=rtol, floor_factor=floor_factor, via=via, io_layout=io_layout, steps=steps)
    say_result(f"wrote {output}/ ({', '.join(sorted(p.name for p in output.iterdir()))}; {human_size(output)})"
               f"{via_note} in {time.perf_counter() - start:.1f} s", json_path)
