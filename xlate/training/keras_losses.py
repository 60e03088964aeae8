"""Keras losses that compute torch.nn losses exactly (the torch->Keras emulations).

Each ``TorchX`` is a ``keras.losses.Loss`` built from ``keras.ops`` that returns what
``torch.nn.X`` returns for the same tensors: torch's reduction (``torch_reduction``: 'mean' over
every element, or torch's weighted mean; 'sum'; 'none'), class weights, label smoothing,
ignore_index, pos_weight and log clamping. The Keras reduction is left at its default: a scalar
passes through it unchanged, so ``model.compile(loss=TorchX(...))`` trains on torch's number.
Per-sample weights from ``fit(sample_weight=...)`` are not part of torch's losses; with
``torch_reduction='none'`` Keras applies them to the per-element values.

Registered as ``xlate>TorchX`` for saving and loading.
"""

from __future__ import annotations

import keras
from keras import ops

_register = keras.saving.register_keras_serializable(package="xlate")


class _TorchLoss(keras.losses.Loss):
    torch_class = ""

    def __init__(self, torch_reduction="mean", name=None, reduction=None, dtype=None):
        if torch_reduction not in self._reductions:
            raise ValueError(f"{type(self).__name__}: torch reduction must be one of {self._reductions}, "
                             f"got {torch_reduction!r}")
        super().__init__(name=name or type(self).__name__.lower(),
                         reduction="none" if torch_reduction == "none" else "sum_over_batch_size", dtype=dtype)
        self.torch_reduction = torch_reduction

    _reductions = ("mean", "sum", "none")

    def _reduce(self, values):
        if self.torch_reduction == "mean":
            return ops.mean(values)
        if self.torch_reduction == "sum":
            return ops.sum(values)
        return values

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["torch_reduction"] = self.torch_reduction
        return config


def _weights(weight):
    return None if weight is None else [float(w) for w in weight]


@_register
class TorchCrossEntropyLoss(_TorchLoss):
    """torch.nn.CrossEntropyLoss on logits: class-index targets (weight, ignore_index, label
    smoothing, torch's weighted mean sum(w[y] l) / sum(w[y])) or probability targets.

    ``class_axis``: where the classes are in ``y_pred`` (-1: Keras's channels-last; 1: torch's).
    """

    torch_class = "torch.nn.CrossEntropyLoss"

    def __init__(self, weight=None, ignore_index=-100, label_smoothing=0.0, target="indices", class_axis=-1,
                 torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_cross_entropy", **kwargs)
        if target not in ("indices", "probabilities"):
            raise ValueError(f"target must be 'indices' or 'probabilities', got {target!r}")
        self.weight = _weights(weight)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        self.target = target
        self.class_axis = int(class_axis)
        self.log_inputs = False  # NLLLoss sets True: y_pred already holds log-probabilities

    def _log_probs(self, y_pred):
        if self.class_axis not in (-1, len(y_pred.shape) - 1):
            y_pred = ops.moveaxis(y_pred, self.class_axis, -1)
        return y_pred if self.log_inputs else ops.log_softmax(y_pred, axis=-1)

    def call(self, y_true, y_pred):
        logp = self._log_probs(y_pred)
        num_classes = logp.shape[-1]
        w = ops.ones((num_classes,), dtype=logp.dtype) if self.weight is None else \
            ops.convert_to_tensor(self.weight, dtype=logp.dtype)
        eps = self.label_smoothing
        if self.target == "probabilities":
            y = ops.cast(y_true, logp.dtype)
            if self.class_axis not in (-1, len(y.shape) - 1):
                y = ops.moveaxis(y, self.class_axis, -1)
            if eps:
                y = y * (1.0 - eps) + eps / num_classes
            per_element = -ops.sum(logp * w * y, axis=-1)
            return self._reduce(per_element)
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(logp.shape):
            labels = ops.squeeze(labels, axis=-1)
        valid = ops.not_equal(labels, self.ignore_index)
        mask = ops.cast(valid, logp.dtype)
        onehot = ops.one_hot(ops.where(valid, labels, 0), num_classes, dtype=logp.dtype)
        nll = -ops.sum(onehot * logp * w, axis=-1) * mask
        w_y = ops.sum(onehot * w, axis=-1) * mask
        smooth = -ops.sum(logp * w, axis=-1) * mask if eps else None
        if self.torch_reduction == "none":
            return nll * (1.0 - eps) + (smooth * (eps / num_classes) if eps else 0.0)
        if self.torch_reduction == "sum":
            total = (1.0 - eps) * ops.sum(nll)
            return total + (eps / num_classes) * ops.sum(smooth) if eps else total
        denominator = ops.sum(w_y)
        total = (1.0 - eps) * ops.sum(nll) / denominator
        return total + (eps / num_classes) * ops.sum(smooth) / denominator if eps else total

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "ignore_index": self.ignore_index,
                "label_smoothing": self.label_smoothing, "target": self.target, "class_axis": self.class_axis}


@_register
class TorchNLLLoss(TorchCrossEntropyLoss):
    """torch.nn.NLLLoss: -w[y] * x[y] on log-probability inputs (weighted mean by sum(w[y]))."""

    torch_class = "torch.nn.NLLLoss"

    def __init__(self, weight=None, ignore_index=-100, class_axis=-1, torch_reduction="mean", name=None, **kwargs):
        kwargs.pop("label_smoothing", None)
        kwargs.pop("target", None)
        super().__init__(weight, ignore_index, 0.0, "indices", class_axis, torch_reduction,
                         name=name or "torch_nll", **kwargs)
        self.log_inputs = True

    def get_config(self):
        config = super().get_config()
        config.pop("label_smoothing")
        config.pop("target")
        return config


@_register
class TorchBCELoss(_TorchLoss):
    """torch.nn.BCELoss: -w (y log p + (1-y) log(1-p)) with each log clamped at -100."""

    torch_class = "torch.nn.BCELoss"

    def __init__(self, weight=None, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_bce", **kwargs)
        self.weight = _weights(weight)

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, y_pred.dtype)
        log_p = ops.maximum(ops.log(y_pred), -100.0)
        log_1mp = ops.maximum(ops.log(1.0 - y_pred), -100.0)
        values = -(y * log_p + (1.0 - y) * log_1mp)
        if self.weight is not None:
            values = values * ops.convert_to_tensor(self.weight, dtype=values.dtype)
        return self._reduce(values)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@_register
class TorchBCEWithLogitsLoss(_TorchLoss):
    """torch.nn.BCEWithLogitsLoss: (1-y)x + (1+(pw-1)y)(log1p(exp(-|x|)) + max(-x, 0)), times weight."""

    torch_class = "torch.nn.BCEWithLogitsLoss"

    def __init__(self, pos_weight=None, weight=None, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_bce_with_logits", **kwargs)
        self.pos_weight = _weights(pos_weight)
        self.weight = _weights(weight)

    def call(self, y_true, y_pred):
        x = y_pred
        y = ops.cast(y_true, x.dtype)
        softplus_neg = ops.log1p(ops.exp(-ops.abs(x))) + ops.maximum(-x, 0.0)
        if self.pos_weight is not None:
            log_weight = (ops.convert_to_tensor(self.pos_weight, dtype=x.dtype) - 1.0) * y + 1.0
            values = (1.0 - y) * x + log_weight * softplus_neg
        else:
            values = (1.0 - y) * x + softplus_neg
        if self.weight is not None:
            values = values * ops.convert_to_tensor(self.weight, dtype=values.dtype)
        return self._reduce(values)

    def get_config(self):
        return {**super().get_config(), "pos_weight": self.pos_weight, "weight": self.weight}


class _TorchElementwise(_TorchLoss):
    def elementwise(self, error):  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, y_true, y_pred):
        return self._reduce(self.elementwise(y_pred - ops.cast(y_true, y_pred.dtype)))


@_register
class TorchMSELoss(_TorchElementwise):
    """torch.nn.MSELoss: (x - y)^2, reduced over every element."""

    torch_class = "torch.nn.MSELoss"

    def __init__(self, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_mse", **kwargs)

    def elementwise(self, error):
        return ops.square(error)


@_register
class TorchL1Loss(_TorchElementwise):
    """torch.nn.L1Loss: |x - y|, reduced over every element."""

    torch_class = "torch.nn.L1Loss"

    def __init__(self, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_l1", **kwargs)

    def elementwise(self, error):
        return ops.abs(error)


@_register
class TorchHuberLoss(_TorchElementwise):
    """torch.nn.HuberLoss: 0.5 e^2 if |e| < delta else delta (|e| - 0.5 delta)."""

    torch_class = "torch.nn.HuberLoss"

    def __init__(self, delta=1.0, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_huber", **kwargs)
        self.delta = float(delta)

    def elementwise(self, error):
        a = ops.abs(error)
        return ops.where(a < self.delta, 0.5 * ops.square(error), self.delta * (a - 0.5 * self.delta))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


@_register
class TorchSmoothL1Loss(_TorchElementwise):
    """torch.nn.SmoothL1Loss: 0.5 e^2 / beta if |e| < beta else |e| - 0.5 beta (L1 for beta 0)."""

    torch_class = "torch.nn.SmoothL1Loss"

    def __init__(self, beta=1.0, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_smooth_l1", **kwargs)
        self.beta = float(beta)

    def elementwise(self, error):
        a = ops.abs(error)
        if self.beta == 0:
            return a
        return ops.where(a < self.beta, 0.5 * ops.square(error) / self.beta, a - 0.5 * self.beta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@_register
class TorchKLDivLoss(_TorchLoss):
    """torch.nn.KLDivLoss: y_pred holds log q; target p (log p with log_target):
    p (log p - log q), 0 where p = 0; 'mean' over every element, 'batchmean' over the batch."""

    torch_class = "torch.nn.KLDivLoss"
    _reductions = ("mean", "batchmean", "sum", "none")

    def __init__(self, log_target=False, torch_reduction="mean", name=None, **kwargs):
        super().__init__(torch_reduction, name=name or "torch_kl_div", **kwargs)
        self.log_target = bool(log_target)

    def call(self, y_true, y_pred):
        t = ops.cast(y_true, y_pred.dtype)
        if self.log_target:
            values = ops.exp(t) * (t - y_pred)
        else:
            safe = ops.where(t > 0, t, 1.0)
            values = ops.where(t > 0, t * ops.log(safe), 0.0) - t * y_pred
        if self.torch_reduction == "batchmean":
            return ops.sum(values) / ops.cast(ops.shape(values)[0], values.dtype)
        return self._reduce(values)

    def get_config(self):
        return {**super().get_config(), "log_target": self.log_target}


#: emulation classes by the torch loss they emulate
BY_TORCH_CLASS = {cls.torch_class: cls for cls in
                  (TorchCrossEntropyLoss, TorchNLLLoss, TorchBCELoss, TorchBCEWithLogitsLoss, TorchMSELoss, TorchL1Loss,
                   TorchHuberLoss, TorchSmoothL1Loss, TorchKLDivLoss)}
