"""The layer ops of xlate's ONNX interpreter (``xlate.onnx_torch``): convolution and its
transpose, pooling, batch/layer/instance normalization, resize and depth/space shuffles, each to
the ONNX spec (explicit and auto padding, ceil mode, every supported resize mode), as
``NN_OPS``; ``unsupported_variant`` names an attribute combination they cannot reproduce.

Owns these ops only; the tensor ops and their argument helpers are ``xlate.onnx_tensor_ops``'.
It must not import the interpreter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .layout import same_padding
from .onnx_tensor_ops import ints, positive_axis


def _auto_pads(x, kernel, strides, dilations, auto_pad):
    """Explicit [begin..., end...] pads for ONNX auto_pad SAME_UPPER / SAME_LOWER."""
    spatial = x.shape[2:]
    begins, ends = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        small, big = same_padding(int(n), k, s, d)
        begins.append(small if auto_pad == "SAME_UPPER" else big)
        ends.append(big if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def _pads_of(x, a, kernel, strides, dilations):
    auto_pad = a.get("auto_pad", "NOTSET")
    nd = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return _auto_pads(x, kernel, strides, dilations, auto_pad)
    return list(a.get("pads", [0] * (2 * nd)))


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX [b1, b2, ..., e1, e2, ...] over spatial dims -> F.pad's (last dim first) pairs."""
    nd = len(pads) // 2
    out = []
    for i in reversed(range(nd)):
        out += [pads[i], pads[i + nd]]
    return out


def _symmetric(pads):
    nd = len(pads) // 2
    return pads[:nd] == pads[nd:]


def _conv(a, x, w, b=None):
    nd = w.dim() - 2
    kernel = a.get("kernel_shape", list(w.shape[2:]))
    strides = a.get("strides", [1] * nd)
    dilations = a.get("dilations", [1] * nd)
    pads = _pads_of(x, a, kernel, strides, dilations)
    if not _symmetric(pads):
        x = F.pad(x, _torch_pad(pads))
        pads = [0] * (2 * nd)
    fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    return fn(x, w, b, stride=strides, padding=pads[:nd], dilation=dilations, groups=a.get("group", 1))


def _conv_transpose(a, x, w, b=None):
    nd = w.dim() - 2
    kernel = a.get("kernel_shape", list(w.shape[2:]))
    strides = a.get("strides", [1] * nd)
    dilations = a.get("dilations", [1] * nd)
    out_pad = list(a.get("output_padding", [0] * nd))
    if "output_shape" in a:
        # pads derived from the requested output shape (SAME_UPPER convention of the spec)
        pads_total = [s * (n - 1) + op + ((k - 1) * d + 1) - o for n, s, op, k, d, o in
                      zip(x.shape[2:], strides, out_pad, kernel, dilations, a["output_shape"][-nd:])]
        lower = a.get("auto_pad") == "SAME_LOWER"
        begins = [p - p // 2 if lower else p // 2 for p in pads_total]
        ends = [p - bg for p, bg in zip(pads_total, begins)]
    elif a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        pads_total = [max(0, s * (n - 1) + op + ((k - 1) * d + 1) - n * s) for n, s, op, k, d in
                      zip(x.shape[2:], strides, out_pad, kernel, dilations)]
        lower = a["auto_pad"] == "SAME_LOWER"
        begins = [p - p // 2 if lower else p // 2 for p in pads_total]
        ends = [p - bg for p, bg in zip(pads_total, begins)]
    else:
        pads = list(a.get("pads", [0] * (2 * nd)))
        begins, ends = pads[:nd], pads[nd:]
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
    y = fn(x, w, b, stride=strides, padding=0, output_padding=0, groups=a.get("group", 1), dilation=dilations)
    # crop the full output: begins on the left, ends on the right (output_padding adds on the right)
    index = [slice(None), slice(None)]
    for i in range(nd):
        stop = y.shape[2 + i] - ends[i] + out_pad[i]
        if stop > y.shape[2 + i]:
            y = F.pad(y, [0, 0] * (nd - 1 - i) + [0, stop - y.shape[2 + i]])
        index.append(slice(begins[i], stop))
    return y[tuple(index)]


def _pool_args(a, x):
    kernel = a["kernel_shape"]
    nd = len(kernel)
    strides = a.get("strides", [1] * nd)
    dilations = a.get("dilations", [1] * nd)
    return kernel, strides, dilations, _pads_of(x, a, kernel, strides, dilations)


def _ceil_extra(x, kernel, strides, dilations, pads):
    """Extra right padding that makes floor-mode pooling give ceil_mode's output size (windows
    starting inside the right padding are dropped, as in the spec)."""
    nd = len(kernel)
    extra = []
    for i in range(nd):
        n = x.shape[2 + i] + pads[i] + pads[i + nd]
        eff = (kernel[i] - 1) * dilations[i] + 1
        out = math.ceil((n - eff) / strides[i]) + 1
        if (out - 1) * strides[i] >= x.shape[2 + i] + pads[i]:
            out -= 1
        extra.append(max(0, (out - 1) * strides[i] + eff - n))
    return extra


def _max_pool(a, x):
    kernel, strides, dilations, pads = _pool_args(a, x)
    nd = len(kernel)
    if a.get("ceil_mode", 0):
        extra = _ceil_extra(x, kernel, strides, dilations, pads)
        pads = pads[:nd] + [p + e for p, e in zip(pads[nd:], extra)]
    if any(pads):
        x = F.pad(x, _torch_pad(pads), value=float("-inf"))
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
    return fn(x, kernel, strides, 0, dilations)


def _average_pool(a, x):
    kernel, strides, dilations, pads = _pool_args(a, x)
    nd = len(kernel)
    include_pad = bool(a.get("count_include_pad", 0))
    extra = _ceil_extra(x, kernel, strides, dilations, pads) if a.get("ceil_mode", 0) else [0] * nd
    # Sum over windows, divided by the number of counted elements: padding counts only when
    # count_include_pad, and the ceil-mode overhang never does.
    ones = torch.ones_like(x[:1, :1])
    counted = F.pad(ones, _torch_pad(pads), value=1.0 if include_pad else 0.0)
    counted = F.pad(counted, _torch_pad([0] * nd + extra))
    x = F.pad(F.pad(x, _torch_pad(pads)), _torch_pad([0] * nd + extra))
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    if any(d != 1 for d in dilations):
        raise NotImplementedError("AveragePool with dilations")
    sums = fn(x, kernel, strides, 0) * math.prod(kernel)
    counts = fn(counted, kernel, strides, 0) * math.prod(kernel)
    return sums / counts


def _batch_norm(a, x, scale, bias, mean, var, *_):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _layer_norm(a, x, scale, bias=None):
    ax = positive_axis(a.get("axis", -1), x.dim())
    return F.layer_norm(x, tuple(x.shape[ax:]), scale, bias, eps=a.get("epsilon", 1e-5))


def _instance_norm(a, x, scale, bias):
    return F.instance_norm(x, weight=scale, bias=bias, eps=a.get("epsilon", 1e-5))


#: Resize (mode, coordinate_transformation_mode, nearest_mode or None) -> the F.interpolate
#: arguments that reproduce it ("linear" gets its torch mode from the number of spatial dims)
_RESIZE = {
    ("nearest", "asymmetric", "floor"): {"mode": "nearest"},
    **{("nearest", ctm, nm): {"mode": "nearest-exact"}
       for ctm in ("half_pixel", "tf_half_pixel_for_nn") for nm in ("round_prefer_ceil", "floor")},
    **{("linear", ctm, None): {"align_corners": ctm == "align_corners"}
       for ctm in ("half_pixel", "pytorch_half_pixel", "align_corners")},
}


_RESIZE_SUPPORTED = set(_RESIZE)


def _resize_key(a) -> tuple[str, str, str | None]:
    """(mode, coordinate_transformation_mode, nearest_mode or None) of a Resize node's attributes."""
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    return mode, ctm, a.get("nearest_mode", "round_prefer_floor") if mode == "nearest" else None


def _resize(a, x, roi=None, scales=None, sizes=None):
    mode, ctm, nearest = _resize_key(a)
    nd = x.dim() - 2
    if sizes is not None and sizes.numel():
        size = ints(sizes)[-nd:]
        scale = None
    else:
        size = None
        scale = [float(s) for s in scales.tolist()][-nd:]
    kwargs = _RESIZE.get((mode, ctm, nearest))
    if kwargs is None or (mode == "linear" and nd not in (1, 2, 3)):
        raise NotImplementedError(f"Resize mode={mode} coordinate_transformation_mode={ctm}")
    if mode == "linear":  # linear, bilinear or trilinear by the number of spatial dims
        kwargs = {**kwargs, "mode": ("linear", "bilinear", "trilinear")[nd - 1]}
    return F.interpolate(x, size=size, scale_factor=scale, **kwargs)


def _depth_to_space(a, x):
    b = a["blocksize"]
    n, c, h, w = x.shape
    if a.get("mode", "DCR") == "CRD":
        return F.pixel_shuffle(x, b)
    y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


def _space_to_depth(a, x):
    b = a["blocksize"]
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


NN_OPS = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda a, x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "GlobalMaxPool": lambda a, x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True),
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "Resize": _resize,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
}


def unsupported_variant(op_type: str, attrs: dict) -> str | None:
    """Why a node of a supported layer op still cannot run here (an attribute combination), or None."""
    if op_type == "AveragePool":
        if any(d != 1 for d in attrs.get("dilations", [])):
            return "AveragePool(dilations != 1)"
    elif op_type == "Resize":
        mode, ctm, nearest = key = _resize_key(attrs)
        if key not in _RESIZE_SUPPORTED:
            return f"Resize(mode={mode}, coordinate_transformation_mode={ctm}" + (
                f", nearest_mode={nearest})" if nearest else ")")
    return None
