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

The two frameworks do not round alike: TensorFlow's float32 sigmoid and SiLU are several times
less exact than torch's, so an exact EfficientNet converted torch -> Keras sits 3.7x torch's own
rounding from float64. When a sample fails against the source's floor, the target is run at the
reference precision too, and its own rounding T = max |target - target at the reference
precision| counts as well: the value passes within ``factor`` x max(F, T). That run is only a
measure of how much the target rounds; the distance is still measured from the *source's*
float64 result, so a wrong target (a scaled weight: its float64 run is just as wrong, its
rounding as small) still fails.

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
#: which rule decided an output (``OutputParity.rule``): within atol/rtol, within the rounding floor, neither
TOLERANCE, FLOOR, FAILED = "tolerance", "floor", "failed"
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
    rule: str  # TOLERANCE, FLOOR or FAILED
    mismatched: int  # values beyond both rules
    floor: float | None = None
    target_vs_ref64: float | None = None
    reason: str = ""
    target_floor: float | None = None
    #: it failed against a usable source floor: the target's own rounding may still explain it
    retry: bool = False


@dataclass
class _Sample:
    failing: int  # values beyond atol/rtol and beyond the allowed rounding
    floor: float | None  # the source's own rounding
    target: float | None  # the target's distance from the reference
    target_floor: float | None = None  # the target's own rounding (when measured)
    why: str = ""  # why no floor applies ("missing", or the source floor's problem)
    by_target: bool = False  # it needed the target's own rounding to pass


def _usable(floor, scale: float, dtype: str) -> str:
    """"" when ``floor`` may be allowed for, else why not."""
    if floor is None:
        return "missing"
    if not np.isfinite(floor):
        return "not finite"
    if floor > FLOOR_CAP[dtype] * scale:
        return f"{floor:.1e}, " + (f"{floor / scale:.1%} of the output's largest value" if scale
                                   else "on an all-zero output")
    return ""


def _judge_sample(expected, actual, reference, target_reference, bad, *, factor, dtype) -> _Sample:
    if reference is None:
        return _Sample(int(bad.sum()), None, None, why="missing")
    floor = _max(abs_diff(expected, reference))
    dist = abs_diff(actual, reference)
    ref = np.asarray(reference, dtype=np.float64)
    scale = _max(np.abs(ref[np.isfinite(ref)]))
    own = None if target_reference is None else _max(abs_diff(actual, target_reference))
    why, why_target = _usable(floor, scale, dtype), _usable(own, scale, dtype)
    allowed = [f for f, w in ((floor, why), (own, why_target)) if not w]
    if not allowed:
        return _Sample(int(bad.sum()), floor, _max(dist), own, why)
    failing = int((bad & (dist > factor * max(allowed))).sum())
    by_target = not failing and (bool(why) or int((bad & (dist > factor * floor)).sum()) > 0)
    return _Sample(failing, floor, _max(dist), own, "", by_target)


def judge(samples, *, atol: float, rtol: float, factor: float | None, dtype: str = "float32") -> Verdict:
    """Judge one output over ``samples``: (expected, actual, reference[, target reference]) per
    sample; ``expected`` is the source's, ``actual`` the target's, ``reference`` the source at the
    reference precision (None when there is none), the optional target reference the target at it
    (for the target's own rounding). Samples left out are taken as within atol/rtol."""
    precision, ref_name = dtype, REFERENCE_DTYPE[dtype]
    judged: list[_Sample] = []
    outside = 0
    floating = True
    for expected, actual, reference, *rest in samples:
        bad = outside_tolerance(expected, abs_diff(expected, actual), atol, rtol)
        outside += int(bad.sum())
        floating &= np.asarray(expected).dtype.kind == "f" and np.asarray(actual).dtype.kind == "f"
        target_reference = rest[0] if rest else None
        judged.append(_judge_sample(expected, actual, reference if floating else None, target_reference, bad,
                                    factor=factor or 0.0, dtype=dtype))
    # the figures shown: the sample closest to failing (failing first, then the largest target / floor)
    measured = [j for j in judged if j.floor is not None]
    shown = max(measured, key=lambda j: (j.failing > 0, j.target / j.floor if j.floor else
                                         (np.inf if j.target else 0.0)), default=None)
    figures = {} if shown is None else {"floor": shown.floor, "target_vs_ref64": shown.target,
                                        "target_floor": shown.target_floor}
    if outside == 0:
        return Verdict(True, TOLERANCE, 0, reason="within atol/rtol", **figures)
    if factor is None:
        return Verdict(False, FAILED, outside, reason="beyond atol/rtol", **figures)
    if not floating:
        return Verdict(False, FAILED, outside, reason="beyond atol/rtol (not a float output: no rounding to allow)")
    if any(j.why == "missing" and j.failing for j in judged):
        return Verdict(False, FAILED, outside, reason=f"beyond atol/rtol (no {ref_name} reference to measure the "
                                                   "rounding floor against)", **figures)
    unstable = next((j for j in judged if j.why and j.failing), None)
    if unstable is not None:
        return Verdict(False, FAILED, outside, unstable.floor, unstable.target, f"beyond atol/rtol; the source's own "
                       f"{precision} rounding ({unstable.why}) is too large to judge by", unstable.target_floor,
                       retry=unstable.target_floor is None)
    failing = sum(j.failing for j in judged)
    whose, own = (("the source's own", "") if shown.target_floor is None else
                  ("either side's own", f" and the target's own {shown.target_floor:.1e}"))
    if failing == 0:
        how = (f"{shown.target:.1e} from {ref_name}, within {factor:g}x the target's own {shown.target_floor:.1e} "
               f"(the source's own: {shown.floor:.1e})" if any(j.by_target for j in judged) else
               f"{shown.target:.1e} from {ref_name} vs the source's own {shown.floor:.1e} (within {factor:g}x)")
        return Verdict(True, FLOOR, 0, reason=f"exact up to {precision} rounding: {how}", **figures)
    return Verdict(False, FAILED, failing, reason=f"beyond atol/rtol and beyond {factor:g}x {whose} {precision} rounding: "
                   f"{shown.target:.1e} from {ref_name} vs the source's own {shown.floor:.1e}{own}",
                   retry=shown.target_floor is None, **figures)


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
    o.rule, o.floor, o.target_vs_ref64, o.reason = verdict.rule, verdict.floor, verdict.target_vs_ref64, verdict.reason
    o.target_floor = verdict.target_floor
    if hasattr(o, "mismatched"):
        o.mismatched = verdict.mismatched


def judge_outputs(per_output, evidence: Evidence, source_refs, target_refs=None, *, factor,
                  dtype: str) -> tuple[list[int], list[int]]:
    """Judge the outputs (``per_output``: merged OutputParity rows) that are outside atol/rtol.

    ``source_refs(samples)`` / ``target_refs(samples)``: {sample: the source's / target's outputs at
    the reference precision (arrays in the compared layout) or None}. The target's run (its own
    rounding) happens only for the outputs that fail against the source's. Returns the samples
    each was run on."""
    if factor is None or not evidence.kept:
        return [], []
    refs = source_refs(evidence.samples())
    pending = {i: o for i, o in enumerate(per_output) if not o.passed and not o.note}  # a note: shape mismatch
    verdicts = {i: _judge_output(i, evidence, refs, {}, factor, dtype) for i in pending}
    retry = sorted({s for i, v in verdicts.items() if v.retry for s, outs in evidence.kept.items()
                    if i in outs and refs.get(s) is not None})
    target = target_refs(retry) if retry and target_refs is not None else {}
    for i, o in pending.items():
        verdict = verdicts[i]
        if verdict.retry and target:
            verdict = _judge_output(i, evidence, refs, target, factor, dtype)
        apply_verdict(o, verdict)
    return sorted(s for s, r in refs.items() if r is not None), sorted(s for s, r in target.items() if r is not None)


def _pick(outputs, i, like):
    ref = outputs[i] if outputs is not None and i < len(outputs) else None
    return ref if ref is not None and ref.shape == like.shape else None


def _judge_output(i, evidence, refs, target, factor, dtype) -> Verdict:
    samples = [(e, a, _pick(refs.get(s), i, e), _pick(target.get(s), i, e))
               for s, outs in evidence.kept.items() if i in outs for e, a in [outs[i]]]
    return judge(samples, atol=evidence.atol, rtol=evidence.rtol, factor=factor, dtype=dtype)


# --- the reference run --------------------------------------------------------------------------


class ReferenceRun:
    """A model at the reference precision: torch in float64 (the module itself, moved and put back:
    one float64 copy of the weights), Keras rebuilt from its config under a float64 dtype policy
    with the same weights. For a float16/bfloat16 check it is the model in float32.

    The reference is always the *source* run this way: a float64 run of the converted model would
    carry a wrong conversion into the reference. The target is run this way only to measure its
    own rounding (``role="target"``), never as the result it is compared with.

    ``note`` says why there is none when building or running it fails."""

    def __init__(self, model, framework: str, *, dtype: str, device: str, keras_device, training: bool,
                 role: str = "source"):
        self.model, self.framework, self.role = model, framework, role
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
            self.description = f"the {self.role} module run in {self.precision} (torch)"
            with TorchRunner(self.model, self.device, self.training, torch_dtype) as run:
                yield self.model, torch_dtype, run
            return
        model = self._keras_model()
        if model is None:
            yield None
            return
        self.description = (f"the {self.role} rebuilt under a {self.precision} dtype policy (keras)"
                            if model is not self.model else f"the {self.role} in float32 (keras)")
        with KerasRunner(model, self.training, self.keras_device, restore=model is self.model) as run:
            yield model, None, run

    def _keras_model(self):
        if self.precision == "float32":
            return self.model
        if self._clone is None:
            clone, got, why = keras_in_dtype(self.model, self.precision)
            if got != self.precision:
                self.note = f"no {self.precision} reference: the Keras {self.role} {why}"
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
            self.note = (f"no {self.precision} reference: the {self.role} failed to run in {self.precision} "
                         f"({type(e).__name__}: {one_line(e, 160)})")
            return None
