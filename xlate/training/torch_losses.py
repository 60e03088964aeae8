"""torch loss modules that compute keras.losses exactly (the Keras->torch emulations).

Each ``KerasX`` is an ``nn.Module`` called like a torch loss, ``loss(input, target)``, that
returns what ``keras.losses.X()(target, input)`` returns: Keras's clipping to
[1e-7, 1 - 1e-7], probability renormalisation, label smoothing, per-sample reduction over the
last axis and Keras's reduction ('sum_over_batch_size' divides by the number of per-sample
values, 'sum' sums them, None/'none' returns them; a mask from ignore_class averages over the
valid entries).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-7  # keras.backend.epsilon()
_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight", "sum", "none", None)


class _KerasLoss(nn.Module):
    keras_class = ""

    def __init__(self, reduction="sum_over_batch_size"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"Keras reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def per_sample(self, input, target):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, input, target):
        values, mask = self.per_sample(input, target)
        return _keras_reduce(values, mask, self.reduction)


def _keras_reduce(values, mask, reduction):
    if reduction in (None, "none"):
        return values
    if mask is not None:
        values = values * mask
        if reduction != "sum":
            valid = mask.sum()
            return values.sum() / valid if valid > 0 else values.sum() * 0
    if reduction == "sum":
        return values.sum()
    return values.sum() / values.numel()


def _move_classes_last(x, axis):
    return x if axis in (-1, x.dim() - 1) else torch.movedim(x, axis, -1)


class KerasSparseCategoricalCrossentropy(_KerasLoss):
    """keras.losses.SparseCategoricalCrossentropy: from_logits=False clips the probabilities to
    [1e-7, 1-1e-7] and renormalises them (softmax of their log); ignore_class masks entries."""

    keras_class = "keras.losses.SparseCategoricalCrossentropy"

    def __init__(self, from_logits=False, ignore_class=None, axis=-1, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.from_logits, self.ignore_class, self.axis = bool(from_logits), ignore_class, axis

    def per_sample(self, input, target):
        x = _move_classes_last(input, self.axis)
        logits = x if self.from_logits else torch.log(x.clamp(EPSILON, 1 - EPSILON))
        labels = target.long()
        if labels.dim() == x.dim():
            labels = labels.squeeze(-1)
        mask = None
        if self.ignore_class is not None:
            valid = labels != self.ignore_class
            mask = valid.to(x.dtype)
            labels = torch.where(valid, labels, torch.zeros_like(labels))
        values = -torch.gather(F.log_softmax(logits, dim=-1), -1, labels.unsqueeze(-1)).squeeze(-1)
        return values, mask


class KerasCategoricalCrossentropy(_KerasLoss):
    """keras.losses.CategoricalCrossentropy: smoothing y(1-e) + e/C; from_logits=False
    renormalises the probabilities, clips them to [1e-7, 1-1e-7] and takes -sum(y log p)."""

    keras_class = "keras.losses.CategoricalCrossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.from_logits, self.label_smoothing, self.axis = bool(from_logits), float(label_smoothing), axis

    def per_sample(self, input, target):
        x = _move_classes_last(input, self.axis)
        y = _move_classes_last(target.to(x.dtype), self.axis)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + self.label_smoothing / y.shape[-1]
        if self.from_logits:
            log_p = F.log_softmax(x, dim=-1)
        else:
            log_p = torch.log((x / x.sum(-1, keepdim=True)).clamp(EPSILON, 1 - EPSILON))
        return -(y * log_p).sum(-1), None


class KerasBinaryCrossentropy(_KerasLoss):
    """keras.losses.BinaryCrossentropy: smoothing y(1-e) + 0.5e; probabilities clipped to
    [1e-7, 1-1e-7] (or the logits formula); the mean over the last axis per sample."""

    keras_class = "keras.losses.BinaryCrossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.from_logits, self.label_smoothing, self.axis = bool(from_logits), float(label_smoothing), axis

    def per_sample(self, input, target):
        y = target.to(input.dtype)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            values = torch.clamp(input, min=0) - input * y + torch.log1p(torch.exp(-input.abs()))
        else:
            p = input.clamp(EPSILON, 1 - EPSILON)
            values = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
        return values.mean(self.axis), None


class _KerasMeanOverLastAxis(_KerasLoss):
    def elementwise(self, error):  # pragma: no cover - abstract
        raise NotImplementedError

    def per_sample(self, input, target):
        target = target.to(input.dtype)
        if target.dim() == input.dim() + 1 and target.shape[-1] == 1:
            target = target.squeeze(-1)
        elif input.dim() == target.dim() + 1 and input.shape[-1] == 1:
            input = input.squeeze(-1)
        return self.elementwise(input - target).mean(-1), None


class KerasMeanSquaredError(_KerasMeanOverLastAxis):
    """keras.losses.MeanSquaredError: mean((x - y)^2) over the last axis, then Keras's reduction."""

    keras_class = "keras.losses.MeanSquaredError"

    def elementwise(self, error):
        return error * error


class KerasMeanAbsoluteError(_KerasMeanOverLastAxis):
    """keras.losses.MeanAbsoluteError."""

    keras_class = "keras.losses.MeanAbsoluteError"

    def elementwise(self, error):
        return error.abs()


class KerasHuber(_KerasMeanOverLastAxis):
    """keras.losses.Huber(delta): 0.5 e^2 if |e| <= delta else delta |e| - 0.5 delta^2."""

    keras_class = "keras.losses.Huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.delta = float(delta)

    def elementwise(self, error):
        a = error.abs()
        return torch.where(a <= self.delta, 0.5 * error * error, self.delta * a - 0.5 * self.delta**2)


class KerasKLDivergence(_KerasLoss):
    """keras.losses.KLDivergence on probabilities: both clipped to [1e-7, 1], sum p log(p/q)."""

    keras_class = "keras.losses.KLDivergence"

    def per_sample(self, input, target):
        p = target.to(input.dtype).clamp(EPSILON, 1)
        q = input.clamp(EPSILON, 1)
        return (p * torch.log(p / q)).sum(-1), None


class KerasCosineSimilarity(_KerasLoss):
    """keras.losses.CosineSimilarity: -sum(normalize(y) * normalize(x)) along ``axis``
    (= torch CosineEmbeddingLoss with y=+1, minus 1)."""

    keras_class = "keras.losses.CosineSimilarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size"):
        super().__init__(reduction)
        self.axis = axis

    def per_sample(self, input, target):
        x = F.normalize(input, dim=self.axis, eps=EPSILON)
        y = F.normalize(target.to(input.dtype), dim=self.axis, eps=EPSILON)
        return -(x * y).sum(self.axis), None


#: emulation classes by the Keras loss they emulate
BY_KERAS_CLASS = {cls.keras_class: cls for cls in
                  (KerasSparseCategoricalCrossentropy, KerasCategoricalCrossentropy, KerasBinaryCrossentropy,
                   KerasMeanSquaredError, KerasMeanAbsoluteError, KerasHuber, KerasKLDivergence,
                   KerasCosineSimilarity)}
