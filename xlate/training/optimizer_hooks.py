"""What data cannot say for each optimizer row: when the other side's native class is exact.

One ``OptimizerHook`` per row hook name (``mappings/optimizers.toml``). ``native_from_torch(h)``
/ ``native_from_keras(h)`` get the source hyperparameters (torch names / Keras names, weight
decay already split into ``l2``/``decoupled``, and the training-loop settings: clipping, EMA,
accumulation) and return None when the native class computes the same update, else the reason
it does not (then xlate uses its exact emulation). ``torch_decay`` says what torch's
``weight_decay`` means for the row: coupled L2 (the default), decoupled (AdamW, Muon: Keras's
``weight_decay``), or ``torch_weight_decay`` (Adafactor's decay, applied after its step size is
taken, which Keras's decay is not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class OptimizerHook:
    native_from_torch: Callable[[dict], str | None]
    native_from_keras: Callable[[dict], str | None]
    torch_decay: str = "coupled"  # "coupled" | "decoupled" | "torch_weight_decay"


def _never(reason: str):
    return lambda h: reason


_KERAS_ONLY = ("clipnorm", "clipvalue", "global_clipnorm", "schedule", "use_ema", "gradient_accumulation_steps")


def _extras(h, keys=_KERAS_ONLY) -> str | None:
    used = [k for k in keys if h.get(k)]
    return f"{', '.join(used)} needs xlate's emulation (torch optimizers have no such setting)" if used else None


def torch_loop_reason(h) -> str | None:
    """torch->Keras: loop settings no native Keras optimizer reproduces exactly."""
    if h.get("clip_grad_norm") is not None:
        return "torch's clip_grad_norm_ divides by total_norm + 1e-6, Keras's global_clipnorm by the norm"
    if h.get("use_ema") and h.get("gradient_accumulation_steps"):
        return "Keras updates the EMA at every micro-batch under gradient accumulation, a torch loop once per step"
    return None


def _sgd_from_torch(h):
    if h.get("momentum", 0) != 0:
        return "torch's momentum buffer is lr-free, Keras's holds -lr*b: they part as soon as the lr changes"
    if h.get("l2") or h.get("maximize"):
        return "coupled weight decay / maximize have no native Keras SGD argument"
    return None


def _sgd_from_keras(h):
    if h.get("momentum", 0) != 0:
        return "Keras's momentum holds -lr*b, torch's buffer is lr-free: they part as soon as the lr changes"
    if h.get("decoupled"):
        return "torch SGD's weight_decay is coupled L2, Keras's decoupled"
    return _extras(h)


def _adadelta_from_torch(h):
    return "coupled weight decay / maximize have no native Keras argument" if h.get("l2") or h.get("maximize") else None


def _adadelta_from_keras(h):
    return "torch Adadelta's weight_decay is coupled L2, Keras's decoupled" if h.get("decoupled") else _extras(h)


def _nadam_from_torch(h):
    if h.get("momentum_decay", 0.004) != 1.0:
        return f"Keras's Nadam hard-codes momentum_decay=1, torch's is {h.get('momentum_decay', 0.004)}"
    if h.get("l2") or h.get("maximize"):
        return "coupled weight decay / maximize have no native Keras Nadam argument"
    return None


_NO_KERAS = "Keras has no {} optimizer: xlate's exact emulation"
_NO_TORCH = "torch has no {} optimizer: xlate's exact emulation"

HOOKS: dict[str, OptimizerHook] = {
    "sgd": OptimizerHook(_sgd_from_torch, _sgd_from_keras),
    "adam": OptimizerHook(_never("epsilon is added to sqrt(v)/sqrt(1-b2^t) in torch, to sqrt(v) in Keras"),
                          _never("epsilon is added to sqrt(v) in Keras, to sqrt(v)/sqrt(1-b2^t) in torch")),
    "adamw": OptimizerHook(_never("epsilon placement differs as for Adam"), _never("epsilon placement differs as for Adam"),
                           "decoupled"),
    "rmsprop": OptimizerHook(_never("epsilon outside the square root in torch, inside in Keras"),
                             _never("epsilon inside the square root in Keras, outside in torch")),
    "adagrad": OptimizerHook(_never("epsilon outside the square root in torch, inside in Keras"),
                             _never("epsilon inside the square root in Keras, outside in torch")),
    "adadelta": OptimizerHook(_adadelta_from_torch, _adadelta_from_keras),
    "adamax": OptimizerHook(_never("torch adds epsilon to |g| inside the max, Keras to the denominator"),
                            _never("Keras adds epsilon to the denominator, torch to |g| inside the max")),
    "nadam": OptimizerHook(_nadam_from_torch, lambda h: _extras(h)),
    "radam": OptimizerHook(_never(_NO_KERAS.format("RAdam")), _never(_NO_KERAS.format("RAdam"))),
    "rprop": OptimizerHook(_never(_NO_KERAS.format("Rprop")), _never(_NO_KERAS.format("Rprop"))),
    "asgd": OptimizerHook(_never(_NO_KERAS.format("ASGD")), _never(_NO_KERAS.format("ASGD"))),
    "adafactor": OptimizerHook(
        _never("Keras's Adafactor adds eps1 to g^2 (torch floors the estimate at eps1^2) and decays before alpha"),
        _never("torch's Adafactor floors the estimate at eps1^2 instead of adding eps1 to g^2, and decays after alpha"),
        "torch_weight_decay"),
    "muon": OptimizerHook(
        _never("torch runs Newton-Schulz in bfloat16, Keras in float32; the lr scaling and momentum differ"),
        _never("Keras runs Newton-Schulz in float32 and AdamW on non-2-D variables; torch's Muon does neither"),
        "decoupled"),
    "lion": OptimizerHook(_never(_NO_TORCH.format("Lion")), _never(_NO_TORCH.format("Lion"))),
    "lamb": OptimizerHook(_never(_NO_TORCH.format("Lamb")), _never(_NO_TORCH.format("Lamb"))),
    "ftrl": OptimizerHook(_never(_NO_TORCH.format("Ftrl")), _never(_NO_TORCH.format("Ftrl"))),
}
