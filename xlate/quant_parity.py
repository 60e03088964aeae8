"""The gate of a quantized TFLite file: metrics that fit quantization, against the float source.

A quantized model is not expected to match to 1e-5; it is expected to keep the source's answers.
Per output, on the calibration data (else seeded random inputs):

- ``max_abs_err``: the largest absolute difference from the source's float output (reported);
- ``cosine``: the cosine similarity of the flattened output with the source's, for the worst sample;
  the gate fails under ``min_cosine`` (``--min-cosine``, default 0.99);
- ``top1``: for classifier outputs (shape (batch, classes)), the share of samples whose arg max
  agrees with the source's; the gate fails under ``min_top1`` (``--min-top1``, default 0.9).

With integer inputs/outputs (``--int8-io``) the report carries each tensor's scale and zero point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .quantize import Quantization, model_batch, to_target_layout

MAX_SAMPLES = 64  # of the calibration data, at most this many samples are compared
RANDOM_SAMPLES = 8


@dataclass
class QuantOutput:
    name: str
    shape: tuple
    max_abs_err: float
    cosine: float
    top1: float | None
    passed: bool


@dataclass
class QuantReport:
    """What the quantized file computes compared with the float source."""

    mode: str
    per_output: list[QuantOutput]
    min_cosine: float
    min_top1: float
    samples: int
    inputs: str  # where the compared inputs came from
    io: list[dict] = field(default_factory=list)  # int8 inputs/outputs: name, dtype, scale, zero_point
    float_gate: dict | None = None  # the float Keras model's parity figures, before quantizing
    versions: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.per_output)

    @property
    def max_abs_err(self) -> float:
        return max((o.max_abs_err for o in self.per_output), default=0.0)

    @property
    def cosine(self) -> float:
        return min((o.cosine for o in self.per_output), default=1.0)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(passed=self.passed, max_abs_err=self.max_abs_err, cosine=self.cosine, quantize=self.mode,
                    thresholds={"min_cosine": self.min_cosine, "min_top1": self.min_top1})
        return data

    def failure_message(self) -> tuple[str, str]:
        bad = [o for o in self.per_output if not o.passed]
        parts = [f"{o.name} cosine {o.cosine:.4f}" + (f", top-1 {o.top1:.0%}" if o.top1 is not None else "")
                 for o in bad]
        message = (f"the {self.mode} quantized model departs from the source: {'; '.join(parts)} (needs cosine "
                   f">= {self.min_cosine:g}, top-1 >= {self.min_top1:.0%})")
        hint = ("a milder mode (--quantize fp16 or dynamic), more representative --calibration data, or, if the "
                "loss is acceptable, lower --min-cosine / --min-top1")
        return message, hint

    def render(self, console) -> None:
        from rich.table import Table

        verdict = "[bold green]PASS[/bold green]" if self.passed else "[bold red]FAIL[/bold red]"
        console.print(f"{verdict}  {self.mode} quantized TFLite vs the float source  cosine {self.cosine:.5f}  "
                      f"max abs {self.max_abs_err:.3g}  (min cosine {self.min_cosine:g}, min top-1 "
                      f"{self.min_top1:.0%}; {self.samples} sample(s) of {self.inputs})")
        table = Table(header_style="bold")
        for col in ("output", "shape", "max abs err", "cosine", "top-1", "ok"):
            table.add_column(col, justify="right" if col not in ("output", "ok") else "left")
        for o in self.per_output:
            table.add_row(o.name, "x".join(map(str, o.shape)), f"{o.max_abs_err:.3g}", f"{o.cosine:.5f}",
                          "-" if o.top1 is None else f"{o.top1:.0%}", "yes" if o.passed else "NO")
        console.print(table)
        for t in self.io:
            console.print(f"  {t['role']} {t['name']}: {t['dtype']}, scale {t['scale']:.6g}, zero point "
                          f"{t['zero_point']}")


def _cosines(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-sample cosine similarity of the flattened outputs (1 where both are all zeros)."""
    e = expected.reshape(len(expected), -1).astype(np.float64)
    a = actual.reshape(len(actual), -1).astype(np.float64)
    dot = (e * a).sum(1)
    norms = np.linalg.norm(e, axis=1) * np.linalg.norm(a, axis=1)
    both_zero = (np.linalg.norm(e, axis=1) == 0) & (np.linalg.norm(a, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1), 0.0)
    return np.where(both_zero, 1.0, cos)


def _top1(expected: np.ndarray, actual: np.ndarray) -> float | None:
    """Arg-max agreement for classifier-shaped outputs (batch, classes), else None."""
    if expected.ndim != 2 or expected.shape[1] < 2:
        return None
    return float(np.mean(expected.argmax(1) == actual.argmax(1)))


def _inputs(q: Quantization, model, seed: int) -> tuple[list[np.ndarray], str]:
    """Source-layout inputs (samples first) to compare on: the calibration data, else seeded ones."""
    if q.calibration is not None:
        n = min(len(q.calibration[0]), MAX_SAMPLES)
        return [a[:n] for a in q.calibration], f"--calibration {q.calibration_path}"
    from .parity_inputs import io_spec_of, make_inputs

    spec = io_spec_of(model)
    specs = spec.inputs if spec is not None else ()
    batches = make_inputs(specs, samples=RANDOM_SAMPLES, seed=seed, batch=1)
    return [np.concatenate([b[i] for b in batches]) for i in range(len(specs))], "seeded random inputs"


def _io_details(interpreter) -> list[dict]:
    from .loaders.tflite import quantization_of

    out = []
    for role, details in (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details())):
        for d in details:
            q = quantization_of(d)
            if q is not None:
                out.append({"role": role, "name": d["name"], "dtype": np.dtype(d["dtype"]).name, "scale": q[0],
                            "zero_point": q[1]})
    return out


def check_quantized(source, tflite_path, model, q: Quantization, *, seed: int = 0, float_gate=None) -> QuantReport:
    """Run the torch ``source`` and the quantized file at ``tflite_path`` on the same inputs and
    judge the quantized outputs (``model``: the float Keras model it was made from, for its I/O)."""
    import torch

    from . import progress
    from .frameworks import flatten_outputs, to_numpy
    from .loaders.tflite import run_tflite, tflite_interpreter
    from .parity_inputs import io_spec_of
    from .parity_report import versions

    interpreter = tflite_interpreter(tflite_path)
    arrays, where = _inputs(q, model, seed)
    spec = io_spec_of(model)
    out_perms = list(spec.output_perms) if spec is not None else []
    batch = model_batch(model)
    n = len(arrays[0]) - len(arrays[0]) % batch
    expected: list[list[np.ndarray]] = []
    actual: list[list[np.ndarray]] = []
    was_training = source.training
    source.eval()
    try:
        for start in range(0, n, batch):
            chunk = [a[start:start + batch] for a in arrays]
            with torch.no_grad():
                out = source(*[torch.from_numpy(np.ascontiguousarray(a)) for a in chunk])
            expected.append([to_numpy(o) for o in flatten_outputs(out) if isinstance(o, torch.Tensor)])
            got = run_tflite(interpreter, to_target_layout(chunk, model))
            actual.append([np.transpose(g, out_perms[i]) if i < len(out_perms) and out_perms[i] is not None else g
                           for i, g in enumerate(got)])
            progress.report(start + batch, n, "samples")
    finally:
        source.train(was_training)
    if n == 0 or len(expected[0]) != len(actual[0]):
        from .errors import BadInputError

        raise BadInputError(f"cannot compare the quantized model: {n} sample(s), {len(expected[0]) if n else 0} "
                            f"source output(s), {len(actual[0]) if n else 0} TFLite output(s)",
                            hint=f"give at least {batch} calibration sample(s)")
    per_output = []
    for i in range(len(expected[0])):
        e = np.concatenate([s[i] for s in expected]).astype(np.float32)
        a = np.concatenate([s[i] for s in actual]).astype(np.float32)
        if e.shape != a.shape:
            per_output.append(QuantOutput(f"output{i}", tuple(a.shape), float("inf"), 0.0, None, False))
            continue
        cosine = float(_cosines(e, a).min())
        top1 = _top1(e, a)
        passed = cosine >= q.min_cosine and (top1 is None or top1 >= q.min_top1)
        per_output.append(QuantOutput(f"output{i}", tuple(e.shape), float(np.max(np.abs(e - a))), cosine, top1,
                                      passed))
    return QuantReport(q.mode, per_output, q.min_cosine, q.min_top1, n, where, _io_details(interpreter),
                       float_gate, versions())
