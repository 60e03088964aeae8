"""Direct Keras 3 -> PyTorch conversion: walk -> plan/emit -> instantiate -> record.

``keras_to_torch`` returns the generated module, instantiated from its own source with the
ported weights loaded: the object a user gets is exactly what ``save_torch_package`` writes as
``model.py`` + ``model.safetensors``. ``xlate.convert.keras_to_torch`` calls it and then runs
the parity gate.
"""

from __future__ import annotations

import itertools
import linecache
import sys
import types
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import BadInputError
from ..frameworks import IOSpec, TensorSpec
from ..parity import embedding_bound
from ..record import ConversionRecord, attach
from . import plan
from .emit import CLASS_NAME, Emitter, render
from .walk import Graph, walk

_counter = itertools.count()


def keras_to_torch(model, *, example_inputs=None, io_layout: str = "source"):
    """Rebuild a Keras 3 Sequential/Functional model as a readable torch ``nn.Module``.

    The module is generated as Python source (``module._xlate_source``), instantiated from it
    and loaded with the Keras weights moved through the table's named transforms; it is
    returned in eval mode, like a Keras model called without ``training=True``.
    ``io_layout="source"`` takes and returns the Keras (channels-last) layout, ``"native"``
    takes and returns channels-first feature maps. ``example_inputs`` (optional, Keras layout)
    fill in the sizes the model leaves unknown in the input specs the parity check samples from.
    Raises UnsupportedOpError listing every
    layer the direct path cannot convert (``xlate.keras_to_torch`` then tries ONNX).
    """
    import keras

    if not isinstance(model, keras.Layer):
        raise BadInputError(f"expected a keras.Model, got {type(model).__name__}")
    if io_layout not in ("source", "native"):
        raise BadInputError(f"io_layout must be 'source' or 'native', got {io_layout!r}")
    graph = walk(model)
    emitter = Emitter(graph, io_layout=io_layout)
    emitter.run()
    source, out_perms = render(emitter, model_name=model.name, version=__version__)
    module = instantiate(source, emitter.state)
    io = IOSpec(
        inputs=_input_specs(model, graph, example_inputs),
        input_perms=tuple(None if plan.is_identity(p) else tuple(p) for p in emitter.input_perms),
        output_perms=tuple(None if plan.is_identity(p) else plan.inverse(p) for p in out_perms),
        source="keras",
    )
    record = ConversionRecord(direction="keras2torch", path="direct", io=io, layers=emitter.layers,
                              rows_used=emitter.rows_used, notes=emitter.notes)
    attach(module, record)
    object.__setattr__(module, "_xlate_source", source)
    return module


def load_source(source: str):
    """Execute generated source as a fresh module; returns the module object."""
    name = f"xlate_generated_{next(_counter)}"
    filename = f"<xlate:{name}/model.py>"
    mod = types.ModuleType(name)
    mod.__file__ = filename
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), mod.__dict__)  # noqa: S102 - our own generated code
    sys.modules[name] = mod  # so the class can be pickled within this process
    return mod


def instantiate(source: str, state: dict[str, np.ndarray]):
    """Build the generated class without running torch's initializers and load ``state`` into it."""
    import torch

    cls = getattr(load_source(source), CLASS_NAME)
    with torch.device("meta"):
        module = cls()
    expected = module.state_dict(keep_vars=True)
    assign_state(module, state_dict_tensors(state, expected), expected)
    return module.eval()


def assign_state(module, tensors: dict, expected: dict) -> None:
    """``load_state_dict(tensors, strict=True, assign=True)`` without its cost per module and key
    (it filters the whole dict once per submodule): each tensor is set on its owner directly,
    through ``setattr`` so modules that cache their parameters (nn.LSTM's flat weights) see it.
    ``expected`` is ``module.state_dict(keep_vars=True)``, taken before any tensor is set."""
    import torch

    if set(expected) != set(tensors):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise RuntimeError(f"generated state does not match the module: missing {missing[:5]}, unexpected {extra[:5]}")
    owners = dict(module.named_modules())
    for key, tensor in tensors.items():
        path, _, name = key.rpartition(".")
        owner = owners[path]
        old = expected[key]
        if tuple(old.shape) != tuple(tensor.shape):
            raise RuntimeError(f"{key}: generated shape {tuple(old.shape)}, ported weight {tuple(tensor.shape)}")
        if name in owner._parameters:
            setattr(owner, name, torch.nn.Parameter(tensor, requires_grad=old.requires_grad))
        else:
            setattr(owner, name, tensor)


def state_dict_tensors(state: dict[str, np.ndarray], expected: dict) -> dict:
    """The numpy state as torch tensors; BatchNorm's num_batches_tracked (no Keras counterpart) is 0.
    ``expected`` is the module's ``state_dict(keep_vars=True)`` (only its keys are read)."""
    import torch

    tensors = {k: torch.from_numpy(np.require(v, requirements="C")) for k, v in state.items()}  # keeps 0-d arrays 0-d
    for key in expected:
        if key not in tensors and key.endswith("num_batches_tracked"):
            tensors[key] = torch.zeros((), dtype=torch.long)
    return tensors


def _example_shapes(example_inputs, count: int) -> list[tuple | None]:
    if example_inputs is None:
        return [None] * count
    if isinstance(example_inputs, dict):
        example_inputs = list(example_inputs.values())
    if not isinstance(example_inputs, (list, tuple)):
        example_inputs = [example_inputs]
    if len(example_inputs) != count:
        raise BadInputError(f"the model has {count} input(s), example_inputs gives {len(example_inputs)}")
    return [tuple(np.shape(a)) for a in example_inputs]


def _input_specs(model, graph: Graph, example_inputs=None) -> tuple[TensorSpec, ...]:
    examples = _example_shapes(example_inputs, len(graph.inputs))
    bound = embedding_bound(model)
    specs = []
    for tid, name, example in zip(graph.inputs, graph.input_names, examples):
        t = graph.tensors[tid]
        shape = t.shape
        if example is not None:
            if len(example) != len(shape):
                raise BadInputError(f"example input {name!r} has shape {example}, the model expects rank {len(shape)}")
            shape = tuple(d if d is not None or i == 0 else int(e) for i, (d, e) in enumerate(zip(shape, example)))
        is_int = "int" in t.dtype
        specs.append(TensorSpec(shape, t.dtype, 0, bound if is_int else None, name))
    return tuple(specs)


def write_torch_package(module, folder, *, weights: str = "safetensors") -> None:
    """Write ``model.py`` and ``model.safetensors`` (or ``model.pth``) into the existing ``folder``."""
    source = getattr(module, "_xlate_source", None)
    if source is None:
        raise BadInputError("this module was not generated by xlate's keras->torch path (no _xlate_source)")
    if weights not in ("safetensors", "pth"):
        raise BadInputError(f"weights must be 'safetensors' or 'pth', got {weights!r}")
    folder = Path(folder)
    (folder / "model.py").write_text(source)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "generator": "xlate"})
    else:
        import torch

        torch.save(state, folder / "model.pth")


def save_torch_package(module, outdir, *, weights: str = "safetensors", overwrite: bool = False) -> Path:
    """Write ``model.py`` and ``model.safetensors`` (or ``model.pth``) as the folder ``outdir``, atomically.

    The files are written to a temporary folder next to ``outdir`` and renamed into place
    (``xlate.save.atomic_path``), so a failure leaves no half-written package; an existing
    ``outdir`` is replaced only with ``overwrite=True``. Loading needs torch (and safetensors) only:
    ``from model import Net; net = Net(); net.load_state_dict(load_file("model.safetensors"))``.
    """
    from ..save import atomic_path

    outdir = Path(outdir)
    with atomic_path(outdir, force=overwrite, directory=True) as tmp:
        write_torch_package(module, tmp, weights=weights)
    return outdir
