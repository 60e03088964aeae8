"""Weights computed in forward from trainable parameters (reparametrizations): weight norm.

The result is a graph value, not a constant, so its parameters stay trainable Keras variables and
the layer that consumes it (a conv or a linear) takes a computed weight.
"""

from __future__ import annotations

from .. import plan
from ..registry import converter
from ._common import ops


@converter("weight_norm")
def weight_norm(ctx, node, row):
    """``aten._weight_norm(v, g, dim)`` = ``v * g / ||v||``, the norm over every axis but ``dim``
    (all of them for ``dim=-1``): torch.nn.utils.parametrizations.weight_norm, as in HF wav2vec2's
    positional convolution."""
    v, g = ctx.materialize(ctx.arg("v")), ctx.materialize(ctx.arg("g"))
    dim = int(node.args.get("dim", 0))
    axes = tuple(range(v.rank)) if dim == -1 else tuple(a for a in range(v.rank) if a != dim % v.rank)
    tv = ctx.keras_tensor(v, plan.identity(v.rank))
    tg = ctx.keras_tensor(g, plan.identity(g.rank))
    norm = ops().sqrt(ops().sum(ops().square(tv), axis=axes, keepdims=True))
    return ctx.new_value(ops().multiply(tv, ops().divide(tg, norm)), plan.identity(v.rank))
