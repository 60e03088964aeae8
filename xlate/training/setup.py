"""translate_training: a whole training setup (optimizer, loss, schedule, clipping, EMA,
accumulation, loss scaling) from one framework to the other, in one call.

torch -> Keras: the torch loop's settings (``clip_grad_norm_`` / ``clip_grad_value_``, an
``AveragedModel``, accumulation over k batches, a ``GradScaler`` and autocast dtype) become the
Keras optimizer's own (``LoopSettings`` in ``translate_optimizer``), a LossScaleOptimizer and a
dtype policy; a schedule counted in optimizer updates is wrapped to Keras's micro-batch count
under accumulation. ``model.fit`` with ``setup.optimizer``, ``setup.loss`` and
``setup.callbacks`` reproduces the torch loop.

Keras -> torch: the Keras optimizer's clipping / EMA / accumulation run inside the returned
xlate.KerasX optimizer's ``step()``; a LossScaleOptimizer becomes a ``GradScaler``; an xlate.TorchX
source gives its torch-loop settings back (``setup.clip_grad_norm``, ``setup.ema`` as an
AveragedModel carrying the Keras averages, ``setup.grad_accum_steps``). ``setup.loop`` says how
the torch loop must look.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BadInputError
from ..frameworks import framework_of
from .optimizer_common import LoopSettings
from .record import translation_of


@dataclass
class TrainingSetup:
    """The other framework's training setup. ``source_loop``: what the source's loop does around
    its optimizer (the check replays it); the ``clip_*`` / ``ema`` / ``grad_accum_steps`` /
    ``grad_scaler`` fields: what the target's loop must do itself (torch targets only; a Keras
    optimizer does it inside ``apply``)."""

    direction: str
    optimizer: object
    loss: object = None
    schedule: object = None  # a torch scheduler (Keras->torch), a Keras schedule or callback (torch->Keras)
    callbacks: list = field(default_factory=list)  # Keras callbacks for fit (torch->Keras)
    stepping: str | None = None  # when the torch scheduler is stepped
    steps_per_epoch: int | None = None
    source_loop: LoopSettings = field(default_factory=LoopSettings)
    source_grad_scaler: object = None
    source_autocast: str | None = None
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    ema: object = None  # torch AveragedModel the target loop updates after each step
    grad_accum_steps: int | None = None
    grad_scaler: object = None  # torch GradScaler for the target loop
    autocast_dtype: str | None = None  # torch autocast dtype for the target loop
    dtype_policy: str | None = None  # the Keras target model's dtype policy
    loop: list[str] = field(default_factory=list)
    translations: list = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"{self.direction}: " + "; ".join(t.describe() for t in self.translations)]
        return "\n".join(lines + [f"  loop: {line}" for line in self.loop])


def _record(setup: TrainingSetup, *objs) -> None:
    setup.translations += [translation_of(o) for o in objs if o is not None and translation_of(o) is not None]


def _torch_to_keras(model, optimizer, loss, schedule, target, loop, *, steps_per_epoch, stepping, total_steps,
                    grad_scaler, autocast_dtype, loss_target, emulate, pairing):
    import keras

    from .composed_schedules import TorchPerUpdateLR
    from .losses import translate_loss
    from .mixed_precision import keras_loss_scale, policy_for
    from .optimizers import translate_optimizer
    from .schedules import translate_schedule

    k = loop.grad_accum_steps or 1
    kopt = translate_optimizer(optimizer, target, source_model=model, emulate=emulate, pairing=pairing,
                               clip_grad_norm=loop.clip_grad_norm, clip_grad_value=loop.clip_grad_value,
                               ema=loop.ema, grad_accum_steps=loop.grad_accum_steps)
    setup = TrainingSetup("torch2keras", kopt, source_loop=loop, source_grad_scaler=grad_scaler,
                          source_autocast=autocast_dtype, steps_per_epoch=steps_per_epoch,
                          dtype_policy=policy_for(autocast_dtype))
    if loss is not None:
        setup.loss = translate_loss(loss, target=loss_target)
    if schedule is not None:
        if steps_per_epoch and steps_per_epoch % k:
            raise BadInputError(f"steps_per_epoch={steps_per_epoch} batches is not a whole number of "
                                f"{k}-batch accumulation windows")
        result = translate_schedule(schedule, steps_per_epoch=steps_per_epoch // k if steps_per_epoch else None,
                                    stepping=stepping, optimizer=kopt, monitor="loss", emulate=emulate,
                                    total_steps=-(-total_steps // k) if total_steps else None)
        setup.stepping = translation_of(result).stepping
        if isinstance(result, keras.callbacks.Callback):
            setup.callbacks.append(result)
        elif k > 1:
            for sub in getattr(kopt, "optimizers", None) or [kopt]:
                sub.learning_rate = TorchPerUpdateLR(result, k)
            translation_of(result).notes.append(f"counted in optimizer updates: xlate.TorchPerUpdateLR(k={k})")
        setup.schedule = result
    if grad_scaler is not None:
        setup.optimizer = keras_loss_scale(grad_scaler, kopt, target.trainable_variables)
        setup.loop.append("GradScaler -> keras.optimizers.LossScaleOptimizer (same scale, growth interval, x2 / x0.5)")
    if setup.dtype_policy:
        setup.loop.append(f"build the Keras model with dtype policy {setup.dtype_policy!r} (torch.autocast "
                          f"{autocast_dtype}); parity is bounded, not exact (xlate.training.mixed_precision)")
    setup.loop.append("model.compile(optimizer=setup.optimizer, loss=setup.loss); model.fit(..., callbacks="
                      "setup.callbacks): clipping, EMA and accumulation happen inside the optimizer")
    if loop.ema is not None:
        setup.loop.append("the EMA weights are the optimizer's averages; fit() loads them into the model at the end "
                          "(finalize_variable_values)")
    _record(setup, kopt, setup.loss, setup.schedule)
    return setup


def _keras_to_torch(model, optimizer, loss, schedule, target, *, steps_per_epoch, total_steps, emulate, pairing):
    import torch

    from .composed_schedules import TorchPerUpdateLR
    from .ema import port_ema_to_torch
    from .losses import translate_loss
    from .mixed_precision import torch_grad_scaler
    from .optimizers import translate_optimizer
    from .pairing import pair_parameters
    from .schedules import translate_schedule

    inner = getattr(optimizer, "inner_optimizer", None) if type(optimizer).__name__ == "LossScaleOptimizer" else None
    loop_out: dict = {}
    topt = translate_optimizer(inner or optimizer, target, source_model=model, emulate=emulate, pairing=pairing,
                               loop_out=loop_out)
    setup = TrainingSetup("keras2torch", topt, steps_per_epoch=steps_per_epoch)
    setup.clip_grad_norm, setup.clip_grad_value = loop_out.get("clip_grad_norm"), loop_out.get("clip_grad_value")
    setup.grad_accum_steps = loop_out.get("grad_accum_steps")
    if inner is not None:
        setup.grad_scaler = torch_grad_scaler(optimizer)
        setup.loop.append("LossScaleOptimizer -> torch.amp.GradScaler: scaler.scale(loss).backward(); "
                          "scaler.unscale_(opt); clip; scaler.step(opt); scaler.update()")
    from .mixed_precision import keras_autocast

    setup.autocast_dtype = keras_autocast(model)
    if setup.autocast_dtype:
        setup.loop.append(f"run forward and loss under torch.autocast('cpu'|'cuda', dtype=torch.{setup.autocast_dtype}); "
                          "parity is bounded, not exact (xlate.training.mixed_precision)")
    if loop_out.get("ema_decay") is not None:
        setup.ema = torch.optim.swa_utils.AveragedModel(
            target, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(loop_out["ema_decay"]))
        port_ema_to_torch(inner or optimizer, setup.ema, target, pair_parameters(target, model, pairing))
    kschedule = loop_out.get("schedule")
    if isinstance(kschedule, TorchPerUpdateLR):
        kschedule = kschedule.schedule
    for source_schedule in (kschedule, schedule):
        if source_schedule is None:
            continue
        result = translate_schedule(source_schedule, topt, steps_per_epoch=steps_per_epoch, emulate=emulate,
                                    total_steps=total_steps)
        setup.schedule, setup.stepping = result, getattr(result, "xlate_stepping", None)
    if loss is not None:
        setup.loss = translate_loss(loss)
    setup.loop += _torch_loop_notes(setup)
    _record(setup, topt, setup.loss, setup.schedule)
    return setup


def _torch_loop_notes(setup) -> list[str]:
    notes = []
    if getattr(setup.optimizer, "gradient_accumulation_steps", None):
        notes.append("call zero_grad() before every backward and optimizer.step() after every batch, and do not divide "
                     "the loss by the accumulation steps: the optimizer accumulates the batches itself")
    if getattr(setup.optimizer, "use_ema", False):
        notes.append("optimizer.finalize_variable_values() loads the EMA weights at the end (what fit() does)")
    if setup.clip_grad_norm or setup.clip_grad_value:
        notes.append("clip before optimizer.step(): clip_grad_norm_(params, setup.clip_grad_norm) / "
                     "clip_grad_value_(params, setup.clip_grad_value)")
    if setup.ema is not None:
        notes.append("setup.ema.update_parameters(model) after every optimizer.step()")
    if setup.grad_accum_steps:
        notes.append(f"accumulate {setup.grad_accum_steps} batches: loss / {setup.grad_accum_steps}; step and "
                     "zero_grad every window")
    if setup.schedule is not None:
        notes.append(f"step setup.schedule once per {setup.stepping or 'epoch'}")
    return notes or ["a plain loop: zero_grad(); loss.backward(); optimizer.step()"]


def translate_training(model, optimizer, loss=None, schedule=None, *, target, clip_grad_norm=None,
                       clip_grad_value=None, ema=None, grad_accum_steps=None, steps_per_epoch=None, stepping=None,
                       total_steps=None, grad_scaler=None, autocast_dtype=None, loss_target="indices", emulate="auto",
                       pairing=None) -> TrainingSetup:
    """Translate a training setup to the other framework.

    ``model``: the source model (a torch module or a Keras model) and ``optimizer`` its optimizer;
    ``target``: the model in the other framework (a conversion of ``model``). ``loss``,
    ``schedule``: the source's loss and LR scheduler / Keras schedule or callback.
    torch sources only, what the torch loop does: ``clip_grad_norm`` / ``clip_grad_value``
    (before each step), ``ema`` (an AveragedModel or a decay), ``grad_accum_steps``,
    ``grad_scaler`` (torch.amp.GradScaler) and ``autocast_dtype`` ("bfloat16" / "float16").
    ``steps_per_epoch``: batches per epoch; ``total_steps``: the run's length in batches (lets
    a clamped native schedule stand in where exact); ``stepping``: how the torch scheduler is
    stepped ("epoch" / "batch"). Returns a ``TrainingSetup``; ``check_training_parity(...,
    setup=...)`` replays both loops.
    """
    loop = LoopSettings(clip_grad_norm, clip_grad_value, ema, grad_accum_steps)
    if framework_of(model) == framework_of(target):
        raise BadInputError("translate_training goes between a torch module and a Keras model")
    if framework_of(model) == "torch":
        return _torch_to_keras(model, optimizer, loss, schedule, target, loop, steps_per_epoch=steps_per_epoch,
                               stepping=stepping, total_steps=total_steps, grad_scaler=grad_scaler,
                               autocast_dtype=autocast_dtype, loss_target=loss_target, emulate=emulate,
                               pairing=pairing)
    if not loop.empty or grad_scaler is not None or autocast_dtype is not None:
        raise BadInputError("clip_grad_norm / clip_grad_value / ema / grad_accum_steps / grad_scaler / autocast_dtype "
                            "describe a torch loop: a Keras source carries them in its optimizer and dtype policy")
    return _keras_to_torch(model, optimizer, loss, schedule, target, steps_per_epoch=steps_per_epoch,
                           total_steps=total_steps, emulate=emulate, pairing=pairing)
