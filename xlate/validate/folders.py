"""Model folders: a TensorFlow SavedModel, and the PyTorch folder ``xlate tf2torch`` writes.

A SavedModel's graph (``saved_model.pb``) is a protobuf without a checksum: it is parsed here so a
damaged one is named as such (TensorFlow's own variable files carry CRC-32C checksums it checks
when it reads them). The Keras model xlate stores inside a SavedModel is a zip, checked like any
``.keras``. A tf2torch folder's ``model.py`` must compile and its weights pass their own checks.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DamagedFileError, one_line
from .arrays import check_safetensors
from .torchpickle import check_torch_file
from .zips import check_zip


def check_savedmodel(path) -> None:
    path = Path(path)
    graph = path / "saved_model.pb"
    if graph.exists():
        _parse_saved_model(graph)
    for embedded in sorted((path / "assets.extra").glob("*.keras")):  # where xlate stores the Keras model
        check_zip(embedded, "the Keras model stored in the SavedModel")


def _parse_saved_model(graph: Path) -> None:
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        proto = saved_model_pb2.SavedModel.FromString(graph.read_bytes())
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as e:
        raise DamagedFileError(f"{graph} is damaged: it is not a readable SavedModel protobuf "
                               f"({type(e).__name__}: {one_line(e, 120)})") from None
    if not proto.meta_graphs:
        raise DamagedFileError(f"{graph} is damaged: the SavedModel holds no graph")


def check_torch_package(folder) -> None:
    folder = Path(folder)
    for code in sorted(folder.glob("*.py")):
        try:
            compile(code.read_bytes(), str(code), "exec", dont_inherit=True)
        except (SyntaxError, ValueError, UnicodeDecodeError) as e:
            raise DamagedFileError(f"{code} is damaged: it is not valid Python ({type(e).__name__}: "
                                   f"{one_line(e, 120)})",
                                   hint="write the folder again with `xlate tf2torch MODEL -o FOLDER --force`") from None
    if (folder / "model.safetensors").exists():
        check_safetensors(folder / "model.safetensors")
    elif (folder / "model.pth").exists():
        check_torch_file(folder / "model.pth")
