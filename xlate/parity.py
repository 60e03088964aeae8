"""Parity verification: run a torch module and a Keras model on the same inputs, compare outputs.

This is the "verify" stage every conversion ends with, the engine behind ``xlate check`` and
``xlate.testing.assert_parity``. It always compares two real frameworks' outputs; it never
compares a model with itself.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import BadInputError
from .frameworks import IOSpec, TensorSpec, flatten_outputs, framework_of, to_numpy

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


@dataclass
class LayerParity:
    """One mapped layer's outputs compared (filled by per-layer localization)."""

    name: str
    source_name: str
    target_name: str
    max_abs_err: float
    max_rel_err: float
    passed: bool


@dataclass
class ParityReport:
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

    @property
    def tolerance(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tolerance"] = self.tolerance
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

    def render(self, console=None) -> None:
        """Print the report as a table (rich)."""
        from rich.console import Console

        (console or Console()).print(self._rich())

    def _rich(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        status = Text("PASS", style="bold green") if self.passed else Text("FAIL", style="bold red")
        head = Text.assemble(
            status,
            f"  {self.source} -> {self.target}",
            f" via {self.path}" if self.path else "",
            f"  max abs {self.max_abs_err:.3g}  max rel {self.max_rel_err:.3g}",
            f"  (atol {self.atol:g}, rtol {self.rtol:g}; {self.samples} sample(s), seed {self.seed}, "
            f"{self.device}, {self.dtype}, {'train' if self.training else 'eval'} mode)",
        )
        table = Table(show_header=True, header_style="bold")
        for col in ("output", "shape", "max abs err", "max rel err", "mismatched", "ok"):
            table.add_column(col, justify="right" if "err" in col or col == "mismatched" else "left")
        for o in self.per_output:
            table.add_row(o.name, "x".join(map(str, o.shape)), f"{o.max_abs_err:.3g}", f"{o.max_rel_err:.3g}",
                          f"{o.mismatched}/{o.total}", "yes" if o.passed else "NO" + (f" ({o.note})" if o.note else ""))
        parts = [head, table]
        if self.first_divergence is not None:
            f = self.first_divergence
            parts.append(Text(f"first diverging layer: {f.name} (max abs {f.max_abs_err:.3g})", style="bold red"))
        if self.message:
            parts.append(Text(self.message))
        return Group(*parts)

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=110, record=True, file=_NullFile(), color_system=None)
        console.print(self._rich())
        return console.export_text().rstrip()


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
    high = _embedding_bound(model)
    specs = []
    for t in model.inputs:
        dtype = str(t.dtype)
        specs.append(TensorSpec(tuple(t.shape), dtype, 0, high if "int" in dtype else None, getattr(t, "name", "")))
    return tuple(specs)


def _embedding_bound(model) -> int:
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
            shape = concrete_shape(spec.shape, batch)
            if spec.dtype == "bool":
                arrays.append(rng.integers(0, 2, size=shape).astype(bool))
            elif spec.is_integer:
                arrays.append(rng.integers(spec.low, spec.high or 2, size=shape).astype(spec.dtype))
            else:
                arrays.append(rng.standard_normal(shape).astype(spec.dtype))
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


# --- running the two sides --------------------------------------------------------------------


class _TorchRunner:
    def __init__(self, module, device: str, training: bool):
        import torch

        self.torch = torch
        self.module = module
        self.device = device
        self.training = training

    def __enter__(self):
        self.state = copy.deepcopy(self.module.state_dict())
        self.was_training = self.module.training
        self.module.train(self.training)
        self.module.to(self.device)
        return self

    def __call__(self, arrays):
        torch = self.torch
        tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
        with torch.no_grad():
            out = self.module(*tensors)
        return [to_numpy(o) for o in flatten_outputs(out) if isinstance(o, torch.Tensor)]

    def __exit__(self, *exc):
        self.module.to("cpu")
        self.module.load_state_dict(self.state)
        self.module.train(self.was_training)


class _KerasRunner:
    def __init__(self, model, training: bool):
        self.model = model
        self.training = training

    def __enter__(self):
        self.weights = [v.numpy() for v in self.model.weights]
        return self

    def __call__(self, arrays):
        x = arrays[0] if len(arrays) == 1 else list(arrays)
        out = self.model(x, training=self.training)
        return [to_numpy(o) for o in flatten_outputs(out)]

    def __exit__(self, *exc):
        for v, w in zip(self.model.weights, self.weights):
            v.assign(w)


def compare_arrays(name: str, expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> OutputParity:
    """Compare one output; ``expected`` is the source framework's, ``actual`` the target's."""
    if expected.shape != actual.shape:
        return OutputParity(name, list(expected.shape), float("inf"), float("inf"), int(expected.size),
                            int(expected.size), False, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    e = expected.astype(np.float64)
    a = actual.astype(np.float64)
    nan_e, nan_a = np.isnan(e), np.isnan(a)
    diff = np.abs(e - a)
    diff[nan_e & nan_a] = 0.0
    diff[nan_e ^ nan_a] = np.inf
    both_inf = np.isinf(e) & np.isinf(a) & (np.sign(e) == np.sign(a))
    diff[both_inf] = 0.0
    bad = diff > atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    rel = diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    rel[diff == 0] = 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    return OutputParity(name, list(expected.shape), max_abs, max_rel, int(bad.sum()), int(e.size), not bad.any())


def check_parity(source, target, inputs=None, *, atol=1e-5, rtol=1e-4, device="cpu", per_layer=False, samples=4,
                 seed=0, training: bool | None = None, path: str | None = None) -> ParityReport:
    """Compare a torch module and a Keras model (either may be the source) on seeded inputs.

    ``inputs``: None (generated from the models' input specs), one array, a tuple of arrays, or a
    list of such tuples; given in the *source* model's layout. ``training``: run torch in train
    mode and Keras with training=True (default: the torch module's current mode). The models'
    weights and buffers are restored afterwards, so a train-mode check leaves no trace.
    """
    src_fw, tgt_fw = framework_of(source), framework_of(target)
    if {src_fw, tgt_fw} != {"torch", "keras"}:
        raise BadInputError(f"check_parity compares a torch module with a Keras model, got {src_fw} and {tgt_fw}")
    torch_model = source if src_fw == "torch" else target
    keras_model = source if src_fw == "keras" else target
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise BadInputError(f"unknown device {device!r}; use cpu or cuda")
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInputError("--device cuda asked for, but torch sees no CUDA device here")
    if training is None:
        training = bool(torch_model.training)

    spec = io_spec_of(target) or io_spec_of(source)
    if inputs is None:
        if spec is not None:
            specs = spec.inputs
        else:
            specs = _keras_input_specs(keras_model)
            spec = IOSpec(specs, source=src_fw)
        batches = make_inputs(specs, samples=samples, seed=seed)
    else:
        batches = _normalize_given_inputs(inputs)
        spec = spec or IOSpec((), source=src_fw)

    # Inputs arrive in the layout of the spec's source framework; the converted (target) side
    # takes them through input_perms and its outputs come back through output_perms.
    src_is_torch = spec.source == "torch"
    torch_in_perm, keras_in_perm = (None, spec.input_perms) if src_is_torch else (spec.input_perms, None)
    torch_out_perm, keras_out_perm = (None, spec.output_perms) if src_is_torch else (spec.output_perms, None)
    given_source_is_torch = src_fw == "torch"

    reports: list[list[OutputParity]] = []
    with _TorchRunner(torch_model, device, training) as run_torch, _KerasRunner(keras_model, training) as run_keras:
        for arrays in batches:
            # inputs arrive in the spec-source layout
            t_in = [_permute(a, _perm_at(torch_in_perm, i)) for i, a in enumerate(arrays)]
            k_in = [_permute(a, _perm_at(keras_in_perm, i)) for i, a in enumerate(arrays)]
            t_out = run_torch(t_in)
            k_out = run_keras(k_in)
            # bring both to the spec-source layout before comparing
            t_out = [_permute(o, _perm_at(torch_out_perm, i)) for i, o in enumerate(t_out)]
            k_out = [_permute(o, _perm_at(keras_out_perm, i)) for i, o in enumerate(k_out)]
            expected, actual = (t_out, k_out) if given_source_is_torch else (k_out, t_out)
            if len(expected) != len(actual):
                raise BadInputError(f"the models return {len(expected)} and {len(actual)} outputs")
            reports.append([compare_arrays(f"output{i}", e, a, atol, rtol)
                            for i, (e, a) in enumerate(zip(expected, actual))])

    per_output = _merge(reports)
    report = ParityReport(
        passed=all(o.passed for o in per_output) and bool(per_output),
        max_abs_err=max((o.max_abs_err for o in per_output), default=0.0),
        max_rel_err=max((o.max_rel_err for o in per_output), default=0.0),
        per_output=per_output, atol=atol, rtol=rtol, device=str(device), dtype=_dtype_of(batches),
        samples=len(batches), seed=seed, training=training, source=src_fw, target=tgt_fw,
        versions=versions(), path=path,
    )
    if not per_output:
        report.message = "the models returned no tensors to compare"
    if per_layer:
        from .diagnose import localize

        localize(report, source, target, batches[0], atol=atol, rtol=rtol, training=training)
    return report


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
        ))
    return merged
