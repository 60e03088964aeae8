"""Read every object of an HDF5 file with h5py, in a child process: ``python h5probe.py FILE MEMORY``.

Run by ``xlate.validate.hdf5`` through ``xlate.bound.run_probe``, which kills it when it runs out of
time. It limits its own address space to MEMORY bytes first, then visits every group and dataset,
reads every attribute (the variable-length strings come from the global heaps), checks each
dataset's size against the file's size and reads its data. It prints one JSON line: ``{"ok": true,
"objects": N}`` or ``{"error": "..."}``. Standalone on purpose: it imports h5py and numpy only.
"""

import json
import os
import resource
import sys

MAX_OBJECTS = 1_000_000
DEFLATE_RATIO = 1100  # filtered (compressed) data may hold up to this many times its stored size


class Damage(Exception):
    """A size or shape that cannot fit in the file: reported as it is, not as an HDF5 error."""


def _line(text):
    return " ".join(str(text).split())[:240]


def _attributes(obj, h5py, size):
    for name in obj.attrs:
        attr = obj.attrs.get_id(name)
        count = 1
        for d in attr.shape or ():
            count *= d
        if count * max(1, attr.dtype.itemsize) > size and not h5py.check_vlen_dtype(attr.dtype):
            raise Damage(f"attribute {name!r} of {obj.name} claims {count:,} values of {attr.dtype.itemsize} "
                             f"bytes, more than the file's {size:,} bytes")
        obj.attrs[name]


def _dataset(dset, h5py, size):
    count = 1
    for d in dset.shape or ():
        count *= d
    nbytes = count * dset.dtype.itemsize
    plist = dset.id.get_create_plist()
    filtered = plist.get_layout() == h5py.h5d.CHUNKED and plist.get_nfilters() > 0
    limit = DEFLATE_RATIO * size if filtered else size
    if nbytes > limit:
        raise Damage(f"dataset {dset.name} has shape {dset.shape} of {dset.dtype} ({nbytes:,} bytes), more "
                         f"than the file's {size:,} bytes can hold")
    offset = dset.id.get_offset()
    stored = dset.id.get_storage_size()
    if offset is not None and offset + stored > size:
        raise Damage(f"dataset {dset.name} is stored at bytes {offset:,}..{offset + stored:,}, past the "
                         f"file's end ({size:,} bytes): the file is cut short")
    dset[()]


def main(path, memory):
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    import h5py

    size = os.path.getsize(path)
    seen = [0]

    def visit(name, obj):
        seen[0] += 1
        if seen[0] > MAX_OBJECTS:
            raise Damage(f"more than {MAX_OBJECTS:,} objects")
        _attributes(obj, h5py, size)
        if isinstance(obj, h5py.Dataset):
            _dataset(obj, h5py, size)

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    return seen[0]


if __name__ == "__main__":
    try:
        objects = main(sys.argv[1], int(sys.argv[2]))
        print(json.dumps({"ok": True, "objects": objects}))
    except Damage as e:
        print(json.dumps({"error": _line(e)}))
    except MemoryError:
        print(json.dumps({"error": "reading it asks for more memory than the file's size can justify"}))
    except Exception as e:  # noqa: BLE001 - every failure is the verdict, on one line
        print(json.dumps({"error": f"HDF5 cannot read it ({type(e).__name__}: {_line(e)})"}))
