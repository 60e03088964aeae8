"""The rounding floor: a converted model is judged against its source's own float32 rounding.

A deep network's float32 output is itself off the exact result, by an amount no fixed atol/rtol
knows: a ResNet with calibrated BatchNorm statistics is 1e-4 away from its own float64 result.
So when an output is outside atol/rtol, the gate runs the *source* model once more at a higher
precision (float64; float32 when the check runs in float16/bfloat16) on the same inputs, and asks
whether the converted model is as close to that result as the source's own output is. Per sample
(one batch of inputs) and output:

    floor      F = max |source - reference|    the source's own rounding (the noise floor)
    target     D = max |target - reference|    the converted model's distance from the reference

A value outside atol/rtol still passes when its distance from the reference is within
``factor`` x F of its own sample. Values within atol/rtol pass as before, so a floor of 0 is never
stricter than atol/rtol, and ``factor=None`` is the atol/rtol rule alone. Only samples with a
value outside atol/rtol get the reference run, so a conversion within atol/rtol pays nothing.

The floor is a max over one sample's output, not a per-value bound: one value's rounding error
is random (as likely tiny in the source and large in the target as the other way round), so a
per-value rule fails correct conversions at random. It is per sample, not over all samples:
the floor follows the inputs (EfficientNetB1's varies 100x between two random images), and one
sample's large floor must not excuse another sample's error. The price: within one sample's
output, a value wrong by less than ``factor`` x that output's largest rounding error is
indistinguishable from rounding, and passes. Two guards keep the floor from excusing a wrong
model: it applies to floating outputs only (an index that flips between float32 and float64 is
not rounding), and only while it is small next to the output itself (F <= ``FLOOR_CAP`` x
max |reference|); beyond that the source's own float32 result is too unstable to judge by, and
atol/rtol decide alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .errors import BadInputError, one_line
from .runners import KerasRunner, TorchRunner, keras_in_dtype

#: the default factor: the target may be this many times the source's own rounding from the reference
FLOOR_FACTOR = 3.0
#: the floor applies while it is at most this fraction of the output's scale (max |reference|)
FLOOR_CAP = {"float32": 2.0**-7, "float16": 0.25, "bfloat16": 0.25}
#: the precision of the reference run for each compute dtype of a check
REFERENCE_DTYPE = {"float32": "float64", "float16": "float32", "bfloat16": "float32"}


def check_factor(factor) -> float | None:
    """The floor factor as given (None or 0: off); a negative or non-numeric one is bad input."""
    if factor is None:
        return None
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        raise BadInputError(f"floor_factor must be a number or None, got {factor!r}") from None
    if not factor >= 0:
        raise BadInputError(f"floor_factor must be >= 0 (0 or None: atol/rtol only), got {factor:g}")
    return factor or None


# --- the rule on arrays -----------------------------------------------------------------------


def abs_diff(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """|expected - actual| in float64; NaN on both sides or the same infinity count as equal, a NaN
    on one side as infinitely far."""
    e = np.asarray(expected).astype(np.float64)
    a = np.asarray(actual).astype(np.float64)
    nan_e, nan_a = np.isnan(e), np.isnan(a)
    with np.errstate(invalid="ignore"):
        diff = np.abs(e - a)
    diff[nan_e & nan_a] = 0.0
    diff[nan_e ^ nan_a] = np.inf
    diff[np.isinf(e) & np.isinf(a) & (np.sign(e) == np.sign(a))] = 0.0
    return diff


def outside_tolerance(expected: np.ndarray, diff: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """The mask of values whose error is beyond atol + rtol * |expected|."""
    e = np.asarray(expected).astype(np.float64)
    return diff > atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))


def _max(a: np.ndarray) -> float:
    return float(a.max()) if a.size else 0.0


@dataclass
class Verdict:
    """One output (or layer) judged: passed, by which rule, and the figures behind it (those of the
    sample that came closest to failing the rounding rule)."""

    passed: bool
    rule: str  # "atol/rtol", "rounding", or "" when it failed
    mismatched: int  # values beyond both rules
    floor: float | None = None
    target_ref_err: float | None = None
    reason: str = ""


def _sample_floor(expected, actual, reference, bad, *, factor, dtype):
    """(values beyond both rules, floor, target distance, why the floor does not apply or "") for one sample."""
    floor = _max(abs_diff(expected, reference))
    dist = abs_diff(actual, reference)
    target = _max(dist)
    ref = np.asarray(reference, dtype=np.float64)
    scale = _max(np.abs(ref[np.isfinite(ref)]))
    if not np.isfinite(floor):
        return int(bad.sum()), floor, target, "not finite"
    if floor > FLOOR_CAP[dtype] * scale:
        share = f"{floor / scale:.1%} of the output's largest value" if scale else "on an all-zero output"
        return int(bad.sum()), floor, target, f"{floor:.2g}, {share}"
    return int((bad & (dist > factor * floor)).sum()), floor, target, ""


def judge(samples, *, atol: float, rtol: float, factor: float | None, dtype: str = "float32") -> Verdict:
    """Judge one output over ``samples``: (expected, actual, reference) per sample; ``expected`` is
    the source's, ``actual`` the target's, ``reference`` the source at the reference precision (None
    when there is none). Samples left out are taken as within atol/rtol."""
    precision, ref_name = dtype, REFERENCE_DTYPE[dtype]
    judged = []  # (values beyond both, floor, target distance, why the floor does not apply)
    outside = 0
    floating = True
    for expected, actual, reference in samples:
        bad = outside_tolerance(expected, abs_diff(expected, actual), atol, rtol)
        outside += int(bad.sum())
        floating &= np.asarray(expected).dtype.kind == "f" and np.asarray(actual).dtype.kind == "f"
        if reference is None or not floating:
            judged.append((int(bad.sum()), None, None, "missing"))
        else:
            judged.append(_sample_floor(expected, actual, reference, bad, factor=factor or 0.0, dtype=dtype))
    # the figures shown: the sample closest to failing (the largest target / floor)
    shown = max((j for j in judged if j[1] is not None),
                key=lambda j: (j[0] > 0, j[2] / j[1] if j[1] else (np.inf if j[2] else 0.0)), default=None)
    floor, target = (shown[1], shown[2]) if shown else (None, None)
    if outside == 0:
        return Verdict(True, "atol/rtol", 0, floor, target, "within atol/rtol")
    if factor is None:
        return Verdict(False, "", outside, floor, target, "beyond atol/rtol")
    if not floating:
        return Verdict(False, "", outside, None, None, "beyond atol/rtol (not a float output: no rounding to allow)")
    if any(j[3] == "missing" and j[0] for j in judged):
        return Verdict(False, "", outside, floor, target,
                       f"beyond atol/rtol (no {ref_name} reference to measure the rounding floor against)")
    unstable = next((j for j in judged if j[3] and j[0]), None)
    if unstable is not None:
        return Verdict(False, "", outside, unstable[1], unstable[2], f"beyond atol/rtol; the source's own {precision} "
                       f"rounding ({unstable[3]}) is too large to judge by")
    failing = sum(j[0] for j in judged)
    figures = f"{target:.2g} from {ref_name} vs the source's own {floor:.2g}"
    if failing == 0:
        return Verdict(True, "rounding", 0, floor, target,
                       f"exact up to {precision} rounding: {figures} (within {factor:g}x)")
    return Verdict(False, "", failing, floor, target,
                   f"beyond atol/rtol and beyond {factor:g}x the source's own {precision} rounding: {figures}")


class Evidence:
    """What the judgement needs from the compared samples: the outputs of each sample with a value
    outside atol/rtol (only those samples get a reference run)."""

    def __init__(self, atol: float, rtol: float):
        self.atol, self.rtol = atol, rtol
        self.kept: dict[int, dict[int, tuple]] = {}  # sample -> output index -> (expected, actual)

    def add(self, sample: int, index: int, expected: np.ndarray, actual: np.ndarray) -> None:
        if expected.shape != actual.shape:
            return
        if outside_tolerance(expected, abs_diff(expected, actual), self.atol, self.rtol).any():
            self.kept.setdefault(sample, {})[index] = (expected, actual)

    def samples(self) -> list[int]:
        return sorted(self.kept)


def apply_verdict(o, verdict: Verdict) -> None:
    """Write a verdict into an OutputParity or LayerParity."""
    o.passed = verdict.passed
    o.rule, o.floor, o.target_ref_err, o.reason = verdict.rule, verdict.floor, verdict.target_ref_err, verdict.reason
    if hasattr(o, "mismatched"):
        o.mismatched = verdict.mismatched


def judge_outputs(per_output, evidence: Evidence, reference_outputs, *, factor, dtype: str) -> list[int]:
    """Judge the outputs (``per_output``: merged OutputParity rows) that are outside atol/rtol, with
    ``reference_outputs(samples)``: {sample: the reference outputs (arrays in the compared layout)
    or None}. Returns the samples that were run at the reference precision."""
    if factor is None or not evidence.kept:
        return []
    refs = reference_outputs(evidence.samples())
    for i, o in enumerate(per_output):
        if o.passed or o.note:  # within atol/rtol, or a shape mismatch (it stays failed with its note)
            continue
        samples = []
        for s, outs in evidence.kept.items():
            if i in outs:
                ref = refs.get(s)
                ref = ref[i] if ref is not None and i < len(ref) else None
                expected, actual = outs[i]
                samples.append((expected, actual, ref if ref is not None and ref.shape == expected.shape else None))
        apply_verdict(o, judge(samples, atol=evidence.atol, rtol=evidence.rtol, factor=factor, dtype=dtype))
    return sorted(s for s, r in refs.items() if r is not None)


# --- the reference run --------------------------------------------------------------------------


class SourceReference:
    """The source model at the reference precision: torch in float64 (the module itself, moved and
    put back: one float64 copy of the weights), Keras rebuilt from its config under a float64
    dtype policy with the same weights (never the converted model: a wrong conversion would make
    a wrong reference). For a float16/bfloat16 check the reference is the source in float32.

    ``note`` says why there is none when building or running it fails."""

    def __init__(self, source, framework: str, *, dtype: str, device: str, keras_device, training: bool):
        self.source, self.framework = source, framework
        self.precision = REFERENCE_DTYPE[dtype]
        self.device, self.keras_device, self.training = device, keras_device, training
        self.note = ""
        self.description = ""
        self._clone = None

    @contextlib.contextmanager
    def prepared(self):
        """Yields (model at the reference precision, its torch dtype or None, a runner: arrays ->
        outputs), or None when there is no reference (``note`` says why)."""
        if self.framework == "torch":
            import torch

            torch_dtype = torch.float64 if self.precision == "float64" else None
            self.description = f"the source module run in {self.precision} (torch)"
            with TorchRunner(self.source, self.device, self.training, torch_dtype) as run:
                yield self.source, torch_dtype, run
            return
        model = self._keras_model()
        if model is None:
            yield None
            return
        self.description = (f"the source rebuilt under a {self.precision} dtype policy (keras)"
                            if model is not self.source else "the source in float32 (keras)")
        with KerasRunner(model, self.training, self.keras_device, restore=model is self.source) as run:
            yield model, None, run

    def _keras_model(self):
        if self.precision == "float32":
            return self.source
        if self._clone is None:
            clone, got, why = keras_in_dtype(self.source, self.precision)
            if got != self.precision:
                self.note = f"no {self.precision} reference: the Keras source {why}"
                return None
            self._clone = clone
        return self._clone

    def outputs(self, batches) -> list | None:
        """The reference outputs for each sample in ``batches`` (each a list of arrays in the source's
        layout), in one session at the reference precision; None when there is no reference."""
        try:
            with self.prepared() as ready:
                return None if ready is None else [ready[2](arrays) for arrays in batches]
        except Exception as e:  # noqa: BLE001 - a model that cannot run in float64: atol/rtol decide, said
            self.note = (f"no {self.precision} reference: the source failed to run in {self.precision} "
                         f"({type(e).__name__}: {one_line(e, 160)})")
            return None
