"""Numeric preprocessing layers: Discretization, CategoryEncoding, IntegerLookup, Hashing.

They become tensor code over buffers holding the adapted state (bin boundaries, sorted
vocabulary): ``torch.bucketize(x, boundaries, right=True)`` is TensorFlow's Bucketize, a
vocabulary lookup is ``torch.searchsorted`` into the sorted keys, and the one-hot / multi-hot /
count encodings compare the indices with ``torch.arange(depth)``, so out-of-range indices give
zeros where TensorFlow's bincount drops them. Hashing of numbers hashes their decimal strings
with FarmHash Fingerprint64, as TensorFlow does: ``hash_bucket`` builds each value's ASCII digits
and runs the 64-bit hash in int64 tensor code (wrapping multiplies, logical shifts emulated).
Strings have no torch tensor: StringLookup, TextVectorization and string inputs stay unsupported.
"""

from __future__ import annotations

import numpy as np

from ..helpers import register_helper
from ..registry import NotConvertible, converter
from ..source import literal, torch_dtype


def encode(em, node, idx: str, rank: int, mode: str, depth: int, *, weights: str | None = None) -> str:
    """Keras' encode_categorical_inputs (TensorFlow backend) of integer indices ``idx`` (a
    variable) of ``rank``."""
    dtype = torch_dtype(em.graph.tensors[node.outputs[0]].dtype)
    if mode == "int":
        return f"{idx}.to({dtype})"
    hot = em.temp(f"{node.name}_hot")
    if mode == "one_hot":
        shape = em.graph.tensors[node.inputs[0]].shape
        source = idx
        if rank > 1 and shape[-1] == 1:
            source = f"{idx}.squeeze(-1)"
        elif rank > 1 and shape[-1] is None:  # a free last size: Keras squeezes it when it is 1
            source = f"({idx}.squeeze(-1) if {idx}.shape[-1] == 1 else {idx})"
        em.emit(f"{hot} = {source}.unsqueeze(-1) == torch.arange({depth}, device={idx}.device)",
                "one-hot: indices out of range give a zero row, as in TensorFlow")
        return f"{hot}.to({dtype})"
    if mode not in ("multi_hot", "count"):
        raise NotConvertible(f"output_mode={mode!r}")
    axis = 1 if rank > 1 else 0
    em.emit(f"{hot} = {idx}.unsqueeze(-1) == torch.arange({depth}, device={idx}.device)")
    if mode == "multi_hot":
        return f"{hot}.any({axis}).to({dtype})"
    if weights is not None:
        return f"({hot} * {weights}.unsqueeze(-1)).sum({axis})"
    return f"{hot}.sum({axis}).to({dtype})"


@converter("discretization")
def discretization(em, node, row):
    cfg = node.config
    if cfg.get("sparse"):
        raise NotConvertible("sparse=True (a sparse output tensor)")
    layer = node.op
    bins = np.asarray(layer.bin_boundaries if layer.bin_boundaries is not None else [], dtype=np.float32)
    if layer.bin_boundaries is None:
        raise NotConvertible("no bin boundaries (call adapt() first)")
    x = em.input(node, 0, "keras")
    buf = em.buffer(f"{node.name}_bin_boundaries", bins)
    src = x.var if x.dtype == "float32" else f"{x.var}.float()"
    idx = em.temp(f"{node.name}_bins")
    em.emit(f"{idx} = torch.bucketize({src}, self.{buf}, right=True)",
            "TensorFlow's Bucketize: boundaries[i-1] <= x < boundaries[i] -> i")
    em.assign(node, encode(em, node, idx, x.rank, cfg["output_mode"], len(bins) + 1))


@converter("category_encoding")
def category_encoding(em, node, row):
    cfg = node.config
    if cfg.get("sparse"):
        raise NotConvertible("sparse=True (a sparse output tensor)")
    x = em.input(node, 0, "keras")
    src = x.var
    if "int" not in x.dtype:
        src = em.temp(f"{node.name}_ids")
        em.emit(f"{src} = {x.var}.long()")
    weights = node.kwargs.get("count_weights")
    if weights is None and len(node.args) > 1:
        weights = node.args[1]
    w = em.in_layout(weights, "keras").var if weights is not None else None
    em.assign(node, encode(em, node, src, x.rank, cfg["output_mode"], int(cfg["num_tokens"]), weights=w))


@converter("integer_lookup")
def integer_lookup(em, node, row):
    layer, cfg = node.op, node.config
    if cfg.get("sparse"):
        raise NotConvertible("sparse=True (a sparse output tensor)")
    vocab = [int(v) for v in layer.get_vocabulary(include_special_tokens=False)]
    x = em.input(node, 0, "keras")
    src = x.var
    if x.dtype != "int64":
        src = em.temp(f"{node.name}_ids")
        em.emit(f"{src} = {x.var}.long()")
    if cfg.get("invert"):
        return _inverted(em, node, layer, cfg, vocab, src)
    oov_start = layer._oov_start_index()
    token_start = layer._token_start_index()
    n_oov = int(cfg["num_oov_indices"])
    order = np.argsort(np.asarray(vocab, dtype=np.int64), kind="stable")
    keys = em.buffer(f"{node.name}_keys", np.asarray(vocab, dtype=np.int64)[order])
    values = em.buffer(f"{node.name}_indices", (np.arange(len(vocab), dtype=np.int64) + token_start)[order])
    pos, idx = em.temp(f"{node.name}_pos"), em.temp(f"{node.name}_idx")
    em.emit(f"{pos} = torch.searchsorted(self.{keys}, {src}).clamp(max={max(len(vocab) - 1, 0)})",
            "vocabulary lookup: the sorted keys' position of each input")
    if n_oov > 1:
        if cfg.get("oov_method", "floormod") != "floormod":
            raise NotConvertible(f"oov_method={cfg['oov_method']!r} (a string hash of the integers)")
        oov = f"torch.remainder({src}, {n_oov}) + {oov_start}"
    else:
        oov = str(oov_start if n_oov == 1 else -1)
    em.emit(f"{idx} = torch.where(self.{keys}[{pos}] == {src}, self.{values}[{pos}], {oov})",
            "out-of-vocabulary values go to the OOV indices")
    if cfg.get("mask_token") is not None:
        mask_value = 0 if cfg["output_mode"] == "int" else np.iinfo(np.int64).max
        em.emit(f"{idx} = torch.where({src} == {int(cfg['mask_token'])}, {mask_value}, {idx})", "the mask token")
    if n_oov == 0:
        em.emit(f"if ({idx} < 0).any():", "Keras raises on out-of-vocabulary values when num_oov_indices=0")
        em.emit("    raise ValueError('IntegerLookup: an out-of-vocabulary value and num_oov_indices=0')")
    mode = cfg["output_mode"]
    depth = int(cfg["max_tokens"]) if cfg.get("pad_to_max_tokens") and cfg.get("max_tokens") else \
        int(layer.vocabulary_size())
    if mode == "tf_idf":
        idf = em.buffer(f"{node.name}_idf_weights", np.asarray(layer.idf_weights_const, dtype=np.float32))
        em.assign(node, f"{encode(em, node, idx, x.rank, 'count', depth)} * self.{idf}")
        return
    em.assign(node, encode(em, node, idx, x.rank, mode, depth))


def _inverted(em, node, layer, cfg, vocab, src):
    """invert=True: indices back to the integers of the vocabulary (OOV indices -> oov_token)."""
    size = int(layer.vocabulary_size())
    oov_token = int(cfg["oov_token"])
    table = np.full(size, oov_token, dtype=np.int64)
    start = layer._token_start_index()
    table[start:start + len(vocab)] = vocab
    if cfg.get("mask_token") is not None:
        table[0] = int(cfg["mask_token"])
    buf = em.buffer(f"{node.name}_tokens", table)
    inside = f"({src} >= 0) & ({src} < {size})"
    em.assign(node, f"torch.where({inside}, self.{buf}[{src}.clamp(0, {size - 1})], {literal(oov_token)})",
              comment="indices back to vocabulary integers")


register_helper("hash_bucket", '''
def _u64(c):
    return c - (1 << 64) if c >= 1 << 63 else c


_K0, _K1, _K2 = _u64(0xC3A5C85C97CB3127), _u64(0xB492B66FBE98F273), _u64(0x9AE16A3B2F90404F)


def _shr(v, s):
    """Logical right shift of int64 tensors holding uint64 bits."""
    return (v >> s) & ((1 << (64 - s)) - 1)


def _rot(v, s):
    return _shr(v, s) | (v << (64 - s))


def _hash16(u, v, mul):
    a = (u ^ v) * mul
    a = a ^ _shr(a, 47)
    b = (v ^ a) * mul
    b = b ^ _shr(b, 47)
    return b * mul


def farmhash64(values):
    """FarmHash Fingerprint64 of each int64 value's decimal string (TensorFlow's
    tf.strings.to_hash_bucket_fast(tf.as_string(values))), as int64 tensors holding the uint64 bits."""
    neg = (values < 0).long()
    n = values.abs()
    powers = 10 ** torch.arange(18, -1, -1, device=values.device)
    digits = n.unsqueeze(-1) // powers % 10
    count = (n.unsqueeze(-1) >= powers).sum(-1).clamp(min=1)
    length = count + neg
    pos = torch.arange(28, device=values.device)
    index = (19 - count - neg).unsqueeze(-1) + pos
    chars = 48 + digits.gather(-1, index.clamp(0, 18))
    chars = torch.where((neg.unsqueeze(-1) == 1) & (pos == 0), 45, chars)
    chars = torch.where(pos < length.unsqueeze(-1), chars, 0)

    def fetch(offset, size=8):
        shifts = 8 * torch.arange(size, device=values.device)
        window = chars.gather(-1, offset.clamp(min=0).unsqueeze(-1) + torch.arange(size, device=values.device))
        return (window << shifts).sum(-1)

    mul = _K2 + length * 2
    zero = torch.zeros_like(length)
    a = fetch(zero) + _K2
    b = fetch(length - 8)
    upto16 = _hash16(_rot(b, 37) * mul + a, (_rot(a, 25) + b) * mul, mul)
    a4 = fetch(zero, 4)
    upto7 = _hash16(length + (a4 << 3), fetch(length - 4, 4), mul)
    c0 = chars[..., 0]
    c1 = chars.gather(-1, (length >> 1).unsqueeze(-1)).squeeze(-1)
    c2 = chars.gather(-1, (length - 1).unsqueeze(-1)).squeeze(-1)
    y, z = c0 + (c1 << 8), length + (c2 << 2)
    mixed = (y * _K2) ^ (z * _K0)
    upto3 = (mixed ^ _shr(mixed, 47)) * _K2
    a, b = fetch(zero) * _K1, fetch(zero + 8)
    c, d = fetch(length - 8) * mul, fetch(length - 16) * _K2
    upto32 = _hash16(_rot(a + b, 43) + _rot(c, 30) + d, a + _rot(b + _K2, 18) + c, mul)
    out = torch.where(length <= 3, upto3, torch.where(length <= 7, upto7, upto16))
    return torch.where(length > 16, upto32, out)


def hash_bucket(values, buckets):
    """The uint64 ``farmhash64(values)`` modulo ``buckets``, as int64."""
    h = farmhash64(values)
    return torch.remainder(torch.remainder(h, buckets) + (h < 0) * ((1 << 64) % buckets), buckets)
''')


@converter("hashing")
def hashing(em, node, row):
    cfg = node.config
    if cfg.get("sparse"):
        raise NotConvertible("sparse=True (a sparse output tensor)")
    if cfg.get("salt") is not None:
        raise NotConvertible("salt (SipHash, strong hashing) is not written in torch")
    x = em.input(node, 0, "keras")
    if x.dtype == "string":
        raise NotConvertible("string inputs: torch has no string tensors")
    bins = int(cfg["num_bins"])
    mask_value = cfg.get("mask_value")
    masked = mask_value is not None and bins > 1
    ids = em.temp(f"{node.name}_ids")
    src = x.var if x.dtype == "int64" else f"{x.var}.long()"
    em.helpers.add("hash_bucket")
    em.emit(f"{ids} = hash_bucket({src}, {bins - 1 if masked else bins})",
            "FarmHash64 of each value's decimal string, as tf.strings.to_hash_bucket_fast")
    if masked:
        em.emit(f"{ids} = torch.where({x.var} == {literal(mask_value)}, 0, {ids} + 1)", "bin 0 is the mask value's")
    em.assign(node, encode(em, node, ids, x.rank, cfg["output_mode"], bins))


register_helper("hashed_crossing", '''
def hashed_crossing(features, buckets):
    """TensorFlow's tf.sparse.cross_hashed of integer features (one value per sample each):
    FingerprintCat64 of their values' uint64 bits from the key 0xDECAFCAFFE, modulo ``buckets``."""
    mul = _u64(0xC6A4A7935BD1E995)
    h = torch.full_like(features[0], 0xDECAFCAFFE)
    for feature in features:
        m = feature * mul
        h = (h ^ mul) ^ ((m ^ _shr(m, 47)) * mul)
        h = h * mul
        h = (h ^ _shr(h, 47)) * mul
        h = h ^ _shr(h, 47)
    return torch.remainder(torch.remainder(h, buckets) + (h < 0) * ((1 << 64) % buckets), buckets)
''', requires=("hash_bucket",))


@converter("hashed_crossing")
def hashed_crossing(em, node, row):
    cfg = node.config
    if cfg.get("sparse"):
        raise NotConvertible("sparse=True (a sparse output tensor)")
    features = [em.in_layout(r, "keras") for r in node.args[0]]
    if any("int" not in f.dtype for f in features):
        raise NotConvertible("string features: torch has no string tensors")
    srcs = [f.var if f.dtype == "int64" else f"{f.var}.long()" for f in features]
    em.helpers.add("hashed_crossing")
    ids = em.temp(f"{node.name}_ids")
    em.emit(f"{ids} = hashed_crossing([{', '.join(srcs)}], {int(cfg['num_bins'])})",
            "tf.sparse.cross_hashed of the integer features")
    em.assign(node, encode(em, node, ids, features[0].rank, cfg["output_mode"], int(cfg["num_bins"])))
