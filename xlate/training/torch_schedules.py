"""torch schedulers and callbacks that reproduce Keras's schedules and callbacks exactly.

- ``keras_schedule_function(schedule)``: a Keras ``LearningRateSchedule`` as a plain Python
  function of the 0-based optimizer step (ExponentialDecay, PiecewiseConstantDecay,
  PolynomialDecay, InverseTimeDecay, CosineDecay with warm-up, CosineDecayRestarts, and
  xlate's own Keras schedules).
- ``KerasScheduleLR``: an ``LRScheduler`` that sets that lr; step it once per batch.
- ``KerasLearningRateScheduler``: Keras's LearningRateScheduler (fn(epoch, lr)) for a torch loop.
- ``KerasReduceLROnPlateau``: Keras's ReduceLROnPlateau bookkeeping (absolute min_delta,
  wait >= patience, cooldown counted Keras's way) with torch's ``step(metric)`` interface.
- ``EarlyStopping``: Keras's EarlyStopping for a torch loop (torch has none).
"""

from __future__ import annotations

import copy
import math

import torch
from torch.optim.lr_scheduler import LRScheduler


def keras_schedule_function(schedule):
    """The Keras schedule's learning rate as a Python function of the 0-based optimizer step."""
    name = type(schedule).__name__
    c = schedule.get_config()
    if name == "ExponentialDecay":
        def f(step):
            p = step / c["decay_steps"]
            return c["initial_learning_rate"] * c["decay_rate"] ** (math.floor(p) if c["staircase"] else p)
    elif name == "PiecewiseConstantDecay":
        def f(step):
            for boundary, value in zip(c["boundaries"], c["values"]):
                if step <= boundary:
                    return float(value)
            return float(c["values"][-1])
    elif name == "PolynomialDecay":
        def f(step):
            decay_steps = c["decay_steps"]
            if c["cycle"]:
                decay_steps = decay_steps * (1.0 if step == 0 else math.ceil(step / c["decay_steps"]))
            else:
                step = min(step, decay_steps)
            p = step / decay_steps
            return (c["initial_learning_rate"] - c["end_learning_rate"]) * (1 - p) ** c["power"] + \
                c["end_learning_rate"]
    elif name == "InverseTimeDecay":
        def f(step):
            p = step / c["decay_steps"]
            return c["initial_learning_rate"] / (1 + c["decay_rate"] * (math.floor(p) if c["staircase"] else p))
    elif name == "CosineDecay":
        def decay(step, lr0):
            fraction = step / c["decay_steps"]
            return lr0 * ((1 - c["alpha"]) * 0.5 * (1 + math.cos(math.pi * fraction)) + c["alpha"])

        def f(step):
            if c.get("warmup_target") is None:
                return decay(min(step, c["decay_steps"]), c["initial_learning_rate"])
            warmup = c.get("warmup_steps", 0)
            step = min(step, c["decay_steps"] + warmup)
            if step < warmup:
                return (c["warmup_target"] - c["initial_learning_rate"]) * step / warmup + c["initial_learning_rate"]
            return decay(step - warmup, c["warmup_target"])
    elif name == "CosineDecayRestarts":
        def f(step):
            fraction = step / c["first_decay_steps"]
            t_mul, m_mul = c["t_mul"], c["m_mul"]
            if t_mul == 1.0:
                i_restart = math.floor(fraction)
                fraction -= i_restart
            else:
                i_restart = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
                sum_r = (1.0 - t_mul**i_restart) / (1.0 - t_mul)
                fraction = (fraction - sum_r) / t_mul**i_restart
            cosine = 0.5 * m_mul**i_restart * (1.0 + math.cos(math.pi * fraction))
            return c["initial_learning_rate"] * ((1 - c["alpha"]) * cosine + c["alpha"])
    elif type(schedule).__module__.startswith("xlate."):  # xlate's own Keras schedules: evaluate them
        import keras

        def f(step):
            return float(keras.ops.convert_to_numpy(schedule(step)))
    else:
        raise ValueError(f"no torch counterpart for the Keras schedule {name}")
    f.__name__ = f"keras_{name}"
    f.keras_schedule = schedule
    return f


def _is_improvement(value, reference, mode: str, min_delta: float) -> bool:
    """Keras's test (ReduceLROnPlateau, EarlyStopping): better than ``reference`` by more than
    ``min_delta`` in the direction of ``mode``; anything beats no reference."""
    if reference is None:
        return True
    return value + min_delta < reference if mode == "min" else value - min_delta > reference


class KerasScheduleLR(LRScheduler):
    """Sets every param group's lr to a Keras schedule's value at the optimizer step: construct
    it, then call ``step()`` once after every ``optimizer.step()`` (per batch, as Keras does)."""

    xlate_stepping = "batch"

    def __init__(self, optimizer, schedule, last_epoch=-1):
        self.schedule_fn = schedule if callable(schedule) and not hasattr(schedule, "get_config") else \
            keras_schedule_function(schedule)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lr = float(self.schedule_fn(self.last_epoch))
        return [lr for _ in self.optimizer.param_groups]


class KerasLearningRateScheduler(LRScheduler):
    """Keras's LearningRateScheduler for torch: at each epoch (call ``step()`` once per epoch,
    after the epoch), lr = fn(epoch, current lr) with the 0-based epoch about to start."""

    xlate_stepping = "epoch"

    def __init__(self, optimizer, schedule, last_epoch=-1):
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [float(self.schedule(self.last_epoch, group["lr"])) for group in self.optimizer.param_groups]


class KerasReduceLROnPlateau:
    """Keras's ReduceLROnPlateau bookkeeping for a torch optimizer; call ``step(metric)`` once per
    epoch like torch's scheduler."""

    xlate_stepping = "epoch"

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0):
        if mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max' (Keras's 'auto' is resolved by xlate.translate_schedule)")
        if factor >= 1.0:
            raise ValueError("factor must be < 1 (as in Keras)")
        self.optimizer, self.mode, self.factor, self.patience = optimizer, mode, float(factor), int(patience)
        self.min_delta, self.cooldown, self.min_lr = abs(float(min_delta)), int(cooldown), float(min_lr)
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def step(self, metric) -> None:
        current = float(metric)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if _is_improvement(current, self.best, self.mode, self.min_delta):
            self.best = current
            self.wait = 0
        elif not self.cooldown_counter > 0:
            self.wait += 1
            if self.wait >= self.patience:
                reduced = False
                for group in self.optimizer.param_groups:
                    old = float(group["lr"])
                    if old > float(torch.tensor(self.min_lr, dtype=torch.float32)):
                        group["lr"] = max(old * self.factor, self.min_lr)
                        reduced = True
                if reduced:
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state):
        self.__dict__.update(state)


class EarlyStopping:
    """Keras's EarlyStopping for a torch training loop.

    Call ``step(metric, model)`` once per epoch (0-based epochs counted for you); it returns True
    when training should stop: the metric has not improved by more than ``min_delta`` for
    ``patience`` epochs (and the epoch is not the first). With ``restore_best_weights`` it keeps a
    copy of the best ``state_dict`` and ``restore(model)`` loads it.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        if mode == "auto":
            if monitor.removeprefix("val_") != "loss":
                raise ValueError(f"mode='auto' cannot tell whether {monitor!r} should go up or down: pass mode")
            mode = "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be auto, min or max, got {mode!r}")
        self.monitor, self.min_delta, self.patience, self.mode = monitor, abs(float(min_delta)), int(patience), mode
        self.baseline, self.restore_best_weights, self.start_from_epoch = baseline, bool(restore_best_weights), \
            int(start_from_epoch)
        self.reset()

    def reset(self):
        self.wait = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.epoch = -1

    def step(self, metric, model=None) -> bool:
        self.epoch += 1
        epoch, current = self.epoch, float(metric)
        if epoch < self.start_from_epoch:
            return False
        if self.restore_best_weights and self.best_weights is None and model is not None:
            self.best_weights = copy.deepcopy(model.state_dict())
            self.best_epoch = epoch
        self.wait += 1
        if _is_improvement(current, self.best, self.mode, self.min_delta):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights and model is not None:
                self.best_weights = copy.deepcopy(model.state_dict())
            if self.baseline is None or _is_improvement(current, self.baseline, self.mode, self.min_delta):
                self.wait = 0
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self, model) -> None:
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)
