"""Elementwise ops: arithmetic, comparisons, logic, where, clamp, casts."""

from __future__ import annotations

from ..registry import converter
from ..values import Const, Value
from ._common import aligned, ops

# aten op name (without overload) -> keras.ops function, for ops whose row hook is generic
BINARY = {
    "add": "add", "sub": "subtract", "rsub": "subtract", "mul": "multiply", "div": "divide",
    "pow": "power", "maximum": "maximum", "minimum": "minimum", "fmax": "maximum", "fmin": "minimum",
    "logical_and": "logical_and", "logical_or": "logical_or", "bitwise_and": "logical_and",
    "bitwise_or": "logical_or", "and": "logical_and", "or": "logical_or", "floor_divide": "floor_divide",
    "square": "square", "max": "maximum", "min": "minimum",  # torch.max(a, b) is aten.max.other
}
COMPARE = {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal"}


#: torch's spelled-out aliases (torch.multiply: HF ConvBERT) are the same ATen ops
ALIASES = {"multiply": "mul", "subtract": "sub", "divide": "div"}


def _op_name(node) -> str:
    name = node.target.split(".")[1].strip("_")
    return ALIASES.get(name, name)


def elementwise_result(ctx, fn, operands):
    args, perm, feature_order = aligned(ctx, operands)
    out = ctx.new_value(fn(*args), perm)
    out.feature_order = feature_order
    if feature_order is not None:
        src = next(v for v in operands if isinstance(v, Value) and v.feature_order is not None)
        out.flat_chw = src.flat_chw  # the next Linear permutes its columns from it
        out.unflattened = lambda: _unflattened(ctx, fn, operands, src)
    return out


def _unflattened(ctx, fn, operands, src):
    # the same op on torch-order inputs
    ops_ = [ctx.materialize(v) if isinstance(v, Value) else v for v in operands]
    args, perm, _ = aligned(ctx, ops_)
    return ctx.new_value(fn(*args), perm, meta=src.meta)


@converter("binary")
def binary(ctx, node, row):
    name = _op_name(node)
    a = ctx.arg("input")
    if name == "square":
        return elementwise_result(ctx, ops().square, [a])
    b = ctx.arg("other") if "other" in node.args else ctx.arg("exponent")
    alpha = node.args.get("alpha")
    if name == "rsub":  # other - alpha * input
        a, b = b, (_scaled(ctx, a, alpha) if alpha not in (None, 1) else a)
    elif alpha not in (None, 1):  # input +/- alpha * other
        b = _scaled(ctx, b, alpha)
    if name == "div":
        mode = node.args.get("rounding_mode")
        if mode == "floor":
            return elementwise_result(ctx, ops().floor_divide, [a, b])
        if mode == "trunc":
            return elementwise_result(ctx, lambda x, y: ops().trunc(ops().divide(x, y)), [a, b])
    fn = getattr(ops(), BINARY[name])
    return elementwise_result(ctx, fn, [a, b])


def _scaled(ctx, b, alpha):
    if isinstance(b, Const):
        return Const(b.array * alpha)
    if isinstance(b, (int, float)):
        return b * alpha
    return elementwise_result(ctx, ops().multiply, [b, alpha])


@converter("unary")
def unary(ctx, node, row):
    fn = getattr(ops(), row.keras_op)
    return elementwise_result(ctx, fn, [ctx.arg("input")])


@converter("compare")
def compare(ctx, node, row):
    fn = getattr(ops(), COMPARE[_op_name(node)])
    return elementwise_result(ctx, fn, [ctx.arg("input"), ctx.arg("other")])


@converter("where")
def where(ctx, node, row):
    name = _op_name(node)
    if name == "masked_fill":
        x, mask, value = ctx.arg("input"), ctx.arg("mask"), ctx.arg("value")
        return elementwise_result(ctx, lambda m, v, xx: ops().where(m, v, xx), [mask, value, x])
    cond, a, b = ctx.arg("condition"), ctx.arg("input"), ctx.arg("other")
    return elementwise_result(ctx, ops().where, [cond, a, b])


@converter("clamp")
def clamp(ctx, node, row):
    x = ctx.arg("input")
    lo = ctx.arg("min")
    hi = ctx.arg("max")
    if node.target.startswith("aten.clamp_min"):
        return elementwise_result(ctx, ops().maximum, [x, lo])
    if node.target.startswith("aten.clamp_max"):
        return elementwise_result(ctx, ops().minimum, [x, hi])
    if lo is None:
        return elementwise_result(ctx, ops().minimum, [x, hi])
    if hi is None:
        return elementwise_result(ctx, ops().maximum, [x, lo])
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return elementwise_result(ctx, lambda t: ops().clip(t, lo, hi), [x])
    return elementwise_result(ctx, lambda t, a, b: ops().minimum(ops().maximum(t, a), b), [x, lo, hi])


@converter("cast")
def cast(ctx, node, row):
    x = ctx.arg("input")
    if isinstance(x, Value):
        # new_value casts to the dtype torch.export recorded for this node
        return elementwise_result(ctx, lambda t: t, [x])
    return x


@converter("addcmul")
def addcmul(ctx, node, row):
    """input + value * tensor1 * tensor2 (addcdiv: tensor1 / tensor2), in torch's order of operations."""
    x, t1, t2 = ctx.arg("input"), ctx.arg("tensor1"), ctx.arg("tensor2")
    value = node.args.get("value", 1)
    combine = ops().divide if node.target.startswith("aten.addcdiv") else ops().multiply
    if value == 1:
        return elementwise_result(ctx, lambda a, b, c: ops().add(a, combine(b, c)), [x, t1, t2])
    return elementwise_result(ctx, lambda a, b, c: ops().add(a, ops().multiply(combine(b, c), value)), [x, t1, t2])
