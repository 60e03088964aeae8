"""Parameter pairing, weight copying and optimizer-state port between torch and Keras.

Pairing says which torch parameters are which Keras variables, through which named weight
transform (``xlate.transforms``). It comes, in order of preference, from an explicit ``pairing``,
from the conversion record attached to a converted model (``xlate.record.record_of``), or from
walking both models' layers in order and matching each torch module with the Keras layer of the
same table row. The transform always comes from the row's ``weights``.

Optimizer state moves with the weights: every moment, accumulator and momentum buffer has its
parameter's shape in the source layout, so it goes through the parameter's own transform. State
keys are translated through the optimizer row's ``weights`` (torch state key <-> Keras slot),
except between an optimizer and xlate's emulation of it, which share their names.

The helpers the translate_* functions share live here too: the table-row lookup, the ``emulate``
check, a Keras optimizer's sub-optimizers and its current learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInputError
from ..frameworks import framework_of, to_numpy
from ..record import record_of
from ..table import Row, table
from ..transforms import get_transform


@dataclass(frozen=True)
class ParamPair:
    """torch parameter name(s) <-> Keras variable path(s), and the transform between them."""

    torch: tuple[str, ...]
    keras: tuple[str, ...]
    transform: str = "identity"
    row: str | None = None
    params: dict = field(default_factory=dict, hash=False, compare=False)

    def to_keras(self, *torch_arrays):
        return get_transform(self.transform).to_keras(*torch_arrays, **self.params)

    def to_torch(self, *keras_arrays):
        return get_transform(self.transform).to_torch(*keras_arrays, **self.params)


# --- class names as the table spells them ---------------------------------------------------


def torch_class_name(obj) -> str:
    """'torch.nn.Linear', 'torch.optim.Adam', 'xlate.KerasAdam' for an object, as rows name it."""
    import torch

    cls = type(obj)
    if cls.__module__.startswith("xlate."):
        return f"xlate.{cls.__name__}"
    for namespace, prefix in ((torch.nn, "torch.nn"), (torch.optim, "torch.optim"),
                              (torch.optim.lr_scheduler, "torch.optim.lr_scheduler")):
        if getattr(namespace, cls.__name__, None) is cls:
            return f"{prefix}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def keras_class_name(obj) -> str:
    """'keras.layers.Dense', 'keras.optimizers.Adam', 'xlate.TorchAdam' for an object."""
    import keras

    cls = type(obj)
    if cls.__module__.startswith("xlate."):
        return f"xlate.{cls.__name__}"
    for namespace, prefix in ((keras.layers, "keras.layers"), (keras.optimizers, "keras.optimizers"),
                              (keras.optimizers.schedules, "keras.optimizers.schedules"),
                              (keras.losses, "keras.losses"), (keras.callbacks, "keras.callbacks")):
        if getattr(namespace, cls.__name__, None) is cls:
            return f"{prefix}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


# --- walking the models -----------------------------------------------------------------------


def _torch_param_modules(module):
    """(module path, module, {local name: parameter}) for modules that own trainable parameters."""
    out = []
    for path, m in module.named_modules():
        own = {n: p for n, p in m.named_parameters(recurse=False) if p.requires_grad}
        if own:
            out.append((path, m, own))
    return out


def _keras_layers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


def _keras_weight_layers(model):
    """(layer, {short name: variable}) for layers that own trainable variables of ``model``, in the
    order of ``model.trainable_variables`` (Keras's layer walk visits nested models out of order)."""
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    out = []
    for layer in _keras_layers(model):
        own = {v.name: v for v in getattr(layer, "_trainable_variables", []) if id(v) in position}
        if own:
            out.append((layer, own))
    return sorted(out, key=lambda entry: min(position[id(v)] for v in entry[1].values()))


def _pairs_for(row: Row, torch_path: str, torch_own: dict, keras_own: dict) -> list[ParamPair]:
    pairs = []
    for w in row.weights:
        if all(n in torch_own for n in w.torch) and all(n in keras_own for n in w.keras):
            prefix = f"{torch_path}." if torch_path else ""
            pairs.append(ParamPair(tuple(prefix + n for n in w.torch), tuple(keras_own[n].path for n in w.keras),
                                   w.transform, row.id))
    return pairs


def _row_of_module(m) -> Row | None:
    return table().by_torch.get(torch_class_name(m))


def _row_of_layer(layer) -> Row | None:
    return table().by_keras.get(keras_class_name(layer))


def pair_parameters(torch_model, keras_model, pairing=None) -> list[ParamPair]:
    """Pair every trainable torch parameter with its Keras variable(s).

    ``pairing``: optional explicit list of ``(torch name(s), keras path(s), transform[, params])``.
    Otherwise the conversion record of either model is used when present, else both models are
    walked in order and matched layer by layer through the table rows. Raises BadInputError when
    a trainable parameter on either side is left unpaired.
    """
    if pairing is not None:
        pairs = []
        for entry in pairing:
            t, k, transform, *rest = entry
            pairs.append(ParamPair((t,) if isinstance(t, str) else tuple(t), (k,) if isinstance(k, str) else tuple(k),
                                   transform, None, rest[0] if rest else {}))
    else:
        record = record_of(keras_model) or record_of(torch_model)
        pairs = _pairs_from_record(record, torch_model, keras_model) if record is not None and record.layers else None
        if not pairs:
            pairs = _pairs_by_order(torch_model, keras_model)
    _check_complete(pairs, torch_model, keras_model)
    return pairs


def _pairs_from_record(record, torch_model, keras_model) -> list[ParamPair]:
    if record.weights and record.direction == "torch2keras":
        # the converter recorded every ported tensor with its exact transform (flatten -> Linear,
        # depthwise multipliers, attention heads...): pair the trainable ones
        trainable = {n for n, p in torch_model.named_parameters() if p.requires_grad}
        return [ParamPair(w.torch, w.keras, w.transform, None, dict(w.params)) for w in record.weights
                if all(t in trainable for t in w.torch)]
    torch_modules = {path: (m, own) for path, m, own in _torch_param_modules(torch_model)}
    keras_layers = {layer.name: (layer, own) for layer, own in _keras_weight_layers(keras_model)}
    pairs = []
    for lr in record.layers:
        torch_path, keras_name = (lr.source, lr.target) if record.direction == "torch2keras" else (lr.target, lr.source)
        if torch_path not in torch_modules or keras_name not in keras_layers:
            continue
        m, torch_own = torch_modules[torch_path]
        _, keras_own = keras_layers[keras_name]
        row = table().by_id.get(lr.row) if lr.row else _row_of_module(m)
        if row is not None:
            pairs += _pairs_for(row, torch_path, torch_own, keras_own)
    return pairs


def _pairs_by_order(torch_model, keras_model) -> list[ParamPair]:
    torch_side = _torch_param_modules(torch_model)
    keras_side = _keras_weight_layers(keras_model)
    if len(torch_side) != len(keras_side):
        raise BadInputError(
            f"cannot pair the models' parameters: {len(torch_side)} torch module(s) own trainable parameters "
            f"({', '.join(p or '<root>' for p, _, _ in torch_side)}), {len(keras_side)} Keras layer(s) own trainable "
            f"variables ({', '.join(layer.name for layer, _ in keras_side)})",
            hint="pass pairing=[(torch_name, keras_path, transform), ...] or a model converted by xlate")
    pairs = []
    for (path, m, torch_own), (layer, keras_own) in zip(torch_side, keras_side):
        row_t, row_k = _row_of_module(m), _row_of_layer(layer)
        if row_t is None or row_k is None or row_t.id != row_k.id:
            raise BadInputError(
                f"cannot pair torch module {path or '<root>'} ({torch_class_name(m)}) with Keras layer {layer.name} "
                f"({keras_class_name(layer)}): no table row maps one to the other",
                hint="pass pairing=[(torch_name, keras_path, transform), ...]")
        pairs += _pairs_for(row_t, path, torch_own, keras_own)
    return pairs


def _check_complete(pairs, torch_model, keras_model) -> None:
    torch_names = {n for n, p in torch_model.named_parameters() if p.requires_grad}
    keras_paths = {v.path for v in keras_model.trainable_variables}
    paired_t = {n for p in pairs for n in p.torch}
    paired_k = {k for p in pairs for k in p.keras}
    missing = sorted(torch_names - paired_t) + sorted(keras_paths - paired_k)
    unknown = sorted(paired_t - torch_names) + sorted(paired_k - keras_paths)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"unpaired: {', '.join(missing)}")
        if unknown:
            parts.append(f"not trainable parameters of the models: {', '.join(unknown)}")
        raise BadInputError(f"parameter pairing is incomplete ({'; '.join(parts)})",
                            hint="pass pairing=[(torch_name, keras_path, transform), ...]")


# --- weights ------------------------------------------------------------------------------------


def torch_params(torch_model) -> dict:
    return dict(torch_model.named_parameters())


def keras_vars(keras_model) -> dict:
    return {v.path: v for v in keras_model.trainable_variables}


def copy_weights(source, target, pairing=None) -> list[ParamPair]:
    """Copy every paired trainable weight from ``source`` into ``target`` (either direction),
    through the pairs' weight transforms. Returns the pairs used."""
    torch_model, keras_model = (source, target) if framework_of(source) == "torch" else (target, source)
    pairs = pair_parameters(torch_model, keras_model, pairing)
    tp, kv = torch_params(torch_model), keras_vars(keras_model)
    import torch

    with torch.no_grad():
        for pair in pairs:
            if source is torch_model:
                arrays = pair.to_keras(*(to_numpy(tp[n]) for n in pair.torch))
                for path, a in zip(pair.keras, arrays):
                    kv[path].assign(a.astype(kv[path].dtype))
            else:
                arrays = pair.to_torch(*(np.asarray(kv[k].numpy()) for k in pair.keras))
                for name, a in zip(pair.torch, arrays):
                    tp[name].copy_(torch.from_numpy(np.ascontiguousarray(a)).to(tp[name].dtype))
    return pairs


def weight_differences(torch_model, keras_model, pairs) -> dict[str, float]:
    """Max abs difference per pair, compared in the Keras layout: {torch name: error}."""
    tp, kv = torch_params(torch_model), keras_vars(keras_model)
    out = {}
    for pair in pairs:
        expected = pair.to_keras(*(to_numpy(tp[n]) for n in pair.torch))
        err = max(float(np.max(np.abs(e - np.asarray(kv[k].numpy())))) if e.size else 0.0
                  for e, k in zip(expected, pair.keras))
        out[",".join(pair.torch)] = err
    return out


# --- shared by translate_optimizer / translate_loss / translate_schedule ---------------------


EMULATE = ("auto", "always", "never")


def check_emulate(emulate: str) -> None:
    """The ``emulate`` argument of translate_loss / translate_schedule."""
    if emulate not in EMULATE:
        raise BadInputError(f"emulate must be auto, always or never, got {emulate!r}")


def row_named(name: str, index: dict, families: tuple[str, ...] | None, what: str, hint: str) -> Row:
    """The row ``index`` (``table().by_torch`` / ``by_keras``) holds for class ``name``, of one of
    ``families`` (None: any family); else BadInputError "no {what} row for {name}" with ``hint``."""
    row = index.get(name)
    if row is None or (families is not None and row.family not in families):
        raise BadInputError(f"no {what} row for {name}", hint=hint)
    return row


# --- optimizer state --------------------------------------------------------------------------


def optimizer_row(optimizer) -> tuple[Row, str]:
    """(row, formula side) of an optimizer: side 'torch' for torch.optim.X and xlate.TorchX,
    'keras' for keras.optimizers.X and xlate.KerasX."""
    fw = "torch" if _is_torch_optimizer(optimizer) else "keras"
    name = torch_class_name(optimizer) if fw == "torch" else keras_class_name(optimizer)
    index = table().by_torch if fw == "torch" else table().by_keras
    row = row_named(name, index, ("optimizer",), "optimizer",
                    "`xlate table --family optimizer` lists the optimizers xlate translates")
    emulation = name.startswith("xlate.")
    side = ("keras" if emulation else "torch") if fw == "torch" else ("torch" if emulation else "keras")
    return row, side


def _is_torch_optimizer(obj) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.optim.Optimizer)


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


def sub_optimizers(optimizer) -> list:
    """The optimizers inside a Keras MultiOptimizer, else ``[optimizer]``."""
    return list(getattr(optimizer, "optimizers", None) or [optimizer])


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


def keras_learning_rate(optimizer) -> float:
    """A Keras optimizer's current learning rate (a schedule's value at its step) as a float."""
    import keras

    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _build_keras(optimizer, keras_model) -> None:
    if not optimizer.built:
        optimizer.build(keras_model.trainable_variables)


_STEP_KEYS = ("step",)


def check_pairing(torch_model, keras_model, pairs, atol: float = 1e-5) -> None:
    """Raise unless every paired weight, moved through its transform, equals its counterpart: a
    wrong pairing (or models whose weights were never synced) would port the state to the wrong
    places silently otherwise."""
    bad = {name: err for name, err in weight_differences(torch_model, keras_model, pairs).items() if err > atol}
    if bad:
        worst = ", ".join(f"{n} ({e:.3g})" for n, e in sorted(bad.items(), key=lambda kv: -kv[1])[:5])
        raise BadInputError(f"the models' weights differ after the pairing's transforms: {worst}",
                            hint="port the state between a model and its conversion (or copy the weights first with "
                                 "xlate.training.state.copy_weights); a Linear after a channels-first flatten needs "
                                 "pairing=[(name, path, 'flatten_dense_kernel', {'chw': (C, H, W)})]")


def port_optimizer_state(source_optimizer, target_optimizer, source_model, target_model, *, pairing=None,
                         steps: int | None = None) -> int:
    """Move every moment, accumulator, momentum buffer and the step count from ``source_optimizer``
    (bound to ``source_model``) into ``target_optimizer`` (bound to ``target_model``), through the
    weight transforms, so training resumed on the target continues the source's trajectory.

    The two models must hold the same weights (checked: that is what proves the pairing).
    ``steps`` sets the step count where the source keeps none (torch SGD). Returns the number of
    optimizer steps the state carries.
    """
    torch_model, keras_model = (source_model, target_model) if _is_torch_optimizer(source_optimizer) else \
        (target_model, source_model)
    pairs = pair_parameters(torch_model, keras_model, pairing)
    check_pairing(torch_model, keras_model, pairs)
    src_row, src_side = optimizer_row(source_optimizer)
    dst_row, dst_side = optimizer_row(target_optimizer)
    if (src_row.id != dst_row.id and {src_row.id, dst_row.id} != {"adam", "adamw"}) or src_row.id == "adafactor":
        raise BadInputError(f"cannot port {src_row.id} state into a {dst_row.id} optimizer (Adafactor's factored "
                            "moments are laid out per framework)")
    if _is_torch_optimizer(source_optimizer):
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
