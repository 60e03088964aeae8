"""Regularization layers that act only in training: GaussianNoise, GaussianDropout, AlphaDropout
and ActivityRegularization.

In eval mode each is the identity, as in Keras inference. In training mode the generated code
does what Keras does with fresh random draws (so the numbers differ, the distributions do not):
GaussianNoise adds N(0, stddev), GaussianDropout multiplies by N(1, sqrt(rate / (1 - rate))),
AlphaDropout is torch's own nn.AlphaDropout (Keras' formula, SELU's alpha and scale) unless a
noise_shape asks for a broadcast mask. ActivityRegularization becomes a small module that, in
training mode, keeps Keras' penalty (l1 * sum|x| + l2 * sum x^2) / batch in ``.loss`` for the
training loop to add, as Keras adds it to ``model.losses``.
"""

from __future__ import annotations

import math

from ..helpers import register_helper
from ..registry import NotConvertible, converter
from ..source import call, literal

register_helper("ActivityRegularization", '''
class ActivityRegularization(nn.Module):
    """Keras' ActivityRegularization: the identity, whose output Keras penalizes with
    (l1 * sum|x| + l2 * sum x^2) / batch_size in training. In training mode the penalty of the
    last call is kept in ``self.loss``; add it to the training loss as Keras adds model.losses."""

    def __init__(self, l1=0.0, l2=0.0):
        super().__init__()
        self.l1, self.l2 = l1, l2
        self.loss = None

    def forward(self, x):
        if self.training:
            self.loss = (self.l1 * x.abs().sum() + self.l2 * x.square().sum()) / x.shape[0]
        return x
''')


@converter("gaussian_noise")
def gaussian_noise(em, node, row):
    x = em.input(node, 0)
    cfg = node.config
    if type(node.op).__name__ == "GaussianNoise":
        stddev = float(cfg["stddev"])
        if stddev <= 0:
            em.alias(node, x)
            return
        expr = f"{x.var} + torch.randn_like({x.var}) * {literal(stddev)} if self.training else {x.var}"
        comment = f"Keras GaussianNoise({stddev:g}): training only"
    else:
        rate = float(cfg["rate"])
        if rate <= 0:
            em.alias(node, x)
            return
        std = math.sqrt(rate / (1.0 - rate))
        expr = f"{x.var} * (1 + torch.randn_like({x.var}) * {literal(std)}) if self.training else {x.var}"
        comment = f"Keras GaussianDropout({rate:g}): x * N(1, sqrt(rate / (1 - rate))), training only"
    em.assign(node, expr, x.perm, comment=comment)


def alpha_dropout(em, node, row):
    """Keras AlphaDropout, from the dropout row's converter (the row is shared with torch->Keras)."""
    cfg = node.config
    x = em.input(node, 0)
    rate = float(cfg["rate"])
    noise = cfg.get("noise_shape")
    if noise is None:
        attr = em.module(node, call("nn.AlphaDropout", rate))
        em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)
        return
    if len(noise) != x.rank:
        raise NotConvertible(f"noise_shape {noise} for a rank-{x.rank} input")
    sizes = ", ".join(f"{x.var}.shape[{i}]" if noise[axis] is None else str(int(noise[axis]))
                      for i, axis in enumerate(x.perm))
    alpha_p = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    keep = em.temp(f"{node.name}_keep")
    em.emit(f"{keep} = (torch.rand({sizes}, device={x.var}.device) >= {literal(rate)}).to({x.var}.dtype)",
            f"Keras AlphaDropout, mask of shape {tuple(noise)}")
    em.assign(node, f"{literal(a)} * ({x.var} * {keep} + {literal(alpha_p)} * (1 - {keep})) + {literal(b)} "
                    f"if self.training else {x.var}", x.perm)


@converter("activity_regularization")
def activity_regularization(em, node, row):
    cfg = node.config
    x = em.input(node, 0)
    em.helpers.add("ActivityRegularization")
    attr = em.module(node, call("ActivityRegularization", l1=float(cfg["l1"]), l2=float(cfg["l2"])))
    em.notes.append(f"{node.name}: Keras adds (l1 * sum|x| + l2 * sum x^2) / batch to the training loss; the torch "
                    f"module keeps it in self.{attr}.loss in training mode (add it to your loss)")
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)
