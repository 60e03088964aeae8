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
from ..helpers import register_helper
from ..registry import NotConvertible, converter
from ..source import Code, call, literal, torch_fn_name
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
    if name in _WRITTEN_OUT:
        return em.row(key), {}, _written_out(em, name, params, perm)
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


# Keras activations torch has no function for: their formulas, term by term (TensorFlow backend)
_WRITTEN_OUT = ("sparse_plus", "sparse_sigmoid", "squareplus", "sparsemax", "exponential")


def _written_out(em, name: str, params: dict, perm):
    def expr(x: str) -> str:
        if name == "exponential":
            return f"torch.exp({x})"
        if name == "sparse_plus":
            return f"torch.where({x} <= -1, 0.0, torch.where({x} < 1, 0.25 * ({x} + 1) ** 2, {x}))"
        if name == "sparse_sigmoid":
            return f"(0.5 * ({x} + 1)).clamp(0.0, 1.0)"
        if name == "squareplus":
            return f"({x} + torch.sqrt({x} ** 2 + {literal(float(params.get('b', 4)))})) / 2"
        axis = params.get("axis", -1)
        em.helpers.add("sparsemax")
        return f"sparsemax({x}, dim={plan.torch_dim(perm, axis) if perm is not None else axis})"

    return expr


register_helper("sparsemax", '''
def sparsemax(x, dim=-1):
    """Keras' sparsemax as its TensorFlow backend computes it: the support from the sorted
    logits, tau from the sum of the support's cumulative sums."""
    z = x.sort(dim=dim, descending=True).values
    cumsum = z.cumsum(dim)
    shape = [1] * x.dim()
    shape[dim] = -1
    r = torch.arange(1, x.shape[dim] + 1, dtype=x.dtype, device=x.device).reshape(shape)
    support = z - (cumsum - 1) / r > 0
    k = support.to(x.dtype).sum(dim, keepdim=True)
    tau = (torch.where(support, cumsum, 0.0).sum(dim, keepdim=True) - 1) / k
    return (x - tau).clamp(min=0.0)
''')


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


@converter("activation", "axis_activation", masks=True)
def activation(em, node, row):
    if node.kwargs.get("mask") is not None:
        if node.kind != "keras.layers.Softmax":
            raise NotConvertible("a Keras mask reaches this activation layer")
        return _masked_softmax(em, node)
    x = em.input(node, 0)
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


def _masked_softmax(em, node):
    """Keras Softmax with a mask: masked positions get -1e9 before the softmax and 0 after."""
    x = em.input(node, 0, "keras")
    m = em.in_layout(node.kwargs["mask"], "keras")
    keep = m.var if m.dtype == "bool" else f"({m.var} > 0.5)"
    axis = node.config["axis"]
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    dims = tuple(a % x.rank for a in axes)
    masked = em.pre(node, f"torch.where({keep}, {x.var}, -1e9)", "Keras: masked positions get -1e9")
    if len(dims) == 1:
        soft = f"torch.softmax({masked}, dim={dims[0]})"
    else:
        soft = f"torch.exp({masked} - torch.logsumexp({masked}, dim={dims}, keepdim=True))"
    em.assign(node, f"torch.where({keep}, {soft}, 0.0)", comment="and 0 after, even for a fully masked row")
