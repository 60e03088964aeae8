"""Parameter pairing and weight copying between a torch model and a Keras model.

Pairing says which torch parameters are which Keras variables, through which named weight
transform (``xlate.transforms``). It comes, in order of preference, from an explicit ``pairing``,
from the conversion record attached to a converted model (``xlate.record.record_of``), or from
walking both models' layers in order and matching each torch module with the Keras layer of the
same table row. The transform always comes from the row's ``weights``.

Owns the pairs and moving weights through them; the optimizer state port (``state.py``) builds
on it. It must not import the state port or any translate_* module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInputError
from ..frameworks import framework_of, to_numpy
from ..record import record_of
from ..table import Row, table
from ..transforms import get_transform
from .lookup import keras_class_name, torch_class_name


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


def check_pairing(torch_model, keras_model, pairs, atol: float = 1e-5) -> None:
    """Raise unless every paired weight, moved through its transform, equals its counterpart: a
    wrong pairing (or models whose weights were never synced) would port the state to the wrong
    places silently otherwise."""
    bad = {name: err for name, err in weight_differences(torch_model, keras_model, pairs).items() if err > atol}
    if bad:
        worst = ", ".join(f"{n} ({e:.3g})" for n, e in sorted(bad.items(), key=lambda kv: -kv[1])[:5])
        raise BadInputError(f"the models' weights differ after the pairing's transforms: {worst}",
                            hint="port the state between a model and its conversion (or copy the weights first with "
                                 "xlate.training.pairing.copy_weights); a Linear after a channels-first flatten needs "
                                 "pairing=[(name, path, 'flatten_dense_kernel', {'chw': (C, H, W)})]")
