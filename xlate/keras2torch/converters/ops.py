"""keras.ops calls inside functional graphs, and the Keras merge/reshape layers that share their rows.

Elementwise ops keep their inputs' layout (constants are laid out to match); axis-taking ops
have their axes remapped through the layout plan; ops that cannot follow a layout (matmul,
einsum, reshape, slicing) ask for the Keras layout and get one explicit permute if needed.
"""

from __future__ import annotations

import numpy as np

from .. import plan
from ..codegen import Code, call, literal, torch_dtype
from ..registry import NotConvertible, converter
from ..walk import Ref
from .core import layout_constant

# --- operands -----------------------------------------------------------------------------------


def _as_array(x):
    """A non-tensor operand as a NumPy array (Python scalars stay scalars)."""
    if isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # a backend tensor (a folded Keras constant)
        import keras

        return keras.ops.convert_to_numpy(x)
    return np.asarray(x)


def _arange_source(array: np.ndarray) -> str | None:
    """``torch.arange(...)`` for a 1-D evenly spaced constant (keras.ops.arange is folded to one)."""
    if array.ndim != 1 or array.size < 2 or array.dtype.kind not in "iuf":
        return None
    step = array[1] - array[0]
    if step == 0 or not np.array_equal(array, array[0] + step * np.arange(array.size, dtype=array.dtype)):
        return None
    start, stop = array[0].item(), (array[0] + step * array.size).item()
    dtype = torch_dtype(str(array.dtype))
    args = [start, stop] if start != 0 else [stop]
    if step != 1:
        args = [start, stop, step.item()]
    return call("torch.arange", *args, dtype=Code(dtype))


def constant(em, node, x, perm, name: str = "const") -> str:
    """Source for a constant operand broadcast against a tensor laid out as ``perm``."""
    x = _as_array(x)
    if not isinstance(x, np.ndarray):
        return literal(x)
    if x.ndim == 0:
        return literal(x.item())
    if plan.is_identity(perm) or x.ndim == 1 and len(perm) <= 1:
        source = _arange_source(x)
        if source is not None:
            em.use_row(em.row("arange"))
            return source
    return f"self.{em.buffer(f'{node.name}_{name}', layout_constant(x, perm))}"


def elementwise_inputs(em, node, operands) -> tuple[list[str], plan.Perm]:
    """Sources of elementwise operands in one common layout (chosen from the tensor operands)."""
    rank = em.graph.tensors[node.outputs[0]].rank
    tensors = [em.value(o) for o in operands if isinstance(o, Ref)]
    perm = plan.identity(rank)
    for v in tensors:
        if v.rank == rank and not plan.is_identity(v.perm) and v.flat_chw is None:
            perm = v.perm
            break
    if any(v.rank not in (0, rank) for v in tensors):
        perm = plan.identity(rank)  # NumPy broadcasting of a lower-rank tensor: stay in the Keras layout
    out = []
    for i, o in enumerate(operands):
        if isinstance(o, Ref):
            v = em.value(o)
            out.append(em.in_layout(o, perm if v.rank == rank else "keras").var)
        else:
            out.append(constant(em, node, o, perm, f"operand{i}" if len(operands) > 1 else "const"))
    return out, perm


def _parens(src: str) -> str:
    return src if src.replace("_", "").replace(".", "").isalnum() else f"({src})"


# --- elementwise ---------------------------------------------------------------------------------

_BINARY_OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "true_divide": "/",
                     "power": "**", "Add": "+", "Subtract": "-", "Multiply": "*"}
_BINARY_FUNCTIONS = {"maximum": "torch.maximum", "minimum": "torch.minimum", "logical_and": "torch.logical_and",
                     "logical_or": "torch.logical_or", "Maximum": "torch.maximum", "Minimum": "torch.minimum"}
_COMPARE = {"equal": "==", "not_equal": "!=", "less": "<", "less_equal": "<=", "greater": ">",
            "greater_equal": ">="}


@converter("binary")
def binary(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    operands = list(node.args[0]) if node.kind.startswith("keras.layers.") else list(node.args[:2])
    srcs, perm = elementwise_inputs(em, node, operands)
    if name in _BINARY_OPERATORS:
        expr = f" {_BINARY_OPERATORS[name]} ".join(_parens(s) for s in srcs)
    elif name in _BINARY_FUNCTIONS:
        fn = _BINARY_FUNCTIONS[name]
        tensors = [s for s, o in zip(srcs, operands) if isinstance(o, Ref)]
        if len(tensors) == len(srcs):
            expr = srcs[0]
            for s in srcs[1:]:
                expr = f"{fn}({expr}, {s})"
        elif fn in ("torch.maximum", "torch.minimum"):
            bound = next(s for s, o in zip(srcs, operands) if not isinstance(o, Ref))
            expr = f"{tensors[0]}.clamp({'min' if fn == 'torch.maximum' else 'max'}={bound})"
        else:
            expr = f"{fn}({srcs[0]}, torch.as_tensor({srcs[1]}))"
    else:
        raise NotConvertible(f"no torch spelling for {node.kind}")
    em.assign(node, expr, perm)


@converter("compare")
def compare(em, node, row):
    srcs, perm = elementwise_inputs(em, node, list(node.args[:2]))
    op = _COMPARE[node.kind.rsplit(".", 1)[-1]]
    em.assign(node, f"{_parens(srcs[0])} {op} {_parens(srcs[1])}", perm)


@converter("unary")
def unary(em, node, row):
    x = em.input(node, 0)
    name = node.kind.rsplit(".", 1)[-1]
    if name == "negative":
        expr = f"-{_parens(x.var)}"
    elif name == "round" and node.config.get("decimals"):
        expr = call("torch.round", Code(x.var), decimals=int(node.config["decimals"]))
    else:
        expr = f"{row.torch_fn}({x.var})"
    em.assign(node, expr, x.perm)


@converter("cast")
def cast(em, node, row):
    x = em.input(node, 0)
    em.assign(node, f"{x.var}.to({torch_dtype(node.config['dtype'])})", x.perm)


@converter("where")
def where(em, node, row):
    args = list(node.args) + [None] * (3 - len(node.args))
    if args[1] is None or args[2] is None:
        raise NotConvertible("where(condition) with one argument has a data-dependent shape")
    srcs, perm = elementwise_inputs(em, node, args[:3])
    em.assign(node, f"torch.where({srcs[0]}, {srcs[1]}, {srcs[2]})", perm)


@converter("clamp")
def clamp(em, node, row):
    x = em.input(node, 0)
    cfg = node.config
    em.assign(node, call(f"{x.var}.clamp", _scalar(cfg["x_min"]), _scalar(cfg["x_max"])), x.perm)


def _scalar(v):
    a = _as_array(v)
    return a.item() if isinstance(a, np.ndarray) else a


@converter("creation")
def creation(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    if not name.endswith("_like") or not node.inputs:
        raise NotConvertible(f"{name} without a tensor argument is a constant")
    x = em.input(node, 0)
    dtype = node.config.get("dtype")
    kwargs = {"dtype": Code(torch_dtype(dtype))} if dtype else {}
    if name == "full_like":
        fill = node.args[1] if len(node.args) > 1 else node.kwargs.get("fill_value")
        expr = call("torch.full_like", Code(x.var), _scalar(fill), **kwargs)
    else:
        expr = call(f"torch.{name}", Code(x.var), **kwargs)
    em.assign(node, expr, x.perm)


# --- axis-taking ops ----------------------------------------------------------------------------


def _axes(axis, rank) -> tuple[int, ...] | None:
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return tuple(a % rank for a in axis)
    return (axis % rank,)


def _dims_source(dims: tuple[int, ...]):
    return dims[0] if len(dims) == 1 else dims


_REDUCE_METHODS = {"mean": "mean", "sum": "sum", "max": "amax", "min": "amin", "prod": "prod", "argmax": "argmax",
                   "argmin": "argmin"}


@converter("reduce")
def reduce(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    cfg = node.config
    x = em.input(node, 0)
    axes = _axes(cfg.get("axis"), x.rank)
    keep = bool(cfg.get("keepdims"))
    method = _REDUCE_METHODS[name]
    if axes is None:
        if keep:
            raise NotConvertible(f"{name} over every axis with keepdims=True")
        expr = f"{x.var}.{method}()"
        em.assign(node, expr, ())
        return
    dims = tuple(sorted(x.dim(a) for a in axes))
    kwargs = {"keepdim": True} if keep else {}
    if name in ("argmax", "argmin", "prod") and len(dims) > 1:
        raise NotConvertible(f"{name} over several axes")
    expr = call(f"{x.var}.{method}", dim=_dims_source(dims), **kwargs)
    if name in ("max", "min") and cfg.get("initial") is not None:
        expr = f"{expr}.clamp({'min' if name == 'max' else 'max'}={literal(float(cfg['initial']))})"
    if name == "prod" and cfg.get("dtype"):
        expr = f"{expr}.to({torch_dtype(cfg['dtype'])})"
    em.assign(node, expr, x.perm if keep else plan.drop_axes(x.perm, axes))


@converter("variance")
def variance(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    cfg = node.config
    x = em.input(node, 0)
    axes = _axes(cfg.get("axis"), x.rank)
    keep = bool(cfg.get("keepdims"))
    method = "std" if name == "std" else "var"
    kwargs = {"correction": 0}  # Keras computes the biased (population) variance
    if keep:
        kwargs["keepdim"] = True
    if axes is None:
        em.assign(node, call(f"{x.var}.{method}", **kwargs), () if not keep else x.perm)
        return
    dims = tuple(sorted(x.dim(a) for a in axes))
    em.assign(node, call(f"{x.var}.{method}", dim=_dims_source(dims), **kwargs),
              x.perm if keep else plan.drop_axes(x.perm, axes))


@converter("cumulative")
def cumulative(em, node, row):
    cfg = node.config
    x = em.input(node, 0)
    axis = cfg.get("axis")
    dtype = cfg.get("dtype")
    extra = {"dtype": Code(torch_dtype(dtype))} if dtype else {}
    if axis is None:
        em.assign(node, call(f"{x.var}.flatten().cumsum", 0, **extra), (0,))
        return
    em.assign(node, call(f"{x.var}.cumsum", x.dim(axis), **extra), x.perm)


@converter("diff")
def diff(em, node, row):
    cfg = node.config
    x = em.input(node, 0)
    n = int(cfg.get("n", 1))
    em.assign(node, call("torch.diff", Code(x.var), **({"n": n} if n != 1 else {}), dim=x.dim(cfg.get("axis", -1))),
              x.perm)


@converter("flip")
def flip(em, node, row):
    x = em.input(node, 0)
    axes = _axes(node.config.get("axis"), x.rank)
    dims = tuple(range(x.rank)) if axes is None else tuple(x.dim(a) for a in axes)
    em.assign(node, f"torch.flip({x.var}, dims={literal(dims)})", x.perm)


@converter("roll")
def roll(em, node, row):
    cfg = node.config
    axis = cfg.get("axis")
    if axis is None:
        x = em.input(node, 0, "keras")
        em.assign(node, call("torch.roll", Code(x.var), cfg["shift"]))
        return
    x = em.input(node, 0)
    axes = _axes(axis, x.rank)
    dims = tuple(x.dim(a) for a in axes)
    shifts = cfg["shift"]
    em.assign(node, call("torch.roll", Code(x.var), shifts, dims=_dims_source(dims)), x.perm)


@converter("triangle")
def triangle(em, node, row):
    x = em.input(node, 0, "keras")
    name = node.kind.rsplit(".", 1)[-1]
    k = int(node.config.get("k", 0))
    em.assign(node, call(f"torch.{name}", Code(x.var), **({"diagonal": k} if k else {})))


@converter("norm")
def norm(em, node, row):
    cfg = node.config
    x = em.input(node, 0)
    axes = _axes(cfg.get("axis"), x.rank)
    order = cfg.get("ord")
    keep = bool(cfg.get("keepdims"))
    kwargs = {"keepdim": True} if keep else {}
    if axes is None:
        if order not in (None, "fro", 2) or keep:
            raise NotConvertible(f"norm over every axis with ord={order!r}")
        em.assign(node, f"torch.linalg.vector_norm({x.var})", ())
        return
    dims = tuple(x.dim(a) for a in axes)
    if len(dims) == 1:
        expr = call("torch.linalg.vector_norm", Code(x.var), ord=2 if order is None else order, dim=dims[0],
                    **kwargs)
    else:
        expr = call("torch.linalg.matrix_norm", Code(x.var), ord="fro" if order is None else order, dim=dims,
                    **kwargs)
    em.assign(node, expr, x.perm if keep else plan.drop_axes(x.perm, axes))


@converter("normalize")
def normalize(em, node, row):
    import keras

    cfg = node.config
    x = em.input(node, 0)
    if node.kind == "keras.layers.UnitNormalization":
        axis, order, eps = cfg["axis"], 2, 1e-12
    else:
        axis, order = cfg.get("axis", -1), cfg.get("order", 2)
        eps = cfg.get("epsilon")
        eps = float(keras.config.epsilon()) if eps is None else float(eps)
    axes = _axes(axis, x.rank)
    dims = tuple(x.dim(a) for a in axes)
    if len(dims) == 1:
        expr = call("F.normalize", Code(x.var), p=order, dim=dims[0], eps=eps)
    else:
        norm_src = call("torch.linalg.vector_norm", Code(x.var), ord=order, dim=dims, keepdim=True)
        expr = f"{x.var} / {norm_src}.clamp(min={literal(eps)})"
    em.assign(node, expr, x.perm)


@converter("topk")
def topk(em, node, row):
    cfg = node.config
    x = em.input(node, 0)
    expr = call("torch.topk", Code(x.var), int(cfg["k"]), dim=x.dim(-1), **({} if cfg.get("sorted", True) else
                                                                              {"sorted": False}))
    em.assign_many(node, expr, [x.perm, x.perm])


@converter("sort", "argsort")
def sort(em, node, row):
    """keras.ops.sort (ascending values) and keras.ops.argsort (their indices)."""
    name = node.kind.rsplit(".", 1)[-1]
    x = em.input(node, 0)
    axis = node.config.get("axis", -1)
    fn = "torch.argsort" if name == "argsort" else "torch.sort"
    tail = "" if name == "argsort" else ".values"
    if axis is None:
        x = em.input(node, 0, "keras")
        em.assign(node, f"{fn}({x.var}.flatten()){tail}", (0,))
        return
    em.assign(node, call(fn, Code(x.var), dim=x.dim(axis)) + tail, x.perm)


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
        isrc = f"self.{em.buffer(f'{node.name}_indices', np.asarray(_as_array(idx), dtype=np.int64))}"
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
    plain = _as_array(indices) if not isinstance(indices, Ref) else None
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
        src = _axes(cfg["source"], rank)
        dst = _axes(cfg["destination"], rank)
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
    axes = _axes(axis, x.rank)
    if axes is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    dims = tuple(sorted(x.dim(a) for a in axes))
    em.assign(node, f"{x.var}.squeeze({literal(_dims_source(dims))})", plan.drop_axes(x.perm, axes))


@converter("unsqueeze")
def unsqueeze(em, node, row):
    x = em.input(node, 0, "keras")
    out_rank = em.graph.tensors[node.outputs[0]].rank
    axes = sorted(_axes(node.config["axis"], out_rank))
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
    if isinstance(key, tuple):
        return ", ".join(_index_source(em, k) for k in key) if key else "()"
    if isinstance(key, slice):
        if key.step is not None and _scalar(key.step) < 0:
            raise NotConvertible("slicing with a negative step")
        parts = ["" if p is None else str(_scalar(p)) for p in (key.start, key.stop)]
        text = ":".join(parts)
        if key.step is not None:
            text += f":{_scalar(key.step)}"
        return text
    if key is None:
        return "None"
    if key is Ellipsis:
        return "..."
    if isinstance(key, Ref):
        return em.in_layout(key, "keras").var
    return literal(_scalar(key))


@converter("slice")
def slicing(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    x = em.input(node, 0, "keras")
    if name == "get_item":
        key = node.args[1]
        em.assign(node, f"{x.var}[{_index_source(em, key)}]")
        return
    if name == "slice":
        starts = [int(s) for s in _as_array(node.args[1] if len(node.args) > 1 else node.kwargs["start_indices"])]
        sizes = [int(s) for s in _as_array(node.args[2] if len(node.args) > 2 else node.kwargs["shape"])]
        parts = [f"{s}:{s + n}" if n != -1 else f"{s}:" for s, n in zip(starts, sizes)]
        em.assign(node, f"{x.var}[{', '.join(parts)}]")
        return
    raise NotConvertible(f"{node.kind} is not converted")


# --- products -------------------------------------------------------------------------------


@converter("matmul")
def matmul(em, node, row):
    a = em.in_layout(node.args[0], "keras")
    b = em.in_layout(node.args[1], "keras")
    em.assign(node, f"{a.var} @ {b.var}")


@converter("einsum")
def einsum(em, node, row):
    if node.kind == "keras.layers.EinsumDense":
        return _einsum_dense(em, node, row)
    equation = node.config["subscripts"]
    srcs = [em.in_layout(a, "keras").var if isinstance(a, Ref) else constant(em, node, a, (), f"operand{i}")
            for i, a in enumerate(node.args)]
    em.assign(node, call("torch.einsum", equation, *[Code(s) for s in srcs]))


def _einsum_dense(em, node, row):
    cfg = node.config
    arrays = em.keras_weights(node.op)
    x = em.input(node, 0, "keras")
    kernel = em.parameter(f"{node.name}_kernel", arrays["kernel"])
    expr = call("torch.einsum", cfg["equation"], Code(x.var), Code(f"self.{kernel}"))
    if "bias" in arrays:
        bias = em.parameter(f"{node.name}_bias", arrays["bias"])
        expr = f"{expr} + self.{bias}"
    em.assign(node, em.fused_activation(node, expr, plan.identity(x.rank)))


@converter("sdpa")
def sdpa(em, node, row):
    cfg = node.config
    if cfg.get("attn_logits_soft_cap"):
        raise NotConvertible("attn_logits_soft_cap has no torch counterpart")
    args = list(node.args) + [None] * (3 - len(node.args))
    q, k, v = (em.in_layout(a, (0, 2, 1, 3)) for a in args[:3])
    kwargs = {}
    bias, mask = node.kwargs.get("bias"), node.kwargs.get("mask")
    if bias is not None and mask is not None:
        raise NotConvertible("both a bias and a mask")
    if bias is not None:
        kwargs["attn_mask"] = Code(em.in_layout(bias, "keras").var if isinstance(bias, Ref) else
                                   constant(em, node, bias, plan.identity(4), "bias"))
    if mask is not None:
        kwargs["attn_mask"] = Code(em.in_layout(mask, "keras").var if isinstance(mask, Ref) else
                                   constant(em, node, mask, plan.identity(4), "mask"))
    if cfg.get("is_causal"):
        kwargs["is_causal"] = True
    if node.kwargs.get("scale") is not None:
        kwargs["scale"] = float(_scalar(node.kwargs["scale"]))
    em.assign(node, call("F.scaled_dot_product_attention", Code(q.var), Code(k.var), Code(v.var), **kwargs),
              (0, 2, 1, 3), comment="(batch, heads, time, depth)")
