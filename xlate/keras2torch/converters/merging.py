"""Merge layers not covered by the elementwise rows: Dot (a batched dot product along given axes)."""

from __future__ import annotations

from ..registry import NotConvertible, converter
from ..source import literal


@converter("batch_dot")
def dot(em, node, row):
    """Keras Dot: L2-normalize along the axes if asked (x / max(|x|, 1e-7)), then contract
    x's axis a0 with y's axis a1 per sample: x's other axes then y's, (batch, 1) for two vectors."""
    import keras

    cfg = node.config
    inputs = node.args[0]
    if len(inputs) != 2:
        raise NotConvertible("Dot of more than two inputs")
    x, y = (em.in_layout(t, "keras") for t in inputs)
    axes = cfg["axes"]
    axes = [axes, axes] if isinstance(axes, int) else list(axes)
    axes = [a % v.rank for a, v in zip(axes, (x, y))]
    if 0 in axes:
        raise NotConvertible("Dot over the batch axis")
    srcs = [x.var, y.var]
    if cfg.get("normalize"):
        eps = literal(float(keras.config.epsilon()))
        srcs = [f"F.normalize({s}, dim={a}, eps={eps})" for s, a in zip(srcs, axes)]
    letters = iter("cdefghijklmnopqrstuvwxyz")
    xs = ["b"] + [next(letters) for _ in range(x.rank - 1)]
    ys = ["b"] + [next(letters) for _ in range(y.rank - 1)]
    ys[axes[1]] = xs[axes[0]]
    out = [c for i, c in enumerate(xs) if i != axes[0]] + [c for i, c in enumerate(ys) if i not in (0, axes[1])]
    expr = f"torch.einsum('{''.join(xs)},{''.join(ys)}->{''.join(out)}', {srcs[0]}, {srcs[1]})"
    if len(out) == 1:
        expr += ".unsqueeze(-1)"
    em.assign(node, expr)
