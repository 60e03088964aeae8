"""Port stage: assign the converted weights to the Keras variables, checking every shape."""

from __future__ import annotations

import numpy as np

from ..errors import XlateError


def _variables_by_name(layer) -> dict:
    """Variables keyed by every tail of their path: 'kernel', 'query/kernel', ..."""
    out = {}
    prefix = layer.path + "/" if getattr(layer, "path", None) else ""
    for v in layer.weights:
        rel = v.path.removeprefix(prefix)
        parts = rel.split("/")
        for i in range(len(parts)):
            out.setdefault("/".join(parts[i:]), v)
    return out


def port_weights(assignments) -> int:
    """Assign every queued weight; returns how many tensors were written."""
    count = 0
    for a in assignments:
        variables = _variables_by_name(a.layer)
        for name, array in a.values.items():
            var = variables.get(name)
            if var is None:
                raise XlateError(f"internal: layer {a.layer.name} has no variable {name!r} "
                                 f"(has {sorted(variables)})")
            array = np.asarray(array)
            if tuple(var.shape) != array.shape:
                raise XlateError(f"weight {a.source} -> {a.layer.name}/{name}: shape {array.shape} "
                                 f"does not fit {tuple(var.shape)}")
            var.assign(array.astype(var.dtype))
            count += 1
    return count
