"""Parity verification: run a torch module and a Keras model on the same inputs, compare outputs.

This is the "verify" stage every conversion ends with, the engine behind ``xlate check`` and
``xlate.testing.assert_parity``. It always compares two real frameworks' outputs; it never
compares a model with itself.

Owns ``check_parity`` and ``check_torch_against_reference``: the device and dtype a check runs in,
the layouts at the models' boundary, and tying the parts together. The parts live below it:
inputs in ``xlate.parity_inputs``, running each side in ``xlate.runners``, the rounding floor in
``xlate.floor``, comparison and report in ``xlate.parity_report``; per-layer localization
(``xlate.diagnose``) is called from here and must not import this module.
"""

from __future__ import annotations

import sys

import numpy as np

from .errors import BadInputError
from .floor import (
    FLOOR_FACTOR,
    Evidence,
    ReferenceRun,
    check_factor,
    judge_outputs,
)
from .frameworks import IOSpec, framework_of
from .layout import perm_at, permute_array
from .parity_inputs import batches_and_spec
from .parity_report import OutputParity, ParityReport, compare_arrays, merge_samples, summary, versions
from .runners import KerasRunner, TorchRunner, keras_in_dtype


def check_parity(source, target, inputs=None, *, atol=1e-5, rtol=1e-4, device="cpu", per_layer=False, samples=4,
                 seed=0, training: bool | None = None, path: str | None = None,
                 dtype: str = "float32", floor_factor: float | None = FLOOR_FACTOR) -> ParityReport:
    """Compare a torch module and a Keras model (either may be the source) on seeded inputs.

    ``inputs``: None (generated from the models' input specs), one array, a tuple of arrays, or a
    list of such tuples; given in the *source* model's layout. ``training``: run torch in train
    mode and Keras with training=True (default: the torch module's current mode). The models'
    weights and buffers are restored afterwards, so a train-mode check leaves no trace.

    An output passes within atol + rtol * |expected|, or (``floor_factor``, default 3) when the
    target is within ``floor_factor`` x the source's own float32 rounding of a float64 run of the
    source (or of the target's own rounding, when its framework rounds more; ``xlate.floor``). The
    float64 runs happen only for samples outside atol/rtol. ``floor_factor=None`` (or 0): atol/rtol
    alone.

    ``device="cuda"``: the torch side runs on CUDA (TensorFlow on its GPU when it has one, else on
    the CPU as the reference), with TF32 off on both sides. ``dtype="float16"|"bfloat16"``: both
    sides run in that precision where they can (a Keras model is re-instantiated with that dtype
    policy; when it cannot be, Keras stays float32 as the reference and the report says so), and
    atol/rtol are raised to at least ``DTYPE_TOL_FACTOR`` x the dtype's machine epsilon; the
    rounding floor is then measured against the source in float32.

    (Long because it is where the gate's steps meet: setup, the compare loop, the floor, the
    report and the per-layer pass, each a call with the same dozen settings.)
    """
    src_fw, tgt_fw = framework_of(source), framework_of(target)
    if {src_fw, tgt_fw} != {"torch", "keras"}:
        raise BadInputError(f"check_parity compares a torch module with a Keras model, got {src_fw} and {tgt_fw}")
    torch_model = source if src_fw == "torch" else target
    keras_model = source if src_fw == "keras" else target
    _check_device(device)
    floor_factor = check_factor(floor_factor)
    if training is None:
        training = bool(torch_model.training)
    atol, rtol, tol_note, torch_dtype = _precision(dtype, atol, rtol)
    run_keras_model, keras_dtype, keras_why = keras_in_dtype(keras_model, dtype)
    keras_note = f"the Keras side ran in float32 ({keras_why})" if keras_why else ""
    keras_device, devices = _devices(device)
    batches, spec = batches_and_spec(source, target, keras_model, src_fw, inputs, samples, seed)
    sides = Sides(spec, src_fw == "torch")

    reports: list[list[OutputParity]] = []
    evidence = Evidence(atol, rtol)
    with TorchRunner(torch_model, device, training, torch_dtype) as run_torch, \
            KerasRunner(run_keras_model, training, keras_device) as run_keras:
        for s, arrays in enumerate(batches):
            expected, actual = sides.compare(arrays, run_torch, run_keras)
            if len(expected) != len(actual):
                raise BadInputError(f"the models return {len(expected)} and {len(actual)} outputs")
            reports.append([compare_arrays(f"output{i}", e, a, atol, rtol)
                            for i, (e, a) in enumerate(zip(expected, actual))])
            for i, (e, a) in enumerate(zip(expected, actual)):
                evidence.add(s, i, e, a)

    per_output = merge_samples(reports)
    options = {"dtype": dtype, "device": device, "keras_device": keras_device, "training": training}
    reference = ReferenceRun(source, src_fw, **options)
    target_run = ReferenceRun(target, tgt_fw, role="target", **options)
    ran, ran_target = judge_outputs(per_output, evidence, lambda ids: sides.reference(reference, batches, ids),
                                    lambda ids: sides.reference(target_run, batches, ids, side="target"),
                                    factor=floor_factor, dtype=dtype)
    report = ParityReport(
        **summary(per_output), per_output=per_output, atol=atol, rtol=rtol, device=str(device),
        dtype=dtype if dtype != "float32" else _dtype_of(batches),
        samples=len(batches), seed=seed, training=training, source=src_fw, target=tgt_fw,
        versions=versions(), path=path, devices=devices,
        dtypes={"torch": dtype, "keras": keras_dtype}, floor_factor=floor_factor,
        reference="; the target's own rounding: ".join(
            d for d in (_ran_on(reference.description, ran, len(batches)),
                        _ran_on(target_run.description, ran_target, len(batches))) if d),
    )
    notes = [n for n in (tol_note, keras_note, reference.note, target_run.note) if n]
    if not per_output:
        notes.insert(0, "the models returned no tensors to compare")
    report.message = "; ".join(notes)
    if per_layer:
        from .diagnose import localize
        from .record import record_of

        # the same device, dtype and mode as the outputs compared above
        swap = {id(keras_model): run_keras_model}
        layer_source, layer_target = swap.get(id(source), source), swap.get(id(target), target)
        with TorchRunner(torch_model, device, training, torch_dtype), \
                KerasRunner(run_keras_model, training, keras_device):
            localize(report, layer_source, layer_target, batches[0], atol=atol, rtol=rtol, training=training,
                     device=device, torch_dtype=torch_dtype, record=record_of(target) or record_of(source),
                     spec=spec, floor_factor=floor_factor, reference=reference, target_run=target_run, dtype=dtype)
    return report


def _check_device(device) -> None:
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise BadInputError(f"unknown device {device!r}", hint="use --device cpu, cuda or cuda:N")
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInputError(f"device {device!r} asked for, but torch sees no CUDA device here",
                                hint="run on a machine with a CUDA GPU and a CUDA build of torch, or use --device cpu")


class Sides:
    """Layouts at the boundary: inputs arrive in the layout of the spec's source framework; the
    converted side takes them through input_perms and its outputs come back through output_perms."""

    def __init__(self, spec: IOSpec, given_source_is_torch: bool):
        src_is_torch = spec.source == "torch"
        self.torch_in, self.keras_in = (None, spec.input_perms) if src_is_torch else (spec.input_perms, None)
        self.torch_out, self.keras_out = (None, spec.output_perms) if src_is_torch else (spec.output_perms, None)
        self.source_is_torch = given_source_is_torch

    @staticmethod
    def _apply(arrays, perms):
        return [permute_array(a, perm_at(perms, i)) for i, a in enumerate(arrays)]

    def compare(self, arrays, run_torch, run_keras):
        """(source outputs, target outputs) for one sample, both in the spec-source layout."""
        t_out = self._apply(run_torch(self._apply(arrays, self.torch_in)), self.torch_out)
        k_out = self._apply(run_keras(self._apply(arrays, self.keras_in)), self.keras_out)
        return (t_out, k_out) if self.source_is_torch else (k_out, t_out)

    def reference(self, run, batches, ids, side: str = "source") -> dict:
        """{sample: the source's (or target's) outputs at the reference precision, spec-source layout, or None}."""
        torch_side = self.source_is_torch == (side == "source")
        in_perms, out_perms = (self.torch_in, self.torch_out) if torch_side else (self.keras_in, self.keras_out)
        outs = run.outputs([self._apply(batches[s], in_perms) for s in ids]) or [None] * len(ids)
        return {s: None if o is None else self._apply(o, out_perms) for s, o in zip(ids, outs)}


def _ran_on(description: str, ran: list[int], samples: int) -> str:
    if not ran:
        return ""
    which = ", ".join(str(s + 1) for s in ran)
    return f"{description}, on sample{'s' if len(ran) > 1 else ''} {which} of {samples}"


#: machine epsilon of each supported compute dtype
DTYPE_EPS = {"float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}


#: reduced-precision tolerances are at least this many epsilons (absolute and relative)
DTYPE_TOL_FACTOR = 16


def scaled_tolerances(dtype: str, atol: float, rtol: float) -> tuple[float, float, str]:
    """(atol, rtol, note) for comparing in ``dtype``: the given ones for float32, else raised to at
    least DTYPE_TOL_FACTOR x the dtype's epsilon (a handful of roundings through a network)."""
    if dtype == "float32":
        return atol, rtol, ""
    floor = DTYPE_TOL_FACTOR * DTYPE_EPS[dtype]
    new_atol, new_rtol = max(atol, floor), max(rtol, floor)
    return new_atol, new_rtol, (f"{dtype}: tolerances scaled to atol {new_atol:.3g}, rtol {new_rtol:.3g} "
                                f"({DTYPE_TOL_FACTOR} x eps {DTYPE_EPS[dtype]:.3g})")


def _torch_dtype(dtype: str):
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _devices(device: str):
    """(Keras device scope or None, {side: where it runs})."""
    devices = {"torch": _torch_device_label(device)}
    keras = sys.modules.get("keras")
    backend = keras.backend.backend() if keras is not None else "tensorflow"
    if str(device).startswith("cuda") and _keras_sees_gpu(backend):
        devices["keras"] = f"gpu:0 ({backend})"
        return "gpu:0", devices
    devices["keras"] = f"cpu ({backend})"
    return "cpu:0", devices


def _torch_device_label(device) -> str:
    """Where the torch side runs, with the GPU's name on CUDA."""
    if not str(device).startswith("cuda"):
        return str(device)
    import torch

    index = torch.device(device).index or 0
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _precision(dtype: str, atol: float, rtol: float):
    """(atol, rtol, note, torch dtype or None) for a compute dtype; an unknown dtype is bad input."""
    if dtype not in DTYPE_EPS:
        raise BadInputError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_EPS)}")
    atol, rtol, note = scaled_tolerances(dtype, atol, rtol)
    return atol, rtol, note, (None if dtype == "float32" else _torch_dtype(dtype))


def _keras_sees_gpu(backend: str) -> bool:
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def check_torch_against_reference(module, inputs, expected, *, atol=1e-5, rtol=1e-4, device="cpu",
                                  dtype: str = "float32", reference: str = "keras (cpu, float32)",
                                  floor_reference=None, floor_factor: float | None = FLOOR_FACTOR) -> ParityReport:
    """Run a torch module on ``inputs`` (a list of samples, each a list of arrays in the module's
    layout) and compare with ``expected`` outputs computed elsewhere (a list of samples, each a list
    of arrays), e.g. the Keras side's outputs computed on a CPU machine with TensorFlow and carried
    to a GPU machine that has none. Same device, dtype and tolerance rules as ``check_parity``;
    ``floor_reference``: the source's outputs at the reference precision (float64 for a float32
    check; a list of samples, each a list of arrays), carried the same way, for the rounding floor."""
    atol, rtol, tol_note, torch_dtype = _precision(dtype, atol, rtol)
    floor_factor = check_factor(floor_factor)
    if len(inputs) != len(expected):
        raise BadInputError(f"{len(inputs)} input samples but {len(expected)} expected outputs")
    devices = {"torch": _torch_device_label(device), "reference": reference}
    reports = []
    evidence = Evidence(atol, rtol)
    with TorchRunner(module, device, False, torch_dtype) as run_torch:
        for s, (arrays, want) in enumerate(zip(inputs, expected)):
            got = run_torch([np.asarray(a) for a in arrays])
            if len(got) != len(want):
                raise BadInputError(f"the module returns {len(got)} outputs, the reference has {len(want)}")
            reports.append([compare_arrays(f"output{i}", np.asarray(w), g, atol, rtol)
                            for i, (w, g) in enumerate(zip(want, got))])
            for i, (w, g) in enumerate(zip(want, got)):
                evidence.add(s, i, np.asarray(w), g)
    per_output = merge_samples(reports)
    carried = [] if floor_reference is None else [[np.asarray(r) for r in outs] for outs in floor_reference]
    ran, _ = judge_outputs(per_output, evidence, lambda ids: {s: carried[s] if s < len(carried) else None for s in ids},
                           factor=floor_factor, dtype=dtype)
    return ParityReport(
        **summary(per_output), per_output=per_output, atol=atol, rtol=rtol, device=str(device), dtype=dtype,
        samples=len(inputs), seed=-1, training=False, source="reference", target="torch", versions=versions(),
        devices=devices, dtypes={"torch": dtype, "reference": "float32"}, message=tol_note, floor_factor=floor_factor,
        reference=_ran_on("the source's carried float64 outputs", ran, len(inputs)),
    )


def _dtype_of(batches) -> str:
    kinds = sorted({str(a.dtype) for b in batches for a in b})
    return ",".join(kinds)
