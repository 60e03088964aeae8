"""Optimizer-state port between torch and Keras.

Optimizer state moves with the weights: every moment, accumulator and momentum buffer has its
parameter's shape in the source layout, so it goes through the parameter's own transform (the
pairs of ``pairing.py``). State keys are translated through the optimizer row's ``weights``
(torch state key <-> Keras slot), except between an optimizer and xlate's emulation of it, which
share their names.

Owns ``port_optimizer_state`` and the slot lookups it needs; pairing and weight copying live in
``pairing.py``, the table-row lookups in ``lookup.py``. It must not import a translate_* module.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError
from ..frameworks import to_numpy
from ..table import Row
from ..transforms import get_transform
from .lookup import is_torch_optimizer, keras_learning_rate, optimizer_row, sub_optimizers
from .pairing import check_pairing, pair_parameters, torch_params


def _momentum_scale(row: Row, torch_key: str, lr: float) -> float | None:
    """Native Keras momentum = scale * torch's lr-free buffer (SGD: -lr, RMSprop: +lr), else None."""
    if torch_key != "momentum_buffer":
        return None
    return {"sgd": -lr, "rmsprop": lr}.get(row.id)


def _convert_value(row: Row, src_key: str, dst_key: str, src_side: str, dst_side: str, value, lr: float):
    """A state value moved between the two formulas (only SGD/RMSprop momentum changes scale)."""
    if src_side == dst_side:
        return value
    scale = _momentum_scale(row, src_key if src_side == "torch" else dst_key, lr)
    if scale is None:
        return value
    return value * scale if src_side == "torch" else value / scale


def _state_keys(row: Row, key: str, from_side: str, to_side: str) -> str:
    if from_side == to_side:
        return key
    for w in row.weights:
        src, dst = (w.torch, w.keras) if from_side == "torch" else (w.keras, w.torch)
        if key in src:
            return dst[src.index(key)]
    raise BadInputError(f"optimizer row {row.id} has no state correspondence for {key!r}")


def _keras_slot(optimizer, variable_path: str, key: str):
    """The Keras optimizer variable holding ``key``: per model variable (``{path}_{key}``, Keras's
    naming) when ``variable_path`` is given, else optimizer-level (a variable named ``key`` or an
    attribute ``_key``, e.g. Nadam's ``_u_product``)."""
    if variable_path:
        per_var = f"{variable_path.replace('/', '_')}_{key}"
        for opt in sub_optimizers(optimizer):
            for v in opt.variables:
                if v.name == per_var:
                    return v
        return None
    for opt in sub_optimizers(optimizer):
        for v in opt.variables:
            if v.name == key:
                return v
        v = getattr(opt, f"_{key}", None)
        if v is not None and hasattr(v, "assign") and hasattr(v, "numpy"):
            return v
    return None


def _build_keras(optimizer, keras_model) -> None:
    if not optimizer.built:
        optimizer.build(keras_model.trainable_variables)


_STEP_KEYS = ("step",)


def port_optimizer_state(source_optimizer, target_optimizer, source_model, target_model, *, pairing=None,
                         steps: int | None = None) -> int:
    """Move every moment, accumulator, momentum buffer and the step count from ``source_optimizer``
    (bound to ``source_model``) into ``target_optimizer`` (bound to ``target_model``), through the
    weight transforms, so training resumed on the target continues the source's trajectory.

    The two models must hold the same weights (checked: that is what proves the pairing).
    ``steps`` sets the step count where the source keeps none (torch SGD). Returns the number of
    optimizer steps the state carries.
    """
    torch_model, keras_model = (source_model, target_model) if is_torch_optimizer(source_optimizer) else \
        (target_model, source_model)
    pairs = pair_parameters(torch_model, keras_model, pairing)
    check_pairing(torch_model, keras_model, pairs)
    src_row, src_side = optimizer_row(source_optimizer)
    dst_row, dst_side = optimizer_row(target_optimizer)
    if (src_row.id != dst_row.id and {src_row.id, dst_row.id} != {"adam", "adamw"}) or src_row.id == "adafactor":
        raise BadInputError(f"cannot port {src_row.id} state into a {dst_row.id} optimizer (Adafactor's factored "
                            "moments are laid out per framework)")
    if is_torch_optimizer(source_optimizer):
        return _torch_to_keras_state(source_optimizer, target_optimizer, source_model, target_model, pairs,
                                     src_row, src_side, dst_side, steps)
    return _keras_to_torch_state(source_optimizer, target_optimizer, source_model, target_model, pairs,
                                 src_row, src_side, dst_side, steps)


def _torch_to_keras_state(opt, kopt, torch_model, keras_model, pairs, row, src_side, dst_side, steps):
    tp = torch_params(torch_model)
    _build_keras(kopt, keras_model)
    lr_by_param = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    step_counts = set()
    any_buffer = False
    for pair in pairs:
        states = [opt.state.get(tp[n], {}) for n in pair.torch]
        if not states[0]:
            continue
        transform = get_transform(pair.transform)
        for key, value in states[0].items():
            if key in _STEP_KEYS:
                step_counts.add(int(to_numpy(value).reshape(-1)[0]))
                continue
            arrays = [to_numpy(s[key]) for s in states]
            dst_key = _state_keys(row, key, src_side, dst_side)
            if np.ndim(arrays[0]) == 0:  # one scalar per parameter (NAdam's mu_product): optimizer-level in Keras
                slot = _keras_slot(kopt, "", dst_key)
                if slot is not None:
                    slot.assign(np.asarray(arrays[0], dtype=slot.dtype))
                continue
            lr = lr_by_param[id(tp[pair.torch[0]])]
            # the merged LSTM bias: both torch biases had the same gradient, so take either state
            moved = transform.to_keras(*arrays, **pair.params) if transform.exact else \
                transform.to_keras(arrays[0], np.zeros_like(arrays[0]), **pair.params)
            for path, a in zip(pair.keras, moved):
                slot = _keras_slot(kopt, path, dst_key)
                if slot is None:
                    raise BadInputError(f"the Keras optimizer {type(kopt).__name__} has no slot {dst_key!r} for {path} "
                                        f"(torch state {key!r})")
                slot.assign(np.asarray(_convert_value(row, key, dst_key, src_side, dst_side, a, lr), slot.dtype))
            any_buffer |= key == "momentum_buffer"
    if len(step_counts) > 1:
        raise BadInputError(f"torch parameters were stepped different numbers of times ({sorted(step_counts)}): "
                            "Keras keeps one iteration counter")
    count = steps if steps is not None else (step_counts.pop() if step_counts else 0)
    micro = opt.param_groups[0].get("iterations")  # an xlate.KerasX counts micro-batches (accumulation)
    for sub in [kopt, *(sub_optimizers(kopt) if hasattr(kopt, "optimizers") else [])]:
        sub._iterations.assign(micro if micro is not None else count * (sub.gradient_accumulation_steps or 1))
    if any_buffer:
        flag = _keras_slot(kopt, "", "momentum_buffer_started")
        if flag is not None:
            flag.assign(1.0)
    return count


def _keras_to_torch_state(kopt, opt, keras_model, torch_model, pairs, row, src_side, dst_side, steps):
    import torch

    tp = torch_params(torch_model)
    if not kopt.built:
        return 0
    count = int(to_numpy(kopt.iterations)) if steps is None else steps
    lr = keras_learning_rate(kopt) if not hasattr(kopt, "optimizers") else None
    owned = {id(p) for g in opt.param_groups for p in g["params"]}
    started = _keras_slot(kopt, "", "momentum_buffer_started")
    buffers_live = started is None or float(to_numpy(started)) > 0
    slot_keys = _keras_slot_keys(kopt)
    for pair in pairs:
        params = [tp[n] for n in pair.torch]
        if any(id(p) not in owned for p in params):
            raise BadInputError(f"torch parameter {pair.torch[0]} is not in the target optimizer's param groups")
        transform = get_transform(pair.transform)
        for key in slot_keys:
            slots = [_keras_slot(kopt, k, key) for k in pair.keras]
            if any(s is None for s in slots):
                continue
            if key == "momentum_buffer" and not buffers_live:
                continue
            dst_key = _state_keys(row, key, src_side, dst_side)
            arrays = transform.to_torch(*(np.asarray(s.numpy()) for s in slots), **pair.params)
            if not transform.exact:  # merged LSTM bias: both torch biases had the same gradient
                arrays = (arrays[0],) * len(params)
            var_lr = lr if lr is not None else keras_learning_rate(_owner(kopt, pair.keras[0]))
            for p, a in zip(params, arrays):
                a = _convert_value(row, key, dst_key, src_side, dst_side, a, var_lr)
                opt.state[p][dst_key] = torch.from_numpy(np.ascontiguousarray(a)).to(p.dtype)
        for key in _keras_scalar_keys(kopt):
            slot = _keras_slot(kopt, "", key)
            dst_key = _state_keys(row, key, src_side, dst_side)
            for p in params:
                opt.state[p][dst_key] = torch.tensor(float(to_numpy(slot)))
        if _keeps_step(opt):
            for p in params:
                opt.state[p]["step"] = torch.tensor(float(count))
    for group in opt.param_groups:
        if "iterations" in group:
            group["iterations"] = int(to_numpy(kopt._iterations)) if steps is None else steps
    return count


def _keeps_step(opt) -> bool:
    """torch SGD keeps no step count; every other torch optimizer (and xlate's) does."""
    import torch

    return not (type(opt) is torch.optim.SGD)


def _owner(kopt, variable_path):
    for sub in sub_optimizers(kopt):
        prefix = f"{variable_path.replace('/', '_')}_"
        if any(v.name.startswith(prefix) for v in sub.variables):
            return sub
    return kopt


def _keras_slot_keys(kopt) -> list[str]:
    """The per-variable slot names a Keras optimizer keeps (momentum, velocity, exp_avg...)."""
    keys = []
    for sub in sub_optimizers(kopt):
        names = {v.name for v in sub.variables}
        for var in getattr(sub, "_trainable_variables", []):
            prefix = f"{var.path.replace('/', '_')}_"
            for n in names:
                if n.startswith(prefix) and n[len(prefix):] not in keys:
                    keys.append(n[len(prefix):])
    return keys


def _keras_scalar_keys(kopt) -> list[str]:
    """Optimizer-level state that torch keeps per parameter (NAdam's mu_product / u_product, ASGD's eta/mu)."""
    keys = []
    for sub in sub_optimizers(kopt):
        keys += [k for k in ("mu_product", *getattr(sub, "scalar_state", ())) if _keras_slot(sub, "", k) is not None
                 and k not in keys]
        if getattr(sub, "_u_product", None) is not None and "u_product" not in keys:
            keys.append("u_product")
    return keys
