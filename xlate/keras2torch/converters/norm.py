"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization, RMSNormalization.

Epsilon is always passed explicitly (Keras defaults to 1e-3, torch to 1e-5), and so is the
BatchNorm momentum, whose convention is inverted (torch = 1 - Keras).
"""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import NotConvertible, converter
from ..source import call


def _axes(axis, rank: int) -> list[int]:
    axis = axis if isinstance(axis, (list, tuple)) else [axis]
    return sorted(a % rank for a in axis)


def _fill_missing(em, attr: str, arrays: dict, size, center: bool, scale: bool, keras_names=("gamma", "beta")):
    """torch has one ``affine`` switch where Keras has ``scale`` and ``center``: the missing one is
    fixed at 1 (or 0) and frozen, so it neither changes the output nor trains."""
    frozen = []
    gamma, beta = keras_names
    if center and not scale:
        arrays[gamma] = np.ones(size, np.float32)
        frozen.append("weight")
    if scale and not center:
        arrays[beta] = np.zeros(size, np.float32)
        frozen.append("bias")
    for name in frozen:
        em.init_lines.append(f"self.{attr}.{name}.requires_grad_(False)  # Keras has no {name} here")


@converter("batch_norm", masks=True)
def batch_norm(em, node, row):
    cfg = node.config
    if node.kwargs.get("mask") is not None:
        em.notes.append(f"{node.name}: Keras computes training-mode batch statistics over the unmasked steps "
                        "only; torch's BatchNorm in training mode uses every step (inference is exact)")
    if cfg.get("renorm"):
        raise NotConvertible("renorm=True")
    rank = em.graph.tensors[node.inputs[0]].rank
    axes = _axes(cfg["axis"], rank)
    if len(axes) != 1:
        raise NotConvertible(f"normalization over axes {axes}")
    axis = axes[0]
    if axis == rank - 1:
        x = em.input(node, 0, "cf")
    elif axis == 1:
        x = em.input(node, 0, "keras")
    else:
        raise NotConvertible(f"batch normalization over axis {axis} of a rank-{rank} tensor")
    arrays = em.keras_weights(node.op)
    channels = int(arrays["moving_mean"].shape[0])
    center, scale = bool(cfg["center"]), bool(cfg["scale"])
    kwargs = {"eps": float(cfg["epsilon"]), "momentum": row.to_torch_value("momentum", float(cfg["momentum"]))}
    if not center and not scale:
        kwargs["affine"] = False
    dims = {2: 1, 3: 1, 4: 2, 5: 3}.get(rank)
    if dims is None:
        raise NotConvertible(f"batch normalization of a rank-{rank} tensor")
    attr = em.module(node, call(f"nn.BatchNorm{dims}d", channels, **kwargs))
    if center or scale:
        _fill_missing(em, attr, arrays, channels, center, scale)
    em.port(row, attr, arrays)
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)


@converter("layer_norm")
def layer_norm(em, node, row):
    cfg = node.config
    raw = em.value(node.inputs[0])
    axes = _axes(cfg["axis"], raw.rank)
    if axes != list(range(raw.rank - len(axes), raw.rank)):
        raise NotConvertible(f"normalization over non-trailing axes {axes}")
    x = em.input(node, 0, "keras")
    if cfg.get("rms_scaling"):
        if any(x.shape[a] is None for a in axes):
            raise NotConvertible("RMS-scaled layer normalization over a dynamic size")
        return _variance_scaling(em, node, row, x, axes, tuple(int(x.shape[a]) for a in axes))
    center, scale = bool(cfg["center"]), bool(cfg["scale"])
    if any(x.shape[a] is None for a in axes):
        if center or scale:
            raise NotConvertible("layer normalization with weights over a dynamic size")
        # no weights: the normalized sizes are read from the tensor at run time
        em.assign(node, f"F.layer_norm({x.var}, {x.var}.shape[-{len(axes)}:], eps={float(cfg['epsilon'])!r})",
                  plan.identity(x.rank))
        return
    shape = tuple(int(x.shape[a]) for a in axes)
    kwargs = {"eps": float(cfg["epsilon"])}
    if not center and not scale:
        kwargs["elementwise_affine"] = False
    elif not center:
        kwargs["bias"] = False
    attr = em.module(node, call("nn.LayerNorm", shape[0] if len(shape) == 1 else shape, **kwargs))
    arrays = em.keras_weights(node.op)
    if center and not scale:
        _fill_missing(em, attr, arrays, shape, center, scale)
    em.port(row, attr, arrays)
    em.assign(node, f"self.{attr}({x.var})", plan.identity(x.rank), module=attr)


@converter("group_norm")
def group_norm(em, node, row):
    cfg = node.config
    rank = em.graph.tensors[node.inputs[0]].rank
    axis = cfg["axis"] % rank
    if axis == rank - 1:
        x = em.input(node, 0, "cf")
    elif axis == 1:
        x = em.input(node, 0, "keras")
    else:
        raise NotConvertible(f"group normalization over axis {axis}")
    channels = int(x.shape[axis])
    groups = channels if cfg["groups"] == -1 else int(cfg["groups"])
    center, scale = bool(cfg["center"]), bool(cfg["scale"])
    kwargs = {"eps": float(cfg["epsilon"])}
    if not center and not scale:
        kwargs["affine"] = False
    attr = em.module(node, call("nn.GroupNorm", groups, channels, **kwargs))
    arrays = em.keras_weights(node.op)
    if center or scale:
        _fill_missing(em, attr, arrays, channels, center, scale)
    em.port(row, attr, arrays)
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)


@converter("rms_norm")
def rms_norm(em, node, row):
    cfg = node.config
    raw = em.value(node.inputs[0])
    axes = _axes(cfg.get("axis", -1), raw.rank)
    if axes != list(range(raw.rank - len(axes), raw.rank)):
        raise NotConvertible(f"RMS normalization over non-trailing axes {axes}")
    x = em.input(node, 0, "keras")
    shape = tuple(int(x.shape[a]) for a in axes)
    attr = em.module(node, call("nn.RMSNorm", shape[0] if len(shape) == 1 else shape, eps=float(cfg["epsilon"])))
    em.port(row, attr, em.keras_weights(node.op))
    em.assign(node, f"self.{attr}({x.var})", plan.identity(x.rank), module=attr)


def _variance_scaling(em, node, row, x, axes, shape):
    """Keras' deprecated LayerNormalization(rms_scaling=True): x * rsqrt(var(x) + eps) * gamma
    (the variance, not the mean square, and no beta): no torch layer, written out."""
    arrays = em.keras_weights(node.op)
    dims = tuple(range(x.rank - len(axes), x.rank))
    var = call(f"{x.var}.var", dim=dims[0] if len(dims) == 1 else dims, unbiased=False, keepdim=True)
    expr = f"{x.var} * torch.rsqrt({var} + {float(node.config['epsilon'])!r})"
    if "gamma" in arrays:
        gamma = em.parameter(f"{node.name}_gamma", np.asarray(arrays["gamma"]).reshape(shape))
        expr = f"{expr} * self.{gamma}"
    em.assign(node, expr, comment="Keras rms_scaling=True scales by the variance (deprecated in Keras)")
