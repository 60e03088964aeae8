"""Tensor creation whose shape depends on the batch size (static ones are constant-folded)."""

from __future__ import annotations

import numpy as np

from .. import plan
from ..emit import Const, DynamicShapeError, Value
from ..registry import converter
from ._common import np_dtype, ops


@converter("creation")
def creation(ctx, node, row):
    name = node.target.split(".")[1]
    if name in ("zeros_like", "ones_like", "full_like", "empty_like"):
        x = ctx.materialize(ctx.arg("input"))
        fill = {"zeros_like": 0, "ones_like": 1, "empty_like": 0}.get(name, node.args.get("fill_value"))
        return ctx.new_value(ops().full_like(x.tensor, fill), x.perm)
    shape = list(node.meta.shape)
    fill = {"zeros": 0, "new_zeros": 0, "ones": 1, "new_ones": 1, "empty": 0}.get(name, node.args.get("fill_value"))
    if fill is None or name in ("arange", "scalar_tensor"):
        raise DynamicShapeError(f"{node.target} with a dynamic size at {ctx.where()}")
    dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if dynamic != [0] or shape[0].expr not in ctx.graph.symbols or ctx.graph.symbols[shape[0].expr][1] != 0:
        raise DynamicShapeError(f"{node.target} of shape {shape} at {ctx.where()}")
    # a constant broadcast to the batch size of the input the size comes from
    from ...keras_layers import Constant

    input_index = ctx.graph.symbols[shape[0].expr][0]
    value = np.full([1, *shape[1:]], fill, dtype=np_dtype(node.meta.dtype))
    layer = Constant(value.shape, str(value.dtype), batch_axis=True, name=ctx.layer_name(name))
    out = layer(ctx.inputs[input_index])
    ctx.assign(layer, {"value": value})
    return ctx.new_value(out, plan.identity(len(shape)))


__all__ = ["creation", "Const", "Value"]
