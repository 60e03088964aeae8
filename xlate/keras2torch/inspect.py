"""Coverage of a Keras model before converting it: every layer/op and the route that converts it.

Used by ``xlate inspect``. Each walked node takes one of three routes: a table row (the answer
comes from a dry run of the real emitter, so a layer whose row exists but whose configuration
has no torch equivalent is refused exactly as the conversion would refuse it), the traced route
(no usable row: the layer is captured with torch.export and written as its own class,
``traced/``), or unsupported (neither: bound to another backend, strings, or a custom class
that cannot be imported). A subclassed model is one item: traced whole, or unsupported.
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..record import CoverageItem
from ..table import known_unsupported, table

ROUTE_TABLE, ROUTE_TRACED, ROUTE_UNSUPPORTED = "table", "traced", "unsupported"

TRACED = "traced with torch.export, written as its own nn.Module class"


def coverage(model) -> list[CoverageItem]:
    """One item per walked node of ``model`` (subclassed models: one item)."""
    from . import converters  # noqa: F401 - importing the package registers every converter
    from .emit import Emitter
    from .registry import get_converter
    from .traced.bridge import untraceable
    from .traced.capture import importable
    from .walk import functional_of, kind_of, walk

    if functional_of(model) is None:
        cls = type(model)
        if importable(cls):
            return [CoverageItem(model.name, kind_of(model), model.name, "traced", f"subclassed model: {TRACED}",
                                 route=ROUTE_TRACED)]
        return [CoverageItem(model.name, kind_of(model), model.name, None,
                             f"subclassed model whose class is not importable (defined in {cls.__module__})",
                             route=ROUTE_UNSUPPORTED)]
    try:
        graph = walk(model)
    except UnsupportedOpError as e:
        return [CoverageItem(model.name, op, where, None, "no graph to walk", route=ROUTE_UNSUPPORTED)
                for op, where in e.unsupported]
    refused: dict[str, str] = {}
    try:
        Emitter(graph).run()
    except UnsupportedOpError as e:
        for op, where in e.unsupported:
            refused[where] = op
    rows = table().by_keras
    listed = known_unsupported()["keras"]
    items = []
    for node in graph.nodes:
        row = rows.get(node.kind)
        covered = row is not None and "keras2torch" in row.directions and get_converter(row.hook) is not None
        if covered and node.path not in refused:
            items.append(CoverageItem(node.name, node.kind, node.path, row.id, "", route=ROUTE_TABLE))
            continue
        # no row: say why, when mappings/_unsupported.toml does
        why_not_row = refused.get(node.path, "") if covered else listed.get(node.kind, "no table row")
        why_not_traced = untraceable(node, graph)
        if why_not_traced is None:
            items.append(CoverageItem(node.name, node.kind, node.path, "traced", f"{why_not_row}: {TRACED}",
                                      route=ROUTE_TRACED))
        else:
            items.append(CoverageItem(node.name, node.kind, node.path, None, f"{why_not_row}; not traceable: "
                                      f"{why_not_traced}", route=ROUTE_UNSUPPORTED))
    return items
