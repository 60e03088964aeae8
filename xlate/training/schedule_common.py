"""What the schedule translations share: the stepping context, the row look-up, the result
record, and reading / setting a torch optimizer's base learning rate.

Imported by ``schedules.py`` (the classic rows) and ``composed_hooks.py`` (the composed and
modern ones); torch and Keras are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BadInputError, XlateError
from ..table import Row
from .lookup import keras_class_name, row_named, sub_optimizers, torch_class_name
from .record import Translation, attach_translation

STEPPINGS = ("epoch", "batch")


@dataclass
class Context:
    steps_per_epoch: int | None
    stepping: str | None
    optimizer: object  # Keras optimizer to install into (torch->Keras) / torch optimizer (Keras->torch)
    monitor: str
    emulate: str
    total_steps: int | None = None  # the run's length, where known: proves a clamped native schedule exact
    t2k: dict = field(default_factory=dict)  # hook name -> torch->Keras translator (for composed schedules)
    k2t: dict = field(default_factory=dict)  # hook name -> Keras->torch translator

    def child(self) -> Context:
        """The context a composed schedule's children are translated in (nothing installed)."""
        return Context(self.steps_per_epoch, self.stepping, None, self.monitor, self.emulate, self.total_steps,
                       self.t2k, self.k2t)

    def spe(self, default_stepping: str, what: str) -> tuple[str, int]:
        stepping = self.stepping or default_stepping
        if stepping not in STEPPINGS:
            raise BadInputError(f"stepping must be 'epoch' or 'batch', got {stepping!r}")
        if stepping == "batch":
            return stepping, 1
        if not self.steps_per_epoch or int(self.steps_per_epoch) < 1:
            raise BadInputError(f"{what} is stepped once per epoch: pass steps_per_epoch=<batches per epoch> "
                                "(Keras schedules count optimizer steps)", hint="or stepping='batch' if you step it "
                                "after every optimizer.step()")
        return stepping, int(self.steps_per_epoch)


def row_for(name: str, index: dict) -> Row:
    return row_named(name, index, ("schedule", "callback"), "schedule or callback",
                     "`xlate table --family schedule` / `--family callback` list what xlate translates")


def done(result, row: Row, direction: str, source: str, emulated: bool, stepping: str | None, notes=()):
    target = keras_class_name(result) if direction == "torch2keras" else torch_class_name(result)
    translation = Translation(row.id, direction, source, target, emulated, list(notes), stepping=stepping)
    if direction == "keras2torch" and stepping is not None:
        try:
            result.xlate_stepping = stepping
        except AttributeError:
            pass
    return attach_translation(result, translation)


def base_lr(scheduler) -> float:
    base = getattr(scheduler, "base_lrs", None) or [g.get("initial_lr", g["lr"]) for g in scheduler.optimizer.param_groups]
    if len(set(base)) > 1:
        raise BadInputError(f"the param groups start from different learning rates ({sorted(set(base))}): "
                            "translate each group's optimizer and schedule separately")
    return float(base[0])


def install_lr(schedule, optimizer) -> None:
    if optimizer is None:
        return
    for opt in sub_optimizers(optimizer):
        opt.learning_rate = schedule


def set_base_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        group.pop("initial_lr", None)


def require_torch_optimizer(ctx, what):
    import torch

    if not isinstance(ctx.optimizer, torch.optim.Optimizer):
        raise BadInputError(f"translating {what} to torch needs the torch optimizer: "
                            "translate_schedule(schedule, torch_optimizer)")
    return ctx.optimizer




def install_momentum(ctx: Context, momentum, what: str) -> None:
    """Install a cycled momentum / beta_1 schedule (OneCycleLR, CyclicLR) into the translated Keras
    optimizer; only xlate's emulation optimizers take a schedule there."""
    from .keras_optimizers import TorchAdam, TorchAdamax, TorchRMSprop, TorchSGD

    if ctx.optimizer is None:
        raise BadInputError(f"{what}(cycle_momentum=True) also cycles Adam's beta1 / SGD's momentum: pass "
                            "optimizer=<the translated Keras optimizer> so xlate installs it too",
                            hint=f"or build the torch {what} with cycle_momentum=False")
    for opt in sub_optimizers(ctx.optimizer):
        if isinstance(opt, (TorchAdam, TorchAdamax)):
            opt.beta_1 = momentum
        elif isinstance(opt, (TorchSGD, TorchRMSprop)):
            if opt.built and not opt._uses_momentum:
                raise XlateError(f"the Keras optimizer was built without momentum slots: install the {what} "
                                 "translation before the first step")
            opt.momentum = momentum
        else:
            raise XlateError(f"{keras_class_name(opt)} takes a constant beta_1/momentum: {what}'s momentum "
                             "cycling needs xlate's emulation optimizer (translate_optimizer(..., emulate='always'))")
