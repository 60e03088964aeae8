"""Coverage of a Keras model before converting it: every layer/op, its route and the table row.

Used by ``xlate inspect``. The answer comes from a dry run of the real emitter, so a layer whose
row exists but whose configuration has no torch equivalent (a stateful LSTM...) is reported as
not covered too, exactly as the conversion would refuse it. Each item names its route:
``ROUTE_TABLE`` (a row's converter writes it) or ``ROUTE_UNSUPPORTED`` (with the reason).
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..record import CoverageItem
from ..table import known_unsupported, table

ROUTE_TABLE = "table row"
ROUTE_UNSUPPORTED = "unsupported"


def coverage(model) -> list[CoverageItem]:
    """One item per walked node of ``model`` (subclassed models: one item, not covered)."""
    from .emit import Emitter
    from .registry import get_converter, load
    from .walk import walk

    load()
    try:
        graph = walk(model)
    except UnsupportedOpError as e:
        return [CoverageItem(model.name, op, where, None, "no graph to walk", ROUTE_UNSUPPORTED)
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
        reason = refused.get(node.path, "")
        if reason == node.kind or not covered:  # no row: say why, when mappings/_unsupported.toml does
            reason = listed.get(node.kind, "no table row")
        ok = covered and not reason
        items.append(CoverageItem(node.name, node.kind, node.path, row.id if ok else None, reason,
                                  ROUTE_TABLE if ok else ROUTE_UNSUPPORTED))
    return items
