"""Pieces both optimizer-translation directions share: the emulate switch, tuple arguments, the
training-loop settings that travel with an optimizer (clipping, EMA, accumulation), and what a
Keras class accepts."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from ..errors import BadInputError, XlateError
from ..table import Row
from .lookup import EMULATE

TUPLE_ARG = re.compile(r"(\w+)\[(\d+)\]")
KERAS_BASE_ONLY = {"name", "learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
                   "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps"}
#: Keras optimizer settings a torch loop would do itself (xlate.KerasX optimizers do them in step())
KERAS_LOOP_SETTINGS = ("clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
                       "ema_overwrite_frequency", "gradient_accumulation_steps")


@dataclass
class LoopSettings:
    """What a torch training loop does around ``optimizer.step()``: ``clip_grad_norm_(params, C)``,
    ``clip_grad_value_(params, V)``, ``ema.update_parameters(net)`` after each step (an
    AveragedModel or its decay), and gradient accumulation over k batches (loss / k, step and
    zero_grad every k batches)."""

    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    ema: object = None
    grad_accum_steps: int | None = None

    def __post_init__(self):
        if self.clip_grad_norm is not None and self.clip_grad_value is not None:
            raise BadInputError("pass clip_grad_norm or clip_grad_value, not both")
        if self.grad_accum_steps is not None:
            k = int(self.grad_accum_steps)
            if k < 1 or k != self.grad_accum_steps:
                raise BadInputError(f"grad_accum_steps must be a positive integer, got {self.grad_accum_steps}")
            self.grad_accum_steps = None if k == 1 else k
        for name in ("clip_grad_norm", "clip_grad_value"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise BadInputError(f"{name} must be > 0, got {value}")

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.clip_grad_norm, self.clip_grad_value, self.ema, self.grad_accum_steps))


def check_emulate(emulate: str) -> None:
    if emulate not in EMULATE:
        raise BadInputError(f"emulate must be one of {', '.join(EMULATE)}, got {emulate!r}")


def use_native(reason: str | None, emulate: str, row: Row, target_native: str) -> bool:
    if emulate == "always" or (emulate == "auto" and reason is not None):
        return False
    if reason is not None:  # emulate == "never"
        raise XlateError(f"{target_native} cannot reproduce this {row.id} configuration: {reason}",
                         hint="use emulate='auto' to get xlate's exact emulation")
    return True


def accepted(cls, kwargs: dict) -> dict:
    """The kwargs a Keras optimizer class takes (xlate's emulations take everything they are given)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()) and cls.__module__.startswith("xlate."):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params or k in KERAS_BASE_ONLY}


def is_power_of_two(x: float) -> bool:
    import math

    m, _ = math.frexp(float(x))
    return float(x) > 0 and m == 0.5
