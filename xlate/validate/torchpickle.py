"""PyTorch's legacy (pre-1.6, non-zip) ``torch.save`` format: a pickle walk that runs no code.

The file is five pickles (magic number, protocol version, system info, the object, the storage
keys), then each storage as an element count and raw bytes. torch allocates each storage at the
size the object's pickle records *before* it reads the bytes, so a damaged count means an
allocation of any size. ``check_legacy_pickle`` unpickles with placeholders for every global
(nothing is imported or called), collects the storages the object refers to, and checks each
count against the file's remaining bytes and the count stored beside the data.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

from ..errors import DamagedFileError, one_line
from .zips import check_zip

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_ELEMENT_SIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
                 "Byte": 1, "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QInt8": 1, "QUInt8": 1, "QInt32": 4,
                 "QUInt4x2": 1, "QUInt2x4": 1, "Untyped": 1}


def _accept(*args, **kwargs):
    """__setstate__, __setitem__, append, extend: on placeholder classes and their instances alike."""


class _PlaceholderType(type):
    """Calling a placeholder (what REDUCE does) gives another placeholder class: a pickle may go on
    to use the result as a class (NEWOBJ), a container (SETITEMS, APPENDS) or an object (BUILD)."""

    def __call__(cls, *args, **kwargs):
        return _placeholder(f"{cls.global_name}()")

    __setitem__ = _accept


def _placeholder(global_name: str) -> type:
    """A stand-in for a global the pickle names: accepts every use, imports and runs nothing."""
    return _PlaceholderType(global_name.rsplit(".", 1)[-1], (), {
        "global_name": global_name, "__setstate__": _accept, "__setitem__": _accept, "append": _accept,
        "extend": _accept, "__call__": lambda *a, **k: _placeholder(f"{global_name}()")})


class _Walker(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, tuple[str, int]] = {}

    def find_class(self, module, name):
        return _placeholder(f"{module}.{name}")

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            _, storage_type, key, _location, numel = pid[:5]
            self.storages[str(key)] = (getattr(storage_type, "global_name", repr(storage_type)), numel)
        return _placeholder("storage")


class _Capped:
    """A file that never hands the unpickler more than what is left of it (no giant reads)."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.f.tell()
        return self.f.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self.f.readline(max(0, self.size - self.f.tell()))


def check_torch_file(path, what: str = "a PyTorch file") -> None:
    """A ``torch.save``/``torch.jit.save``/``torch.export.save`` file: a zip, or the legacy pickle format."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        check_zip(path, what)
    else:
        check_legacy_pickle(path)


def check_legacy_pickle(path) -> None:
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as raw:
        f = _Capped(raw, size)
        try:
            magic, protocol = pickle.Unpickler(f).load(), pickle.Unpickler(f).load()
            if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION:
                raise DamagedFileError(f"{path} is damaged: it starts like a legacy torch.save file but its magic "
                                       "number or protocol version is wrong")
            _Walker(f).load()  # system info
            walker = _Walker(f)
            walker.load()
            keys = _Walker(f).load()
        except DamagedFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                struct.error, MemoryError, OverflowError, RecursionError, UnicodeDecodeError) as e:
            raise DamagedFileError(f"{path} is damaged or cut short: its pickle cannot be read "
                                   f"({type(e).__name__}: {one_line(e, 160)})") from None
        if not isinstance(keys, list):
            raise DamagedFileError(f"{path} is damaged: its list of storages is a {type(keys).__name__}")
        _check_storages(path, raw, size, walker.storages, keys)


def _check_storages(path: Path, f, size: int, storages: dict, keys: list) -> None:
    for key in keys:
        entry = storages.get(str(key))
        if entry is None:
            raise DamagedFileError(f"{path} is damaged: storage {key!r} is listed but nothing refers to it")
        type_name, numel = entry
        kind = type_name.rsplit(".", 1)[-1].removesuffix("Storage")
        if kind not in _ELEMENT_SIZE or not isinstance(numel, int) or numel < 0:
            raise DamagedFileError(f"{path} is damaged: storage {key!r} has type {type_name} and {numel!r} elements")
        head = f.read(8)
        if len(head) < 8:
            raise DamagedFileError(f"{path} is cut short: it ends before storage {key!r}")
        (stored,) = struct.unpack("<q", head)
        nbytes = numel * _ELEMENT_SIZE[kind]
        if stored != numel or nbytes > size - f.tell():
            raise DamagedFileError(f"{path} is damaged or cut short: storage {key!r} claims {numel:,} elements "
                                   f"({nbytes:,} bytes; {stored:,} beside the data), {size - f.tell():,} bytes "
                                   "are left in the file")
        f.seek(nbytes, 1)
