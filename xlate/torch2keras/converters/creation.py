"""Tensor creation whose shape has dynamic sizes (static ones are constant-folded): a constant
of size 1 on each dynamic axis broadcast to the run-time sizes, and aranges over dynamic sizes."""

from __future__ import annotations

import numpy as np

from ...frameworks import numpy_dtype
from .. import plan, symsize
from ..registry import converter
from ..source_graph import Sym
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
    if fill is None or name == "scalar_tensor" or not isinstance(fill, (int, float, bool)):
        raise DynamicShapeError(f"{node.target} with a dynamic size at {ctx.where()}")
    if all(isinstance(d, int) for d in shape):  # x.new_ones(static size): only the dtype comes from x (Mistral)
        return Const(np.full(shape, fill, dtype=numpy_dtype(node.meta.dtype)))
    value = np.full([d if isinstance(d, int) else 1 for d in shape], fill, dtype=np_dtype(node.meta.dtype))
    t = ctx.const_tensor(Const(value), None, name_hint=f"{node.module_path or node.name}.{name}")
    return ctx.new_value(symsize.broadcast(ctx, t, shape, list(value.shape)), plan.identity(len(shape)))


def _dynamic_arange(ctx, node):
    start, end, step = (ctx.arg(k) for k in ("start", "end", "step"))
    start, step = (0 if start is None else start), (1 if step is None else step)
    if not all(isinstance(v, (int, Sym)) and not isinstance(v, bool) for v in (start, end, step)):
        raise DynamicShapeError(f"{node.target} with a non-integer step at {ctx.where()}")
    return ctx.new_value(symsize.arange(ctx, start, end, step, node.meta.dtype), (0,))


@converter("meshgrid")
def meshgrid(ctx, node, row):
    """``torch.meshgrid`` of 1-D tensors whose lengths may be dynamic (timm's rotary position
    grids over the patch grid): ``keras.ops.meshgrid`` with the same 'ij'/'xy' indexing."""
    tensors = [ctx.const_tensor(v, None) if isinstance(v, Const) else ctx.materialize(v).tensor
               for v in ctx.arg("tensors")]
    outs = ops().meshgrid(*tensors, indexing=node.args.get("indexing") or "ij")
    metas = node.meta if isinstance(node.meta, (list, tuple)) else [node.meta] * len(outs)
    return tuple(ctx.new_value(t, plan.identity(len(tensors)), meta=m) for t, m in zip(outs, metas))
