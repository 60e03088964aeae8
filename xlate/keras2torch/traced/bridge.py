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
from .classes import ClassRegistry
from .regions import Plan
from .source import ProgramWriter, Retry, Written, attr_name

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
    if getattr(node.op, "stateful", False):  # state carried across calls: a capture would drop it
        return "stateful=True (state carried from one batch to the next)"
    cls = type(node.op)
    if not cls.__module__.startswith("keras.") and not importable(cls):
        return f"class {cls.__qualname__} is not importable (defined in {cls.__module__})"
    return None


@dataclass
class TracedLayers:
    converters: dict = field(default_factory=dict)  # id(node) -> (row, converter)
    classes: list = field(default_factory=list)
    resolve: object = None  # fills the class tokens of the generated source in
    helpers: set = field(default_factory=set)
    rows: Counter = field(default_factory=Counter)
    notes: list = field(default_factory=list)


def write_program(program, arrays, root_layer, registry: ClassRegistry, *, root_class=None, root_doc=""):
    """Plan and write one program's classes into ``registry``; returns (Written, writer)."""
    from .native import Natives, resolve

    plan = Plan(program, arrays)

    def attr_of(scope):
        parent = scope.rsplit(".", 1)[0] if "." in scope else ""
        owner = plan.class_at_or_above(parent)
        return attr_name(scope[len(owner) + 1:] if owner else scope)

    def config_of(scope):
        info = program.scopes.get(scope)
        layer = resolve(root_layer, info.locator) if info is not None and root_layer is not None else None
        try:
            return layer.get_config() if layer is not None and type(layer).__name__ == info.cls else {}
        except Exception:  # noqa: BLE001 - a configuration only names constructor arguments
            return {}

    natives = Natives(root_layer, plan, attr_of)
    plan.decide(natives)
    for _ in range(len(plan.by_scope) + 1):
        saved = registry.snapshot()
        writer = ProgramWriter(plan, natives, registry, root_class=root_class, root_doc=root_doc,
                               config_of=config_of)
        try:
            return writer.write(), writer
        except Retry as r:
            registry.restore(saved)
            if r.scope == "":
                break
            plan.inline(r.scope)
    raise UnsupportedOpError([(f"{program.cls} (its graph reads a size no tensor of the layer carries)",
                               program.name)], direction="keras2torch")


def trace_layers(model, graph, indices: list[int], example_arrays, *, builder=None) -> TracedLayers:
    from .capture import capture_layers

    programs, arrays = capture_layers(model, graph, indices, example_arrays, builder=builder)
    registry = ClassRegistry(taken=("Net",))
    out = TracedLayers()
    written_by, by_layer = {}, {}
    for index in indices:
        node = graph.nodes[index]
        program = programs[index]
        first = by_layer.get(id(node.op))
        if first is not None and any(n.startswith("same class, configuration and input shapes") for n in program.notes):
            written = written_by[first]  # a shared layer called again: the same module, one set of weights
        else:
            if first is not None:
                out.notes.append(f"{node.path}: a shared layer called with other input shapes: this call is a "
                                 "separate module whose weights start as a copy (Keras ties them)")
            written, writer = write_program(program, arrays, node.op, registry)
            out.helpers |= writer.helpers
            out.rows.update(writer.rows)
            by_layer.setdefault(id(node.op), index)
        written_by[index] = written
        out.converters[id(node)] = (TRACED_ROW, _converter(written, program))
        out.notes += [f"{node.path}: {n}" for n in program.notes if not n.startswith("capture ")]
    out.classes = registry.finalize()
    out.resolve = registry.resolve
    seconds = {n for p in programs.values() for n in p.notes if n.startswith("capture ")}
    out.notes += sorted(seconds)
    out.notes += [f"{graph.nodes[i].path}: traced layer {type(graph.nodes[i].op).__name__} -> class "
                  f"{registry.name_of(w.cls)}" for i, w in written_by.items()]
    return out


# Ops that compute each element from the same element of their operands: a program made only of
# them gives the same answer in any layout, so it takes its inputs as they are (no permutes).
_ELEMENTWISE = ("aten.add.", "aten.sub.", "aten.mul.", "aten.div.", "aten.neg.", "aten.relu.", "aten.sigmoid.",
                "aten.tanh.", "aten.gelu.", "aten.silu.", "aten.exp.", "aten.log.", "aten.sqrt.", "aten.rsqrt.",
                "aten.abs.", "aten.pow.Tensor_Scalar", "aten.maximum.", "aten.minimum.", "aten.clamp.",
                "aten.where.self", "aten.square.", "aten.erf.", "aten.softplus.", "aten.leaky_relu.")


def layout_free(program) -> bool:
    ranks = {m.rank for _, _, m in program.inputs if m.kind == "tensor"}
    if len(ranks) != 1 or program.weights or any(m.rank for _, m in program.constants.values()):
        return False
    return all(op.target.startswith(_ELEMENTWISE) and op.meta.kind == "tensor" and op.meta.rank in ranks
               for op in program.ops)


def _converter(written: Written, program):
    free = layout_free(program)

    def convert(em, node, row):
        perms = [em.value(t).perm for t in node.inputs]
        # layout-free code takes the layout most of its inputs already have (a channels-first one on a tie)
        layout = max(perms, key=lambda p: (perms.count(p), p != tuple(range(len(p))))) if free else "keras"
        inputs = [em.in_layout(t, layout).var for t in node.inputs]
        attr = em.module(node, written.cls)  # the class token: the registry fills the constructor call in
        for key, value in written.state.items():
            em.state[f"{attr}.{key}"] = value
        expr = f"self.{attr}({', '.join(inputs)})"
        perm = None if layout == "keras" else layout
        if len(node.outputs) == 1:
            em.assign(node, expr, perm, module=attr)
        else:
            em.assign_many(node, expr, [perm] * len(node.outputs), module=attr)

    return convert


def trace_model(model, example_arrays, *, model_name: str, version: str, input_names=None, builder=None):
    """Capture a subclassed model whole; returns (source, state, program, writer)."""
    from ..render import CLASS_NAME, assemble
    from .capture import capture_model

    program, arrays = capture_model(model, example_arrays, input_names=input_names, builder=builder)
    registry = ClassRegistry(taken=(CLASS_NAME,))
    inputs = []
    for _, arg, meta in program.inputs:
        shape = ", ".join("N" if i == 0 else (str(d) if isinstance(d, int) else "?") for i, d in enumerate(meta.shape))
        inputs.append(f"        {arg}: ({shape}) {meta.dtype}")
    title = f"Keras model {model_name!r} ({type(model).__name__}), rebuilt by xlate {version} from its torch.export capture."
    doc = "\n".join([title, "", "    Inputs, in the Keras layout:", *inputs, "    "])
    written, writer = write_program(program, arrays, model, registry, root_class=CLASS_NAME, root_doc=doc)
    helpers = _helpers(writer.helpers)
    text = "\n\n\n".join([*helpers, *registry.finalize()])
    return assemble(text, model_name, version), written.state, program, writer


def _helpers(names) -> list[str]:
    from ..helpers import HELPERS

    return [HELPERS[name].strip("\n") for name in sorted(names)]


def rowless(graph) -> list[int]:
    """Indices of the nodes no table row can convert whatever their configuration."""
    from ...table import table
    from .. import converters  # noqa: F401 - importing the package registers every converter
    from ..registry import get_converter
    rows = table().by_keras
    out = []
    for i, node in enumerate(graph.nodes):
        row = rows.get(node.kind)
        if row is None or "keras2torch" not in row.directions or get_converter(row.hook) is None:
            out.append(i)
    return out


def refused_nodes(graph, refused: UnsupportedOpError) -> list[int]:
    """Indices of the nodes an emitter run refused."""
    where = {loc for _, loc in refused.unsupported}
    return [i for i, n in enumerate(graph.nodes) if n.path in where]


def trace_nodes(model, graph, indices: list[int], example_arrays, *, builder=None) -> TracedLayers:
    """Trace the listed nodes; raises one UnsupportedOpError for those that cannot take the
    traced route."""
    blocked = [(f"{graph.nodes[i].kind} ({why})", graph.nodes[i].path) for i in indices
               if (why := untraceable(graph.nodes[i], graph)) is not None]
    if blocked:
        raise UnsupportedOpError(blocked, direction="keras2torch",
                                 hint="no table row converts these layers and the traced route cannot capture them; "
                                      "via='onnx' may still convert the model")
    return trace_layers(model, graph, indices, example_arrays, builder=builder)
