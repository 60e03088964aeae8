"""Core layers: Dense, Embedding, Dropout, Identity, Flatten, preprocessing and small scale layers."""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import NotConvertible, converter
from ..source import call, literal
from .operands import elementwise_inputs, layout_constant


@converter("dense")
def dense(em, node, row):
    cfg = node.config
    arrays = em.keras_weights(node.op)
    kernel = arrays["kernel"]
    raw = em.value(node.inputs[0])
    override = params = None
    if raw.flat_chw is not None and em.graph.calls[id(node.op)] == 1:
        # Flatten of a channels-first map feeds this Dense: keep torch's C,H,W order and permute
        # the kernel's rows instead (the classic Flatten -> Linear trap).
        x, perm = raw, raw.perm
        override = {"dense_kernel": "flatten_dense_kernel"}
        params = {"flatten_dense_kernel": {"chw": raw.flat_chw}}
    else:
        x = em.input(node, 0)
        if x.rank >= 3 and x.perm[-1] != x.rank - 1:
            x = em.input(node, 0, "keras")
        perm = x.perm
    ctor = call("nn.Linear", int(kernel.shape[0]), int(cfg["units"]), **({} if cfg["use_bias"] else {"bias": False}))
    attr = em.module(node, ctor)
    em.port(row, attr, arrays, override=override, params=params)
    expr = em.fused_activation(node, f"self.{attr}({x.var})", perm)
    em.assign(node, expr, perm, module=attr)


@converter("embedding")
def embedding(em, node, row):
    arrays = em.keras_weights(node.op)
    table = arrays["embeddings"]
    ctor = call("nn.Embedding", int(table.shape[0]), int(table.shape[1]))
    attr = em.module(node, ctor)
    em.port(row, attr, arrays)
    x = em.input(node, 0)
    idx = x.var if "int" in x.dtype else f"{x.var}.long()"
    em.assign(node, f"self.{attr}({idx})", (*x.perm, x.rank), module=attr)


@converter("dropout")
def dropout(em, node, row):
    cfg = node.config
    if type(node.op).__name__ == "AlphaDropout":
        from .regularization import alpha_dropout

        return alpha_dropout(em, node, row)
    if cfg.get("noise_shape") is not None:
        return _shaped_dropout(em, node, cfg)
    spatial = type(node.op).__name__.startswith("SpatialDropout")
    if spatial:
        x = em.input(node, 0, "cf")
        ctor = call(f"nn.Dropout{x.rank - 2}d", float(cfg["rate"]))
    else:
        x = em.input(node, 0)
        ctor = call("nn.Dropout", float(cfg["rate"]))
    attr = em.module(node, ctor)
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)


def _shaped_dropout(em, node, cfg):
    """Dropout with a noise_shape (EfficientNet's per-sample drop): one mask of that shape,
    broadcast over the tensor; identity in eval mode."""
    x = em.input(node, 0)
    noise = list(cfg["noise_shape"])
    if len(noise) != x.rank:
        raise NotConvertible(f"noise_shape {noise} for a rank-{x.rank} input")
    sizes = [f"{x.var}.shape[{i}]" if noise[axis] is None else str(int(noise[axis]))
             for i, axis in enumerate(x.perm)]
    mask = f"F.dropout(torch.ones({', '.join(sizes)}, device={x.var}.device), {literal(float(cfg['rate']))}, " \
           f"self.training)"
    em.assign(node, f"{x.var} * {mask}", x.perm, comment=f"Keras noise_shape {tuple(noise)}")


@converter("masking")
def masking(em, node, row):
    """Zero the time steps whose features all equal mask_value. The Keras mask itself is a separate
    graph node (any(not_equal(x, mask_value), axis=-1)) read by the layers that use it."""
    x = em.input(node, 0)
    value = node.config["mask_value"]
    if not isinstance(value, (int, float)):
        raise NotConvertible(f"mask_value={value!r}")
    keep = f"({x.var} != {literal(float(value))}).any(dim={x.dim(x.rank - 1)}, keepdim=True)"
    em.assign(node, f"{x.var} * {keep}", x.perm, comment="Keras Masking: steps equal to mask_value become 0")


@converter("identity")
def identity(em, node, row):
    em.alias(node, em.input(node, 0))


@converter("input")
def input_layer(em, node, row):
    """Model inputs become ``forward`` arguments (the emitter binds them and counts this row);
    an InputLayer met inside a graph passes its tensor through."""
    em.alias(node, em.input(node, 0))


@converter("flatten")
def flatten(em, node, row):
    raw = em.value(node.inputs[0])
    out = node.outputs[0]
    if raw.rank <= 2:
        em.alias(node, em.input(node, 0))
        return
    channels_first_data = node.config.get("data_format") == "channels_first"
    if channels_first_data:
        # Keras moves channels last before flattening, even for channels_first data
        want = (0, *range(2, raw.rank), 1)
        x = em.input(node, 0, want)
        em.assign(node, f"{x.var}.flatten(1)", module=None)
        return
    consumers = em.consumers(out)
    dense_only = bool(consumers) and not em.is_output(out) and all(
        c.kind == "keras.layers.Dense" and c.inputs == [out] and em.graph.calls[id(c.op)] == 1 for c in consumers)
    static = all(d is not None for d in raw.shape[1:])
    if raw.flat_chw is None and not plan.is_identity(raw.perm) and raw.perm == plan.channels_first(raw.rank) \
            and dense_only and static:
        chw = tuple(int(d) for d in raw.torch_shape[1:])
        em.assign(node, f"{raw.var}.flatten(1)", flat_chw=chw,
                  comment="channels-first order; the next Linear's columns are permuted to match")
        return
    x = em.input(node, 0, "keras")
    em.assign(node, f"{x.var}.flatten(1)")


@converter("rescaling")
def rescaling(em, node, row):
    cfg = node.config
    x = em.input(node, 0)
    expr = x.var if "float" in x.dtype else f"{x.var}.float()"
    scale, offset = cfg["scale"], cfg["offset"]
    expr = _scale_term(em, node, expr, scale, x.perm, "scale", "*")
    expr = _scale_term(em, node, expr, offset, x.perm, "offset", "+")
    if expr == x.var:
        em.alias(node, x)
        return
    em.assign(node, expr, x.perm)


def _scale_term(em, node, expr, value, perm, what, op):
    neutral = 1.0 if op == "*" else 0.0
    if isinstance(value, (int, float)):
        if float(value) == neutral:
            return expr
        if op == "+" and value < 0:
            return f"{expr} - {literal(-float(value))}"
        return f"{expr} {op} {literal(float(value))}"
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 0 or np.all(array == array.flat[0]):
        v = float(array.flat[0])
        return expr if v == neutral else f"{expr} {op} {literal(v)}"
    buf = em.buffer(f"{node.name}_{what}", layout_constant(array, perm))
    return f"{expr} {op} self.{buf}"


@converter("normalization")
def normalization(em, node, row):
    import keras

    cfg = node.config
    layer = node.op
    x = em.input(node, 0)
    arrays = {"mean": keras.ops.convert_to_numpy(layer.mean).astype(np.float32),
              "variance": keras.ops.convert_to_numpy(layer.variance).astype(np.float32)}
    ported: dict[str, np.ndarray] = {}
    for w in row.weights:
        from ...transforms import get_transform

        (ported[w.torch[0]],) = get_transform(w.transform).to_torch(arrays[w.keras[0]])
    mean = em.buffer(f"{node.name}_mean", layout_constant(ported["mean"], x.perm))
    var = em.buffer(f"{node.name}_variance", layout_constant(ported["variance"], x.perm))
    eps = literal(float(keras.config.epsilon()))
    xin = x.var if "float" in x.dtype else f"{x.var}.float()"
    std = f"self.{var}.sqrt().clamp(min={eps})"
    if cfg.get("invert"):
        em.assign(node, f"self.{mean} + {xin} * {std}", x.perm)
    else:
        em.assign(node, f"({xin} - self.{mean}) / {std}", x.perm)


@converter("layer_scale")
def layer_scale(em, node, row):
    from ...transforms import get_transform

    x = em.input(node, 0)
    arrays = em.keras_weights(node.op)
    (w,) = row.weights
    (gamma,) = get_transform(w.transform).to_torch(arrays[w.keras[0]])
    attr = em.parameter(f"{node.name}_{w.torch[0]}", layout_constant(gamma, x.perm))
    em.assign(node, f"{x.var} * self.{attr}", x.perm)


@converter("stochastic_depth")
def stochastic_depth(em, node, row):
    rate = float(node.config["drop_path_rate"])
    x = em.input(node, 0)
    if rate == 0.0:
        em.alias(node, x)
        return
    keep = literal(1.0 - rate)
    shape = ", ".join([f"{x.var}.shape[0]", *(["1"] * (x.rank - 1))])
    em.assign(node, f"{x.var} / {keep} * torch.floor({keep} + torch.rand({shape}, device={x.var}.device)) "
                    f"if self.training else {x.var}", x.perm, comment="stochastic depth (drop path)")


@converter("merge")
def average(em, node, row):

    values, perm = elementwise_inputs(em, node, list(node.args[0]))
    em.assign(node, f"({' + '.join(values)}) / {len(values)}", perm)



@converter("reversible_embedding")
def reversible_embedding(em, node, row):
    """keras.layers.ReversibleEmbedding: an nn.Embedding; called with reverse=True, the logits
    x @ embeddings.T (tied) or x @ reverse_embeddings, soft-capped with tanh if asked."""
    cfg, layer = node.config, node.op
    if cfg.get("mask_zero"):
        raise NotConvertible("mask_zero=True (its mask exists only at run time, not in the Keras graph)")
    arrays = em.keras_weights(layer)
    table = arrays["embeddings"]
    attr = em.module(node, call("nn.Embedding", int(table.shape[0]), int(table.shape[1])))
    em.port(row, attr, arrays)
    x = em.input(node, 0, "keras")
    if not node.kwargs.get("reverse"):
        idx = x.var if "int" in x.dtype else f"{x.var}.long()"
        em.assign(node, f"self.{attr}({idx})", module=attr)
        return
    if cfg.get("tie_weights", True):
        kernel = f"self.{attr}.weight.T"
    else:
        weights = np.asarray(arrays["reverse_embeddings"], np.float32)
        reverse = em.module(node, f"nn.Parameter(torch.zeros{tuple(int(d) for d in weights.shape)})",
                            suffix="_reverse_embeddings")
        em.state[reverse] = weights
        kernel = f"self.{reverse}"
    expr = f"{x.var} @ {kernel}"
    if cfg.get("reverse_dtype"):
        from ..source import torch_dtype

        dtype = torch_dtype(cfg["reverse_dtype"])
        expr = f"{x.var}.to({dtype}) @ {kernel}.to({dtype})"
    cap = cfg.get("logit_soft_cap")
    if cap:
        expr = f"torch.tanh(({expr}) / {literal(float(cap))}) * {literal(float(cap))}"
    em.assign(node, expr, comment="ReversibleEmbedding(reverse=True): logits over the vocabulary")
