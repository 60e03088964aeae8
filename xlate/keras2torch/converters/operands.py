"""How a keras -> torch converter gets its operands: constants laid out to match a tensor,
elementwise operands brought to one layout, and the plain-value helpers (scalars, axes).

Owns only operand handling shared by the converter families (core, activations, ops,
shape_ops). It registers no converter and must not import a converter family or the emitter.
"""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import NotConvertible
from ..source import Code, call, literal, torch_dtype
from ..walk import Ref


def layout_constant(array: np.ndarray, perm) -> np.ndarray:
    """A constant that broadcasts against a Keras tensor of rank len(perm), reshaped and
    transposed so it broadcasts the same way against the torch tensor laid out as ``perm``."""
    array = np.asarray(array)
    rank = len(perm)
    if array.ndim > rank:
        raise NotConvertible(f"a constant of rank {array.ndim} broadcast against rank {rank}")
    if plan.is_identity(perm):
        return array
    full = array.reshape((1,) * (rank - array.ndim) + array.shape)
    return np.transpose(full, perm)


def as_array(x):
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
    x = as_array(x)
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


def scalar(v):
    a = as_array(v)
    return a.item() if isinstance(a, np.ndarray) else a


def axes_of(axis, rank) -> tuple[int, ...] | None:
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return tuple(a % rank for a in axis)
    return (axis % rank,)


def dims_source(dims: tuple[int, ...]):
    return dims[0] if len(dims) == 1 else dims
