"""Permutation and padding arithmetic shared by both directions and the ONNX path.

A layout is a permutation of a tensor's dims; channels-first (PyTorch) and channels-last (Keras)
differ by moving the channel dim between position 1 and the end. Each direction's ``plan``
module names these in its own terms (``keras_axis``, ``torch_dim``...). ``perm_at`` and
``permute_array`` apply a model boundary's layouts to NumPy arrays (the parity gate and the
per-layer diagnosis share them).
"""

from __future__ import annotations

import numpy as np

Perm = tuple[int, ...]


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def is_identity(perm: Perm) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


def channels_last(rank: int) -> Perm:
    """NC(D)HW -> N(D)HWC; ranks below 3 have no channel axis to move."""
    return (0, *range(2, rank), 1) if rank >= 3 else identity(rank)


def channels_first(rank: int) -> Perm:
    """N(D)HWC -> NC(D)HW; ranks below 3 have no channel axis to move."""
    return (0, rank - 1, *range(1, rank - 1)) if rank >= 3 else identity(rank)


def inverse(perm: Perm) -> Perm:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def relative(src: Perm, dst: Perm) -> Perm:
    """The transpose that turns a tensor laid out as ``src`` into one laid out as ``dst``."""
    return tuple(src.index(d) for d in dst)


def position(perm: Perm, dim: int) -> int:
    """Where ``perm`` puts ``dim`` of the unpermuted tensor (negative dims count from the end)."""
    rank = len(perm)
    return perm.index(dim % rank) if rank else 0


def drop(perm: Perm, dims) -> Perm:
    """Layout after removing ``dims`` of the unpermuted tensor (a reduction without keepdim, a select)."""
    dropped = {d % len(perm) for d in dims}
    kept = [p for p in perm if p not in dropped]
    order = sorted(kept)
    return tuple(order.index(p) for p in kept)


def same_padding(size, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (left, right) for one spatial axis: the extra pixel goes at the end.

    torch's own padding='same' only exists for stride 1 and splits the other way round, so xlate
    always emits these numbers explicitly. ``size`` None (known only at run time) works for stride 1.
    """
    k_eff = dilation * (kernel - 1) + 1
    if size is None:
        if stride != 1:
            raise ValueError("'same' padding with stride > 1 needs a static spatial size")
        total = k_eff - 1
    else:
        out = -(-size // stride)
        total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def perm_at(perms, i):
    """The ``i``-th of a boundary's perms (None: no perms, or fewer than ``i + 1``)."""
    return perms[i] if perms is not None and i < len(perms) else None


def permute_array(a: np.ndarray, perm) -> np.ndarray:
    return a if perm is None else np.transpose(a, perm)
