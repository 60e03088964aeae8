"""torch.optim -> keras.optimizers, driven by the optimizer rows (see ``optimizers.py``).

Each param group's hyperparameters go through the row's ``args``; weight decay through the
row's ``torch_decay`` (coupled L2 -> the emulation's ``l2_weight_decay``, decoupled -> Keras's
``weight_decay``); groups that differ only by having no decay become
``exclude_from_weight_decay``, others a ``MultiOptimizer``. The torch loop's settings
(``LoopSettings``: clip_grad_norm_ / clip_grad_value_, an EMA model, gradient accumulation)
become the Keras optimizer's own (``torch_clip_grad_norm`` / ``clipvalue``, ``use_ema`` /
``ema_momentum``, ``gradient_accumulation_steps``), with xlate's emulation wherever no native
setting computes the torch loop's numbers.
"""

from __future__ import annotations

from ..errors import BadInputError, XlateError
from ..frameworks import is_keras_model
from ..table import Row
from .ema import ema_decay_of, port_ema_to_keras
from .lookup import optimizer_row, torch_class_name
from .optimizer_common import KERAS_LOOP_SETTINGS, TUPLE_ARG, LoopSettings, accepted, use_native
from .optimizer_hooks import HOOKS, torch_loop_reason
from .pairing import pair_parameters
from .record import Translation, attach_translation
from .state import port_optimizer_state


def _group_hypers(row: Row, group: dict, decay: str) -> tuple[dict, dict]:
    """(Keras kwargs, facts for the hook) for one torch param group, through the row's args.
    ``decay``: what the group's weight_decay is: "coupled", "decoupled" or "torch_weight_decay"."""
    kwargs, facts = {}, {}
    for a in row.args:
        if not a.torch or a.torch == "-":
            continue
        m = TUPLE_ARG.fullmatch(a.torch)
        name, index = (m.group(1), int(m.group(2))) if m else (a.torch, None)
        if name not in group:
            continue
        value = group[name] if index is None else group[name][index]
        if not isinstance(value, bool) and (hasattr(value, "item") or isinstance(value, int)):
            value = float(value)  # tensors and ints (torch's momentum=0): Keras wants floats
        facts[a.torch] = value
        if name == "weight_decay":
            if value:
                key = {"coupled": "l2_weight_decay", "decoupled": "weight_decay"}.get(decay, decay)
                kwargs[key] = float(value)
                facts["l2" if decay == "coupled" else "decoupled"] = float(value)
            continue
        if a.keras in (None, "-"):
            continue
        kwargs[a.keras] = row.to_keras_value(a.torch, value)
    for key in ("momentum", "momentum_decay", "maximize"):
        if key in kwargs:
            facts[key] = kwargs[key]
    return kwargs, facts


def _decay_of(row: Row, group: dict) -> str:
    decay = HOOKS[row.hook].torch_decay
    return "decoupled" if decay == "coupled" and group.get("decoupled_weight_decay") else decay


def _loop_kwargs(optimizer, src_side: str, loop: LoopSettings) -> dict:
    """Keras kwargs for the training-loop settings: the torch loop's, or an xlate.KerasX's own."""
    if src_side == "keras":  # xlate.KerasX carries Keras's own settings and schedule
        if not loop.empty:
            raise BadInputError(f"{type(optimizer).__name__} clips, averages and accumulates itself (Keras's "
                                "settings): a torch loop around it must not, so pass no clip/ema/accumulation")
        kwargs = {k: getattr(optimizer, k) for k in KERAS_LOOP_SETTINGS if getattr(optimizer, k, None) is not None}
        if not kwargs.get("use_ema"):
            kwargs = {k: v for k, v in kwargs.items() if not k.startswith("ema_") and k != "use_ema"}
        schedule = getattr(optimizer, "lr_schedule", None)
        if schedule is not None:
            if getattr(schedule, "keras_schedule", None) is None:
                raise BadInputError(f"{type(optimizer).__name__} runs a plain-function lr_schedule: no Keras schedule "
                                    "to give back")
            kwargs["learning_rate"] = schedule.keras_schedule
        return kwargs
    kwargs = {}
    if loop.clip_grad_value is not None:
        kwargs["clipvalue"] = float(loop.clip_grad_value)
    if loop.clip_grad_norm is not None:
        kwargs["torch_clip_grad_norm"] = float(loop.clip_grad_norm)
    if loop.ema is not None:
        kwargs.update(use_ema=True, ema_momentum=ema_decay_of(loop.ema))
    if loop.grad_accum_steps:
        kwargs["gradient_accumulation_steps"] = loop.grad_accum_steps
        if loop.ema is not None:
            kwargs["torch_ema"] = True
    return kwargs


def _keras_class(row: Row, native: bool):
    """The native Keras class (also for an xlate.KerasX source: back to the class it emulates), else
    xlate's emulation of the torch class."""
    import keras

    from .emulations import keras_optimizer_for

    if native:
        return getattr(keras.optimizers, row.keras.rsplit(".", 1)[-1])
    return keras_optimizer_for(row.torch)


def torch_has_state(optimizer) -> bool:
    """Has the optimizer taken a step? (Adagrad fills its state at construction, with step 0.)"""
    for state in optimizer.state.values():
        step = state.get("step")
        if (step is not None and float(step) > 0) or (step is None and state):
            return True
    return False


def _build(cls, per_group, group_vars, loop_kwargs, notes):
    """One Keras optimizer for the groups: a single one, one with exclude_from_weight_decay, or a
    MultiOptimizer."""
    import keras

    base = per_group[0][1]
    decay_keys = ("weight_decay", "l2_weight_decay", "torch_weight_decay")
    without_decay = lambda kw: {k: v for k, v in kw.items() if k not in decay_keys}
    decays = {tuple(kw.get(k) for k in decay_keys) for _, kw, _ in per_group if any(kw.get(k) for k in decay_keys)}
    if all(kw == base for _, kw, _ in per_group):
        return cls(**accepted(cls, {**base, **loop_kwargs}))
    if all(without_decay(kw) == without_decay(base) for _, kw, _ in per_group) and len(decays) == 1:
        decayed = next(kw for _, kw, _ in per_group if any(kw.get(k) for k in decay_keys))
        kopt = cls(**accepted(cls, {**decayed, **loop_kwargs}))
        excluded = [v for g, kw, _ in per_group if not any(kw.get(k) for k in decay_keys) for v in group_vars(g)]
        kopt.exclude_from_weight_decay(var_list=excluded)
        notes.append(f"param groups without weight decay -> exclude_from_weight_decay ({len(excluded)} variable(s))")
        return kopt
    if "torch_clip_grad_norm" in loop_kwargs:
        raise XlateError("clip_grad_norm_ over param groups with different settings: a Keras MultiOptimizer clips "
                         "each sub-optimizer's gradients separately, torch the global norm")
    optimizers = [cls(**accepted(cls, {**kw, **loop_kwargs}), name=f"group_{i}") for i, (_, kw, _) in enumerate(per_group)]
    mapping = keras.optimizers.OptimizerMap(default_optimizer=optimizers[0])
    for opt, (g, _, _) in zip(optimizers[1:], per_group[1:]):
        for v in group_vars(g):
            mapping[v.path] = opt
    notes.append(f"{len(per_group)} param groups with different settings -> keras.optimizers.MultiOptimizer")
    return keras.optimizers.MultiOptimizer(mapping)


def _muon_shapes(source_model, pairs) -> dict:
    """TorchMuon's lr ratio needs each parameter's torch shape: {Keras path: torch shape}."""
    params = dict(source_model.named_parameters())
    return {k: list(params[t].shape) for pair in pairs for t, k in zip(pair.torch, pair.keras)}


def _collapse_keras_muon(per_group) -> None:
    """xlate.KerasMuon's groups (Muon / AdamW path x decayed / excluded) -> one Keras Muon's settings:
    weight_decay from the decayed Muon group, adam_weight_decay from the decayed AdamW group, the
    groups without decay excluded (Keras's Muon picks the path per variable itself)."""
    decay = lambda adamw: next((g["weight_decay"] for g, _, _ in per_group if g["use_adamw"] == adamw
                                and g["weight_decay"]), 0.0)
    muon_wd, adam_wd = decay(False), decay(True)
    for group, kwargs, _ in per_group:
        kwargs["weight_decay"] = (muon_wd or adam_wd) if group["weight_decay"] else 0.0
        kwargs["adam_weight_decay"] = adam_wd


def torch_to_keras(optimizer, target, *, source_model, emulate, port_state, pairing, steps, loop: LoopSettings):
    row, src_side = optimizer_row(optimizer)
    hook = HOOKS[row.hook]
    keras_model = target if is_keras_model(target) else None
    variables = list(target.trainable_variables) if keras_model is not None else list(target)
    loop_kwargs = _loop_kwargs(optimizer, src_side, loop)
    per_group = []
    for group in optimizer.param_groups:
        kwargs, facts = _group_hypers(row, group, _decay_of(row, group) if src_side == "torch" else "decoupled")
        per_group.append((group, kwargs, {**facts, **loop_kwargs, "clip_grad_norm": loop.clip_grad_norm}))
    if row.id == "muon" and src_side == "keras":
        _collapse_keras_muon(per_group)
    # an xlate.KerasX source goes back to its native Keras class: no hook to ask
    reasons = [] if src_side == "keras" else [hook.native_from_torch(f) or torch_loop_reason(f) for _, _, f in per_group]
    reason = next((r for r in reasons if r), None)
    native = src_side == "keras" or use_native(reason, emulate, row, row.keras)
    cls = _keras_class(row, native)

    has_state = port_state and torch_has_state(optimizer)
    ema_state = port_state and loop.ema is not None and int(getattr(loop.ema, "n_averaged", 0)) > 0
    needs_pairs = len(per_group) > 1 or has_state or ema_state or (row.id == "muon" and not native)
    if needs_pairs and (source_model is None or keras_model is None):
        raise BadInputError("translating several param groups, an optimizer/EMA state or Muon needs both models",
                            hint="pass source_model=<the torch module> and the Keras model as the target")
    pairs = pair_parameters(source_model, keras_model, pairing) if needs_pairs else []
    if row.id == "muon" and not native:
        loop_kwargs = {**loop_kwargs, "torch_shapes": _muon_shapes(source_model, pairs)}
    names = {id(p): n for n, p in (source_model.named_parameters() if source_model is not None else [])}
    path_of = {n: pair.keras for pair in pairs for n in pair.torch}

    def group_vars(group):
        return [v for p in group["params"] if id(p) in names for path in path_of.get(names[id(p)], ())
                for v in variables if v.path == path]

    notes = []
    kopt = _build(cls, per_group, group_vars, loop_kwargs, notes)
    target_name = f"xlate.{cls.__name__}" if cls.__module__.startswith("xlate.") else f"keras.optimizers.{cls.__name__}"
    if not native:
        notes.append(f"exact emulation {target_name}: {reason}")
    notes += [f"torch loop's {k} -> {k2}" for k, k2 in (("clip_grad_norm_", "torch_clip_grad_norm"),
                                                         ("clip_grad_value_", "clipvalue"),
                                                         ("AveragedModel EMA", "use_ema"),
                                                         ("gradient accumulation", "gradient_accumulation_steps"))
              if k2 in loop_kwargs and src_side == "torch"]
    translation = Translation(row=row.id, direction="torch2keras", source=torch_class_name(optimizer),
                              target=target_name, emulated=not native, notes=notes)
    if has_state:
        count = port_optimizer_state(optimizer, kopt, source_model, keras_model, pairing=pairing, steps=steps)
        translation.notes.append(f"optimizer state ported ({count} step(s))")
    if ema_state:
        if not kopt.built:
            kopt.build(keras_model.trainable_variables)
        copied = port_ema_to_keras(loop.ema, kopt, source_model, pairs)
        translation.notes.append(f"EMA weights ported ({copied} average(s))")
    return attach_translation(kopt, translation)
