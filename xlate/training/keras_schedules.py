"""Keras schedules and callbacks that reproduce torch.optim.lr_scheduler exactly.

``TorchCosineAnnealingLR`` and ``TorchOneCycleLR`` are ``LearningRateSchedule``s (``keras.ops``
only) evaluated at ``optimizer.iterations``: step s is torch epoch ``s // steps_per_epoch`` (or
torch step s with ``steps_per_epoch=1``, per-batch stepping). ``TorchOneCycleLR(quantity=
"momentum")`` gives torch's cycled beta1/momentum, for xlate's emulation optimizers.
``TorchLambdaLR`` and ``TorchReduceLROnPlateau`` are callbacks that set the optimizer's learning
rate the way torch's schedulers do (per step or per epoch; torch's plateau bookkeeping).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from .lookup import keras_learning_rate, sub_optimizers

_register = keras.saving.register_keras_serializable(package="xlate")


def _epoch(step, steps_per_epoch, dtype="float32"):
    step = ops.cast(step, "int64")
    return ops.cast(ops.floor_divide(step, steps_per_epoch), dtype)


@_register
class TorchCosineAnnealingLR(keras.optimizers.schedules.LearningRateSchedule):
    """torch's CosineAnnealingLR: eta_min + (base - eta_min)(1 + cos(pi e / T_max))/2, periodic
    after T_max (Keras's CosineDecay clamps there and interpolates inside an epoch)."""

    def __init__(self, base_lr, T_max, eta_min=0.0, steps_per_epoch=1, name="torch_cosine_annealing"):
        self.base_lr, self.T_max, self.eta_min = float(base_lr), int(T_max), float(eta_min)
        self.steps_per_epoch, self.name = int(steps_per_epoch), name

    def __call__(self, step):
        e = _epoch(step, self.steps_per_epoch)
        cos = ops.cos(math.pi * e / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + cos) / 2.0

    def get_config(self):
        return {"base_lr": self.base_lr, "T_max": self.T_max, "eta_min": self.eta_min,
                "steps_per_epoch": self.steps_per_epoch, "name": self.name}


@_register
class TorchOneCycleLR(keras.optimizers.schedules.LearningRateSchedule):
    """torch's OneCycleLR: the learning rate (``quantity="lr"``) or the cycled momentum / beta1
    (``quantity="momentum"``) at torch step ``s // steps_per_epoch``."""

    def __init__(self, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
                 final_div_factor=1e4, three_phase=False, quantity="lr", base_momentum=0.85, max_momentum=0.95,
                 steps_per_epoch=1, name="torch_one_cycle"):
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        if quantity not in ("lr", "momentum"):
            raise ValueError(f"quantity must be 'lr' or 'momentum', got {quantity!r}")
        self.max_lr, self.total_steps, self.pct_start = float(max_lr), int(total_steps), float(pct_start)
        self.anneal_strategy, self.div_factor, self.final_div_factor = anneal_strategy, float(div_factor), \
            float(final_div_factor)
        self.three_phase, self.quantity = bool(three_phase), quantity
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)
        self.steps_per_epoch, self.name = int(steps_per_epoch), name

    def phases(self):
        """[(end step, start value, end value)] as torch builds them."""
        initial = self.max_lr / self.div_factor
        minimum = initial / self.final_div_factor
        lr = self.quantity == "lr"
        top, bottom = (self.max_lr, initial) if lr else (self.base_momentum, self.max_momentum)
        last_end = minimum if lr else self.max_momentum
        total = self.total_steps
        if self.three_phase:
            return [(float(self.pct_start * total) - 1, bottom, top),
                    (float(2 * self.pct_start * total) - 2, top, bottom),
                    (total - 1.0, bottom, last_end)]
        return [(float(self.pct_start * total) - 1, bottom, top), (total - 1.0, top, last_end)]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)
        return (end - start) * pct + start

    def __call__(self, step):
        s = _epoch(step, self.steps_per_epoch)
        phases = self.phases()
        starts = [0.0] + [end for end, _, _ in phases[:-1]]
        value = None
        for (end, a, b), start in reversed(list(zip(phases, starts))):
            phase_value = self._anneal(a, b, (s - start) / (end - start))
            value = phase_value if value is None else ops.where(s <= end, phase_value, value)
        return value

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "anneal_strategy": self.anneal_strategy, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "three_phase": self.three_phase,
                "quantity": self.quantity, "base_momentum": self.base_momentum, "max_momentum": self.max_momentum,
                "steps_per_epoch": self.steps_per_epoch, "name": self.name}


class TorchLambdaLR(keras.callbacks.Callback):
    """torch's LambdaLR: before each batch, lr = base_lr * lr_lambda(e), e the torch step count
    (``optimizer.iterations // steps_per_epoch``; steps_per_epoch=1 for per-batch stepping)."""

    def __init__(self, lr_lambda, base_lr, steps_per_epoch=1):
        super().__init__()
        self.lr_lambda, self.base_lr, self.steps_per_epoch = lr_lambda, float(base_lr), int(steps_per_epoch)

    def on_train_batch_begin(self, batch, logs=None):
        for opt in sub_optimizers(self.model.optimizer):
            e = int(keras.ops.convert_to_numpy(opt.iterations)) // self.steps_per_epoch
            opt.learning_rate = self.base_lr * float(self.lr_lambda(e))


class TorchReduceLROnPlateau(keras.callbacks.Callback):
    """torch's ReduceLROnPlateau as a Keras callback, stepped with ``logs[monitor]`` at each
    epoch end: relative or absolute threshold, bad epochs > patience, torch's cooldown order, and
    reductions smaller than eps skipped."""

    def __init__(self, monitor="val_loss", mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8, resume_state=None):
        super().__init__()
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"mode must be min/max and threshold_mode rel/abs, got {mode!r}, {threshold_mode!r}")
        self.monitor, self.mode, self.factor, self.patience = monitor, mode, float(factor), int(patience)
        self.threshold, self.threshold_mode, self.cooldown = float(threshold), threshold_mode, int(cooldown)
        self.min_lr, self.eps = min_lr, float(eps)
        self.reset()
        if resume_state:  # best / num_bad_epochs / cooldown_counter of a torch scheduler mid-training
            for key, value in resume_state.items():
                setattr(self, key, value)

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        # torch's scheduler lives across loops; Keras's own callback resets here, torch's does not
        pass

    def is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, current: float, optimizer) -> None:
        """One torch ``scheduler.step(metric)``."""
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            opts = sub_optimizers(optimizer)
            min_lrs = self.min_lr if isinstance(self.min_lr, (list, tuple)) else [self.min_lr] * len(opts)
            for opt, min_lr in zip(opts, min_lrs):
                old = keras_learning_rate(opt)
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    opt.learning_rate = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise KeyError(f"TorchReduceLROnPlateau monitors {self.monitor!r}, which the logs lack "
                           f"(have: {', '.join(sorted(logs or {}))})")
        self.step(float(current), self.model.optimizer)


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping, starting from a carried state (``wait``, ``best``, ``best_epoch``)
    instead of resetting when ``fit()`` begins: to continue a run that began elsewhere. Pass
    ``fit(initial_epoch=...)`` so epochs keep their numbers."""

    def __init__(self, *, resume_state: dict, **kwargs):
        super().__init__(**kwargs)
        self.resume_state = dict(resume_state)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.resume_state:
            for key, value in self.resume_state.items():
                setattr(self, key, value)
            self.resume_state = None
