"""Bounds on dynamic sizes that a traced graph implies, the same way for both trace front ends.

A graph can be valid for a dynamic size only up to some length without any Python condition
saying so:

- a slice of a fixed-length tensor up to the size: BERT's ``position_ids[:, :T]`` (T <= its length);
- a lookup of positions ``arange(T)`` in a learned table: GPT-2's ``wpe(arange(T))``
  (T <= the table's rows, the model's ``n_positions`` / ``max_position_embeddings``).

``graph_bounds(graph)`` finds them as (symbol, high, reason); the front ends record them in the
DimPlan, so the record, ``xlate inspect`` and the parity gate use the same bound.
"""

from __future__ import annotations

from .source_graph import Ref, SourceGraph, Sym, TensorMeta, sym_names

#: ops that pass index values through unchanged (the walk from an embedding back to its arange)
_PASS_VALUES = ("aten.unsqueeze.", "aten.expand.", "aten.view.", "aten.reshape.", "aten.clone.", "aten.alias.",
                "aten._to_copy.", "aten.to.", "aten.contiguous.", "aten.lift_fresh_copy.", "aten.squeeze.")


def _size(graph: SourceGraph, arg):
    """A size argument as an int or a Sym (export graphs pass sizes as references to sym_size nodes)."""
    if isinstance(arg, Ref):
        meta = graph.node(arg.name).meta
        return meta if isinstance(meta, (int, Sym)) else None
    return arg if isinstance(arg, (int, Sym)) else None


def _linear(expr: str, graph: SourceGraph):
    """(symbol, c) when ``expr`` is ``s`` or ``s + c`` / ``s - c`` for an input symbol s."""
    names = sym_names(expr)
    if len(names) != 1:
        return None
    (name,) = names
    if name not in graph.symbols:
        return None
    rest = expr.replace(" ", "").replace(name, "", 1)
    if rest == "":
        return name, 0
    if rest.lstrip("+-").isdigit() and rest[0] in "+-":
        return name, int(rest)
    return None


def _what(graph: SourceGraph, ref) -> str:
    if isinstance(ref, Ref) and ref.name in graph.params:
        return graph.params[ref.name][0]
    return getattr(ref, "name", "a tensor")


def _slice_bound(graph: SourceGraph, node):
    x = node.args.get("input")
    end = _size(graph, node.args.get("end"))
    start = _size(graph, node.args.get("start", 0))
    if not isinstance(end, Sym) or start not in (0, None) or not isinstance(x, Ref):
        return None
    meta = graph.node(x.name).meta
    if not isinstance(meta, TensorMeta):
        return None
    dim = int(node.args.get("dim", 0)) % meta.rank
    length = meta.shape[dim]
    form = _linear(end.expr, graph)
    if not isinstance(length, int) or form is None:
        return None
    name, c = form
    return name, length - c, f"slice of {_what(graph, x)} ({length} long) at {node.module_path or '<root>'}"


def _arange_offset(graph: SourceGraph, ref):
    """(symbol, highest index - symbol) when ``ref`` holds arange(start, s + c) plus constants."""
    offset = 0
    for _ in range(16):
        if not isinstance(ref, Ref):
            return None
        node = graph.node(ref.name)
        if node.target.startswith(_PASS_VALUES):
            ref = node.args.get("input")
            continue
        if node.target in ("aten.add.Tensor", "aten.add.Scalar") and isinstance(node.args.get("other"), int):
            offset += node.args["other"]
            ref = node.args.get("input")
            continue
        if node.target.startswith("aten.arange."):
            end = _size(graph, node.args.get("end"))
            start = _size(graph, node.args.get("start", 0))
            form = _linear(end.expr, graph) if isinstance(end, Sym) else None
            if form is None or not isinstance(start, int) or node.args.get("step", 1) != 1:
                return None
            name, c = form
            return name, c - 1 + offset
        return None
    return None


def _embedding_bound(graph: SourceGraph, node):
    weight, indices = node.args.get("weight"), node.args.get("indices")
    if not isinstance(weight, Ref) or weight.name not in graph.params:
        return None
    found = _arange_offset(graph, indices)
    if found is None:
        return None
    name, top = found  # the highest index is s + top
    rows = graph.params[weight.name][1].shape[0]
    return name, rows - 1 - top, (f"position table {graph.params[weight.name][0]} ({rows} rows) looked up by "
                                  f"position at {node.module_path or '<root>'}")


def graph_bounds(graph: SourceGraph) -> list[tuple[str, int, str]]:
    """(input symbol, highest size, reason) for every bound the graph implies."""
    out = []
    for node in graph.nodes:
        if node.op != "call":
            continue
        if node.target.startswith(("aten.slice.", "aten.narrow.")):
            found = _slice_bound(graph, node)
        elif node.target == "aten.embedding.default":
            found = _embedding_bound(graph, node)
        else:
            continue
        if found is not None:
            out.append(found)
    return out


def apply_bounds(graph: SourceGraph, plan) -> None:
    """Record the graph's bounds in the DimPlan (its symbol names are the graph's input symbols)."""
    for name, high, reason in graph_bounds(graph):
        plan.narrow(name, None, high, reason)
