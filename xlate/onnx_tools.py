"""The external tools of the ONNX fallback path: finding and running onnx2tf, and the two ONNX
exporters (``torch.onnx.export`` and Keras' ``model.export(format="onnx")``).

onnx2tf pins exact versions of numpy, onnx, protobuf and TensorFlow, so it never goes into the
main environment: it is imported in-process only when it is importable *and* its pins match the
running versions, and otherwise run as a subprocess: the ``onnx2tf`` executable given by
``use_onnx2tf(PATH)`` / ``$XLATE_ONNX2TF`` / ``--onnx2tf``, found on PATH, or in the
``.venv-onnx2tf`` that ``scripts/setup_onnx2tf.sh`` creates.

Owns files in and files out (a module or Keras model -> ``model.onnx``; ``model.onnx`` -> a
SavedModel folder) and the tool errors. Building the Keras or torch model around the result is
``onnx_path.py``'s job; this module must not import it, and imports torch, TensorFlow, onnx and
onnx2tf only inside functions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import BadInputError, XlateError, one_line

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


# --- running the tools --------------------------------------------------------------------------


def quietly(fn):
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


def opset_of(model) -> int:
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
            quietly(lambda: torch.onnx.export(module, example_inputs, str(path), input_names=names_in,
                                               dynamic_shapes=dynamic, external_data=False))
            dynamic_batch = True
        except Exception:  # noqa: BLE001 - e.g. batch-dependent reshapes: retry with static shapes
            quietly(lambda: torch.onnx.export(module, example_inputs, str(path), input_names=names_in,
                                               external_data=False))
            dynamic_batch = False
    except Exception as e:
        raise OnnxToolError(f"torch.onnx.export failed: {type(e).__name__}: {one_line(e)}",
                            hint="the model must be exportable with torch.export (no data-dependent Python "
                                 "control flow)") from e
    finally:
        module.train(was_training)
    return dynamic_batch, opset_of(onnx.load(str(path)))


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
            quietly(lambda: o2t.convert(input_onnx_file_path=str(onnx_file), output_folder_path=str(out_dir),
                                         output_signaturedefs=True, non_verbose=True))
        except Exception as e:
            raise OnnxToolError(f"onnx2tf failed: {type(e).__name__}: {one_line(e)}") from e
        finally:
            os.chdir(cwd)
        how = f"onnx2tf {version_of('onnx2tf')} in-process"
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


def version_of(dist: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


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
        quietly(lambda: model.export(str(path), format="onnx", verbose=False, input_signature=signature))
    except Exception as e:
        raise OnnxToolError(f"Keras ONNX export failed: {type(e).__name__}: {one_line(e)}") from e
    import onnx

    return onnx.load(str(path))


if __name__ == "__main__":  # pragma: no cover - `python -m xlate.onnx_tools` prints what it would use
    print("onnx2tf in-process:", onnx2tf_in_process())
    print("onnx2tf executable:", find_onnx2tf())
    sys.exit(0)
