"""Named, invertible weight transforms between PyTorch and Keras layouts.

Every transform maps a tuple of PyTorch arrays to a tuple of Keras arrays (``forward``) and
back (``inverse``). Table rows refer to transforms by name only, so the set below is the closed
vocabulary a row may use. All functions work on NumPy arrays and never copy more than needed.

``exact`` says whether ``inverse(forward(w)) == w`` holds bit for bit. The one transform where it
cannot (the LSTM bias merge: two torch biases become one Keras bias) declares ``exact=False`` and
guarantees the weaker ``forward(inverse(k)) == k`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import TableError

Arrays = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Transform:
    name: str
    doc: str
    forward: Callable[..., Arrays] = field(repr=False)
    inverse: Callable[..., Arrays] = field(repr=False)
    torch_arity: int = 1
    keras_arity: int = 1
    exact: bool = True

    def to_keras(self, *torch_arrays: np.ndarray, **params) -> Arrays:
        if len(torch_arrays) != self.torch_arity:
            raise ValueError(f"{self.name} takes {self.torch_arity} torch array(s), got {len(torch_arrays)}")
        return tuple(_contiguous(a) for a in self.forward(*torch_arrays, **params))

    def to_keras_views(self, *torch_arrays: np.ndarray, **params) -> Arrays:
        """``to_keras`` without the final copies: the outputs may be views of the inputs (a
        transposed kernel), for a caller that copies them into their destination itself."""
        if len(torch_arrays) != self.torch_arity:
            raise ValueError(f"{self.name} takes {self.torch_arity} torch array(s), got {len(torch_arrays)}")
        return tuple(self.forward(*torch_arrays, **params))

    def to_torch(self, *keras_arrays: np.ndarray, **params) -> Arrays:
        if len(keras_arrays) != self.keras_arity:
            raise ValueError(f"{self.name} takes {self.keras_arity} keras array(s), got {len(keras_arrays)}")
        return tuple(_contiguous(a) for a in self.inverse(*keras_arrays, **params))


TILED_COPY_MIN = 1 << 16  # elements: below this numpy's own copy is as fast


def _contiguous(a) -> np.ndarray:
    if isinstance(a, np.ndarray) and a.ndim == 2 and not a.flags.c_contiguous and a.size >= TILED_COPY_MIN \
            and a.T.flags.c_contiguous:
        return _transposed_copy(a)
    # np.ascontiguousarray would turn a 0-d array into shape (1,)
    return np.require(a, requirements="C")


def _transposed_copy(a: np.ndarray, rows: int = 64) -> np.ndarray:
    """A C-contiguous copy of ``a``, the transpose of a C-contiguous matrix (a Dense kernel), made
    a band of source rows at a time: numpy's one-pass copy strides a whole row per element and is
    3 to 7 times slower on large weights."""
    src = a.T
    out = np.empty(a.shape, a.dtype)
    for i in range(0, src.shape[0], rows):
        out[:, i:i + rows] = src[i:i + rows].T
    return out


TRANSFORMS: dict[str, Transform] = {}


def register(transform: Transform) -> Transform:
    if transform.name in TRANSFORMS:
        raise TableError(f"transform {transform.name!r} registered twice")
    TRANSFORMS[transform.name] = transform
    return transform


def get_transform(name: str) -> Transform:
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise TableError(f"unknown weight transform {name!r}; known: {', '.join(sorted(TRANSFORMS))}") from None


# --- single-tensor permutations -------------------------------------------------------------


def _conv_to_keras(w):
    # torch (O, I/g, *k) -> keras (*k, I/g, O); conv and transposed conv share the permutation
    n = w.ndim
    return (np.transpose(w, (*range(2, n), 1, 0)),)


def _conv_to_torch(k):
    n = k.ndim
    return (np.transpose(k, (n - 1, n - 2, *range(n - 2))),)


def _depthwise_to_keras(w, multiplier):
    # torch (C*M, 1, *k), output channel c*M+m  ->  keras (*k, C, M)
    cm, one, *ks = w.shape
    if one != 1 or cm % multiplier:
        raise ValueError(f"not a depthwise kernel of multiplier {multiplier}: {w.shape}")
    c = cm // multiplier
    w = w.reshape(c, multiplier, *ks)
    n = w.ndim
    return (np.transpose(w, (*range(2, n), 0, 1)),)


def _depthwise_to_torch(k, multiplier=None):
    *ks, c, m = k.shape
    n = k.ndim
    w = np.transpose(k, (n - 2, n - 1, *range(n - 2)))
    return (w.reshape(c * m, 1, *ks),)


def _flatten_dense_to_keras(w, chw):
    # A Linear after torch.flatten of an NC(D)HW tensor reads features in C,*S order; the Keras
    # model flattens channels-last (*S, C). Permute the weight columns to match, then transpose.
    c, *spatial = chw
    out = w.shape[0]
    w = w.reshape(out, c, *spatial)
    w = np.moveaxis(w, 1, -1)  # (out, *S, C)
    return (w.reshape(out, -1).T,)


def _flatten_dense_to_torch(k, chw):
    c, *spatial = chw
    out = k.shape[1]
    w = k.T.reshape(out, *spatial, c)
    w = np.moveaxis(w, -1, 1)
    return (w.reshape(out, -1),)


def _gru_reorder(a, axis=0):
    # torch gate blocks (r, z, n) <-> keras (z, r, h); the swap is its own inverse
    r, z, n = np.split(a, 3, axis=axis)
    return np.concatenate([z, r, n], axis=axis)


register(Transform("identity", "copied as is", lambda w: (w,), lambda k: (k,)))
register(Transform("dense_kernel", "torch (out, in) <-> keras (in, out): transpose",
                   lambda w: (w.T,), lambda k: (k.T,)))
register(Transform("conv_kernel", "torch (O, I/g, *k) <-> keras (*k, I/g, O), for 1-D, 2-D and 3-D",
                   _conv_to_keras, _conv_to_torch))
register(Transform("conv_transpose_kernel",
                   "torch (I, O/g, *k) <-> keras (*k, O, I): the conv permutation, no spatial flip",
                   _conv_to_keras, _conv_to_torch))
register(Transform("depthwise_kernel",
                   "torch (C*M, 1, *k) <-> keras (*k, C, M); output channel c*M+m in both",
                   _depthwise_to_keras, _depthwise_to_torch))
register(Transform("flatten_dense_kernel",
                   "Linear after a channels-first flatten: columns reordered C,*S -> *S,C, then transposed",
                   _flatten_dense_to_keras, _flatten_dense_to_torch))
register(Transform("channels_last_param",
                   "a per-element parameter over (C, *S) <-> (*S, C), e.g. LayerNorm([C,H,W])",
                   lambda w: (np.moveaxis(w, 0, -1),), lambda k: (np.moveaxis(k, -1, 0),)))
register(Transform("prelu_alpha",
                   "per-channel PReLU weight (C,) <-> Keras alpha (1,..,1,C) shared over the spatial axes",
                   lambda w, spatial_rank=0: (w.reshape((1,) * spatial_rank + (-1,)),),
                   lambda k, spatial_rank=0: (k.reshape(-1),)))
register(Transform("gru_kernel",
                   "torch (3H, X) gates r,z,n <-> keras (X, 3H) gates z,r,h",
                   lambda w: (_gru_reorder(w).T,), lambda k: (_gru_reorder(k.T),)))
register(Transform("gru_bias",
                   "torch bias_ih, bias_hh (3H,) r,z,n <-> keras bias (2, 3H) z,r,h (reset_after=True)",
                   lambda b_ih, b_hh: (np.stack([_gru_reorder(b_ih), _gru_reorder(b_hh)]),),
                   lambda b: (_gru_reorder(b[0]), _gru_reorder(b[1])),
                   torch_arity=2, keras_arity=1))
register(Transform("lstm_bias",
                   "torch bias_ih + bias_hh -> keras bias (gate order i,f,g,o is the same); "
                   "back: bias_ih = bias, bias_hh = 0 (the split is not recoverable, the sum is)",
                   lambda b_ih, b_hh: (b_ih + b_hh,),
                   lambda b: (b, np.zeros_like(b)),
                   torch_arity=2, keras_arity=1, exact=False))


# --- multi-head attention --------------------------------------------------------------------


def _mha_proj_to_keras(w, b, num_heads):
    # torch Linear weight (H*hd, E_in) -> EinsumDense kernel (E_in, H, hd); bias (H*hd,) -> (H, hd)
    e, e_in = w.shape
    hd = e // num_heads
    return w.T.reshape(e_in, num_heads, hd), b.reshape(num_heads, hd)


def _mha_proj_to_torch(k, b, num_heads=None):
    e_in, h, hd = k.shape
    return k.reshape(e_in, h * hd).T, b.reshape(h * hd)


def _mha_in_proj_to_keras(w, b, num_heads):
    out = []
    for w_i, b_i in zip(np.split(w, 3, axis=0), np.split(b, 3, axis=0)):
        out += _mha_proj_to_keras(w_i, b_i, num_heads)
    return tuple(out)


def _mha_in_proj_to_torch(qk, qb, kk, kb, vk, vb, num_heads=None):
    ws, bs = zip(*(_mha_proj_to_torch(k, b) for k, b in ((qk, qb), (kk, kb), (vk, vb))))
    return np.concatenate(ws, axis=0), np.concatenate(bs, axis=0)


register(Transform("mha_proj",
                   "one projection: torch weight (H*hd, E_in), bias (H*hd,) <-> "
                   "EinsumDense kernel (E_in, H, hd), bias (H, hd)",
                   _mha_proj_to_keras, _mha_proj_to_torch, torch_arity=2, keras_arity=2))
register(Transform("mha_in_proj",
                   "packed in_proj_weight (3E, E) and in_proj_bias (3E,) (rows q|k|v) <-> "
                   "query/key/value EinsumDense kernels (E, H, hd) and biases (H, hd)",
                   _mha_in_proj_to_keras, _mha_in_proj_to_torch, torch_arity=2, keras_arity=6))
register(Transform("mha_out_proj",
                   "out_proj.weight (E_out, H*hd) <-> output EinsumDense kernel (H, hd, E_out)",
                   lambda w, num_heads: (w.T.reshape(num_heads, -1, w.shape[0]),),
                   lambda k, num_heads=None: (k.reshape(-1, k.shape[-1]).T,)))
