"""ONNX files: the protobuf parses, the ONNX checker accepts the graph, and every initializer's
bytes (inline or in an external data file) match its shape and type."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import DamagedFileError, one_line

# TensorProto.DataType -> the repeated field that holds it when raw_data is empty, and values per element
_TYPED_FIELD = {1: ("float_data", 1), 2: ("int32_data", 1), 3: ("int32_data", 1), 4: ("int32_data", 1),
                5: ("int32_data", 1), 6: ("int32_data", 1), 7: ("int64_data", 1), 8: ("string_data", 1),
                9: ("int32_data", 1), 10: ("int32_data", 1), 11: ("double_data", 1), 12: ("uint64_data", 1),
                13: ("uint64_data", 1), 14: ("float_data", 2), 15: ("double_data", 2), 16: ("int32_data", 1)}


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
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as e:
        raise DamagedFileError(f"{path} is damaged or not a valid ONNX model (checker: {one_line(e, 160)})") from None
    for tensor in model.graph.initializer:
        problem = _initializer_problem(tensor, path.parent)
        if problem:
            raise DamagedFileError(f"{path} is damaged: initializer {tensor.name!r} {problem}")


def _initializer_problem(tensor, folder: Path) -> str | None:
    from onnx import TensorProto, helper

    count = math.prod(tensor.dims)
    if tensor.data_location == TensorProto.EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        target = (folder / info.get("location", "")).resolve()
        if folder.resolve() not in target.parents or not target.is_file():
            return f"keeps its data in {info.get('location')!r}, which is not a file beside the model"
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if end > target.stat().st_size:
            return f"keeps its data up to byte {end:,} of {target.name}, which has {target.stat().st_size:,}"
        return None
    if tensor.raw_data:
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except (KeyError, ValueError, TypeError):
            return f"has data type {tensor.data_type}, which ONNX does not define"
        if tensor.data_type in (TensorProto.INT4, TensorProto.UINT4):
            return None
        if len(tensor.raw_data) != count * itemsize:
            return f"of shape {list(tensor.dims)} needs {count * itemsize:,} bytes, it holds {len(tensor.raw_data):,}"
        return None
    field, per = _TYPED_FIELD.get(tensor.data_type, (None, 1))
    if field is not None and len(getattr(tensor, field)) != count * per:
        return f"of shape {list(tensor.dims)} holds {len(getattr(tensor, field)):,} values"
    return None
