"""Activations, dropout and identity ops."""

from __future__ import annotations

from ...table import VALUE_CONVERSIONS
from .. import plan
from ..registry import converter
from ..values import Value
from ._common import layers
from .elementwise import elementwise_result


def keras_fn(name: str):
    import keras

    if name == "mish":  # keras.activations.mish calls TensorFlow directly: compose it from ops
        return lambda t: keras.ops.multiply(t, keras.ops.tanh(keras.ops.softplus(t)))
    return getattr(keras.ops, name, None) or getattr(keras.activations, name)


def keras_kwargs(row, node) -> dict:
    """The row's argument map applied to the node: every argument passed explicitly, with torch's
    default where the graph left it out (Keras defaults differ, e.g. LeakyReLU 0.3 vs 0.01)."""
    kwargs = {}
    for a in row.args:
        if a.torch in (None, "-") or a.keras in (None, "-"):
            continue
        value = node.args.get(a.torch, a.torch_default)
        kwargs[a.keras] = VALUE_CONVERSIONS[a.convert][0](value)
    return kwargs


@converter("activation")
def activation(ctx, node, row):
    x = ctx.arg("input")
    a = node.args
    if node.target.startswith("aten.hardtanh"):
        lo, hi = float(a.get("min_val", -1.0)), float(a.get("max_val", 1.0))
        if (lo, hi) != (0.0, 6.0):
            ctx.used(ctx.table.row("hardtanh"))
            return elementwise_result(ctx, lambda t: keras_fn("clip")(t, lo, hi), [x])
        return elementwise_result(ctx, keras_fn("relu6"), [x])
    if node.target.startswith("aten.softplus"):
        beta = float(a.get("beta", 1.0))
        fn = keras_fn("softplus")
        if beta == 1.0:
            return elementwise_result(ctx, fn, [x])
        return elementwise_result(ctx, lambda t: fn(t * beta) / beta, [x])
    if node.target.startswith("aten.elu") and (a.get("scale", 1) != 1 or a.get("input_scale", 1) != 1):
        scale, input_scale, alpha = float(a.get("scale", 1)), float(a.get("input_scale", 1)), float(a.get("alpha", 1))
        return elementwise_result(ctx, lambda t: keras_fn("elu")(t * input_scale, alpha=alpha) * scale, [x])
    fn = keras_fn(row.keras_op)
    kwargs = keras_kwargs(row, node)
    return elementwise_result(ctx, (lambda t: fn(t, **kwargs)) if kwargs else fn, [x])


@converter("axis_activation")
def axis_activation(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    dim = int(node.args.get("dim", -1))
    axis = plan.keras_axis(x.perm, dim)
    fn = keras_fn(row.keras_op)
    out = fn(x.tensor, axis=axis)
    return ctx.new_value(out, x.perm)


@converter("prelu")
def prelu(ctx, node, row):
    x, w = ctx.materialize(ctx.arg("input")), ctx.arg("weight")
    perm = plan.channels_last(x.rank)
    spatial = max(x.rank - 2, 0)
    shared = list(range(1, x.rank)) if w.array.size == 1 else list(range(1, x.rank - 1))
    layer = layers().PReLU(shared_axes=shared or None, name=ctx.layer_name())
    from .linear import port

    # a single slope is shared over every axis: alpha (1, ..., 1)
    spatial_rank = spatial if w.array.size > 1 else x.rank - 2
    port(ctx, row, layer, {"weight": w}, params={"weight": {"spatial_rank": spatial_rank}})
    out = layer(ctx.keras_tensor(x, perm))
    return ctx.new_value(out, perm)


@converter("dropout")
def dropout(ctx, node, row):
    x = ctx.arg("input")
    p = float(node.args.get("p", 0.5))
    native = node.target.startswith("aten.native_dropout")
    if "feature" in node.target or "dropout2d" in node.target:
        x = ctx.materialize(x)
        perm = plan.channels_last(x.rank)
        cls = {3: "SpatialDropout1D", 4: "SpatialDropout2D", 5: "SpatialDropout3D"}[x.rank]
        out = getattr(layers(), cls)(rate=p, name=ctx.layer_name())(ctx.keras_tensor(x, perm))
        return ctx.new_value(out, perm)
    cls = layers().AlphaDropout if "alpha" in node.target else layers().Dropout
    layer = cls(rate=p, name=ctx.layer_name())
    value = elementwise_result(ctx, layer, [x]) if isinstance(x, Value) else x
    if native:
        value.meta = node.meta[0]
        return value, None
    return value


@converter("identity")
def identity(ctx, node, row):
    return ctx.arg("input")
