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

from .errors import BadInputError, one_line
from .frameworks import IOSpec, TensorSpec, flatten_outputs, framework_of, keras_inputs, to_numpy

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
    note: str = ""
    shape: list = field(default_factory=list)
    row: str | None = None


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

    @property
    def tolerance(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tolerance"] = self.tolerance
        return d

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
        if self.per_layer:
            layers = Table(show_header=True, header_style="bold", title="per layer (network order)")
            for col in ("#", "layer", "target", "max abs err", "max rel err", "ok"):
                layers.add_column(col, justify="right" if "err" in col or col == "#" else "left")
            for i, row in enumerate(self.per_layer):
                layers.add_row(str(i), row.name, row.target_name, f"{row.max_abs_err:.3g}", f"{row.max_rel_err:.3g}",
                               "yes" if row.passed else "NO" + (f" ({row.note})" if row.note else ""))
            parts.append(layers)
        if self.first_divergence is not None:
            f = self.first_divergence
            parts.append(Text(f"first diverging layer: {f.name} -> {f.target_name} "
                              f"(max abs {f.max_abs_err:.3g}, max rel {f.max_rel_err:.3g})", style="bold red"))
        if self.message:
            parts.append(Text(self.message))
        return Group(*parts)


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
    """Runs the torch module on ``device`` in ``dtype`` (None: as it is), then puts every parameter
    and buffer back exactly as it was (values, dtype, device; the Parameter objects are kept)."""

    def __init__(self, module, device: str, training: bool, dtype=None):
        import torch

        self.torch = torch
        self.module = module
        self.device = device
        self.training = training
        self.dtype = dtype

    def __enter__(self):
        self.tensors = {id(t): t for t in list(self.module.parameters()) + list(self.module.buffers())}
        self.saved = {i: t.detach().clone() for i, t in self.tensors.items()}
        self.was_training = self.module.training
        self.module.train(self.training)
        self.module.to(self.device)
        if self.dtype is not None:
            self.module.to(self.dtype)
        self.tf32 = _disable_torch_tf32(self.torch) if str(self.device).startswith("cuda") else None
        return self

    def __call__(self, arrays):
        torch = self.torch
        with torch.no_grad():
            out = self.module(*torch_tensors(arrays, self.device, self.dtype))
        # numpy has no bfloat16: compare reduced-precision outputs as float32
        return [to_numpy(o.float() if o.is_floating_point() and o.dtype != torch.float64 else o)
                for o in flatten_outputs(out) if isinstance(o, torch.Tensor)]

    def __exit__(self, *exc):
        if self.tf32 is not None:
            _restore_torch_tf32(self.torch, self.tf32)
        for i, t in self.tensors.items():
            t.data = self.saved[i]
        self.module.train(self.was_training)


def torch_tensors(arrays, device, dtype=None) -> list:
    """numpy arrays as torch tensors on ``device``; floating ones cast to ``dtype`` when given."""
    import torch

    tensors = []
    for a in arrays:
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors.append(t)
    return tensors


class _KerasRunner:
    """Runs the Keras model under a device scope (None: Keras' default), with TensorFlow's TF32
    off on a GPU, then puts every weight back."""

    def __init__(self, model, training: bool, device: str | None = None):
        self.model = model
        self.training = training
        self.device = device

    def __enter__(self):
        self.weights = [v.numpy() for v in self.model.weights]
        self.tf32 = _disable_tf_tf32() if str(self.device).startswith("gpu") else None
        return self

    def __call__(self, arrays):
        import keras

        x = keras_inputs(self.model, arrays)
        if self.device is None:
            out = self.model(x, training=self.training)
        else:
            with keras.device(self.device):
                out = self.model(x, training=self.training)
        return [_float32(to_numpy(o)) for o in flatten_outputs(out)]

    def __exit__(self, *exc):
        _restore_tf_tf32(self.tf32)
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
                 seed=0, training: bool | None = None, path: str | None = None,
                 dtype: str = "float32") -> ParityReport:
    """Compare a torch module and a Keras model (either may be the source) on seeded inputs.

    ``inputs``: None (generated from the models' input specs), one array, a tuple of arrays, or a
    list of such tuples; given in the *source* model's layout. ``training``: run torch in train
    mode and Keras with training=True (default: the torch module's current mode). The models'
    weights and buffers are restored afterwards, so a train-mode check leaves no trace.

    ``device="cuda"``: the torch side runs on CUDA (TensorFlow on its GPU when it has one, else on
    the CPU as the reference), with TF32 off on both sides. ``dtype="float16"|"bfloat16"``: both
    sides run in that precision where they can (a Keras model is re-instantiated with that dtype
    policy; when it cannot be, Keras stays float32 as the reference and the report says so), and
    atol/rtol are raised to at least ``DTYPE_TOL_FACTOR`` x the dtype's machine epsilon.
    """
    src_fw, tgt_fw = framework_of(source), framework_of(target)
    if {src_fw, tgt_fw} != {"torch", "keras"}:
        raise BadInputError(f"check_parity compares a torch module with a Keras model, got {src_fw} and {tgt_fw}")
    torch_model = source if src_fw == "torch" else target
    keras_model = source if src_fw == "keras" else target
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise BadInputError(f"unknown device {device!r}", hint="use --device cpu, cuda or cuda:N")
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInputError(f"device {device!r} asked for, but torch sees no CUDA device here",
                                hint="run on a machine with a CUDA GPU and a CUDA build of torch, or use --device cpu")
    if training is None:
        training = bool(torch_model.training)
    atol, rtol, tol_note, torch_dtype = _precision(dtype, atol, rtol)
    run_keras_model, keras_dtype, keras_note = _keras_in_dtype(keras_model, dtype)
    keras_device, devices = _devices(device)

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
    with _TorchRunner(torch_model, device, training, torch_dtype) as run_torch, \
            _KerasRunner(run_keras_model, training, keras_device) as run_keras:
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
        **_summary(per_output), per_output=per_output, atol=atol, rtol=rtol, device=str(device),
        dtype=dtype if dtype != "float32" else _dtype_of(batches),
        samples=len(batches), seed=seed, training=training, source=src_fw, target=tgt_fw,
        versions=versions(), path=path, devices=devices,
        dtypes={"torch": dtype, "keras": keras_dtype},
    )
    notes = [n for n in (tol_note, keras_note) if n]
    if not per_output:
        notes.insert(0, "the models returned no tensors to compare")
    report.message = "; ".join(notes)
    if per_layer:
        from .diagnose import localize
        from .record import record_of

        # the same device, dtype and mode as the outputs compared above
        swap = {id(keras_model): run_keras_model}
        layer_source, layer_target = swap.get(id(source), source), swap.get(id(target), target)
        with _TorchRunner(torch_model, device, training, torch_dtype), \
                _KerasRunner(run_keras_model, training, keras_device):
            localize(report, layer_source, layer_target, batches[0], atol=atol, rtol=rtol, training=training,
                     device=device, torch_dtype=torch_dtype, record=record_of(target) or record_of(source),
                     spec=spec)
    return report


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


def _float32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype.itemsize < 4 else a


def _keras_in_dtype(model, dtype: str):
    """(model to run, its dtype, note): the Keras model re-instantiated with a ``dtype`` policy and
    the same weights, or the model itself in float32 when that is impossible (said in the note)."""
    if dtype == "float32":
        return model, "float32", ""
    import keras

    try:
        def with_dtype(layer):
            config = layer.get_config()
            config["dtype"] = dtype
            return layer.__class__.from_config(config)

        clone = keras.models.clone_model(model, clone_function=with_dtype)
        if len(clone.weights) != len(model.weights):
            raise ValueError("the clone has different weights")
        for new, old in zip(clone.weights, model.weights):
            new.assign(keras.ops.cast(old.value, new.dtype))
    except Exception as e:  # noqa: BLE001 - any reason: Keras stays the float32 reference, said below
        reason = one_line(e, 160) or type(e).__name__
        return model, "float32", f"the Keras side ran in float32 (cannot re-instantiate it in {dtype}: {reason})"
    return clone, dtype, ""


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


def _disable_torch_tf32(torch):
    """TF32 off for CUDA matmul and cuDNN conv (semantics.md section 10); returns the old flags."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return old


def _restore_torch_tf32(torch, old) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _disable_tf_tf32():
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    old = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return old


def _restore_tf_tf32(old) -> None:
    tf = sys.modules.get("tensorflow")
    if tf is not None and old is not None:
        tf.config.experimental.enable_tensor_float_32_execution(old)


def check_torch_against_reference(module, inputs, expected, *, atol=1e-5, rtol=1e-4, device="cpu",
                                  dtype: str = "float32", reference: str = "keras (cpu, float32)") -> ParityReport:
    """Run a torch module on ``inputs`` (a list of samples, each a list of arrays in the module's
    layout) and compare with ``expected`` outputs computed elsewhere (a list of samples, each a list
    of arrays), e.g. the Keras side's outputs computed on a CPU machine with TensorFlow and carried
    to a GPU machine that has none. Same device, dtype and tolerance rules as ``check_parity``."""
    atol, rtol, tol_note, torch_dtype = _precision(dtype, atol, rtol)
    if len(inputs) != len(expected):
        raise BadInputError(f"{len(inputs)} input samples but {len(expected)} expected outputs")
    devices = {"torch": _torch_device_label(device), "reference": reference}
    reports = []
    with _TorchRunner(module, device, False, torch_dtype) as run_torch:
        for arrays, want in zip(inputs, expected):
            got = run_torch([np.asarray(a) for a in arrays])
            if len(got) != len(want):
                raise BadInputError(f"the module returns {len(got)} outputs, the reference has {len(want)}")
            reports.append([compare_arrays(f"output{i}", np.asarray(w), g, atol, rtol)
                            for i, (w, g) in enumerate(zip(want, got))])
    per_output = _merge(reports)
    return ParityReport(
        **_summary(per_output), per_output=per_output, atol=atol, rtol=rtol, device=str(device), dtype=dtype, samples=len(inputs),
        seed=-1, training=False, source="reference", target="torch", versions=versions(), devices=devices,
        dtypes={"torch": dtype, "reference": "float32"}, message=tol_note,
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
        ))
    return merged
