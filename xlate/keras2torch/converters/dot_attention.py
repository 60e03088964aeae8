"""Attention (Luong, dot or concat scores) and AdditiveAttention (Bahdanau), as plain tensor code.

Both take ``[query, value]`` or ``[query, value, key]``. The generated forward writes out Keras'
formula: scores, the value mask (and causal mask) subtracting 1e9 from blocked scores, softmax,
dropout on the weights in training mode, the weighted sum of values, and the query mask zeroing
padded query rows. Scales are ``nn.Parameter``s named after the Keras variables.
"""

from __future__ import annotations

from ..registry import NotConvertible, converter
from ..source import literal
from ..walk import Ref


def _masks(em, node) -> tuple[str | None, str | None]:
    mask = node.kwargs.get("mask")
    if mask is None:
        return None, None
    if not isinstance(mask, (list, tuple)):
        raise NotConvertible("a mask that is not a [query_mask, value_mask] list")
    out = []
    for m in list(mask) + [None] * (2 - len(mask)):
        if m is None:
            out.append(None)
        elif isinstance(m, Ref):
            v = em.in_layout(m, "keras")
            out.append(v.var if v.dtype == "bool" else f"{v.var}.bool()")
        else:
            raise NotConvertible("a constant attention mask")
    return out[0], out[1]


@converter("dot_attention", masks=True)
def attention(em, node, row):
    cfg = node.config
    inputs = node.args[0] if node.args else node.kwargs["inputs"]
    if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
        raise NotConvertible("inputs other than [query, value] or [query, value, key]")
    q, v = em.in_layout(inputs[0], "keras"), em.in_layout(inputs[1], "keras")
    k = em.in_layout(inputs[2], "keras") if len(inputs) == 3 else v
    arrays = em.keras_weights(node.op)
    additive = node.kind == "keras.layers.AdditiveAttention"
    scores = em.temp(f"{node.name}_scores")
    if additive:
        scale = f"self.{em.parameter(f'{node.name}_scale', arrays['scale'])} * " if cfg["use_scale"] else ""
        em.emit(f"{scores} = ({scale}torch.tanh({q.var}.unsqueeze(-2) + {k.var}.unsqueeze(-3))).sum(-1)",
                "additive (Bahdanau) scores: (batch, Tq, Tv)")
    elif cfg["score_mode"] == "concat":
        weight = em.parameter(f"{node.name}_concat_score_weight", arrays["concat_score_weight"])
        inner = f"{q.var}.unsqueeze(-2) + {k.var}.unsqueeze(-3)"
        if cfg["use_scale"]:
            inner = f"self.{em.parameter(f'{node.name}_scale', arrays['scale'])} * ({inner})"
        em.emit(f"{scores} = self.{weight} * torch.tanh({inner}).sum(-1)", "concat scores: (batch, Tq, Tv)")
    else:
        scale = f" * self.{em.parameter(f'{node.name}_scale', arrays['scale'])}" if cfg["use_scale"] else ""
        em.emit(f"{scores} = ({q.var} @ {k.var}.transpose(-2, -1)){scale}", "dot-product scores: (batch, Tq, Tv)")
    q_mask, v_mask = _masks(em, node)
    keep = [f"{v_mask}.unsqueeze(-2)"] if v_mask else []
    if node.kwargs.get("use_causal_mask"):
        keep.append(f"torch.ones(1, {scores}.shape[-2], {scores}.shape[-1], dtype=torch.bool, "
                    f"device={scores}.device).tril()")
    if keep:
        em.emit(f"{scores} = torch.where({' & '.join(keep)}, {scores}, {scores} - 1e9)",
                "Keras subtracts 1e9 from the scores of blocked keys")
    weights = em.temp(f"{node.name}_weights")
    em.emit(f"{weights} = torch.softmax({scores}, dim=-1)")
    rate = float(cfg.get("dropout") or 0.0)
    dropped = f"F.dropout({weights}, {literal(rate)}, self.training)" if rate else weights
    out = f"{dropped} @ {v.var}"
    if q_mask:
        out = f"torch.where({q_mask}.unsqueeze(-1), {out}, 0.0)"
    em.assign(node, out, comment="padded queries give 0" if q_mask else "")
    if node.kwargs.get("return_attention_scores"):
        em.assign(node, weights, index=1)
