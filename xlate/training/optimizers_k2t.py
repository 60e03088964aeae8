"""keras.optimizers -> torch.optim, driven by the optimizer rows (see ``optimizers.py``).

A Keras optimizer becomes one torch optimizer: sub-optimizers of a MultiOptimizer and
exclude_from_weight_decay become param groups. Keras's own training-loop settings (clipnorm,
global_clipnorm, clipvalue, use_ema, gradient_accumulation_steps, a schedule) go into xlate's
emulation (``xlate.KerasX``), whose ``step()`` applies them, so a plain torch loop reproduces
``model.fit``. An xlate.TorchX source goes back to its torch class; the torch-loop settings it
carries (torch_clip_grad_norm, clipvalue, use_ema, accumulation) are returned in ``loop_out``
for the caller's loop (``translate_training``), never dropped.
"""

from __future__ import annotations

from ..errors import BadInputError, UnsupportedOpError, XlateError
from ..frameworks import accepted_kwargs, is_torch_module
from ..table import Row
from .lookup import keras_class_name, keras_learning_rate, optimizer_row, sub_optimizers
from .optimizer_common import KERAS_LOOP_SETTINGS, TUPLE_ARG, is_power_of_two, use_native
from .optimizer_hooks import HOOKS
from .pairing import keras_vars, pair_parameters, torch_params
from .record import Translation, attach_translation
from .state import port_optimizer_state


def _keras_hypers(row: Row, optimizer, src_side: str) -> tuple[dict, dict]:
    """(torch kwargs, facts for the hook) for one Keras optimizer, through the row's args."""
    config = optimizer.get_config()
    kwargs, facts, tuples = {}, {}, {}
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
        m = TUPLE_ARG.fullmatch(a.torch)
        if m:
            tuples.setdefault(m.group(1), {})[int(m.group(2))] = value
            continue
        kwargs[a.torch] = value
    for name, items in tuples.items():
        kwargs[name] = tuple(items[i] for i in sorted(items))
    for key, fact in (("weight_decay", "decoupled"), ("l2_weight_decay", "l2"), ("torch_weight_decay", "torch_wd")):
        if config.get(key):
            facts[fact] = float(config[key])
    for key in (*KERAS_LOOP_SETTINGS, "torch_clip_grad_norm", "torch_ema"):
        if config.get(key) is not None and config.get(key) is not False:
            facts[key] = config[key]
    if not facts.get("use_ema"):
        for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency"):
            facts.pop(key, None)
    for key in ("momentum", "maximize"):
        if key in kwargs:
            facts[key] = kwargs[key]
    scale = config.get("loss_scale_factor")
    if scale is not None and not is_power_of_two(scale):
        raise UnsupportedOpError([(f"loss_scale_factor={scale}", keras_class_name(optimizer))], direction="keras2torch",
                                 hint="a power-of-two loss scale cancels exactly in float32; others change the "
                                      "gradients' rounding")
    return kwargs, facts


def _native_torch_name(row: Row, sub) -> str:
    """The torch.optim class for a Keras optimizer whose formula torch's native class computes."""
    return sub.torch_class if keras_class_name(sub).startswith("xlate.") else row.torch


def _torch_decay_kwargs(row: Row, sub, cls, facts: dict, native: bool) -> dict:
    """The torch weight-decay arguments for a Keras optimizer's decay settings."""
    decoupled, l2, torch_wd = facts.get("decoupled"), facts.get("l2"), facts.get("torch_wd")
    if not native:
        if l2 or torch_wd:
            raise XlateError(f"{keras_class_name(sub)} with a torch-style weight decay has no torch emulation target")
        return {"weight_decay": float(decoupled)} if decoupled else {}
    name = cls.__name__
    if sum(bool(x) for x in (l2, decoupled, torch_wd)) > 1:
        raise XlateError(f"{keras_class_name(sub)} sets two kinds of weight decay: torch cannot")
    if l2 or torch_wd:
        return {"weight_decay": float(l2 or torch_wd)}
    if decoupled:
        if name in ("AdamW", "Muon"):
            return {"weight_decay": float(decoupled)}
        if name in ("Adam", "NAdam", "RAdam"):
            return {"weight_decay": float(decoupled), "decoupled_weight_decay": True}
        raise XlateError(f"torch.optim.{name} has no decoupled weight decay for {keras_class_name(sub)}",
                         hint="use emulate='auto' (xlate's emulation applies Keras's decoupled decay)")
    return {"weight_decay": 0.0} if name == "Muon" else {}


def _torch_loop_settings(sub, facts: dict, loop_out: dict | None) -> None:
    """An xlate.TorchX's torch-loop settings (and its lr schedule: a torch scheduler's job), handed
    to the caller's loop (or refused: a torch optimizer cannot hold them)."""
    settings = {"clip_grad_norm": facts.get("torch_clip_grad_norm"), "clip_grad_value": facts.get("clipvalue"),
                "ema_decay": facts.get("ema_momentum") if facts.get("use_ema") else None,
                "grad_accum_steps": facts.get("gradient_accumulation_steps"), "schedule": facts.get("schedule")}
    other = [k for k in ("clipnorm", "global_clipnorm", "ema_overwrite_frequency") if facts.get(k)]
    if facts.get("use_ema") and facts.get("gradient_accumulation_steps") and not facts.get("torch_ema"):
        other.append("use_ema with gradient_accumulation_steps (Keras's per-micro-batch EMA)")
    if other:
        raise UnsupportedOpError([(k, keras_class_name(sub)) for k in other], direction="keras2torch",
                                 hint="torch's clip_grad_norm_ / AveragedModel cannot reproduce these Keras settings")
    settings = {k: v for k, v in settings.items() if v is not None}
    if settings and loop_out is None:
        raise BadInputError(f"{keras_class_name(sub)} carries torch-loop settings ({', '.join(settings)}) a torch "
                            "optimizer cannot hold: use xlate.translate_training, which returns them for the torch loop")
    if loop_out is not None:
        loop_out.update(settings)


def _emulation_extras(sub, facts: dict) -> dict:
    extra = {k: getattr(sub, k) for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(sub, k, None) is not None}
    if facts.get("use_ema"):
        extra.update(use_ema=True, ema_momentum=float(sub.ema_momentum),
                     ema_overwrite_frequency=sub.ema_overwrite_frequency)
    if facts.get("gradient_accumulation_steps"):
        extra["gradient_accumulation_steps"] = int(sub.gradient_accumulation_steps)
    if facts.get("schedule") is not None:
        from .torch_schedules import keras_schedule_function

        extra["lr_schedule"] = keras_schedule_function(facts["schedule"])
    return extra


def _groups_for(row, sub, kw, decay, mine) -> list[dict]:
    """torch param groups for one Keras (sub-)optimizer: by weight-decay exclusion, and for Muon by
    path (AdamW for what Keras's Muon sends to AdamW, with adam_weight_decay)."""
    def decays(v):
        return v is None or not decay or sub._use_weight_decay(v)

    if row.id == "muon" and hasattr(sub, "_should_use_adamw"):
        groups = []
        for adamw in (False, True):
            wd = float(sub.adam_weight_decay if adamw else sub.weight_decay or 0.0)
            for on in (True, False):
                ps = [p for p, v in mine if sub._should_use_adamw(v) == adamw and decays(v) == on]
                if ps:
                    groups.append({"params": ps, **kw, "use_adamw": adamw, "weight_decay": wd if on else 0.0})
        return groups
    with_decay = [p for p, v in mine if decays(v)]
    without = [p for p, v in mine if not decays(v)]
    groups = [{"params": with_decay, **kw, **decay}] if with_decay else []
    if without:
        groups.append({"params": without, **kw, **{k: (0.0 if k == "weight_decay" else v) for k, v in decay.items()}})
    return groups


def _excludes_some(sub) -> bool:
    return bool(getattr(sub, "_exclude_from_weight_decay", None) or
                getattr(sub, "_exclude_from_weight_decay_pattern", None))


def _owner_index(optimizer, subs, variable) -> int:
    if len(subs) == 1:
        return 0
    return optimizer._var_to_optimizer_idx[optimizer._var_key(variable)]


def keras_has_state(optimizer) -> bool:
    import keras

    return bool(optimizer.built) and int(keras.ops.convert_to_numpy(optimizer._iterations)) > 0


def keras_to_torch(optimizer, target, *, source_model, emulate, port_state, pairing, steps, loop_out=None):
    import torch

    from .emulations import torch_optimizer_for

    if type(optimizer).__name__ == "LossScaleOptimizer":
        raise BadInputError("a LossScaleOptimizer is loss scaling around an optimizer: torch does it with a GradScaler",
                            hint="use xlate.translate_training, which returns the GradScaler with the optimizer")
    subs = sub_optimizers(optimizer)
    rows = {optimizer_row(s)[0].id for s in subs}
    if len(rows) > 1:
        raise BadInputError(f"a MultiOptimizer mixing {', '.join(sorted(rows))} cannot become one torch optimizer")
    row, src_side = optimizer_row(subs[0])
    torch_model = target if is_torch_module(target) else None
    params = [p for p in (target.parameters() if torch_model is not None else target) if p.requires_grad]
    hypers = [_keras_hypers(row, sub, src_side) for sub in subs]
    reason = next((r for r in (HOOKS[row.hook].native_from_keras(f) for _, f in hypers) if r), None)
    # an xlate.TorchX source is torch's own formula: back to torch.optim
    native = src_side == "torch" or use_native(reason, emulate, row, row.torch)
    if native:
        cls = getattr(torch.optim, _native_torch_name(row, subs[0]).rsplit(".", 1)[-1])
        if src_side == "torch":
            _torch_loop_settings(subs[0], hypers[0][1], loop_out)
    else:
        cls = torch_optimizer_for(row.keras)

    needs_pairing = len(subs) > 1 or any(_excludes_some(s) for s in subs) or row.id == "muon" or \
        (port_state and keras_has_state(optimizer))
    if needs_pairing:
        if source_model is None or torch_model is None:
            raise BadInputError("translating a MultiOptimizer, weight-decay exclusions, Muon or an optimizer state "
                                "needs both models", hint="pass source_model=<the Keras model> and the torch module")
        pairs = pair_parameters(torch_model, source_model, pairing)
        tp, kv = torch_params(torch_model), keras_vars(source_model)
        keyed = [(tp[n], kv[pair.keras[0]]) for pair in pairs for n in pair.torch]
    else:
        keyed = [(p, None) for p in params]

    groups = []
    for i, (sub, (kw, facts)) in enumerate(zip(subs, hypers)):
        mine = [(p, v) for p, v in keyed if v is None or _owner_index(optimizer, subs, v) == i]
        groups += _groups_for(row, sub, kw, _torch_decay_kwargs(row, sub, cls, facts, native), mine)
    extra = {} if native else _emulation_extras(subs[0], hypers[0][1])
    base_kwargs = {k: v for k, v in groups[0].items() if k != "params"}
    topt = cls(groups, **accepted_kwargs(cls.__init__, base_kwargs), **extra)
    target_name = f"xlate.{cls.__name__}" if cls.__module__.startswith("xlate.") else f"torch.optim.{cls.__name__}"
    notes = [] if native else [f"exact emulation {target_name}: {reason or 'the formulas differ'}"]
    if len(groups) > 1:
        notes.append(f"{len(groups)} torch param groups (sub-optimizers / weight-decay exclusions)")
    scales = {s.loss_scale_factor for s in subs if getattr(s, "loss_scale_factor", None)}
    if scales:
        notes.append(f"loss_scale_factor={scales.pop()} left out: a power of two cancels exactly in float32")
    if not native and (extra.get("use_ema") or extra.get("gradient_accumulation_steps")):
        notes.append("step() applies Keras's EMA / gradient accumulation: call zero_grad() before every backward, "
                     "do not divide the loss by the accumulation steps")
    translation = Translation(row=row.id, direction="keras2torch", source=keras_class_name(subs[0]),
                              target=target_name, emulated=not native, notes=notes)
    if port_state and keras_has_state(optimizer):
        count = port_optimizer_state(optimizer, topt, source_model, torch_model, pairing=pairing, steps=steps)
        translation.notes.append(f"optimizer state ported ({count} step(s))")
    return attach_translation(topt, translation)
