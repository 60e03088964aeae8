"""Zip containers (.keras, .pt2, TorchScript, torch.save, .npz): sizes, names and every member's CRC.

A zip carries a CRC-32 of each member, so reading every member once proves (up to the CRC's 1 in
4 billion) that the payload is byte for byte what the writer wrote. What is left to check is the
zip's own bookkeeping: offsets and sizes that fit in the file, uncompressed sizes a compression
method can reach, no duplicate names. After that the framework's loader reads the file its writer
wrote, and whatever it does with that (Keras reads an HDF5 file from inside a .keras) is safe.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from ..errors import DamagedFileError, one_line

_CHUNK = 1 << 20
# deflate cannot expand more than ~1032:1; the other methods zipfile reads are held to the same bound
_MAX_RATIO = 1100
_LOCAL_HEADER = 30


def check_zip(path, what: str) -> list[zipfile.ZipInfo]:
    """Every member's sizes and CRC, or ``DamagedFileError`` naming the first problem."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_directory(path, infos, size, what)
            for info in infos:
                _read_member(archive, info)
    except DamagedFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
            UnicodeDecodeError, OverflowError, RuntimeError) as e:
        cause = one_line(e, 200) or ("it ends before a member does" if isinstance(e, EOFError) else type(e).__name__)
        raise DamagedFileError(f"{path} is {what} whose zip data is damaged ({cause})") from None
    return infos


def _check_directory(path: Path, infos: list[zipfile.ZipInfo], size: int, what: str) -> None:
    seen = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise DamagedFileError(f"{path} is {what} with two members named {name!r} (a damaged zip directory)")
        seen.add(name)
        if info.header_offset + _LOCAL_HEADER + info.compress_size > size:
            raise DamagedFileError(f"{path} is {what} cut short or damaged: member {name!r} would end at byte "
                                   f"{info.header_offset + _LOCAL_HEADER + info.compress_size:,}, past the "
                                   f"file's {size:,} bytes")
        stored = info.compress_type == zipfile.ZIP_STORED
        if (stored and info.file_size != info.compress_size) or \
                info.file_size > _MAX_RATIO * info.compress_size + 1024:
            raise DamagedFileError(f"{path} is {what} with a damaged zip directory: member {name!r} claims "
                                   f"{info.file_size:,} bytes from {info.compress_size:,} stored bytes")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Read a member to its end: zipfile checks the local header's name and the CRC-32 there."""
    with archive.open(info) as member:
        while member.read(_CHUNK):
            pass

