"""Keras learning-rate schedules with torch's closed forms, and the compositions torch builds.

Every class is a ``LearningRateSchedule`` (``keras.ops`` only, registered as ``xlate>X``)
evaluated at ``optimizer.iterations``; step s is torch epoch ``s // steps_per_epoch`` (torch step
s with ``steps_per_epoch=1``). The formulas are torch 2.13's ``_get_closed_form_lr``; torch's
schedulers compute the same values recursively (equal to float rounding).

- ``TorchLinearLR``: base * (start + (end - start) * min(e, T) / T).
- ``TorchPolynomialLR``: base * (1 - min(e, T)/T)^power.
- ``TorchCosineAnnealingWarmRestarts``: eta_min + (base - eta_min)(1 + cos(pi T_cur/T_i))/2 with
  torch's integer restarts (T_i = T_0 T_mult^n), found exactly, not through a float log.
- ``TorchCyclicLR``: triangular / triangular2 / exp_range cycles of the lr, or of the momentum
  (``quantity="momentum"``, inverse to the lr) for xlate's emulation optimizers.
- ``TorchSequentialLR``: child i runs from milestone i-1, evaluated at the epochs since (torch
  restarts each child at its closed form of epoch 0).
- ``TorchChainedScheduler``: base * prod(child / base) over multiplicative children (torch's
  chainable form applies every child's factor to the same lr).
- ``TorchSampledLR``: a table of per-step values (a LambdaLR over a plain function, sampled by
  running the function); the last value holds past the table.
- ``TorchPerUpdateLR``: any schedule counted in optimizer updates under gradient accumulation.
"""

from __future__ import annotations

import math

import keras
from keras import ops

_register = keras.saving.register_keras_serializable(package="xlate")
Schedule = keras.optimizers.schedules.LearningRateSchedule


def _epoch(step, steps_per_epoch):
    return ops.floor_divide(ops.cast(step, "int64"), int(steps_per_epoch))


class _Torch(Schedule):
    _fields: tuple[str, ...] = ()

    def get_config(self):
        return {k: getattr(self, k) for k in (*self._fields, "steps_per_epoch", "name")}


@_register
class TorchLinearLR(_Torch):
    """torch's LinearLR."""

    _fields = ("base_lr", "start_factor", "end_factor", "total_iters")

    def __init__(self, base_lr, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, steps_per_epoch=1,
                 name="torch_linear_lr"):
        self.base_lr, self.start_factor, self.end_factor = float(base_lr), float(start_factor), float(end_factor)
        self.total_iters, self.steps_per_epoch, self.name = int(total_iters), int(steps_per_epoch), name

    def __call__(self, step):
        e = ops.cast(ops.minimum(_epoch(step, self.steps_per_epoch), self.total_iters), "float32")
        factor = self.start_factor + (self.end_factor - self.start_factor) * e / self.total_iters
        return self.base_lr * factor


@_register
class TorchPolynomialLR(_Torch):
    """torch's PolynomialLR."""

    _fields = ("base_lr", "total_iters", "power")

    def __init__(self, base_lr, total_iters=5, power=1.0, steps_per_epoch=1, name="torch_polynomial_lr"):
        self.base_lr, self.total_iters, self.power = float(base_lr), int(total_iters), float(power)
        self.steps_per_epoch, self.name = int(steps_per_epoch), name

    def __call__(self, step):
        e = ops.cast(ops.minimum(_epoch(step, self.steps_per_epoch), self.total_iters), "float32")
        return self.base_lr * ops.power(1.0 - e / self.total_iters, self.power)


@_register
class TorchCosineAnnealingWarmRestarts(_Torch):
    """torch's CosineAnnealingWarmRestarts stepped once per epoch (or per batch)."""

    _fields = ("base_lr", "T_0", "T_mult", "eta_min")

    def __init__(self, base_lr, T_0, T_mult=1, eta_min=0.0, steps_per_epoch=1, name="torch_cosine_warm_restarts"):
        self.base_lr, self.T_0, self.T_mult, self.eta_min = float(base_lr), int(T_0), int(T_mult), float(eta_min)
        self.steps_per_epoch, self.name = int(steps_per_epoch), name

    def _restarts(self, limit=2**40):
        """[(start epoch of cycle n, T_i)] for the cycles that start before ``limit``."""
        out, start, length = [], 0, self.T_0
        while start < limit and len(out) < 64:
            out.append((start, length))
            start, length = start + length, length * self.T_mult
            if self.T_mult == 1:
                break
        return out

    def __call__(self, step):
        e = _epoch(step, self.steps_per_epoch)
        if self.T_mult == 1:
            t_cur, t_i = ops.cast(e % self.T_0, "float32"), float(self.T_0)
        else:
            cycles = self._restarts()
            n = sum(ops.cast(ops.greater_equal(e, start), "int32") for start, _ in cycles[1:])
            starts = ops.convert_to_tensor([s for s, _ in cycles], "int64")
            lengths = ops.convert_to_tensor([float(t) for _, t in cycles], "float32")
            t_cur = ops.cast(e - ops.take(starts, n), "float32")
            t_i = ops.take(lengths, n)
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + ops.cos(math.pi * t_cur / t_i)) / 2.0


@_register
class TorchCyclicLR(_Torch):
    """torch's CyclicLR (built-in modes) for the lr or, ``quantity="momentum"``, the momentum."""

    _fields = ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "quantity", "base_momentum",
               "max_momentum")

    def __init__(self, base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular", gamma=1.0,
                 quantity="lr", base_momentum=0.8, max_momentum=0.9, steps_per_epoch=1, name="torch_cyclic_lr"):
        if mode not in ("triangular", "triangular2", "exp_range") or quantity not in ("lr", "momentum"):
            raise ValueError(f"mode must be triangular/triangular2/exp_range and quantity lr/momentum, got {mode!r}, "
                             f"{quantity!r}")
        self.base_lr, self.max_lr, self.mode, self.gamma = float(base_lr), float(max_lr), mode, float(gamma)
        self.step_size_up = float(step_size_up)
        self.step_size_down = float(step_size_down) if step_size_down is not None else self.step_size_up
        self.quantity, self.base_momentum, self.max_momentum = quantity, float(base_momentum), float(max_momentum)
        self.steps_per_epoch, self.name = int(steps_per_epoch), name

    def get_config(self):
        return {**super().get_config(), "step_size_up": self.step_size_up, "step_size_down": self.step_size_down}

    def __call__(self, step):
        total = self.step_size_up + self.step_size_down
        ratio = self.step_size_up / total
        e = ops.cast(_epoch(step, self.steps_per_epoch), "float64")
        cycle = ops.floor(1.0 + e / total)
        x = 1.0 + e / total - cycle
        scale = ops.where(x <= ratio, x / ratio, (x - 1.0) / (ratio - 1.0))
        if self.mode == "triangular":
            amplitude = ops.ones_like(e)
        elif self.mode == "triangular2":
            amplitude = 1.0 / ops.power(2.0, cycle - 1.0)
        else:
            amplitude = ops.power(self.gamma, e)
        if self.quantity == "lr":
            value = self.base_lr + (self.max_lr - self.base_lr) * scale * amplitude
        else:
            value = self.max_momentum - (self.max_momentum - self.base_momentum) * scale * amplitude
        return ops.cast(value, "float32")


def _serialize(schedules):
    return [keras.optimizers.schedules.serialize(s) for s in schedules]


def _deserialize(configs):
    return [keras.optimizers.schedules.deserialize(c) if isinstance(c, dict) else c for c in configs]


@_register
class TorchSequentialLR(_Torch):
    """torch's SequentialLR over Keras schedules (each evaluated at the steps since its milestone)."""

    def __init__(self, schedules, milestones, steps_per_epoch=1, name="torch_sequential_lr"):
        self.schedules, self.milestones = _deserialize(schedules), [int(m) for m in milestones]
        if len(self.milestones) != len(self.schedules) - 1:
            raise ValueError("SequentialLR needs one milestone fewer than schedules")
        self.steps_per_epoch, self.name = int(steps_per_epoch), name

    def __call__(self, step):
        step = ops.cast(step, "int64")
        e = _epoch(step, self.steps_per_epoch)
        starts = [0, *self.milestones]
        value = None
        for start, schedule in zip(starts, self.schedules):
            local = ops.maximum(step - start * self.steps_per_epoch, 0)
            v = ops.cast(schedule(local), "float32")
            value = v if value is None else ops.where(e >= start, v, value)
        return value

    def get_config(self):
        return {"schedules": _serialize(self.schedules), "milestones": self.milestones,
                "steps_per_epoch": self.steps_per_epoch, "name": self.name}


@_register
class TorchChainedScheduler(_Torch):
    """torch's ChainedScheduler over multiplicative children: base * prod(child(step) / base)."""

    def __init__(self, schedules, base_lr, name="torch_chained_scheduler"):
        self.schedules, self.base_lr, self.name = _deserialize(schedules), float(base_lr), name

    def __call__(self, step):
        value = ops.convert_to_tensor(self.base_lr, "float32")
        for schedule in self.schedules:
            value = value * (ops.cast(schedule(step), "float32") / self.base_lr)
        return value

    def get_config(self):
        return {"schedules": _serialize(self.schedules), "base_lr": self.base_lr, "name": self.name}


@_register
class TorchSampledLR(_Torch):
    """A per-epoch table of learning rates (a torch LambdaLR run ahead of time); past the table the
    last value holds."""

    def __init__(self, values, steps_per_epoch=1, name="torch_sampled_lr"):
        self.values, self.steps_per_epoch, self.name = [float(v) for v in values], int(steps_per_epoch), name

    def __call__(self, step):
        e = ops.minimum(_epoch(step, self.steps_per_epoch), len(self.values) - 1)
        return ops.take(ops.convert_to_tensor(self.values, "float32"), e)

    def get_config(self):
        return {"values": self.values, "steps_per_epoch": self.steps_per_epoch, "name": self.name}


@_register
class TorchPerUpdateLR(_Torch):
    """A schedule of optimizer updates under Keras's gradient accumulation: Keras evaluates the
    learning rate at the micro-batch count, a torch loop steps its scheduler once per update, so
    this evaluates ``schedule(step // accumulation_steps)``."""

    def __init__(self, schedule, accumulation_steps, name="torch_per_update_lr"):
        self.schedule = _deserialize([schedule])[0]
        self.accumulation_steps, self.name = int(accumulation_steps), name

    def __call__(self, step):
        return self.schedule(ops.floor_divide(ops.cast(step, "int64"), self.accumulation_steps))

    def get_config(self):
        return {"schedule": _serialize([self.schedule])[0], "accumulation_steps": self.accumulation_steps,
                "name": self.name}


BY_NAME = {cls.__name__: cls for cls in (TorchLinearLR, TorchPolynomialLR, TorchCosineAnnealingWarmRestarts,
                                         TorchCyclicLR, TorchSequentialLR, TorchChainedScheduler, TorchSampledLR,
                                         TorchPerUpdateLR)}
