"""In-place updates as torch.export functionalizes them: ``x[:, :, a:b] = y`` and ``x[..] += y``
become ``copy(x_slice, y)`` and ``slice_scatter(x, copy, dim, a, b)`` (timm MViTv2's relative
position and residual pooling updates of the attention map)."""

from __future__ import annotations

from .. import plan, symsize
from ..registry import converter
from ..source_graph import Sym
from ..values import Const, Value
from . import shape
from ._common import aligned, ops


def _to_end(stop, size) -> bool:
    """Whether a slice bound ``stop`` reaches the end of a dim of ``size`` (int or dynamic)."""
    if stop is None or (isinstance(stop, int) and stop > 2 ** 62):
        return True
    if isinstance(stop, int) and isinstance(size, int):
        return stop >= size
    return stop == size


def _piece(ctx, x: Value, axis: int, start, stop):
    """``x[..., start:stop]`` on Keras ``axis``; bounds may be dynamic."""
    if isinstance(start, Sym) or isinstance(stop, Sym):
        return symsize.slice_axis(ctx, x.tensor, symsize.keras_order(x), axis, start, stop, 1)
    return x.tensor[shape._index_at(x.rank, axis, slice(start, stop))]


@converter("slice_scatter")
def slice_scatter(ctx, node, row):
    """``src`` written over ``input[..., start:end]`` along ``dim``: the parts of ``input`` before
    and after, concatenated with ``src`` (a step other than 1 is refused)."""
    x = ctx.materialize(ctx.arg("input"))
    src = ctx.arg("src")
    dim = int(node.args.get("dim", 0)) % x.rank
    start, stop, step = ctx.arg("start"), ctx.arg("end"), node.args.get("step", 1)
    if step not in (None, 1):
        raise ctx.unsupported(f"slice_scatter with step {step} (only step 1 converts)")
    start = 0 if start is None else start
    size = x.meta.shape[dim]
    axis = x.perm.index(dim)
    src_t = _src_tensor(ctx, src, x)
    parts = []
    if not (isinstance(start, int) and start == 0):
        parts.append(_piece(ctx, x, axis, None, start))
    parts.append(src_t)
    if not _to_end(stop, size):
        parts.append(_piece(ctx, x, axis, stop, None))
    out = parts[0] if len(parts) == 1 else ops().concatenate(parts, axis=axis)
    return ctx.new_value(out, x.perm)


def _src_tensor(ctx, src, x: Value):
    """``src`` as a Keras tensor in ``x``'s layout and dtype."""
    if isinstance(src, Const):
        t = ctx.const_tensor(src, x.perm)
    else:
        t = ctx.keras_tensor(ctx.materialize(src), x.perm)
    return ops().cast(t, x.meta.dtype) if str(t.dtype) != x.meta.dtype else t


@converter("copy")
def copy(ctx, node, row):
    """``self.copy_(src)`` functionalized: ``src`` broadcast to ``self``'s shape, in its dtype."""
    x, src = ctx.arg("input"), ctx.arg("src")
    if isinstance(src, Value) and isinstance(x, Value) and tuple(src.meta.shape) == tuple(x.meta.shape):
        src = ctx.materialize(src)
        return ctx.new_value(src.tensor, src.perm)  # new_value casts to self's dtype
    return _broadcast_to(ctx, ctx.materialize(x), src)


def _broadcast_to(ctx, x: Value, src):
    """``src`` broadcast to ``x``'s shape, in its dtype (``zeros_like(x) + src``)."""
    (xt, st), perm, _ = aligned(ctx, [x, src])
    st = ops().cast(st, x.meta.dtype) if hasattr(st, "dtype") else st
    return ctx.new_value(ops().add(ops().zeros_like(xt), st), perm)


@converter("select_scatter")
def select_scatter(ctx, node, row):
    """``src`` written over ``input.select(dim, index)`` (HF BEiT's relative position index): the
    parts of ``input`` before and after, concatenated with ``src`` given its axis back."""
    x = ctx.materialize(ctx.arg("input"))
    dim = int(node.args.get("dim", 0)) % x.rank
    index, size = node.args.get("index"), x.meta.shape[dim]
    if not isinstance(index, int):
        raise ctx.unsupported("select_scatter at a dynamic index")
    if index < 0 and isinstance(size, int):
        index += size
    axis = x.perm.index(dim)
    src, src_perm = ctx.arg("src"), plan.drop_dims(x.perm, [dim])
    t = ctx.const_tensor(src, src_perm) if isinstance(src, Const) else ctx.keras_tensor(ctx.materialize(src), src_perm)
    t = ops().expand_dims(ops().cast(t, x.meta.dtype) if str(t.dtype) != x.meta.dtype else t, axis)
    parts = [_piece(ctx, x, axis, None, index)] if index else []  # a negative index counts from the end
    parts.append(t)
    if index != -1 and not _to_end(index + 1, size):
        parts.append(_piece(ctx, x, axis, index + 1, None))
    return ctx.new_value(parts[0] if len(parts) == 1 else ops().concatenate(parts, axis=axis), x.perm)


@converter("fill")
def fill(ctx, node, row):
    """``self.fill_(value)`` with a 0-d tensor or a number (``zero_``: 0): the value broadcast to
    ``self``, in its dtype."""
    value = 0 if node.target.startswith("aten.zero") else ctx.arg("value")
    return _broadcast_to(ctx, ctx.materialize(ctx.arg("input")), value)
