"""The traced route's place in Keras -> PyTorch conversion.

Functional models: ``trace_layers`` takes the nodes the table route refuses, captures them in one
child process and writes their classes; the emitter then calls each as ``self.<name>(...)``
through the converter it gets here, with its inputs in the Keras layout (the traced code computes
in Keras' own layout, so a channels-first value is permuted back at the boundary). Subclassed
models: ``trace_model`` captures the whole model and writes it as the ``Net`` class itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ...errors import UnsupportedOpError
from ...table import Row
from .regions import Plan
from .source import ClassRegistry, ProgramWriter, Retry, Written, attr_name

TRACED_ROW = Row(id="traced", family="layer", torch="generated nn.Module (torch.export capture)",
                 keras="a layer no table row converts", hook="traced", directions=("keras2torch",))

# Layers bound to another backend or to strings: torch.export cannot capture them.
UNTRACEABLE = {
    "keras.layers.TFSMLayer": "wraps a TensorFlow SavedModel",
    "keras.layers.JaxLayer": "wraps JAX code",
    "keras.layers.FlaxLayer": "wraps JAX code",
    "keras.layers.TextVectorization": "string preprocessing",
    "keras.layers.StringLookup": "string preprocessing",
    "keras.layers.HashedCrossing": "string preprocessing",
}


def untraceable(node, graph) -> str | None:
    """Why a walked node cannot take the traced route (None: it can)."""
    import keras

    from .capture import importable

    if not isinstance(node.op, keras.Layer):
        return "a raw keras.ops call without a table row"
    if node.kind in UNTRACEABLE:
        return UNTRACEABLE[node.kind]
    if any(graph.tensors[t].dtype == "string" for t in node.inputs + node.outputs):
        return "string tensors"
    cls = type(node.op)
    if not cls.__module__.startswith("keras.") and not importable(cls):
        return f"class {cls.__qualname__} is not importable (defined in {cls.__module__})"
    return None


@dataclass
class TracedLayers:
    converters: dict = field(default_factory=dict)  # id(node) -> (row, converter)
    classes: list = field(default_factory=list)
    helpers: set = field(default_factory=set)
    rows: Counter = field(default_factory=Counter)
    notes: list = field(default_factory=list)


def write_program(program, arrays, root_layer, registry: ClassRegistry, *, root_class=None, root_doc=""):
    """Plan and write one program's classes into ``registry``; returns (Written, writer)."""
    from .native import Natives

    plan = Plan(program, arrays)

    def attr_of(scope):
        parent = scope.rsplit(".", 1)[0] if "." in scope else ""
        owner = plan.class_at_or_above(parent)
        return attr_name(scope[len(owner) + 1:] if owner else scope)

    natives = Natives(root_layer, plan, attr_of)
    plan.decide(natives)
    for _ in range(len(plan.by_scope) + 1):
        saved = (dict(registry.bodies), dict(registry.texts), set(registry.taken))
        writer = ProgramWriter(plan, natives, registry, root_class=root_class, root_doc=root_doc)
        try:
            return writer.write(), writer
        except Retry as r:
            registry.bodies, registry.texts, registry.taken = saved
            if r.scope == "":
                break
            plan.inline(r.scope)
    raise UnsupportedOpError([(f"{program.cls} (its graph reads a size no tensor of the layer carries)",
                               program.name)], direction="keras2torch")


def trace_layers(model, graph, indices: list[int], example_arrays) -> TracedLayers:
    from .capture import capture_layers

    programs, arrays = capture_layers(model, graph, indices, example_arrays)
    registry = ClassRegistry(taken=("Net",))
    out = TracedLayers()
    for index in indices:
        node = graph.nodes[index]
        program = programs[index]
        written, writer = write_program(program, arrays, node.op, registry)
        out.converters[id(node)] = (TRACED_ROW, _converter(written))
        out.helpers |= writer.helpers
        out.rows.update(writer.rows)
        out.notes += [f"{node.path}: {n}" for n in program.notes]
        out.notes += [f"{node.path}: traced layer {type(node.op).__name__} -> class {written.cls}"]
    out.classes = registry.sources()
    return out


def _converter(written: Written):
    def convert(em, node, row):
        inputs = [em.in_layout(t, "keras").var for t in node.inputs]
        attr = em.module(node, f"{written.cls}()")
        for key, value in written.state.items():
            em.state[f"{attr}.{key}"] = value
        expr = f"self.{attr}({', '.join(inputs)})"
        if len(node.outputs) == 1:
            em.assign(node, expr, module=attr)
        else:
            em.assign_many(node, expr, [None] * len(node.outputs), module=attr)

    return convert


def trace_model(model, example_arrays, *, model_name: str, version: str, input_names=None):
    """Capture a subclassed model whole; returns (source, state, program, writer)."""
    from ..emit import CLASS_NAME, assemble
    from .capture import capture_model

    program, arrays = capture_model(model, example_arrays, input_names=input_names)
    registry = ClassRegistry(taken=(CLASS_NAME,))
    inputs = []
    for _, arg, meta in program.inputs:
        shape = ", ".join("N" if i == 0 else (str(d) if isinstance(d, int) else "?") for i, d in enumerate(meta.shape))
        inputs.append(f"        {arg}: ({shape}) {meta.dtype}")
    title = f"Keras model {model_name!r} ({type(model).__name__}), rebuilt by xlate {version} from its torch.export capture."
    doc = "\n".join([title, "", "    Inputs, in the Keras layout:", *inputs, "    "])
    written, writer = write_program(program, arrays, model, registry, root_class=CLASS_NAME, root_doc=doc)
    helpers = _helpers(writer.helpers)
    text = "\n\n\n".join([*helpers, *registry.sources()])
    return assemble(text, model_name, version), written.state, program, writer


def _helpers(names) -> list[str]:
    from ..emit import HELPERS

    return [HELPERS[name].strip("\n") for name in sorted(names)]


def trace_refused(model, graph, refused: UnsupportedOpError, example_arrays) -> TracedLayers:
    """Trace every node the table route refused (``refused.unsupported``); raises one
    UnsupportedOpError for those that cannot take the traced route either."""
    where = {loc for _, loc in refused.unsupported}
    indices = [i for i, n in enumerate(graph.nodes) if n.path in where]
    blocked = [(f"{graph.nodes[i].kind} ({why})", graph.nodes[i].path) for i in indices
               if (why := untraceable(graph.nodes[i], graph)) is not None]
    if blocked:
        raise UnsupportedOpError(blocked, direction="keras2torch",
                                 hint="no table row converts these layers and the traced route cannot capture them; "
                                      "via='onnx' may still convert the model")
    return trace_layers(model, graph, indices, example_arrays)
