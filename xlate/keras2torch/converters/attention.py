"""MultiHeadAttention and GroupedQueryAttention.

When Keras' heads tile the embedding exactly (num_heads * key_dim == every input width ==
value_dim * num_heads == output width, biases on), and no mask can leave a query with nothing
to attend to, MultiHeadAttention is torch's own ``nn.MultiheadAttention(batch_first=True)``, its
packed in-projection filled through the row's ``mha_in_proj`` transform. Everything else becomes
``nn.Linear`` projections around ``F.scaled_dot_product_attention`` (``mha_proj`` transforms),
GroupedQueryAttention's key/value heads repeated to the query heads.

Masks are merged the way Keras merges them: the Keras masks of query, value and key (from
Masking or Embedding(mask_zero=True)), ``attention_mask``, the causal mask and the sliding window,
all "may attend" (True), sizes from the tensors at run time. A query row with nothing to attend
to gets what Keras gives it: a softmax over equal logits, i.e. the mean of the values (zeros
where Keras goes through its Softmax layer: with dropout or when returning the scores).
"""

from __future__ import annotations

import numpy as np

from ...transforms import get_transform
from ..registry import NotConvertible, converter
from ..source import call
from ..walk import Ref


def _operands(node):
    args, kwargs = list(node.args), dict(node.kwargs)
    query = args[0] if args else kwargs.get("query")
    value = args[1] if len(args) > 1 else kwargs.get("value")
    key = args[2] if len(args) > 2 else kwargs.get("key")
    return query, value, key if key is not None else value, kwargs


def _bool(em, ref) -> str:
    m = em.in_layout(ref, "keras")
    return m.var if m.dtype == "bool" else f"{m.var}.bool()"


def may_attend(em, node, kwargs, q, k, *, sliding_window=None) -> tuple[list[str], bool]:
    """The "may attend" mask terms Keras ANDs together (each broadcasting to (N, T, S)), and
    whether a query row may end up with nothing to attend to. A causal mask alone is left out
    (the caller passes is_causal=True)."""
    parts, rows_can_empty = [], False
    for name, index in (("query_mask", ":, :, None"), ("value_mask", ":, None, :"), ("key_mask", ":, None, :")):
        ref = kwargs.get(name)
        if ref is None:
            continue
        if not isinstance(ref, Ref):
            raise NotConvertible(f"a constant {name}")
        parts.append(f"{_bool(em, ref)}[{index}]")
        rows_can_empty = True
    if sliding_window is not None:
        steps = f"torch.arange({q.var}.shape[1], device={q.var}.device)[:, None] - " \
                f"torch.arange({k.var}.shape[1], device={q.var}.device)"
        parts.append(f"(({steps}).abs() < {int(sliding_window)})[None]")
        rows_can_empty = True
    mask = kwargs.get("attention_mask")
    if mask is not None:
        if not isinstance(mask, Ref):
            raise NotConvertible("a constant attention mask")
        parts.insert(0, _bool(em, mask))
        rows_can_empty = True
    if kwargs.get("use_causal_mask") and parts:
        parts.append(causal_mask(q, k))
    return parts, rows_can_empty


def causal_mask(q, k) -> str:
    """Keras' causal mask (1, T, S): query i may attend to keys 0..i, sizes at run time."""
    return f"torch.ones(1, {q.var}.shape[1], {k.var}.shape[1], dtype=torch.bool, device={q.var}.device).tril()"


class _Spec:
    """The shape of one attention layer: heads, head sizes, projections and options."""

    def __init__(self, node, arrays):
        cfg = node.config
        self.gqa = node.kind == "keras.layers.GroupQueryAttention"
        if self.gqa:
            self.heads, self.kv_heads = int(cfg["num_query_heads"]), int(cfg["num_key_value_heads"])
            self.key_dim = self.value_dim = int(cfg["head_dim"])
        else:
            self.heads = self.kv_heads = int(cfg["num_heads"])
            self.key_dim = int(cfg["key_dim"])
            self.value_dim = int(cfg["value_dim"] or self.key_dim)
            if cfg.get("attention_axes") not in (None, (1,), [1]):
                raise NotConvertible(f"attention_axes={cfg['attention_axes']}")
        out_kernel = arrays["attention_output/kernel"]
        if out_kernel.ndim != 3:
            raise NotConvertible(f"output_shape={cfg.get('output_shape')} with more than one axis")
        self.out_width = int(out_kernel.shape[-1])
        self.use_bias = bool(cfg["use_bias"])
        self.gate = bool(cfg.get("use_gate"))
        self.dropout = float(cfg.get("dropout") or 0.0)
        self.sliding_window = cfg.get("sliding_window")


@converter("mha", "gqa", masks=True)
def multi_head_attention(em, node, row):
    query, value, key, kwargs = _operands(node)
    q, v, k = (em.in_layout(t, "keras") for t in (query, value, key))
    if q.rank != 3:
        raise NotConvertible("attention over inputs other than (batch, time, features)")
    arrays = em.keras_weights(node.op)
    spec = _Spec(node, arrays)
    parts, rows_can_empty = may_attend(em, node, kwargs, q, k, sliding_window=spec.sliding_window)
    scores = bool(kwargs.get("return_attention_scores"))
    width = int(q.shape[-1])
    packed = (not spec.gqa and spec.use_bias and spec.value_dim == spec.key_dim and not spec.gate
              and spec.heads * spec.key_dim == width and spec.out_width == width and not scores
              and int(k.shape[-1]) == width and int(v.shape[-1]) == width and not rows_can_empty)
    if packed:
        _packed(em, node, row, arrays, q, k, v, spec, bool(kwargs.get("use_causal_mask")))
    else:
        _projected(em, node, arrays, q, k, v, spec, parts, rows_can_empty, scores)


def _packed(em, node, row, arrays, q, k, v, spec, causal):
    kwargs = {"dropout": spec.dropout} if spec.dropout else {}
    width = spec.heads * spec.key_dim
    attr = em.module(node, call("nn.MultiheadAttention", width, spec.heads, batch_first=True, **kwargs))
    params = {"num_heads": spec.heads}
    em.port(row, attr, arrays, params={"mha_in_proj": params, "mha_out_proj": params})
    extra = ""
    if causal:
        blocked = em.temp(f"{node.name}_blocked")
        em.emit(f"{blocked} = torch.ones({q.var}.shape[1], {k.var}.shape[1], dtype=torch.bool, "
                f"device={q.var}.device).triu(1)", "causal; torch's masks say blocked")
        extra = f", attn_mask={blocked}"
    em.assign(node, f"self.{attr}({q.var}, {k.var}, {v.var}, need_weights=False{extra})", module=attr,
              pattern="{}, _")


def _linear(em, node, arrays, part: str, in_width: int, heads: int, dim: int, use_bias: bool) -> str:
    kernel = arrays[f"{part}/kernel"]
    bias = arrays.get(f"{part}/bias", np.zeros(kernel.shape[1:], np.float32))
    attr = em.module(node, call("nn.Linear", in_width, heads * dim, **({} if use_bias else {"bias": False})),
                     suffix=f"_{part}")
    weight, torch_bias = get_transform("mha_proj").to_torch(kernel, bias)
    em.state[f"{attr}.weight"] = weight
    if use_bias:
        em.state[f"{attr}.bias"] = torch_bias
    return attr


def _projected(em, node, arrays, q, k, v, spec, parts, rows_can_empty, scores):
    names = {part: _linear(em, node, arrays, part, int(x.shape[-1]), h, d, spec.use_bias)
             for part, x, h, d in (("query", q, spec.heads, spec.key_dim), ("key", k, spec.kv_heads, spec.key_dim),
                                   ("value", v, spec.kv_heads, spec.value_dim))}
    out_kernel = arrays["attention_output/kernel"]
    out = em.module(node, call("nn.Linear", spec.heads * spec.value_dim, spec.out_width,
                               **({} if spec.use_bias else {"bias": False})), suffix="_output")
    (em.state[f"{out}.weight"],) = get_transform("mha_out_proj").to_torch(out_kernel)
    if spec.use_bias:
        em.state[f"{out}.bias"] = arrays["attention_output/bias"]
    em.use_row(em.row("sdpa"))
    heads = {}
    for part, x, h, d in (("query", q, spec.heads, spec.key_dim), ("key", k, spec.kv_heads, spec.key_dim),
                          ("value", v, spec.kv_heads, spec.value_dim)):
        t = em.temp(f"{node.name}_{part[0]}")
        em.emit(f"{t} = self.{names[part]}({x.var}).unflatten(-1, ({h}, {d})).transpose(1, 2)")
        if h != spec.heads:
            em.emit(f"{t} = {t}.repeat_interleave({spec.heads // h}, dim=1)",
                    "grouped query attention: each key/value head serves several query heads")
        heads[part] = t
    causal = bool(node.kwargs.get("use_causal_mask"))
    if causal and not parts and (scores or spec.dropout):
        parts = [causal_mask(q, k)]
    mask = None
    if parts:
        mask = em.temp(f"{node.name}_mask")
        em.emit(f"{mask} = {' & '.join(parts)}", "may attend (Keras' convention): (batch, queries, keys)")
    att = em.temp(f"{node.name}_heads")
    if scores or spec.dropout:
        weights = _explicit_scores(em, node, heads, mask, spec)
        dropped = f"F.dropout({weights}, {spec.dropout!r}, self.training)" if spec.dropout else weights
        em.emit(f"{att} = {dropped} @ {heads['value']}")
    else:
        extra = f", attn_mask={mask}[:, None]" if mask else (", is_causal=True" if causal else "")
        em.emit(f"{att} = F.scaled_dot_product_attention({heads['query']}, {heads['key']}, {heads['value']}{extra})",
                "(batch, heads, time, depth); scaled by 1/sqrt(key_dim) like Keras")
        if rows_can_empty:
            em.emit(f"{att} = torch.where({mask}.any(-1)[:, None, :, None], {att}, "
                    f"{heads['value']}.mean(-2, keepdim=True))",
                    "Keras: a query with nothing to attend to averages every value")
    merged = f"{att}.transpose(1, 2).flatten(2)"
    if spec.gate:
        gate = _linear(em, node, arrays, "gate", int(q.shape[-1]), spec.heads, spec.value_dim, spec.use_bias)
        merged = f"{merged} * torch.sigmoid(self.{gate}({q.var}))"
    em.assign(node, f"self.{out}({merged})", module=out)
    if scores:
        em.assign(node, weights, index=1)


def _explicit_scores(em, node, heads, mask, spec) -> str:
    """Keras' own path (dropout or returned scores): scores, its Softmax layer (masked positions
    -1e9 before and 0 after), per head."""
    weights = em.temp(f"{node.name}_scores")
    scale = 1.0 / float(np.sqrt(spec.key_dim))
    em.emit(f"{weights} = ({heads['query']} * {scale!r}) @ {heads['key']}.transpose(-2, -1)")
    if mask is None:
        em.emit(f"{weights} = torch.softmax({weights}, dim=-1)")
        return weights
    keep = f"{mask}[:, None]"
    em.emit(f"{weights} = torch.where({keep}, torch.softmax(torch.where({keep}, {weights}, -1e9), dim=-1), 0.0)",
            "Keras' Softmax layer: masked positions -1e9 before, 0 after")
    return weights
