"""Pure data movement over windows and channel groups: Tensor.unfold (sliding windows), F.unfold
(im2col) and F.fold (col2im), pixel (un)shuffle and channel shuffle.

No arithmetic but fold's sums (added in torch's order), so exact by construction. They work in
torch's own layout (the value is brought to it once) with static sizes except the batch, which
reshapes leave as -1: another dynamic size raises DynamicShapeError, so the converter keeps that input size static (with this op as the reason).
"""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import converter
from ..values import DynamicShapeError
from ._common import ops


def _torch_order(ctx, what):
    """(keras tensor in torch order, its static shape with the batch as -1)."""
    x = ctx.materialize(ctx.arg("input"))
    shape = list(x.meta.shape)
    if not all(isinstance(d, int) for d in shape[1:]):
        raise DynamicShapeError(f"{what} with dynamic sizes beyond the batch at {ctx.where()}")
    if not isinstance(shape[0], int):
        shape[0] = -1
    return ctx.keras_tensor(x, plan.identity(x.rank)), shape


def _done(ctx, node, tensor):
    return ctx.new_value(tensor, plan.identity(len(node.meta.shape)), meta=node.meta)


@converter("unfold")
def unfold(ctx, node, row):
    """x.unfold(dim, size, step): windows along ``dim``, each window's elements on a new last axis."""
    t, shape = _torch_order(ctx, "Tensor.unfold")
    rank = len(shape)
    dim = int(node.args["dimension"]) % rank
    size, step = int(node.args["size"]), int(node.args["step"])
    count = (shape[dim] - size) // step + 1
    index = (np.arange(count)[:, None] * step + np.arange(size)[None, :]).astype("int32")
    out = ops().take(t, index, axis=dim)  # (..., count, size, ...)
    return _done(ctx, node, ops().moveaxis(out, dim + 1, -1))


@converter("pixel_shuffle")
def pixel_shuffle(ctx, node, row):
    t, (b, c, h, w) = _torch_order(ctx, "pixel shuffle")
    if node.target.startswith("aten.pixel_shuffle"):
        r = int(node.args["upscale_factor"])
        out = ops().reshape(t, (b, c // (r * r), r, r, h, w))
        out = ops().transpose(out, (0, 1, 4, 2, 5, 3))
        return _done(ctx, node, ops().reshape(out, (b, c // (r * r), h * r, w * r)))
    r = int(node.args["downscale_factor"])
    out = ops().reshape(t, (b, c, h // r, r, w // r, r))
    out = ops().transpose(out, (0, 1, 3, 5, 2, 4))
    return _done(ctx, node, ops().reshape(out, (b, c * r * r, h // r, w // r)))


@converter("channel_shuffle")
def channel_shuffle(ctx, node, row):
    t, shape = _torch_order(ctx, "channel shuffle")
    b, c, *rest = shape
    g = int(node.args["groups"])
    out = ops().reshape(t, (b, g, c // g, *rest))
    out = ops().transpose(out, (0, 2, 1, *range(3, 3 + len(rest))))
    return _done(ctx, node, ops().reshape(out, shape))


@converter("im2col")
def im2col(ctx, node, row):
    """F.unfold / nn.Unfold: every (kh, kw) patch as a column, channel-major as torch orders it."""
    t, (b, c, h, w) = _torch_order(ctx, "F.unfold")
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (tuple(node.args[k]) if isinstance(node.args[k], (list, tuple))
                                              else (node.args[k],) * 2
                                              for k in ("kernel_size", "dilation", "padding", "stride"))
    if ph or pw:
        t = ops().pad(t, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    patches = [t[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
               for i in range(kh) for j in range(kw)]
    out = ops().stack(patches, axis=2)  # (B, C, kh*kw, oh, ow)
    return _done(ctx, node, ops().reshape(out, (b, c * kh * kw, oh * ow)))


@converter("col2im")
def col2im(ctx, node, row):
    """F.fold / nn.Fold, im2col's adjoint: each column block goes back to its patch position and
    overlapping patches add up, in torch's order (kernel offset by kernel offset, from zero)."""
    t, shape = _torch_order(ctx, "F.fold")
    unbatched = len(shape) == 2
    if unbatched:
        t, shape = ops().expand_dims(t, 0), [1, *shape]
    b, ckk, _ = shape
    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (
        tuple(node.args[k]) if isinstance(node.args[k], (list, tuple)) else (node.args[k],) * 2
        for k in ("output_size", "kernel_size", "dilation", "padding", "stride"))
    c = ckk // (kh * kw)
    hp, wp = h + 2 * ph, w + 2 * pw
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    blocks = ops().reshape(t, (b, c, kh * kw, oh, ow))
    out = None
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        part = _spread(blocks[:, :, k], (b, c, oh, ow), sh, sw)  # (b, c, (oh-1)*sh+1, (ow-1)*sw+1)
        top, left = i * dh, j * dw
        part = ops().pad(part, ((0, 0), (0, 0), (top, hp - top - ((oh - 1) * sh + 1)),
                                (left, wp - left - ((ow - 1) * sw + 1))))
        out = part if out is None else out + part
    out = out[:, :, ph:ph + h, pw:pw + w]
    return _done(ctx, node, out[0] if unbatched else out)


def _spread(x, shape, sh, sw):
    """(b, c, oh, ow) with sh-1 and sw-1 zeros between neighbours: the strided positions of a fold."""
    b, c, oh, ow = shape
    if sh == 1 and sw == 1:
        return x
    x = ops().reshape(x, (b, c, oh, 1, ow, 1))
    x = ops().pad(x, ((0, 0), (0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1)))
    x = ops().reshape(x, (b, c, oh * sh, ow * sw))
    return x[:, :, :(oh - 1) * sh + 1, :(ow - 1) * sw + 1]
