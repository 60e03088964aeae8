"""Tensor indexing in a recorded run: ``x[index]`` as the select / slice / unsqueeze / index ATen
calls torch makes of it (torch runs ``Tensor.__getitem__`` in C++, so a recording sees none of
them). Basic indices (ints, int slices, None, Ellipsis), integer index tensors and lists of ints
are taken; the result is checked against torch's own indexing. Writes are fx_setitem.py's.
"""

from __future__ import annotations

import sys

from .fx_common import FastTraceUnsupported


def record_getitem(run, x, index):
    """Tensor indexing as the select / slice / unsqueeze / index ops torch applies."""
    import torch

    aten = torch.ops.aten
    expected = x[index]
    items = tuple(_list_index(run, it) for it in (index if isinstance(index, tuple) else (index,)))
    used = 0
    for it in items:
        if isinstance(it, bool) or not (it is None or it is Ellipsis or isinstance(it, (int, slice)) or (
                isinstance(it, torch.Tensor) and it.dim() > 0 and it.dtype in (torch.int64, torch.int32))):
            raise FastTraceUnsupported(f"indexing with {type(it).__name__} at {run.where()}")
        if isinstance(it, slice) and not all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                             for v in (it.start, it.stop, it.step)):
            raise FastTraceUnsupported(f"slicing with non-int bounds at {run.where()}")
        used += it is not None and it is not Ellipsis
    tensors = [it for it in items if isinstance(it, torch.Tensor)]
    if tensors and any(isinstance(it, int) for it in items):
        raise FastTraceUnsupported(f"indexing that mixes ints and index tensors at {run.where()}")
    cur, dim, advanced = x, 0, {}
    for it in items:
        if it is None:
            cur = run.apply(aten.unsqueeze.default, cur, dim)
            dim += 1
        elif it is Ellipsis:
            dim += x.dim() - used
        elif isinstance(it, int):
            cur = run.apply(aten.select.int, cur, dim, it)
        elif isinstance(it, slice):
            start, stop, step = it.start, it.stop, 1 if it.step is None else it.step
            if not (start in (None, 0) and stop is None and step == 1):
                cur = run.apply(aten.slice.Tensor, cur, dim, 0 if start is None else start,
                                  sys.maxsize if stop is None else stop, step)
            dim += 1
        else:
            advanced[dim] = it
            dim += 1
    if advanced:
        indices = [advanced.get(d) for d in range(max(advanced) + 1)]
        cur = run.apply(aten.index.Tensor, cur, indices)
    elif cur is x:  # x[:] and friends: torch returns a new view
        cur = run.apply(aten.alias.default, x)
    if cur.shape != expected.shape or cur.dtype != expected.dtype or not torch.equal(
            torch.nan_to_num(cur), torch.nan_to_num(expected)):
        raise FastTraceUnsupported(f"indexing {index!r} not reproduced at {run.where()}")
    return cur

def _list_index(run, it):
    """A list of ints in an index (HF Falcon's x[..., [-2]], timm CSATv2's channel picks) is the
    constant index tensor torch makes of it."""
    import torch

    flat = it
    while isinstance(flat, list) and flat and isinstance(flat[0], list):
        flat = [v for row in flat for v in row]
    if not isinstance(it, list) or not flat or not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return it
    return run._constant(torch.tensor(it, dtype=torch.int64))
