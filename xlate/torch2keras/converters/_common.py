"""Helpers shared by the torch -> Keras converters."""

from __future__ import annotations

import numpy as np

from .. import plan, symsize
from ..source_graph import Sym
from ..values import Const, Value

# Constants up to this many elements are written inline into the op; larger ones become a
# Constant layer whose value is saved with the weights.
INLINE_CONST_LIMIT = 64


def ops():
    import keras

    return keras.ops


def layers():
    import keras

    return keras.layers


def rank_of(v) -> int:
    if isinstance(v, Value):
        return v.rank
    if isinstance(v, Const):
        return v.array.ndim
    return 0


def aligned(ctx, operands):
    """Bring elementwise operands to one layout (torch broadcasting: trailing dims align).

    Returns (keras operands, layout perm of the result, feature_order of the result).
    Python scalars pass through; constants are permuted in NumPy at conversion time.
    """
    values = [v for v in operands if isinstance(v, Value)]
    rank = max((rank_of(v) for v in operands), default=0)
    ref = next((v for v in values if v.rank == rank), None)
    feature_order = None
    if ref is not None and ref.feature_order is not None:
        same = all(v.feature_order is ref.feature_order or v.rank == 0 for v in values) and not any(
            isinstance(v, Const) and v.array.size > 1 for v in operands)
        if same:
            feature_order = ref.feature_order
        else:
            ref = ctx.materialize(ref)
    perm = ref.perm if ref is not None else plan.identity(rank)
    out = []
    for v in operands:
        if isinstance(v, Value):
            if feature_order is not None:
                out.append(v.tensor)
                continue
            v = ctx.materialize(v)
            if v.rank < rank:
                t = ctx.keras_tensor(v, plan.identity(v.rank))
                t = ops().reshape(t, (1,) * (rank - v.rank) + tuple(_static(v.meta.shape))) if _all_static(
                    v.meta.shape) else _expand_leading(t, rank - v.rank)
                tmp = Value(v.meta, plan.identity(rank), {plan.identity(rank): t})
                out.append(ctx.keras_tensor(tmp, perm))
            else:
                out.append(ctx.keras_tensor(v, perm))
        elif isinstance(v, Const) and v.trainable:
            # a parameter keeps its torch shape as a Keras variable; the broadcast happens in the graph
            t = ctx.const_tensor(v, None)
            if v.array.ndim < rank:
                t = ops().reshape(t, (1,) * (rank - v.array.ndim) + v.array.shape)
            if rank and not plan.is_identity(perm):
                t = ops().transpose(t, perm)
            out.append(t)
        elif isinstance(v, Const):
            a = v.array
            if a.ndim < rank:
                a = a.reshape((1,) * (rank - a.ndim) + a.shape)
            a = plan.permute_array(a, perm) if a.ndim else a
            if a.size > INLINE_CONST_LIMIT:
                # the buffer's path is recorded only while its value is the torch tensor as is
                out.append(ctx.const_tensor(v if a is v.array else Const(a), None))
            else:
                out.append(a.item() if a.ndim == 0 and a.dtype.kind == "f" else a)
        elif isinstance(v, Sym):
            # a dynamic size used as a number (HF BEiT's ``coords += window_size - 1`` over the
            # patch grid): read from a tensor that has it, at run time
            out.append(symsize.size_tensor(ctx, v, ref.meta.dtype if ref is not None else "int64"))
        else:
            out.append(v)
    return out, perm, feature_order


def _all_static(shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def _static(shape):
    return [d if isinstance(d, int) else -1 for d in shape]


def _expand_leading(t, n):
    for _ in range(n):
        t = ops().expand_dims(t, 0)
    return t


def np_dtype(torch_dtype: str):
    return np.dtype({"bfloat16": "float32"}.get(torch_dtype, torch_dtype))
