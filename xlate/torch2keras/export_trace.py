"""The torch.export front end with dynamic sizes: the fallback of the fast trace.

Every candidate size of the DimPlan is exported as ``Dim.AUTO`` (within the plan's bounds):
torch.export keeps it symbolic where the module allows, and specializes it where a guard in the
module's code needs one value. The exported symbols are renamed to the plan's (``s0`` the batch,
``s1``...), so both front ends name sizes alike; a specialized size is pinned in the plan and the
module exported again, so it keeps the example's size. A batch of 1 is exported at 2 (torch.export
would specialize a size of 1), as the fast trace takes batch decisions at 2: the parity gate runs
the example's batch of 1.
"""

from __future__ import annotations

import re

from .bounds import apply_bounds
from .dims import DimPlan, Traced
from .source_graph import Sym, TensorMeta
from .trace import _as_tuple, export_module, graph_from_exported

SPECIALIZED = "torch.export specialized it (a guard in the module's code needs this size)"


def trace(module, example_inputs, *, dynamic=True):
    """torch.export ``module`` into a SourceGraph: ``dynamic`` True (the batch), False (static) or a
    DimPlan mode ("auto", "batch", "none", {input: {axis: (min, max)}})."""
    mode = {True: "batch", False: "none"}.get(dynamic, dynamic) if isinstance(dynamic, bool) else dynamic
    return ExportTrace(module, example_inputs, mode).graph


def _input_names(module, args, kwargs) -> list[str]:
    import inspect

    if kwargs:
        return list(kwargs)
    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in params[:len(args)]]
    return names + [f"args_{i}" for i in range(len(names), len(args))]


class ExportTrace(Traced):
    """``fx_reason``: why the fast trace did not apply, noted in the graph's ``traced_by``."""

    def __init__(self, module, example_inputs, dynamic="auto", fx_reason: str = ""):
        import torch

        self.module, self.fx_reason = module, fx_reason
        self.args, self.kwargs = _as_tuple(example_inputs)
        values = list(self.args) or list(self.kwargs.values())
        shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else () for v in values]
        self.plan = DimPlan(_input_names(module, self.args, self.kwargs), shapes, dynamic)
        self.graph = None
        self._export()

    def pin(self, names, reason: str) -> None:
        for name in names:
            self.plan.pin(name, reason)
        self._export()

    def _export(self) -> None:
        """Export until no size of the plan is specialized; then record bounds and the dims."""
        while True:
            ep, graph = self._export_once()
            renames, specialized = self._match_symbols(graph)
            if specialized:
                for name in specialized:
                    self.plan.pin(name, SPECIALIZED)
                continue
            graph = _renamed(graph, renames)
            self._record_ranges(ep, renames)
            before = set(self.plan.symbols)
            apply_bounds(graph, self.plan)
            if set(self.plan.symbols) != before:
                continue
            graph.dims = self.plan.finish(graph)
            if self.fx_reason:
                graph.traced_by = f"{graph.traced_by} (the fx fast path does not apply: {self.fx_reason})"
            self.graph = graph
            return

    def _example(self):
        """The example inputs, with a batch of 1 repeated to 2 when the batch is to stay dynamic."""
        import torch

        batch = self.plan.symbols.get("s0")
        values = list(self.args) or list(self.kwargs.values())
        if batch is not None and batch.size == 1:
            values = [v.expand(2, *v.shape[1:]).clone() if (i, 0) in batch.members else v
                      for i, v in enumerate(values)]
        dims = [{} if isinstance(v, torch.Tensor) else None for v in values]
        from torch.export import Dim

        for sym in self.plan.active():
            for index, axis in sym.members:
                dims[index][axis] = Dim.AUTO(min=sym.low, max=sym.high) if sym.high is not None else Dim.AUTO
        dims = [d or None for d in dims]
        if self.kwargs:
            return (), dict(zip(self.kwargs, values)), dict(zip(self.kwargs, dims))
        return tuple(values), {}, _by_signature(self.module, dims)

    def _export_once(self):
        from ..errors import UnsupportedOpError

        args, kwargs, dynamic_shapes = self._example()
        if self.plan.symbols:
            try:
                ep = export_module(self.module, args, kwargs, dynamic_shapes)
                return ep, graph_from_exported(ep, self.module)
            except UnsupportedOpError as e:
                reason = f"torch.export cannot export it with dynamic sizes ({e.unsupported[0][1][:160]})"
                for sym in self.plan.active():
                    self.plan.pin(sym.name, reason)
                args, kwargs, dynamic_shapes = self._example()
        ep = export_module(self.module, args, kwargs, None)
        return ep, graph_from_exported(ep, self.module)

    def _match_symbols(self, graph):
        """(export symbol -> plan symbol, plan symbols torch.export specialized)."""
        renames, specialized = {}, []
        for sym in self.plan.active():
            found = []
            for index, axis in sym.members:
                meta = graph.input_metas[index]
                d = meta.shape[axis] if isinstance(meta, TensorMeta) else None
                if not isinstance(d, Sym):
                    specialized.append(sym.name)
                    break
                if d.expr not in found:
                    found.append(d.expr)
            else:
                for k, expr in enumerate(found):
                    renames[expr] = sym.name if k == 0 else f"{sym.name}_{k}"
        return renames, specialized

    def _record_ranges(self, ep, renames) -> None:
        """The bounds torch.export's guards put on each symbol."""
        for symbol, vr in getattr(ep, "range_constraints", {}).items():
            name = renames.get(str(symbol))
            if name is None or name not in self.plan.symbols:
                continue
            sym = self.plan.symbols[name]
            high = _finite(vr.upper)
            low = _finite(vr.lower)
            low = None if low is None or low <= 2 or sym.batch else low
            if high is not None or low is not None:
                self.plan.narrow(name, low, high, "a guard torch.export found in the module's code")


def _by_signature(module, dims) -> tuple:
    """Positional dynamic shapes grouped as forward() takes them (``*args`` is one tuple)."""
    import inspect

    params = list(inspect.signature(module.forward).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params) and len(dims) > len(positional):
        n = len(positional)
        return (*dims[:n], tuple(dims[n:]))
    return tuple(dims)


def _finite(v):
    """A bound as an int, None for an infinite one (sympy's oo, torch's int_oo)."""
    if getattr(v, "is_finite", True) is False or str(v) in ("oo", "-oo", "int_oo", "-int_oo"):
        return None
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


def _renamed(graph, renames: dict):
    """The graph with torch.export's symbol names replaced by the plan's."""
    if not renames:
        return graph
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(renames, key=len, reverse=True))) + r")\b")

    def expr(e: str) -> str:
        return pattern.sub(lambda m: renames[m.group(1)], e)

    def value(v):
        if isinstance(v, Sym):
            return Sym(expr(v.expr))
        if isinstance(v, TensorMeta):
            return TensorMeta(tuple(value(d) for d in v.shape), v.dtype)
        if isinstance(v, (list, tuple)):
            return type(v)(value(x) for x in v)
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        return v

    for node in graph.nodes:
        node.meta = value(node.meta)
        node.args = value(node.args)
    symbols = {expr(k): v for k, v in graph.symbols.items()}
    return graph.replace(symbols=symbols, input_metas=[value(m) for m in graph.input_metas])
