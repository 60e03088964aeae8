"""Converting the layers inside a wrapper (TimeDistributed, Pipeline...) from that wrapper's converter.

``run_inner`` hands one inner layer, called on values the wrapper has already written, to that
layer's own row and converter, as if it were a node of the Keras graph; a whole Sequential or
Functional model is walked onto fresh tensors and each of its layers converted by its own row.
The inner results are no tensors of the outer graph: their values stay alive until the wrapper's
node is done, and no per-layer record is kept for them. These functions work on the emitter's
bookkeeping (live variables, pending consumers) and belong with ``emit.Emitter``.
"""

from __future__ import annotations

from .registry import NotConvertible, get_converter
from .walk import Node, Ref, Tensor, Walker, functional_of, kind_of, readable_order


def run_inner(em, outer: Node, layer, values: list, outputs: list[tuple[tuple, str]]) -> list:
    """Convert ``layer`` called on ``values`` (emitter ``Value``s) inside the converter of ``outer``.
    ``outputs`` are the (Keras shape, dtype) of its results; their values are returned."""
    import keras

    if isinstance(layer, keras.Model):
        fn = functional_of(layer)
        if fn is None:
            raise NotConvertible(f"subclassed model {type(layer).__name__} inside {type(outer.op).__name__}")
        return _run_graph(em, outer, fn, values)

    def tensor(shape, dtype) -> int:
        tid = max(em.graph.tensors) + 1
        em.graph.tensors[tid] = Tensor(tid, tuple(shape), str(dtype))
        em._remaining[tid] = 1
        return tid

    ins = [tensor(v.shape, v.dtype) for v in values]
    for tid, v in zip(ins, values):
        em._bind(tid, v.var, v.perm, flat_chw=v.flat_chw)
    outs = [tensor(shape, dtype) for shape, dtype in outputs]
    inner = Node(layer.name, f"{outer.path}/{layer.name}", layer, kind_of(layer), tuple(Ref(t) for t in ins), {},
                 ins, outs)
    row = em.table.by_keras.get(inner.kind)
    fn = get_converter(row.hook) if row is not None and "keras2torch" in row.directions else None
    if fn is None:
        raise NotConvertible(f"{inner.kind} inside {type(outer.op).__name__} has no table row")
    saved, n_layers = (em._node, em._node_tmp), len(em.layers)
    em._node, em._node_tmp = inner, None
    try:
        fn(em, inner, row)
    finally:
        em._node, em._node_tmp = saved
    del em.layers[n_layers:]  # the inner layer's output is no tensor of the Keras graph
    em.use_row(row)
    for tid in ins:
        em._consume(tid)
    result = [em.values[tid] for tid in outs]
    for v in result:
        em._live[v.var] += 1
        em._temps.append(v.var)
    return result


def _run_graph(em, outer: Node, fn, values: list) -> list:
    """``run_inner`` for a functional model: walk its graph onto fresh tensors and convert each node."""
    walker = Walker(first_id=max(em.graph.tensors) + 1)
    env = {id(kt): walker.new_tensor(kt) for kt in fn.inputs}
    walker.walk_function(fn, env, f"{outer.path}/")
    outs = [env[id(t)] for t in fn.outputs]
    nodes = readable_order(walker.nodes, outs)
    em.graph.tensors.update(walker.tensors)
    for op, count in walker.calls.items():
        em.graph.calls[op] = em.graph.calls.get(op, 0) + count
    for kt, v in zip(fn.inputs, values):
        em._bind(env[id(kt)], v.var, v.perm, flat_chw=v.flat_chw)
    for tid in [*(t for n in nodes for t in set(n.inputs)), *outs]:
        em._remaining[tid] += 1
    outer_temps, outer_node, em._temps = em._temps, (em._node, em._node_tmp), []
    n_layers = len(em.layers)
    for inner in nodes:
        em._convert(inner)
    em._temps = outer_temps
    em._node, em._node_tmp = outer_node
    del em.layers[n_layers:]
    result = [em.values[tid] for tid in outs]
    for tid, v in zip(outs, result):
        em._live[v.var] += 1
        em._temps.append(v.var)
        em._consume(tid)
    return result
