"""Run an ONNX graph as a torch ``nn.Module``: the last step of Keras -> ONNX -> PyTorch.

A small interpreter rather than a code generator: float initializers become ``nn.Parameter``s
(so the module is trainable and its ``state_dict`` saves), integer initializers and constants
become buffers, and ``forward`` executes the graph's nodes in their (topological) order with
torch ops. Only the ONNX ops listed in ``OPS`` are handled; ``unsupported_ops(model)`` names the
others, all at once, before anything runs. onnx2torch would be the library to reach for, but it
imports torchvision, whose builds here do not match torch 2.13, so the op set xlate needs (what
tf2onnx emits for Keras layers) is implemented here, each op to the ONNX spec.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layout import same_padding
from .onnx_ops import MORE_OPS

# ONNX TensorProto data types -> torch dtypes
_DTYPES = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
    9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32 if hasattr(torch, "uint32") else None,
    16: torch.bfloat16,
}


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif hasattr(v, "dims") and hasattr(v, "data_type"):  # TensorProto
            from onnx import numpy_helper

            v = numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


# --- padding helpers ----------------------------------------------------------------------------


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


# --- ops ----------------------------------------------------------------------------------------


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


def _reduce(fn):
    def op(a, x, axes=None):
        if axes is None:
            axes = a.get("axes")
        keep = bool(a.get("keepdims", 1))
        if axes is None or (isinstance(axes, torch.Tensor) and axes.numel() == 0):
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        axes = [_axis(i, x.dim()) for i in _ints(axes)]
        return fn(x, axes, keep)

    return op


def _one_axis_at_a_time(method: str):
    """A reduction over several axes from a tensor method that takes one (amax, amin, prod)."""

    def reduce(x, axes, keep):
        for ax in sorted(axes, reverse=True):
            x = getattr(x, method)(dim=ax, keepdim=keep)
        return x

    return reduce


def _reshape(a, x, shape):
    shape = _ints(shape)
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _slice(a, x, starts=None, ends=None, axes=None, steps=None):
    if starts is None:  # opset < 10: attributes
        starts, ends, axes = a["starts"], a["ends"], a.get("axes")
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else [_axis(i, x.dim()) for i in _ints(axes)]
    steps = [1] * len(starts) if steps is None else _ints(steps)
    for start, end, ax, step in zip(starts, ends, axes, steps):
        n = x.shape[ax]
        if step > 0:
            start = min(max(start + n if start < 0 else start, 0), n)
            end = min(max(end + n if end < 0 else end, 0), n)
            x = x.narrow(ax, start, max(end - start, 0))[(slice(None),) * ax + (slice(None, None, step),)]
        else:
            start = min(max(start + n if start < 0 else start, -1), n - 1)
            end = min(max(end + n if end < 0 else end, -1), n - 1)
            idx = torch.arange(start, end, step, device=x.device)
            x = x.index_select(ax, idx)
    return x


def _gather(a, x, idx):
    ax = _axis(a.get("axis", 0), x.dim())
    idx = idx.long()
    idx = torch.where(idx < 0, idx + x.shape[ax], idx)
    flat = x.index_select(ax, idx.reshape(-1))
    return flat.reshape(tuple(x.shape[:ax]) + tuple(idx.shape) + tuple(x.shape[ax + 1:]))


def _split(a, x, split=None):
    ax = _axis(a.get("axis", 0), x.dim())
    split = a.get("split") if split is None else split
    if split is None:
        split = math.ceil(x.shape[ax] / (a.get("num_outputs") or a["_n_outputs"]))
    pieces = torch.split(x, split if isinstance(split, int) else _ints(split), dim=ax)
    return tuple(pieces[i] for i in range(a["_n_outputs"]))  # indexed, not iterated: torch.fx traces it


def _squeeze(a, x, axes=None):
    axes = a.get("axes") if axes is None else axes
    if axes is None:
        return x.squeeze()
    for ax in sorted((_axis(i, x.dim()) for i in _ints(axes)), reverse=True):
        x = x.squeeze(ax)
    return x


def _unsqueeze(a, x, axes=None):
    axes = a.get("axes") if axes is None else axes
    rank = x.dim() + len(_ints(axes))
    for ax in sorted(_axis(i, rank) for i in _ints(axes)):
        x = x.unsqueeze(ax)
    return x


def _pad(a, x, pads=None, value=None, axes=None):
    mode = a.get("mode", "constant")
    pads = _ints(a["pads"] if pads is None else pads)
    value = float(a.get("value", 0.0) if value is None or value.numel() == 0 else value.item())
    rank = x.dim()
    axes = list(range(rank)) if axes is None else [_axis(i, rank) for i in _ints(axes)]
    n = len(axes)
    full_begin, full_end = [0] * rank, [0] * rank
    for i, ax in enumerate(axes):
        full_begin[ax], full_end[ax] = pads[i], pads[i + n]
    torch_pads = []
    for ax in reversed(range(rank)):
        torch_pads += [full_begin[ax], full_end[ax]]
    while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]
    if mode == "constant":
        return F.pad(x, torch_pads, value=value)
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    return F.pad(x, torch_pads, mode=torch_mode)


def _softmax(fn):
    def op(a, x):
        return fn(x, dim=a.get("axis", -1))

    return op


def _gemm(a, x, w, c=None):
    alpha, beta, x = a.get("alpha", 1.0), a.get("beta", 1.0), x.transpose(0, 1) if a.get("transA", 0) else x
    if alpha == beta == 1.0 and a.get("transB", 0) and (c is None or tuple(c.shape) == (w.shape[0],)):
        return F.linear(x, w, c)  # x @ w.T + c as one op (nn.Linear's, a Dense layer in Keras)
    w = w.transpose(0, 1) if a.get("transB", 0) else w
    y = x @ w if alpha == 1.0 else alpha * (x @ w)
    return y if c is None else y + (c if beta == 1.0 else beta * c)


def _batch_norm(a, x, scale, bias, mean, var, *_):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _layer_norm(a, x, scale, bias=None):
    ax = _axis(a.get("axis", -1), x.dim())
    return F.layer_norm(x, tuple(x.shape[ax:]), scale, bias, eps=a.get("epsilon", 1e-5))


def _instance_norm(a, x, scale, bias):
    return F.instance_norm(x, weight=scale, bias=bias, eps=a.get("epsilon", 1e-5))


def _clip(a, x, lo=None, hi=None):
    lo = a.get("min") if lo is None else lo
    hi = a.get("max") if hi is None else hi
    def bound(v):  # a tensor of x's dtype as it is: no dtype/device copy for a tracer to record
        return v if isinstance(v, torch.Tensor) and v.dtype == x.dtype else torch.as_tensor(v, dtype=x.dtype,
                                                                                             device=x.device)
    x = x if lo is None else torch.maximum(x, bound(lo))
    return x if hi is None else torch.minimum(x, bound(hi))


def _div(a, x, y):
    if not x.is_floating_point() and not y.is_floating_point():
        return torch.div(x, y, rounding_mode="trunc")
    return x / y


def _cast(a, x):
    return x.to(_DTYPES[a["to"]])


def _shape(a, x):
    dims = list(x.shape)[a.get("start", 0):a.get("end", None)]
    return torch.tensor(dims, dtype=torch.int64, device=x.device)


def _constant_of_shape(a, shape):
    value = a.get("value", np.zeros(1, np.float32))
    v = torch.from_numpy(np.asarray(value).reshape(-1)[:1].copy())
    return v.to(shape.device).expand(_ints(shape)).clone()


def _expand(a, x, shape):
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape))))


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
        size = _ints(sizes)[-nd:]
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


def _range(a, start, limit, delta):
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)


def _arg(fn):
    def op(a, x):
        ax = _axis(a.get("axis", 0), x.dim())
        if a.get("select_last_index", 0):
            y = x.shape[ax] - 1 - fn(x.flip(ax), dim=ax, keepdim=True)
        else:
            y = fn(x, dim=ax, keepdim=True)
        return y if a.get("keepdims", 1) else y.squeeze(ax)

    return op


def _cumsum(a, x, axis):
    ax = int(axis.item())
    if a.get("reverse", 0):
        x = x.flip(ax)
    y = torch.cumsum(x, dim=ax)
    if a.get("exclusive", 0):
        y = y - x
    return y.flip(ax) if a.get("reverse", 0) else y


def _variadic(fn):
    def op(a, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = fn(y, x)
        return y

    return op


def _gelu(a, x):
    return F.gelu(x, approximate="tanh" if a.get("approximate", "none") == "tanh" else "none")


OPS = {
    "Identity": lambda a, x: x,
    "Dropout": lambda a, x, *_: x,
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": _div,
    "Pow": lambda a, x, y: torch.pow(x, y.to(x.dtype) if x.is_floating_point() else y),
    "Mod": lambda a, x, y: torch.fmod(x, y) if a.get("fmod", 0) else torch.remainder(x, y),
    "Neg": lambda a, x: -x,
    "Abs": lambda a, x: x.abs(),
    "Sqrt": lambda a, x: torch.sqrt(x),
    "Reciprocal": lambda a, x: 1.0 / x,
    "Exp": lambda a, x: torch.exp(x),
    "Log": lambda a, x: torch.log(x),
    "Sin": lambda a, x: torch.sin(x),
    "Cos": lambda a, x: torch.cos(x),
    "Tan": lambda a, x: torch.tan(x),
    "Atan": lambda a, x: torch.atan(x),
    "Erf": lambda a, x: torch.erf(x),
    "Floor": lambda a, x: torch.floor(x),
    "Ceil": lambda a, x: torch.ceil(x),
    "Round": lambda a, x: torch.round(x),
    "Sign": lambda a, x: torch.sign(x),
    "Relu": lambda a, x: F.relu(x),
    "Sigmoid": lambda a, x: torch.sigmoid(x),
    "Tanh": lambda a, x: torch.tanh(x),
    "Softplus": lambda a, x: F.softplus(x),
    "Softsign": lambda a, x: F.softsign(x),
    "LeakyRelu": lambda a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Elu": lambda a, x: F.elu(x, a.get("alpha", 1.0)),
    "Celu": lambda a, x: F.celu(x, a.get("alpha", 1.0)),
    "Selu": lambda a, x: a.get("gamma", 1.05070102214813232421875) * torch.where(
        x > 0, x, a.get("alpha", 1.67326319217681884765625) * (torch.exp(x) - 1)),
    "HardSigmoid": lambda a, x: torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1),
    "HardSwish": lambda a, x: F.hardswish(x),
    "Mish": lambda a, x: F.mish(x),
    "Gelu": _gelu,
    "PRelu": lambda a, x, slope: torch.where(x >= 0, x, x * slope),
    "ThresholdedRelu": lambda a, x: torch.where(x > a.get("alpha", 1.0), x, torch.zeros_like(x)),
    "Clip": _clip,
    "Softmax": _softmax(torch.softmax),
    "LogSoftmax": _softmax(torch.log_softmax),
    "MatMul": lambda a, x, y: torch.matmul(x, y),
    "Gemm": _gemm,
    "Einsum": lambda a, *xs: torch.einsum(a["equation"], *xs),
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda a, x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "GlobalMaxPool": lambda a, x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True),
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "ReduceMean": _reduce(lambda x, axes, keep: x.mean(dim=axes, keepdim=keep)),
    "ReduceSum": _reduce(lambda x, axes, keep: x.sum(dim=axes, keepdim=keep)),
    "ReduceMax": _reduce(_one_axis_at_a_time("amax")),
    "ReduceMin": _reduce(_one_axis_at_a_time("amin")),
    "ReduceProd": _reduce(_one_axis_at_a_time("prod")),
    "ReduceSumSquare": _reduce(lambda x, axes, keep: (x * x).sum(dim=axes, keepdim=keep)),
    "ReduceL2": _reduce(lambda x, axes, keep: torch.sqrt((x * x).sum(dim=axes, keepdim=keep))),
    "ReduceLogSumExp": _reduce(lambda x, axes, keep: torch.logsumexp(x, dim=axes, keepdim=keep)),
    "ArgMax": _arg(torch.argmax),
    "ArgMin": _arg(torch.argmin),
    "CumSum": _cumsum,
    "Transpose": lambda a, x: x.permute(a.get("perm", list(reversed(range(x.dim()))))),
    "Reshape": _reshape,
    "Flatten": lambda a, x: x.reshape(math.prod(x.shape[:_axis(a.get("axis", 1), x.dim())]), -1),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda a, *xs: torch.cat(xs, dim=a["axis"]),
    "Split": _split,
    "Slice": _slice,
    "Gather": _gather,
    "Shape": _shape,
    "Size": lambda a, x: torch.tensor(x.numel(), dtype=torch.int64, device=x.device),
    "Cast": _cast,
    "CastLike": lambda a, x, like: x.to(like.dtype),
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": lambda a, x, reps: x.repeat(_ints(reps)),
    "Pad": _pad,
    "Where": lambda a, c, x, y: torch.where(c, x, y),
    "Equal": lambda a, x, y: x == y,
    "Less": lambda a, x, y: x < y,
    "LessOrEqual": lambda a, x, y: x <= y,
    "Greater": lambda a, x, y: x > y,
    "GreaterOrEqual": lambda a, x, y: x >= y,
    "Not": lambda a, x: ~x,
    "And": lambda a, x, y: x & y,
    "Or": lambda a, x, y: x | y,
    "Xor": lambda a, x, y: x ^ y,
    "IsNaN": lambda a, x: torch.isnan(x),
    "Min": _variadic(torch.minimum),
    "Max": _variadic(torch.maximum),
    "Sum": _variadic(torch.add),
    "Mean": lambda a, *xs: sum(xs[1:], xs[0]) / len(xs),
    "Range": _range,
    "Resize": _resize,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
} | MORE_OPS


def _unsupported_variant(node) -> str | None:
    """Why a node of a supported op type still cannot run here (an attribute combination), or None."""
    if node.op_type == "AveragePool":
        if any(d != 1 for d in _attrs(node).get("dilations", [])):
            return "AveragePool(dilations != 1)"
    elif node.op_type == "Resize":
        mode, ctm, nearest = key = _resize_key(_attrs(node))
        if key not in _RESIZE_SUPPORTED:
            return f"Resize(mode={mode}, coordinate_transformation_mode={ctm}" + (
                f", nearest_mode={nearest})" if nearest else ")")
    return None


def unsupported_ops(model) -> list[tuple[str, str]]:
    """(op, node name) for every node this interpreter cannot run, in graph order.

    An op type with no implementation is named as such; a supported type with an attribute
    combination it cannot reproduce is named with those attributes.
    """
    out = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        where = node.name or node.output[0]
        if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
            out.append((f"{node.domain + '.' if node.domain else ''}{node.op_type}", where))
        elif (variant := _unsupported_variant(node)) is not None:
            out.append((variant, where))
    return out


def _safe_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name).strip("_") or "t"
    if base[0].isdigit():
        base = "t_" + base
    candidate, i = base, 1
    while candidate in taken:
        candidate, i = f"{base}_{i}", i + 1
    taken.add(candidate)
    return candidate


class OnnxGraphModule(nn.Module):
    """An ONNX graph as a torch module. Float initializers are trainable parameters (except
    BatchNormalization running statistics, which are buffers); everything else is a buffer."""

    def __init__(self, model):
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        init_names = {t.name for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in init_names]
        self.output_names = [o.name for o in graph.output]
        stats = {n.input[i] for n in graph.node if n.op_type == "BatchNormalization"
                 for i in (3, 4) if len(n.input) > i}
        taken: set[str] = set()
        self._tensor_attr: dict[str, str] = {}  # ONNX value name -> attribute name on self
        # Exporters number their constants with global counters, so ONNX names change from one
        # export to the next; name each tensor by where it is first used, which does not.
        first_use: dict[str, str] = {}
        for i, node in enumerate(graph.node):
            for slot, name in enumerate(node.input):
                first_use.setdefault(name, f"n{i:04d}_{node.op_type}_in{slot}")
        self.params = nn.ParameterDict()
        for t in graph.initializer:
            array = numpy_helper.to_array(t).copy()
            attr = _safe_name(first_use.get(t.name, t.name), taken)
            value = torch.from_numpy(array) if array.dtype != np.uint64 else torch.from_numpy(array.astype(np.int64))
            if value.is_floating_point() and t.name not in stats:
                self.params[attr] = nn.Parameter(value)
                self._tensor_attr[t.name] = "params." + attr
            else:
                self.register_buffer("c_" + attr, value)
                self._tensor_attr[t.name] = "c_" + attr
        self.nodes: list[tuple[str, list[str], list[str], dict]] = []
        for node in graph.node:
            attrs = _attrs(node)
            if node.op_type == "Constant":
                value = next(iter(attrs.values()))
                array = np.asarray(value)
                attr = _safe_name("const_" + first_use.get(node.output[0], node.output[0]), taken)
                self.register_buffer(attr, torch.from_numpy(array.copy()))
                self._tensor_attr[node.output[0]] = attr
                continue
            attrs["_n_outputs"] = len(node.output)
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))

    def _get(self, name: str):
        attr = self._tensor_attr[name]
        if attr.startswith("params."):
            return self.params[attr[len("params."):]]
        return getattr(self, attr)

    def forward(self, *inputs):
        env = dict(zip(self.input_names, inputs))
        for op, ins, outs, attrs in self.nodes:
            args = [None if n == "" else (env[n] if n in env else self._get(n)) for n in ins]
            while args and args[-1] is None:
                args.pop()
            result = OPS[op](attrs, *args)
            if not isinstance(result, tuple):
                result = (result,)
            for name, value in zip(outs, result):
                if name:
                    env[name] = value
        outputs = [env[n] if n in env else self._get(n) for n in self.output_names]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class PermutedIO(nn.Module):
    """Wrap a module so its inputs and outputs are permuted at the boundary (layout change)."""

    def __init__(self, inner: nn.Module, input_perms, output_perms):
        super().__init__()
        self.inner = inner
        self.input_perms = [tuple(p) if p else None for p in input_perms]
        self.output_perms = [tuple(p) if p else None for p in output_perms]

    def forward(self, *inputs):
        inputs = [x.permute(p) if p else x for x, p in zip(inputs, self.input_perms)]
        out = self.inner(*inputs)
        many = isinstance(out, tuple)
        outs = [o.permute(p) if p else o for o, p in zip(out if many else (out,), self.output_perms)]
        return tuple(outs) if many else outs[0]
