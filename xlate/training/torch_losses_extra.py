"""torch loss modules computing the Keras losses torch has no twin for (Keras 3.15's formulas), and
``PackedInputs``, which calls a torch loss that takes several inputs with them stacked on axis 1
of one prediction (the convention of xlate's Keras emulations, ``keras_losses_extra``).

Each ``KerasX`` is called like a torch loss, ``loss(input, target)``, and returns
``keras.losses.X()(target, input)``: the per-sample value over the last axis, then Keras's
reduction. Probabilities are clipped to [1e-7, 1 - 1e-7] where Keras clips them.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .torch_losses import EPSILON, _KerasLoss


def _binary_labels_to_hinge(y):
    """Keras's convert_binary_labels_to_hinge: 0/1 labels become -1/1, others stay."""
    return 2.0 * y - 1.0 if bool(((y == 0) | (y == 1)).all()) else y


class KerasBinaryFocalCrossentropy(_KerasLoss):
    """keras.losses.BinaryFocalCrossentropy: (1 - p_t)^gamma * bce (clipped probabilities), weighted
    by alpha / 1 - alpha with apply_class_balancing, averaged over ``axis``."""

    keras_class = "keras.losses.BinaryFocalCrossentropy"

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.apply_class_balancing, self.alpha, self.gamma = bool(apply_class_balancing), float(alpha), float(gamma)
        self.from_logits, self.label_smoothing, self.axis = bool(from_logits), float(label_smoothing), axis

    def per_sample(self, input, target):
        y = target.to(input.dtype)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        p = torch.sigmoid(input) if self.from_logits else input
        clipped = p.clamp(EPSILON, 1 - EPSILON)
        bce = -(y * torch.log(clipped) + (1 - y) * torch.log(1 - clipped))
        p_t = y * p + (1 - y) * (1 - p)
        focal = torch.pow(1.0 - p_t, self.gamma) * bce
        if self.apply_class_balancing:
            focal = (y * self.alpha + (1 - y) * (1 - self.alpha)) * focal
        return focal.mean(self.axis), None


class KerasCategoricalFocalCrossentropy(_KerasLoss):
    """keras.losses.CategoricalFocalCrossentropy: sum over ``axis`` of alpha (1 - q)^gamma (-y log q),
    q the renormalised, clipped probabilities."""

    keras_class = "keras.losses.CategoricalFocalCrossentropy"

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.alpha, self.gamma, self.from_logits = float(alpha), float(gamma), bool(from_logits)
        self.label_smoothing, self.axis = float(label_smoothing), axis

    def per_sample(self, input, target):
        y = target.to(input.dtype)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + self.label_smoothing / y.shape[-1]
        p = torch.softmax(input, dim=self.axis) if self.from_logits else input
        q = (p / p.sum(self.axis, keepdim=True)).clamp(EPSILON, 1 - EPSILON)
        focal = torch.pow(1.0 - q, self.gamma) * self.alpha * (-y * torch.log(q))
        return focal.sum(self.axis), None


class _Margin(_KerasLoss):
    squared = False

    def per_sample(self, input, target):
        y = _binary_labels_to_hinge(target.to(input.dtype))
        margin = torch.clamp(1.0 - y * input, min=0.0)
        return (margin * margin if self.squared else margin).mean(-1), None


class KerasHinge(_Margin):
    """keras.losses.Hinge: mean(max(1 - y x, 0)) over the last axis, 0/1 labels mapped to -1/1."""

    keras_class = "keras.losses.Hinge"


class KerasSquaredHinge(_Margin):
    """keras.losses.SquaredHinge: mean(max(1 - y x, 0)^2) over the last axis."""

    keras_class = "keras.losses.SquaredHinge"
    squared = True


class KerasCategoricalHinge(_KerasLoss):
    """keras.losses.CategoricalHinge: max(max((1 - y) x) - sum(y x) + 1, 0)."""

    keras_class = "keras.losses.CategoricalHinge"

    def per_sample(self, input, target):
        y = target.to(input.dtype)
        pos = (y * input).sum(-1)
        neg = ((1.0 - y) * input).max(-1).values
        return torch.clamp(neg - pos + 1.0, min=0.0), None


class KerasLogCosh(_KerasLoss):
    """keras.losses.LogCosh: mean(e + softplus(-2e) - log 2) over the last axis, e = x - y."""

    keras_class = "keras.losses.LogCosh"

    def per_sample(self, input, target):
        e = input - target.to(input.dtype)
        return (e + F.softplus(e * -2.0) - math.log(2.0)).mean(-1), None


class KerasPoisson(_KerasLoss):
    """keras.losses.Poisson: mean(x - y log(x + 1e-7)) over the last axis."""

    keras_class = "keras.losses.Poisson"

    def per_sample(self, input, target):
        return (input - target.to(input.dtype) * torch.log(input + EPSILON)).mean(-1), None


def _sum(x, axis):
    return x.sum() if axis is None else x.sum(axis)


class KerasDice(_KerasLoss):
    """keras.losses.Dice: 1 - 2 sum(y p) / (sum(y) + sum(p) + 1e-7), summed over ``axis`` (all
    axes, batch included, for axis=None)."""

    keras_class = "keras.losses.Dice"

    def __init__(self, axis=None, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.axis = axis

    def per_sample(self, input, target):
        y = target.to(input.dtype)
        dice = 2.0 * _sum(y * input, self.axis) / (_sum(y, self.axis) + _sum(input, self.axis) + EPSILON)
        return 1 - dice, None


class KerasTversky(_KerasLoss):
    """keras.losses.Tversky: 1 - TP / (TP + alpha FP + beta FN + 1e-7) with Keras's
    FP = sum((1 - p) y) and FN = sum(p (1 - y)), over ``axis``."""

    keras_class = "keras.losses.Tversky"

    def __init__(self, alpha=0.5, beta=0.5, axis=None, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.alpha, self.beta, self.axis = float(alpha), float(beta), axis

    def per_sample(self, input, target):
        y = target.to(input.dtype)
        tp = _sum(y * input, self.axis)
        fp = _sum((1 - input) * y, self.axis)
        fn = _sum(input * (1 - y), self.axis)
        return 1 - tp / (tp + fp * self.alpha + fn * self.beta + EPSILON), None


class KerasCTC(_KerasLoss):
    """keras.losses.CTC: logits (N, T, C), labels (N, S) padded with 0 (the blank); input lengths T,
    label lengths the non-zero counts; the per-sample negative log-likelihood, no length
    normalisation (torch's CTCLoss 'mean' divides by the target length)."""

    keras_class = "keras.losses.CTC"

    def per_sample(self, input, target):
        labels = target.long()
        lengths = (labels != 0).sum(-1)
        log_probs = F.log_softmax(input, dim=-1).transpose(0, 1)
        input_lengths = torch.full((input.shape[0],), input.shape[1], dtype=torch.long)
        return F.ctc_loss(log_probs, labels, input_lengths, lengths, blank=0, reduction="none"), None


def _ctc_call(f, log_probs, targets):
    lengths = (targets != f.blank).sum(-1)
    input_lengths = torch.full((log_probs.shape[1],), log_probs.shape[0], dtype=torch.long)
    return f(log_probs, targets.long(), input_lengths, lengths)


class PackedInputs(nn.Module):
    """A torch loss over more than (input, target), called as ``loss(packed, target)`` in xlate's
    convention for one Keras prediction: MarginRankingLoss [x1, x2], TripletMarginLoss
    [anchor, positive, negative] (target unused), GaussianNLLLoss [input, var], stacked on axis 1
    of ``packed``; CTCLoss with input lengths T and target lengths the non-blank counts of the
    padded targets."""

    _CALLS: ClassVar[dict] = {"MarginRankingLoss": lambda f, x, t: f(x[:, 0], x[:, 1], t),
                              "TripletMarginLoss": lambda f, x, t: f(x[:, 0], x[:, 1], x[:, 2]),
                              "GaussianNLLLoss": lambda f, x, t: f(x[:, 0], t, x[:, 1]),
                              "CTCLoss": _ctc_call}

    def __init__(self, loss: nn.Module):
        super().__init__()
        if type(loss).__name__ not in self._CALLS:
            raise ValueError(f"PackedInputs takes {', '.join(self._CALLS)}, got {type(loss).__name__}")
        self.loss = loss

    def forward(self, input, target):
        return self._CALLS[type(self.loss).__name__](self.loss, input, target)


#: emulation classes by the Keras loss they emulate
BY_KERAS_CLASS = {cls.keras_class: cls for cls in
                  (KerasBinaryFocalCrossentropy, KerasCategoricalFocalCrossentropy, KerasHinge, KerasSquaredHinge,
                   KerasCategoricalHinge, KerasLogCosh, KerasPoisson, KerasDice, KerasTversky, KerasCTC)}
