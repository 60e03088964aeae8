"""The ONNX fallback path, for models the direct converters cannot handle.

torch -> ONNX (``torch.onnx.export``) -> TensorFlow SavedModel (onnx2tf) -> a Keras 3 model that
wraps the SavedModel in a ``keras.layers.TFSMLayer``; and Keras -> ONNX (Keras' own
``model.export(format="onnx")``, i.e. tf2onnx, with an explicit input signature) -> a torch
module that runs the ONNX graph (``xlate.onnx_torch``).

onnx2tf pins exact versions of numpy, onnx, protobuf and TensorFlow, so it never goes into the
main environment: it is imported in-process only when it is importable *and* its pins match the
running versions, and otherwise run as a subprocess: the ``onnx2tf`` executable given by
``use_onnx2tf(PATH)`` / ``$XLATE_ONNX2TF`` / ``--onnx2tf``, found on PATH, or in the
``.venv-onnx2tf`` that ``scripts/setup_onnx2tf.sh`` creates.

What the results are, honestly: the Keras model of the torch -> Keras path is a SavedModel graph
behind a ``TFSMLayer``: inference only, not trainable, TensorFlow backend only, and it keeps a
reference to the SavedModel folder (``saved_model_dir(model)``). The torch module of the
Keras -> torch path is an ONNX-graph interpreter with real ``nn.Parameter``s: trainable and
saveable with ``state_dict``, but not readable source code.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import BadInputError, UnsupportedOpError, XlateError, one_line
from .frameworks import IOSpec, TensorSpec, to_numpy
from .layout import channels_first, channels_last, inverse
from .record import ConversionRecord, attach

ONNX2TF_ENV = "XLATE_ONNX2TF"
ONNX2TF_VENV = ".venv-onnx2tf"
# onnx2tf reads its sample images from this file in its working directory, and downloads it
# when it is missing; xlate writes a local, generated one there instead (no network needed).
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
CALIBRATION_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "onnx2tf_calibration_20x32x32x3.npy"
SETUP_HINT = ("run scripts/setup_onnx2tf.sh (creates .venv-onnx2tf), or point --onnx2tf / $XLATE_ONNX2TF at an "
              "onnx2tf executable")

_explicit_onnx2tf: str | None = None


class OnnxToolError(XlateError):
    """A tool the ONNX path needs is missing or failed (exit code 2)."""

    exit_code = 2


def use_onnx2tf(path: str | os.PathLike | None) -> None:
    """Use this onnx2tf executable for torch -> Keras via ONNX (what ``--onnx2tf PATH`` sets)."""
    global _explicit_onnx2tf
    if path is not None and not Path(path).is_file():
        raise BadInputError(f"--onnx2tf {path}: no such file", hint=SETUP_HINT)
    _explicit_onnx2tf = None if path is None else str(path)


def find_onnx2tf(explicit: str | os.PathLike | None = None) -> str | None:
    """The onnx2tf executable to run: explicit, $XLATE_ONNX2TF, PATH, then .venv-onnx2tf."""
    for candidate in (explicit, _explicit_onnx2tf, os.environ.get(ONNX2TF_ENV)):
        if candidate:
            return str(candidate)
    on_path = shutil.which("onnx2tf")
    if on_path:
        return on_path
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        exe = root / ONNX2TF_VENV / "bin" / "onnx2tf"
        if exe.is_file():
            return str(exe)
    return None


def onnx2tf_in_process() -> bool:
    """True when onnx2tf is importable here and every package it pins is installed at that version."""
    import importlib.metadata as md
    import importlib.util

    if importlib.util.find_spec("onnx2tf") is None:
        return False
    from packaging.requirements import Requirement

    for line in md.requires("onnx2tf") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = md.version(req.name)
        except md.PackageNotFoundError:
            return False
        if installed not in req.specifier:
            return False
    return True


def calibration_images(count: int = 20, size: int = 32) -> np.ndarray:
    """Deterministic RGB images in [0, 1] (smooth gradients and stripes), NHWC float32."""
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    images = []
    for i in range(count):
        phase = 2 * np.pi * i / count
        r = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + i / count) * (1 + i % 3))
        g = 0.5 + 0.5 * np.cos(2 * np.pi * yy * (1 + i % 4) + phase)
        b = (xx * (i % 5) / 4 + yy * (1 - (i % 5) / 4)) % 1.0
        images.append(np.stack([r, g, b], axis=-1))
    return np.asarray(images, dtype=np.float32)


def _write_calibration(folder: Path) -> None:
    target = folder / CALIBRATION_FILE
    if CALIBRATION_FIXTURE.is_file():
        shutil.copyfile(CALIBRATION_FIXTURE, target)
    else:  # installed from a wheel: fixtures/ is not there; the same data, generated
        np.save(target, calibration_images())


# --- torch -> ONNX -> TensorFlow ------------------------------------------------------------------


def _as_tuple(example_inputs) -> tuple:
    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in example_inputs):
        return tuple(example_inputs)
    raise BadInputError("example_inputs must be a torch.Tensor or a tuple of tensors for the ONNX path")


def _quietly(fn):
    """Run fn with stdout/stderr chatter (exporter progress lines, warnings) captured."""
    out, err = io.StringIO(), io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "tf2onnx", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except Exception as e:
            e.add_note(err.getvalue()[-2000:])
            raise
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _opset(model) -> int:
    """The default-domain ONNX opset an ``onnx.ModelProto`` imports (0 without one)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def export_torch_onnx(module, example_inputs: tuple, path: Path) -> tuple[bool, int]:
    """Export ``module`` (in eval mode) to ONNX at ``path`` with a dynamic batch axis when the
    exporter accepts one. Returns (dynamic batch?, opset)."""
    import onnx
    import torch

    names_in = [f"input_{i}" for i in range(len(example_inputs))]
    was_training = module.training
    module.eval()
    try:
        batch = torch.export.Dim("batch")
        dynamic = tuple({0: batch} if t.dim() > 0 else {} for t in example_inputs)
        try:
            _quietly(lambda: torch.onnx.export(module, example_inputs, str(path), input_names=names_in,
                                               dynamic_shapes=dynamic, external_data=False))
            dynamic_batch = True
        except Exception:  # noqa: BLE001 - e.g. batch-dependent reshapes: retry with static shapes
            _quietly(lambda: torch.onnx.export(module, example_inputs, str(path), input_names=names_in,
                                               external_data=False))
            dynamic_batch = False
    except Exception as e:
        raise OnnxToolError(f"torch.onnx.export failed: {type(e).__name__}: {one_line(e)}",
                            hint="the model must be exportable with torch.export (no data-dependent Python "
                                 "control flow)") from e
    finally:
        module.train(was_training)
    return dynamic_batch, _opset(onnx.load(str(path)))


def run_onnx2tf(onnx_file: Path, out_dir: Path, *, onnx2tf: str | None = None) -> str:
    """Convert an ONNX file into a TensorFlow SavedModel folder. Returns how it was run."""
    workdir = onnx_file.parent
    _write_calibration(workdir)
    args = ["-i", str(onnx_file), "-o", str(out_dir), "-osd", "-n"]
    explicit = onnx2tf or _explicit_onnx2tf or os.environ.get(ONNX2TF_ENV)
    if not explicit and onnx2tf_in_process():
        import onnx2tf as o2t

        cwd = Path.cwd()
        try:
            os.chdir(workdir)
            _quietly(lambda: o2t.convert(input_onnx_file_path=str(onnx_file), output_folder_path=str(out_dir),
                                         output_signaturedefs=True, non_verbose=True))
        except Exception as e:
            raise OnnxToolError(f"onnx2tf failed: {type(e).__name__}: {one_line(e)}") from e
        finally:
            os.chdir(cwd)
        how = f"onnx2tf {_version_of('onnx2tf')} in-process"
    else:
        exe = find_onnx2tf(explicit)
        if exe is None:
            raise OnnxToolError("onnx2tf not found (needed for torch -> Keras via ONNX)", hint=SETUP_HINT)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        env.pop("PYTHONPATH", None)
        proc = subprocess.run([exe, *args], cwd=workdir, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (out_dir / "saved_model.pb").is_file():
            raise OnnxToolError(f"onnx2tf failed (exit {proc.returncode}): {_last_error_line(proc.stdout + proc.stderr)}",
                                hint=f"rerun by hand to see everything: {exe} {' '.join(args)}")
        how = f"onnx2tf subprocess ({exe})"
    return how


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower() and not ln.startswith(("W0000", "I0000")):
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def _version_of(dist: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def _inverse(perm):
    return None if perm is None else inverse(perm)


def _candidates(src_shape, tgt_shape) -> list:
    """Permutations p (or None) with src_shape permuted by p == tgt_shape (batch axis free)."""
    out = []
    if len(src_shape) != len(tgt_shape):
        return out
    for perm in (None, channels_last(len(src_shape)) if len(src_shape) >= 3 else None):
        if perm is None and out and out[0] is None:
            continue
        shape = src_shape if perm is None else tuple(src_shape[i] for i in perm)
        if all(t is None or i == 0 or s == t for i, (s, t) in enumerate(zip(shape, tgt_shape))):
            out.append(perm)
    return out


@functools.cache
def _saved_model_layer_class():
    import keras

    @keras.saving.register_keras_serializable(package="xlate")
    class SavedModelLayer(keras.layers.TFSMLayer):
        """A TFSMLayer that calls the endpoint with one positional argument per model input and
        returns a list for several outputs (TFSMLayer passes a list as one argument)."""

        def call(self, inputs, training=False):
            if isinstance(inputs, (list, tuple)):
                out = self.call_endpoint_fn(*inputs)
            else:
                out = self.call_endpoint_fn(inputs)
            if isinstance(out, dict):
                out = [out[k] for k in sorted(out, key=_output_index)]
            return out

    return SavedModelLayer


def _output_index(name: str):
    tail = name.rsplit("_", 1)[-1]
    return (0, int(tail)) if tail.isdigit() else (1, name)


def torch_to_keras(module, example_inputs, *, io_layout: str = "source", onnx2tf: str | None = None,
                   workdir: str | os.PathLike | None = None):
    """torch module -> ONNX -> TensorFlow SavedModel (onnx2tf) -> Keras 3 model (TFSMLayer).

    The returned model takes (``io_layout="source"``) the module's own layouts, or
    (``"native"``) onnx2tf's channels-last layouts, with the I/O spec recorded for parity checks.
    The SavedModel folder is kept (``saved_model_dir(model)``): the layer reads from it.
    """
    import keras

    start = time.perf_counter()
    example = _as_tuple(example_inputs)
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="xlate-onnx-"))
    folder.mkdir(parents=True, exist_ok=True)
    onnx_file = folder / "model.onnx"
    dynamic_batch, opset = export_torch_onnx(module, example, onnx_file)
    export_s = time.perf_counter() - start
    saved = folder / "saved_model"
    how = run_onnx2tf(onnx_file, saved, onnx2tf=onnx2tf)
    onnx2tf_s = time.perf_counter() - start - export_s

    layer = _quietly(lambda: _saved_model_layer_class()(str(saved), call_endpoint="serving_default",
                                                        trainable=False, name="onnx2tf_saved_model"))
    tf_inputs = _signature_inputs(saved)
    if len(tf_inputs) != len(example):
        raise OnnxToolError(f"onnx2tf's SavedModel takes {len(tf_inputs)} inputs, the module {len(example)}")

    # Which layout did onnx2tf give each input and output? Decided by shapes, and where both
    # layouts fit (square images...), by running the module and the SavedModel and keeping the
    # assignment whose outputs agree.
    in_perms, out_perms = _match_layouts(module, example, layer, tf_inputs)

    src_specs = tuple(TensorSpec((None if dynamic_batch else t.shape[0], *t.shape[1:]), str(t.dtype).replace(
        "torch.", ""), 0, _int_high(t), f"input_{i}") for i, t in enumerate(example))
    if io_layout == "source":
        k_inputs = [keras.Input(tuple(t.shape[1:]), batch_size=None if dynamic_batch else t.shape[0],
                                dtype=str(t.dtype).replace("torch.", ""), name=f"input_{i}")
                    for i, t in enumerate(example)]
        fed = [x if p is None else keras.layers.Permute(p[1:], name=f"to_onnx2tf_layout_{i}")(x)
               for i, (x, p) in enumerate(zip(k_inputs, in_perms))]
    else:
        k_inputs = [keras.Input(tuple(s.shape[1:]), batch_size=None if dynamic_batch else s.shape[0],
                                dtype=s.dtype.name, name=f"input_{i}") for i, s in enumerate(tf_inputs)]
        fed = k_inputs
    outs = layer(fed if len(fed) > 1 else fed[0])
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    if io_layout == "source":
        outs = [o if p is None else keras.layers.Permute(_inverse(p)[1:], name=f"from_onnx2tf_layout_{i}")(o)
                for i, (o, p) in enumerate(zip(outs, out_perms))]
    model = keras.Model(k_inputs if len(k_inputs) > 1 else k_inputs[0], outs if len(outs) > 1 else outs[0],
                        name="onnx2tf_model")
    model.trainable = False

    native = io_layout == "native"
    spec = IOSpec(src_specs,
                  input_perms=tuple(in_perms) if native else (),
                  output_perms=tuple(_inverse(p) for p in out_perms) if native else (),
                  source="torch", extras={"saved_model": str(saved), "onnx": str(onnx_file)})
    record = ConversionRecord("torch2keras", "onnx", spec)
    record.notes += [
        (f"torch.onnx.export (dynamo, opset {opset}, {'dynamic' if dynamic_batch else 'static'} batch) "
        f"{export_s:.1f}s; {how} {onnx2tf_s:.1f}s"),
        (f"the Keras model wraps the TensorFlow SavedModel {saved} in a TFSMLayer: inference only, not "
        "trainable, TensorFlow backend only; no per-layer mapping"),
    ]
    if module.training:
        record.notes.append("the module is in train mode; the ONNX graph was exported in eval mode")
    attach(model, record)
    return model


def saved_model_dir(model) -> str | None:
    """The SavedModel folder behind a Keras model made by the ONNX path (save or copy this)."""
    spec = getattr(model, "_xlate_io", None)
    return None if spec is None else spec.extras.get("saved_model")


def _int_high(t) -> int | None:
    if t.is_floating_point() or t.dtype.is_complex:
        return None
    return int(t.max().item()) + 1 if t.numel() else 2


def _signature_inputs(saved: Path):
    import tensorflow as tf

    sig = tf.saved_model.load(str(saved)).signatures["serving_default"]
    specs = sig.structured_input_signature[1]
    # onnx2tf keeps the ONNX input order, and the names are input_0, input_1, ...
    return [specs[k] for k in sorted(specs, key=_output_index)]


def _match_layouts(module, example, layer, tf_inputs):
    import itertools

    import torch

    in_choices = []
    for t, s in zip(example, tf_inputs):
        cands = _candidates(tuple(t.shape), tuple(s.shape))
        if not cands:
            raise OnnxToolError(f"onnx2tf input shape {tuple(s.shape)} is no layout of {tuple(t.shape)}")
        in_choices.append(cands)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(tuple(t.shape)).astype(np.float32) if t.is_floating_point()
              else t.numpy() for t in example]
    with torch.no_grad():
        was = module.training
        module.eval()
        ref = module(*[torch.from_numpy(a) for a in arrays])
        module.train(was)
    from .frameworks import flatten_outputs

    ref = [to_numpy(r) for r in flatten_outputs(ref)]
    best = None
    for combo in itertools.product(*in_choices):
        fed = [a if p is None else np.transpose(a, p) for a, p in zip(arrays, combo)]
        got = layer(fed if len(fed) > 1 else fed[0])
        got = [to_numpy(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
        if len(got) != len(ref):
            raise OnnxToolError(f"onnx2tf's SavedModel returns {len(got)} outputs, the module {len(ref)}")
        perms, err = [], 0.0
        for r, g in zip(ref, got):
            options = [(np.abs(np.transpose(r, p) - g).max() if p else np.abs(r - g).max(), p)
                       for p in _candidates(r.shape, g.shape)]
            if not options:
                err = float("inf")
                perms.append(None)
                continue
            e, p = min(options, key=lambda o: o[0])
            err = max(err, float(e))
            perms.append(p)
        if best is None or err < best[0]:
            best = (err, list(combo), perms)
    return best[1], best[2]


# --- Keras -> ONNX -> torch -------------------------------------------------------------------


def _keras_signature(model, example_inputs):
    import keras

    if not getattr(model, "inputs", None):
        if example_inputs is None:
            raise BadInputError("the Keras model has no input shapes (subclassed and never called): pass "
                                "example_inputs")
        model(example_inputs)
        arrays = example_inputs if isinstance(example_inputs, (list, tuple)) else [example_inputs]
        shapes = [(None, *np.shape(a)[1:]) for a in arrays]
        dtypes = [str(np.asarray(to_numpy(a)).dtype) for a in arrays]
        names = [f"input_{i}" for i in range(len(arrays))]
    else:
        shapes = [tuple(t.shape) for t in model.inputs]
        dtypes = [str(t.dtype) for t in model.inputs]
        names = [getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(model.inputs)]
    specs = [keras.InputSpec(shape=s, dtype=d, name=n) for s, d, n in zip(shapes, dtypes, names)]
    return specs, shapes, dtypes


def export_keras_onnx(model, path: Path, specs):
    """Keras' own ONNX export (tf2onnx under the TensorFlow backend), explicit input signature.
    Returns the exported graph, loaded (an ``onnx.ModelProto``)."""
    import importlib.util

    import keras

    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tf2onnx") is None:
        raise OnnxToolError("tf2onnx is not installed (Keras' ONNX export needs it under the TensorFlow backend)",
                            hint="pip install -c constraints.txt 'xlate[onnx]'")
    signature = [specs[0]] if len(specs) == 1 else [list(specs)]
    try:
        _quietly(lambda: model.export(str(path), format="onnx", verbose=False, input_signature=signature))
    except Exception as e:
        raise OnnxToolError(f"Keras ONNX export failed: {type(e).__name__}: {one_line(e)}") from e
    import onnx

    return onnx.load(str(path))


def keras_to_torch(model, *, example_inputs=None, io_layout: str = "source",
                   workdir: str | os.PathLike | None = None):
    """Keras model -> ONNX (tf2onnx) -> a torch module running the ONNX graph.

    ``io_layout="source"``: the module takes Keras' layouts (NHWC...); ``"native"``: torch's
    channels-first layouts for rank >= 3 tensors, permuted at the boundary.
    """
    from . import onnx_torch
    from .parity import embedding_bound

    start = time.perf_counter()
    specs, shapes, dtypes = _keras_signature(model, example_inputs)
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="xlate-onnx-"))
    folder.mkdir(parents=True, exist_ok=True)
    onnx_file = folder / "model.onnx"
    graph = export_keras_onnx(model, onnx_file, specs)
    export_s = time.perf_counter() - start
    opset = _opset(graph)
    missing = onnx_torch.unsupported_ops(graph)
    if missing:
        raise UnsupportedOpError(missing, direction="ONNX->torch",
                                 hint="these ONNX ops have no implementation in xlate.onnx_torch yet")
    inner = onnx_torch.OnnxGraphModule(graph)
    n_out = len(inner.output_names)
    high = embedding_bound(model)
    src_specs = tuple(TensorSpec(s, d, 0, high if ("int" in d) else None, f"input_{i}")
                      for i, (s, d) in enumerate(zip(shapes, dtypes)))
    if io_layout == "native":
        to_torch = [channels_first(len(s)) if len(s) >= 3 and "float" in d else None
                    for s, d in zip(shapes, dtypes)]
        out_ranks = [_rank_of(o) for o in graph.graph.output]
        to_keras_out = [channels_last(r) if r and r >= 3 else None for r in out_ranks]
        module = onnx_torch.PermutedIO(inner, [_inverse(p) for p in to_torch],
                                       [_inverse(p) for p in to_keras_out])
        spec = IOSpec(src_specs, input_perms=tuple(to_torch), output_perms=tuple(to_keras_out), source="keras",
                      extras={"onnx": str(onnx_file)})
    else:
        module = inner
        spec = IOSpec(src_specs, source="keras", extras={"onnx": str(onnx_file)})
    module.eval()
    record = ConversionRecord("keras2torch", "onnx", spec)
    ops = sorted({op for op, *_ in inner.nodes})
    record.notes += [
        (f"Keras model.export(format='onnx') (tf2onnx {_version_of('tf2onnx')}, opset {opset}) {export_s:.1f}s; "
        f"{len(inner.nodes)} ONNX nodes ({', '.join(ops)}) run by xlate.onnx_torch; {n_out} output(s)"),
        ("the torch module interprets the ONNX graph: trainable parameters and a state_dict, no generated "
        "source; inference-mode semantics (BatchNormalization uses its moving statistics, no dropout)"),
    ]
    attach(module, record)
    return module


def _rank_of(value_info) -> int | None:
    t = value_info.type.tensor_type
    return len(t.shape.dim) if t.HasField("shape") else None


if __name__ == "__main__":  # pragma: no cover - `python -m xlate.onnx_path` prints what it would use
    print("onnx2tf in-process:", onnx2tf_in_process())
    print("onnx2tf executable:", find_onnx2tf())
    sys.exit(0)
