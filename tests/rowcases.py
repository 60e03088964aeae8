"""Build the source model of a table row's sample, on either side.

Every per-row parity test is generated from these: the row's sample says how to construct the
torch module or Keras model and which inputs to feed; the converter must reproduce its outputs.
"""

from __future__ import annotations

import re

import numpy as np

from xlate.table import Row, Sample


def _class_and_defaults(name: str):
    """'keras.layers.ReLU(max_value=6)' -> ('keras.layers.ReLU', {'max_value': 6})."""
    m = re.fullmatch(r"([\w.]+)(?:\((.*)\))?", name.strip())
    if not m:
        return None, {}
    path, inner = m.groups()
    defaults = {}
    if inner and "=" in inner:
        try:
            defaults = eval(f"dict({inner})", {})
        except NameError:
            defaults = {}  # a descriptive variant such as Conv2d(groups=in_channels)
    return path, defaults


def has_torch_side(row: Row, sample: Sample) -> bool:
    return sample.torch is not None


def has_keras_side(row: Row, sample: Sample) -> bool:
    return sample.keras is not None


def seeded_arrays(shapes, int_high=None, seed=0):
    rng = np.random.default_rng(seed)
    if int_high:
        return [rng.integers(0, int_high, size=s).astype(np.int64) for s in shapes]
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def torch_case(row: Row, sample: Sample):
    """(module, tuple of input tensors) for the torch side of a sample."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    inputs = tuple(torch.from_numpy(a) for a in seeded_arrays(sample.inputs, sample.int_high))
    if isinstance(sample.torch, str):
        expr = sample.torch

        class Expr(nn.Module):
            def forward(self, *xs):
                env = {"torch": torch, **{f"x{i}": x for i, x in enumerate(xs)}}
                return eval(expr, env)

        module = Expr()
    else:
        path, defaults = _class_and_defaults(row.torch)
        cls_name = sample.torch_cls or path.rsplit(".", 1)[-1]
        layer = getattr(nn, cls_name)(**{**defaults, **sample.torch})
        call = sample.call

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.m = layer

            def forward(self, *xs):
                if call:
                    env = {"torch": torch, "m": self.m, **{f"x{i}": x for i, x in enumerate(xs)}}
                    return eval(call, env)
                return self.m(*xs)

        module = Wrapped()
        # non-trivial statistics and parameters, so a transform mistake cannot hide behind 0/1
        with torch.no_grad():
            for name, buf in module.named_buffers():
                if name.endswith("running_mean"):
                    buf.normal_()
                elif name.endswith("running_var"):
                    buf.uniform_(0.5, 2.0)
            for name, p in module.named_parameters():
                if p.dim() == 1 and name.endswith(("weight", "bias")):
                    p.normal_()
    module.train(sample.train)
    return module, inputs


def keras_inputs_shapes(row: Row, sample: Sample) -> list:
    return sample.keras_inputs if sample.keras_inputs is not None else sample.inputs


def keras_case(row: Row, sample: Sample, free=None):
    """(model, list of input arrays) for the Keras side of a sample. ``free``: {input index: axes}
    declared None in the Keras inputs (the arrays keep the sample's sizes)."""
    import keras

    shapes = keras_inputs_shapes(row, sample)
    arrays = seeded_arrays(shapes, sample.int_high)
    dtype = "int32" if sample.int_high else "float32"
    arrays = [a.astype(dtype) for a in arrays]
    keras.utils.set_random_seed(0)
    free = free or {}
    xs = [keras.Input(shape=tuple(None if a in free.get(i, ()) else d for a, d in enumerate(s) if a > 0),
                      dtype=dtype, name=f"x{i}") for i, s in enumerate(shapes)]
    if isinstance(sample.keras, str):
        env = {"keras": keras, **{f"x{i}": x for i, x in enumerate(xs)}}
        y = eval(sample.keras, env)
    else:
        path, defaults = _class_and_defaults(row.keras)
        kwargs = {**defaults, **sample.keras}
        if "layer" in kwargs and isinstance(kwargs["layer"], str):
            kwargs["layer"] = eval(kwargs["layer"], vars(keras.layers))
        if path.startswith("keras.layers."):
            layer = getattr(keras.layers, path.rsplit(".", 1)[-1])(**kwargs)
            y = layer(*xs)
        elif path.startswith("keras.activations."):
            name = path.rsplit(".", 1)[-1]
            y = keras.layers.Activation(name)(xs[0]) if not kwargs else getattr(keras.ops, row.keras_op or name)(
                xs[0], **kwargs)
        else:
            raise ValueError(f"row {row.id}: cannot build a Keras sample from {row.keras!r}")
    model = keras.Model(xs, y)
    # non-trivial weights for normalization layers (built with ones/zeros)
    rng = np.random.default_rng(1)
    for v in model.weights:
        if v.path.endswith(("gamma", "beta", "moving_mean", "bias", "scale", "value")):
            v.assign(rng.standard_normal(v.shape).astype(v.dtype))
        elif v.path.endswith("moving_variance"):
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype(v.dtype))
    return model, arrays


def cases(table, direction: str):
    """(row, sample) pairs that have a source model for ``direction``."""
    out = []
    for row in table:
        if direction not in row.directions or row.family not in ("layer", "activation", "op"):
            continue
        for i, sample in enumerate(row.samples):
            side = has_torch_side if direction == "torch2keras" else has_keras_side
            if side(row, sample):
                out.append((row, sample, f"{row.id}-{sample.id or i}"))
    return out
