"""``xlate onnx2keras MODEL.onnx -o OUT`` and ``xlate onnx2torch MODEL.onnx -o OUTDIR``.

Both go through xlate's own ONNX interpreter (``xlate.onnx_torch``, integer constants static):
onnx2keras hands it to the direct torch -> Keras converter, so the result is a native, trainable
Keras 3 model (not a wrapped graph); onnx2torch writes it out as readable torch code
(``xlate.onnx_codegen``) plus ``model.safetensors``. Every gate compares with onnxruntime on the
same seeded inputs: the interpreter first, then the converted model, then the written file
(reloaded from its temporary path). A failure exits 1 and leaves nothing behind; ops xlate cannot
run are listed, with their nodes, all at once (exit 3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import click

from ._common import (
    ParityFailed,
    Steps,
    conversion_options,
    convert_reporting,
    gate_converted,
    human_size,
    say_result,
)
from ._errors import handles_errors

SAMPLES = 4
SAMPLE_SEED = 0  # the gates' inputs: the file's example, then make_inputs from this seed + 1


@dataclass
class OnnxSource:
    """An ONNX file ready to convert: xlate's interpreter of it, onnxruntime, and their shared inputs."""

    onnx: object  # xlate.loaders.onnx.OnnxModel
    module: object  # the static interpreter (torch)
    reference: object  # onnxruntime as a torch module
    samples: list  # input samples, each a list of arrays
    expected: list  # onnxruntime's outputs on them


def load_source(path, input_shapes, steps, *, atol, rtol, check: bool) -> OnnxSource:
    """Read the file, refuse what the interpreter cannot run, and check the interpreter against onnxruntime."""
    from ..errors import BadInputError
    from ..frameworks import flatten_outputs, to_numpy
    from ..load import detect_format
    from ..loaders.onnx import load_onnx, runtime_module, static_graph_module
    from ..parity import check_torch_against_reference
    from ..runners import torch_tensors

    fmt = detect_format(path)  # a missing, empty or mislabelled file, a folder: the usual one-line causes
    if fmt != "onnx":
        raise BadInputError(f"{path} is not an ONNX file but {fmt}",
                            hint="give a .onnx file (torch.onnx.export, tf2onnx); other models convert with "
                                 "torch2tf / tf2torch")
    with steps.step("loading"):
        onnx_model = load_onnx(path, input_shapes=input_shapes)
        module = static_graph_module(onnx_model)
        reference = runtime_module(onnx_model)
        samples = onnx_model.samples(SAMPLES, seed=SAMPLE_SEED)
        expected = [[to_numpy(o) for o in flatten_outputs(reference(*torch_tensors(s, "cpu")))] for s in samples]
    if check:
        with steps.step("checking xlate's ONNX interpreter against onnxruntime"):
            report = check_torch_against_reference(module, samples, expected, atol=atol, rtol=rtol,
                                                   reference="onnxruntime (cpu, float32)")
            report.source, report.seed = "onnxruntime", SAMPLE_SEED
        if not report.passed:
            raise ParityFailed(report, "xlate's ONNX interpreter")
    return OnnxSource(onnx_model, module, reference, samples, expected)


def _notes_of(source: OnnxSource) -> str:
    graph = source.onnx.proto
    opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), 0)
    return f"{len(graph.graph.node)} ONNX nodes, opset {opset}"


def keras_convert_and_save(source: OnnxSource, output: Path, *, force=False, check=True, atol=1e-5, rtol=1e-4,
                           io_layout="source", steps: Steps | None = None, floor_factor: float | None = 3.0):
    """ONNX interpreter -> Keras (direct path), gated on the interpreter, written, gated on onnxruntime."""
    import xlate

    from ..load import load_keras
    from ..parity import check_parity
    from ..save import keras_output_kind, save_keras

    steps = steps or Steps()
    with steps.step("converting"):
        keras_model = xlate.torch_to_keras(source.module, source.onnx.example, io_layout=io_layout, via="direct",
                                           check=False)
    if check:
        gate_converted(source.module, keras_model, atol=atol, rtol=rtol, path="direct",
                       what="the converted Keras model", steps=steps, floor_factor=floor_factor)
    final = []
    written = f"the written {keras_output_kind(output)} file"

    def verify(tmp: Path) -> None:
        with steps.step(f"checking {written} against onnxruntime"):
            reloaded = load_keras(tmp).model
            object.__setattr__(reloaded, "_xlate_io", getattr(keras_model, "_xlate_io", None))
            report = check_parity(source.reference, reloaded, source.samples, atol=atol, rtol=rtol, path="direct")
            report.source = "onnxruntime"
        if not report.passed:
            raise ParityFailed(report, written)
        final.append(report)

    with steps.step(f"writing {output}"):
        save_keras(keras_model, output, force=force, verify=verify if check else None)
    return keras_model, (final[0] if final else None), "direct"


def torch_convert_and_save(source: OnnxSource, output: Path, *, force=False, check=True, atol=1e-5, rtol=1e-4,
                           steps: Steps | None = None):
    """ONNX interpreter -> generated torch source + weights, gated and written like tf2torch's folders."""
    from .. import onnx_codegen
    from ..load import load_torch_package
    from ..parity import check_torch_against_reference
    from ..save import save_torch

    steps = steps or Steps()
    proto = source.onnx.proto
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    names = {attr: onnx_name for onnx_name, attr in source.module._tensor_attr.items()}
    with steps.step("generating torch code"):
        text, state = onnx_codegen.generate(source.module, source.onnx.example, names,
                                            [s.name for s in source.onnx.specs], name=source.onnx.path.stem,
                                            source=source.onnx.path.name, nodes=len(proto.graph.node), opset=opset)
        net = onnx_codegen.build(text, state)

    def gate(module, what: str):
        report = check_torch_against_reference(module, source.samples, source.expected, atol=atol, rtol=rtol,
                                               reference="onnxruntime (cpu, float32)")
        report.source, report.seed = "onnxruntime", SAMPLE_SEED
        if not report.passed:
            raise ParityFailed(report, what)
        return report

    final = []
    if check:
        with steps.step("checking the generated module against onnxruntime"):
            gate(net, "the generated PyTorch module")

    def verify(tmp: Path) -> None:
        with steps.step("checking the written PyTorch folder against onnxruntime"):
            final.append(gate(load_torch_package(tmp), "the written PyTorch folder"))

    with steps.step(f"writing {output}"):
        save_torch(net, output, force=force, verify=verify if check else None)
    return net, (final[0] if final else None), "generated source"


def _onnx_options(fn):
    fn = click.option("--input-shape", "input_shapes", multiple=True, metavar="N,C,H,W",
                      help="Shape of each graph input, batch first (needed for free sizes other than the "
                           "batch).")(fn)
    fn = click.argument("model", type=click.Path(path_type=Path))(fn)
    return fn


@click.command("onnx2keras")
@_onnx_options
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="name.keras, name.tflite, or a SavedModel folder (no extension).")
@conversion_options
@handles_errors
def onnx2keras(model, input_shapes, output, force, no_check, atol, rtol, floor_factor, via, io_layout, json_path,
               quiet, report_path):
    """Convert an ONNX MODEL to a native, trainable Keras 3 model, checked against onnxruntime."""
    from ..errors import BadInputError
    from ..save import check_destination, keras_output_kind

    start = time.perf_counter()
    if via == "onnx":
        raise BadInputError("--via onnx does not apply to onnx2keras: the ONNX graph is converted directly",
                            hint="leave --via out")
    kind = keras_output_kind(output)
    check_destination(output, force=force)
    steps = Steps(quiet=quiet or str(json_path) == "-")
    source = _load_or_fail(model, input_shapes, steps, atol, rtol, no_check, json_path, quiet, output)
    convert_reporting(keras_convert_and_save, source, output, model=model, label=kind, json_path=json_path,
                      report_path=report_path, quiet=quiet, force=force, check=not no_check, atol=atol, rtol=rtol,
                      floor_factor=floor_factor, io_layout=io_layout, steps=steps)
    say_result(f"wrote {output} ({kind}, {human_size(output)}; {_notes_of(source)}) in "
               f"{time.perf_counter() - start:.1f} s", json_path)


@click.command("onnx2torch")
@_onnx_options
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Folder to write model.py (readable torch code) and model.safetensors to.")
@click.option("--force", is_flag=True, help="Replace the output if it exists.")
@click.option("--no-check", is_flag=True, help="Skip the parity gates (not recommended).")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-5, show_default=True, help="Absolute tolerance.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-4, show_default=True, help="Relative tolerance.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="REPORT.json|-",
              help="Also write the parity report as JSON; '-' prints it to stdout instead of anything else.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but the result (the closing line).")
@handles_errors
def onnx2torch(model, input_shapes, output, force, no_check, atol, rtol, json_path, quiet):
    """Convert an ONNX MODEL to readable PyTorch code (OUTPUT/model.py + model.safetensors), checked
    against onnxruntime."""
    from ..save import check_destination, check_torch_folder

    start = time.perf_counter()
    check_destination(check_torch_folder(output), force=force)
    steps = Steps(quiet=quiet or str(json_path) == "-")
    source = _load_or_fail(model, input_shapes, steps, atol, rtol, no_check, json_path, quiet, output)
    convert_reporting(torch_convert_and_save, source, output, model=model, label="PyTorch", json_path=json_path,
                      report_path=None, quiet=quiet, force=force, check=not no_check, atol=atol, rtol=rtol,
                      steps=steps)
    say_result(f"wrote {output}/ ({', '.join(sorted(p.name for p in output.iterdir()))}; {human_size(output)}; "
               f"{_notes_of(source)}) in {time.perf_counter() - start:.1f} s", json_path)


def _load_or_fail(model, input_shapes, steps, atol, rtol, no_check, json_path, quiet, output) -> OnnxSource:
    from ._common import fail_parity

    try:
        return load_source(model, input_shapes, steps, atol=atol, rtol=rtol, check=not no_check)
    except ParityFailed as e:
        fail_parity(e.report, json_path, f"{model}: {e.what} disagrees with onnxruntime", quiet=quiet,
                    source=model, target=output)
