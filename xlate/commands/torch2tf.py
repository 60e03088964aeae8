"""``xlate torch2tf MODEL -o OUT``: a PyTorch model to Keras (.keras), a SavedModel or TFLite.

MODEL is a model file or folder (``.pt2``, TorchScript, a state_dict with ``--model-class``, a
Hugging Face ``save_pretrained`` folder); with ``--model-class`` alone the class or factory builds
it. The parity gate runs twice by default: on the converted Keras model, then on the written file
itself (reloaded from its temporary path), so what lands on disk is what was checked. A quantized
TFLite (``--quantize``) is judged on its own metrics (``xlate.quant_parity``) after the float gate.
A failed gate exits 1 with the report and leaves nothing behind.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import click

from ._common import (
    ParityFailed,
    Steps,
    conversion_options,
    convert_reporting,
    dynamic_options,
    gate_and_write,
    gate_converted,
    human_size,
    model_options,
    say_result,
    torch_options,
)
from ._errors import handles_errors


def convert_and_save(loaded, output: Path, *, force=False, check=True, atol=1e-5, rtol=1e-4, via="auto",
                     io_layout="source", steps: Steps | None = None, dynamic="auto", floor_factor: float | None = 3.0,
                     quantization=None):
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
    if quantization is not None:
        return _save_quantized(loaded, keras_model, output, quantization, force=force, check=check, atol=atol,
                               rtol=rtol, steps=steps)
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


def _save_quantized(loaded, keras_model, output: Path, quantization, *, force, check, atol, rtol, steps):
    """The float gate on the converted model, then the quantized file judged by ``quant_parity``."""
    from ..quant_parity import check_quantized
    from ..record import record_of
    from ..save import save_keras

    record = record_of(keras_model)
    path_used = record.path if record else None
    float_gate = None
    if check:
        report = gate_converted(loaded.model, keras_model, atol=atol, rtol=rtol, path=path_used,
                                what="the converted Keras model", steps=steps)
        float_gate = {"passed": report.passed, "max_abs_err": report.max_abs_err, "max_rel_err": report.max_rel_err,
                      "atol": report.atol, "rtol": report.rtol}
    final = []

    def verify(tmp: Path) -> None:
        with steps.step(f"checking the {quantization.mode} quantized file"):
            report = check_quantized(loaded.model, tmp, keras_model, quantization, float_gate=float_gate)
        if not report.passed:
            raise ParityFailed(report, f"the written {quantization.mode} TFLite file")
        final.append(report)

    with steps.step(f"writing {output} ({quantization.mode})"):
        save_keras(keras_model, output, force=force, verify=verify if check else None, quantization=quantization)
    return keras_model, (final[0] if final else None), path_used


@click.command("torch2tf")
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="name.keras, name.tflite, or a SavedModel folder (no extension).")
@model_options
@dynamic_options
@conversion_options
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Convert in this precision (default: the loaded model's own): the torch model and its floating "
                   "example inputs are cast to it, the Keras layers get that dtype policy, and the parity gate's "
                   "tolerances follow it. bfloat16/float16 keep a half-precision checkpoint half: half the memory.")
@click.option("--quantize", type=click.Choice(["fp16", "dynamic", "int8"]),
              help="Quantize the .tflite output: fp16 weights, dynamic-range int8, or full int8 (needs "
                   "--calibration). Gated by cosine similarity and top-1 agreement, not by --atol.")
@click.option("--calibration", type=click.Path(path_type=Path), metavar="DATA.npy|npz",
              help="Representative inputs (samples first, source layout) to calibrate int8 and to judge the "
                   "quantized file on.")
@click.option("--int8-io", is_flag=True, help="With --quantize int8: int8 inputs and outputs (scale and zero point "
                                               "in the report), integer kernels only.")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=0.99, show_default=True,
              help="Quantized gate: the worst sample's cosine similarity with the source, per output.")
@click.option("--min-top1", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Quantized gate: share of samples whose top-1 class agrees (classifier outputs).")
@click.option("--onnx2tf", "onnx2tf_path", type=click.Path(path_type=Path), metavar="PATH",
              help="The onnx2tf executable for the ONNX path (default: $XLATE_ONNX2TF, PATH, .venv-onnx2tf).")
@handles_errors
def torch2tf(model, output, model_class, input_shapes, input_dtypes, trust, static, force, no_check, atol, rtol,
             floor_factor, via, io_layout, json_path, quiet, report_path, dtype, quantize, calibration, int8_io,
             min_cosine, min_top1, onnx2tf_path, **options):
    """Convert a PyTorch MODEL to Keras / TensorFlow and prove it computes the same numbers.

    MODEL: a torch.export program (.pt2), a TorchScript archive, a Hugging Face save_pretrained
    folder, a state_dict (.pth/.pt/.safetensors) with --model-class and --input-shape, or (with
    --trust) a whole pickled model. Without MODEL, --model-class builds it (with --model-args, and
    --weights or the factory's own initialization). The output format follows -o: name.keras,
    name.tflite, or a SavedModel folder (no extension).
    """
    from ..errors import BadInputError
    from ..input_shapes import dynamic_option
    from ..load import load_torch
    from ..quantize import check_calibration_fits, quantization_from_options
    from ..save import check_destination, keras_output_kind

    start = time.perf_counter()
    dynamic = dynamic_option(input_shapes, static)
    kind = keras_output_kind(output)
    check_destination(output, force=force)
    quantization = quantization_from_options(quantize, calibration, int8_io, min_cosine, min_top1, output)
    if onnx2tf_path is not None:
        from ..onnx_tools import use_onnx2tf

        use_onnx2tf(onnx2tf_path)
    steps = Steps(quiet=quiet or str(json_path) == "-")
    with steps.step("loading"):
        loaded = load_torch(model, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                            trust=trust, **torch_options(options))
    if loaded.example_inputs is None:
        raise BadInputError(f"{model or model_class} does not say what inputs the model takes ({loaded.format})",
                            hint="add --input-shape, batch first, once per input, e.g. --input-shape 1,3,224,224")
    if dtype is not None:
        cast_loaded(loaded, dtype)
    if quantization is not None:
        check_calibration_fits(quantization, loaded.example_inputs)
    steps.for_model(loaded.model)
    via_note = convert_reporting(convert_and_save, loaded, output, model=model or model_class, label=kind,
                                 json_path=json_path, report_path=report_path, quiet=quiet, force=force,
                                 check=not no_check, atol=atol, rtol=rtol, floor_factor=floor_factor, via=via,
                                 io_layout=io_layout, steps=steps, dynamic=dynamic, quantization=quantization)
    what = f"{kind}, {quantization.mode}" if quantization else kind
    say_result(f"wrote {output} ({what}, {human_size(output)}){via_note} in {time.perf_counter() - start:.1f} s",
               json_path)
