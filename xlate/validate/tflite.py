"""TensorFlow Lite flatbuffers: unpacked, and every index and buffer size checked.

A flatbuffer has no checksum. The TFLite interpreter built from a *path* trusts the offsets in
it: a flipped byte made it read outside the mapped file (SIGSEGV, SIGBUS) instead of raising, so
``xlate.load`` builds it from the file's bytes, where TFLite runs its flatbuffers verifier first.
Here, before TensorFlow is imported, the model is unpacked with the schema's Python object API
(reads of numbers and tables are bounds-checked; strings are not, the verifier covers those),
then what the interpreter and its Python wrapper follow is checked: operator codes, tensor and
buffer indices, each constant tensor's byte count, tensor names that are UTF-8.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from ..errors import DamagedFileError, one_line

# TensorType -> bytes per element (types without a fixed size are not size-checked)
_ELEMENT_SIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2, 18: 2}
_KNOWN_TYPES = 20


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def check_tflite(path) -> None:
    path = Path(path)
    data = bytearray(path.read_bytes())
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise DamagedFileError(f"{path} is damaged: it does not start like a TFLite flatbuffer")
    try:
        model = _schema().ModelT.InitFromPackedBuf(data, 0)
    except (struct.error, ValueError, IndexError, TypeError, OverflowError, UnicodeDecodeError, MemoryError,
            RecursionError) as e:
        raise DamagedFileError(f"{path} is damaged or cut short: its flatbuffer points outside the file "
                               f"({type(e).__name__}: {one_line(e, 120)})") from None
    problem = _model_problem(model, len(data))
    if problem:
        raise DamagedFileError(f"{path} is damaged: {problem}")


def _model_problem(model, size: int) -> str | None:
    if model.version != 3:
        return f"its TFLite schema version is {model.version}, not 3"
    if not model.subgraphs:
        return "it has no subgraph"
    buffers = list(model.buffers or [])
    codes = len(model.operatorCodes or [])
    for b, buffer in enumerate(buffers):
        if buffer.offset and buffer.offset > 1 and buffer.offset + buffer.size > size:
            return f"buffer {b} lies at bytes {buffer.offset:,}..{buffer.offset + buffer.size:,}, past the file's end"
    for g, graph in enumerate(model.subgraphs):
        tensors = list(graph.tensors or [])
        problem = _tensors_problem(tensors, buffers) or _indices_problem(graph, len(tensors), codes)
        if problem:
            return f"subgraph {g}: {problem}"
    return None


def _tensors_problem(tensors, buffers) -> str | None:
    for t, tensor in enumerate(tensors):
        shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
        if tensor.type is None or not 0 <= tensor.type < _KNOWN_TYPES or any(d < -1 for d in shape):
            return f"tensor {t} has type {tensor.type} and shape {shape}"
        try:
            (tensor.name or b"").decode("utf-8")
        except UnicodeDecodeError:
            return f"tensor {t}'s name is not UTF-8 text"
        if not 0 <= tensor.buffer < len(buffers):
            return f"tensor {t} refers to buffer {tensor.buffer} of {len(buffers)}"
        data = buffers[tensor.buffer].data
        held = 0 if data is None else len(data)
        if held and tensor.sparsity is None and tensor.type in _ELEMENT_SIZE and all(d >= 0 for d in shape):
            need = math.prod(shape) * _ELEMENT_SIZE[tensor.type]
            if need != held:
                return f"tensor {t} of shape {shape} needs {need:,} bytes, its buffer holds {held:,}"
    return None


def _indices_problem(graph, tensors: int, codes: int) -> str | None:
    def bad(indices, optional: bool) -> int | None:
        for i in indices if indices is not None else []:
            if not (-1 if optional else 0) <= int(i) < tensors:
                return int(i)
        return None

    for what, indices in (("input", graph.inputs), ("output", graph.outputs)):
        wrong = bad(indices, False)
        if wrong is not None:
            return f"its {what} refers to tensor {wrong} of {tensors}"
    for o, op in enumerate(graph.operators or []):
        if not 0 <= op.opcodeIndex < codes:
            return f"operator {o} has operator code {op.opcodeIndex} of {codes}"
        for what, indices in (("inputs", op.inputs), ("outputs", op.outputs), ("intermediates", op.intermediates)):
            wrong = bad(indices, what == "inputs")
            if wrong is not None:
                return f"operator {o}'s {what} refer to tensor {wrong} of {tensors}"
    return None
