"""Quantized TFLite output: what ``--quantize fp16|dynamic|int8`` asks of the TFLite converter.

==========  ==========================================================================================
fp16        weights stored as float16, computed in float32 (half the size, near-float accuracy)
dynamic     weights int8, activations quantized on the fly (dynamic range); float inputs/outputs
int8        weights and activations int8, ranges calibrated on ``--calibration`` data (a
            representative dataset: required, never invented or downloaded); float inputs/outputs
            unless ``int8_io`` (then int8 tensors with a scale and zero point, for microcontrollers,
            and integer kernels only)
==========  ==========================================================================================

The calibration file is an ``.npy`` (one model input) or ``.npz`` (one array per input, in order),
samples on the first axis, in the *source* model's layout, like ``--inputs``. The quantized file
is judged by ``xlate.quant_parity`` with metrics that fit quantization, not by the float gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInputError

MODES = ("fp16", "dynamic", "int8")
DEFAULT_MIN_COSINE = 0.99
DEFAULT_MIN_TOP1 = 0.9
CALIBRATION_SAMPLES = 100  # at most this many samples calibrate int8 ranges


@dataclass
class Quantization:
    """A quantized TFLite output: the mode, its calibration data and the gate's thresholds."""

    mode: str
    calibration: list[np.ndarray] | None = None  # one array per model input, samples first, source layout
    calibration_path: str | None = None
    int8_io: bool = False
    min_cosine: float = DEFAULT_MIN_COSINE
    min_top1: float = DEFAULT_MIN_TOP1


def quantization_from_options(mode, calibration, int8_io: bool, min_cosine: float, min_top1: float,
                              output) -> Quantization | None:
    """Check the quantization options against each other and the output before any work is done."""
    if mode is None:
        for flag, given in (("--calibration", calibration is not None), ("--int8-io", int8_io)):
            if given:
                raise BadInputError(f"{flag} needs --quantize", hint="add --quantize int8 (or fp16, dynamic)")
        return None
    if mode not in MODES:
        raise BadInputError(f"--quantize {mode!r} is not one of {', '.join(MODES)}")
    if Path(output).suffix.lower() != ".tflite":
        raise BadInputError(f"--quantize writes a TFLite file, but -o {output} is not a .tflite",
                            hint="use -o name.tflite")
    if int8_io and mode != "int8":
        raise BadInputError(f"--int8-io needs --quantize int8, not {mode}", hint="use --quantize int8 --int8-io")
    if mode == "int8" and calibration is None:
        raise BadInputError("--quantize int8 needs a representative dataset to calibrate its ranges: --calibration "
                            "data.npy (xlate never invents or downloads one)",
                            hint="save a few hundred real inputs, samples first, with numpy.save('data.npy', x) "
                                 "(or .npz, one array per model input)")
    arrays = None
    if calibration is not None:
        from .load import load_inputs

        arrays = load_inputs(calibration)
        if any(a.ndim == 0 or len(a) == 0 for a in arrays) or len({len(a) for a in arrays}) != 1:
            raise BadInputError(f"--calibration {calibration}: the arrays need samples on their first axis, the "
                                "same number in each",
                                hint="numpy.save('data.npy', x) with x of shape (samples, ...input shape...)")
    return Quantization(mode, arrays, str(calibration) if calibration is not None else None, int8_io,
                        min_cosine, min_top1)


def check_calibration_fits(q: Quantization, example_inputs) -> None:
    """The calibration arrays must fit the source model's inputs: one per input, the same sizes
    after the samples axis (checked right after loading, before any conversion)."""
    if q.calibration is None or example_inputs is None:
        return
    declared = [tuple(t.shape) for t in example_inputs]
    if len(q.calibration) != len(declared):
        raise BadInputError(f"--calibration {q.calibration_path} holds {len(q.calibration)} array(s) but the model "
                            f"takes {len(declared)} input(s)",
                            hint="save one array per model input, in order: numpy.savez('data.npz', x0, x1, ...)")
    for i, (a, want) in enumerate(zip(q.calibration, declared)):
        if tuple(a.shape[1:]) != tuple(want[1:]):
            shown = "(samples, " + ", ".join(str(w) for w in want[1:]) + ")"
            raise BadInputError(f"--calibration array {i} has shape {tuple(a.shape)} but the model takes {shown}",
                                hint="samples on the first axis, then the input's shape in the source model's "
                                     "layout")


def model_batch(model) -> int:
    """The batch size the exported model takes: its fixed one, or 1 when the batch is free."""
    try:
        b = model.inputs[0].shape[0]
    except (AttributeError, IndexError, TypeError):
        return 1
    return int(b) if b is not None else 1


def to_target_layout(arrays, model) -> list[np.ndarray]:
    """Source-layout arrays as the converted model takes them (its I/O spec's input permutations)."""
    from .parity_inputs import io_spec_of

    spec = io_spec_of(model)
    perms = list(spec.input_perms) if spec is not None else []
    out = []
    for i, a in enumerate(arrays):
        p = perms[i] if i < len(perms) else None
        out.append(np.transpose(a, p) if p is not None else a)
    return out


def representative_dataset(q: Quantization, model):
    """The converter's representative dataset: calibration samples in batches the model takes."""
    batch = model_batch(model)
    n = min(len(q.calibration[0]), CALIBRATION_SAMPLES)
    dtypes = [str(t.dtype) for t in model.inputs]

    def batches():
        for start in range(0, n - batch + 1, batch):
            chunk = [a[start:start + batch] for a in q.calibration]
            yield [np.ascontiguousarray(a, dtype=d) for a, d in zip(to_target_layout(chunk, model), dtypes)]

    return batches


def configure(converter, q: Quantization, model) -> None:
    """Set the TFLite converter's options for ``q``."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if q.mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif q.mode == "int8":
        converter.representative_dataset = representative_dataset(q, model)
        if q.int8_io:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:  # integer kernels where TFLite has them, float elsewhere
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
