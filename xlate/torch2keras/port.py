"""Port stage: every queued weight into its Keras variable, one tensor at a time, shapes checked.

Most variables were already created from their ported values when their layer was built
(``ported.prepare``); here the layers get their own initializers back and the rest are assigned.
Each converted array is dropped as soon as its variable holds it, and each assignment forgets its
values once ported, so the conversion never holds a second copy of the model besides Keras' own.
"""

from __future__ import annotations

from ..errors import XlateError
from . import ported


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
        done = ported.restore(a.layer, a.replaced)
        a.replaced = {}
        variables = _variables_by_name(a.layer)
        for torch_paths, keras_names, transform, params in a.pairs:
            records.append(WeightRecord(tuple(torch_paths), tuple(variables[n].path for n in keras_names), transform,
                                        dict(params)))
        for name, value in a.values.items():
            var = variables.get(name)
            if var is None:
                raise XlateError(f"internal: layer {a.layer.name} has no variable {name!r} "
                                 f"(has {sorted(variables)})")
            if name in done:
                continue
            array = ported.value_of(value)
            if tuple(var.shape) != array.shape:
                raise XlateError(f"weight {a.source} -> {a.layer.name}/{name}: shape {array.shape} "
                                 f"does not fit {tuple(var.shape)}")
            var.assign(ported.for_variable(array, var.dtype))
            del array
        a.values = {}
    return records
