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

from ..cli import handles_errors
from ._common import (
    Steps,
    conversion_options,
    convert_reporting,
    dynamic_options,
    gate_and_write,
    human_size,
    model_options,
)


def convert_and_save(loaded, output: Path, *, force=False, check=True, atol=1e-5, rtol=1e-4, via="auto",
                     io_layout="source", steps: Steps | None = None, dynamic="auto", floor_factor: float | None = 3.0):
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
                                           via=via, check=False, dynamic=dynamic)
    report, path_used = gate_and_write(
        loaded.model, keras_model, output, write=functools.partial(save_keras, force=force),
        # as it will run: the SavedModel graph, the TFLite interpreter
        reload=lambda tmp: load_keras(tmp).model,
        converted_what="the converted Keras model", written_what=f"the written {kind} file", check=check,
        atol=atol, rtol=rtol, steps=steps, floor_factor=floor_factor)
    return keras_model, report, path_used


def cast_loaded(loaded, dtype: str) -> None:
    """``--dtype``: the loaded torch model and its floating example inputs in ``dtype``, in place."""
    import torch

    from ..errors import BadInputError

    if not isinstance(loaded.model, torch.nn.Module):
        raise BadInputError(f"--dtype needs a torch module; {loaded.format} loads a {type(loaded.model).__name__}",
                            hint="convert without --dtype, or save the model in the dtype you want")
    target = getattr(torch, dtype)
    loaded.model.to(target)
    loaded.example_inputs = tuple(t.to(target) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                                  for t in loaded.example_inputs)


@click.command("torch2tf")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="name.keras, name.tflite, or a SavedModel folder (no extension).")
@model_options
@dynamic_options
@conversion_options
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Convert in this precision (default: the loaded model's own): the torch model and its floating "
                   "example inputs are cast to it, the Keras layers get that dtype policy, and the parity gate's "
                   "tolerances follow it. bfloat16/float16 keep a half-precision checkpoint half: half the memory.")
@click.option("--onnx2tf", "onnx2tf_path", type=click.Path(path_type=Path), metavar="PATH",
              help="The onnx2tf executable for the ONNX path (default: $XLATE_ONNX2TF, PATH, .venv-onnx2tf).")
@handles_errors
def torch2tf(model, output, model_class, input_shapes, input_dtypes, trust, static, force, no_check, atol, rtol,
             floor_factor, via, io_layout, json_path, report_path, dtype, onnx2tf_path):
    """Convert a PyTorch MODEL to Keras / TensorFlow and prove it computes the same numbers.

    MODEL: a torch.export program (.pt2), a TorchScript archive, a state_dict (.pth/.pt/.safetensors)
    with --model-class and --input-shape, or (with --trust) a whole pickled model. The output format
    follows -o: name.keras, name.tflite, or a SavedModel folder (no extension).
    """
    from ..errors import BadInputError
    from ..input_shapes import dynamic_option
    from ..load import load_torch
    from ..save import check_destination, keras_output_kind

    start = time.perf_counter()
    dynamic = dynamic_option(input_shapes, static)
    kind = keras_output_kind(output)
    check_destination(output, force=force)
    if onnx2tf_path is not None:
        from ..onnx_path import use_onnx2tf

        use_onnx2tf(onnx2tf_path)
    steps = Steps()
    with steps.step("loading"):
        loaded = load_torch(model, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                            trust=trust)
    if loaded.example_inputs is None:
        raise BadInputError(f"{model} does not say what inputs the model takes ({loaded.format})",
                            hint="add --input-shape, batch first, once per input, e.g. --input-shape 1,3,224,224")
    if dtype is not None:
        cast_loaded(loaded, dtype)
    steps.for_model(loaded.model)
    via_note = convert_reporting(convert_and_save, loaded, output, model=model, label=kind, json_path=json_path,
                                 report_path=report_path, force=force, check=not no_check, atol=atol, rtol=rtol,
                                 floor_factor=floor_factor,
                                 via=via, io_layout=io_layout, steps=steps, dynamic=dynamic)
    click.echo(f"wrote {output} ({kind}, {human_size(output)}){via_note} in {time.perf_counter() - start:.1f} s")
