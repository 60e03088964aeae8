"""Shape and indexing ops, remapped through the layout plan (plan.py) instead of transposing."""

from __future__ import annotations

from .. import plan, symsize
from ..registry import converter
from ..source_graph import Sym
from ..values import Const, DynamicShapeError, Value
from ._common import layers, ops


def _dims(dims, rank):
    if isinstance(dims, int):
        dims = [dims]
    return [d % rank for d in dims] if rank else []


def _keras_shape_for_reshape(ctx, shape):
    """A Keras reshape target from a torch shape with at most one dynamic size (-> -1)."""
    dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if len(dynamic) > 1:
        raise DynamicShapeError(f"reshape to {shape} at {ctx.where()}")
    return tuple(-1 if not isinstance(d, int) else d for d in shape)


def reshape_value(ctx, x, out_shape, meta=None):
    """x.reshape(out_shape), in x's own layout when the merged dims stay together there."""
    x = ctx.materialize(x)
    planned = plan.reshape_in_layout(x.perm, x.meta.shape, out_shape)
    if planned is not None:
        keras_shape, out_perm = planned
        t, sizes = x.tensor, symsize.keras_order(x)
    else:
        out_perm = plan.identity(len(out_shape))
        keras_shape = tuple(out_shape)
        t, sizes = ctx.keras_tensor(x, plan.identity(x.rank)), list(x.meta.shape)
    if list(sizes) == list(keras_shape):
        out = t
    else:
        out = symsize.reshape(ctx, t, list(keras_shape), sizes)
    return ctx.new_value(out, out_perm, meta=meta)


@converter("flatten")
def flatten(ctx, node, row):
    x = ctx.arg("input")
    start, end = int(node.args.get("start_dim", 0)), int(node.args.get("end_dim", -1))
    if isinstance(x, Value) and x.rank >= 3 and start % x.rank == 1 and end % x.rank == x.rank - 1 and (
            x.perm == plan.channels_last(x.rank) and x.feature_order is None
            and all(isinstance(d, int) for d in x.meta.shape[1:])):
        # Keras flattens channels-last (H, W, C order): keep it, and let the next Linear permute its
        # weight columns instead of transposing the activations (flatten_dense_kernel).
        chw = tuple(x.meta.shape[1:])
        out = layers().Flatten(name=ctx.layer_name())(x.tensor)
        value = ctx.new_value(out, (0, 1))
        if all(d == 1 for d in chw[1:]):
            return value  # after a global pool: (1, 1, C) flattens to C in torch's order too
        value.feature_order = plan.flatten_feature_order(chw)
        value.flat_chw = chw
        value.unflattened = lambda: reshape_value(ctx, Value(x.meta, x.perm, x.tensors), node.meta.shape,
                                                  meta=node.meta)
        return value
    return reshape_value(ctx, x, node.meta.shape)


@converter("reshape")
def reshape(ctx, node, row):
    return reshape_value(ctx, ctx.arg("input"), node.meta.shape)


@converter("permute")
def permute(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    name = node.target.split(".")[1]
    rank = x.rank
    if name == "permute":
        dims = [d % rank for d in node.args["dims"]]
    elif name in ("transpose", "swapaxes"):
        a, b = (node.args.get("dim0", node.args.get("axis0")) % rank,
                node.args.get("dim1", node.args.get("axis1")) % rank)
        dims = list(range(rank))
        dims[a], dims[b] = dims[b], dims[a]
    elif name == "t":
        dims = list(range(rank))[::-1]
    elif name == "movedim":
        src, dst = node.args["source"] % rank, node.args["destination"] % rank
        dims = [d for d in range(rank) if d != src]
        dims.insert(dst, src)
    else:
        raise ctx.unsupported(node.target)
    # a permute only relabels the layout: no Keras op
    return Value(node.meta, plan.after_permute(x.perm, dims), {plan.after_permute(x.perm, dims): x.tensor})


@converter("squeeze")
def squeeze(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    if "dim" in node.args or "dims" in node.args:
        dims = _dims(node.args.get("dim", node.args.get("dims")), x.rank)
    else:
        dims = list(range(x.rank))
    dims = [d for d in dims if x.meta.shape[d] == 1]
    if not dims:
        return Value(node.meta, x.perm, dict(x.tensors))
    axes = [x.perm.index(d) for d in dims]
    out = ops().squeeze(x.tensor, axis=tuple(axes) if len(axes) > 1 else axes[0])
    return ctx.new_value(out, plan.drop_dims(x.perm, dims))


@converter("unsqueeze")
def unsqueeze(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    perm, axis = plan.insert_dim(x.perm, int(node.args["dim"]))
    return ctx.new_value(ops().expand_dims(x.tensor, axis), perm)


@converter("expand")
def expand(ctx, node, row):
    target = list(node.meta.shape)
    x = ctx.arg("input")
    if isinstance(x, Const):
        # a buffer or parameter expanded (to the batch size...): kept as it is, broadcast in the graph
        t, perm, sizes = ctx.const_tensor(x, None), plan.identity(x.array.ndim), list(x.array.shape)
    else:
        x = ctx.materialize(x)
        t, perm, sizes = x.tensor, x.perm, symsize.keras_order(x)
    for _ in range(len(target) - len(perm)):  # new leading dims
        perm, axis = plan.insert_dim(perm, 0)
        t = ops().expand_dims(t, axis)
        sizes.insert(axis, 1)
    keras_target = [target[p] for p in perm]
    for a, b in zip(sizes, keras_target):
        if a != b and a != 1:
            raise DynamicShapeError(f"expand of a size {a} to {b} at {ctx.where()}")
    if sizes == keras_target:
        return ctx.new_value(t, perm)
    if symsize.is_static(keras_target):
        for axis, (a, b) in enumerate(zip(sizes, keras_target)):
            if a != b:
                t = ops().repeat(t, b, axis=axis)
        return ctx.new_value(t, perm)
    return ctx.new_value(symsize.broadcast(ctx, t, keras_target, sizes), perm)


@converter("repeat")
def repeat(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    name = node.target.split(".")[1]
    if name == "repeat_interleave":
        dim = node.args.get("dim")
        if dim is None:
            raise ctx.unsupported("repeat_interleave without dim")
        axis, r = x.perm.index(dim % x.rank), node.args["repeats"]
        if isinstance(r, int):
            return ctx.new_value(ops().repeat(x.tensor, r, axis=axis), x.perm)
        # a dynamic count (timm gcvit's ``q.repeat_interleave(B // q.shape[0], dim=0)``): each
        # element broadcast along a new axis after its own, then the two axes merged
        sizes = symsize.keras_order(x)
        one = [*sizes[:axis + 1], 1, *sizes[axis + 1:]]
        wide = [*sizes[:axis + 1], r, *sizes[axis + 1:]]
        t = symsize.broadcast(ctx, ops().expand_dims(x.tensor, axis + 1), wide, one)
        merged = [*sizes[:axis], node.meta.shape[dim % x.rank], *sizes[axis + 1:]]
        return ctx.new_value(symsize.reshape(ctx, t, merged, wide), x.perm)
    reps = list(node.args.get("repeats", node.args.get("dims")))
    t, perm, sizes = x.tensor, x.perm, symsize.keras_order(x)
    for _ in range(len(reps) - x.rank):
        perm, axis = plan.insert_dim(perm, 0)
        t = ops().expand_dims(t, axis)
        sizes.insert(axis, 1)
    reps = [1] * (len(perm) - len(reps)) + reps
    keras_reps = [reps[p] for p in perm]
    if symsize.is_static(keras_reps):
        return ctx.new_value(ops().tile(t, keras_reps), perm)
    return ctx.new_value(_dynamic_tile(ctx, t, sizes, keras_reps, [node.meta.shape[p] for p in perm]), perm)


def _dynamic_tile(ctx, t, sizes, reps, target):
    """``tile(t, reps)`` (Keras order) where some counts are dynamic (XCiT's ``pos.repeat(B, 1, 1, 1)``,
    a token repeated to the batch): a broadcast where the size is 1, else the tensor broadcast on a
    new axis in front of that one and merged with it (tile's order: the whole axis, ``r`` times)."""
    static = [r if isinstance(r, int) else 1 for r in reps]
    if static != [1] * len(reps):
        t = ops().tile(t, static)
    sizes = [symsize.product([s, r]) if isinstance(r, int) else s for s, r in zip(sizes, reps)]
    for axis, r in enumerate(reps):
        if isinstance(r, int) or sizes[axis] == 1:
            continue
        wide = [*sizes[:axis], r, *sizes[axis:]]
        t = symsize.broadcast(ctx, ops().expand_dims(t, axis), wide, [*sizes[:axis], 1, *sizes[axis:]])
        sizes = [*sizes[:axis], target[axis], *sizes[axis + 1:]]
        t = symsize.reshape(ctx, t, sizes, wide)
    return symsize.broadcast(ctx, t, target, sizes) if sizes != target else t


def _operands_in(ctx, values, perm):
    out = []
    for v in values:
        if isinstance(v, Value):
            out.append(ctx.keras_tensor(ctx.materialize(v), perm))
        else:
            out.append(ctx.const_tensor(v, perm) if isinstance(v, Const) else v)
    return out


@converter("cat")
def cat(ctx, node, row):
    values = [v for v in ctx.arg("tensors") if not (isinstance(v, Const) and v.array.size == 0)]
    ref = next(ctx.materialize(v) for v in values if isinstance(v, Value))
    rank = ref.rank
    dim = int(node.args.get("dim", 0)) % (rank + (1 if "stack" in node.target else 0))
    if "stack" in node.target:
        perm, axis = plan.insert_dim(ref.perm, dim)
        return ctx.new_value(ops().stack(_operands_in(ctx, values, ref.perm), axis=axis), perm)
    return ctx.new_value(ops().concatenate(_operands_in(ctx, values, ref.perm), axis=ref.perm.index(dim)),
                         ref.perm)


@converter("split")
def split(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    name = node.target.split(".")[1]
    dim = int(node.args.get("dim", 0)) % x.rank
    size = x.meta.shape[dim]
    if not isinstance(size, int):
        raise DynamicShapeError(f"split of a dynamic dim at {ctx.where()}")
    if name == "unbind":
        sizes = [1] * size
    elif name == "chunk":
        chunks = int(node.args["chunks"])
        step = -(-size // chunks)
        sizes = [min(step, size - i) for i in range(0, size, step)]
    elif name == "tensor_split":
        return _tensor_split(ctx, node, x, dim, size)
    elif name == "split_with_sizes" or isinstance(node.args.get("split_size", node.args.get("split_sizes")), list):
        sizes = list(node.args.get("split_sizes", node.args.get("split_size")))
    else:
        step = int(node.args["split_size"])
        sizes = [min(step, size - i) for i in range(0, size, step)]
    axis = x.perm.index(dim)
    cuts, pos = [], 0
    for s in sizes[:-1]:
        pos += s
        cuts.append(pos)
    pieces = ops().split(x.tensor, cuts, axis=axis) if cuts else [x.tensor]
    metas = node.meta if isinstance(node.meta, (list, tuple)) else [node.meta] * len(pieces)
    if name == "unbind":
        perm = plan.drop_dims(x.perm, [dim])
        return tuple(ctx.new_value(ops().squeeze(p, axis=axis), perm, meta=m) for p, m in zip(pieces, metas))
    return tuple(ctx.new_value(p, x.perm, meta=m) for p, m in zip(pieces, metas))


def _tensor_split(ctx, node, x, dim, size):
    """torch.tensor_split: at indices (clamped to the dim, a piece is empty where they go back) or
    into n sections, the first size % n of them one longer."""
    if "sections" in node.args:
        n = int(node.args["sections"])
        q, r = divmod(size, n)
        cuts = [i * q + min(i, r) for i in range(n + 1)]
    else:
        cuts = [0, *(min(max(int(i) + size if int(i) < 0 else int(i), 0), size) for i in node.args["indices"]), size]
    axis = x.perm.index(dim)
    metas = node.meta if isinstance(node.meta, (list, tuple)) else [node.meta] * (len(cuts) - 1)
    return tuple(ctx.new_value(x.tensor[_index_at(x.rank, axis, slice(a, max(a, b)))], x.perm, meta=m)
                 for a, b, m in zip(cuts, cuts[1:], metas))


def _index_at(rank, axis, item):
    index = [slice(None)] * rank
    index[axis] = item
    return tuple(index)


def _int(v, ctx):
    if isinstance(v, Sym):
        raise DynamicShapeError(f"slicing at a dynamic position at {ctx.where()}")
    return v


@converter("slice")
def slice_(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    dim = int(node.args.get("dim", 0)) % x.rank
    if node.target.startswith("aten.narrow"):
        start, length, step = ctx.arg("start"), ctx.arg("length"), 1
        static = isinstance(start, int) and isinstance(length, int)
        stop = start + length if static else Sym(f"({_expr(start)}) + ({_expr(length)})")
    else:
        start, stop, step = ctx.arg("start"), ctx.arg("end"), node.args.get("step", 1)
    size = x.meta.shape[dim]
    if isinstance(stop, int) and isinstance(size, int) and stop >= size:
        stop = None
    if isinstance(stop, int) and stop > 2 ** 62:
        stop = None
    if stop is not None and stop == size:
        stop = None  # up to a dynamic size: to the end
    if (start in (None, 0)) and stop is None and step == 1:
        return Value(node.meta, x.perm, dict(x.tensors))
    axis = x.perm.index(dim)
    length = node.meta.shape[dim]
    if isinstance(start, Sym) or isinstance(stop, Sym) or (isinstance(length, int) and not isinstance(size, int)):
        out = symsize.slice_axis(ctx, x.tensor, symsize.keras_order(x), axis, start, stop, step,
                                 length if isinstance(length, int) else None)
        return ctx.new_value(out, x.perm)
    t = x.tensor[_index_at(x.rank, axis, slice(start, stop, step))]
    return ctx.new_value(t, x.perm)


def _expr(v) -> str:
    return v.expr if isinstance(v, Sym) else str(v)


@converter("select")
def select(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    dim = int(node.args["dim"]) % x.rank
    index = _int(ctx.arg("index"), ctx)
    t = x.tensor[_index_at(x.rank, x.perm.index(dim), int(index))]
    return ctx.new_value(t, plan.drop_dims(x.perm, [dim]))


def _index_tensor(ctx, v):
    if isinstance(v, Const):
        return v.array.astype("int64")
    return ctx.keras_tensor(ctx.materialize(v), plan.identity(v.rank))


@converter("index")
def index(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    if node.target.startswith("aten.index_select"):
        dim, idx = int(node.args["dim"]) % x.rank, ctx.arg("index")
        positions = [(dim, idx)]
    else:
        positions = [(d, v) for d, v in enumerate(ctx.arg("indices")) if v is not None]
    for _, idx in positions:
        if (isinstance(idx, Const) and idx.array.dtype == bool) or (
                isinstance(idx, Value) and idx.meta.dtype == "bool"):
            raise ctx.unsupported("boolean mask indexing (data-dependent shape)")
    dims = [d for d, _ in positions]
    if dims != list(range(dims[0], dims[0] + len(dims))):
        raise ctx.unsupported("advanced indexing with index tensors on non-adjacent dims")
    t = ctx.keras_tensor(x, plan.identity(x.rank))
    first, last = dims[0], dims[-1]
    if len(dims) == 1:
        return ctx.new_value(ops().take(t, _index_tensor(ctx, positions[0][1]), axis=first))
    # several adjacent index tensors: one flat index into the merged dims
    sizes = x.meta.shape[first:last + 1]
    flat = None
    for k, (_, idx) in enumerate(positions):
        stride = symsize.product(sizes[k + 1:])
        term = _index_tensor(ctx, idx)
        if stride != 1:
            term = ops().multiply(term, symsize.size_tensor(ctx, stride, "int64", [(t, list(x.meta.shape))]))
        flat = term if flat is None else ops().add(flat, term)
    merged = [*x.meta.shape[:first], symsize.product(sizes), *x.meta.shape[last + 1:]]
    out = ops().take(symsize.reshape(ctx, t, merged, list(x.meta.shape)), flat, axis=first)
    return ctx.new_value(out)


@converter("gather")
def gather(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    idx = ctx.arg("index")
    dim = int(node.args["dim"]) % x.rank
    t = ctx.keras_tensor(x, plan.identity(x.rank))
    ti = ctx.keras_tensor(ctx.materialize(idx), plan.identity(x.rank)) if isinstance(idx, Value) else idx.array
    return ctx.new_value(ops().take_along_axis(t, ti, axis=dim))


@converter("flip")
def flip(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    t = x.tensor
    for d in _dims(node.args["dims"], x.rank):
        t = ops().flip(t, axis=x.perm.index(d))
    return ctx.new_value(t, x.perm)


@converter("roll")
def roll(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    shifts, dims = node.args["shifts"], node.args.get("dims", [])
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    if not dims:
        raise ctx.unsupported("roll without dims (over the flattened tensor)")
    t = x.tensor
    for s, d in zip(shifts, _dims(dims, x.rank)):
        t = ops().roll(t, s, axis=x.perm.index(d))
    return ctx.new_value(t, x.perm)


@converter("triangle")
def triangle(ctx, node, row):
    x = ctx.materialize(ctx.arg("input"))
    perm = x.perm if x.perm[-2:] == (x.rank - 2, x.rank - 1) else plan.identity(x.rank)
    fn = ops().tril if "tril" in node.target else ops().triu
    return ctx.new_value(fn(ctx.keras_tensor(x, perm), int(node.args.get("diagonal", 0))), perm)
