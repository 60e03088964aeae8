"""Attention: nn.MultiheadAttention as one Keras MultiHeadAttention layer, and the
scaled_dot_product_attention op as keras.ops.dot_product_attention (unmasked, rank 4) or written
out (masks, other ranks, grouped-query heads)."""

from __future__ import annotations

import inspect

import numpy as np

from .. import plan
from ..registry import converter
from ..values import Const, DynamicShapeError, Value
from ._common import layers, ops
from .linear import port


def _bound_call(node) -> dict:
    """The MultiheadAttention.forward arguments of this call, by name."""
    import torch

    params = list(inspect.signature(torch.nn.MultiheadAttention.forward).parameters)[1:]
    bound = dict(zip(params, node.args["args"]))
    bound.update(node.args["kwargs"])
    return bound


def _keep_mask(ctx, v, what):
    """A torch mask (bool True = blocked, or additive float with -inf) as a Keras bool keep-mask."""
    if v is None:
        return None
    if isinstance(v, Const):
        a = v.array
        if a.dtype == bool:
            keep = ~a
        elif np.all((a == 0) | np.isneginf(a)):
            keep = a == 0
        else:
            raise ctx.unsupported(f"MultiheadAttention with a non-boolean additive {what}")
        return ctx.const_tensor(Const(keep), None, name_hint=f"{ctx.node.module_path}.{what}")
    t = ctx.keras_tensor(ctx.materialize(v), plan.identity(v.rank))
    if v.meta.dtype == "bool":
        return ops().logical_not(t)
    raise ctx.unsupported(f"MultiheadAttention with a computed float {what}")


@converter("mha")
def mha(ctx, node, row):
    m = node.module
    call = _bound_call(node)
    if m.bias_k is not None or m.add_zero_attn:
        raise ctx.unsupported("MultiheadAttention with add_bias_kv / add_zero_attn")
    q, k, v = (ctx.value(call[n]) for n in ("query", "key", "value"))
    batch_perm = (0, 1, 2) if m.batch_first else (1, 0, 2)
    tq, tk, tv = (ctx.keras_tensor(ctx.materialize(x), batch_perm) for x in (q, k, v))
    heads, embed = m.num_heads, m.embed_dim
    head_dim = embed // heads
    layer = layers().MultiHeadAttention(num_heads=heads, key_dim=head_dim, value_dim=head_dim,
                                        dropout=float(m.dropout), use_bias=m.in_proj_bias is not None,
                                        name=ctx.layer_name())
    keep = None
    kpm = _keep_mask(ctx, ctx.value(call.get("key_padding_mask")), "key_padding_mask")
    am = _keep_mask(ctx, ctx.value(call.get("attn_mask")), "attn_mask")
    if kpm is not None:  # (N, S) -> (N, 1, S), broadcast over the queries
        keep = ops().expand_dims(kpm, 1)
    if am is not None:  # (L, S) or (N*H, L, S)
        if len(am.shape) == 3:
            raise ctx.unsupported("MultiheadAttention with a per-head 3-D attn_mask")
        am = ops().expand_dims(am, 0)
        keep = am if keep is None else ops().logical_and(keep, am)
    outputs = node.args["outputs"]
    want_weights = len(outputs) > 1 and outputs[1] is not None and call.get("need_weights", True)
    result = layer(tq, tv, key=tk, attention_mask=keep, return_attention_scores=bool(want_weights),
                   use_causal_mask=bool(call.get("is_causal", False)) and am is None)
    out, scores = (result if want_weights else (result, None))
    # weights: packed in-projection or separate q/k/v projections (kdim/vdim != embed_dim)
    def param(name):  # a module tensor as a Const with its full path, so the state port can follow it
        tensor = m.get_parameter(name)
        return Const(tensor.detach().numpy(), f"{node.module_path}.{name}", True)

    bias = param("in_proj_bias").array if m.in_proj_bias is not None else None
    arrays = {"out_proj.weight": param("out_proj.weight"),
              "out_proj.bias": param("out_proj.bias") if m.out_proj.bias is not None else None}
    params = {"in_proj_weight": {"num_heads": heads}, "out_proj.weight": {"num_heads": heads}}
    if m._qkv_same_embed_dim:
        zero_bias = np.zeros(3 * embed, np.float32)
        arrays.update({"in_proj_weight": param("in_proj_weight"),
                       "in_proj_bias": param("in_proj_bias") if bias is not None else zero_bias})
        port(ctx, row, layer, arrays, params=params)
        if bias is None:  # the transform moves biases too; this layer has none
            ctx.assignments[-1].values = {k: a for k, a in ctx.assignments[-1].values.items()
                                          if not k.endswith("bias")}
    else:
        port(ctx, row, layer, arrays, params=params)
        from ...transforms import get_transform

        proj = get_transform("mha_proj")
        b3 = np.split(bias, 3) if bias is not None else [np.zeros(embed, np.float32)] * 3
        values = {}
        for name, w, b in (("query", m.q_proj_weight, b3[0]), ("key", m.k_proj_weight, b3[1]),
                           ("value", m.v_proj_weight, b3[2])):
            kern, kb = proj.to_keras(w.detach().numpy(), b, num_heads=heads)
            values[f"{name}/kernel"], values[f"{name}/bias"] = kern, kb
        ctx.assign(layer, values)
    meta0 = ctx.graph.node(outputs[0]).meta
    value = ctx.new_value(out, batch_perm, meta=meta0)
    if not want_weights:
        return _set_outputs(ctx, node, [value, None])
    weights = ops().mean(scores, axis=1) if call.get("average_attn_weights", True) else scores
    return _set_outputs(ctx, node, [value, ctx.new_value(weights, None, meta=ctx.graph.node(outputs[1]).meta)])


def _set_outputs(ctx, node, values):
    ctx.set(node, tuple(values))


@converter("sdpa")
def sdpa(ctx, node, row):
    a = node.args
    q, k, v = ctx.arg("query"), ctx.arg("key"), ctx.arg("value")
    mask = ctx.arg("attn_mask")
    if float(a.get("dropout_p", 0.0)) != 0.0:
        raise ctx.unsupported("scaled_dot_product_attention with dropout_p > 0")
    rank = q.rank
    if rank != 4 or q.meta.shape[1] != k.meta.shape[1] or mask is not None:
        # other ranks (timm hiera's (B, heads, windows, L, D)), grouped-query heads, and masks
        # (torch gives 0 for a fully masked query row, Keras the mean of the values)
        return _explicit_attention(ctx, node, q, k, v, mask)
    # torch (B, H, L, D) is Keras (B, L, H, D): the layout (0, 2, 1, 3)
    layout = (0, 2, 1, 3)
    tq, tk, tv = (ctx.keras_tensor(ctx.materialize(x), layout) for x in (q, k, v))
    kwargs = {"scale": a.get("scale"), "is_causal": bool(a.get("is_causal", False))}
    out = ops().dot_product_attention(tq, tk, tv, **kwargs)
    return ctx.new_value(out, layout)


def _explicit_attention(ctx, node, q, k, v, mask):
    """softmax(q @ k^T * scale + mask) @ v in torch's layout, for any rank; with
    enable_gqa, key/value heads (dim -3) are repeated to the query's, as torch does. A single
    key/value head (timm mobilenetv5's multi-query attention, shape (B, 1, S, D)) broadcasts
    without enable_gqa, as the batch dims of torch's SDPA do."""
    import math

    a = node.args
    ident = plan.identity(q.rank)
    tq, tk, tv = (ctx.keras_tensor(ctx.materialize(x), ident) for x in (q, k, v))
    heads_q, heads_k = q.meta.shape[-3], k.meta.shape[-3]
    if heads_q != heads_k and 1 not in (heads_q, heads_k):  # one head broadcasts, as in torch's matmul
        if not a.get("enable_gqa"):
            raise ctx.unsupported("scaled_dot_product_attention with different query and key heads")
        if not (isinstance(heads_q, int) and isinstance(heads_k, int)):  # the head counts stay static
            raise DynamicShapeError(f"grouped-query heads {heads_q}/{heads_k} at {ctx.where()}")
        tk, tv = (ops().repeat(t, heads_q // heads_k, axis=-3) for t in (tk, tv))
    scale, depth = a.get("scale"), q.meta.shape[-1]
    if scale is None and not isinstance(depth, int):  # the default scale needs a static head size
        raise DynamicShapeError(f"attention head size {depth} at {ctx.where()}")
    scale = 1.0 / math.sqrt(depth) if scale is None else float(scale)
    scores = ops().multiply(ops().matmul(tq, ops().swapaxes(tk, -1, -2)), scale)
    if a.get("is_causal"):
        length, source = q.meta.shape[-2], k.meta.shape[-2]
        if not (isinstance(length, int) and isinstance(source, int)):  # the lengths stay static
            raise DynamicShapeError(f"causal attention mask of dynamic length at {ctx.where()}")
        keep = np.tril(np.ones((length, source), dtype=bool))
        scores = ops().where(ctx.const_tensor(Const(keep), None), scores, float("-inf"))
    if mask is not None:
        dtype = mask.meta.dtype if isinstance(mask, Value) else str(mask.array.dtype)
        rank_m = mask.rank if isinstance(mask, Value) else mask.array.ndim
        tm = ctx.keras_tensor(ctx.materialize(mask) if isinstance(mask, Value) else mask, plan.identity(rank_m))
        scores = ops().where(tm, scores, float("-inf")) if dtype == "bool" else ops().add(scores, tm)
    weights = ops().softmax(scores, axis=-1)
    if mask is not None:  # a query that may attend to nothing gets 0, as in torch
        attends = ops().isfinite(ops().max(scores, axis=-1, keepdims=True))
        weights = ops().where(attends, weights, 0.0)
    out = ops().matmul(weights, tv)
    return ctx.new_value(out, ident)
