"""Activations: Keras activation layers, activation strings and keras.ops activation functions.

Every Keras parameter is passed to torch explicitly (Keras defaults such as the 0.2 slope of the
'leaky_relu' string or the exact 'gelu' string never depend on torch's own defaults). Keras
layers become torch modules (``self.conv1_relu = nn.ReLU()``); activations fused into another
layer (``Dense(activation='gelu')``) and keras.ops calls become functional calls.
"""

from __future__ import annotations

import inspect

import numpy as np

from .. import plan
from ..codegen import Code, call, literal, torch_fn_name
from ..registry import NotConvertible, converter
from .operands import layout_constant

_AXIS_ARGS = {"softmax", "log_softmax", "glu"}


def _keras_defaults(name: str) -> dict:
    import keras

    try:
        fn = keras.activations.get(name)
    except (ValueError, TypeError):
        raise NotConvertible(f"unknown activation {name!r}") from None
    params = {}
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.default is inspect.Parameter.empty:
            raise NotConvertible(f"activation {name!r} needs argument {p.name}")
        params[p.name] = p.default
    return params


def _resolve(em, key: str, params: dict, perm) -> tuple:
    """(row, torch kwargs, special expression builder or None) for an activation key."""
    name = key.split(":", 1)[1] if key.startswith("activation:") else key.rsplit(".", 1)[-1]
    params = {**_keras_defaults(name), **params} if key.startswith("activation:") else dict(params)
    if name in ("relu", "re_lu"):
        return _relu(em, params)
    row = em.row(key)
    kwargs = {}
    for a in row.args:
        if not a.torch or not a.keras or "-" in (a.torch, a.keras) or a.keras not in params:
            continue
        value = params[a.keras]
        if a.keras == "axis":
            if isinstance(value, (list, tuple)):
                if len(value) != 1:
                    raise NotConvertible(f"{name} over several axes {value}")
                value = value[0]
            value = plan.torch_dim(perm, value)
        elif a.keras == "approximate":
            value = "tanh" if value else "none"
        else:
            value = row.to_torch_value(a.keras, value)
        kwargs[a.torch] = value
    if name == "leaky_relu" and "negative_slope" not in kwargs:
        kwargs["negative_slope"] = float(params.get("negative_slope", 0.2))
    return row, kwargs, None


def _relu(em, params: dict):
    slope = float(params.get("negative_slope") or 0.0)
    max_value = params.get("max_value")
    threshold = float(params.get("threshold") or 0.0)
    if threshold == 0.0 and slope == 0.0:
        if max_value is None:
            return em.row("relu"), {}, None
        if float(max_value) == 6.0:
            return em.row("relu6"), {}, None
    if threshold == 0.0 and max_value is None:
        return em.row("leaky_relu"), {"negative_slope": slope}, None

    def expr(x: str) -> str:
        # Keras ReLU(negative_slope, max_value, threshold), term by term
        pos = f"{x} * ({x} > {literal(threshold)})" if threshold else f"torch.relu({x})"
        if max_value is not None:
            pos = f"({pos}).clamp(max={literal(float(max_value))})"
        if slope:
            neg = f"torch.relu({literal(threshold)} - {x})" if threshold else f"torch.relu(-{x})"
            pos = f"{pos} - {literal(slope)} * {neg}"
        return pos

    return em.row("relu"), {}, expr


def functional_activation(em, key: str, params: dict, x: str, perm) -> str:
    """Source of the activation ``key`` applied to expression ``x`` (counts the row)."""
    row, kwargs, special = _resolve(em, key, params, perm)
    em.use_row(row)
    if row.id == "linear_activation":
        return x
    if special is not None:
        return special(x)
    if not row.torch_fn:
        raise NotConvertible(f"row {row.id} names no torch function")
    return call(torch_fn_name(row.torch_fn), Code(x), **kwargs)


def _module_ctor(row, kwargs) -> str:
    cls = row.torch.split("(")[0]
    if not cls.startswith("torch.nn."):
        return ""
    return call(torch_fn_name(cls), **kwargs)


def _layer_params(node) -> dict:
    cfg = node.config
    return {k: v for k, v in cfg.items() if k in ("negative_slope", "max_value", "threshold", "alpha", "axis")}


@converter("activation", "axis_activation")
def activation(em, node, row):
    x = em.input(node, 0)
    if any(k == "mask" and v is not None for k, v in node.kwargs.items()):
        raise NotConvertible("a Keras mask argument is not converted")
    if node.kind.startswith("keras.ops."):
        params = {k: v for k, v in node.config.items() if k != "name"}
        if node.kind == "keras.ops.relu6":
            params = {}
        expr = functional_activation(em, node.kind, params, x.var, x.perm)
        em.assign(node, expr, x.perm)
        return
    if node.kind == "activation:linear":
        em.use_row(row)
        em.alias(node, x)
        return
    params = {} if node.kind.startswith("activation:") else _layer_params(node)
    key = node.kind if node.kind.startswith("activation:") else f"activation:{row.keras_op or row.id}"
    if node.kind == "keras.layers.ReLU":
        key = "activation:relu"
    resolved_row, kwargs, special = _resolve(em, key, params, x.perm)
    em.use_row(resolved_row)
    ctor = _module_ctor(resolved_row, kwargs) if special is None else ""
    if not ctor:
        expr = special(x.var) if special is not None else call(torch_fn_name(resolved_row.torch_fn), Code(x.var),
                                                                **kwargs)
        em.assign(node, expr, x.perm)
        return
    attr = em.module(node, ctor)
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)


@converter("prelu")
def prelu(em, node, row):
    arrays = em.keras_weights(node.op)
    alpha = arrays["alpha"]
    rank = alpha.ndim + 1  # alpha covers every axis but the batch
    shared = [d == 1 for d in alpha.shape]
    if all(shared) or (alpha.ndim >= 1 and all(shared[:-1])):
        # one slope, or one per channel (the last Keras axis): torch's PReLU over dim 1
        x = em.input(node, 0, "cf") if not all(shared) else em.input(node, 0)
        count = 1 if all(shared) else int(alpha.shape[-1])
        attr = em.module(node, call("nn.PReLU", count) if count > 1 else "nn.PReLU()")
        em.port(row, attr, arrays, params={"prelu_alpha": {"spatial_rank": rank - 2}})
        em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)
        return
    # a slope per element: no torch module has it; a parameter laid out like the input
    x = em.input(node, 0)
    full = np.asarray(alpha, dtype=np.float32)
    param = em.parameter(f"{node.name}_alpha", _element_alpha(full, x.perm))
    em.assign(node, f"torch.where({x.var} >= 0, {x.var}, self.{param} * {x.var})", x.perm)


def _element_alpha(alpha: np.ndarray, perm) -> np.ndarray:
    # alpha has the input shape without the batch axis: add it, lay it out, drop it again
    return layout_constant(alpha[None], perm)[0]
