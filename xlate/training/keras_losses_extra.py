"""Keras losses computing the torch losses Keras has no twin for (torch 2.13's formulas).

Each ``TorchX`` returns what ``torch.nn.X`` returns, reduced torch's way (``torch_reduction``).
torch losses that take more than (input, target) get their inputs **stacked on axis 1** of
``y_pred`` (a Keras loss sees one prediction tensor): MarginRankingLoss (N, 2) = [x1, x2],
TripletMarginLoss (N, 3, D) = [anchor, positive, negative] (y_true unused), GaussianNLLLoss
(N, 2, ...) = [input, var]. The torch side uses the same stacking through
``xlate.training.torch_losses_extra.PackedInputs``. CTCLoss takes torch's (T, N, C)
log-probabilities and (N, S) targets padded with the blank; every input length is T and the
target lengths are the non-blank counts.
"""

from __future__ import annotations

import math

from keras import ops

from .keras_losses import _register, _TorchLoss, _weights


@_register
class TorchPoissonNLLLoss(_TorchLoss):
    """torch.nn.PoissonNLLLoss: exp(x) - y*x (log_input) or x - y*log(x + eps); ``full`` adds the
    Stirling term y log y - y + 0.5 log(2 pi y) where y > 1."""

    torch_class = "torch.nn.PoissonNLLLoss"

    def __init__(self, log_input=True, full=False, eps=1e-8, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_poisson_nll", **kwargs)
        self.log_input, self.full, self.eps = bool(log_input), bool(full), float(eps)

    def call(self, y_true, y_pred):
        x, y = y_pred, ops.cast(y_true, y_pred.dtype)
        loss = ops.exp(x) - y * x if self.log_input else x - y * ops.log(x + self.eps)
        if self.full:
            safe = ops.where(y > 1, y, 1.0)
            stirling = safe * ops.log(safe) - safe + 0.5 * ops.log(2 * math.pi * safe)
            loss = loss + ops.where(y > 1, stirling, 0.0)
        return self._reduce(loss)

    def get_config(self):
        return {**super().get_config(), "log_input": self.log_input, "full": self.full, "eps": self.eps}


@_register
class TorchGaussianNLLLoss(_TorchLoss):
    """torch.nn.GaussianNLLLoss on y_pred = stack([input, var], axis=1): 0.5 (log v + (x - y)^2 / v)
    (+ 0.5 log 2 pi with ``full``), v = max(var, eps) with the clamp invisible to the gradient, as
    torch clamps under no_grad."""

    torch_class = "torch.nn.GaussianNLLLoss"

    def __init__(self, full=False, eps=1e-6, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_gaussian_nll", **kwargs)
        self.full, self.eps = bool(full), float(eps)

    def call(self, y_true, y_pred):
        x, var = y_pred[:, 0], y_pred[:, 1]
        var = var + ops.stop_gradient(ops.maximum(var, self.eps) - var)
        loss = 0.5 * (ops.log(var) + ops.square(x - ops.cast(y_true, x.dtype)) / var)
        if self.full:
            loss = loss + 0.5 * math.log(2 * math.pi)
        return self._reduce(loss)

    def get_config(self):
        return {**super().get_config(), "full": self.full, "eps": self.eps}


@_register
class TorchMarginRankingLoss(_TorchLoss):
    """torch.nn.MarginRankingLoss on y_pred = stack([x1, x2], axis=1): max(0, -y (x1 - x2) + margin)."""

    torch_class = "torch.nn.MarginRankingLoss"

    def __init__(self, margin=0.0, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_margin_ranking", **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, y_pred.dtype)
        return self._reduce(ops.maximum(-y * (y_pred[:, 0] - y_pred[:, 1]) + self.margin, 0.0))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def _pairwise_distance(a, b, p, eps):
    """torch.pairwise_distance: ||a - b + eps||_p over the last axis."""
    d = a - b + eps
    if p == 2:
        return ops.sqrt(ops.sum(ops.square(d), axis=-1))
    return ops.power(ops.sum(ops.power(ops.abs(d), p), axis=-1), 1.0 / p)


@_register
class TorchTripletMarginLoss(_TorchLoss):
    """torch.nn.TripletMarginLoss on y_pred = stack([anchor, positive, negative], axis=1):
    max(d(a, p) - d(a, n) + margin, 0), d(u, v) = ||u - v + eps||_p (swap: d(a, n) := min(d(a, n),
    d(p, n))). y_true is not used."""

    torch_class = "torch.nn.TripletMarginLoss"

    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_triplet_margin", **kwargs)
        self.margin, self.p, self.eps, self.swap = float(margin), float(p), float(eps), bool(swap)

    def call(self, y_true, y_pred):
        a, pos, neg = y_pred[:, 0], y_pred[:, 1], y_pred[:, 2]
        d_pos = _pairwise_distance(a, pos, self.p, self.eps)
        d_neg = _pairwise_distance(a, neg, self.p, self.eps)
        if self.swap:
            d_neg = ops.minimum(d_neg, _pairwise_distance(pos, neg, self.p, self.eps))
        return self._reduce(ops.maximum(self.margin + d_pos - d_neg, 0.0))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "p": self.p, "eps": self.eps, "swap": self.swap}


@_register
class TorchMultiMarginLoss(_TorchLoss):
    """torch.nn.MultiMarginLoss: per sample sum_{j != y} max(0, margin - x[y] + x[j])^p * w[y] / C."""

    torch_class = "torch.nn.MultiMarginLoss"

    def __init__(self, p=1, margin=1.0, weight=None, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_multi_margin", **kwargs)
        if p not in (1, 2):
            raise ValueError("only p == 1 and p == 2 supported (as in torch)")
        self.p, self.margin, self.weight = int(p), float(margin), _weights(weight)

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1]
        labels = ops.cast(y_true, "int32")
        onehot = ops.one_hot(labels, classes, dtype=y_pred.dtype)
        x_y = ops.sum(onehot * y_pred, axis=-1, keepdims=True)
        z = ops.maximum(self.margin - x_y + y_pred, 0.0) * (1.0 - onehot)
        if self.p == 2:
            z = ops.square(z)
        if self.weight is not None:
            z = z * ops.sum(onehot * ops.convert_to_tensor(self.weight, dtype=y_pred.dtype), axis=-1, keepdims=True)
        return self._reduce(ops.sum(z, axis=-1) / classes)

    def get_config(self):
        return {**super().get_config(), "p": self.p, "margin": self.margin, "weight": self.weight}


@_register
class TorchMultiLabelSoftMarginLoss(_TorchLoss):
    """torch.nn.MultiLabelSoftMarginLoss: -(y logsigmoid(x) + (1-y) logsigmoid(-x)) * w, averaged
    over the classes (the last axis), then reduced over the samples."""

    torch_class = "torch.nn.MultiLabelSoftMarginLoss"

    def __init__(self, weight=None, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_multilabel_soft_margin", **kwargs)
        self.weight = _weights(weight)

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, y_pred.dtype)
        loss = -(y * ops.log_sigmoid(y_pred) + (1.0 - y) * ops.log_sigmoid(-y_pred))
        if self.weight is not None:
            loss = loss * ops.convert_to_tensor(self.weight, dtype=loss.dtype)
        return self._reduce(ops.sum(loss, axis=-1) / y_pred.shape[-1])

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@_register
class TorchSoftMarginLoss(_TorchLoss):
    """torch.nn.SoftMarginLoss: log1p(exp(-y x))."""

    torch_class = "torch.nn.SoftMarginLoss"

    def __init__(self, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_soft_margin", **kwargs)

    def call(self, y_true, y_pred):
        return self._reduce(ops.log1p(ops.exp(-ops.cast(y_true, y_pred.dtype) * y_pred)))


@_register
class TorchHingeEmbeddingLoss(_TorchLoss):
    """torch.nn.HingeEmbeddingLoss: max(0, margin - x) where y != 1, plus x where y != -1."""

    torch_class = "torch.nn.HingeEmbeddingLoss"

    def __init__(self, margin=1.0, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_hinge_embedding", **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, y_pred.dtype)
        loss = ops.where(ops.not_equal(y, 1.0), ops.maximum(self.margin - y_pred, 0.0), 0.0) + \
            ops.where(ops.not_equal(y, -1.0), y_pred, 0.0)
        return self._reduce(loss)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@_register
class TorchCTCLoss(_TorchLoss):
    """torch.nn.CTCLoss on y_pred = torch's (T, N, C) log-probabilities (``time_major``) and y_true =
    (N, S) targets padded with the blank: input lengths T, target lengths the non-blank counts;
    'mean' divides each loss by its target length (at least 1) before the batch mean."""

    torch_class = "torch.nn.CTCLoss"

    def __init__(self, blank=0, zero_infinity=False, time_major=True, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_ctc", **kwargs)
        self.blank, self.zero_infinity, self.time_major = int(blank), bool(zero_infinity), bool(time_major)

    def call(self, y_true, y_pred):
        x = ops.transpose(y_pred, (1, 0, 2)) if self.time_major else y_pred
        labels = ops.cast(y_true, "int32")
        target_lengths = ops.cast(ops.sum(ops.cast(ops.not_equal(labels, self.blank), "int32"), axis=-1), "int32")
        input_lengths = ops.full((ops.shape(x)[0],), ops.shape(x)[1], dtype="int32")
        # log-probabilities are their own logits: softmax(log_softmax(z)) = softmax(z)
        loss = ops.ctc_loss(labels, x, target_lengths, input_lengths, mask_index=self.blank)
        if self.zero_infinity:
            loss = ops.where(ops.isinf(loss), ops.zeros_like(loss), loss)
        if self.torch_reduction == "mean":
            return ops.mean(loss / ops.cast(ops.maximum(target_lengths, 1), loss.dtype))
        return self._reduce(loss)

    def get_config(self):
        return {**super().get_config(), "blank": self.blank, "zero_infinity": self.zero_infinity,
                "time_major": self.time_major}


#: emulation classes by the torch loss they emulate
BY_TORCH_CLASS = {cls.torch_class: cls for cls in
                  (TorchPoissonNLLLoss, TorchGaussianNLLLoss, TorchMarginRankingLoss, TorchTripletMarginLoss,
                   TorchMultiMarginLoss, TorchMultiLabelSoftMarginLoss, TorchSoftMarginLoss, TorchHingeEmbeddingLoss,
                   TorchCTCLoss)}
