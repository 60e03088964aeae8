"""Per-row dynamic sizes, both directions: every row sample converted with its free sizes left
free, then checked by the parity gate at the example's shape and at smaller and larger sizes of
each one (xlate.parity_shapes), so a size taken from the example instead of the tensor at run
time fails.

Keras -> torch: every non-batch axis of the sample's inputs that the Keras model accepts as None
(it builds, and runs at other sizes) is declared None. torch -> Keras: the conversion's own
dynamic="auto" decides, and the record's dims are what the gate moves.
"""

import numpy as np
import pytest

import xlate
from xlate.parity_shapes import check_parity_shapes, other_sizes
from xlate.record import record_of
from xlate.table import table

from .rowcases import cases, keras_case, keras_inputs_shapes, torch_case

T2K = cases(table(), "torch2keras")
K2T = cases(table(), "keras2torch")


def _resized(arrays, members, size):
    out = list(arrays)
    for i, axis in members:
        a = out[i]
        out[i] = np.take(a, np.arange(size) % a.shape[axis], axis=axis)
    return out


def free_axes(row, sample) -> dict:
    """{input index: axes} the sample's Keras model takes as None and runs at other sizes; axes of
    the same size at the same position of several inputs are freed together (Add, Concatenate...)."""
    shapes = keras_inputs_shapes(row, sample)
    groups: dict = {}
    for i, s in enumerate(shapes):
        for axis in range(1, len(s)):
            groups.setdefault((axis, s[axis]), []).append((i, axis))
    free: dict = {}
    for k, ((_, size), members) in enumerate(groups.items()):
        trial = {i: set(free.get(i, ())) for i in range(len(shapes))}
        for i, axis in members:
            trial[i].add(axis)
        try:
            model, arrays = keras_case(row, sample, trial)
            ran = 0
            for other in other_sizes(size, 1, None, k):
                if other is None:
                    continue
                try:
                    x = _resized(arrays, members, other)
                    model(x[0] if len(x) == 1 else x)
                    ran += 1
                except Exception:  # noqa: BLE001, S110 - not a size this layer takes
                    pass
        except Exception:  # noqa: BLE001, S112 - the layer needs this size defined
            continue
        if ran:
            free = trial
    return {i: axes for i, axes in free.items() if axes}


@pytest.mark.parametrize("row,sample", [c[:2] for c in K2T], ids=[c[2] for c in K2T])
def test_row_keras_to_torch_keeps_free_sizes(row, sample):
    free = free_axes(row, sample)
    model, arrays = keras_case(row, sample, free)
    module = xlate.keras_to_torch(model, example_inputs=arrays, check=False, via="direct")
    report = check_parity_shapes(model, module, atol=sample.tol or 1e-5)
    assert report.passed, str(report)
    if free:
        assert "also checked at" in report.message, (free, report.message)


@pytest.mark.parametrize("row,sample", [c[:2] for c in T2K], ids=[c[2] for c in T2K])
def test_row_torch_to_keras_keeps_free_sizes(row, sample):
    module, inputs = torch_case(row, sample)
    model = xlate.torch_to_keras(module, inputs, check=False, via="direct")
    report = check_parity_shapes(module, model, atol=sample.tol or 1e-5)
    assert report.passed, str(report)
    dims = record_of(model).dims
    if any(d["dynamic"] for d in dims):
        assert "also checked at" in report.message, (dims, report.message)
    # a dynamic size is None in the Keras inputs, a static one is the example's
    for d in dims:
        keras_input = model.inputs[d["index"]]
        perm = record_of(model).io.input_perms[d["index"]] if record_of(model).io.input_perms else None
        axis = perm.index(d["axis"]) if perm else d["axis"]
        assert (keras_input.shape[axis] is None) == d["dynamic"], (d, keras_input.shape)
