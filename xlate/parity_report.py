"""Parity verdicts and their report: one output compared by atol/rtol, the per-output and
per-layer records, and ``ParityReport`` (a human table, ``to_json``).

Owns comparison and reporting only. Running the models is ``xlate.runners``' job, making their
inputs ``xlate.parity_inputs``', the rounding-floor rule ``xlate.floor``'s, and tying it together
``xlate.parity.check_parity``'s; this module must not import ``xlate.parity`` or
``xlate.diagnose``, nor torch/TensorFlow.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from .floor import FAILED, TOLERANCE, abs_diff, outside_tolerance


@dataclass
class OutputParity:
    name: str
    shape: list
    max_abs_err: float
    max_rel_err: float
    mismatched: int
    total: int
    passed: bool
    note: str = ""
    #: ``passed`` is the default gate's verdict (atol/rtol or the rounding floor); which rule decided:
    #: "tolerance" (within atol/rtol), "floor" (within floor_factor x the rounding floor), "failed"
    rule: str = FAILED
    #: the source's own float32-vs-float64 distance (max abs; None: not measured) and the target's distance
    #: from that float64 result, on the sample closest to failing the rounding rule (for a float16/bfloat16
    #: check the reference is the source in float32)
    floor: float | None = None
    target_vs_ref64: float | None = None
    #: why it passed or failed, in words
    reason: str = ""
    #: values beyond atol/rtol (the old rule's mismatches; ``mismatched`` counts those beyond both rules)
    outside_tol: int = 0
    #: the old rule's verdict: every value within atol/rtol (``floor_factor=None`` would give ``passed`` this)
    tolerance_passed: bool = False
    #: the target's own float32-vs-float64 distance, measured only when the source's floor did not
    #: cover the target (a framework that rounds more, e.g. TensorFlow's sigmoid on the Keras side)
    target_floor: float | None = None


@dataclass
class LayerParity:
    """One mapped layer's outputs compared (filled by per-layer localization)."""

    name: str
    source_name: str
    target_name: str
    max_abs_err: float
    max_rel_err: float
    passed: bool
    note: str = ""
    shape: list = field(default_factory=list)
    row: str | None = None
    rule: str = FAILED
    floor: float | None = None
    target_vs_ref64: float | None = None
    reason: str = ""
    target_floor: float | None = None
    #: the old rule's verdict for this layer (atol/rtol alone)
    tolerance_passed: bool = False


class PrintableReport:
    """``render()``, ``str()`` and ``to_json()`` for a report dataclass that builds its rich view in ``_rich()``."""

    #: columns of the plain-text form (``str(report)``)
    text_width = 110

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=json_default)

    def render(self, console=None) -> None:
        """Print the report as a table (rich)."""
        from rich.console import Console

        (console or Console()).print(self._rich())

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=self.text_width, record=True, file=_NullFile(), color_system=None)
        console.print(self._rich())
        return console.export_text().rstrip()


@dataclass
class ParityReport(PrintableReport):
    passed: bool
    max_abs_err: float
    max_rel_err: float
    per_output: list[OutputParity]
    atol: float
    rtol: float
    device: str
    dtype: str
    samples: int
    seed: int
    training: bool
    source: str
    target: str
    versions: dict = field(default_factory=dict)
    path: str | None = None
    per_layer: list[LayerParity] | None = None
    first_divergence: LayerParity | None = None
    message: str = ""
    #: where each side actually ran ("cpu", "cuda:0 (NVIDIA H100 ...)") and in which float dtype
    devices: dict = field(default_factory=dict)
    dtypes: dict = field(default_factory=dict)
    #: the rounding-floor rule (None: atol/rtol alone) and what its reference run was ("" when none ran)
    floor_factor: float | None = None
    reference: str = ""

    @property
    def tolerance(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol, "floor_factor": self.floor_factor}

    @property
    def tolerance_passed(self) -> bool:
        """The old rule's verdict: every output within atol/rtol alone (``passed`` is the default gate's)."""
        return bool(self.per_output) and all(o.tolerance_passed for o in self.per_output)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tolerance"] = self.tolerance
        d["tolerance_passed"] = self.tolerance_passed
        return d

    def _rich(self):
        from rich.console import Group
        from rich.text import Text

        status = Text("PASS", style="bold green") if self.passed else Text("FAIL", style="bold red")
        floor = f", floor {self.floor_factor:g}x the source's rounding" if self.floor_factor else ""
        head = Text.assemble(
            status,
            f"  {self.source} -> {self.target}",
            f" via {self.path}" if self.path else "",
            f"  max abs {self.max_abs_err:.3g}  max rel {self.max_rel_err:.3g}",
            f"  (atol {self.atol:g}, rtol {self.rtol:g}{floor}; {self.samples} sample(s), seed {self.seed}, "
            f"{self.device}, {self.dtype}, {'train' if self.training else 'eval'} mode)",
        )
        parts = [head, _table(self.per_output, ("output", "shape"), lambda o: (o.name, "x".join(map(str, o.shape))),
                              mismatched=True)]
        parts += [Text(f"{o.name}: {o.reason}") for o in self.per_output if o.rule != TOLERANCE and o.reason]
        if self.reference:
            parts.append(Text(f"rounding floor measured against {self.reference}", style="dim"))
        if self.per_layer:
            rows = list(enumerate(self.per_layer))
            parts.append(_table(rows, ("#", "layer", "target"), lambda r: (str(r[0]), r[1].name, r[1].target_name),
                                title="per layer (network order)", get=lambda r: r[1]))
        if self.first_divergence is not None:
            f = self.first_divergence
            parts.append(Text(f"first diverging layer: {f.name} -> {f.target_name} "
                              f"(max abs {f.max_abs_err:.3g}, max rel {f.max_rel_err:.3g}"
                              + (f"; {f.reason}" if f.reason and f.floor is not None else "") + ")", style="bold red"))
        if self.message:
            parts.append(Text(self.message))
        return Group(*parts)


def _table(items, head: tuple, cells, *, title=None, mismatched=False, get=lambda item: item):
    """The rich table of outputs or layers: the given leading cells, then errors and verdict. When a
    rounding floor was measured, the floor and the target's distance from the reference take the
    max rel column's place (the report's head line and its JSON keep max rel), so the table still
    fits 80 columns; the figures never wrap."""
    from rich.table import Table

    floors = any(get(item).floor is not None for item in items)
    table = Table(show_header=True, header_style="bold", title=title)
    figures_cols = ("max abs err", "floor", "vs ref") if floors else ("max abs err", "max rel err")
    cols = (*head, *figures_cols, *(("mismatched",) if mismatched else ()), "ok")
    for col in cols:
        left = col in ("output", "layer", "target", "shape", "ok")
        table.add_column(col, justify="left" if left else "right", no_wrap=not left and col != "#",
                         min_width=len("yes (floor)") if col == "ok" and floors else None)
    for item in items:
        o = get(item)
        figures = [f"{o.max_abs_err:.3g}", *((_g(o.floor), _g(o.target_vs_ref64)) if floors else
                                             (f"{o.max_rel_err:.3g}",))]
        verdict = ("yes" if o.rule == TOLERANCE else "yes (floor)") if o.passed else \
            "NO" + (f" ({o.note})" if o.note else "")
        table.add_row(*cells(item), *figures, *((f"{o.mismatched}/{o.total}",) if mismatched else ()), verdict)
    return table


def _g(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


class _NullFile:
    def write(self, _):
        return 0

    def flush(self):
        pass


def json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__}
    from ._version import __version__

    v["xlate"] = __version__
    for name in ("torch", "keras", "tensorflow", "jax"):
        mod = sys.modules.get(name)
        if mod is not None:
            v[name] = getattr(mod, "__version__", "?")
    keras = sys.modules.get("keras")
    if keras is not None:
        v["keras_backend"] = keras.backend.backend()
    return v


def compare_arrays(name: str, expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> OutputParity:
    """Compare one output by atol/rtol; ``expected`` is the source framework's, ``actual`` the target's."""
    if expected.shape != actual.shape:
        return OutputParity(name, list(expected.shape), float("inf"), float("inf"), int(expected.size),
                            int(expected.size), False, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}",
                            outside_tol=int(expected.size), tolerance_passed=False)
    diff = abs_diff(expected, actual)
    bad = outside_tolerance(expected, diff, atol, rtol)
    rel = diff / np.maximum(np.abs(expected.astype(np.float64)), np.finfo(np.float64).tiny)
    rel[diff == 0] = 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    passed = not bad.any()
    return OutputParity(name, list(expected.shape), max_abs, max_rel, int(bad.sum()), int(diff.size), passed,
                        rule=TOLERANCE if passed else FAILED, reason="within atol/rtol" if passed else "beyond atol/rtol",
                        outside_tol=int(bad.sum()), tolerance_passed=passed)


def merge_samples(reports: list[list[OutputParity]]) -> list[OutputParity]:
    merged = []
    for outs in zip(*reports):
        first = outs[0]
        merged.append(OutputParity(
            name=first.name, shape=first.shape,
            max_abs_err=max(o.max_abs_err for o in outs), max_rel_err=max(o.max_rel_err for o in outs),
            mismatched=sum(o.mismatched for o in outs), total=sum(o.total for o in outs),
            passed=all(o.passed for o in outs), note="; ".join(sorted({o.note for o in outs if o.note})),
            outside_tol=sum(o.outside_tol for o in outs), tolerance_passed=all(o.tolerance_passed for o in outs),
        ))
        last = merged[-1]
        last.rule, last.reason = (TOLERANCE, "within atol/rtol") if last.passed else (FAILED, last.note or "beyond atol/rtol")
    return merged


def summary(per_output) -> dict:
    """passed / max_abs_err / max_rel_err over the compared outputs (no outputs: not passed)."""
    return {"passed": all(o.passed for o in per_output) and bool(per_output),
            "max_abs_err": max((o.max_abs_err for o in per_output), default=0.0),
            "max_rel_err": max((o.max_rel_err for o in per_output), default=0.0)}
