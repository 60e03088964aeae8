"""The tensor ops of xlate's ONNX interpreter (``xlate.onnx_torch``): elementwise math and
activations, reductions, shapes, indexing and casts, each to the ONNX spec, as ``TENSOR_OPS``
(ONNX op type -> ``fn(attributes, *inputs)``).

Owns these ops and the two small argument helpers the layer ops share (``ints``, ``positive_axis``); the
layer ops (convolution, pooling, normalization, resize) are ``xlate.onnx_nn_ops``'. It must not
import the interpreter.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ONNX TensorProto data types -> torch dtypes
DTYPES = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
    9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32 if hasattr(torch, "uint32") else None,
    16: torch.bfloat16,
}


def ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def positive_axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


def _reduce(fn):
    def op(a, x, axes=None):
        if axes is None:
            axes = a.get("axes")
        keep = bool(a.get("keepdims", 1))
        if axes is None or (isinstance(axes, torch.Tensor) and axes.numel() == 0):
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        axes = [positive_axis(i, x.dim()) for i in ints(axes)]
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
    shape = ints(shape)
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _slice(a, x, starts=None, ends=None, axes=None, steps=None):
    if starts is None:  # opset < 10: attributes
        starts, ends, axes = a["starts"], a["ends"], a.get("axes")
    starts, ends = ints(starts), ints(ends)
    axes = list(range(len(starts))) if axes is None else [positive_axis(i, x.dim()) for i in ints(axes)]
    steps = [1] * len(starts) if steps is None else ints(steps)
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
    ax = positive_axis(a.get("axis", 0), x.dim())
    idx = idx.long()
    idx = torch.where(idx < 0, idx + x.shape[ax], idx)
    flat = x.index_select(ax, idx.reshape(-1))
    return flat.reshape(tuple(x.shape[:ax]) + tuple(idx.shape) + tuple(x.shape[ax + 1:]))


def _split(a, x, split=None):
    ax = positive_axis(a.get("axis", 0), x.dim())
    split = a.get("split") if split is None else split
    if split is None:
        split = math.ceil(x.shape[ax] / (a.get("num_outputs") or a["_n_outputs"]))
    pieces = torch.split(x, split if isinstance(split, int) else ints(split), dim=ax)
    return tuple(pieces[i] for i in range(a["_n_outputs"]))  # indexed, not iterated: torch.fx traces it


def _squeeze(a, x, axes=None):
    axes = a.get("axes") if axes is None else axes
    if axes is None:
        return x.squeeze()
    for ax in sorted((positive_axis(i, x.dim()) for i in ints(axes)), reverse=True):
        x = x.squeeze(ax)
    return x


def _unsqueeze(a, x, axes=None):
    axes = a.get("axes") if axes is None else axes
    rank = x.dim() + len(ints(axes))
    for ax in sorted(positive_axis(i, rank) for i in ints(axes)):
        x = x.unsqueeze(ax)
    return x


def _pad(a, x, pads=None, value=None, axes=None):
    mode = a.get("mode", "constant")
    pads = ints(a["pads"] if pads is None else pads)
    value = float(a.get("value", 0.0) if value is None or value.numel() == 0 else value.item())
    rank = x.dim()
    axes = list(range(rank)) if axes is None else [positive_axis(i, rank) for i in ints(axes)]
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
    return x.to(DTYPES[a["to"]])


def _shape(a, x):
    dims = list(x.shape)[a.get("start", 0):a.get("end", None)]
    return torch.tensor(dims, dtype=torch.int64, device=x.device)


def _constant_of_shape(a, shape):
    value = a.get("value", np.zeros(1, np.float32))
    v = torch.from_numpy(np.asarray(value).reshape(-1)[:1].copy())
    return v.to(shape.device).expand(ints(shape)).clone()


def _expand(a, x, shape):
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(ints(shape))))


def _range(a, start, limit, delta):
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)


def _arg(fn):
    def op(a, x):
        ax = positive_axis(a.get("axis", 0), x.dim())
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


TENSOR_OPS = {
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
    "Flatten": lambda a, x: x.reshape(math.prod(x.shape[:positive_axis(a.get("axis", 1), x.dim())]), -1),
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
    "Tile": lambda a, x, reps: x.repeat(ints(reps)),
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
}
