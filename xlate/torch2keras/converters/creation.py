"""Tensor creation whose shape depends on the batch size (static ones are constant-folded)."""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import converter
from ..values import Const, DynamicShapeError
from ._common import np_dtype, ops


@converter("creation")
def creation(ctx, node, row):
    name = node.target.split(".")[1]
    fill = {"zeros": 0, "new_zeros": 0, "ones": 1, "new_ones": 1, "empty": 0, "zeros_like": 0, "ones_like": 1,
            "empty_like": 0, "new_empty": 0}.get(name, node.args.get("fill_value"))
    shape = list(node.meta.shape)
    if name != "arange" and fill is not None and all(isinstance(d, int) for d in shape):
        # x.new_zeros((H, W)) reads only x's dtype (torchvision swin's attention mask): a constant
        return Const(np.full(shape, fill, dtype=np_dtype(node.meta.dtype)))
    if name in ("zeros_like", "ones_like", "full_like", "empty_like"):
        x = ctx.materialize(ctx.arg("input"))
        fill = {"zeros_like": 0, "ones_like": 1, "empty_like": 0}.get(name, node.args.get("fill_value"))
        return ctx.new_value(ops().full_like(x.tensor, fill), x.perm)
    if name == "arange":
        return _dynamic_arange(ctx, node)
    if fill is None or name in ("arange", "scalar_tensor"):
        raise DynamicShapeError(f"{node.target} with a dynamic size at {ctx.where()}")
    dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if len(dynamic) != 1:
        raise DynamicShapeError(f"{node.target} of shape {shape} at {ctx.where()}")
    (axis,) = dynamic
    value = np.full([1 if i == axis else d for i, d in enumerate(shape)], fill, dtype=np_dtype(node.meta.dtype))
    out = ctx.dynamic_const(value, axis, shape[axis], name)
    return ctx.new_value(out, plan.identity(len(shape)))


def _dynamic_arange(ctx, node):
    from ...keras_layers import Range

    start, end, step = (ctx.arg(k) for k in ("start", "end", "step"))
    start, step = start or 0, step or 1
    size = node.meta.shape[0]
    anchor = ctx.anchor_of(size)
    if anchor is None or not isinstance(start, int) or step != 1 or end != size:
        raise DynamicShapeError(f"{node.target} with a dynamic size at {ctx.where()}")
    anchor_input, anchor_axis = anchor
    layer = Range(start=start, step=step, dtype_name=node.meta.dtype, anchor_axis=anchor_axis,
                  name=ctx.layer_name("arange"))
    return ctx.new_value(layer(anchor_input), (0,))
