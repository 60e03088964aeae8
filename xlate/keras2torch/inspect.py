"""Coverage of a Keras model before converting it: every layer/op and the table row that converts it.

Used by ``xlate inspect``. The answer comes from a dry run of the real emitter, so a layer whose
row exists but whose configuration has no torch equivalent (GRU reset_after=False...) is reported
as not covered too, exactly as the conversion would refuse it.
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..record import CoverageItem
from ..table import table


def coverage(model) -> list[CoverageItem]:
    """One item per walked node of ``model`` (subclassed models: one item, not covered)."""
    from .emit import Emitter
    from .registry import get_converter, load
    from .walk import walk

    load()
    try:
        graph = walk(model)
    except UnsupportedOpError as e:
        return [CoverageItem(model.name, op, where, None, "no graph to walk") for op, where in e.unsupported]
    refused: dict[str, str] = {}
    try:
        Emitter(graph).run()
    except UnsupportedOpError as e:
        for op, where in e.unsupported:
            refused[where] = op
    rows = table().by_keras
    items = []
    for node in graph.nodes:
        row = rows.get(node.kind)
        covered = row is not None and "keras2torch" in row.directions and get_converter(row.hook) is not None
        reason = refused.get(node.path, "")
        items.append(CoverageItem(node.name, node.kind, node.path, row.id if covered and not reason else None,
                                  reason if reason else ("" if covered else "no table row")))
    return items
