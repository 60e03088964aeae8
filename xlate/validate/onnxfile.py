"""ONNX files: the protobuf parses, the ONNX checker accepts the graph (it also checks that each
inline initializer holds the bytes its shape and type need), and initializers kept in external
data files lie inside those files."""

from __future__ import annotations

from pathlib import Path

from ..errors import DamagedFileError, one_line


def check_onnx(path) -> None:
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError, OSError) as e:
        raise DamagedFileError(f"{path} is damaged: it is not a readable ONNX protobuf "
                               f"({type(e).__name__}: {one_line(e, 120)})") from None
    if not model.graph.node:
        raise DamagedFileError(f"{path} is damaged or empty: its ONNX graph has no nodes")
    try:
        onnx.checker.check_model(str(path))  # by path: external data is found beside the model
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as e:
        raise DamagedFileError(f"{path} is damaged or not a valid ONNX model (checker: {one_line(e, 160)})") from None
    for tensor in model.graph.initializer:
        problem = _external_data_problem(tensor, path.parent)
        if problem:
            raise DamagedFileError(f"{path} is damaged: initializer {tensor.name!r} {problem}")


def _external_data_problem(tensor, folder: Path) -> str | None:
    from onnx import TensorProto

    if tensor.data_location != TensorProto.EXTERNAL:
        return None
    info = {e.key: e.value for e in tensor.external_data}
    target = (folder / info.get("location", "")).resolve()
    if folder.resolve() not in target.parents or not target.is_file():
        return f"keeps its data in {info.get('location')!r}, which is not a file beside the model"
    try:
        end = int(info.get("offset") or 0) + int(info.get("length") or 0)
    except ValueError:
        return f"has an external data offset or length that is not a number ({info})"
    if end > target.stat().st_size:
        return f"keeps its data up to byte {end:,} of {target.name}, which has {target.stat().st_size:,}"
    return None
