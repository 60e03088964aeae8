"""``x[index] = value`` in a recorded run, as torch.export functionalizes it.

torchvision's Swin builds its shifted-window mask by slice assignment (``mask[h0:h1, w0:w1] =
count``). torch runs ``Tensor.__setitem__`` in C++, so a recording sees none of it: the write is
recorded instead as the out-of-place ops it stands for, ``slice``/``select`` down to the written
region, ``fill``/``copy`` of the value there, then ``slice_scatter``/``select_scatter`` back up,
and ``x`` is renamed to the result (``x`` itself gets the values, so the module's code goes on
with them). Only basic indices (ints, int slices, Ellipsis) on a tensor that nothing else sees
(not an input, parameter or buffer, no other live view) are taken; the result is checked against
torch's own assignment on a copy.
"""

from __future__ import annotations

import sys
import weakref

from .fx_common import FastTraceUnsupported


def record_setitem(run, x, index, value) -> None:
    """Record ``x[index] = value`` on ``run`` (an fx_record.Run) and perform it."""
    torch = run.torch
    if not isinstance(x, torch.Tensor):
        raise FastTraceUnsupported(f"item assignment to a {type(x).__name__} at {run.where()}")
    steps = _steps(run, x, index)
    run.check_writable(x, "item assignment")
    created = len(run.created)
    new = _scatter(run, x, steps, value)
    expected = x.clone()
    expected[index] = value
    if new.shape != expected.shape or new.dtype != expected.dtype or not torch.equal(
            torch.nan_to_num(new), torch.nan_to_num(expected)):
        raise FastTraceUnsupported(f"item assignment {index!r} not reproduced at {run.where()}")
    x.copy_(new)
    run.refs[id(x)] = (run.refs[id(new)][0], weakref.ref(x))
    # the slices taken on the way are views of x the module's code never sees: not live views
    del run.created[created:]


def _steps(run, x, index) -> list:
    """(dim in the tensor reached so far, "select" | "slice", arguments) per index item."""
    torch = run.torch
    items = index if isinstance(index, tuple) else (index,)
    for it in items:
        plain = it is Ellipsis or (isinstance(it, int) and not isinstance(it, bool)) or (
            isinstance(it, slice) and all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                          for v in (it.start, it.stop, it.step)))
        if not plain or isinstance(it, torch.Tensor):
            raise FastTraceUnsupported(f"item assignment with {type(it).__name__} indices at {run.where()}")
    used = sum(it is not Ellipsis for it in items)
    steps, dim = [], 0
    for it in items:
        if it is Ellipsis:
            dim += x.dim() - used
        elif isinstance(it, int):
            steps.append((dim, "select", (it,)))
        else:
            start, stop, step = it.start, it.stop, 1 if it.step is None else it.step
            if not (start in (None, 0) and stop is None and step == 1):
                steps.append((dim, "slice", (0 if start is None else start, sys.maxsize if stop is None else stop, step)))
            dim += 1
    return steps


def _scatter(run, base, steps, value):
    """``base`` with ``value`` written where ``steps`` lead, out of place, every op recorded."""
    aten = run.torch.ops.aten
    if not steps:
        if isinstance(value, run.torch.Tensor):
            return run.apply(aten.copy.default, base, value)
        return run.apply(aten.fill.Scalar, base, value)
    (dim, kind, args), rest = steps[0], steps[1:]
    if kind == "select":
        sub = run.apply(aten.select.int, base, dim, *args)
        return run.apply(aten.select_scatter.default, base, _scatter(run, sub, rest, value), dim, *args)
    sub = run.apply(aten.slice.Tensor, base, dim, *args)
    return run.apply(aten.slice_scatter.default, base, _scatter(run, sub, rest, value), dim, *args)
