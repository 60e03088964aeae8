"""Pooling, adaptive/global pooling and padding ops (channels-last); resampling is in resize.py."""

from __future__ import annotations

import math

import numpy as np

from ...layout import same_padding
from .. import plan, symsize
from ..registry import converter
from ..values import Const, DynamicShapeError
from ._common import INLINE_CONST_LIMIT, layers, ops
from .conv import ntuple, pad_explicitly

MAX = {1: "MaxPooling1D", 2: "MaxPooling2D", 3: "MaxPooling3D"}
AVG = {1: "AveragePooling1D", 2: "AveragePooling2D", 3: "AveragePooling3D"}
GLOBAL_AVG = {1: "GlobalAveragePooling1D", 2: "GlobalAveragePooling2D", 3: "GlobalAveragePooling3D"}
GLOBAL_MAX = {1: "GlobalMaxPooling1D", 2: "GlobalMaxPooling2D", 3: "GlobalMaxPooling3D"}
ADAPTIVE = {("avg", 1): "AdaptiveAveragePooling1D", ("avg", 2): "AdaptiveAveragePooling2D",
            ("avg", 3): "AdaptiveAveragePooling3D", ("max", 1): "AdaptiveMaxPooling1D",
            ("max", 2): "AdaptiveMaxPooling2D", ("max", 3): "AdaptiveMaxPooling3D"}


def _dynamic_ceil_extra(ctx, size, k, s, p):
    """The ceil_mode overhang for a size known at run time only: stride - 1 at every size. The
    windows that padding gives are then torch's ceil((n + 2p - k) / s) + 1, and when the last one
    needs less overhang it never reads the rest. torch drops a last window that would start past
    the padding; that can only happen when k < p + s, where the size stays static."""
    if k >= p + s:
        return s - 1
    raise DynamicShapeError(f"ceil_mode pooling (kernel {k} < padding {p} + stride {s}) over a dynamic size "
                            f"at {ctx.where()}", ctx.graph.input_symbols_of([size]))


def _ceil_extra(n, k, s, p):
    """Extra end padding that reproduces torch's ceil_mode output size."""
    out = math.ceil((n + 2 * p - k) / s) + 1
    if (out - 1) * s >= n + p:
        out -= 1
    return max(0, (out - 1) * s + k - (n + 2 * p))


@converter("pool")
def pool(ctx, node, row):
    kind = "max" if "max_pool" in node.target else "avg"
    x = ctx.materialize(ctx.arg("input"))
    n = x.rank - 2
    a = node.args
    kernel = ntuple(a["kernel_size"], n)
    stride = ntuple(a.get("stride") or kernel, n)
    padding = ntuple(a.get("padding", 0), n)
    if any(d != 1 for d in ntuple(a.get("dilation", 1), n)):
        raise ctx.unsupported("max pooling with dilation > 1")
    if a.get("divisor_override") is not None:
        raise ctx.unsupported("avg pooling with divisor_override")
    spatial = [x.meta.shape[2 + i] for i in range(n)]
    static = all(isinstance(s, int) for s in spatial)
    if static and any(k > s + 2 * p for s, k, p in zip(spatial, kernel, padding)):
        # a window longer than the padded input (HF EfficientNet's AvgPool2d(1280, ceil_mode=True)
        # on a 2x2 map): torch takes one window there, and its part past the padding sees only the
        # overhang, which neither sums nor counts, so the window is cut to the padded input
        kernel = tuple(min(k, s + 2 * p) for s, k, p in zip(spatial, kernel, padding))
        stride = tuple(k if k == s + 2 * p else st for s, k, p, st in zip(spatial, kernel, padding, stride))
    extra = [0 if not a.get("ceil_mode") else _ceil_extra(s, k, st, p) if isinstance(s, int)
             else _dynamic_ceil_extra(ctx, s, k, st, p) for s, k, st, p in zip(spatial, kernel, stride, padding)]
    pads = [(p, p + e) for p, e in zip(padding, extra)]
    cl = plan.channels_last(x.rank)
    t = ctx.keras_tensor(x, cl)
    # 'same' depends on the size; a dynamic size gets the explicit padding
    same = static and all(same_padding(s, k, st, 1) == pd for s, k, st, pd in zip(spatial, kernel, stride, pads))
    if all(pd == (0, 0) for pd in pads):
        mode = "valid"
    elif kind == "max":
        # TF 'same' max pooling ignores the padding, like torch's -inf padding
        mode = "same" if same else "valid"
        if mode == "valid":
            # edge values, not -inf: a window over padding always holds the edge value it copies
            # (padding <= kernel // 2; the last ceil_mode window starts inside), so the max is torch's,
            # and int8 quantization is not handed an infinite range (an inf scale, then an abort)
            width = [[0, 0], *[list(pd) for pd in pads], [0, 0]]
            t = _edge_pad(t, width)
    else:
        return _avg_pool(ctx, node, t, cl, spatial, kernel, stride, padding, extra, same)
    cls = getattr(layers(), (MAX if kind == "max" else AVG)[n])
    out = cls(pool_size=kernel, strides=stride, padding=mode, name=ctx.layer_name())(t)
    value = ctx.new_value(out, cl, meta=node.meta[0] if isinstance(node.meta, tuple) else node.meta)
    return (value, None) if "with_indices" in node.target else value


def _avg_pool(ctx, node, t, cl, spatial, kernel, stride, padding, extra, same):
    """Average pooling with torch's divisor: the window's pixels on the input, plus those on the
    padding where count_include_pad, never those on the ceil_mode overhang past the padding."""
    n = len(kernel)
    include_pad = node.args.get("count_include_pad", True)
    pads = [(p, p + e) for p, e in zip(padding, extra)]
    cls = getattr(layers(), AVG[n])
    meta = node.meta[0] if isinstance(node.meta, tuple) else node.meta

    def pool(x, mode="valid", suffix=""):
        return cls(pool_size=kernel, strides=stride, padding=mode, name=ctx.layer_name(suffix))(x)

    if same and (not include_pad or not any(padding)):
        # Keras 'same' divides by the real pixels: torch's divisor when no padding is counted
        return ctx.new_value(pool(t, "same"), cl, meta=meta)
    if include_pad and not any(extra):
        return ctx.new_value(pool(pad_explicitly(ctx, t, pads, n)), cl, meta=meta)
    # zero-pad, take the mean over the whole window, then rescale it to torch's divisor
    out = pool(pad_explicitly(ctx, t, pads, n))
    if all(isinstance(s, int) for s in spatial):
        for axis, scale in enumerate(_avg_scales(spatial, kernel, stride, padding, extra, include_pad)):
            if scale is not None:
                shape = [1] * (n + 2)
                shape[1 + axis] = scale.size
                out = ops().multiply(out, _constant(ctx, scale.reshape(shape), f"avg_scale{axis}"))
        return ctx.new_value(out, cl, meta=meta)
    # a dynamic size: the same pooling of a mask of ones counts each window's divisor at run time,
    # ones over the input (or, count_include_pad, over the input and its padding), zeros over the
    # ceil_mode overhang
    if include_pad:
        inner = pad_explicitly(ctx, t[..., :1], [(p, p) for p in padding], n, suffix="mask_inner_pad")
        mask = pad_explicitly(ctx, ops().ones_like(inner), [(0, e) for e in extra], n, suffix="mask_pad")
    else:
        mask = pad_explicitly(ctx, ops().ones_like(t[..., :1]), pads, n, suffix="mask_pad")
    return ctx.new_value(ops().divide(out, pool(mask, suffix="mask_pool")), cl, meta=meta)


def _avg_scales(spatial, kernel, stride, padding, extra, include_pad):
    """Per spatial axis, window size / torch's divisor at each output position (None: all 1).

    torch divides by the window's overlap with [-p, n + p) (count_include_pad) or [0, n)."""
    scales = []
    for size, k, s, p, e in zip(spatial, kernel, stride, padding, extra):
        lo, hi = (-p, size + p) if include_pad else (0, size)
        starts = np.arange((size + 2 * p + e - k) // s + 1) * s - p
        counts = np.minimum(starts + k, hi) - np.maximum(starts, lo)
        scale = (k / counts).astype("float32")
        scales.append(None if np.all(counts == k) else scale)
    return scales


def _constant(ctx, array, tag):
    if array.size <= INLINE_CONST_LIMIT:
        return array
    return ctx.const_tensor(Const(array), None, name_hint=f"{ctx.node.module_path or ctx.node.name}.{tag}")


@converter("adaptive_pool")
def adaptive_pool(ctx, node, row):
    kind = "max" if "max" in node.target else "avg"
    x = ctx.materialize(ctx.arg("input"))
    n = x.rank - 2
    out_size = ntuple(node.args["output_size"], n)
    spatial = [x.meta.shape[2 + i] for i in range(n)]
    cl = plan.channels_last(x.rank)
    t = ctx.keras_tensor(x, cl)
    if all(o == 1 for o in out_size):
        cls = getattr(layers(), (GLOBAL_MAX if kind == "max" else GLOBAL_AVG)[n])
        out = cls(keepdims=True, name=ctx.layer_name())(t)
    elif all(isinstance(s, int) and s % o == 0 for s, o in zip(spatial, out_size)):
        k = tuple(s // o for s, o in zip(spatial, out_size))
        cls = getattr(layers(), (MAX if kind == "max" else AVG)[n])
        out = cls(pool_size=k, strides=k, padding="valid", name=ctx.layer_name())(t)
    elif not all(isinstance(s, int) for s in spatial):
        raise DynamicShapeError(f"adaptive pooling of a dynamic size to {out_size} at {ctx.where()}")
    else:
        out = getattr(layers(), ADAPTIVE[(kind, n)])(output_size=out_size, name=ctx.layer_name())(t)
    meta = node.meta[0] if isinstance(node.meta, tuple) else node.meta
    value = ctx.new_value(out, cl, meta=meta)
    return (value, None) if kind == "max" else value


@converter("pad")
def pad(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    flat = list(node.args.get("pad", node.args.get("padding")))
    mode = node.args.get("mode", "constant")
    if "reflection" in node.target:
        mode = "reflect"
    elif "replication" in node.target:
        mode = "replicate"
    value = node.args.get("value") or 0.0
    # torch lists (begin, end) pairs starting from the last dim; a negative amount crops
    per_dim = {x.rank - 1 - i: (flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)}
    perm = x.perm
    t = ctx.keras_tensor(x, perm)
    width = [list(per_dim.get(d, (0, 0))) for d in perm]
    crop = [[-p if isinstance(p, int) and p < 0 else 0 for p in pair] for pair in width]
    width = [[0 if isinstance(p, int) and p < 0 else p for p in pair] for pair in width]
    if not all(isinstance(p, int) for p in flat):
        if mode != "constant":
            raise DynamicShapeError(f"{mode} padding by a dynamic amount at {ctx.where()}")
        # zeros, so padding before cropping the other side is the same; the pad reads x's sizes
        out = symsize.pad(ctx, t, symsize.keras_order(x), width, float(value))
        return ctx.new_value(_crop(out, crop), perm)
    # torch crops first: reflect/replicate/circular pad from the cropped edges
    t = _crop(t, crop)
    mode_row = {"reflect": "reflection_pad2d", "replicate": "replication_pad2d"}.get(mode)
    if mode_row and mode_row != row.id:
        ctx.used(ctx.table.row(mode_row))
    if mode == "constant":
        out = ops().pad(t, width, constant_values=value)
    elif mode == "reflect":
        out = ops().pad(t, width, mode="reflect")
    elif mode == "replicate":
        out = _edge_pad(t, width)
    elif mode == "circular":
        out = _circular_pad(t, width)
    else:
        raise ctx.unsupported(f"padding mode {mode!r}")
    return ctx.new_value(out, perm)


def _edge_pad(t, width):
    """Replicate padding from slices, so it runs on every Keras backend."""
    for axis, (lo, hi) in enumerate(width):
        if not lo and not hi:
            continue
        parts = []
        if lo:
            parts.append(ops().repeat(_take(t, axis, 0, 1), lo, axis=axis))
        parts.append(t)
        if hi:
            parts.append(ops().repeat(_take(t, axis, -1, None), hi, axis=axis))
        t = ops().concatenate(parts, axis=axis)
    return t


def _circular_pad(t, width):
    for axis, (lo, hi) in enumerate(width):
        if not lo and not hi:
            continue
        parts = [_take(t, axis, -lo, None)] if lo else []
        parts.append(t)
        if hi:
            parts.append(_take(t, axis, 0, hi))
        t = ops().concatenate(parts, axis=axis)
    return t


def _crop(t, crop):
    """Drop ``crop`` ((before, after) per axis) elements: plain slices, so dynamic sizes stay dynamic."""
    if not any(lo or hi for lo, hi in crop):
        return t
    return t[tuple(slice(lo or None, -hi if hi else None) for lo, hi in crop)]


def _take(t, axis, start, stop):
    index = [slice(None)] * len(t.shape)
    index[axis] = slice(start, stop)
    return t[tuple(index)]
