"""Tensor files read as raw bytes: safetensors, ``.npy`` and ``.npz`` (the ``--inputs`` of ``xlate check``).

Each starts with a header that gives every array's dtype and shape, then the raw data. A header
that is cut, or whose arrays do not take exactly the bytes that follow it, is refused before
numpy or safetensors allocate an array of the size the damaged header claims.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import BadInputError, DamagedFileError, one_line
from .zips import check_zip

SAFETENSORS_HEADER_LIMIT = 100_000_000  # the format's own limit on the JSON header
_SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
                       "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8, "C64": 8}


def check_safetensors(path) -> None:
    """The header length against the file's size, then each tensor's dtype, shape and byte range."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise DamagedFileError(f"{path} is cut short: {size} bytes, less than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > SAFETENSORS_HEADER_LIMIT:
            raise DamagedFileError(f"{path} is damaged or cut short: its safetensors header claims {n:,} bytes, "
                                   f"the file has {size:,}")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise DamagedFileError(f"{path} is damaged: its safetensors header is not JSON ({one_line(e, 120)})") from None
    if not isinstance(header, dict):
        raise DamagedFileError(f"{path} is damaged: its safetensors header is not a JSON object")
    _check_tensor_table(path, header, size - 8 - n)


def _check_tensor_table(path: Path, header: dict, data_bytes: int) -> None:
    ranges = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            itemsize = _SAFETENSORS_DTYPES[entry["dtype"]]
            shape = [int(d) for d in entry["shape"]]
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise DamagedFileError(f"{path} is damaged: tensor {name!r} has no valid dtype, shape and "
                                   "data_offsets in the header") from None
        if any(d < 0 for d in shape) or not 0 <= begin <= end <= data_bytes:
            raise DamagedFileError(f"{path} is damaged or cut short: tensor {name!r} takes bytes {begin:,}..{end:,} "
                                   f"of a data section of {data_bytes:,}")
        if end - begin != math.prod(shape) * itemsize:
            raise DamagedFileError(f"{path} is damaged: tensor {name!r} of shape {shape} {entry['dtype']} needs "
                                   f"{math.prod(shape) * itemsize:,} bytes, its header gives it {end - begin:,}")
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            raise DamagedFileError(f"{path} is damaged: tensor {name!r} starts at byte {begin:,} of the data, "
                                   f"expected {position:,} (the tensors must tile the data exactly)")
        position = end
    if position != data_bytes:
        raise DamagedFileError(f"{path} is damaged: its tensors take {position:,} bytes, the data section has "
                               f"{data_bytes:,}")


def check_npy(path) -> None:
    path = Path(path)
    with open(path, "rb") as f:
        _check_npy_stream(f, path.stat().st_size, str(path))


def _check_npy_stream(f, size: int, where: str) -> None:
    """An ``.npy`` header (numpy's own parser) whose array takes exactly the bytes after it."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except Exception as e:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError...
        raise DamagedFileError(f"{where} is damaged: its .npy header cannot be read ({one_line(e, 160)})") from None
    if dtype.hasobject:
        raise DamagedFileError(f"{where} holds Python objects (a pickle), not numbers",
                               hint="save plain numeric arrays with numpy.save / numpy.savez")
    need = math.prod(shape) * dtype.itemsize
    have = size - f.tell()
    if need != have:
        raise DamagedFileError(f"{where} is damaged or cut short: its header says {shape} {dtype} ({need:,} bytes), "
                               f"{have:,} bytes of data follow")


def check_npz(path) -> None:
    path = Path(path)
    infos = check_zip(path, "a NumPy .npz archive")
    if not any(info.filename.endswith(".npy") for info in infos):
        raise BadInputError(f"--inputs {path} holds no arrays (a .npz archive without .npy members)",
                            hint="write it with numpy.savez('inputs.npz', x) (one array per model input, in order)")
    with zipfile.ZipFile(path) as archive:
        for info in infos:
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                _check_npy_stream(member, info.file_size, f"{path} (member {info.filename})")
