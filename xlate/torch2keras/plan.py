"""Layout plan: how each torch tensor is laid out in the Keras graph.

Every value carries a permutation ``perm``: the Keras tensor is ``torch_tensor.permute(perm)``
(keras axis i holds torch dim perm[i]). Convolutions want channels-last, most other ops accept
any layout once their axis arguments are remapped, and a permute/transpose in the torch graph
only relabels the layout. Transposes are emitted only where an op cannot work in the layout it
is given, and each is emitted once per value (cached).
"""

from __future__ import annotations

import numpy as np

from .. import layout
from ..layout import Perm, channels_last, identity, is_identity, relative  # noqa: F401 - the plan's vocabulary

#: the Keras axis that holds torch dim ``dim`` of a tensor laid out as ``perm``
keras_axis = layout.position
#: layout after removing torch ``dims`` (a reduction without keepdim, a select)
drop_dims = layout.drop


def after_permute(perm: Perm, dims) -> Perm:
    """Layout of ``y = x.permute(dims)`` that needs no Keras op, given x's layout."""
    inv = np.argsort([d % len(dims) for d in dims])
    return tuple(int(inv[p]) for p in perm)


def insert_dim(perm: Perm, dim: int) -> tuple[Perm, int]:
    """Layout after inserting a size-1 torch dim at ``dim``; also the Keras axis to insert at.

    The new axis goes right before the Keras axis of the torch dim that follows it (or last).
    """
    rank = len(perm) + 1
    dim = dim % rank
    shifted = [p + 1 if p >= dim else p for p in perm]
    if dim < rank - 1:
        axis = shifted.index(dim + 1)
    else:
        axis = len(shifted)
    shifted.insert(axis, dim)
    return tuple(shifted), axis


def permute_array(a: np.ndarray, perm: Perm | None) -> np.ndarray:
    return a if perm is None or is_identity(perm) else np.transpose(a, perm)


def reshape_groups(in_shape, out_shape):
    """Split a reshape into groups of input dims that become groups of output dims.

    Returns [(in_dims, out_dims), ...] covering both shapes in order, or None when the sizes are
    not known well enough to group (dynamic sizes other than a leading shared one).
    """
    groups = []
    i = j = 0
    n_in, n_out = len(in_shape), len(out_shape)
    while i < n_in or j < n_out:
        gi, gj = [], []
        pi = pj = 1
        if i < n_in and j < n_out and in_shape[i] == out_shape[j] and not isinstance(in_shape[i], int):
            groups.append(([i], [j]))  # the same dynamic size, kept as is
            i += 1
            j += 1
            continue
        while True:
            if not isinstance(pi, int) or not isinstance(pj, int):
                return None
            if gi and gj and pi == pj:
                # absorb trailing size-1 dims on either side into this group
                while i < n_in and in_shape[i] == 1 and (j >= n_out or out_shape[j] != 1):
                    gi.append(i)
                    i += 1
                while j < n_out and out_shape[j] == 1 and (i >= n_in or in_shape[i] != 1):
                    gj.append(j)
                    j += 1
                break
            if (pi <= pj or j >= n_out) and i < n_in:
                if not isinstance(in_shape[i], int):
                    return None
                pi *= in_shape[i]
                gi.append(i)
                i += 1
            elif j < n_out:
                if not isinstance(out_shape[j], int):
                    return None
                pj *= out_shape[j]
                gj.append(j)
                j += 1
            else:
                return None
        groups.append((gi, gj))
    return groups


def reshape_in_layout(perm: Perm, in_shape, out_shape):
    """If ``x.reshape(out_shape)`` can be done directly on the Keras tensor laid out as ``perm``,
    return (keras_target_shape, out_perm); else None (the caller transposes to torch order first).

    Possible when every group of merged/split torch dims sits contiguously and in order in the
    Keras layout: the groups may then appear in a different order, which becomes out_perm.
    """
    groups = reshape_groups(in_shape, out_shape)
    if groups is None:
        return None
    # order of the groups as they appear along the Keras axes
    group_of_dim = {}
    for g, (gi, _) in enumerate(groups):
        for d in gi:
            group_of_dim[d] = g
    keras_group_order = []
    pos = 0
    while pos < len(perm):
        g = group_of_dim[perm[pos]]
        gi = groups[g][0]
        if list(perm[pos:pos + len(gi)]) != gi:
            return None
        keras_group_order.append(g)
        pos += len(gi)
    # groups that consume no input dim (pure size-1 insertions) keep their torch position
    placed = set(keras_group_order)
    for g, (gi, _) in enumerate(groups):
        if not gi and g not in placed:
            keras_group_order.insert(min(g, len(keras_group_order)), g)
    out_perm = [d for g in keras_group_order for d in groups[g][1]]
    keras_shape = [out_shape[d] for d in out_perm]
    return tuple(keras_shape), tuple(out_perm)


def flatten_feature_order(chw) -> np.ndarray:
    """For a channels-last flatten of a (C, *S) block: the torch feature index at each Keras position."""
    c, *spatial = chw
    idx = np.arange(int(np.prod(chw))).reshape(c, *spatial)
    return np.moveaxis(idx, 0, -1).reshape(-1)
