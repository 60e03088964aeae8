"""keras.ops calls inside functional graphs that compute: elementwise ops, reductions and other
axis-taking ops, creation ops, matmul/einsum/attention; and the Keras merge layers that share
their rows.

Elementwise ops keep their inputs' layout (constants are laid out to match); axis-taking ops
have their axes remapped through the layout plan; ops that cannot follow a layout (matmul,
einsum) ask for the Keras layout and get one explicit permute if needed. Indexing, splitting
and reshaping ops live in ``shape_ops.py``, operand handling in ``operands.py``; this module must
not import the emitter.
"""

from __future__ import annotations

from .. import plan
from ..registry import NotConvertible, converter
from ..source import Code, call, literal, torch_dtype
from ..walk import Ref
from .operands import axes_of, constant, dims_source, elementwise_inputs, scalar

# --- elementwise ---------------------------------------------------------------------------------


def _parens(src: str) -> str:
    return src if src.replace("_", "").replace(".", "").isalnum() else f"({src})"


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
    em.assign(node, call(f"{x.var}.clamp", scalar(cfg["x_min"]), scalar(cfg["x_max"])), x.perm)


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
        expr = call("torch.full_like", Code(x.var), scalar(fill), **kwargs)
    else:
        expr = call(f"torch.{name}", Code(x.var), **kwargs)
    em.assign(node, expr, x.perm)


# --- axis-taking ops ----------------------------------------------------------------------------


_REDUCE_METHODS = {"mean": "mean", "sum": "sum", "max": "amax", "min": "amin", "prod": "prod", "argmax": "argmax",
                   "argmin": "argmin", "any": "any", "all": "all"}


@converter("reduce")
def reduce(em, node, row):
    name = node.kind.rsplit(".", 1)[-1]
    cfg = node.config
    x = em.input(node, 0)
    axes = axes_of(cfg.get("axis"), x.rank)
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
    expr = call(f"{x.var}.{method}", dim=dims_source(dims), **kwargs)
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
    axes = axes_of(cfg.get("axis"), x.rank)
    keep = bool(cfg.get("keepdims"))
    method = "std" if name == "std" else "var"
    kwargs = {"correction": 0}  # Keras computes the biased (population) variance
    if keep:
        kwargs["keepdim"] = True
    if axes is None:
        em.assign(node, call(f"{x.var}.{method}", **kwargs), () if not keep else x.perm)
        return
    dims = tuple(sorted(x.dim(a) for a in axes))
    em.assign(node, call(f"{x.var}.{method}", dim=dims_source(dims), **kwargs),
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
    axes = axes_of(node.config.get("axis"), x.rank)
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
    axes = axes_of(axis, x.rank)
    dims = tuple(x.dim(a) for a in axes)
    shifts = cfg["shift"]
    em.assign(node, call("torch.roll", Code(x.var), shifts, dims=dims_source(dims)), x.perm)


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
    axes = axes_of(cfg.get("axis"), x.rank)
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
    axes = axes_of(axis, x.rank)
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
        kwargs["scale"] = float(scalar(node.kwargs["scale"]))
    em.assign(node, call("F.scaled_dot_product_attention", Code(q.var), Code(k.var), Code(v.var), **kwargs),
              (0, 2, 1, 3), comment="(batch, heads, time, depth)")
