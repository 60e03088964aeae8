"""Normalization: BatchNorm (running or batch statistics), LayerNorm, GroupNorm, InstanceNorm, RMSNorm.

eps and momentum are always passed explicitly (Keras defaults differ: eps 1e-3, momentum 0.99,
and the momentum convention is inverted: keras = 1 - torch).
"""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import converter
from ..values import Const, DynamicShapeError, Value
from ._common import layers, ops
from .linear import _shared_layer, port


@converter("batch_norm")
def batch_norm(ctx, node, row):
    x, w, b = ctx.arg("input"), ctx.arg("weight"), ctx.arg("bias")
    mean, var = ctx.arg("running_mean"), ctx.arg("running_var")
    training = bool(node.args.get("training", False))
    momentum, eps = node.args.get("momentum", 0.1), float(node.args.get("eps", 1e-5))
    legit = node.target.startswith("aten._native_batch_norm_legit")
    if mean is None or var is None or training:
        if node.target == "aten._native_batch_norm_legit_functional.default":
            raise ctx.unsupported("BatchNorm updating its running statistics inside the graph")
        value = _batch_statistics(ctx, ctx.materialize(x), w, b, eps, node.meta[0] if legit else node.meta)
        return (value, None, None) if legit else value
    if momentum is None:
        raise ctx.unsupported("BatchNorm with momentum=None (cumulative average)")
    x = ctx.materialize(x)
    perm = plan.channels_last(x.rank)
    key = ("bn", ctx.weight_key(w), ctx.weight_key(b), ctx.weight_key(mean))
    layer, new = _shared_layer(ctx, key, lambda: layers().BatchNormalization(
        axis=-1, momentum=row.to_keras_value("momentum", float(momentum)), epsilon=eps,
        center=b is not None, scale=w is not None, name=ctx.layer_name()))
    if new:
        port(ctx, row, layer, {"weight": w, "bias": b, "running_mean": mean, "running_var": var})
    out = layer(ctx.keras_tensor(x, perm))
    value = ctx.new_value(out, perm, meta=node.meta[0] if legit else node.meta)
    return (value, None, None) if legit else value


def _batch_statistics(ctx, x: Value, w, b, eps: float, meta) -> Value:
    """Batch norm by the statistics of this batch (no running statistics, or training=True):
    normalized by the mean and biased variance over every axis but the channel (torch dim 1),
    times weight plus bias when given. Works in the value's own layout; weight and bias, Consts
    (trainable stay Parameter layers) or computed values, are broadcast along the channel axis."""
    o = ops()
    t = x.tensor
    axis = x.perm.index(1)
    reduce = tuple(i for i in range(x.rank) if i != axis)
    mean = o.mean(t, axis=reduce, keepdims=True)
    centered = o.subtract(t, mean)
    var = o.mean(o.square(centered), axis=reduce, keepdims=True)
    out = o.multiply(centered, o.rsqrt(o.add(var, eps)))
    shape = [1] * x.rank
    shape[axis] = -1
    for p, combine in ((w, o.multiply), (b, o.add)):
        if p is not None:
            pt = ctx.const_tensor(p, None) if isinstance(p, Const) else ctx.keras_tensor(ctx.materialize(p), (0,))
            out = combine(out, o.reshape(pt, shape))
    return ctx.new_value(out, x.perm, meta=meta)


def _normalized_axes(ctx, x: Value, k: int, *, channels_last: bool = False):
    """(value, Keras axes of its last k torch dims, whether its weights need channels_last_param).

    Where those dims are not the last k Keras axes in order, the value is moved to torch layout,
    except (``channels_last``) a channels-last value normalized over all but the batch dim: it
    stays as it is and its per-position weights are permuted instead."""
    dims = list(range(x.rank - k, x.rank))
    axes = [x.perm.index(d) for d in dims]
    if axes == dims:
        return x, axes, False
    if channels_last and k == x.rank - 1 and x.perm == plan.channels_last(x.rank):
        return x, axes, True
    identity = plan.identity(x.rank)
    return Value(x.meta, identity, {identity: ctx.keras_tensor(x, identity)}), dims, False


@converter("layer_norm")
def layer_norm(ctx, node, row):
    x, w, b = ctx.arg("input"), ctx.arg("weight"), ctx.arg("bias")
    shape = node.args["normalized_shape"]
    k = len(shape) if isinstance(shape, (list, tuple)) else 1
    eps = float(node.args.get("eps", 1e-5))
    native = node.target == "aten.native_layer_norm.default"
    x = ctx.materialize(x)
    x, axes, permuted = _normalized_axes(ctx, x, k, channels_last=True)
    transforms = {"weight": "channels_last_param", "bias": "channels_last_param"} if permuted else {}
    axis = axes[0] if len(axes) == 1 else sorted(axes)
    key = ("ln", ctx.weight_key(w), ctx.weight_key(b), tuple(transforms))
    layer, new = _shared_layer(ctx, key, lambda: layers().LayerNormalization(
        axis=axis, epsilon=eps, center=b is not None, scale=w is not None, name=ctx.layer_name()))
    if new:
        port(ctx, row, layer, {"weight": w, "bias": b}, transforms=transforms)
    out = layer(x.tensor if x.perm in x.tensors else ctx.keras_tensor(x))
    value = ctx.new_value(out, x.perm, meta=node.meta[0] if native else node.meta)
    return (value, None, None) if native else value


def _group_normalization(ctx, row, groups: int):
    """Keras GroupNormalization over channels-last (groups=-1: one channel per group)."""
    x, w, b = ctx.materialize(ctx.arg("input")), ctx.arg("weight"), ctx.arg("bias")
    if not isinstance(x.meta.shape[1], int):
        raise DynamicShapeError(f"group normalization over a dynamic number of channels at {ctx.where()}")
    perm = plan.channels_last(x.rank)
    layer = layers().GroupNormalization(groups=groups, axis=-1, epsilon=float(ctx.node.args.get("eps", 1e-5)),
                                        center=b is not None, scale=w is not None, name=ctx.layer_name())
    port(ctx, row, layer, {"weight": w, "bias": b})
    out = layer(ctx.keras_tensor(x, perm))
    return ctx.new_value(out, perm)


@converter("group_norm")
def group_norm(ctx, node, row):
    return _group_normalization(ctx, row, int(node.args.get("num_groups", node.args.get("group"))))


@converter("instance_norm")
def instance_norm(ctx, node, row):
    if not node.args.get("use_input_stats", True):
        raise ctx.unsupported("InstanceNorm with track_running_stats=True in eval mode")
    return _group_normalization(ctx, row, -1)


@converter("rms_norm")
def rms_norm(ctx, node, row):
    x, w = ctx.arg("input"), ctx.arg("weight")
    shape = node.args["normalized_shape"]
    k = len(shape) if isinstance(shape, (list, tuple)) else 1
    eps = node.args.get("eps")
    eps = float(np.finfo(np.float32).eps) if eps is None else float(eps)
    x = ctx.materialize(x)
    x, axes, _ = _normalized_axes(ctx, x, k)
    layer = layers().RMSNormalization(axis=axes[0] if k == 1 else axes, epsilon=eps, name=ctx.layer_name())
    if w is None:
        raise ctx.unsupported("RMSNorm without a weight")
    port(ctx, row, layer, {"weight": w})
    out = layer(x.tensor)
    return ctx.new_value(out, x.perm)
