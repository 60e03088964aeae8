"""Validate a model or data file's container before a framework's loader reads it.

Framework loaders trust the bytes they are given: on a damaged file some raise, but HDF5 can loop
forever, the TFLite interpreter can segfault, and torch or numpy can allocate whatever size a
damaged header claims. ``validate_model(path, fmt)`` runs, before the loader, the checks that
rule that out for each format ``xlate.load.detect_format`` names, and raises ``DamagedFileError``
(exit code 2, one line) for a file that cannot be what its writer wrote:

==================  =============================================================================
keras               zip: offsets and sizes fit, every member's CRC-32 (``zips``)
keras.h5            HDF5: superblock, end of file, global heaps; then a bounded h5py probe (``hdf5``)
savedmodel          saved_model.pb parses; the Keras model stored inside passes the zip checks
tflite              the flatbuffer unpacks with bounds checks; indices and buffer sizes (``tflite``)
torch.export        zip checks
torch.script        zip checks
torch.state_dict    zip checks, or for the legacy format a pickle walk that runs no code
torch.pickle        the same (``torchpickle``)
torch.safetensors   header length vs file size, each tensor's byte range (``arrays``)
torch.package       model.py compiles; its weights pass their own checks (``folders``)
onnx                protobuf parses, the ONNX checker, initializer sizes (``onnxfile``)
==================  =============================================================================

``validate_inputs`` checks ``.npy``/``.npz`` data files; ``check_file`` any single weights file by
its name and first bytes (for loaders of folders that hold several). Each check reads the file
once; none imports a framework except where the format's own parser lives there (TFLite's
schema, the SavedModel protobuf, onnx).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError
from .arrays import check_npy, check_npz, check_safetensors
from .folders import check_savedmodel, check_torch_package
from .hdf5 import SIGNATURE as _HDF5_SIGNATURE
from .hdf5 import check_hdf5
from .onnxfile import check_onnx
from .tflite import check_tflite
from .torchpickle import check_torch_file
from .zips import check_zip

__all__ = ["check_file", "validate_inputs", "validate_model"]

_CHECKS = {
    "keras": lambda p: check_zip(p, "a Keras .keras archive"),
    "keras.h5": check_hdf5,
    "savedmodel": check_savedmodel,
    "tflite": check_tflite,
    "torch.export": lambda p: check_zip(p, "a torch.export archive"),
    "torch.script": lambda p: check_zip(p, "a TorchScript archive"),
    "torch.state_dict": check_torch_file,
    "torch.pickle": check_torch_file,
    "torch.safetensors": check_safetensors,
    "torch.package": check_torch_package,
    "onnx": check_onnx,
}


def validate_model(path, fmt: str) -> None:
    """Run the checks for format ``fmt`` (a ``detect_format`` name) on ``path``; a format without
    checks passes."""
    check = _CHECKS.get(fmt)
    if check is not None:
        check(Path(path))


def validate_inputs(path) -> None:
    """An ``.npy`` or ``.npz`` file of input arrays (``xlate check --inputs``)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip, or an empty one
        check_npz(path)
    elif head == b"\x93NUMPY":
        check_npy(path)
    else:
        raise BadInputError(f"--inputs {path} is not a readable .npz/.npy file (its first bytes are neither a "
                            "NumPy header nor a zip archive)",
                            hint="write it with numpy.savez('inputs.npz', x) (one array per model input, in order)")


def check_file(path) -> None:
    """One weights or model file, told apart by its extension and first bytes."""
    path = Path(path)
    ext = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(8)
    if ext == ".safetensors":
        check_safetensors(path)
    elif ext == ".onnx":
        check_onnx(path)
    elif ext == ".tflite":
        check_tflite(path)
    elif ext in (".npy", ".npz"):
        validate_inputs(path)
    elif head == _HDF5_SIGNATURE:
        check_hdf5(path)
    elif head.startswith(b"PK\x03\x04"):
        check_zip(path, "a zip archive")
    else:
        check_torch_file(path)
