"""Writes through views in a recorded run, as torch.export functionalizes them: ``x[index] =
value`` and an in-place op on a slice (``bias[n:2 * n].zero_()``).

torchvision's Swin builds its shifted-window mask by slice assignment (``mask[h0:h1, w0:w1] =
count``). torch runs ``Tensor.__setitem__`` in C++, so a recording sees none of it: the write is
recorded instead as the out-of-place ops it stands for, ``slice``/``select`` down to the written
region, ``fill``/``copy`` of the value there, then ``slice_scatter``/``select_scatter`` back up,
and ``x`` is renamed to the result (``x`` itself gets the values, so the module's code goes on
with them). Only basic indices (ints, int slices, Ellipsis) on a tensor that nothing else sees
(not an input, parameter or buffer, no other live view) are taken; the result is checked against
torch's own assignment on a copy.

An in-place op on a view that a recorded ``slice``/``select`` made (torchvision Swin V2 zeroes the
middle third of a cloned qkv bias) is recorded as the op on the view, then a scatter of the new
view into its base, up the chain of views, each base renamed to its scatter.
"""

from __future__ import annotations

import sys
import weakref

from .fx_common import FastTraceUnsupported
from .trace import aten_name

#: the view ops whose writes are scattered back (aten name -> the scatter that undoes the view)
VIEW_OPS = {"aten.slice.Tensor": "slice_scatter", "aten.select.int": "select_scatter"}


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
    _rename(run, x, new)
    # the slices taken on the way are views of x the module's code never sees: not live views
    del run.created[created:]


def _steps(run, x, index) -> list:
    """(the view op, its arguments from the dim in the tensor reached so far) per index item."""
    aten = run.torch.ops.aten
    items = index if isinstance(index, tuple) else (index,)
    for it in items:
        plain = it is Ellipsis or (isinstance(it, int) and not isinstance(it, bool)) or (
            isinstance(it, slice) and all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                          for v in (it.start, it.stop, it.step)))
        if not plain:
            raise FastTraceUnsupported(f"item assignment with {type(it).__name__} indices at {run.where()}")
    used = sum(it is not Ellipsis for it in items)
    steps, dim = [], 0
    for it in items:
        if it is Ellipsis:
            dim += x.dim() - used
        elif isinstance(it, int):
            steps.append((aten.select.int, (dim, it)))
        else:
            start, stop, step = it.start, it.stop, 1 if it.step is None else it.step
            if not (start in (None, 0) and stop is None and step == 1):
                steps.append((aten.slice.Tensor, (dim, 0 if start is None else start,
                                                  sys.maxsize if stop is None else stop, step)))
            dim += 1
    return steps


def _scatter(run, base, steps, value):
    """``base`` with ``value`` written where ``steps`` lead, out of place, every op recorded."""
    aten = run.torch.ops.aten
    if not steps:
        if isinstance(value, run.torch.Tensor):
            return run.apply(aten.copy.default, base, value)
        return run.apply(aten.fill.Scalar, base, value)
    (view_op, args), rest = steps[0], steps[1:]
    sub = run.apply(view_op, base, *args)
    return run.apply(_scatter_of(view_op), base, _scatter(run, sub, rest, value), *args)


def _scatter_of(view_op):
    """The scatter op that writes a view made by ``view_op`` back into its base."""
    import torch

    return getattr(torch.ops.aten, VIEW_OPS[aten_name(view_op)]).default


def _rename(run, tensor, new) -> None:
    """Later reads of ``tensor`` (written in place) record ``new``'s node."""
    run.refs[id(tensor)] = (run.refs[id(new)][0], weakref.ref(tensor))


def write_through_view(run, func, op, bound, args, kwargs, view):
    """Run and record an in-place ``op`` on ``view``, a recorded slice/select of a base (see the doc)."""
    chain, v = [], view
    while id(v) in run.views:
        ref, base, view_op, view_args = run.views[id(v)]
        if ref() is not v:
            break
        chain.append((v, base, view_op, view_args))
        v = base
    if not chain:
        raise FastTraceUnsupported(f"in-place {op._schema.name} on a view of unknown origin at {run.where()}")
    root = chain[-1][1]
    run.check_writable(root, f"in-place {op._schema.name} through a view", allow={id(c[0]) for c in chain})
    out = func(*args, **kwargs)  # torch writes the view, and so its bases
    run.record_call(op, bound, out)  # the view renamed to the op's result
    for v, base, view_op, view_args in chain:
        new = run.apply(_scatter_of(view_op), base, v, *view_args)
        if not run.torch.equal(run.torch.nan_to_num(new), run.torch.nan_to_num(base)):
            raise FastTraceUnsupported(f"in-place {op._schema.name} through a view not reproduced at {run.where()}")
        _rename(run, base, new)
    return out
