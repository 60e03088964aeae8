"""translate_schedule: LR schedulers and training callbacks, torch <-> Keras, driven by the
schedule and callback rows.

Stepping is explicit. A torch scheduler is stepped once per epoch (``stepping="epoch"``, the
default; OneCycleLR defaults to "batch") and needs ``steps_per_epoch`` to become a Keras
schedule, which is evaluated at every optimizer step. A Keras schedule becomes a torch scheduler
to step once per batch. The result's ``translation_of(...).stepping`` says which; torch
schedulers xlate returns also carry ``xlate_stepping``.

torch -> Keras returns a ``LearningRateSchedule`` (pass ``optimizer=`` to install it, and to
install OneCycleLR's momentum cycling) or a ``keras.callbacks.Callback``; Keras -> torch takes
the torch optimizer as second argument and returns a torch scheduler (or xlate's
``EarlyStopping`` / ``KerasReduceLROnPlateau``, stepped with the metric once per epoch).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable

from ..errors import BadInputError, XlateError
from ..table import Row, table
from . import composed_hooks
from .lookup import check_emulate, keras_class_name, row_named, torch_class_name
from .schedule_common import (
    Context,
    base_lr,
    done,
    install_lr,
    install_momentum,
    require_torch_optimizer,
    row_for,
    set_base_lr,
)

# --- torch -> Keras -------------------------------------------------------------------------


def _t2k_step_lr(s, row, ctx):
    import keras

    stepping, spe = ctx.spe("epoch", "StepLR")
    result = keras.optimizers.schedules.ExponentialDecay(base_lr(s), decay_steps=s.step_size * spe,
                                                         decay_rate=s.gamma, staircase=True)
    install_lr(result, ctx.optimizer)
    return done(result, row, "torch2keras", torch_class_name(s), False, stepping)


def _t2k_exponential_lr(s, row, ctx):
    import keras

    stepping, spe = ctx.spe("epoch", "ExponentialLR")
    result = keras.optimizers.schedules.ExponentialDecay(base_lr(s), decay_steps=spe, decay_rate=s.gamma,
                                                         staircase=True)
    install_lr(result, ctx.optimizer)
    return done(result, row, "torch2keras", torch_class_name(s), False, stepping)


def _t2k_multi_step_lr(s, row, ctx):
    import keras

    stepping, spe = ctx.spe("epoch", "MultiStepLR")
    base = base_lr(s)
    counts = sorted(Counter(s.milestones).items())
    boundaries, values, decays = [], [base], 0
    for milestone, count in counts:
        decays += count
        boundaries.append(milestone * spe - 1)
        values.append(base * s.gamma**decays)
    result = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    install_lr(result, ctx.optimizer)
    return done(result, row, "torch2keras", torch_class_name(s), False, stepping,
                ["boundaries = milestone * steps_per_epoch - 1: Keras's bound is inclusive"])


def _t2k_cosine(s, row, ctx):
    from .keras_schedules import TorchCosineAnnealingLR

    stepping, spe = ctx.spe("epoch", "CosineAnnealingLR")
    result = TorchCosineAnnealingLR(base_lr(s), s.T_max, s.eta_min, spe)
    install_lr(result, ctx.optimizer)
    return done(result, row, "torch2keras", torch_class_name(s), True, stepping,
                [("exact emulation xlate.TorchCosineAnnealingLR: Keras's CosineDecay clamps at decay_steps and "
                   "interpolates inside epochs")])


def _t2k_one_cycle(s, row, ctx):
    from .keras_schedules import TorchOneCycleLR

    stepping, spe = ctx.spe("batch", "OneCycleLR")
    groups = s.optimizer.param_groups
    if len({g["max_lr"] for g in groups}) > 1:
        raise BadInputError("OneCycleLR with a different max_lr per param group: translate each group separately")
    phases = s._schedule_phases
    three_phase = len(phases) == 3
    pct_start = (phases[0]["end_step"] + 1) / s.total_steps
    common = {"max_lr": groups[0]["max_lr"], "total_steps": s.total_steps, "pct_start": pct_start,
              "anneal_strategy": "cos" if s._anneal_func_type == "cos" else "linear",
              "div_factor": groups[0]["max_lr"] / groups[0]["initial_lr"],
              "final_div_factor": groups[0]["initial_lr"] / groups[0]["min_lr"], "three_phase": three_phase,
              "steps_per_epoch": spe}
    result = TorchOneCycleLR(**common)
    notes = ["exact emulation xlate.TorchOneCycleLR (Keras has no 1cycle schedule)"]
    if s.cycle_momentum:
        install_momentum(ctx, TorchOneCycleLR(**common, quantity="momentum", base_momentum=groups[0]["base_momentum"],
                                              max_momentum=groups[0]["max_momentum"]), "OneCycleLR")
        notes.append("momentum cycled: the optimizer's beta_1/momentum is xlate.TorchOneCycleLR(quantity='momentum')")
    else:
        notes.append("cycle_momentum=False: momentum stays constant on both sides")
    install_lr(result, ctx.optimizer)
    return done(result, row, "torch2keras", torch_class_name(s), True, stepping, notes)


def _t2k_plateau(s, row, ctx):
    import keras

    from .keras_schedules import TorchReduceLROnPlateau

    min_lrs = list(getattr(s, "min_lrs", [0.0]))
    native_reason = None
    resume = {"best": s.best, "num_bad_epochs": s.num_bad_epochs, "cooldown_counter": s.cooldown_counter} \
        if s.last_epoch > 0 else None
    if resume:
        native_reason = (f"the scheduler is {s.last_epoch} epoch(s) in: Keras's ReduceLROnPlateau resets its state "
                         "when fit() begins, xlate's carries it")
    elif s.threshold_mode == "rel" and s.threshold != 0:
        native_reason = "torch's relative threshold (a < best*(1-threshold)) has no Keras counterpart"
    elif s.cooldown:
        native_reason = "Keras counts the last cooldown epoch as a bad epoch, torch does not"
    elif len(set(min_lrs)) > 1:
        native_reason = "a different min_lr per param group"
    if ctx.emulate == "never" and native_reason:
        raise XlateError(f"keras.callbacks.ReduceLROnPlateau cannot reproduce this scheduler: {native_reason}")
    if native_reason is None and ctx.emulate != "always":
        result = keras.callbacks.ReduceLROnPlateau(monitor=ctx.monitor, factor=s.factor, patience=s.patience + 1,
                                                   mode=s.mode, min_delta=s.threshold, cooldown=0,
                                                   min_lr=min_lrs[0])
        return done(result, row, "torch2keras", torch_class_name(s), False, "epoch",
                    [f"patience {s.patience} -> {s.patience + 1} (torch: bad epochs > patience; Keras: >=)",
                      f"torch skips reductions smaller than eps={s.eps}: the lrs differ only within eps of min_lr"])
    result = TorchReduceLROnPlateau(monitor=ctx.monitor, mode=s.mode, factor=s.factor, patience=s.patience,
                                    threshold=s.threshold, threshold_mode=s.threshold_mode, cooldown=s.cooldown,
                                    min_lr=min_lrs if len(set(min_lrs)) > 1 else min_lrs[0], eps=s.eps,
                                    resume_state=resume)
    return done(result, row, "torch2keras", torch_class_name(s), True, "epoch",
                [f"exact emulation xlate.TorchReduceLROnPlateau: {native_reason or 'forced by emulate'}"])


def _t2k_early_stopping(s, row, ctx):
    import keras

    from .keras_schedules import ResumedEarlyStopping

    kwargs = {a.keras: getattr(s, a.torch) for a in row.args if a.torch not in (None, "-")}
    if s.epoch < 0:
        result = keras.callbacks.EarlyStopping(**kwargs)
        return done(result, row, "torch2keras", "xlate.EarlyStopping", False, "epoch")
    result = ResumedEarlyStopping(resume_state={"wait": s.wait, "best": s.best, "best_epoch": s.best_epoch},
                                  **kwargs)
    notes = [(f"{s.epoch + 1} epoch(s) in: xlate.ResumedEarlyStopping carries wait/best (Keras's resets when fit() "
              f"begins); pass fit(initial_epoch={s.epoch + 1})")]
    if s.restore_best_weights and s.best_weights is not None:
        notes.append("the best torch weights stay behind: the Keras side restores the best weights it sees itself")
    return done(result, row, "torch2keras", "xlate.EarlyStopping", True, "epoch", notes)


# --- Keras -> torch -------------------------------------------------------------------------


def _k2t_schedule(s, row, ctx):
    import torch

    from .torch_schedules import KerasScheduleLR

    opt = require_torch_optimizer(ctx, type(s).__name__)
    name = type(s).__name__
    c = s.get_config()
    lr_sched = torch.optim.lr_scheduler
    if name == "ExponentialDecay" and c["staircase"]:
        set_base_lr(opt, c["initial_learning_rate"])
        result = lr_sched.StepLR(opt, step_size=int(c["decay_steps"]), gamma=c["decay_rate"])
        return done(result, row, "keras2torch", keras_class_name(s), False, "batch")
    if name == "ExponentialDecay":
        set_base_lr(opt, c["initial_learning_rate"])
        result = lr_sched.ExponentialLR(opt, gamma=c["decay_rate"] ** (1.0 / c["decay_steps"]))
        return done(result, table().row("exponential_lr"), "keras2torch", keras_class_name(s), False, "batch",
                    ["staircase=False decays every step: ExponentialLR(gamma=decay_rate**(1/decay_steps)) per batch"])
    if name == "PiecewiseConstantDecay":
        values = [float(v) for v in c["values"]]
        ratios = {round(b / a, 12) for a, b in itertools.pairwise(values)} if all(values) else set()
        if len(ratios) == 1:
            set_base_lr(opt, values[0])
            result = lr_sched.MultiStepLR(opt, milestones=[int(b) + 1 for b in c["boundaries"]], gamma=ratios.pop())
            return done(result, row, "keras2torch", keras_class_name(s), False, "batch",
                        ["milestones = boundary + 1 (Keras's bound is inclusive), stepped per batch"])
    if name == "TorchCosineAnnealingLR":
        set_base_lr(opt, s.base_lr)
        result = lr_sched.CosineAnnealingLR(opt, T_max=s.T_max, eta_min=s.eta_min)
        stepping = "batch" if s.steps_per_epoch == 1 else "epoch"
        return done(result, row, "keras2torch", "xlate.TorchCosineAnnealingLR", False, stepping,
                    [] if stepping == "batch" else [f"step it once per epoch ({s.steps_per_epoch} batches)"])
    if name == "TorchOneCycleLR":
        if s.quantity != "lr":
            raise BadInputError("a TorchOneCycleLR(quantity='momentum') is part of an optimizer, not a schedule")
        set_base_lr(opt, s.max_lr / s.div_factor)
        result = lr_sched.OneCycleLR(opt, max_lr=s.max_lr, total_steps=s.total_steps, pct_start=s.pct_start,
                                     anneal_strategy=s.anneal_strategy, div_factor=s.div_factor,
                                     final_div_factor=s.final_div_factor, three_phase=s.three_phase,
                                     cycle_momentum=False)
        return done(result, row, "keras2torch", "xlate.TorchOneCycleLR", False,
                    "batch" if s.steps_per_epoch == 1 else "epoch",
                    ["cycle_momentum=False: the Keras optimizer's beta_1/momentum schedule ports with the optimizer"])
    result = KerasScheduleLR(opt, s)
    return done(result, row, "keras2torch", keras_class_name(s), True, "batch",
                [f"exact emulation xlate.KerasScheduleLR: Keras's {name} formula, stepped once per batch"])


def _k2t_lambda(cb, row, ctx):
    import torch

    from .torch_schedules import KerasLearningRateScheduler

    opt = require_torch_optimizer(ctx, type(cb).__name__)
    if type(cb).__name__ == "TorchLambdaLR":
        set_base_lr(opt, cb.base_lr)
        result = torch.optim.lr_scheduler.LambdaLR(opt, cb.lr_lambda)
        return done(result, row, "keras2torch", "xlate.TorchLambdaLR", False,
                    "batch" if cb.steps_per_epoch == 1 else "epoch")
    result = KerasLearningRateScheduler(opt, cb.schedule)
    return done(result, row, "keras2torch", keras_class_name(cb), True, "epoch",
                ["exact emulation xlate.KerasLearningRateScheduler: lr = fn(epoch, lr) once per epoch"])


def _keras_mode(mode: str, monitor: str) -> str:
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith(("_loss", "error")):
        return "min"
    if any(k in name for k in ("acc", "auc", "precision", "recall")):
        return "max"
    raise BadInputError(f"mode='auto' on {monitor!r}: Keras reads the direction from the compiled metric; "
                        "pass mode='min' or 'max' to the callback")


def _k2t_plateau(cb, row, ctx):
    import torch

    from .torch_schedules import KerasReduceLROnPlateau

    opt = require_torch_optimizer(ctx, "ReduceLROnPlateau")
    if type(cb).__name__ == "TorchReduceLROnPlateau":
        result = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=cb.mode, factor=cb.factor, patience=cb.patience, threshold=cb.threshold,
            threshold_mode=cb.threshold_mode, cooldown=cb.cooldown, min_lr=cb.min_lr, eps=cb.eps)
        return done(result, row, "keras2torch", "xlate.TorchReduceLROnPlateau", False, "epoch")
    mode = _keras_mode(cb.mode, cb.monitor)
    if cb.cooldown == 0 and ctx.emulate != "always":
        result = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=mode, factor=cb.factor, patience=max(cb.patience - 1, 0), threshold=abs(cb.min_delta),
            threshold_mode="abs", cooldown=0, min_lr=cb.min_lr, eps=0.0)
        if cb.best is not None:  # mid-training: carry the bookkeeping
            result.best, result.num_bad_epochs = float(cb.best), int(cb.wait)
        return done(result, row, "keras2torch", keras_class_name(cb), False, "epoch",
                    [(f"patience {cb.patience} -> {max(cb.patience - 1, 0)}, threshold_mode='abs', eps=0 "
                       f"(Keras reduces whenever lr > min_lr); step it with logs[{cb.monitor!r}]")])
    if ctx.emulate == "never":
        raise XlateError("torch's ReduceLROnPlateau cannot reproduce Keras's cooldown bookkeeping")
    result = KerasReduceLROnPlateau(opt, mode=mode, factor=cb.factor, patience=cb.patience,
                                    min_delta=cb.min_delta, cooldown=cb.cooldown, min_lr=cb.min_lr)
    if cb.best is not None:  # mid-training: carry the bookkeeping
        result.best, result.wait, result.cooldown_counter = float(cb.best), int(cb.wait), int(cb.cooldown_counter)
    return done(result, row, "keras2torch", keras_class_name(cb), True, "epoch",
                ["exact emulation xlate.KerasReduceLROnPlateau: Keras counts the last cooldown epoch as bad"])


def _k2t_early_stopping(cb, row, ctx):
    from .torch_schedules import EarlyStopping

    kwargs = {a.torch: getattr(cb, a.keras) for a in row.args if a.keras not in (None, "-")}
    kwargs["mode"] = _keras_mode(cb.mode, cb.monitor)
    kwargs["min_delta"] = abs(cb.min_delta)
    result = EarlyStopping(**kwargs)
    if getattr(cb, "best", None) is not None:  # mid-training: carry the bookkeeping
        result.best, result.wait, result.best_epoch = float(cb.best), int(cb.wait), int(cb.best_epoch)
        result.epoch = result.best_epoch + result.wait
    return done(result, row, "keras2torch", keras_class_name(cb), False, "epoch",
                ["call step(metric, model) once per epoch; it returns True when training should stop"])


_T2K: dict[str, Callable] = {
    "step_lr": _t2k_step_lr, "exponential_lr": _t2k_exponential_lr, "multi_step_lr": _t2k_multi_step_lr,
    "cosine_annealing_lr": _t2k_cosine, "one_cycle_lr": _t2k_one_cycle,
    "reduce_lr_on_plateau": _t2k_plateau, "early_stopping": _t2k_early_stopping, **composed_hooks.T2K,
}
_K2T: dict[str, Callable] = {
    "step_lr": _k2t_schedule, "exponential_lr": _k2t_schedule, "multi_step_lr": _k2t_schedule,
    "cosine_annealing_lr": _k2t_schedule, "one_cycle_lr": _k2t_schedule, "keras_schedule": _k2t_schedule,
    "lambda_lr": _k2t_lambda, "reduce_lr_on_plateau": _k2t_plateau, "early_stopping": _k2t_early_stopping,
    **composed_hooks.K2T,
}


def translate_schedule(schedule_or_callback, *args, steps_per_epoch=None, stepping=None, optimizer=None,
                       monitor="val_loss", emulate="auto", total_steps=None):
    """Translate an LR scheduler, Keras schedule or training callback to the other framework.

    torch -> Keras: ``translate_schedule(scheduler, steps_per_epoch=N)`` (``stepping="batch"``
    when the scheduler is stepped after every optimizer step; OneCycleLR's default). Pass
    ``optimizer=<Keras optimizer>`` to install the schedule (and OneCycleLR's momentum).
    ``monitor``: the Keras log key a ReduceLROnPlateau callback watches.
    Keras -> torch: ``translate_schedule(keras_schedule_or_callback, torch_optimizer)``.
    ``emulate``: "auto" (native where exact), "always" or "never". ``total_steps``: the run's
    length in optimizer steps, where known: lets a clamped native schedule (CosineDecay with
    warm-up) stand in where it is exact for the whole run, and samples a plain LambdaLR function.
    """
    check_emulate(emulate)
    import sys

    from .torch_schedules import EarlyStopping

    obj = schedule_or_callback
    torch = sys.modules.get("torch")
    is_torch = isinstance(obj, EarlyStopping) or (
        torch is not None and isinstance(obj, (torch.optim.lr_scheduler.LRScheduler,
                                               torch.optim.lr_scheduler.ReduceLROnPlateau)))
    if is_torch:
        if args:
            optimizer = optimizer or args[0]
        ctx = Context(steps_per_epoch, stepping, optimizer, monitor, emulate, total_steps, _T2K, _K2T)
        back = _emulation_back_to_keras(obj, ctx)
        if back is not None:
            return back
        name = "xlate.EarlyStopping" if isinstance(obj, EarlyStopping) else torch_class_name(obj)
        row = row_for(name, table().by_torch)
        if "torch2keras" not in row.directions:
            raise BadInputError(f"{name} translates only Keras -> torch")
        return _T2K[row.hook](obj, row, ctx)
    ctx = Context(steps_per_epoch, stepping, args[0] if args else optimizer, monitor, emulate, total_steps, _T2K, _K2T)
    row = row_for(keras_class_name(obj), table().by_keras)
    return _K2T[row.hook](obj, row, ctx)


def _emulation_back_to_keras(obj, ctx):
    """xlate's torch-side emulations of Keras objects become those Keras objects again."""
    import keras

    from .torch_schedules import KerasLearningRateScheduler, KerasReduceLROnPlateau, KerasScheduleLR

    if isinstance(obj, KerasScheduleLR):
        schedule = getattr(obj.schedule_fn, "keras_schedule", None)
        if schedule is None:
            raise BadInputError("this KerasScheduleLR wraps a plain function, not a Keras schedule")
        row = _row_by_keras_schedule(schedule)
        install_lr(schedule, ctx.optimizer)
        return done(schedule, row, "torch2keras", "xlate.KerasScheduleLR", False, "batch")
    if isinstance(obj, KerasLearningRateScheduler):
        result = keras.callbacks.LearningRateScheduler(obj.schedule)
        return done(result, table().row("lambda_lr"), "torch2keras", "xlate.KerasLearningRateScheduler", False,
                    "epoch")
    if isinstance(obj, KerasReduceLROnPlateau):
        result = keras.callbacks.ReduceLROnPlateau(monitor=ctx.monitor, factor=obj.factor, patience=obj.patience,
                                                   mode=obj.mode, min_delta=obj.min_delta, cooldown=obj.cooldown,
                                                   min_lr=obj.min_lr)
        return done(result, table().row("reduce_lr_on_plateau"), "torch2keras", "xlate.KerasReduceLROnPlateau",
                    False, "epoch")
    return None


def _row_by_keras_schedule(obj) -> Row:
    """Keras schedules whose row names them in a descriptive keras field (PolynomialDecay...)."""
    return row_named(keras_class_name(obj), table().by_keras, None, "schedule or callback",
                     "`xlate table --family schedule` lists what xlate translates")
