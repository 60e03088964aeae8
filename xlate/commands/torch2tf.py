"""``xlate torch2tf MODEL -o OUT``: a PyTorch model file to Keras (.keras), a SavedModel or TFLite.

The parity gate runs twice by default: on the converted Keras model, then on the written file
itself (reloaded from its temporary path), so what lands on disk is what was checked. A failed
gate exits 1 with the report and leaves nothing behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..cli import handles_errors
from ._common import (
    ParityFailed,
    Steps,
    conversion_options,
    convert_reporting,
    gate_converted,
    human_size,
    model_options,
)


def reload_artifact(path: Path, like):
    """Load a written Keras/TF artifact as it will run (SavedModel graph, TFLite interpreter) and give
    it the converted model's I/O spec, so the check feeds it the same inputs in the same layout."""
    from ..load import load_keras

    reloaded = load_keras(path).model
    spec = getattr(like, "_xlate_io", None)
    if spec is not None:
        object.__setattr__(reloaded, "_xlate_io", spec)
    return reloaded


def convert_and_save(loaded, output: Path, *, force=False, check=True, atol=1e-5, rtol=1e-4, via="auto",
                     io_layout="source", steps: Steps | None = None):
    """Convert a loaded torch model, gate it, write it atomically and gate the written file.

    Returns (keras_model, report of the written file or None with check=False, conversion path).
    Raises ``ParityFailed`` (nothing written) when either gate fails.
    """
    import xlate

    from ..load import traceable_module
    from ..parity import check_parity
    from ..record import record_of
    from ..save import keras_output_kind, save_keras

    steps = steps or Steps()
    kind = keras_output_kind(output)
    with steps.step("converting"):
        keras_model = xlate.torch_to_keras(traceable_module(loaded), loaded.example_inputs, io_layout=io_layout,
                                           via=via, check=False)
    record = record_of(keras_model)
    path_used = record.path if record else None
    if check:
        gate_converted(loaded.model, keras_model, atol=atol, rtol=rtol, path=path_used, what="the converted Keras model",
                       steps=steps)

    final = []

    def verify(tmp: Path) -> None:
        if not check:
            return
        with steps.step(f"checking the written {kind} file"):
            report = check_parity(loaded.model, reload_artifact(tmp, keras_model), atol=atol, rtol=rtol,
                                  path=path_used)
        if not report.passed:
            raise ParityFailed(report, f"the written {kind} file")
        final.append(report)

    with steps.step(f"writing {output}"):
        save_keras(keras_model, output, force=force, verify=verify)
    return keras_model, (final[0] if final else None), path_used


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
        from ..onnx_path import use_onnx2tf

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
