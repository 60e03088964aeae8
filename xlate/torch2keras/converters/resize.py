"""Resampling (F.interpolate / nn.Upsample) in every mode torch has.

Integer-factor nearest and bilinear (align_corners=False) become Keras' UpSampling layers.
Everything else (bicubic, align_corners=True, non-integer factors or sizes, nearest-exact,
antialias, 1-D linear, trilinear) is a linear map applied separably, one matrix per spatial
axis: the matrices are computed by torch's own op on a float64 basis input, so the weights are
torch's (border clamping, scale handling and all), and the Keras side is one einsum per axis.
It needs static spatial sizes; with dynamic ones (interpolate(size=skip.shape[-2:]) in a network
converted with a free H and W), integer-factor and 2-D nearest/bilinear resampling read the sizes at
run time (symsize.resize), and other modes keep the sizes static.
"""

from __future__ import annotations

import string

import numpy as np

from .. import plan, symsize
from ..registry import converter
from ..source_graph import Ref
from ..values import Const, DynamicShapeError
from ._common import layers, ops

UPSAMPLE = {1: "UpSampling1D", 2: "UpSampling2D", 3: "UpSampling3D"}


@converter("upsample")
def upsample(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    n = x.rank - 2
    cl = plan.channels_last(x.rank)
    factors = _native_factors(node, x, n)
    if factors is not None:
        bilinear = "bilinear" in node.target
        kwargs = {"interpolation": "bilinear" if bilinear else "nearest"} if n == 2 else {}
        layer = getattr(layers(), UPSAMPLE[n])(size=tuple(factors) if n > 1 else factors[0],
                                                name=ctx.layer_name(), **kwargs)
        return ctx.new_value(layer(ctx.keras_tensor(x, cl)), cl)
    in_shape = x.meta.shape
    if not symsize.is_static(in_shape[2:]) or not symsize.is_static(node.meta.shape[2:]):
        return _dynamic_upsample(ctx, node, x, n, cl)
    t = ctx.keras_tensor(x, cl)
    for axis, matrix in enumerate(interpolation_matrices(node, in_shape)):
        t = _apply_along(ctx, t, matrix, cl.index(2 + axis), x.rank, f"{axis}")
    return ctx.new_value(t, cl, meta=node.meta)


def _dynamic_upsample(ctx, node, x, n, cl):
    """Resampling where a spatial size is dynamic: an UpSampling layer for integer factors known
    from the scale, else (2-D nearest, bilinear without align_corners) a resize to the sizes read
    at run time, which computes torch's op (DynamicResize). Other modes keep the sizes static."""
    target = node.target
    nearest = target.startswith("aten.upsample_nearest")
    bilinear = target.startswith("aten.upsample_bilinear2d") and not node.args.get("align_corners")
    if node.args.get("antialias") or not (nearest or bilinear) or (bilinear and n != 2):
        raise DynamicShapeError(f"{target} to a dynamic size at {ctx.where()}")
    t = ctx.keras_tensor(x, cl)
    factors = _symbolic_factors(x.meta.shape[2:], node.meta.shape[2:], node.args.get("scale_factors"))
    if factors is not None:
        kwargs = {"interpolation": "bilinear" if bilinear else "nearest"} if n == 2 else {}
        layer = getattr(layers(), UPSAMPLE[n])(size=tuple(factors) if n > 1 else factors[0],
                                                name=ctx.layer_name(), **kwargs)
        return ctx.new_value(layer(t), cl)
    if n != 2:
        raise DynamicShapeError(f"{n}-D resampling to a dynamic size at {ctx.where()}")
    sizes = [x.meta.shape[p] for p in cl]
    out = symsize.resize(ctx, t, sizes, list(node.meta.shape[2:]), "bilinear" if bilinear else "nearest")
    return ctx.new_value(out, cl)


def _symbolic_factors(sizes, out_sizes, scales):
    """The integer factor per spatial axis where sizes may be symbolic, or None when one is not
    known to be an integer."""
    factors = []
    for i, (a, b) in enumerate(zip(sizes, out_sizes)):
        if isinstance(a, int) and isinstance(b, int):
            if b % a:
                return None
            factors.append(b // a)
        elif a == b:
            factors.append(1)
        elif scales and float(scales[i]).is_integer():
            factors.append(int(scales[i]))
        else:
            return None
    return factors


def _native_factors(node, x, n):
    """Per-axis integer factors when a Keras UpSampling layer computes exactly what torch does:
    nearest, or (2-D) bilinear without align_corners, antialias or an explicit non-integer scale."""
    target = node.target
    nearest = target.startswith("aten.upsample_nearest")
    bilinear = target.startswith("aten.upsample_bilinear2d") and not node.args.get("align_corners")
    if not (nearest or bilinear) or (bilinear and n != 2):
        return None
    factors = []
    for i in range(n):
        a, b = x.meta.shape[2 + i], node.meta.shape[2 + i]
        if not (isinstance(a, int) and isinstance(b, int) and b % a == 0):
            return None
        factors.append(b // a)
    scales = node.args.get("scale_factors") or [node.args.get(k) for k in ("scales_d", "scales_h", "scales_w")
                                                if k in node.args]
    if scales and any(s is not None and float(s) != f for s, f in zip(scales, factors)):
        return None  # torch maps coordinates with the given scale, not out/in
    return factors


def interpolation_matrices(node, in_shape) -> list[np.ndarray]:
    """(out, in) weight matrix per spatial axis, from the op itself: a float64 input that is a
    delta along one axis and ones along the others gives that axis's weights (the others'
    weights sum to 1)."""
    import torch

    spatial = list(in_shape[2:])
    out = []
    for axis, size in enumerate(spatial):
        basis = torch.ones((size, 1, *spatial), dtype=torch.float64)
        view = basis.movedim(2 + axis, 1)  # (size, axis, 1, others...)
        view.zero_()
        view[torch.arange(size), torch.arange(size)] = 1.0
        with torch.no_grad():
            result = _call_on(node, basis)
        index = [slice(None), 0] + [0] * len(spatial)
        index[2 + axis] = slice(None)
        out.append(result[tuple(index)].T.numpy().astype(np.float32))  # (out size, in size)
    return out


def _call_on(node, tensor):
    """The node's own ATen op, called with ``tensor`` as its input and its other arguments as traced."""

    def swap(a):
        if isinstance(a, Ref):
            return tensor
        if isinstance(a, (list, tuple)):
            return type(a)(swap(v) for v in a)
        return a

    return node.fn(*swap(tuple(node.call_args)), **{k: swap(v) for k, v in node.call_kwargs.items()})


def _apply_along(ctx, t, matrix, axis, rank, tag):
    """``matrix @ t`` along ``axis`` of the Keras tensor: out[..., o, ...] = sum_i M[o, i] t[..., i, ...]."""
    letters = string.ascii_lowercase[:rank]
    src = letters.replace(letters[axis], "z")
    w = ctx.const_tensor(Const(matrix), None, name_hint=f"{ctx.node.module_path}.resize_{tag}")
    return ops().einsum(f"{letters[axis]}z,{src}->{letters}", w, t)
