"""``.onnx`` files: checked, their inputs described, and run two ways.

- ``OnnxRuntimeModule``: an ``nn.Module`` whose forward runs onnxruntime, the reference every
  ONNX conversion is gated against (and what ``xlate check model.onnx ...`` compares with);
- ``static_graph_module``: xlate's own ONNX interpreter (``xlate.onnx_torch``) with the graph's
  integer constants (shapes, axes, indices) held as plain tensors, so that the torch -> Keras
  tracer and the code generator see them as the constants they are.

Every op the interpreter cannot run is named, with its node, all at once, before anything runs.
Input shapes come from the graph; a free dimension (``dim_param``) needs ``--input-shape``, except
a free batch axis, which is given ``DEFAULT_BATCH`` rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bound import bounded_load
from ..errors import BadInputError, UnsupportedOpError, one_line
from ..frameworks import TensorSpec

DEFAULT_BATCH = 2
# ONNX TensorProto element types -> numpy dtype names, for the graph's inputs
_ELEM = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
         11: "float64"}


@dataclass
class OnnxModel:
    """An ONNX file, read and described: the graph, its inputs and seeded example inputs."""

    path: Path
    proto: object  # onnx.ModelProto
    specs: tuple[TensorSpec, ...]
    example: tuple  # torch tensors, one per graph input

    def samples(self, n: int = 4, seed: int = 0) -> list[list[np.ndarray]]:
        """``n`` seeded input samples (the first one is ``example``), for the parity gates."""
        from ..parity_inputs import make_inputs

        return [[t.numpy() for t in self.example]] + make_inputs(self.specs, samples=n - 1, seed=seed + 1)


def read_onnx(path) -> object:
    """The ONNX model, after ``xlate.validate``'s checks (protobuf, checker, initializer sizes and
    external data): DamagedFileError (exit 2) for a damaged or foreign file."""
    import onnx

    from ..validate import validate_model

    path = Path(path)
    validate_model(path, "onnx")
    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - what the checks above let through (external data read errors)
        raise BadInputError(f"{path} is not a valid ONNX model ({type(e).__name__}: {one_line(e, 200)})",
                            hint="the file is damaged or is not ONNX; export it again (torch.onnx.export, "
                                 "tf2onnx)") from None


def check_supported(model, path) -> None:
    """UnsupportedOpError (exit 3) naming every node xlate's interpreter cannot run."""
    from ..onnx_torch import unsupported_ops

    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedOpError(missing, direction="ONNX->torch",
                                 hint=f"these ONNX ops of {Path(path).name} have no implementation in "
                                      "xlate.onnx_torch; the other nodes would convert")


def _integer_bound(model, name: str) -> int:
    """Exclusive bound for an integer input: the rows of the table a Gather looks it up in."""
    from onnx import numpy_helper

    tables = {t.name: t for t in model.graph.initializer}
    bounds = [int(numpy_helper.to_array(tables[n.input[0]]).shape[0]) for n in model.graph.node
              if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == name and n.input[0] in tables]
    return min(bounds) if bounds else 2


def input_specs(model, path, input_shapes=(), input_dtypes=()) -> tuple[TensorSpec, ...]:
    """A TensorSpec per graph input (initializers excluded), shapes completed by ``--input-shape``."""
    from .inputs import parse_input_shape

    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if input_shapes and len(input_shapes) != len(inputs):
        raise BadInputError(f"{len(input_shapes)} --input-shape for the {len(inputs)} input(s) of {path}",
                            hint="give one --input-shape per graph input, in order, or none")
    if input_dtypes:
        raise BadInputError("--input-dtype does not apply to an ONNX file: it declares its input types",
                            hint="leave --input-dtype out")
    specs = []
    for i, value in enumerate(inputs):
        t = value.type.tensor_type
        dtype = _ELEM.get(t.elem_type)
        if dtype is None:
            raise BadInputError(f"{path}: input {value.name!r} has ONNX element type {t.elem_type}, which xlate "
                                "cannot feed", hint="export the model with float or integer inputs")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if input_shapes:
            shape = parse_input_shape(input_shapes[i]) if isinstance(input_shapes[i], str) else tuple(input_shapes[i])
            fixed = [(a, want) for a, (want, got) in enumerate(zip(dims, shape)) if want is not None and want != got]
            if len(shape) != len(dims) or fixed:
                raise BadInputError(f"--input-shape {','.join(map(str, shape))} does not fit input {value.name!r} of "
                                    f"{path}, shape ({', '.join('?' if d is None else str(d) for d in dims)})",
                                    hint="keep the graph's fixed sizes; choose only the free ones (?)")
        else:
            free = [a for a, d in enumerate(dims) if d is None and a > 0]
            if free:
                raise BadInputError(f"{path}: input {value.name!r} has free size(s) at axis {free} "
                                    f"(shape ({', '.join('?' if d is None else str(d) for d in dims)}))",
                                    hint="give --input-shape with every size, e.g. --input-shape "
                                         + ",".join(str(d or (DEFAULT_BATCH if a == 0 else 16)) for a, d in
                                                    enumerate(dims)))
            shape = tuple(DEFAULT_BATCH if d is None else d for d in dims)
        high = _integer_bound(model, value.name) if "int" in dtype else None
        specs.append(TensorSpec(tuple(shape), dtype, 0, high, value.name))
    return tuple(specs)


def _example(specs, seed: int = 0) -> tuple:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for s in specs:
        dtype = getattr(torch, s.dtype)
        if s.dtype == "bool":
            out.append(torch.randint(0, 2, s.shape, generator=g).bool())
        elif s.is_integer:
            out.append(torch.randint(s.low, s.high or 2, s.shape, generator=g, dtype=dtype))
        else:
            out.append(torch.randn(s.shape, generator=g).to(dtype))
    return tuple(out)


@bounded_load
def load_onnx(path, *, input_shapes=(), input_dtypes=(), supported: bool = True) -> OnnxModel:
    """Read an ONNX file (``xlate.load.detect_format`` has said it is one); with ``supported``, refuse
    it (exit 3) when xlate's interpreter cannot run it. The read is bounded in time (``xlate.bound``)."""
    path = Path(path)
    model = read_onnx(path)
    if supported:
        check_supported(model, path)
    specs = input_specs(model, path, input_shapes, input_dtypes)
    return OnnxModel(path, model, specs, _example(specs))


@functools.cache
def _static_module_cls():
    from ..onnx_torch import OnnxGraphModule

    class StaticOnnxGraphModule(OnnxGraphModule):
        """The ONNX interpreter with integer constants (and Clip's bounds) given to the ops as plain tensors.

        The integer initializers and Constant nodes (reshape targets, axes, gather indices) stay
        registered buffers, so the state_dict is the interpreter's, but the ops receive copies that
        are not module attributes: a tracer sees concrete values (``[2, 400]``), not a tensor whose
        contents only a run would tell."""

        def __init__(self, model):
            super().__init__(model)
            self._static = {}
            for name, attr in self._tensor_attr.items():
                if not attr.startswith("params."):
                    value = getattr(self, attr)
                    if not value.is_floating_point():
                        self._static[name] = value.clone()
            # Clip's bounds are constants (ReLU6's 0 and 6), not weights to train
            for op, ins, _, _ in self.nodes:
                for name in ins[1:3] if op == "Clip" else ():
                    if self._tensor_attr.get(name, "").startswith("params."):
                        self._static[name] = self._get(name).detach().clone()

        def _get(self, name: str):
            static = self._static.get(name)
            return static if static is not None else super()._get(name)

    return StaticOnnxGraphModule


def static_graph_module(onnx_model: OnnxModel):
    """xlate's interpreter for the graph, constants static (see ``StaticOnnxGraphModule``), in eval mode."""
    return _static_module_cls()(onnx_model.proto).eval()


@functools.cache
def _runtime_module_cls():
    import torch

    class OnnxRuntimeModule(torch.nn.Module):
        """An ONNX file run by onnxruntime (CPU), called like a torch module: the reference."""

        def __init__(self, path: Path, input_names, input_dtypes):
            super().__init__()
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            try:
                self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001
                raise BadInputError(f"onnxruntime cannot load {path} ({type(e).__name__}: {one_line(e, 200)})",
                                    hint="the graph is not runnable as exported; export it again") from None
            self.input_names = list(input_names)
            self.input_dtypes = list(input_dtypes)
            self.path = str(path)

        def forward(self, *inputs):
            feed = {n: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=d)
                    for n, x, d in zip(self.input_names, inputs, self.input_dtypes)}
            outs = [torch.from_numpy(np.asarray(o)) for o in self.session.run(None, feed)]
            return outs[0] if len(outs) == 1 else tuple(outs)

    return OnnxRuntimeModule


def runtime_module(onnx_model: OnnxModel):
    return _runtime_module_cls()(onnx_model.path, [s.name for s in onnx_model.specs],
                                 [s.dtype for s in onnx_model.specs]).eval()


