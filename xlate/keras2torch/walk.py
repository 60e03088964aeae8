"""Walk stage: trace a Keras 3 functional graph into small plain node objects.

Sequential and Functional models (nested ones included) are flattened into one list of
``Node``s in an order that reads well as code: each output is computed right after what it
needs, so a branch is emitted as one contiguous run of statements. Shared layers keep one
``op`` object across their calls. Raw ``keras.ops`` calls on KerasTensors are graph nodes too.
A subclassed model has no graph to walk: ``walk`` raises UnsupportedOpError for one (the converter
then captures it whole, ``traced/``); one used as a layer inside a functional model is one node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import BadInputError, UnsupportedOpError


@dataclass(frozen=True)
class Ref:
    """A tensor argument inside a node's ``args``/``kwargs`` (the KerasTensor it replaces)."""

    id: int


@dataclass
class Tensor:
    id: int
    shape: tuple  # Keras shape, batch axis first (None where unknown)
    dtype: str
    name: str = ""

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class Node:
    """One call of a Keras layer or op."""

    name: str  # the Keras layer/op name
    path: str  # where it sits, e.g. "outer/encoder/dense" (for messages)
    op: object  # the keras Operation (a Layer, or a keras.ops class instance)
    kind: str  # the table key: "keras.layers.Dense", "keras.ops.add", "activation:relu"...
    args: tuple
    kwargs: dict
    inputs: list[int]  # tensor ids, flat, in argument order (duplicates kept)
    outputs: list[int]
    _config: dict | None = field(default=None, repr=False)

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = self.op.get_config()
        return self._config


@dataclass
class Graph:
    name: str
    tensors: dict[int, Tensor]
    nodes: list[Node]
    inputs: list[int]
    outputs: list[int]
    input_names: list[str]
    output_keys: list[str] | None  # dict outputs: their keys, in output order
    calls: dict[int, int]  # id(op) -> number of calls in the graph

    def consumers(self, tensor_id: int) -> list[Node]:
        return [n for n in self.nodes if tensor_id in n.inputs]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def kind_of(op) -> str:
    """The table key of a Keras operation."""
    import keras

    cls = type(op)
    module = cls.__module__
    if module.startswith("keras.src.ops."):
        return f"keras.ops.{_snake(cls.__name__)}"
    if cls.__name__ == "Activation" and module.startswith("keras.src.layers."):
        act = op.get_config().get("activation")
        return f"activation:{act if isinstance(act, str) else getattr(act, '__name__', act)}"
    if getattr(keras.layers, cls.__name__, None) is cls:
        return f"keras.layers.{cls.__name__}"
    public = _public_layer_names().get(cls)
    if public is not None:  # exported under another name (GroupedQueryAttention as GroupQueryAttention)
        return f"keras.layers.{public}"
    return f"{module}.{cls.__qualname__}"


def _public_layer_names() -> dict:
    import keras

    if not _PUBLIC:
        for name in sorted(dir(keras.layers)):
            value = getattr(keras.layers, name)
            if isinstance(value, type) and not name.startswith("_"):
                _PUBLIC.setdefault(value, name)
    return _PUBLIC


_PUBLIC: dict = {}


def _is_functional(op) -> bool:
    return hasattr(op, "_nodes_by_depth") and hasattr(op, "_inputs_struct")


def functional_of(model):
    """The functional graph of a Functional or built Sequential model, or None (subclassed)."""
    import keras

    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise BadInputError(
                f"Sequential model {model.name!r} has no input shape yet: build it with keras.Input(...) "
                "as its first layer or call it once before converting")
        return fn
    if _is_functional(model):
        return model
    return None


def _replace_tensors(structure, env: dict[int, int]):
    from keras import KerasTensor

    if isinstance(structure, KerasTensor):
        return Ref(env[id(structure)])
    if isinstance(structure, list):
        return [_replace_tensors(s, env) for s in structure]
    if isinstance(structure, tuple):
        return tuple(_replace_tensors(s, env) for s in structure)
    if isinstance(structure, dict):
        return {k: _replace_tensors(v, env) for k, v in structure.items()}
    return structure


def _flat_tensors(structure) -> list:
    from keras import KerasTensor

    if isinstance(structure, KerasTensor):
        return [structure]
    if isinstance(structure, (list, tuple)):
        return [t for s in structure for t in _flat_tensors(s)]
    if isinstance(structure, dict):
        return [t for v in structure.values() for t in _flat_tensors(v)]
    return []


class Walker:
    """Walks functional graphs into ``Node``s over fresh tensor ids (from ``first_id``)."""

    def __init__(self, first_id: int = 0):
        self.tensors: dict[int, Tensor] = {}
        self.nodes: list[Node] = []
        self.calls: dict[int, int] = {}
        self.next_id = first_id

    def new_tensor(self, kt) -> int:
        tid = self.next_id
        self.next_id += 1
        self.tensors[tid] = Tensor(tid, tuple(kt.shape), str(kt.dtype), getattr(kt, "name", ""))
        return tid

    def walk_function(self, fn, env: dict[int, int], prefix: str) -> None:
        """Append the nodes of functional ``fn`` (its inputs already in ``env``)."""
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for knode in fn._nodes_by_depth[depth]:
                op = knode.operation
                if op is None or knode.is_input:
                    continue
                if any(id(t) not in env for t in knode.input_tensors):
                    continue  # not connected to the inputs (Keras skips it too)
                path = f"{prefix}{op.name}"
                if _is_keras_model(op):
                    inner = functional_of(op)
                    if inner is not None:
                        self.walk_nested(inner, knode, env, path)
                        continue
                # anything else is one node; a subclassed model used as a layer too (no row: traced whole)
                call_kwargs = {**knode.arguments.kwargs, **_implicit_masks(op, knode.arguments)}
                for t in _flat_tensors(call_kwargs):
                    self.ensure(t, env, prefix)
                self.add_node(op, path, knode.arguments.args, call_kwargs, knode.outputs, env)

    def add_node(self, op, path: str, args, kwargs, outputs, env: dict[int, int]) -> None:
        inputs = [env[id(t)] for t in _flat_tensors((args, kwargs))]
        args, kwargs = _replace_tensors(args, env), _replace_tensors(kwargs, env)
        out_ids = []
        for t in outputs:
            env[id(t)] = self.new_tensor(t)
            out_ids.append(env[id(t)])
        self.calls[id(op)] = self.calls.get(id(op), 0) + 1
        self.nodes.append(Node(op.name, path, op, kind_of(op), args, kwargs, inputs, out_ids))

    def ensure(self, kt, env: dict[int, int], prefix: str) -> None:
        """Add the ops that compute ``kt`` from tensors already walked (a Keras mask that no graph
        node reads: Keras computes it at run time with the ops its compute_mask recorded)."""
        if id(kt) in env:
            return
        history = getattr(kt, "_keras_history", None)
        if history is None or history.operation is None:
            raise UnsupportedOpError([("a Keras mask computed outside the model's graph", prefix or "model")],
                                     direction="keras2torch")
        op = history.operation
        knode = op._inbound_nodes[history.node_index]
        for t in knode.input_tensors:
            self.ensure(t, env, prefix)
        self.add_node(op, f"{prefix}{op.name}", knode.arguments.args, knode.arguments.kwargs, knode.outputs, env)

    def walk_nested(self, fn, knode, env: dict[int, int], path: str) -> None:
        outer_inputs = _flat_tensors((knode.arguments.args, knode.arguments.kwargs))
        inner_inputs = list(fn.inputs)
        if len(outer_inputs) != len(inner_inputs):
            raise BadInputError(f"nested model {path!r} is called with {len(outer_inputs)} tensors but has "
                                f"{len(inner_inputs)} inputs")
        if any(getattr(o, "_keras_mask", None) is not None for o in outer_inputs) and any(
                getattr(layer, "_call_has_mask_arg", False) for layer in fn._flatten_layers(include_self=False)):
            raise UnsupportedOpError([(f"a Keras mask entering nested model {fn.name!r}", path)],
                                     direction="keras2torch",
                                     hint="flatten the nested model into the outer one, or mask inside it")
        inner_env = {id(i): env[id(o)] for i, o in zip(inner_inputs, outer_inputs)}
        self.walk_function(fn, inner_env, f"{path}/")
        for outer, inner in zip(knode.outputs, fn.outputs):
            env[id(outer)] = inner_env[id(inner)]


def _keras_mask_of(structure):
    """The Keras masks attached to the KerasTensors of ``structure`` (same nesting), or None."""
    from keras import KerasTensor

    if isinstance(structure, KerasTensor):
        return getattr(structure, "_keras_mask", None)
    if isinstance(structure, (list, tuple)):
        masks = [_keras_mask_of(s) for s in structure]
        return masks if any(m is not None for m in masks) else None
    return None


def _implicit_masks(op, arguments) -> dict:
    """The mask arguments Keras' ``Layer.__call__`` fills in from its inputs' Keras masks at run
    time (``mask=``, or ``query_mask=``/``value_mask=``... per tensor argument), where the graph
    node does not record them (it keeps the call's own arguments for some layers)."""
    import inspect

    params = getattr(op, "call_signature_parameters", None)
    if not params or not any(p == "mask" or p.endswith("_mask") for p in params):
        return {}
    try:
        bound = inspect.signature(op.call).bind(*arguments.args, **arguments.kwargs).arguments
    except TypeError:
        return {}
    tensors = {k: v for k, v in bound.items() if _flat_tensors(v)}
    found = {}
    if len(tensors) == 1 and "mask" in params and bound.get("mask") is None:
        found["mask"] = _keras_mask_of(next(iter(tensors.values())))
    elif len(tensors) > 1:
        for name, value in tensors.items():
            if f"{name}_mask" in params and bound.get(f"{name}_mask") is None:
                found[f"{name}_mask"] = _keras_mask_of(value)
    return {k: v for k, v in found.items() if v is not None}


def _is_keras_model(op) -> bool:
    import keras

    return isinstance(op, keras.Model)


def readable_order(nodes: list[Node], outputs: list[int]) -> list[Node]:
    """A topological order in which each value is computed right before it is needed
    (post-order depth-first from the outputs), so branches stay contiguous."""
    producer = {t: n for n in nodes for t in n.outputs}
    order: list[Node] = []
    done: set[int] = set()
    for out in outputs:
        stack = [(producer.get(out), False)]
        while stack:
            node, expanded = stack.pop()
            if node is None or id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            for t in reversed(node.inputs):
                dep = producer.get(t)
                if dep is not None and id(dep) not in done:
                    stack.append((dep, False))
    return order


def walk(model) -> Graph:
    """Trace a Keras model into a ``Graph``. Raises UnsupportedOpError for subclassed models."""
    fn = functional_of(model)
    if fn is None:
        raise UnsupportedOpError([(f"subclassed model {type(model).__name__}", model.name)], direction="keras2torch",
                                 hint="a subclassed Keras model has a Python call(), not a graph: keras_to_torch "
                                      "captures it whole with torch.export instead (keras2torch/traced)")
    w = Walker()
    env: dict[int, int] = {}
    inputs = []
    for t in fn.inputs:
        env[id(t)] = w.new_tensor(t)
        inputs.append(env[id(t)])
    w.walk_function(fn, env, "")
    missing = [t for t in fn.outputs if id(t) not in env]
    if missing:
        raise BadInputError(f"model {model.name!r}: outputs {[t.name for t in missing]} are not connected to its inputs")
    outputs = [env[id(t)] for t in fn.outputs]
    struct = fn._outputs_struct
    output_keys = list(struct.keys()) if isinstance(struct, dict) else None
    if output_keys is not None:
        # Keras flattens dict outputs in sorted-key order; keep the keys aligned with fn.outputs
        import keras

        output_keys = [k for k, _ in keras.tree.flatten_with_path(struct)]
        output_keys = [k[0] if isinstance(k, tuple) else k for k in output_keys]
        if len(output_keys) == len(struct):  # a flat dict: return it in its own order, as Keras does
            outputs = [outputs[output_keys.index(k)] for k in struct]
            output_keys = list(struct)
    nodes = readable_order(w.nodes, outputs)
    input_names = [getattr(t, "name", f"x{i}") for i, t in enumerate(fn.inputs)]
    return Graph(model.name, w.tensors, nodes, inputs, outputs, input_names, output_keys, w.calls)
