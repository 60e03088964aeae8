"""Graph plumbing that is not an equivalence between frameworks: tuple indexing, symbolic size
arithmetic (torch.export records sizes as SymInts; their values are on the node), asserts."""

from __future__ import annotations

from ..registry import internal
from ..values import Const


@internal("getitem")
def getitem(ctx, node):
    container = ctx.arg("arg0")
    return container[node.args["arg1"]]


@internal("aten.sym_size.int", "aten.sym_numel.default", "aten.sym_stride.int", "operator.mul", "operator.add",
          "operator.sub", "operator.floordiv", "operator.truediv", "operator.mod", "operator.neg",
          "operator.pow", "torch.sym_max", "torch.sym_min", "torch.sym_float", "torch.sym_int",
          "math.ceil", "math.floor", "operator.eq", "operator.ne", "operator.lt", "operator.le", "operator.gt",
          "operator.ge", "torch.sym_not")
def symbolic_size(ctx, node):
    # torch.export already computed these sizes (an int, or a Sym for a dynamic one)
    return node.meta


@internal("aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
          "aten.sym_constrain_range_for_size.default", "aten.sym_constrain_range.default",
          "aten._assert_async.msg", "aten._functional_assert_async.msg", "torch._check",
          "torch._check_is_size", "aten._print.default")
def assertion(ctx, node):
    return None


@internal("aten.item.default", "aten._local_scalar_dense.default")
def item(ctx, node):
    v = ctx.arg("input")
    if isinstance(v, Const):
        return v.array.item()
    raise ctx.unsupported("Tensor.item() on a computed tensor (data-dependent)")
