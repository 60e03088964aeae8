"""Convolutions: Conv1d/2d/3d (grouped, depthwise, dilated, strided) and transposed convs; a
kernel computed in the graph (timm's weight-standardized convs) goes through keras.ops.conv.

Padding is always made exact for the static input size: symmetric torch padding becomes Keras
'same' only where TensorFlow's split (extra pixel at the end) is the same, else an explicit
ZeroPadding + 'valid' (semantics.md: 'same' with stride > 1 is shifted by one pixel).
"""

from __future__ import annotations

from ...layout import same_padding
from .. import plan
from ..registry import converter
from ..values import Const
from ._common import layers, ops
from .linear import _shared_layer, port

CONV = {1: "Conv1D", 2: "Conv2D", 3: "Conv3D"}
CONV_T = {1: "Conv1DTranspose", 2: "Conv2DTranspose", 3: "Conv3DTranspose"}
ZERO_PAD = {1: "ZeroPadding1D", 2: "ZeroPadding2D", 3: "ZeroPadding3D"}
CROP = {1: "Cropping1D", 2: "Cropping2D", 3: "Cropping3D"}


def ntuple(v, n):
    if isinstance(v, (list, tuple)):
        return tuple(int(x) for x in v) if len(v) == n else tuple(int(v[0]) for _ in range(n))
    return (int(v),) * n


def torch_pads(padding, kernel, dilation, n):
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        # torch 'same' (stride 1 only): total d*(k-1), left total//2, extra on the right
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    p = ntuple(padding, n)
    return tuple((x, x) for x in p)


def keras_padding(spatial, kernel, stride, dilation, pads):
    """'valid', 'same', or None when explicit padding is needed."""
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return "valid"
    # 'same' at stride 1 pads the same whatever the size; at stride > 1 only for the size it was worked out for
    sizes = [n if isinstance(n, int) else None for n in spatial]
    if all(n is not None or s == 1 for n, s in zip(sizes, stride)) and all(
            same_padding(n, k, s, d) == p for n, k, s, d, p in zip(sizes, kernel, stride, dilation, pads)):
        return "same"
    return None


def pad_explicitly(ctx, tensor, pads, n, suffix="pad"):
    spec = tuple(tuple(p) for p in pads) if n > 1 else tuple(pads[0])
    layer = getattr(layers(), ZERO_PAD[n])(padding=spec, name=ctx.layer_name(suffix))
    return layer(tensor)


def _conv_args(ctx, node):
    a = node.args
    return (ctx.arg("input"), ctx.arg("weight"), ctx.arg("bias"), a.get("stride", 1), a.get("padding", 0),
            a.get("dilation", 1), int(a.get("groups", 1)))


@converter("conv", "depthwise_conv")
def conv(ctx, node, row):
    if node.target == "aten.convolution.default" and node.args.get("transposed"):
        return conv_transpose(ctx, node, ctx.table.row("conv_transpose2d"))
    x, w, b, stride, padding, dilation, groups = _conv_args(ctx, node)
    wshape = w.array.shape if isinstance(w, Const) else w.meta.shape
    if not all(isinstance(d, int) for d in wshape):
        raise ctx.unsupported("convolution with a weight of dynamic shape")
    n = len(wshape) - 2
    kernel = tuple(wshape[2:])
    stride, dilation = ntuple(stride, n), ntuple(dilation, n)
    pads = torch_pads(padding, kernel, dilation, n)
    cl = plan.channels_last(n + 2)
    t = ctx.keras_tensor(ctx.materialize(x), cl)
    spatial = [x.meta.shape[2 + i] for i in range(n)]
    in_channels = wshape[1] * groups
    out_channels = wshape[0]
    split_stride = any(s > 1 for s in stride) and any(d > 1 for d in dilation)
    kstride = (1,) * n if split_stride else stride  # Keras refuses stride > 1 with dilation > 1
    padding_mode = keras_padding(spatial, kernel, kstride, dilation, pads) if not split_stride else None
    if padding_mode is None:
        t = pad_explicitly(ctx, t, pads, n)
        padding_mode = "valid"
    depthwise = groups > 1 and groups == in_channels and n in (1, 2)
    use_bias = b is not None
    if not isinstance(w, Const):
        out = _computed_kernel_conv(ctx, t, w, b, kstride, padding_mode, dilation, groups, depthwise)
    elif depthwise:
        drow = ctx.table.row("depthwise_conv2d")
        multiplier = out_channels // in_channels
        cls = {1: layers().DepthwiseConv1D, 2: layers().DepthwiseConv2D}[n]
        layer, new = _shared_layer(ctx, ("dwconv", ctx.weight_key(w), ctx.weight_key(b), kstride, padding_mode), lambda: cls(
            kernel_size=kernel, strides=kstride, padding=padding_mode, depth_multiplier=multiplier,
            dilation_rate=dilation, use_bias=use_bias, name=ctx.layer_name()))
        if new:
            port(ctx, drow, layer, {"weight": w, "bias": b if use_bias else None},
                 params={"weight": {"multiplier": multiplier}})
        out = layer(t)
        ctx.used(drow)
    else:
        cls = getattr(layers(), CONV[n])
        layer, new = _shared_layer(ctx, ("conv", ctx.weight_key(w), ctx.weight_key(b), kstride, padding_mode), lambda: cls(
            out_channels, kernel_size=kernel, strides=kstride, padding=padding_mode, dilation_rate=dilation,
            groups=groups, use_bias=use_bias, name=ctx.layer_name()))
        crow = ctx.table.row(f"conv{n}d")
        if new:
            port(ctx, crow, layer, {"weight": w, "bias": b if use_bias else None})
        out = layer(t)
        if crow is not row:
            ctx.used(crow)
    if split_stride:
        index = (slice(None),) + tuple(slice(None, None, s) for s in stride) + (slice(None),)
        out = out[index]
    return ctx.new_value(out, cl)


def _computed_kernel_conv(ctx, t, w, b, stride, padding, dilation, groups, depthwise):
    """A convolution whose kernel is computed in the graph (timm StdConv2d / ScaledStdConv2d
    standardize their weight in forward): keras.ops.conv on the kernel laid out (*k, in/groups,
    out), ops.depthwise_conv on (*k, in, multiplier); the bias, a Parameter layer or a computed
    value, is added after. The parameters the kernel comes from stay trainable variables.

    keras.ops.conv refuses a grouped kernel on symbolic tensors (the Conv layers take groups, but
    only with a kernel of their own): each group is convolved with its slice of the kernel and
    the results concatenated."""
    n = w.rank - 2
    kernel = ctx.keras_tensor(ctx.materialize(w), tuple(range(2, n + 2)) + (1, 0))
    args = {"strides": stride, "padding": padding, "dilation_rate": dilation}
    if depthwise:
        in_channels, out_channels = groups, w.meta.shape[0]
        kernel = ops().reshape(kernel, tuple(w.meta.shape[2:]) + (in_channels, out_channels // in_channels))
        out = ops().depthwise_conv(t, kernel, **args)
    elif groups > 1:
        pieces = zip(ops().split(t, groups, axis=-1), ops().split(kernel, groups, axis=-1))
        out = ops().concatenate([ops().conv(piece, k, **args) for piece, k in pieces], axis=-1)
    else:
        out = ops().conv(t, kernel, **args)
    if b is not None:
        bias = ctx.const_tensor(b, None) if isinstance(b, Const) else ctx.keras_tensor(ctx.materialize(b), (0,))
        out = ops().add(out, bias)
    return out


@converter("conv_transpose")
def conv_transpose(ctx, node, row):
    a = node.args
    x, w, b = ctx.arg("input"), ctx.arg("weight"), ctx.arg("bias")
    if not isinstance(w, Const):
        raise ctx.unsupported("transposed convolution with a computed weight")
    n = w.array.ndim - 2
    row = ctx.table.row(f"conv_transpose{n}d")
    kernel = w.array.shape[2:]
    stride = ntuple(a.get("stride", 1), n)
    padding = ntuple(a.get("padding", 0), n)
    output_padding = ntuple(a.get("output_padding", 0), n)
    dilation = ntuple(a.get("dilation", 1), n)
    groups = int(a.get("groups", 1))
    cl = plan.channels_last(n + 2)
    t = ctx.keras_tensor(ctx.materialize(x), cl)
    # Keras 'valid' with an explicit output_padding o gives (i-1)s + K_eff + o; torch crops p at
    # the start and p - op at the end of (i-1)s + K_eff (+ op). o = max(op - p, 0) keeps both >= 0.
    extra = tuple(max(op - p, 0) for op, p in zip(output_padding, padding))
    crops = tuple((p, p - op + o) for p, op, o in zip(padding, output_padding, extra))
    in_per_group = w.array.shape[0] // groups
    out_per_group = w.array.shape[1]
    cls = getattr(layers(), CONV_T[n])
    pieces = ops().split(t, groups, axis=-1) if groups > 1 else [t]
    outs = []
    for g, piece in enumerate(pieces):
        # one group's slice of the weight (a whole tensor when groups == 1, recorded for the state port)
        wg = w if groups == 1 else w.array[g * in_per_group:(g + 1) * in_per_group]
        bg = b if groups == 1 or b is None else b.array[g * out_per_group:(g + 1) * out_per_group]
        suffix = f"group{g}" if groups > 1 else ""
        layer = cls(out_per_group, kernel_size=kernel, strides=stride, padding="valid", output_padding=extra,
                    dilation_rate=dilation, use_bias=b is not None, name=ctx.layer_name(suffix))
        port(ctx, row, layer, {"weight": wg, "bias": bg})
        outs.append(layer(piece))
    out = outs[0] if groups == 1 else ops().concatenate(outs, axis=-1)
    if any(c != (0, 0) for c in crops):
        spec = crops if n > 1 else crops[0]
        out = getattr(layers(), CROP[n])(cropping=spec, name=ctx.layer_name("crop"))(out)
    return ctx.new_value(out, cl)

