"""translate_optimizer: torch.optim <-> keras.optimizers, driven by the optimizer rows.

The row's ``args`` rename the hyperparameters (``lr`` <-> ``learning_rate``, ``betas[0]`` <->
``beta_1``, ``alpha`` <-> ``rho``...); the row's hook (``HOOKS`` below) says when the target's
native class computes the same update for the given hyperparameters. Everywhere else xlate uses
its exact emulation of the source's formula (``keras_optimizers.TorchX`` /
``torch_optimizers.KerasX``) and records which in ``translation_of(optimizer)``.

Weight decay: torch's ``weight_decay`` is coupled L2 except on AdamW and Adam/NAdam with
``decoupled_weight_decay=True``; Keras's is decoupled. Coupled decay becomes the emulation's
``l2_weight_decay``; decoupled decay Keras's ``weight_decay``; param groups without decay become
``exclude_from_weight_decay`` and back. Groups that differ in anything else become a Keras
``MultiOptimizer`` (one optimizer per group) and back.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BadInputError, UnsupportedOpError, XlateError
from ..frameworks import accepted_kwargs, is_keras_model, is_torch_module
from ..table import Row
from .record import Translation, attach_translation
from .state import (
    EMULATE,
    _is_torch_optimizer,
    keras_class_name,
    keras_learning_rate,
    keras_vars,
    optimizer_row,
    pair_parameters,
    port_optimizer_state,
    sub_optimizers,
    torch_class_name,
    torch_params,
)

_TUPLE_ARG = re.compile(r"(\w+)\[(\d+)\]")
# torch arguments that pick an implementation and never change the numbers
_IMPLEMENTATION_SWITCHES = {"foreach", "fused", "capturable", "differentiable", "initial_lr", "params"}
_KERAS_BASE_ONLY = {"name", "learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
                    "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps"}


@dataclass(frozen=True)
class OptimizerHook:
    """What data cannot say for one optimizer row: when is the other side's native class exact.

    ``native_from_torch(h)`` / ``native_from_keras(h)`` get the source hyperparameters (torch
    names / Keras names, weight decay already split into ``l2``/``decoupled``) and return None
    when the native class is exact, else the reason it is not.
    """

    native_from_torch: Callable[[dict], str | None]
    native_from_keras: Callable[[dict], str | None]


def _never(reason: str):
    return lambda h: reason


def _extras(h, keys=("clipnorm", "clipvalue", "global_clipnorm", "schedule")) -> str | None:
    used = [k for k in keys if h.get(k) is not None]
    return f"{', '.join(used)} needs xlate's emulation (torch optimizers have no such setting)" if used else None


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


HOOKS: dict[str, OptimizerHook] = {
    "sgd": OptimizerHook(_sgd_from_torch, _sgd_from_keras),
    "adam": OptimizerHook(_never("epsilon is added to sqrt(v)/sqrt(1-b2^t) in torch, to sqrt(v) in Keras"),
                          _never("epsilon is added to sqrt(v) in Keras, to sqrt(v)/sqrt(1-b2^t) in torch")),
    "adamw": OptimizerHook(_never("epsilon placement differs as for Adam"), _never("epsilon placement differs as for Adam")),
    "rmsprop": OptimizerHook(_never("epsilon outside the square root in torch, inside in Keras"),
                             _never("epsilon inside the square root in Keras, outside in torch")),
    "adagrad": OptimizerHook(_never("epsilon outside the square root in torch, inside in Keras"),
                             _never("epsilon inside the square root in Keras, outside in torch")),
    "adadelta": OptimizerHook(_adadelta_from_torch, _adadelta_from_keras),
    "adamax": OptimizerHook(_never("torch adds epsilon to |g| inside the max, Keras to the denominator"),
                            _never("Keras adds epsilon to the denominator, torch to |g| inside the max")),
    "nadam": OptimizerHook(_nadam_from_torch, lambda h: _extras(h)),
}


def _check_emulate(emulate: str) -> None:
    if emulate not in EMULATE:
        raise BadInputError(f"emulate must be one of {', '.join(EMULATE)}, got {emulate!r}")


def _use_native(reason: str | None, emulate: str, row: Row, target_native: str) -> bool:
    if emulate == "always" or (emulate == "auto" and reason is not None):
        return False
    if reason is not None:  # emulate == "never"
        raise XlateError(f"{target_native} cannot reproduce this {row.id} configuration: {reason}",
                         hint="use emulate='auto' to get xlate's exact emulation")
    return True


# --- torch -> Keras ---------------------------------------------------------------------------


def _torch_group_hypers(row: Row, group: dict, decoupled: bool) -> tuple[dict, dict]:
    """(Keras kwargs, facts for the hook) for one torch param group, through the row's args."""
    kwargs, facts = {}, {}
    for a in row.args:
        if not a.torch or a.torch == "-":
            continue
        m = _TUPLE_ARG.fullmatch(a.torch)
        name, index = (m.group(1), int(m.group(2))) if m else (a.torch, None)
        if name not in group:
            continue
        value = group[name] if index is None else group[name][index]
        if not isinstance(value, bool) and (hasattr(value, "item") or isinstance(value, int)):
            value = float(value)  # tensors and ints (torch's momentum=0): Keras wants floats
        facts[a.torch] = value
        if name == "weight_decay":
            if value:
                kwargs["weight_decay" if decoupled else "l2_weight_decay"] = float(value)
                facts["decoupled" if decoupled else "l2"] = float(value)
            continue
        if a.keras in (None, "-"):
            continue
        kwargs[a.keras] = row.to_keras_value(a.torch, value)
    for key in ("momentum", "momentum_decay", "maximize"):
        if key in kwargs:
            facts[key] = kwargs[key]
    return kwargs, facts


def _is_decoupled(optimizer, group) -> bool:
    return torch_class_name(optimizer) == "torch.optim.AdamW" or bool(group.get("decoupled_weight_decay"))


def _keras_target_class(row: Row, native: bool):
    """The native Keras class (also for an xlate.KerasX source: back to the class it emulates), else
    xlate's emulation of the torch class."""
    import keras

    from . import keras_optimizers

    if native:
        return getattr(keras.optimizers, row.keras.rsplit(".", 1)[-1])
    return keras_optimizers.BY_TORCH_CLASS[row.torch]


def _accepted(cls, kwargs: dict) -> dict:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()) and cls.__module__.startswith("xlate."):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params or k in _KERAS_BASE_ONLY}


def _torch_to_keras(optimizer, target, *, source_model, emulate, port_state, pairing, steps):
    import keras

    row, src_side = optimizer_row(optimizer)
    hook = HOOKS[row.hook]
    keras_model = target if is_keras_model(target) else None
    variables = list(target.trainable_variables) if keras_model is not None else list(target)
    torch_name = torch_class_name(optimizer)

    per_group = []
    for group in optimizer.param_groups:
        decoupled = _is_decoupled(optimizer, group) if src_side == "torch" else True
        kwargs, facts = _torch_group_hypers(row, group, decoupled)
        if src_side == "keras":  # xlate.KerasX carries Keras's own hyperparameters, clipping and schedule
            kwargs.update({k: getattr(optimizer, k) for k in ("clipnorm", "clipvalue", "global_clipnorm")
                           if getattr(optimizer, k, None) is not None})
            schedule = getattr(getattr(optimizer, "lr_schedule", None), "keras_schedule", None)
            if schedule is not None:
                kwargs["learning_rate"] = schedule
            elif getattr(optimizer, "lr_schedule", None) is not None:
                raise BadInputError(f"{torch_name} runs a plain-function lr_schedule: no Keras schedule to give back")
        per_group.append((group, kwargs, facts))
    # an xlate.KerasX source goes back to its native Keras class: no hook to ask
    reasons = [] if src_side == "keras" else [hook.native_from_torch(f) for _, _, f in per_group]
    reason = None if all(r is None for r in reasons) else next(r for r in reasons if r)
    native = src_side == "keras" or _use_native(reason, emulate, row, row.keras)
    cls = _keras_target_class(row, native)

    # which Keras variables each torch group drives (needs the source model when there is a choice)
    if len(per_group) > 1 or (port_state and _torch_has_state(optimizer)):
        if source_model is None or keras_model is None:
            raise BadInputError("translating several param groups or an optimizer state needs both models",
                                hint="pass source_model=<the torch module> and the Keras model as the target")
        pairs = pair_parameters(source_model, keras_model, pairing)
    else:
        pairs = []
    names = {id(p): n for n, p in (source_model.named_parameters() if source_model is not None else [])}
    path_of = {n: pair.keras for pair in pairs for n in pair.torch}

    def group_vars(group):
        return [v for p in group["params"] if id(p) in names for path in path_of.get(names[id(p)], ())
                for v in variables if v.path == path]

    notes = []
    base = per_group[0][1]
    without_decay = lambda kw: {k: v for k, v in kw.items() if k not in ("weight_decay", "l2_weight_decay")}
    if all(kw == base for _, kw, _ in per_group):
        kopt = cls(**_accepted(cls, base))
    elif all(without_decay(kw) == without_decay(base) for _, kw, _ in per_group) and \
            len({(kw.get("weight_decay"), kw.get("l2_weight_decay")) for _, kw, _ in per_group if
                 kw.get("weight_decay") or kw.get("l2_weight_decay")}) == 1:
        decayed = next(kw for _, kw, _ in per_group if kw.get("weight_decay") or kw.get("l2_weight_decay"))
        kopt = cls(**_accepted(cls, decayed))
        excluded = [v for g, kw, _ in per_group if not (kw.get("weight_decay") or kw.get("l2_weight_decay"))
                    for v in group_vars(g)]
        kopt.exclude_from_weight_decay(var_list=excluded)
        notes.append(f"param groups without weight decay -> exclude_from_weight_decay ({len(excluded)} variable(s))")
    else:
        optimizers = [cls(**_accepted(cls, kw), name=f"group_{i}") for i, (_, kw, _) in enumerate(per_group)]
        mapping = keras.optimizers.OptimizerMap(default_optimizer=optimizers[0])
        for opt, (g, _, _) in zip(optimizers[1:], per_group[1:]):
            for v in group_vars(g):
                mapping[v.path] = opt
        kopt = keras.optimizers.MultiOptimizer(mapping)
        notes.append(f"{len(per_group)} param groups with different settings -> keras.optimizers.MultiOptimizer")
    target_name = f"xlate.{cls.__name__}" if cls.__module__.startswith("xlate.") else f"keras.optimizers.{cls.__name__}"
    if not native:
        notes.append(f"exact emulation {target_name}: {reason}")
    translation = Translation(row=row.id, direction="torch2keras", source=torch_name, target=target_name,
                              emulated=not native, notes=notes)
    if port_state and _torch_has_state(optimizer):
        count = port_optimizer_state(optimizer, kopt, source_model, keras_model, pairing=pairing, steps=steps)
        translation.notes.append(f"optimizer state ported ({count} step(s))")
    return attach_translation(kopt, translation)


def _torch_has_state(optimizer) -> bool:
    """Has the optimizer taken a step? (Adagrad fills its state at construction, with step 0.)"""
    for state in optimizer.state.values():
        step = state.get("step")
        if (step is not None and float(step) > 0) or (step is None and state):
            return True
    return False


# --- Keras -> torch ---------------------------------------------------------------------------


def _keras_hypers(row: Row, optimizer, src_side: str) -> tuple[dict, dict]:
    """(torch kwargs, facts for the hook) for one Keras optimizer, through the row's args."""
    config = optimizer.get_config()
    kwargs, facts, betas = {}, {}, {}
    for a in row.args:
        if not a.keras or a.keras == "-" or a.keras == "weight_decay":
            continue
        if a.keras not in config:
            # an argument the Keras class lacks: Keras hard-codes the row's keras_default
            # (Nadam's momentum_decay=1, SGD's dampening=0), torch must be given it
            if a.torch not in (None, "-") and a.keras_default not in (None, "None") and src_side == "keras":
                kwargs[a.torch] = a.keras_default
                facts[a.keras] = a.keras_default
            continue
        value = config[a.keras]
        if isinstance(value, dict) and a.keras != "learning_rate":
            raise BadInputError(f"{keras_class_name(optimizer)}.{a.keras} is a schedule (OneCycleLR momentum "
                                "cycling?): translate the schedule with xlate.translate_schedule instead")
        if a.keras == "learning_rate" and not isinstance(value, (int, float)):
            value = keras_learning_rate(optimizer)
            facts["schedule"] = optimizer._learning_rate
        if a.torch in (None, "-"):
            continue
        value = row.to_torch_value(a.keras, value)
        facts[a.keras] = value
        m = _TUPLE_ARG.fullmatch(a.torch)
        if m:
            betas[int(m.group(2))] = value
            continue
        kwargs[a.torch] = value
    if betas:
        kwargs["betas"] = (betas[0], betas[1])
    decoupled = config.get("weight_decay")
    if decoupled:
        facts["decoupled"] = float(decoupled)
    l2 = config.get("l2_weight_decay")
    if l2:
        facts["l2"] = float(l2)
    for key in ("clipnorm", "clipvalue", "global_clipnorm"):
        if config.get(key) is not None:
            facts[key] = config[key]
    for key in ("momentum", "maximize"):
        if key in kwargs:
            facts[key] = kwargs[key]
    unsupported = [k for k in ("use_ema", "gradient_accumulation_steps", "loss_scale_factor") if config.get(k)]
    if unsupported:
        raise UnsupportedOpError([(f"{k}={config[k]}", keras_class_name(optimizer)) for k in unsupported],
                                 direction="keras2torch",
                                 hint="torch optimizers have no EMA / gradient accumulation / loss scaling: "
                                      "build them into the torch training loop")
    return kwargs, facts


def _keras_to_torch(optimizer, target, *, source_model, emulate, port_state, pairing, steps):
    import torch

    from . import torch_optimizers

    subs = sub_optimizers(optimizer)
    rows = {optimizer_row(s)[0].id for s in subs}
    if len(rows) > 1:
        raise BadInputError(f"a MultiOptimizer mixing {', '.join(sorted(rows))} cannot become one torch optimizer")
    row, src_side = optimizer_row(subs[0])
    hook = HOOKS[row.hook]
    torch_model = target if is_torch_module(target) else None
    params = list(target.parameters()) if torch_model is not None else list(target)
    params = [p for p in params if p.requires_grad]

    facts_per_sub, kwargs_per_sub = [], []
    for sub in subs:
        kw, facts = _keras_hypers(row, sub, src_side)
        kwargs_per_sub.append(kw)
        facts_per_sub.append(facts)
    reasons = [hook.native_from_keras(f) for f in facts_per_sub]
    reason = next((r for r in reasons if r), None)
    if src_side == "torch":
        native = True  # an xlate.TorchX source is torch's own formula: back to torch.optim
    else:
        native = _use_native(reason, emulate, row, row.torch)

    if native:
        cls = getattr(torch.optim, _native_torch_name(row, subs[0]).rsplit(".", 1)[-1])
    else:
        cls = torch_optimizers.BY_KERAS_CLASS[row.keras]

    # split the parameters into groups: per sub-optimizer, and per weight-decay exclusion
    needs_pairing = len(subs) > 1 or any(_excludes_some(s) for s in subs) or (port_state and _keras_has_state(optimizer))
    if needs_pairing:
        if source_model is None or torch_model is None:
            raise BadInputError("translating a MultiOptimizer, weight-decay exclusions or an optimizer state needs "
                                "both models", hint="pass source_model=<the Keras model> and the torch module")
        pairs = pair_parameters(torch_model, source_model, pairing)
        tp, kv = torch_params(torch_model), keras_vars(source_model)
        keyed = [(tp[n], kv[pair.keras[0]]) for pair in pairs for n in pair.torch]
    else:
        keyed = [(p, None) for p in params]

    groups = []
    for i, (sub, kw, facts) in enumerate(zip(subs, kwargs_per_sub, facts_per_sub)):
        mine = [(p, v) for p, v in keyed if v is None or _owner_index(optimizer, subs, v) == i]
        decay = _torch_decay_kwargs(row, sub, cls, facts, native)
        with_decay = [p for p, v in mine if v is None or not decay or sub._use_weight_decay(v)]
        without = [p for p, v in mine if v is not None and decay and not sub._use_weight_decay(v)]
        if with_decay:
            groups.append({"params": with_decay, **kw, **decay})
        if without:
            groups.append({"params": without, **kw, **{k: (0.0 if k == "weight_decay" else v) for k, v in decay.items()}})
    extra = {}
    if not native:
        first = subs[0]
        extra = {k: getattr(first, k) for k in ("clipnorm", "clipvalue", "global_clipnorm")
                 if getattr(first, k, None) is not None}
        schedule = facts_per_sub[0].get("schedule")
        if schedule is not None:
            from .torch_schedules import keras_schedule_function

            extra["lr_schedule"] = keras_schedule_function(schedule)
    base_kwargs = {k: v for k, v in groups[0].items() if k != "params"}
    topt = cls(groups, **accepted_kwargs(cls.__init__, base_kwargs), **extra)
    target_name = f"xlate.{cls.__name__}" if cls.__module__.startswith("xlate.") else f"torch.optim.{cls.__name__}"
    notes = [] if native else [f"exact emulation {target_name}: {reason or 'the formulas differ'}"]
    if len(groups) > 1:
        notes.append(f"{len(groups)} torch param groups (sub-optimizers / weight-decay exclusions)")
    translation = Translation(row=row.id, direction="keras2torch", source=keras_class_name(subs[0]),
                              target=target_name, emulated=not native, notes=notes)
    if port_state and _keras_has_state(optimizer):
        count = port_optimizer_state(optimizer, topt, source_model, torch_model, pairing=pairing, steps=steps)
        translation.notes.append(f"optimizer state ported ({count} step(s))")
    return attach_translation(topt, translation)


def _native_torch_name(row: Row, sub) -> str:
    """The torch.optim class for a Keras optimizer whose formula torch's native class computes."""
    name = keras_class_name(sub)
    if name.startswith("xlate."):
        return sub.torch_class
    return row.torch


def _torch_decay_kwargs(row: Row, sub, cls, facts: dict, native: bool) -> dict:
    """The torch weight-decay arguments for a Keras optimizer's decay settings."""
    decoupled, l2 = facts.get("decoupled"), facts.get("l2")
    if not native:
        if l2:
            raise XlateError(f"{keras_class_name(sub)} with l2_weight_decay has no torch emulation target")
        return {"weight_decay": float(decoupled)} if decoupled else {}
    name = cls.__name__
    if l2 and decoupled:
        raise XlateError(f"{keras_class_name(sub)} sets both coupled and decoupled weight decay: torch cannot")
    if l2:
        return {"weight_decay": float(l2)}
    if decoupled:
        if name == "AdamW":
            return {"weight_decay": float(decoupled)}
        if name in ("Adam", "NAdam"):
            return {"weight_decay": float(decoupled), "decoupled_weight_decay": True}
        raise XlateError(f"torch.optim.{name} has no decoupled weight decay for {keras_class_name(sub)}",
                         hint="use emulate='auto' (xlate's emulation applies Keras's decoupled decay)")
    return {}


def _excludes_some(sub) -> bool:
    return bool(getattr(sub, "_exclude_from_weight_decay", None) or
                getattr(sub, "_exclude_from_weight_decay_pattern", None))


def _owner_index(optimizer, subs, variable) -> int:
    if len(subs) == 1:
        return 0
    return optimizer._var_to_optimizer_idx[optimizer._var_key(variable)]


def _keras_has_state(optimizer) -> bool:
    import keras

    return bool(optimizer.built) and int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0


# --- entry point ------------------------------------------------------------------------------


def translate_optimizer(optimizer, target_params_or_model, *, source_model=None, emulate="auto", port_state=True,
                        pairing=None, steps=None):
    """Translate a torch.optim optimizer to Keras or a Keras optimizer to torch.

    ``target_params_or_model``: the Keras model (or its variables) the new Keras optimizer will
    train, or the torch module (or its parameters). ``source_model``: the model the source
    optimizer trains; needed to pair parameters for several param groups / weight-decay
    exclusions and for the state port. ``emulate``: "auto" (the native class where it computes
    the same update for these hyperparameters, xlate's exact emulation otherwise), "always"
    (always the emulation), "never" (native only; raises where it would differ).
    ``port_state``: move moments, buffers and the step count when the source has taken steps.
    The returned optimizer carries a record: ``xlate.training.translation_of(opt)``.
    """
    _check_emulate(emulate)
    if _is_torch_optimizer(optimizer):
        if is_torch_module(target_params_or_model):
            raise BadInputError("the target of a torch optimizer's translation is a Keras model")
        return _torch_to_keras(optimizer, target_params_or_model, source_model=source_model, emulate=emulate,
                               port_state=port_state, pairing=pairing, steps=steps)
    import keras

    if isinstance(optimizer, keras.optimizers.Optimizer):
        if is_keras_model(target_params_or_model):
            raise BadInputError("the target of a Keras optimizer's translation is a torch module")
        return _keras_to_torch(optimizer, target_params_or_model, source_model=source_model, emulate=emulate,
                               port_state=port_state, pairing=pairing, steps=steps)
    raise BadInputError(f"expected a torch.optim or keras.optimizers optimizer, got {type(optimizer).__name__}")
