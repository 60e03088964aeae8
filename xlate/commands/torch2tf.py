"""``xlate torch2tf MODEL -o OUT``: a PyTorch model file to Keras (.keras), a SavedModel or TFLite.

The parity gate runs twice by default: on the converted Keras model, then on the written file
itself (reloaded from its temporary path), so what lands on disk is what was checked. A failed
gate exits 1 with the report and leaves nothing behind.
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
    model_options,
)
from ._errors import handles_errors


def convert_and_save(loaded, output: Path, *, force=False, check=True, atol=1e-5, rtol=1e-4, via="auto",
                     io_layout="source", steps: Steps | None = None):
    """Convert a loaded torch model, gate it, write it atomically and gate the written file.

    Returns (keras_model, report of the written file or None with check=False, conversion path).
    Raises ``ParityFailed`` (nothing written) when either gate fails.
    """
    import xlate

    from ..load import load_keras, traceable_module
    from ..save import keras_output_kind, save_keras

    steps = steps or Steps()
    kind = keras_output_kind(output)
    with steps.step("converting"):
        keras_model = xlate.torch_to_keras(traceable_module(loaded), loaded.example_inputs, io_layout=io_layout,
                                           via=via, check=False)
    report, path_used = gate_and_write(
        loaded.model, keras_model, output, write=functools.partial(save_keras, force=force),
        # as it will run: the SavedModel graph, the TFLite interpreter
        reload=lambda tmp: load_keras(tmp).model,
        converted_what="the converted Keras model", written_what=f"the written {kind} file", check=check,
        atol=atol, rtol=rtol, steps=steps)
    return keras_model, report, path_used


@click.command("torch2tf")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="name.keras, name.tflite, or a SavedModel folder (no extension).")
@model_options
@conversion_options
@click.option("--onnx2tf", "onnx2tf_path", type=click.Path(path_type=Path), metavar="PATH",
              help="The onnx2tf executable for the ONNX path (default: $XLATE_ONNX2TF, PATH, .venv-onnx2tf).")
@handles_errors
def torch2tf(model, output, model_class, input_shapes, input_dtypes, trust, force, no_check, atol, rtol, via,
             io_layout, json_path, report_path, onnx2tf_path):
    """Convert a PyTorch MODEL to Keras / TensorFlow and prove it computes the same numbers.

    MODEL: a torch.export program (.pt2), a TorchScript archive, a state_dict (.pth/.pt/.safetensors)
    with --model-class and --input-shape, or (with --trust) a whole pickled model. The output format
    follows -o: name.keras, name.tflite, or a SavedModel folder (no extension).
    """
    from ..errors import BadInputError
    from ..load import load_torch
    from ..save import check_destination, keras_output_kind

    start = time.perf_counter()
    kind = keras_output_kind(output)
    check_destination(output, force=force)
    if onnx2tf_path is not None:
        from ..onnx_tools import use_onnx2tf

        use_onnx2tf(onnx2tf_path)
    steps = Steps()
    with steps.step("loading"):
        loaded = load_torch(model, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                            trust=trust)
    if loaded.example_inputs is None:
        raise BadInputError(f"{model} does not say what inputs the model takes ({loaded.format})",
                            hint="add --input-shape, batch first, once per input, e.g. --input-shape 1,3,224,224")
    steps.for_model(loaded.model)
    via_note = convert_reporting(convert_and_save, loaded, output, model=model, label=kind, json_path=json_path,
                                 report_path=report_path, force=force, check=not no_check, atol=atol, rtol=rtol,
                                 via=via, io_layout=io_layout, steps=steps)
    click.echo(f"wrote {output} ({kind}, {human_size(output)}){via_note} in {time.perf_counter() - start:.1f} s")
