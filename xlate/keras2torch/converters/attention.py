"""MultiHeadAttention.

When Keras' heads tile the embedding exactly (num_heads * key_dim == every input width ==
value_dim * num_heads == output width, biases on) the layer is torch's own
``nn.MultiheadAttention(batch_first=True)``, its packed in-projection filled through the row's
``mha_in_proj`` transform. Any other shape (key_dim independent of the width, value_dim,
output_shape, use_bias=False) becomes four ``nn.Linear`` projections around
``F.scaled_dot_product_attention``, filled through the per-projection ``mha_proj`` transform.
Keras masks say "may attend" (True); nn.MultiheadAttention's say "blocked", so they are inverted.
"""

from __future__ import annotations

import numpy as np

from ...transforms import get_transform
from ..codegen import call
from ..registry import NotConvertible, converter
from ..walk import Ref


def _operands(node):
    args, kwargs = list(node.args), dict(node.kwargs)
    query = args[0] if args else kwargs.get("query")
    value = args[1] if len(args) > 1 else kwargs.get("value")
    key = args[2] if len(args) > 2 else kwargs.get("key")
    return query, value, key if key is not None else value, kwargs


def _mask_source(em, mask) -> str | None:
    if mask is None:
        return None
    if not isinstance(mask, Ref):
        raise NotConvertible("a constant attention mask")
    m = em.in_layout(mask, "keras")
    return m.var if m.dtype == "bool" else f"{m.var}.bool()"


@converter("mha")
def multi_head_attention(em, node, row):
    cfg = node.config
    query, value, key, kwargs = _operands(node)
    for unsupported in ("query_mask", "value_mask", "key_mask"):
        if kwargs.get(unsupported) is not None:
            raise NotConvertible(f"{unsupported} (Keras masks are not converted)")
    if kwargs.get("return_attention_scores"):
        raise NotConvertible("return_attention_scores=True")
    axes = cfg.get("attention_axes")
    q, v, k = (em.in_layout(t, "keras") for t in (query, value, key))
    if q.rank != 3 or axes not in (None, (1,), [1]):
        raise NotConvertible("attention over axes other than the sequence axis of (batch, time, features)")
    heads, key_dim = int(cfg["num_heads"]), int(cfg["key_dim"])
    value_dim = int(cfg["value_dim"] or key_dim)
    arrays = em.keras_weights(node.op)
    out_width = int(arrays["attention_output/kernel"].shape[-1])
    width = int(q.shape[-1])
    packed = (cfg["use_bias"] and value_dim == key_dim and heads * key_dim == width and out_width == width
              and int(k.shape[-1]) == width and int(v.shape[-1]) == width)
    mask = _mask_source(em, kwargs.get("attention_mask"))
    causal = bool(kwargs.get("use_causal_mask"))
    dropout = float(cfg.get("dropout") or 0.0)
    if packed:
        _packed(em, node, row, arrays, q, k, v, heads, width, dropout, mask, causal)
    else:
        _projected(em, node, arrays, q, k, v, heads, key_dim, value_dim, cfg, dropout, mask, causal)


def _packed(em, node, row, arrays, q, k, v, heads, width, dropout, mask, causal):
    kwargs = {"dropout": dropout} if dropout else {}
    attr = em.module(node, call("nn.MultiheadAttention", width, heads, batch_first=True, **kwargs))
    em.port(row, attr, arrays, params={"mha_in_proj": {"num_heads": heads}, "mha_out_proj": {"num_heads": heads}})
    blocked = _blocked_mask(em, node, mask, causal, q, k, heads)
    extra = f", attn_mask={blocked}" if blocked else ""
    em.assign(node, f"self.{attr}({q.var}, {k.var}, {v.var}, need_weights=False{extra})", module=attr,
              pattern="{}, _")


def _blocked_mask(em, node, mask, causal, q, k, heads) -> str | None:
    """torch's attn_mask (True = blocked) from Keras' attention_mask (True = may attend)."""
    parts = []
    if mask is not None:
        parts.append(f"~{mask}.repeat_interleave({heads}, dim=0)")
    if causal:
        t, s = q.shape[1], k.shape[1]
        if t is None or s is None:
            raise NotConvertible("use_causal_mask with unknown sequence lengths")
        parts.append(f"torch.ones({t}, {s}, dtype=torch.bool, device={q.var}.device).triu(1)")
    if not parts:
        return None
    name = em.temp(f"{node.name}_blocked")
    em.emit(f"{name} = {' | '.join(parts)}", "Keras masks say may-attend, torch's say blocked")
    return name


def _projected(em, node, arrays, q, k, v, heads, key_dim, value_dim, cfg, dropout, mask, causal):
    proj = get_transform("mha_proj")
    out_proj = get_transform("mha_out_proj")
    use_bias = bool(cfg["use_bias"])
    names = {}
    for part, x, dim in (("query", q, key_dim), ("key", k, key_dim), ("value", v, value_dim)):
        kernel = arrays[f"{part}/kernel"]
        bias = arrays.get(f"{part}/bias", np.zeros(kernel.shape[1:], np.float32))
        attr = em.module(node, call("nn.Linear", int(x.shape[-1]), heads * dim,
                                    **({} if use_bias else {"bias": False})), suffix=f"_{part}")
        weight, torch_bias = proj.to_torch(kernel, bias)
        em.state[f"{attr}.weight"] = weight
        if use_bias:
            em.state[f"{attr}.bias"] = torch_bias
        names[part] = attr
    out_kernel = arrays["attention_output/kernel"]
    attr = em.module(node, call("nn.Linear", heads * value_dim, int(out_kernel.shape[-1]),
                                **({} if use_bias else {"bias": False})), suffix="_output")
    (em.state[f"{attr}.weight"],) = out_proj.to_torch(out_kernel)
    if use_bias:
        em.state[f"{attr}.bias"] = arrays["attention_output/bias"]
    em.use_row(em.row("sdpa"))
    heads_of = {}
    for part, x, dim in (("query", q, key_dim), ("key", k, key_dim), ("value", v, value_dim)):
        t = em.temp(f"{node.name}_{part[0]}")
        em.emit(f"{t} = self.{names[part]}({x.var}).unflatten(-1, ({heads}, {dim})).transpose(1, 2)")
        heads_of[part] = t
    kwargs = {}
    if mask is not None:
        kwargs["attn_mask"] = f"{mask}[:, None]"
    if causal:
        if mask is not None:
            t, s = q.shape[1], k.shape[1]
            kwargs["attn_mask"] = (f"{mask}[:, None] & torch.ones({t}, {s}, dtype=torch.bool, "
                                   f"device={q.var}.device).tril()")
        else:
            kwargs["is_causal"] = "True"
    if dropout:
        kwargs["dropout_p"] = f"{dropout!r} if self.training else 0.0"
    extra = "".join(f", {a}={b}" for a, b in kwargs.items())
    att = em.temp(f"{node.name}_heads")
    em.emit(f"{att} = F.scaled_dot_product_attention({heads_of['query']}, {heads_of['key']}, "
            f"{heads_of['value']}{extra})", "(batch, heads, time, depth); scaled by 1/sqrt(key_dim) like Keras")
    em.assign(node, f"self.{attr}({att}.transpose(1, 2).flatten(2))", module=attr)
