"""Layout plan: how each Keras tensor is laid out in the generated torch module.

Every tensor carries a permutation ``perm``: the torch tensor is ``keras_tensor.permute(perm)``
(torch dim i holds Keras axis perm[i]). Keras is channels-last; convolutions, pooling and batch
norm in torch want channels-first, so their outputs live in ``channels_first(rank)``. Layout-free
ops pass a layout through, axis-taking ops have their axes remapped, and an explicit permute is
emitted only where an op cannot work in the layout it is given (a Dense on a feature map, a
Reshape, an LSTM...). The emitter asks this module the questions; it holds no state.
"""

from __future__ import annotations

Perm = tuple[int, ...]

# Hooks whose torch layers compute channels-first (the channel axis at dim 1).
CHANNELS_FIRST_HOOKS = frozenset({
    "conv", "conv_transpose", "depthwise_conv", "separable_conv", "pool", "adaptive_pool",
    "batch_norm", "group_norm", "pad", "cropping", "upsample", "spatial_dropout",
})


# Hooks that work in whatever layout they are given (elementwise): a model input read only
# through them still goes channels-first when a convolution follows.
LAYOUT_FREE_HOOKS = frozenset({
    "rescaling", "normalization", "activation", "dropout", "identity", "unary", "binary", "compare", "cast",
    "clamp", "where",
})


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def channels_first(rank: int) -> Perm:
    """N(D)HWC -> NC(D)HW as a permutation of Keras axes; ranks below 3 have no channel axis to move."""
    return (0, rank - 1, *range(1, rank - 1)) if rank >= 3 else identity(rank)


def is_identity(perm: Perm) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


def inverse(perm: Perm) -> Perm:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def relative(src: Perm, dst: Perm) -> Perm:
    """The ``permute`` that turns a torch tensor laid out as ``src`` into one laid out as ``dst``."""
    return tuple(src.index(d) for d in dst)


def torch_dim(perm: Perm, axis: int) -> int:
    """The torch dim that holds Keras axis ``axis`` (negative axes count from the end)."""
    rank = len(perm)
    return perm.index(axis % rank) if rank else 0


def torch_shape(perm: Perm, keras_shape) -> tuple:
    return tuple(keras_shape[p] for p in perm)


def drop_axes(perm: Perm, axes) -> Perm:
    """Layout after removing Keras ``axes`` (a reduction without keepdims)."""
    rank = len(perm)
    dropped = {a % rank for a in axes}
    kept = [p for p in perm if p not in dropped]
    order = sorted(kept)
    return tuple(order.index(p) for p in kept)


def same_padding(size, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (left, right) for one spatial axis: the extra pixel goes at the end.

    torch's own padding='same' only exists for stride 1 and splits the other way round, so xlate
    always emits these numbers explicitly.
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


def torch_pad_arg(pads) -> tuple[int, ...]:
    """[(left, right) per spatial axis, first axis first] -> F.pad's order (last axis first)."""
    flat: list[int] = []
    for left, right in reversed(list(pads)):
        flat += [int(left), int(right)]
    return tuple(flat)
