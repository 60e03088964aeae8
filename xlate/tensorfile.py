"""Writing ``model.safetensors`` one tensor at a time.

The header (names, dtypes, shapes, offsets) is known from the tensors' metadata alone, so it is
written first and each tensor's bytes follow, straight from its own memory: a tensor that is not
contiguous is packed on its own and released after it is written. Nothing ever holds the whole
file, or a dict of copies of every tensor, in memory. The layout is the safetensors format
(https://github.com/huggingface/safetensors): an 8-byte little-endian header length, the JSON
header padded with spaces to 8 bytes, then the data; tensors are ordered by decreasing item size
and then by name, as safetensors orders them, so each one is aligned for a memory-mapped read.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

# torch dtype name -> safetensors dtype code
DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
          "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "uint16": "U16", "uint32": "U32",
          "uint64": "U64", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}


def _layout(specs: Iterable[tuple[str, tuple, str, int]]) -> tuple[list, dict]:
    """(names in write order, header) from (name, shape, torch dtype name, item size) per tensor."""
    specs = sorted(specs, key=lambda s: (-s[3], s[0]))
    header, offset = {}, 0
    for name, shape, dtype, itemsize in specs:
        if dtype not in DTYPES:
            raise ValueError(f"{name}: safetensors has no dtype {dtype}")
        size = itemsize
        for d in shape:
            size *= int(d)
        header[name] = {"dtype": DTYPES[dtype], "shape": [int(d) for d in shape], "data_offsets": [offset, offset + size]}
        offset += size
    return [s[0] for s in specs], header


def write_safetensors(path, specs: Iterable[tuple[str, tuple, str, int]], tensor: Callable[[str], object], *,
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file: ``specs`` gives (name, shape, torch dtype name, item size) of every
    tensor, ``tensor(name)`` returns that torch tensor when its turn comes (it may be made then and
    dropped after, so only one is ever in hand)."""
    order, header = _layout(specs)
    if metadata:
        header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}, **header}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(Path(path), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            begin, end = header[name]["data_offsets"]
            data = _bytes_of(tensor(name))
            if data.nbytes != end - begin:
                raise ValueError(f"{name}: {data.nbytes} bytes, the header says {end - begin}")
            f.write(data)
            del data


def _bytes_of(t):
    """A torch tensor's bytes as a NumPy uint8 view (a packed copy only when it is not contiguous)."""
    import torch

    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy()


def save_state_dict(state: Mapping[str, object], path, *, metadata: Mapping[str, str] | None = None) -> None:
    """A state dict of torch tensors (a module's own, not copies) as ``path``, tensor by tensor."""
    specs = [(k, tuple(t.shape), str(t.dtype).removeprefix("torch."), t.element_size()) for k, t in state.items()]
    write_safetensors(path, specs, state.__getitem__, metadata=metadata)
