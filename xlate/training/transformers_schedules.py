"""Hugging Face transformers' warm-up schedules, recognised and reproduced in Keras.

``transformers.get_*_schedule_with_warmup(optimizer, ...)`` returns a torch ``LambdaLR`` over a
``functools.partial`` of a module-level function of ``transformers.optimization``; the partial's
keywords are the whole schedule. ``recognise(fn)`` reads them; ``TransformersSchedule`` is the
same closure in ``keras.ops`` (base lr times the factor, at the optimizer step, as the Trainer
steps it once per optimizer step), and translates back to the transformers function. The
formulas are transformers' own (``transformers/optimization.py``):

- warm-up (all kinds): step / max(1, W) while step < W;
- constant: 1; linear: max(0, (T - s) / max(1, T - W));
- cosine: max(0, f * (1 - m) + m), f = 0.5 (1 + cos(pi * 2 * cycles * p)), p = (s - W)/max(1, T - W),
  m = min_lr_rate (0 for get_cosine_schedule_with_warmup);
- cosine_with_hard_restarts: 0 for p >= 1, else max(0, 0.5 (1 + cos(pi ((cycles * p) % 1))));
- polynomial: lr_end / lr_init past T, else ((lr_init - lr_end) (1 - (s - W)/(T - W))^power + lr_end) / lr_init;
- inverse_sqrt: 1 / sqrt((s + timescale - W) / timescale).
"""

from __future__ import annotations

import math

import keras
from keras import ops

_register = keras.saving.register_keras_serializable(package="xlate")

# transformers.optimization function name -> kind
_KINDS = {
    "_get_constant_lambda": "constant",
    "_get_constant_schedule_with_warmup_lr_lambda": "constant_with_warmup",
    "_get_linear_schedule_with_warmup_lr_lambda": "linear",
    "_get_cosine_schedule_with_warmup_lr_lambda": "cosine",
    "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda": "cosine_with_hard_restarts",
    "_get_polynomial_decay_schedule_with_warmup_lr_lambda": "polynomial",
    "_get_inverse_sqrt_schedule_lr_lambda": "inverse_sqrt",
}
_PUBLIC = {"constant": "get_constant_schedule", "constant_with_warmup": "get_constant_schedule_with_warmup",
           "linear": "get_linear_schedule_with_warmup", "cosine": "get_cosine_schedule_with_warmup",
           "cosine_with_hard_restarts": "get_cosine_with_hard_restarts_schedule_with_warmup",
           "polynomial": "get_polynomial_decay_schedule_with_warmup", "inverse_sqrt": "get_inverse_sqrt_schedule"}
_DEFAULTS = {"num_warmup_steps": 0, "num_training_steps": 1, "num_cycles": 0.5, "min_lr_rate": 0.0, "lr_end": 1e-7,
             "power": 1.0, "lr_init": 1.0, "timescale": None}


def recognise(fn) -> tuple[str, dict] | None:
    """(kind, keywords) for one of transformers' schedule closures, else None."""
    import functools

    target = fn.func if isinstance(fn, functools.partial) else fn
    if getattr(target, "__module__", None) != "transformers.optimization":
        return None
    kind = _KINDS.get(getattr(target, "__name__", ""))
    if kind is None or (isinstance(fn, functools.partial) and fn.args):
        return None
    keywords = dict(fn.keywords) if isinstance(fn, functools.partial) else {}
    return kind, keywords


@_register
class TransformersSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """base_lr times transformers' ``kind`` factor (module docstring) at optimizer step s
    (``s // steps_per_epoch`` when the LambdaLR is stepped per epoch)."""

    def __init__(self, kind, base_lr, num_warmup_steps=0, num_training_steps=1, num_cycles=0.5, min_lr_rate=0.0,
                 lr_end=1e-7, power=1.0, lr_init=1.0, timescale=None, steps_per_epoch=1, name="transformers_schedule"):
        if kind not in _PUBLIC:
            raise ValueError(f"unknown transformers schedule kind {kind!r}")
        self.kind, self.base_lr, self.name = kind, float(base_lr), name
        self.num_warmup_steps, self.num_training_steps = int(num_warmup_steps), int(num_training_steps)
        self.num_cycles, self.min_lr_rate, self.lr_end, self.power = float(num_cycles), float(min_lr_rate), \
            float(lr_end), float(power)
        self.lr_init = float(lr_init)
        self.timescale = None if timescale is None else int(timescale)
        self.steps_per_epoch = int(steps_per_epoch)

    def _decay(self, s):
        w, t = float(self.num_warmup_steps), float(self.num_training_steps)
        progress = (s - w) / max(1.0, t - w)
        if self.kind in ("constant", "constant_with_warmup"):
            return ops.ones_like(s)
        if self.kind == "linear":
            return ops.maximum(0.0, (t - s) / max(1.0, t - w))
        if self.kind == "cosine":
            f = 0.5 * (1.0 + ops.cos(math.pi * self.num_cycles * 2.0 * progress))
            return ops.maximum(0.0, f * (1 - self.min_lr_rate) + self.min_lr_rate)
        if self.kind == "cosine_with_hard_restarts":
            f = ops.maximum(0.0, 0.5 * (1.0 + ops.cos(math.pi * ((self.num_cycles * progress) % 1.0))))
            return ops.where(progress >= 1.0, 0.0, f)
        if self.kind == "polynomial":
            remaining = 1 - (s - w) / (t - w)
            decay = ((self.lr_init - self.lr_end) * ops.power(ops.maximum(remaining, 0.0), self.power) + self.lr_end)
            return ops.where(s > t, self.lr_end / self.lr_init, decay / self.lr_init)
        timescale = float(self.timescale if self.timescale is not None else (self.num_warmup_steps or 10_000))
        return 1.0 / ops.sqrt((s + timescale - w) / timescale)

    def __call__(self, step):
        s = ops.cast(ops.floor_divide(ops.cast(step, "int64"), self.steps_per_epoch), "float64")
        factor = self._decay(s)
        if self.kind != "constant":
            factor = ops.where(s < self.num_warmup_steps, s / max(1.0, float(self.num_warmup_steps)), factor)
        return ops.cast(self.base_lr * factor, "float32")

    def keywords(self) -> dict:
        """The transformers function's keyword arguments this schedule came from."""
        names = {"constant": (), "constant_with_warmup": ("num_warmup_steps",),
                 "linear": ("num_warmup_steps", "num_training_steps"),
                 "cosine": ("num_warmup_steps", "num_training_steps", "num_cycles"),
                 "cosine_with_hard_restarts": ("num_warmup_steps", "num_training_steps", "num_cycles"),
                 "polynomial": ("num_warmup_steps", "num_training_steps", "lr_end", "power"),
                 "inverse_sqrt": ("num_warmup_steps", "timescale")}[self.kind]
        out = {k: getattr(self, k) for k in names}
        if self.kind == "cosine_with_hard_restarts":
            out["num_cycles"] = int(self.num_cycles)
        return out

    def get_config(self):
        return {"kind": self.kind, "base_lr": self.base_lr, "num_warmup_steps": self.num_warmup_steps,
                "num_training_steps": self.num_training_steps, "num_cycles": self.num_cycles,
                "min_lr_rate": self.min_lr_rate, "lr_end": self.lr_end, "power": self.power, "lr_init": self.lr_init,
                "timescale": self.timescale, "steps_per_epoch": self.steps_per_epoch, "name": self.name}


def from_closure(kind: str, keywords: dict, base_lr: float, steps_per_epoch: int) -> TransformersSchedule:
    kwargs = {k: keywords[k] for k in _DEFAULTS if k in keywords}
    if kind == "inverse_sqrt" and kwargs.get("timescale") is None:
        kwargs["timescale"] = keywords.get("num_warmup_steps") or 10_000
    return TransformersSchedule(kind, base_lr, **kwargs, steps_per_epoch=steps_per_epoch)


def to_torch(schedule: TransformersSchedule, optimizer):
    """The transformers scheduler the schedule came from, on ``optimizer`` (base lr set)."""
    import transformers

    for group in optimizer.param_groups:
        group["lr"] = schedule.base_lr
        group.pop("initial_lr", None)
    fn = getattr(transformers, _PUBLIC[schedule.kind])
    if schedule.kind == "polynomial":
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_init
        optimizer.defaults["lr"] = schedule.lr_init
    return fn(optimizer, **schedule.keywords())
