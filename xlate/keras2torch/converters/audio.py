"""Audio preprocessing: STFTSpectrogram and MelSpectrogram.

STFTSpectrogram is a strided 1-D convolution of every channel with Keras' own real and imaginary
DFT kernels (ported as they are, so the numbers are Keras'), followed by the mode's formula
(log, magnitude, psd, real, imag, angle, stft) and Keras' output layout. MelSpectrogram is
``torch.stft`` (reflect-padded, centred, periodic window padded to fft_length) like TensorFlow's
stft, the magnitude to ``mag_exp``, the mel filterbank Keras computes (a buffer), and the dB scale
with Keras' clamp against the batch maximum.
"""

from __future__ import annotations

import numpy as np

from .. import plan
from ..registry import NotConvertible, converter
from ..source import literal
from .conv import conv_pads


@converter("stft_spectrogram")
def stft_spectrogram(em, node, row):
    import keras

    layer, cfg = node.op, node.config
    channels_last = cfg.get("data_format", "channels_last") != "channels_first"
    x = em.input(node, 0, (0, 2, 1) if channels_last else (0, 1, 2))  # (N, C, T)
    arrays = em.keras_weights(layer)
    step, frame = int(layer._frame_step), int(cfg["frame_length"])
    signal = em.temp(f"{node.name}_signal")
    em.emit(f"{signal} = {x.var}.flatten(0, 1).unsqueeze(1)", "every channel its own signal: (N * C, 1, T)")
    pads = conv_pads(cfg["padding"], (x.torch_shape[-1],), (frame,), (step,), (1,))
    if pads is None:
        em.helpers.add("pad_same")
        em.emit(f"{signal} = pad_same({signal}, ({frame},), ({step},), (1,))", "Keras 'same' at run time")
    elif pads[0] != (0, 0):
        em.emit(f"{signal} = F.pad({signal}, {plan.torch_pad_arg(pads)})", "Keras 'same' padding")
    parts = {}
    for part in ("real", "imag"):
        if f"{part}_kernel" not in arrays:
            continue
        (kernel,) = _conv_kernel(arrays[f"{part}_kernel"])
        param = em.parameter(f"{node.name}_{part}_kernel", kernel)
        parts[part] = em.temp(f"{node.name}_{part}")
        em.emit(f"{parts[part]} = F.conv1d({signal}, self.{param}, stride={step}).unflatten(0, ({x.var}.shape[0], -1))",
                "(N, C, frequencies, frames)")
    eps = literal(float(keras.config.epsilon()))
    mode = cfg["mode"]
    if mode in ("real", "imag"):
        out = parts[mode]
    elif mode == "angle":
        out = f"torch.atan2({parts['imag']}, {parts['real']})"
    elif mode == "stft":
        out = f"torch.cat([{parts['real']}, {parts['imag']}], dim=2)"
    else:
        power = em.temp(f"{node.name}_power")
        em.emit(f"{power} = {parts['real']} ** 2 + {parts['imag']} ** 2")
        if mode == "psd":
            out = f"{power} + F.pad({power}[:, :, 1:-1], (0, 0, 1, 1))"
        elif mode == "magnitude":
            out = f"torch.sqrt({power}.clamp(min={eps}))"
        else:
            out = f"torch.log(torch.sqrt({power}.clamp(min={eps})).clamp(min={eps}))"
    em.assign(node, _keras_layout(out, channels_last, bool(cfg.get("expand_dims"))))


def _conv_kernel(kernel):
    from ...transforms import get_transform

    return get_transform("conv_kernel").to_torch(np.asarray(kernel, np.float32))


def _keras_layout(out: str, channels_last: bool, expand: bool) -> str:
    """(N, C, F, T) -> Keras' STFTSpectrogram output layout."""
    if expand:
        return f"({out}).permute(0, 3, 2, 1)" if channels_last else f"({out}).transpose(2, 3)"
    flat = f"({out}).flatten(1, 2)"
    return f"{flat}.transpose(1, 2)" if channels_last else flat


@converter("mel_spectrogram")
def mel_spectrogram(em, node, row):
    layer, cfg = node.op, node.config
    x = em.input(node, 0, "keras")
    if x.rank != 2:
        raise NotConvertible("MelSpectrogram of inputs other than (batch, samples)")
    fft, hop, length = int(cfg["fft_length"]), int(cfg["sequence_stride"]), int(layer.sequence_length)
    window = cfg.get("window")
    if window is None:
        win, length = "None", fft
    elif window in ("hann", "hamming"):
        win = f"torch.{window}_window({length}, periodic=True, device={x.var}.device)"
    else:
        raise NotConvertible(f"window={window!r}")
    spec = em.temp(f"{node.name}_spec")
    src = x.var if x.dtype == "float32" else f"{x.var}.float()"
    em.emit(f"{spec} = torch.stft({src}, {fft}, hop_length={hop}, win_length={length}, window={win}, center=True, "
            "pad_mode='reflect', return_complex=True).abs()", "TensorFlow's stft: reflect-padded, centred")
    if float(cfg["mag_exp"]) != 1.0:
        em.emit(f"{spec} = {spec} ** {literal(float(cfg['mag_exp']))}")
    import keras

    bins = fft // 2 + 1
    matrix = keras.ops.convert_to_numpy(layer.linear_to_mel_weight_matrix(
        num_mel_bins=layer.num_mel_bins, num_spectrogram_bins=bins, sampling_rate=layer.sampling_rate,
        lower_edge_hertz=layer.min_freq, upper_edge_hertz=layer.max_freq)).astype(np.float32)
    mel = em.buffer(f"{node.name}_mel_weights", matrix.T.copy())
    out = f"self.{mel} @ {spec}"
    if cfg.get("power_to_db"):
        db = em.temp(f"{node.name}_db")
        floor = float(cfg["min_power"])
        ref = 10.0 * np.log10(max(abs(float(cfg["ref_power"])), floor))
        em.emit(f"{db} = 10.0 * torch.log10(({out}).clamp(min={literal(floor)})) - {literal(float(ref))}")
        out = f"torch.maximum({db}, {db}.amax() - {literal(float(cfg['top_db']))})"
    em.assign(node, out, comment="(batch, mel bins, frames); Keras' dB clamp uses the batch maximum")
