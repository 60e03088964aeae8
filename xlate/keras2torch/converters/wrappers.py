"""Wrappers whose inner layers convert through their own rows: TimeDistributed, Pipeline and
SpectralNormalization.

``TimeDistributed(layer)`` folds time into the batch (``x.flatten(0, 1)``), runs the inner
layer's own converter on that, and unfolds the result with the sizes read from ``x.shape`` at run
time, so a time axis left as None stays dynamic. Any layer that has a row converts inside it.
``Pipeline(layers)`` is its layers one after another. ``SpectralNormalization(layer)`` is the
inner layer; in training mode the generated code first runs Keras' power-iteration step on the
inner module's weight, in place, as Keras assigns the normalized kernel before each call.
"""

from __future__ import annotations

from ..helpers import register_helper
from ..nested import run_inner
from ..registry import NotConvertible, converter
from ..source import torch_dtype
from ..values import Value


def _output_spec(layer, shape, dtype) -> tuple[tuple, str]:
    import keras

    out = layer.compute_output_spec(keras.KerasTensor(tuple(shape), dtype))
    if not isinstance(out, keras.KerasTensor):
        raise NotConvertible(f"{type(layer).__name__} with several outputs inside a wrapper")
    return tuple(out.shape), str(out.dtype)


@converter("time_distributed", masks=True)
def time_distributed(em, node, row):
    layer = node.op.layer
    if node.kwargs.get("mask") is not None and getattr(layer, "_call_has_mask_arg", False):
        raise NotConvertible(f"a Keras mask reaching {type(layer).__name__} inside TimeDistributed")
    x = em.input(node, 0)
    if x.perm[:2] != (0, 1):
        x = em.input(node, 0, "keras")
    out_t = em.graph.tensors[node.outputs[0]]
    batch, steps = em.temp("batch"), em.temp("steps")
    em.emit(f"{batch}, {steps} = {x.var}.shape[:2]")
    flat = em.temp(f"{node.name}_steps")
    em.emit(f"{flat} = {x.var}.flatten(0, 1)", f"TimeDistributed({type(layer).__name__}): time folded into the batch")
    inner_in = Value(-1, flat, (0, *[p - 1 for p in x.perm[2:]]), (None, *x.shape[2:]), x.dtype)
    (y,) = run_inner(em, node, layer, [inner_in], [((None, *out_t.shape[2:]), out_t.dtype)])
    if y.flat_chw is not None:
        y = em.in_layout(y.tid, None)
    em.assign(node, f"{y.var}.unflatten(0, ({batch}, {steps}))", (0, 1, *[q + 1 for q in y.perm[1:]]))


@converter("pipeline", masks=True)
def pipeline(em, node, row):
    value = em.input(node, 0)
    for layer in node.op.layers:
        if node.kwargs.get("mask") is not None and getattr(layer, "_call_has_mask_arg", False):
            raise NotConvertible(f"a Keras mask reaching {type(layer).__name__} inside Pipeline")
        (value,) = run_inner(em, node, layer, [value], [_output_spec(layer, value.shape, value.dtype)])
    em.alias(node, value)


register_helper("spectral_normalize_", '''
@torch.no_grad()
def spectral_normalize_(weight, u, power_iterations, fan_out_first=True):
    """Keras SpectralNormalization's training step, in place: power iteration on the kernel seen as
    (-1, units) with the persistent vector ``u`` (1, units), then weight /= sigma; returns the new u. ``fan_out_first``:
    the torch weight keeps Keras' units axis first (Linear, Conv, ConvTranspose), not last (Embedding)."""
    if bool((weight == 0).all()):
        return u
    w = weight.reshape(weight.shape[0], -1).T if fan_out_first else weight.reshape(-1, weight.shape[-1])
    for _ in range(power_iterations):
        v = u @ w.T
        v = v / v.norm().clamp(min=1e-7)
        u = v @ w
        u = u / u.norm().clamp(min=1e-7)
    sigma = v @ w @ u.T
    weight.div_(sigma.squeeze())
    return u
''')

_UNITS_FIRST = {"Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}


@converter("spectral_normalization")
def spectral_normalization(em, node, row):
    layer = node.op.layer
    kind = type(layer).__name__
    if kind not in _UNITS_FIRST and kind != "Embedding":
        raise NotConvertible(f"SpectralNormalization of {kind} (Dense, Conv*, Embedding are converted)")
    x = em.input(node, 0)
    out_t = em.graph.tensors[node.outputs[0]]
    start = len(em.forward_lines)
    (y,) = run_inner(em, node, layer, [x], [(out_t.shape, out_t.dtype)])
    attr = em.attr_of(layer)
    u = em.buffer(f"{node.name}_vector_u", em.keras_weights(node.op)["vector_u"])
    em.helpers.add("spectral_normalize_")
    iters = int(node.config["power_iterations"])
    flag = "" if kind in _UNITS_FIRST else ", fan_out_first=False"
    em.forward_lines[start:start] = [
        "if self.training:  # Keras SpectralNormalization: normalize the kernel before the call",
        f"    self.{u}.copy_(spectral_normalize_(self.{attr}.weight, self.{u}, {iters}{flag}))",
    ]
    if "float" not in x.dtype:  # Keras casts the output to the input's dtype (an Embedding's ints)
        em.assign(node, f"{y.var}.to({torch_dtype(x.dtype)})", y.perm, comment="Keras casts to the input dtype")
        return
    em.alias(node, y)
