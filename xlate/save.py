"""The "save" stage: write converted models atomically.

Every output is first written to a hidden temporary path beside the destination, optionally
verified there, and only then renamed into place. A failed run (an exception, a refused
conversion, a failed parity check of the written file) leaves nothing behind, and an existing
output is never replaced unless ``force=True``.

Keras outputs by the destination's form: ``name.keras`` (Keras 3 archive), ``name.tflite``
(TensorFlow Lite flatbuffer), anything without an extension a SavedModel folder. PyTorch
outputs are a folder with ``model.py`` and the weights (``write_torch_package``; the save stage owns
it, and the keras2torch converter does not import this module).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .bound import removed_on_hard_exit
from .errors import BadInputError, one_line

KERAS_OUTPUTS = {".keras": "keras", ".tflite": "tflite", "": "savedmodel"}


def keras_output_kind(path) -> str:
    """"keras", "tflite" or "savedmodel" from the destination's extension; BadInputError otherwise."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in KERAS_OUTPUTS:
        return KERAS_OUTPUTS[ext]
    if ext in (".h5", ".hdf5"):
        raise BadInputError(f"-o {path}: xlate does not write the legacy .h5 format",
                            hint="write name.keras (Keras 3), a SavedModel folder (no extension) or name.tflite")
    raise BadInputError(f"-o {path}: cannot tell the output format from {ext!r}",
                        hint="use name.keras (Keras 3), a SavedModel folder (no extension) or name.tflite")


def check_destination(path, *, force: bool) -> Path:
    """Refuse an existing destination unless ``force``; return the path. Call before long work."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise BadInputError(f"{path} already exists; xlate does not replace it without --force",
                            hint="pass --force to replace it, or choose another -o path")
    return path


@contextlib.contextmanager
def atomic_path(path, *, force: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it to ``path``, on failure delete it.

    The temporary name keeps the destination's extension (Keras checks it). Missing parent folders
    are created, and removed again if the run fails.
    """
    path = Path(path)
    check_destination(path, force=force)
    created = _make_parents(path.parent)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".xlate-tmp", dir=path.parent))
    tmp = tmp_root / path.name
    if directory:
        tmp.mkdir()
    try:
        with removed_on_hard_exit(tmp_root, empty_folders=reversed(created)):
            yield tmp
            if not tmp.exists():
                raise BadInputError(f"nothing was written to {path}")
            _replace(tmp, path, force=force)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        for folder in reversed(created):  # parents made for a run that failed
            with contextlib.suppress(OSError):
                if not any(folder.iterdir()):
                    folder.rmdir()


def _make_parents(folder: Path) -> list[Path]:
    created = []
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        p.mkdir()
        created.append(p)
    return created


def _replace(tmp: Path, path: Path, *, force: bool) -> None:
    """Move ``tmp`` to ``path``; an existing ``path`` (only with force) is swapped out, then deleted."""
    if not (path.exists() or path.is_symlink()):
        os.replace(tmp, path)
        return
    if not force:  # it appeared while we worked
        raise BadInputError(f"{path} appeared while xlate was writing it; not replaced without --force",
                            hint="pass --force to replace it")
    if path.is_file() and tmp.is_file():
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.xlate-old")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old) if old.is_dir() else old.unlink()


# --- Keras outputs -------------------------------------------------------------------------------


def save_keras(model, path, *, force: bool = False, verify: Callable[[Path], None] | None = None,
               quantization=None) -> Path:
    """Write a Keras model to ``path`` (.keras, SavedModel folder or .tflite) atomically.

    ``verify(tmp_path)`` runs on the written file before it is moved into place; if it raises,
    nothing is left behind. ``quantization``: an ``xlate.quantize.Quantization`` for a .tflite.
    """
    path = Path(path)
    kind = keras_output_kind(path)
    from .frameworks import deep_graphs

    with atomic_path(path, force=force) as tmp, deep_graphs():  # Keras walks deep graphs recursively
        if kind == "keras":
            model.save(str(tmp))
        elif kind == "savedmodel":
            write_savedmodel(model, tmp)
        else:
            tmp.write_bytes(tflite_bytes(model, quantization))
        if verify is not None:
            verify(tmp)
    return path


def _export_savedmodel(model, folder: Path, purpose: str, hint: str) -> None:
    """``model.export`` as a TF SavedModel; TensorFlow's failure becomes one line with its reason."""
    try:
        model.export(str(folder), format="tf_saved_model", verbose=False)
    except Exception as e:  # noqa: BLE001 - TensorFlow raises many kinds here
        raise BadInputError(f"TensorFlow could not export the model {purpose} ({type(e).__name__}: {one_line(e)})",
                            hint=hint) from None


def write_savedmodel(model, folder: Path) -> None:
    """``model.export`` to a SavedModel folder, with the Keras model itself kept in assets.extra so
    that xlate can rebuild the architecture from the folder later (TensorFlow ignores it)."""
    from .load import SAVEDMODEL_KERAS_ASSET

    _export_savedmodel(model, folder, "as a SavedModel",
                       hint="write a .keras file instead; SavedModel export needs the TensorFlow backend")
    asset = folder / SAVEDMODEL_KERAS_ASSET
    asset.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(asset))


def tflite_bytes(model, quantization=None) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer through a temporary SavedModel, quantized as
    ``quantization`` (``xlate.quantize``) says when given.

    Raises ``BadInputError`` with the converter's own reason when TFLite refuses an op.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="xlate-tflite-") as tmp:
        saved = Path(tmp) / "saved"
        _export_savedmodel(model, saved, "for TFLite", hint="write a .keras file instead")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantization is not None:
            from .quantize import configure

            configure(converter, quantization, model)
        try:
            return _quiet_convert(converter)
        except Exception as e:  # noqa: BLE001 - the converter raises ConverterError and others
            text = " ".join(str(e).split())
            ops = _tflite_refused_ops(text)
            raise BadInputError(
                f"the TFLite converter refused the model{ops}: {text[:300]}",
                hint="write a .keras file or a SavedModel folder instead; TFLite covers fewer ops than TensorFlow",
            ) from None


def _quiet_convert(converter) -> bytes:
    """``converter.convert()`` without the quantizer's C++ chatter on stderr (xlate shows its own progress)."""
    from .frameworks import native_stderr_silenced

    with native_stderr_silenced():
        return converter.convert()


def _tflite_refused_ops(text: str) -> str:
    import re

    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)'", text)))
    return f" (ops {', '.join(ops)})" if ops else ""


# --- PyTorch outputs -----------------------------------------------------------------------------


def check_torch_folder(folder) -> Path:
    """A PyTorch output is a folder (model.py + weights): a name with an extension is bad input."""
    folder = Path(folder)
    if folder.suffix:
        raise BadInputError(f"-o {folder}: tf2torch writes a folder (model.py + weights), not a {folder.suffix} file",
                            hint="give a folder name without an extension, e.g. -o net/")
    return folder


def save_torch(module, folder, *, force: bool = False, verify: Callable[[Path], None] | None = None) -> Path:
    """Write a converted torch module as a folder (``model.py`` + weights) atomically."""
    folder = check_torch_folder(folder)
    with atomic_path(folder, force=force, directory=True) as tmp:
        write_torch_package(module, tmp)
        if verify is not None:
            verify(tmp)
    return folder


def write_torch_package(module, folder, *, weights: str = "safetensors") -> None:
    """Write ``model.py`` and ``model.safetensors`` (or ``model.pth``) into the existing ``folder``."""
    source = getattr(module, "_xlate_source", None)
    if source is None:
        raise BadInputError("this module was not generated by xlate's keras->torch path (no _xlate_source)")
    if weights not in ("safetensors", "pth"):
        raise BadInputError(f"weights must be 'safetensors' or 'pth', got {weights!r}")
    folder = Path(folder)
    (folder / "model.py").write_text(source)
    state = module.state_dict()  # the module's own tensors: written one at a time, never copied all at once
    if weights == "safetensors":
        from .tensorfile import save_state_dict

        save_state_dict(state, folder / "model.safetensors", metadata={"format": "pt", "generator": "xlate"})
    else:
        import torch

        torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, folder / "model.pth")


def save_torch_package(module, outdir, *, weights: str = "safetensors", overwrite: bool = False) -> Path:
    """Write ``model.py`` and ``model.safetensors`` (or ``model.pth``) as the folder ``outdir``, atomically.

    The files are written to a temporary folder next to ``outdir`` and renamed into place
    (``xlate.save.atomic_path``), so a failure leaves no half-written package; an existing
    ``outdir`` is replaced only with ``overwrite=True``. Loading needs torch (and safetensors) only:
    ``from model import Net; net = Net(); net.load_state_dict(load_file("model.safetensors"))``.
    """
    outdir = Path(outdir)
    with atomic_path(outdir, force=overwrite, directory=True) as tmp:
        write_torch_package(module, tmp, weights=weights)
    return outdir
