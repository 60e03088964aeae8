"""Coverage of a torch module before converting it: every traced op and the table row that
converts it, and each input size dynamic or static with the reason (``xlate inspect``). The answer
comes from the real trace and a dry run of the emitter, so a row whose configuration is refused
(BatchNorm momentum=None...) and a size the Keras graph cannot keep dynamic show up too."""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..frameworks import without_kv_cache
from ..record import CoverageItem
from ..table import table


def coverage(module, example_inputs, dynamic="auto") -> list[CoverageItem]:
    """One item per traced op of ``module`` (graph plumbing such as tuple indexing left out)."""
    return coverage_and_dims(module, example_inputs, dynamic)[0]


def coverage_and_dims(module, example_inputs, dynamic="auto"):
    """(coverage items, per input axis dims.DimInfo) as a conversion would find them."""
    from . import converters  # noqa: F401 - importing the package registers every converter
    from .convert import emit_pinning
    from .fxtrace import trace_dynamic
    from .registry import INTERNAL

    try:
        with without_kv_cache(module):
            traced = trace_dynamic(module, example_inputs, dynamic)
    except UnsupportedOpError as e:
        return [CoverageItem(type(module).__name__, op, where, None, "torch.export could not trace the module")
                for op, where in e.unsupported], []
    graph = traced.graph
    t = table()
    items = []
    for node in graph.nodes:
        if node.op == "module":
            row = t.by_torch.get(node.module_type)
            items.append(CoverageItem(node.name, node.module_type, node.module_path, row.id if row else None))
        elif node.op == "call" and node.target not in INTERNAL:
            row = t.by_aten.get(node.target)
            items.append(CoverageItem(node.name, node.target, node.module_path or "<root>", row.id if row else None,
                                      "" if row else "no table row"))
    if all(i.row_id for i in items):
        try:  # a dry run finds configurations a row refuses, and sizes Keras cannot keep dynamic
            emit_pinning(traced)
        except UnsupportedOpError as e:
            refused = {where: op for op, where in e.unsupported}
            items = [CoverageItem(i.name, i.op, i.where, None, refused[i.where]) if i.where in refused else i
                     for i in items]
    return items, list(traced.graph.dims)
