"""Wrappers whose inner layers convert through their own rows: TimeDistributed and Pipeline.

``TimeDistributed(layer)`` folds time into the batch (``x.flatten(0, 1)``), runs the inner
layer's own converter on that, and unfolds the result with the sizes read from ``x.shape`` at run
time, so a time axis left as None stays dynamic. Any layer that has a row converts inside it.
``Pipeline(layers)`` is its layers one after another.
"""

from __future__ import annotations

from ..emit import Value
from ..registry import NotConvertible, converter


def _output_spec(layer, shape, dtype) -> tuple[tuple, str]:
    import keras

    out = layer.compute_output_spec(keras.KerasTensor(tuple(shape), dtype))
    if not isinstance(out, keras.KerasTensor):
        raise NotConvertible(f"{type(layer).__name__} with several outputs inside a wrapper")
    return tuple(out.shape), str(out.dtype)


@converter("time_distributed", masks=True)
def time_distributed(em, node, row):
    layer = node.op.layer
    if node.kwargs.get("mask") is not None and getattr(layer, "_call_has_mask_arg", False):
        raise NotConvertible(f"a Keras mask reaching {type(layer).__name__} inside TimeDistributed")
    x = em.input(node, 0)
    if x.perm[:2] != (0, 1):
        x = em.input(node, 0, "keras")
    out_t = em.graph.tensors[node.outputs[0]]
    batch, steps = em.temp("batch"), em.temp("steps")
    em.emit(f"{batch}, {steps} = {x.var}.shape[:2]")
    flat = em.temp(f"{node.name}_steps")
    em.emit(f"{flat} = {x.var}.flatten(0, 1)", f"TimeDistributed({type(layer).__name__}): time folded into the batch")
    inner_in = Value(-1, flat, (0, *[p - 1 for p in x.perm[2:]]), (None, *x.shape[2:]), x.dtype)
    (y,) = em.run_inner(node, layer, [inner_in], [((None, *out_t.shape[2:]), out_t.dtype)])
    if y.flat_chw is not None:
        y = em.in_layout(y.tid, None)
    em.assign(node, f"{y.var}.unflatten(0, ({batch}, {steps}))", (0, 1, *[q + 1 for q in y.perm[1:]]))


@converter("pipeline", masks=True)
def pipeline(em, node, row):
    value = em.input(node, 0)
    for layer in node.op.layers:
        if node.kwargs.get("mask") is not None and getattr(layer, "_call_has_mask_arg", False):
            raise NotConvertible(f"a Keras mask reaching {type(layer).__name__} inside Pipeline")
        (value,) = em.run_inner(node, layer, [value], [_output_spec(layer, value.shape, value.dtype)])
    em.alias(node, value)
