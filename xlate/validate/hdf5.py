"""HDF5 files (Keras' legacy ``.h5``): checked in two steps before Keras opens them.

1. In this process, from the bytes (no HDF5 library): the superblock, the end-of-file address it
   records against the file's size, and every global heap collection. The collections hold the
   variable-length strings (Keras' ``model_config``, ``layer_names``...). HDF5 1.14 decodes a
   collection in a loop that advances by each object's recorded size; an object with index 0 and
   size 0 (what a zeroed region leaves) never advances, and HDF5 spins forever at full CPU inside
   one C call that holds the GIL (``H5HG__cache_heap_deserialize``). That is the reported hang;
   ``_check_global_heaps`` replays the loop and refuses such a collection in microseconds.
2. In a child process (``h5probe.py``, bounded in time and memory by ``bound.run_probe``): h5py
   walks every group and dataset, reads every attribute, checks each dataset's shape and size
   against the file's size, and reads the data. Keras reads a subset of the same objects, and
   HDF5 decodes them the same way each time, so once the probe finished, Keras' load cannot hang
   or crash in HDF5; a probe that does not finish is reported as a damaged file.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from ..errors import DamagedFileError

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_GCOL = b"GCOL"
_PROBE = Path(__file__).with_name("h5probe.py")


def check_hdf5(path, *, probe: bool = True) -> None:
    """Both steps (see the module docstring); ``DamagedFileError`` on the first problem."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        lengths = _check_superblock(path, data, size)
        _check_global_heaps(path, data, lengths)
    if probe:
        from ..bound import run_probe

        run_probe(_PROBE, path, what="the HDF5 library")


def _superblock_at(data) -> int:
    offset = 0
    while offset + len(SIGNATURE) <= len(data):
        if data[offset:offset + len(SIGNATURE)] == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return -1


def _check_superblock(path: Path, data, size: int) -> int:
    """The end-of-file address against the file's size; returns the size of lengths (bytes)."""
    at = _superblock_at(data)
    if at < 0:
        raise DamagedFileError(f"{path} is not an HDF5 file any more: its superblock signature is gone")
    if at + 16 > size:
        raise DamagedFileError(f"{path} is cut short: it ends inside the HDF5 superblock ({size} bytes)")
    version = data[at + 8]
    if version in (0, 1):
        offsets, lengths, first = data[at + 13], data[at + 14], at + (24 if version == 0 else 28)
    elif version in (2, 3):
        offsets, lengths, first = data[at + 9], data[at + 10], at + 12
    else:
        raise DamagedFileError(f"{path} is damaged: its HDF5 superblock has version {version}, which does not exist")
    if offsets not in (2, 4, 8) or lengths not in (2, 4, 8):
        raise DamagedFileError(f"{path} is damaged: its HDF5 superblock gives {offsets}-byte addresses and "
                               f"{lengths}-byte sizes")
    eof_field = first + 2 * offsets
    if eof_field + offsets > size:
        raise DamagedFileError(f"{path} is cut short: it ends inside the HDF5 superblock ({size} bytes)")
    base = int.from_bytes(data[first:first + offsets], "little")
    eof = int.from_bytes(data[eof_field:eof_field + offsets], "little")
    undefined = (1 << (8 * offsets)) - 1
    if eof != undefined and base != undefined and base + eof > size:
        raise DamagedFileError(f"{path} is cut short: its HDF5 superblock says the file is {base + eof:,} bytes, "
                               f"it has {size:,}")
    return lengths


def _check_global_heaps(path: Path, data, lengths: int) -> None:
    """Replay HDF5's decoding loop over every global heap collection (signature "GCOL", version 1)."""
    header = 8 + lengths  # "GCOL", version, 3 reserved, collection size
    object_header = 8 + lengths  # index (2), reference count (2), reserved (4), object size
    at = data.find(_GCOL)
    while at >= 0:
        if at + header <= len(data) and data[at + 4] == 1:
            size = int.from_bytes(data[at + 8:at + header], "little")
            if at + size <= len(data):  # a collection past the end: HDF5 reports that one itself
                problem = _walk_collection(data, at, size, header, object_header, lengths)
                if problem:
                    raise DamagedFileError(f"{path} is damaged: the HDF5 global heap at byte {at:,} {problem} "
                                           "(HDF5 would loop forever reading it)")
        at = data.find(_GCOL, at + 1)


def _walk_collection(data, at: int, size: int, header: int, object_header: int, lengths: int) -> str | None:
    """None if HDF5's loop over this collection's objects ends exactly at its end, else what goes wrong."""
    end = at + size
    p = at + header
    while p < end:
        if p + object_header > end:  # too small for an object header: free space, the loop ends
            return None
        index = struct.unpack_from("<H", data, p)[0]
        object_size = int.from_bytes(data[p + 8:p + 8 + lengths], "little")
        need = object_header + (object_size + 7) // 8 * 8 if index > 0 else object_size
        if need == 0:
            return f"has a free-space object of size 0 at byte {p:,}"
        p += need
    if p != end:
        return f"has an object that runs {p - end:,} bytes past the collection's end"
    return None
