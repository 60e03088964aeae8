"""Direct Keras 3 -> PyTorch conversion: walk -> plan/emit -> instantiate -> record.

``keras_to_torch`` returns the generated module, instantiated from its own source with the
ported weights loaded: the object a user gets is exactly what ``xlate.save.save_torch_package`` writes as
``model.py`` + ``model.safetensors``. ``xlate.convert.keras_to_torch`` calls it and then runs
the parity gate.
"""

from __future__ import annotations

import itertools
import linecache
import re
import sys
import types
from collections import Counter

import numpy as np

from .._version import __version__
from ..errors import BadInputError, UnsupportedOpError
from ..frameworks import IOSpec, TensorSpec
from ..parity_inputs import embedding_bound, make_inputs
from ..record import ConversionRecord, attach
from . import plan
from .emit import Emitter
from .render import CLASS_NAME, render
from .walk import Graph, functional_of, walk

_counter = itertools.count()


def keras_to_torch(model, *, example_inputs=None, io_layout: str = "source", builder: str | None = None):
    """Rebuild a Keras 3 Sequential/Functional model as a readable torch ``nn.Module``.

    The module is generated as Python source (``module._xlate_source``), instantiated from it
    and loaded with the Keras weights moved through the table's named transforms; it is
    returned in eval mode, like a Keras model called without ``training=True``.
    ``io_layout="source"`` takes and returns the Keras (channels-last) layout, ``"native"``
    takes and returns channels-first feature maps. ``example_inputs`` (optional, Keras layout)
    fill in the sizes the model leaves unknown in the input specs the parity check samples from.
    Layers no table row converts (custom layers, keras-hub blocks) and subclassed models are
    captured with torch.export in a torch-backend child process and written as classes of their
    own (``traced/``). The child loads the model from a ``.keras`` file saved here; a model whose
    classes cannot round-trip through one can name a ``builder`` instead, ``"module:function"``
    returning the same model built (the weights still come from ``model``). Raises
    UnsupportedOpError listing every layer neither route can convert (``xlate.keras_to_torch``
    then tries ONNX).
    """
    import keras

    if not isinstance(model, keras.Layer):
        raise BadInputError(f"expected a keras.Model, got {type(model).__name__}")
    if io_layout not in ("source", "native"):
        raise BadInputError(f"io_layout must be 'source' or 'native', got {io_layout!r}")
    if builder is not None and (not isinstance(builder, str) or not re.fullmatch(r"[\w.]+:\w+", builder)):
        raise BadInputError(f"builder must be 'module:function', got {builder!r}")
    if functional_of(model) is None:
        return _subclassed(model, example_inputs, io_layout, builder)
    graph = walk(model)
    emitter, resolve = _emit(model, graph, io_layout, example_inputs, builder)
    source, out_perms = render(emitter, model_name=model.name, version=__version__)
    source = resolve(source)
    module = instantiate(source, emitter.state)
    io = IOSpec(
        inputs=_input_specs(model, graph, example_inputs, traced=bool(emitter.traced)),
        input_perms=tuple(None if plan.is_identity(p) else tuple(p) for p in emitter.input_perms),
        output_perms=tuple(None if plan.is_identity(p) else plan.inverse(p) for p in out_perms),
        source="keras",
    )
    notes = list(emitter.notes)
    if any(s.low == 1 and s.name.endswith("padding_mask") for s in io.inputs):
        notes.append("parity inputs: padding masks sampled all ones (on rows whose every key is masked Keras' own "
                     "backends disagree)")
    record = ConversionRecord(direction="keras2torch", path="direct", io=io, layers=emitter.layers,
                              rows_used=emitter.rows_used, notes=notes)
    attach(module, record)
    object.__setattr__(module, "_xlate_source", source)
    return module


def _emit(model, graph: Graph, io_layout: str, example_inputs, builder=None):
    """Run the table route, the layers no row converts traced first (``traced/``); a layer whose
    row refuses its configuration is traced too, in a second run. Returns the emitter and the
    function that completes its source (the traced classes' constructor calls)."""
    from .traced import bridge

    indices = bridge.rowless(graph)
    while True:
        traced = None
        emitter = Emitter(graph, io_layout=io_layout)
        if indices:
            arrays = make_inputs(_input_specs(model, graph, example_inputs, traced=True), samples=1, seed=0)[0]
            traced = bridge.trace_nodes(model, graph, indices, arrays, builder=builder)
            emitter.traced, emitter.classes = traced.converters, traced.classes
            emitter.helpers |= traced.helpers
        try:
            emitter.run()
            break
        except UnsupportedOpError as refused:
            more = set(bridge.refused_nodes(graph, refused)) - set(indices)
            if not more:
                raise
            indices = sorted(set(indices) | more)
    if traced is None:
        return emitter, str
    emitter.rows_used.update(traced.rows)
    emitter.notes += traced.notes
    return emitter, traced.resolve


def _subclassed(model, example_inputs, io_layout: str, builder=None):
    """A subclassed model: captured whole and written as ``Net`` (``traced.bridge.trace_model``)."""
    from .traced.bridge import trace_model

    if io_layout != "source":
        raise BadInputError("io_layout='native' is not available for a subclassed model: its traced code computes "
                            "in the Keras layout; convert with io_layout='source'")
    specs = _subclassed_specs(model, example_inputs)
    arrays = make_inputs(specs, samples=1, seed=0)[0]
    names = ["x"] if len(specs) == 1 else [f"x{i}" for i in range(len(specs))]
    source, state, program, writer = trace_model(model, arrays, model_name=model.name, version=__version__,
                                                 input_names=names, builder=builder)
    module = instantiate(source, state)
    shapes = [tuple(None if i == 0 or not isinstance(d, int) else d for i, d in enumerate(m.shape))
              for _, _, m in program.inputs]
    specs = tuple(TensorSpec(shape, s.dtype, 0, s.high, s.name) for shape, s in zip(shapes, specs))
    record = ConversionRecord(direction="keras2torch", path="direct", io=IOSpec(inputs=specs, source="keras"),
                              rows_used=writer.rows + Counter(traced=1),
                              notes=[*program.notes, f"subclassed model {type(model).__name__} traced whole"])
    attach(module, record)
    object.__setattr__(module, "_xlate_source", source)
    return module


def _subclassed_specs(model, example_inputs) -> list[TensorSpec]:
    """Input specs of a subclassed model: from ``example_inputs``, else from the shapes Keras
    recorded when the model was built (float32)."""
    bound = embedding_bound(model)
    if example_inputs is not None:
        arrays = list(example_inputs.values()) if isinstance(example_inputs, dict) else (
            list(example_inputs) if isinstance(example_inputs, (list, tuple)) else [example_inputs])
        shapes = [np.shape(a) for a in arrays]
        dtypes = [str(np.asarray(a).dtype) for a in arrays]
    else:
        config = model.get_build_config() if getattr(model, "built", False) else None
        shape = (config or {}).get("input_shape")
        if shape is None:
            raise BadInputError(f"subclassed model {type(model).__name__!r} has no input shape yet: call it once or "
                                "pass example_inputs")
        shapes = list(shape) if isinstance(shape, list) or (shape and isinstance(shape[0], (list, tuple))) else [shape]
        dtypes = ["float32"] * len(shapes)
    return [TensorSpec((None, *tuple(s)[1:]), d, 0, bound if ("int" in d or d == "bool") else None, f"x{i}")
            for i, (s, d) in enumerate(zip(shapes, dtypes))]


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


def _recorded_examples(model, graph: Graph, examples: list) -> list:
    """For a model xlate converted from torch, the example shapes it was traced from (the gate's
    default sizes; a free height and width would otherwise be sampled at 8, too small for a deep
    CNN's stem). Only where each one fits the Keras input's static sizes."""
    from ..record import record_of

    record = record_of(model)
    specs = list(record.io.inputs) if record is not None and record.io is not None else []
    if len(specs) != len(graph.inputs):
        return examples
    out = []
    for tid, spec, current in zip(graph.inputs, specs, examples):
        shape, example = graph.tensors[tid].shape, getattr(spec, "example", None)
        fits = example is not None and len(example) == len(shape) and all(
            d is None or d == e for d, e in zip(shape, example))
        out.append(tuple(int(e) for e in example) if fits and current is None else current)
    return out


def _input_specs(model, graph: Graph, example_inputs=None, *, traced: bool = False) -> tuple[TensorSpec, ...]:
    """The specs the parity check samples inputs from. Integer inputs read by an Embedding stay
    below its vocabulary. With traced layers, a ``padding_mask`` input is sampled all ones: a random
    0/1 mask masks every key of some rows, and on such rows Keras' TensorFlow and torch backends
    themselves disagree (masked softmax vs scaled_dot_product_attention); the tests check
    right-padded masks explicitly."""
    import keras

    examples = _example_shapes(example_inputs, len(graph.inputs))
    if example_inputs is None:
        examples = _recorded_examples(model, graph, examples)
    bound = embedding_bound(model)
    specs = []
    for tid, name, example in zip(graph.inputs, graph.input_names, examples):
        t = graph.tensors[tid]
        shape = t.shape
        if example is not None:
            if len(example) != len(shape):
                raise BadInputError(f"example input {name!r} has shape {example}, the model expects rank {len(shape)}")
            example = tuple(int(e) for e in example)
        is_int = "int" in t.dtype
        vocab = [n.op.input_dim for n in graph.consumers(tid)
                 if isinstance(n.op, keras.layers.Embedding) and isinstance(getattr(n.op, "input_dim", None), int)]
        low = 1 if traced and is_int and str(name).endswith("padding_mask") else 0
        # the free sizes stay None (the parity gate checks other sizes of them); the example fills them in
        specs.append(TensorSpec(shape, t.dtype, low, (min(vocab) if vocab else bound) if is_int else None, name,
                                example=example))
    return tuple(specs)
