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


def port_weights(assignments) -> list:
    """Assign every queued weight; returns the WeightRecords of whole torch tensors ported."""
    from ..record import WeightRecord

    records = []
    for a in assignments:
        variables = _variables_by_name(a.layer)
        for torch_paths, keras_names, transform, params in a.pairs:
            records.append(WeightRecord(tuple(torch_paths), tuple(variables[n].path for n in keras_names), transform,
                                        dict(params)))
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
    return records
