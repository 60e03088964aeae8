"""Layout plan: how each Keras tensor is laid out in the generated torch module.

Every tensor carries a permutation ``perm``: the torch tensor is ``keras_tensor.permute(perm)``
(torch dim i holds Keras axis perm[i]). Keras is channels-last; convolutions, pooling and batch
norm in torch want channels-first, so their outputs live in ``channels_first(rank)``. Layout-free
ops pass a layout through, axis-taking ops have their axes remapped, and an explicit permute is
emitted only where an op cannot work in the layout it is given (a Dense on a feature map, a
Reshape, an LSTM...). The emitter asks this module the questions; it holds no state.
"""

from __future__ import annotations

from .. import layout
from ..layout import Perm, channels_first, identity, inverse, is_identity, relative, same_padding  # noqa: F401

#: the torch dim that holds Keras axis ``axis`` of a tensor laid out as ``perm``
torch_dim = layout.position
#: layout after removing Keras ``axes`` (a reduction without keepdims)
drop_axes = layout.drop

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


def torch_shape(perm: Perm, keras_shape) -> tuple:
    return tuple(keras_shape[p] for p in perm)


def torch_pad_arg(pads) -> tuple[int, ...]:
    """[(left, right) per spatial axis, first axis first] -> F.pad's order (last axis first)."""
    flat: list[int] = []
    for left, right in reversed(list(pads)):
        flat += [int(left), int(right)]
    return tuple(flat)
