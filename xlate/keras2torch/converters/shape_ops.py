"""keras.ops calls and Keras layers that index, split, combine or reshape tensors: gather/take,
split, concatenate, reshape, permute, squeeze/expand_dims, broadcast, repeat, slicing.

Axis arguments are remapped through the layout plan where the op can follow a layout; reshape,
slicing and the like ask for the Keras layout. Owns these converters only; operand handling lives
in ``operands.py``, and this module must not import the emitter or another converter family.
"""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import NotConvertible, converter
from ..source import Code, call, literal
from ..walk import Ref
from .operands import as_array, axes_of, constant, dims_source, scalar


@converter("gather")
def gather(em, node, row):
    axis = node.config.get("axis")
    x = em.in_layout(node.args[0], "keras")
    if axis is None:
        raise NotConvertible("take_along_axis without an axis")
    idx = node.args[1]
    if isinstance(idx, Ref):
        v = em.in_layout(idx, "keras")
        isrc = v.var if v.dtype == "int64" else f"{v.var}.long()"
    else:
        isrc = f"self.{em.buffer(f'{node.name}_indices', np.asarray(as_array(idx), dtype=np.int64))}"
    em.assign(node, call("torch.take_along_dim", Code(x.var), Code(isrc), dim=axis % x.rank))


@converter("index", "select")
def take(em, node, row):
    axis = node.config.get("axis")
    indices = node.args[1] if len(node.args) > 1 else node.kwargs.get("indices")
    if axis is None:
        x = em.input(node, 0, "keras")
        src, axis_dim, perm_in = f"{x.var}.flatten()", 0, (0,)
    else:
        x = em.input(node, 0)
        src, axis_dim, perm_in = x.var, x.dim(axis), x.perm
    plain = as_array(indices) if not isinstance(indices, Ref) else None
    if plain is not None and not isinstance(plain, np.ndarray):
        # one integer: a select, which drops the axis (the select row)
        em.use_row(em.row("select"))
        out_perm = plan.drop_axes(perm_in, (perm_in[axis_dim],))
        em.assign(node, f"{src}.select({axis_dim}, {int(plain)})", out_perm)
        return
    if isinstance(indices, Ref):
        v = em.in_layout(indices, "keras")
        isrc = v.var if "int" in v.dtype else f"{v.var}.long()"
    else:
        arr = np.asarray(plain, dtype=np.int64)
        isrc = literal(arr.tolist()) if arr.ndim == 1 and arr.size <= 16 else \
            f"self.{em.buffer(f'{node.name}_indices', arr)}"
    if axis is not None and not plan.is_identity(x.perm):
        x = em.input(node, 0, "keras")
        src, axis_dim = x.var, axis % x.rank
    index = ", ".join([":"] * axis_dim + [isrc])
    em.assign(node, f"{src}[{index}]")


@converter("split")
def split(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    cfg = node.config
    x = em.input(node, 0)
    axis = cfg.get("axis", 0)
    dim = x.dim(axis)
    if name == "unstack":
        em.assign_many(node, f"torch.unbind({x.var}, dim={dim})", [plan.drop_axes(x.perm, (axis % x.rank,))] *
                       len(node.outputs))
        return
    sections = cfg["indices_or_sections"]
    sections = list(sections) if isinstance(sections, (list, tuple)) else int(sections)
    em.assign_many(node, call("torch.tensor_split", Code(x.var), sections, dim=dim), [x.perm] * len(node.outputs))


# --- combining and reshaping --------------------------------------------------------------------


@converter("cat")
def cat(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    tensors = list(node.args[0])
    axis = node.config.get("axis", -1 if name == "Concatenate" else 0)
    if name == "stack":
        srcs = [em.in_layout(t, "keras").var for t in tensors]
        em.assign(node, f"torch.stack([{', '.join(srcs)}], dim={axis})")
        return
    values = [em.value(t) for t in tensors if isinstance(t, Ref)]
    perm = next((v.perm for v in values if not plan.is_identity(v.perm) and v.flat_chw is None),
                plan.identity(values[0].rank))
    srcs = [em.in_layout(t, perm).var if isinstance(t, Ref) else constant(em, node, t, perm) for t in tensors]
    dim = plan.torch_dim(perm, axis)
    em.assign(node, f"torch.cat([{', '.join(srcs)}], dim={dim})", perm)


def _same_order(v) -> bool:
    """True when the torch tensor holds its elements in Keras order (only size-1 axes moved)."""
    moved = [p for p in v.perm if v.shape[p] != 1]
    return moved == sorted(moved)


@converter("reshape")
def reshape(em, node, row):
    out = em.graph.tensors[node.outputs[0]]
    raw = em.value(node.inputs[0])
    x = raw if raw.flat_chw is None and _same_order(raw) else em.input(node, 0, "keras")
    shape = out.shape
    if all(d is not None for d in shape[1:]):
        target = [-1, *shape[1:]]
        # a (N, 1, 1, C) result read by convolutions: (N, C, 1, 1) is the same memory
        if out.rank >= 3 and all(d == 1 for d in shape[1:-1]) and em._wants_channels_first(out.id):
            cf = plan.channels_first(out.rank)
            em.assign(node, call(f"{x.var}.reshape", *[-1, *plan.torch_shape(cf, shape)[1:]]), cf)
            return
        em.assign(node, call(f"{x.var}.reshape", *target))
        return
    target = node.config.get("target_shape") or node.config.get("newshape")
    if target is None:
        raise NotConvertible("reshape to a shape that is not static")
    if node.kind == "keras.layers.Reshape":
        em.assign(node, call(f"{x.var}.reshape", Code(f"{x.var}.shape[0]"), *target))
    else:
        em.assign(node, call(f"{x.var}.reshape", *target))


def _keras_permutation(node, rank) -> tuple[int, ...]:
    cfg = node.config
    name = node.kind.rsplit(".", 1)[-1]
    if name == "Permute":
        return (0, *cfg["dims"])
    if name == "transpose":
        axes = cfg.get("axes")
        return tuple(reversed(range(rank))) if axes is None else tuple(a % rank for a in axes)
    if name == "swapaxes":
        order = list(range(rank))
        a, b = cfg["axis1"] % rank, cfg["axis2"] % rank
        order[a], order[b] = order[b], order[a]
        return tuple(order)
    if name == "moveaxis":
        src = axes_of(cfg["source"], rank)
        dst = axes_of(cfg["destination"], rank)
        order = [a for a in range(rank) if a not in src]
        for d, s in sorted(zip(dst, src)):
            order.insert(d, s)
        return tuple(order)
    raise NotConvertible(f"no permutation rule for {node.kind}")


@converter("permute")
def permute(em, node, row):
    """A transpose only relabels the layout: no statement until a consumer needs a particular one."""
    x = em.input(node, 0)
    keras_perm = _keras_permutation(node, x.rank)
    inv = plan.inverse(keras_perm)
    em.alias(node, x)
    v = em.values[node.outputs[0]]
    v.perm = tuple(inv[p] for p in x.perm)
    for alt in v.alts.values():
        em._live[alt] -= 1
    v.alts = {}


@converter("squeeze")
def squeeze(em, node, row):
    x = em.input(node, 0)
    axis = node.config.get("axis")
    axes = axes_of(axis, x.rank)
    if axes is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    dims = tuple(sorted(x.dim(a) for a in axes))
    em.assign(node, f"{x.var}.squeeze({literal(dims_source(dims))})", plan.drop_axes(x.perm, axes))


@converter("unsqueeze")
def unsqueeze(em, node, row):
    x = em.input(node, 0, "keras")
    out_rank = em.graph.tensors[node.outputs[0]].rank
    axes = sorted(axes_of(node.config["axis"], out_rank))
    expr = x.var
    for a in axes:
        expr = f"{expr}.unsqueeze({a})"
    em.assign(node, expr)


@converter("expand")
def expand(em, node, row):
    x = em.input(node, 0, "keras")
    shape = tuple(-1 if d is None else int(d) for d in node.config["shape"])
    em.assign(node, call("torch.broadcast_to", Code(x.var), shape))


@converter("repeat")
def repeat(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    cfg = node.config
    if name == "RepeatVector":
        x = em.input(node, 0, "keras")
        em.assign(node, f"{x.var}.unsqueeze(1).repeat(1, {int(cfg['n'])}, 1)")
        return
    if name == "tile":
        x = em.input(node, 0, "keras")
        em.assign(node, call("torch.tile", Code(x.var), tuple(int(r) for r in cfg["repeats"])))
        return
    x = em.input(node, 0)
    axis = cfg.get("axis")
    repeats = cfg["repeats"]
    repeats = list(repeats) if isinstance(repeats, (list, tuple)) else int(repeats)
    if axis is None:
        x = em.input(node, 0, "keras")
        em.assign(node, call("torch.repeat_interleave", Code(f"{x.var}.flatten()"), repeats), (0,))
        return
    em.assign(node, call(f"{x.var}.repeat_interleave", repeats, dim=x.dim(axis)), x.perm)


def _index_source(em, key) -> str:
    if isinstance(key, (tuple, list)):  # a tuple saved in a .keras config comes back a list
        return ", ".join(_index_source(em, k) for k in key) if key else "()"
    if isinstance(key, slice):
        if key.step is not None and scalar(key.step) < 0:
            raise NotConvertible("slicing with a negative step")
        parts = ["" if p is None else str(scalar(p)) for p in (key.start, key.stop)]
        text = ":".join(parts)
        if key.step is not None:
            text += f":{scalar(key.step)}"
        return text
    if key is None:
        return "None"
    if key is Ellipsis:
        return "..."
    if isinstance(key, Ref):
        return em.in_layout(key, "keras").var
    return literal(scalar(key))


@converter("slice")
def slicing(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    x = em.input(node, 0, "keras")
    if name == "get_item":
        key = node.args[1]
        em.assign(node, f"{x.var}[{_index_source(em, key)}]")
        return
    if name == "slice":
        starts = [int(s) for s in as_array(node.args[1] if len(node.args) > 1 else node.kwargs["start_indices"])]
        sizes = [int(s) for s in as_array(node.args[2] if len(node.args) > 2 else node.kwargs["shape"])]
        parts = [f"{s}:{s + n}" if n != -1 else f"{s}:" for s, n in zip(starts, sizes)]
        em.assign(node, f"{x.var}[{', '.join(parts)}]")
        return
    raise NotConvertible(f"{node.kind} is not converted")
