"""Parity verification: run a torch module and a Keras model on the same inputs, compare outputs.

This is the "verify" stage every conversion ends with, the engine behind ``xlate check`` and
``xlate.testing.assert_parity``. It always compares two real frameworks' outputs; it never
compares a model with itself.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import BadInputError
from .floor import (
    FAILED,
    FLOOR_FACTOR,
    TOLERANCE,
    Evidence,
    ReferenceRun,
    abs_diff,
    check_factor,
    judge_outputs,
    outside_tolerance,
)
from .frameworks import IOSpec, TensorSpec, framework_of, numpy_dtype, to_numpy
from .runners import KerasRunner, TorchRunner, keras_in_dtype

DEFAULT_BATCH = 2
DEFAULT_FREE_DIM = 8


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
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

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


def _json_default(o):
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


# --- input specs -----------------------------------------------------------------------------


def io_spec_of(model) -> IOSpec | None:
    return getattr(model, "_xlate_io", None)


def _keras_input_specs(model) -> tuple[TensorSpec, ...]:
    high = embedding_bound(model)
    specs = []
    for t in model.inputs:
        dtype = str(t.dtype)
        specs.append(TensorSpec(tuple(t.shape), dtype, 0, high if "int" in dtype else None, getattr(t, "name", "")))
    return tuple(specs)


def embedding_bound(model) -> int:
    """Exclusive upper bound for generated integer inputs: the smallest Embedding vocabulary (2 without one)."""
    bound = None
    for layer in model._flatten_layers(include_self=False):
        dim = getattr(layer, "input_dim", None)
        if isinstance(dim, int) and type(layer).__name__ == "Embedding":
            bound = dim if bound is None else min(bound, dim)
    return bound or 2


def concrete_shape(shape, batch=DEFAULT_BATCH) -> tuple[int, ...]:
    return tuple((batch if i == 0 else DEFAULT_FREE_DIM) if d is None else int(d) for i, d in enumerate(shape))


def make_inputs(specs, *, samples: int, seed: int, batch: int = DEFAULT_BATCH) -> list[list[np.ndarray]]:
    """Seeded random inputs for each spec: N(0, 1) floats, uniform integers in [low, high)."""
    out = []
    for s in range(samples):
        rng = np.random.default_rng(seed + s)
        arrays = []
        for spec in specs:
            shape = concrete_shape(getattr(spec, "example", None) or spec.shape, batch)
            if spec.dtype == "bool":
                arrays.append(rng.integers(0, 2, size=shape).astype(bool))
            elif spec.is_integer:
                arrays.append(rng.integers(spec.low, spec.high or 2, size=shape).astype(spec.dtype))
            else:
                arrays.append(rng.standard_normal(shape).astype(numpy_dtype(spec.dtype)))
        out.append(arrays)
    return out


def _normalize_given_inputs(inputs) -> list[list[np.ndarray]]:
    """Accept one array, a tuple/list of arrays (one sample), or a list of such tuples."""
    if isinstance(inputs, dict):
        inputs = list(inputs.values())
    if not isinstance(inputs, (list, tuple)):
        return [[to_numpy(inputs)]]
    if inputs and all(isinstance(i, (list, tuple)) for i in inputs):
        return [[to_numpy(a) for a in sample] for sample in inputs]
    return [[to_numpy(a) for a in inputs]]


def _permute(a: np.ndarray, perm) -> np.ndarray:
    return a if perm is None else np.transpose(a, perm)


# --- comparing -------------------------------------------------------------------------------


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
    batches, spec = _batches_and_spec(source, target, keras_model, src_fw, inputs, samples, seed)
    sides = _Sides(spec, src_fw == "torch")

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

    per_output = _merge(reports)
    options = {"dtype": dtype, "device": device, "keras_device": keras_device, "training": training}
    reference = ReferenceRun(source, src_fw, **options)
    target_run = ReferenceRun(target, tgt_fw, role="target", **options)
    ran, ran_target = judge_outputs(per_output, evidence, lambda ids: sides.reference(reference, batches, ids),
                                    lambda ids: sides.reference(target_run, batches, ids, side="target"),
                                    factor=floor_factor, dtype=dtype)
    report = ParityReport(
        **_summary(per_output), per_output=per_output, atol=atol, rtol=rtol, device=str(device),
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


def _batches_and_spec(source, target, keras_model, src_fw, inputs, samples, seed):
    """(input samples in the spec-source layout, the I/O spec)."""
    spec = io_spec_of(target) or io_spec_of(source)
    if inputs is None:
        if spec is not None:
            specs = spec.inputs
        else:
            specs = _keras_input_specs(keras_model)
            spec = IOSpec(specs, source=src_fw)
        return make_inputs(specs, samples=samples, seed=seed), spec
    return _normalize_given_inputs(inputs), spec or IOSpec((), source=src_fw)


class _Sides:
    """Layouts at the boundary: inputs arrive in the layout of the spec's source framework; the
    converted side takes them through input_perms and its outputs come back through output_perms."""

    def __init__(self, spec: IOSpec, given_source_is_torch: bool):
        src_is_torch = spec.source == "torch"
        self.torch_in, self.keras_in = (None, spec.input_perms) if src_is_torch else (spec.input_perms, None)
        self.torch_out, self.keras_out = (None, spec.output_perms) if src_is_torch else (spec.output_perms, None)
        self.source_is_torch = given_source_is_torch

    @staticmethod
    def _apply(arrays, perms):
        return [_permute(a, _perm_at(perms, i)) for i, a in enumerate(arrays)]

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


# --- device and dtype ---------------------------------------------------------------------------

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


def _summary(per_output) -> dict:
    """passed / max_abs_err / max_rel_err over the compared outputs (no outputs: not passed)."""
    return {"passed": all(o.passed for o in per_output) and bool(per_output),
            "max_abs_err": max((o.max_abs_err for o in per_output), default=0.0),
            "max_rel_err": max((o.max_rel_err for o in per_output), default=0.0)}


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
    per_output = _merge(reports)
    carried = [] if floor_reference is None else [[np.asarray(r) for r in outs] for outs in floor_reference]
    ran, _ = judge_outputs(per_output, evidence, lambda ids: {s: carried[s] if s < len(carried) else None for s in ids},
                           factor=floor_factor, dtype=dtype)
    return ParityReport(
        **_summary(per_output), per_output=per_output, atol=atol, rtol=rtol, device=str(device), dtype=dtype,
        samples=len(inputs), seed=-1, training=False, source="reference", target="torch", versions=versions(),
        devices=devices, dtypes={"torch": dtype, "reference": "float32"}, message=tol_note, floor_factor=floor_factor,
        reference=_ran_on("the source's carried float64 outputs", ran, len(inputs)),
    )


def _perm_at(perms, i):
    return perms[i] if perms is not None and i < len(perms) else None


def _dtype_of(batches) -> str:
    kinds = sorted({str(a.dtype) for b in batches for a in b})
    return ",".join(kinds)


def _merge(reports: list[list[OutputParity]]) -> list[OutputParity]:
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
