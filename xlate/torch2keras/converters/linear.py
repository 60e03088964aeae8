"""Linear algebra: Linear -> Dense, matmul/addmm/bmm, einsum."""

from __future__ import annotations

from ...transforms import get_transform
from .. import plan
from ..ported import Pending
from ..registry import converter
from ..values import Const, Value
from ._common import layers, ops


def port(ctx, row, layer, tensors: dict, *, transforms: dict | None = None, params: dict | None = None,
         recorded: dict | None = None):
    """Queue a layer's weights through its row's named transforms (torch names -> Keras names).

    ``tensors`` maps the row's torch names to Consts (recorded as parameter pairs, so optimizer
    state can follow) or plain arrays (slices, not recorded). Weight maps whose torch tensors are
    absent (a Linear without bias) are skipped. ``recorded`` overrides the (transform, params)
    recorded for a weight the caller already transformed (e.g. a transposed (in, out) weight).
    Call it before the layer is built: its variables are then created from the converted values.
    """
    out, pairs = {}, []
    for wm in row.weights:
        values = [tensors.get(t) for t in wm.torch]
        if any(v is None for v in values):
            continue
        name = (transforms or {}).get(wm.torch[0], wm.transform)
        kparams = (params or {}).get(wm.torch[0], {})
        arrays = [v.array if isinstance(v, Const) else v for v in values]
        pending = Pending(get_transform(name), arrays, kparams)  # converted when its variable is made
        out.update((k, pending.piece(i)) for i, k in enumerate(wm.keras))
        if all(isinstance(v, Const) and v.path for v in values):
            rec_name, rec_params = (recorded or {}).get(wm.torch[0], (name, kparams))
            pairs.append((tuple(v.path for v in values), wm.keras, rec_name, rec_params))
    ctx.assign(layer, out, pairs=pairs)


def _shared_layer(ctx, key, make):
    """One Keras layer per torch parameter set: a module called twice shares its weights."""
    layer = ctx.layer_cache.get(key)
    if layer is None:
        layer = make()
        ctx.layer_cache[key] = layer
        return layer, True
    return layer, False


@converter("dense")
def dense(ctx, node, row):
    x, w, b = ctx.arg("input"), ctx.arg("weight"), ctx.arg("bias")
    if not isinstance(w, Const) or not isinstance(x, Value):
        # a computed weight: plain matmul with the transposed weight
        return _matmul_value(ctx, x, _transposed(ctx, w), b)
    transforms, params = {}, {}
    if x.feature_order is not None and x.rank == 2:
        transforms["weight"], params["weight"] = "flatten_dense_kernel", {"chw": x.flat_chw}
        tensor = x.tensor
        perm = x.perm
    else:
        x = ctx.materialize(x)
        perm = x.perm if x.perm[-1] == x.rank - 1 else plan.identity(x.rank)
        tensor = ctx.keras_tensor(x, perm)
    # a computed bias (BEiT's cat((q_bias, zeros, v_bias))) is added in the graph after the layer
    const_bias = b if isinstance(b, Const) else None
    key = ("dense", ctx.weight_key(w), ctx.weight_key(const_bias), "flat" if transforms else "")
    layer, new = _shared_layer(ctx, key, lambda: layers().Dense(
        w.array.shape[0], use_bias=const_bias is not None, name=ctx.layer_name()))
    if new:  # before the call: the layer's variables are built from the ported values
        port(ctx, row, layer, {"weight": w, "bias": const_bias}, transforms=transforms, params=params)
    out = layer(tensor)
    if b is not None and const_bias is None:
        out = ops().add(out, _operand(ctx, b))
    return ctx.new_value(out, perm)


def _transposed(ctx, w):
    if isinstance(w, Const):
        return Const(w.array.T, w.path, w.trainable)
    return ctx.new_value(ops().swapaxes(ctx.keras_tensor(w, plan.identity(w.rank)), -1, -2))


def _matmul_value(ctx, a, b, bias=None):
    ta = _operand(ctx, a)
    tb = _operand(ctx, b)
    out = ops().matmul(ta, tb)
    if bias is not None:
        out = ops().add(out, _operand(ctx, bias))
    return ctx.new_value(out)


def _operand(ctx, v):
    if isinstance(v, Value):
        return ctx.keras_tensor(ctx.materialize(v), plan.identity(v.rank))
    if isinstance(v, Const):
        return ctx.const_tensor(v, None)
    return v


@converter("matmul")
def matmul(ctx, node, row):
    name = node.target.split(".")[1]
    if name in ("addmm", "baddbmm"):
        bias, a, b = ctx.arg("input"), ctx.arg("mat1", ctx.arg("batch1")), ctx.arg("mat2", ctx.arg("batch2"))
        beta, alpha = node.args.get("beta", 1), node.args.get("alpha", 1)
        if beta != 1 or alpha != 1:
            out = ops().add(ops().multiply(_operand(ctx, bias), beta),
                            ops().multiply(ops().matmul(_operand(ctx, a), _operand(ctx, b)), alpha))
            return ctx.new_value(out)
    else:
        bias = None
        a, b = ctx.arg("input"), ctx.arg("other", ctx.arg("mat2"))
    # x @ W with a parameter W of shape (in, out): a Dense layer (e.g. Hugging Face Conv1D)
    if (isinstance(a, Value) and isinstance(b, Const) and b.trainable and b.array.ndim == 2
            and (bias is None or (isinstance(bias, Const) and bias.array.ndim == 1))):
        linear_row = ctx.table.row("linear")
        x = ctx.materialize(a)
        perm = x.perm if x.perm[-1] == x.rank - 1 else plan.identity(x.rank)
        key = ("dense-in-out", ctx.weight_key(b), ctx.weight_key(bias))
        layer, new = _shared_layer(ctx, key, lambda: layers().Dense(
            b.array.shape[1], use_bias=bias is not None, name=ctx.layer_name()))
        if new:
            # torch keeps this weight as (in, out): transposing it gives nn.Linear's (out, in)
            port(ctx, linear_row, layer, {"weight": Const(b.array.T, b.path, b.trainable), "bias": bias},
                 recorded={"weight": ("identity", {})})
        out = layer(ctx.keras_tensor(x, perm))
        ctx.used(linear_row)
        return ctx.new_value(out, perm)
    return _matmul_value(ctx, a, b, bias)


@converter("einsum")
def einsum(ctx, node, row):
    equation = _plain_subscripts(node.args["equation"])
    operands = [_operand(ctx, v) for v in ctx.arg("tensors")]
    return ctx.new_value(ops().einsum(equation, *operands))


def _plain_subscripts(equation: str) -> str:
    """torch allows spaces and capitals ("B G H I D, B G H J D -> B G H I J", torchvision maxvit);
    Keras' shape inference takes lower-case letters only: rename them in order of appearance."""
    import string

    letters = list(dict.fromkeys(c for c in equation if c.isalpha()))
    if len(letters) > 26:
        return equation.replace(" ", "")
    rename = dict(zip(letters, string.ascii_lowercase))
    return "".join(rename.get(c, c) for c in equation if not c.isspace())


@converter("embedding")
def embedding(ctx, node, row):
    w, idx = ctx.arg("weight"), ctx.arg("indices")
    if not isinstance(w, Const):
        raise ctx.unsupported("embedding with a computed table")
    idx = ctx.materialize(idx)
    layer, new = _shared_layer(ctx, ("embedding", ctx.weight_key(w)), lambda: layers().Embedding(
        w.array.shape[0], w.array.shape[1], name=ctx.layer_name()))
    if new:
        port(ctx, row, layer, {"weight": w})
    out = layer(ctx.keras_tensor(idx, plan.identity(idx.rank)))
    return ctx.new_value(out)
