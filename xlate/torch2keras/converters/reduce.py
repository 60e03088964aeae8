"""Reductions and scans: mean, sum, max/min, prod, argmax, var/std, cumsum, norms, top-k."""

from __future__ import annotations

from .. import plan, symsize
from ..registry import converter
from ._common import ops

REDUCE = {"mean": "mean", "sum": "sum", "amax": "max", "amin": "min", "max": "max", "min": "min",
          "prod": "prod", "argmax": "argmax", "argmin": "argmin"}


def _reduced(ctx, x, dims, keepdim):
    """Keras axes for torch dims, and the layout of the result."""
    rank = x.rank
    dims = list(range(rank)) if dims is None or dims == [] else [d % rank for d in (
        [dims] if isinstance(dims, int) else dims)]
    axes = tuple(x.perm.index(d) for d in dims)
    perm = x.perm if keepdim else plan.drop_dims(x.perm, dims)
    return dims, axes, perm


@converter("reduce")
def reduce(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    name = node.target.split(".")[1]
    overload = node.target.split(".")[2]
    keepdim = bool(node.args.get("keepdim", False))
    dims = node.args.get("dim")
    if overload == "default" and name in ("max", "min", "sum", "mean", "prod"):
        dims = None
    dims, axes, perm = _reduced(ctx, x, dims, keepdim)
    fn = getattr(ops(), REDUCE[name])
    if name in ("argmax", "argmin"):
        if node.args.get("dim") is None:
            t = ops().reshape(ctx.keras_tensor(x, plan.identity(x.rank)), (-1,))
            return ctx.new_value(fn(t, axis=0))
        return ctx.new_value(fn(x.tensor, axis=axes[0], keepdims=keepdim), perm)
    out = fn(x.tensor, axis=axes if len(axes) > 1 else axes[0], keepdims=keepdim)
    if name in ("max", "min") and overload == "dim":  # (values, indices)
        arg = getattr(ops(), "argmax" if name == "max" else "argmin")(x.tensor, axis=axes[0], keepdims=keepdim)
        return ctx.new_value(out, perm, meta=node.meta[0]), ctx.new_value(arg, perm, meta=node.meta[1])
    return ctx.new_value(out, perm)


@converter("variance")
def variance(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    name = node.target.split(".")[1]
    keepdim = bool(node.args.get("keepdim", False))
    dims, axes, perm = _reduced(ctx, x, node.args.get("dim"), keepdim)
    correction = node.args.get("correction")
    if correction is None:
        correction = 1 if node.args.get("unbiased", True) else 0
    n = symsize.product([x.meta.shape[d] for d in dims])
    axis = axes if len(axes) > 1 else axes[0]
    var = ops().var(x.tensor, axis=axis, keepdims=keepdim)
    if correction and isinstance(n, int):
        var = var * (n / (n - correction))  # Keras is biased; torch defaults to the unbiased estimator
    elif correction:  # over a dynamic size: the same factor, read at run time
        count = symsize.size_tensor(ctx, n, x.meta.dtype, [(x.tensor, symsize.keras_order(x))])
        var = ops().multiply(var, ops().divide(count, ops().subtract(count, correction)))
    if name == "var_mean":
        mean = ops().mean(x.tensor, axis=axis, keepdims=keepdim)
        return ctx.new_value(var, perm, meta=node.meta[0]), ctx.new_value(mean, perm, meta=node.meta[1])
    return ctx.new_value(ops().sqrt(var) if name == "std" else var, perm)


@converter("cumulative")
def cumulative(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    axis = x.perm.index(int(node.args["dim"]) % x.rank)
    return ctx.new_value(ops().cumsum(x.tensor, axis=axis), x.perm)


@converter("norm")
def norm(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    order = node.args.get("ord", node.args.get("p", 2))
    keepdim = bool(node.args.get("keepdim", False))
    _, axes, perm = _reduced(ctx, x, node.args.get("dim"), keepdim)
    axis = axes if len(axes) > 1 else axes[0]
    return ctx.new_value(_p_norm(x.tensor, order, axis, keepdim), perm)


def _p_norm(t, order, axis, keepdim):
    """The ``order``-norm of ``t`` along ``axis`` (2, 1, 0, +-inf: their closed forms, as torch defines them)."""
    if order == 0:  # the number of non-zero entries
        return ops().sum(ops().cast(ops().not_equal(t, 0), t.dtype), axis=axis, keepdims=keepdim)
    if order == float("-inf"):
        return ops().min(ops().abs(t), axis=axis, keepdims=keepdim)
    if order == 2:
        return ops().sqrt(ops().sum(ops().square(t), axis=axis, keepdims=keepdim))
    if order == 1:
        return ops().sum(ops().abs(t), axis=axis, keepdims=keepdim)
    if order == float("inf"):
        return ops().max(ops().abs(t), axis=axis, keepdims=keepdim)
    return ops().power(ops().sum(ops().power(ops().abs(t), order), axis=axis, keepdims=keepdim), 1.0 / order)


@converter("topk")
def topk(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    k = int(node.args["k"])
    dim = int(node.args.get("dim", -1)) % x.rank
    largest = node.args.get("largest", True)
    # keras top_k works on the last axis
    perm = x.perm if x.perm[-1] == dim else tuple([p for p in x.perm if p != dim] + [dim])
    t = ctx.keras_tensor(x, perm)
    values, indices = ops().top_k(t if largest else -t, k, sorted=True)
    if not largest:
        values = -values
    return ctx.new_value(values, perm, meta=node.meta[0]), ctx.new_value(indices, perm, meta=node.meta[1])


@converter("sort", "argsort")
def sort(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    dim = int(node.args.get("dim", -1)) % x.rank
    descending = bool(node.args.get("descending", False))
    axis = x.perm.index(dim)
    t = -x.tensor if descending else x.tensor
    indices = ops().argsort(t, axis=axis)
    if node.target.startswith("aten.argsort"):
        return ctx.new_value(indices, x.perm)
    values = ops().take_along_axis(x.tensor, indices, axis=axis)
    return ctx.new_value(values, x.perm, meta=node.meta[0]), ctx.new_value(indices, x.perm, meta=node.meta[1])


@converter("diff")
def diff(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    dim = int(node.args.get("dim", -1)) % x.rank
    axis = x.perm.index(dim)
    t = x.tensor
    before, after = ctx.arg("prepend"), ctx.arg("append")
    if before is not None or after is not None:
        parts = [ctx.keras_tensor(ctx.materialize(v), x.perm) for v in (before, None, after) if v is not None]
        parts.insert(1 if before is not None else 0, t)
        t = ops().concatenate(parts, axis=axis)
    for _ in range(int(node.args.get("n", 1))):
        head = [slice(None)] * x.rank
        tail = [slice(None)] * x.rank
        head[axis], tail[axis] = slice(1, None), slice(None, -1)
        t = ops().subtract(t[tuple(head)], t[tuple(tail)])
    return ctx.new_value(t, x.perm)


@converter("distance")
def distance(ctx, node, row):
    from .elementwise import elementwise_result

    a, b = ctx.arg("x1"), ctx.arg("x2")
    if node.target.startswith("aten.cosine_similarity"):
        dim, eps = int(node.args.get("dim", 1)), float(node.args.get("eps", 1e-8))

        def cosine(x, y):
            axis = _axis_of(x, dim)
            dot = ops().sum(ops().multiply(x, y), axis=axis)
            nx = ops().maximum(ops().sqrt(ops().sum(ops().square(x), axis=axis)), eps)
            ny = ops().maximum(ops().sqrt(ops().sum(ops().square(y), axis=axis)), eps)
            return dot / (nx * ny)

        operands = [ctx.materialize(a), ctx.materialize(b)]
        rank = max(v.rank for v in operands)
        t = [ctx.keras_tensor(v, plan.identity(v.rank)) for v in operands]
        out = cosine(*t) if rank == len(t[0].shape) == len(t[1].shape) else None
        if out is None:
            raise ctx.unsupported("cosine_similarity of different ranks")
        return ctx.new_value(out)
    p, eps, keepdim = float(node.args.get("p", 2.0)), float(node.args.get("eps", 1e-6)), bool(
        node.args.get("keepdim", False))
    diff = elementwise_result(ctx, lambda x, y: ops().add(ops().subtract(x, y), eps), [a, b])
    t = ctx.keras_tensor(diff, plan.identity(diff.rank))
    return ctx.new_value(_p_norm(t, p, -1, keepdim))


def _axis_of(t, dim):
    return dim % len(t.shape)
