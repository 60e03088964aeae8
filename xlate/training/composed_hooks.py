"""translate_schedule hooks for the composed and modern rows: LinearLR, ConstantLR, PolynomialLR,
CosineAnnealingWarmRestarts, CyclicLR, SequentialLR, ChainedScheduler, LambdaLR (transformers'
warm-up closures recognised, other functions sampled or run per batch), both ways.

The native Keras schedule is used where it computes torch's numbers: per-batch stepping (Keras
interpolates inside epochs), and for schedules Keras clamps at the end (CosineDecay with warm-up)
only where the run's length (``total_steps``) is known to stay inside. Everywhere else the
result is xlate's exact Keras schedule (``composed_schedules``, ``transformers_schedules``).
Keras -> torch gives torch's own schedulers back (SequentialLR of the children, ...).
"""

from __future__ import annotations

import math
from collections import Counter

from ..errors import BadInputError
from ..table import table
from .lookup import keras_class_name, torch_class_name
from .record import translation_of
from .schedule_common import (
    base_lr,
    done,
    install_lr,
    install_momentum,
    require_torch_optimizer,
    row_for,
    set_base_lr,
)

# children whose torch chainable form multiplies the lr by a factor of the epoch alone
_MULTIPLICATIVE = {"LinearLR", "ConstantLR", "ExponentialLR", "StepLR", "MultiStepLR", "PolynomialLR"}


def _schedules():
    import keras

    return keras.optimizers.schedules


def _finish(result, row, ctx, s, emulated, stepping, notes=(), rows_used=None):
    install_lr(result, ctx.optimizer)
    result = done(result, row, "torch2keras", torch_class_name(s), emulated, stepping, notes)
    if rows_used:
        translation_of(result).rows_used.update(rows_used)
    return result


def _native_ok(ctx) -> bool:
    return ctx.emulate != "always"


# --- torch -> Keras -------------------------------------------------------------------------


def t2k_linear(s, row, ctx):
    from .composed_schedules import TorchLinearLR

    stepping, spe = ctx.spe("epoch", "LinearLR")
    base = base_lr(s)
    if stepping == "batch" and _native_ok(ctx):
        result = _schedules().PolynomialDecay(base * s.start_factor, decay_steps=s.total_iters,
                                              end_learning_rate=base * s.end_factor, power=1.0)
        return _finish(result, row, ctx, s, False, stepping, [("per batch: PolynomialDecay(power=1) from start*base to "
                                                             "end*base over total_iters steps")])
    result = TorchLinearLR(base, s.start_factor, s.end_factor, s.total_iters, spe)
    return _finish(result, row, ctx, s, True, stepping, [("exact emulation xlate.TorchLinearLR: per epoch (PolynomialDecay "
                                                        "would interpolate inside the epoch)")])


def t2k_constant(s, row, ctx):
    stepping, spe = ctx.spe("epoch", "ConstantLR")
    if s.total_iters < 1:
        raise BadInputError("ConstantLR(total_iters=0): torch's recursive and closed forms disagree; nothing to match")
    base = base_lr(s)
    result = _schedules().PiecewiseConstantDecay([s.total_iters * spe - 1], [base * s.factor, base])
    return _finish(result, row, ctx, s, False, stepping, [("PiecewiseConstantDecay([total_iters*spe - 1], "
                                                         "[factor*base, base]): Keras's bound is inclusive")])


def t2k_polynomial(s, row, ctx):
    from .composed_schedules import TorchPolynomialLR

    stepping, spe = ctx.spe("epoch", "PolynomialLR")
    base = base_lr(s)
    if stepping == "batch" and _native_ok(ctx):
        result = _schedules().PolynomialDecay(base, decay_steps=s.total_iters, end_learning_rate=0.0, power=s.power)
        return _finish(result, row, ctx, s, False, stepping, ["end_learning_rate=0 (Keras's default is 1e-4)"])
    return _finish(TorchPolynomialLR(base, s.total_iters, s.power, spe), row, ctx, s, True, stepping,
                   ["exact emulation xlate.TorchPolynomialLR: per epoch"])


def t2k_warm_restarts(s, row, ctx):
    from .composed_schedules import TorchCosineAnnealingWarmRestarts

    stepping, spe = ctx.spe("epoch", "CosineAnnealingWarmRestarts")
    base = base_lr(s)
    if stepping == "batch" and s.T_mult == 1 and base > 0 and _native_ok(ctx):
        result = _schedules().CosineDecayRestarts(base, first_decay_steps=s.T_0, t_mul=1.0, m_mul=1.0,
                                                  alpha=s.eta_min / base)
        return _finish(result, row, ctx, s, False, stepping, ["t_mul=1.0 (Keras's default is 2.0), alpha = eta_min/base"])
    result = TorchCosineAnnealingWarmRestarts(base, s.T_0, s.T_mult, s.eta_min, spe)
    return _finish(result, row, ctx, s, True, stepping,
                   ["exact emulation xlate.TorchCosineAnnealingWarmRestarts: torch's integer restarts" +
                    (" per epoch" if stepping == "epoch" else " (Keras finds restarts with a float log)")])


def t2k_cyclic(s, row, ctx):
    from .composed_schedules import TorchCyclicLR

    stepping, spe = ctx.spe("batch", "CyclicLR")
    if s._scale_fn_custom is not None:
        raise BadInputError("CyclicLR with a custom scale_fn: a Python function has no Keras schedule",
                            hint="use mode='triangular' / 'triangular2' / 'exp_range'")
    if len(set(s.base_lrs)) > 1 or len(set(s.max_lrs)) > 1:
        raise BadInputError("CyclicLR with per-group base_lr / max_lr: translate each group separately")
    common = {"base_lr": s.base_lrs[0], "max_lr": s.max_lrs[0], "step_size_up": s.total_size * s.step_ratio,
              "step_size_down": s.total_size * (1 - s.step_ratio), "mode": s.mode, "gamma": s.gamma,
              "steps_per_epoch": spe}
    notes = ["exact emulation xlate.TorchCyclicLR (Keras has no cyclical schedule)"]
    if s.cycle_momentum:
        install_momentum(ctx, TorchCyclicLR(**common, quantity="momentum", base_momentum=s.base_momentums[0],
                                            max_momentum=s.max_momentums[0]), "CyclicLR")
        notes.append("momentum cycled inversely: the optimizer's momentum/beta_1 is xlate.TorchCyclicLR(quantity="
                     "'momentum')")
    return _finish(TorchCyclicLR(**common), row, ctx, s, True, stepping, notes)


def _child(child, ctx) -> tuple[object, Counter]:
    """A composed scheduler's child as a Keras schedule, and the rows it used."""
    import keras

    name = torch_class_name(child)
    row = row_for(name, table().by_torch)
    result = ctx.t2k[row.hook](child, row, ctx.child())
    if not isinstance(result, keras.optimizers.schedules.LearningRateSchedule):
        raise BadInputError(f"{name} inside a composed scheduler became a {type(result).__name__}: only schedules "
                            "compose", hint="pass total_steps= so a LambdaLR is sampled into a schedule")
    return result, translation_of(result).rows_used


def _warmup_cosine(s, ctx, stepping):
    """SequentialLR([LinearLR(s, 1.0, W), CosineAnnealingLR(T_max)], [W]) per batch, within W + T_max
    steps: Keras's CosineDecay with warm-up (it clamps after; torch's cosine would rise again)."""
    kids, milestones = s._schedulers, s._milestones
    if stepping != "batch" or len(kids) != 2 or not _native_ok(ctx) or ctx.total_steps is None:
        return None
    warm, cos = kids
    if type(warm).__name__ != "LinearLR" or type(cos).__name__ != "CosineAnnealingLR":
        return None
    if warm.end_factor != 1.0 or warm.total_iters != milestones[0] or ctx.total_steps > milestones[0] + cos.T_max:
        return None
    base = base_lr(warm)
    return _schedules().CosineDecay(base * warm.start_factor, decay_steps=cos.T_max, alpha=cos.eta_min / base,
                                    warmup_target=base, warmup_steps=milestones[0])


def t2k_sequential(s, row, ctx):
    from .composed_schedules import TorchSequentialLR

    stepping, spe = ctx.spe("epoch", "SequentialLR")
    native = _warmup_cosine(s, ctx, stepping)
    if native is not None:
        return _finish(native, row, ctx, s, False, stepping,
                       [(f"linear warm-up then cosine: native CosineDecay(warmup_steps={s._milestones[0]}), exact for "
                        f"the {ctx.total_steps} steps of the run (Keras clamps after warm-up + T_max)")])
    children = [_child(k, ctx) for k in s._schedulers]
    result = TorchSequentialLR([c for c, _ in children], s._milestones, spe)
    used = sum((u for _, u in children), Counter())
    return _finish(result, row, ctx, s, True, stepping,
                   [f"exact emulation xlate.TorchSequentialLR over {len(children)} translated schedules"], used)


def t2k_chained(s, row, ctx):
    from .composed_schedules import TorchChainedScheduler

    bad = [type(k).__name__ for k in s._schedulers if type(k).__name__ not in _MULTIPLICATIVE]
    if bad:
        raise BadInputError(f"ChainedScheduler over {', '.join(bad)}: only factor-of-the-epoch schedulers "
                            f"({', '.join(sorted(_MULTIPLICATIVE))}) chain into a product", hint="use SequentialLR")
    stepping, _ = ctx.spe("epoch", "ChainedScheduler")
    children = [_child(k, ctx) for k in s._schedulers]
    result = TorchChainedScheduler([c for c, _ in children], base_lr(s._schedulers[0]))
    used = sum((u for _, u in children), Counter())
    return _finish(result, row, ctx, s, True, stepping, [("exact emulation xlate.TorchChainedScheduler: base * prod("
                                                        "child/base)")], used)


def _transformers(s, fn, ctx, kind, keywords):
    from .transformers_schedules import from_closure

    stepping, spe = ctx.spe("batch", "a transformers schedule")
    base = base_lr(s)
    row = table().row("transformers_warmup")
    w, t = keywords.get("num_warmup_steps", 0), keywords.get("num_training_steps", 0)
    horizon_ok = ctx.total_steps is not None and ctx.total_steps <= t
    if kind == "cosine" and keywords.get("num_cycles", 0.5) == 0.5 and stepping == "batch" and horizon_ok \
            and _native_ok(ctx) and t > w:
        alpha = float(keywords.get("min_lr_rate", 0.0))
        result = _schedules().CosineDecay(0.0, decay_steps=t - w, alpha=alpha, warmup_target=base, warmup_steps=w) \
            if w else _schedules().CosineDecay(base, decay_steps=t, alpha=alpha)
        return _finish(result, row, ctx, s, False, stepping,
                       [(f"transformers' cosine warm-up: native CosineDecay, exact for the {ctx.total_steps} steps of "
                        f"the run (<= num_training_steps={t})")])
    if kind == "polynomial" and keywords.get("lr_init") != base:
        raise BadInputError("get_polynomial_decay_schedule_with_warmup with a group lr other than the optimizer's "
                            "default: transformers divides by optimizer.defaults['lr']")
    result = from_closure(kind, keywords, base, spe)
    return _finish(result, row, ctx, s, True, stepping, [(f"exact emulation xlate.TransformersSchedule({kind!r}): "
                                                        "transformers' closure in keras.ops")])


def t2k_lambda(s, row, ctx):
    import keras

    from .keras_schedules import TorchLambdaLR
    from .transformers_schedules import recognise

    if len({id(f) for f in s.lr_lambdas}) > 1:
        raise BadInputError("LambdaLR with one lambda per param group: Keras has one learning rate per optimizer")
    fn, base = s.lr_lambdas[0], base_lr(s)
    if not callable(fn) or hasattr(fn, "state_dict"):
        raise BadInputError("LambdaLR's lr_lambda must be a plain Python function of the epoch")
    known = recognise(fn)
    if known is not None:
        return _transformers(s, fn, ctx, *known)
    stepping, spe = ctx.spe("epoch", "LambdaLR")
    if ctx.total_steps is not None:
        from .composed_schedules import TorchSampledLR

        n = -(-int(ctx.total_steps) // spe)
        result = TorchSampledLR([base * float(fn(e)) for e in range(n)], spe)
        return _finish(result, table().row("lambda_lr_sampled"), ctx, s, True, stepping,
                       [(f"exact emulation xlate.TorchSampledLR: lr_lambda sampled at {n} {stepping}(s) "
                        "(the run's length); the last value holds after")])
    if stepping == "epoch":
        result = keras.callbacks.LearningRateScheduler(lambda epoch, lr: base * float(fn(epoch)))
        return done(result, row, "torch2keras", torch_class_name(s), False, stepping,
                    ["Keras's LearningRateScheduler sets base_lr * f(epoch) at each epoch begin"])
    result = TorchLambdaLR(fn, base, spe)
    return done(result, row, "torch2keras", torch_class_name(s), True, stepping,
                ["exact emulation xlate.TorchLambdaLR: sets base_lr * f(step) before every batch"])


T2K = {"linear_lr": t2k_linear, "constant_lr": t2k_constant, "polynomial_lr": t2k_polynomial,
       "cosine_warm_restarts": t2k_warm_restarts, "cyclic_lr": t2k_cyclic, "sequential_lr": t2k_sequential,
       "chained_scheduler": t2k_chained, "lambda_lr": t2k_lambda}


# --- Keras -> torch -------------------------------------------------------------------------


def _per(spe) -> str:
    return "batch" if int(spe) == 1 else "epoch"


def _back(result, row, s, stepping, notes=()):
    return done(result, row, "keras2torch", keras_class_name(s), False, stepping, notes)


def k2t_linear(s, row, ctx):
    import torch

    opt = require_torch_optimizer(ctx, "TorchLinearLR")
    set_base_lr(opt, s.base_lr)
    result = torch.optim.lr_scheduler.LinearLR(opt, start_factor=s.start_factor, end_factor=s.end_factor,
                                               total_iters=s.total_iters)
    return _back(result, row, s, _per(s.steps_per_epoch))


def k2t_polynomial(s, row, ctx):
    import torch

    opt = require_torch_optimizer(ctx, type(s).__name__)
    lr_sched = torch.optim.lr_scheduler
    if type(s).__name__ == "TorchPolynomialLR":
        set_base_lr(opt, s.base_lr)
        return _back(lr_sched.PolynomialLR(opt, total_iters=s.total_iters, power=s.power), row, s, _per(s.steps_per_epoch))
    c = s.get_config()
    init, end, steps = float(c["initial_learning_rate"]), float(c["end_learning_rate"]), int(c["decay_steps"])
    if not c["cycle"] and _native_ok(ctx) and init > 0:
        if end == 0:
            set_base_lr(opt, init)
            return _back(lr_sched.PolynomialLR(opt, total_iters=steps, power=c["power"]), row, s, "batch")
        if c["power"] == 1.0 and 0 <= end / init <= 1:
            set_base_lr(opt, init)
            return _back(lr_sched.LinearLR(opt, start_factor=1.0, end_factor=end / init, total_iters=steps), row, s,
                         "batch", ["power=1: LinearLR(1.0 -> end/initial over decay_steps), stepped per batch"])
    return ctx.k2t["keras_schedule"](s, row, ctx)


def k2t_warm_restarts(s, row, ctx):
    import torch

    opt = require_torch_optimizer(ctx, type(s).__name__)
    cawr = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts
    if type(s).__name__ == "TorchCosineAnnealingWarmRestarts":
        set_base_lr(opt, s.base_lr)
        return _back(cawr(opt, T_0=s.T_0, T_mult=s.T_mult, eta_min=s.eta_min), row, s, _per(s.steps_per_epoch))
    c = s.get_config()
    if c["m_mul"] == 1.0 and c["t_mul"] == 1.0 and c["initial_learning_rate"] > 0 and _native_ok(ctx):
        set_base_lr(opt, c["initial_learning_rate"])
        result = cawr(opt, T_0=int(c["first_decay_steps"]), T_mult=1, eta_min=c["alpha"] * c["initial_learning_rate"])
        return _back(result, row, s, "batch", ["t_mul=1, m_mul=1: CosineAnnealingWarmRestarts stepped per batch"])
    return ctx.k2t["keras_schedule"](s, row, ctx)


def k2t_cyclic(s, row, ctx):
    import torch

    opt = require_torch_optimizer(ctx, "TorchCyclicLR")
    if s.quantity != "lr":
        raise BadInputError("a TorchCyclicLR(quantity='momentum') is part of an optimizer, not a schedule")
    result = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=s.base_lr, max_lr=s.max_lr,
                                               step_size_up=round(s.step_size_up),
                                               step_size_down=round(s.step_size_down), mode=s.mode,
                                               gamma=s.gamma, cycle_momentum=False)
    return _back(result, row, s, _per(s.steps_per_epoch),
                 ["cycle_momentum=False: a cycled momentum ports with the optimizer"])


def _children_back(s, ctx):
    out = []
    for child in s.schedules:
        row = row_for(keras_class_name(child), table().by_keras)
        out.append(ctx.k2t[row.hook](child, row, ctx))
    return out


def k2t_sequential(s, row, ctx):
    import torch

    opt = require_torch_optimizer(ctx, "TorchSequentialLR")
    kids = _children_back(s, ctx)
    if any(getattr(k, "xlate_stepping", None) != _per(s.steps_per_epoch) for k in kids):
        # a child only torch's per-batch stepping reproduces, under a per-epoch composition: the whole
        # composition per batch instead (the children's constructors only set the lr again)
        return ctx.k2t["keras_schedule"](s, row, ctx)
    result = torch.optim.lr_scheduler.SequentialLR(opt, kids, milestones=list(s.milestones))
    return _back(result, row, s, _per(s.steps_per_epoch))


def k2t_chained(s, row, ctx):
    import torch

    opt = require_torch_optimizer(ctx, "TorchChainedScheduler")
    kids = _children_back(s, ctx)
    # each child started from the base lr (its translation sets it): the chain starts at the product
    for i, group in enumerate(opt.param_groups):
        group["lr"] = s.base_lr * math.prod(float(k.get_last_lr()[i]) / s.base_lr for k in kids)
    steppings = {getattr(k, "xlate_stepping", None) for k in kids}
    return _back(torch.optim.lr_scheduler.ChainedScheduler(kids, optimizer=opt), row, s, steppings.pop()
                 if len(steppings) == 1 else "epoch")


def k2t_transformers(s, row, ctx):
    from .transformers_schedules import to_torch

    opt = require_torch_optimizer(ctx, "TransformersSchedule")
    return _back(to_torch(s, opt), row, s, _per(s.steps_per_epoch), ["transformers' own scheduler (a LambdaLR)"])


def k2t_sampled(s, row, ctx):
    return ctx.k2t["keras_schedule"](s, row, ctx)


def k2t_cosine(s, row, ctx):
    """Keras CosineDecay: native torch (CosineAnnealingLR, or SequentialLR of LinearLR warm-up and
    CosineAnnealingLR) per batch where the run stays inside Keras's clamp, else the exact emulation."""
    import torch

    if type(s).__name__ != "CosineDecay" or ctx.total_steps is None or not _native_ok(ctx):
        return ctx.k2t["keras_schedule"](s, row, ctx)
    c = s.get_config()
    opt = require_torch_optimizer(ctx, "CosineDecay")
    lr_sched, steps = torch.optim.lr_scheduler, int(c["decay_steps"])
    warmup, target = int(c.get("warmup_steps") or 0), c.get("warmup_target")
    if target is None and ctx.total_steps <= steps:
        set_base_lr(opt, c["initial_learning_rate"])
        result = lr_sched.CosineAnnealingLR(opt, T_max=steps, eta_min=c["alpha"] * c["initial_learning_rate"])
        return _back(result, row, s, "batch", [f"exact for the {ctx.total_steps} steps of the run (<= decay_steps)"])
    if target and warmup and c["initial_learning_rate"] > 0 and ctx.total_steps <= warmup + steps:
        set_base_lr(opt, target)
        warm = lr_sched.LinearLR(opt, start_factor=c["initial_learning_rate"] / target, end_factor=1.0,
                                 total_iters=warmup)
        cos = lr_sched.CosineAnnealingLR(opt, T_max=steps, eta_min=c["alpha"] * target)
        result = lr_sched.SequentialLR(opt, [warm, cos], milestones=[warmup])
        result = _back(result, row, s, "batch", [(f"SequentialLR(LinearLR warm-up, CosineAnnealingLR), exact for the "
                                                 f"{ctx.total_steps} steps of the run (<= warmup_steps + decay_steps)")])
        translation_of(result).rows_used.update({"sequential_lr": 1, "linear_lr": 1})
        return result
    return ctx.k2t["keras_schedule"](s, row, ctx)


K2T = {"linear_lr": k2t_linear, "polynomial_lr": k2t_polynomial, "cosine_warm_restarts": k2t_warm_restarts,
       "cyclic_lr": k2t_cyclic, "sequential_lr": k2t_sequential, "chained_scheduler": k2t_chained,
       "transformers_warmup": k2t_transformers, "lambda_lr_sampled": k2t_sampled, "cosine_annealing_lr": k2t_cosine}
