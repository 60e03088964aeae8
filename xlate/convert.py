"""The two conversion entry points: pick the path (direct or ONNX), run it, gate on parity."""

from __future__ import annotations

import time

import numpy as np

from .errors import BadInputError, ParityError, UnsupportedOpError, XlateError
from .record import record_of

VIA = ("auto", "direct", "onnx")
IO_LAYOUTS = ("source", "native")


def _check_args(via: str, io_layout: str) -> None:
    if via not in VIA:
        raise BadInputError(f"via must be one of {', '.join(VIA)}, got {via!r}")
    if io_layout not in IO_LAYOUTS:
        raise BadInputError(f"io_layout must be 'source' or 'native', got {io_layout!r}")


def _run_paths(direct, onnx, via: str):
    """Try the direct path, falling back to ONNX under via='auto' (``onnx`` None: no fallback).
    Returns (result, note)."""
    if via == "onnx":
        return onnx(), "via='onnx' was asked for"
    try:
        return direct(), "direct path"
    except UnsupportedOpError as e:
        if via == "direct" or onnx is None:
            raise
        direct_error = e
    try:
        return onnx(), f"direct path cannot convert it ({direct_error}); fell back to ONNX"
    except XlateError as onnx_error:
        raise UnsupportedOpError(direct_error.unsupported, direction=direct_error.direction,
                                 hint=f"the ONNX fallback failed too: {onnx_error}") from onnx_error


#: (parameters from, seeded input batches the gate compares): a large model's gate runs one or two
#: batches (each a forward pass of both models), not four
GATE_SAMPLES = ((500_000_000, 1), (100_000_000, 2), (0, 4))


def parameter_count(model) -> int:
    """Weights of a torch module or a Keras model (0 for anything else)."""
    from .frameworks import framework_of

    try:
        if framework_of(model) == "torch":
            return int(sum(p.numel() for p in model.parameters()))
        return int(sum(int(np.prod(v.shape)) for v in model.weights))
    except (TypeError, AttributeError, ValueError):
        return 0


def gate_samples(*models) -> int:
    """How many seeded batches the parity gate compares for models of this size (GATE_SAMPLES)."""
    n = max((parameter_count(m) for m in models), default=0)
    return next(samples for size, samples in GATE_SAMPLES if n >= size)


def gate_dtype(source, target) -> str:
    """The precision the gate compares in: bfloat16/float16 when the models are (their tolerances
    follow, ``parity.scaled_tolerances``), else float32."""
    from .frameworks import float_dtype

    dtype = float_dtype(source)
    return dtype if dtype == float_dtype(target) else "float32"


def _gate(source, target, *, check: bool, atol: float, rtol: float, floor_factor):
    """The parity gate: at the example's shape and at other sizes of every dynamic input size; a
    large model's gate compares fewer batches, in the models' own precision."""
    record = record_of(target)
    if not check:
        return
    from .parity_shapes import check_parity_shapes

    samples = gate_samples(source)
    report = check_parity_shapes(source, target, atol=atol, rtol=rtol, path=record.path if record else None,
                                 samples=samples, dtype=gate_dtype(source, target), floor_factor=floor_factor)
    if not report.passed:
        raise ParityError(report)
    if record is not None:
        shapes = f" ({report.message})" if report.message else ""
        size = f" ({parameter_count(source) / 1e6:.0f}M parameters: {samples})" if samples < GATE_SAMPLES[-1][1] else ""
        how = "; ".join(f"{o.name} {o.reason}" for o in report.per_output if o.rule == "floor")
        record.notes.append(f"parity: max abs err {report.max_abs_err:.3g} on {report.samples} sample(s){size}"
                            + (f" ({how})" if how else "") + shapes)


def _convert(source, direct, onnx, *, via: str, check: bool, atol: float, rtol: float, floor_factor):
    """Run the chosen path, note which one and how long it took, then the parity gate."""
    from .gc_scope import new_objects_only

    with new_objects_only():
        start = time.perf_counter()
        target, note = _run_paths(direct, onnx, via)
        record = record_of(target)
        if record is not None:
            record.seconds = time.perf_counter() - start
            record.notes.append(note)
        _gate(source, target, check=check, atol=atol, rtol=rtol, floor_factor=floor_factor)
    return target


def torch_to_keras(module, example_inputs, *, io_layout="source", via="auto", check=True, atol=1e-5, rtol=1e-4,
                   dynamic="auto", floor_factor=3.0):
    _check_args(via, io_layout)
    from . import onnx_path
    from .torch2keras import convert as direct

    def onnx():
        return onnx_path.torch_to_keras(module, example_inputs, io_layout=io_layout)

    # sizes asked for by name must stay dynamic: the ONNX path keeps the batch only, so it is no fallback
    explicit = isinstance(dynamic, dict)
    if explicit and via == "onnx":
        raise BadInputError("dynamic={...} names sizes the ONNX path cannot keep dynamic (it keeps the batch only)",
                            hint="use via='direct' or 'auto', or dynamic='batch'")
    return _convert(module,
                    lambda: direct.torch_to_keras(module, example_inputs, io_layout=io_layout, dynamic=dynamic),
                    None if explicit else onnx, via=via, check=check, atol=atol, rtol=rtol, floor_factor=floor_factor)


def keras_to_torch(model, *, example_inputs=None, io_layout="source", via="auto", check=True, atol=1e-5, rtol=1e-4,
                   floor_factor=3.0):
    _check_args(via, io_layout)
    from . import onnx_path
    from .keras2torch import convert as direct

    return _convert(model,
                    lambda: direct.keras_to_torch(model, example_inputs=example_inputs, io_layout=io_layout),
                    lambda: onnx_path.keras_to_torch(model, example_inputs=example_inputs, io_layout=io_layout),
                    via=via, check=check, atol=atol, rtol=rtol, floor_factor=floor_factor)
