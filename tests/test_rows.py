"""Per-row parity tests, generated from the mapping table in both directions.

Each case builds a row's sample as a real source model, converts it, and compares the real
outputs of both frameworks. It also asserts that the row itself drove the conversion, so the
table and the converters cannot drift apart.
"""

import pytest

import xlate
from xlate.record import record_of
from xlate.table import table

from .rowcases import cases, keras_case, torch_case

T2K = cases(table(), "torch2keras")
K2T = cases(table(), "keras2torch")


@pytest.mark.parametrize("row,sample", [c[:2] for c in T2K], ids=[c[2] for c in T2K])
def test_row_torch_to_keras(row, sample):
    module, inputs = torch_case(row, sample)
    model = xlate.torch_to_keras(module, inputs, check=False, via="direct")
    report = xlate.check_parity(module, model, atol=sample.tol or 1e-5)
    assert report.passed, str(report)
    used = record_of(model).rows_used
    # traced_as: the rows that convert what torch.export turns this row's op into ("-": nothing)
    for expected in [r for r in row.traced_as if r != "-"] if row.traced_as else [row.id]:
        assert expected in used, f"row {expected} did not drive the conversion of {row.id}: {used}"


@pytest.mark.parametrize("row,sample", [c[:2] for c in K2T], ids=[c[2] for c in K2T])
def test_row_keras_to_torch(row, sample):
    model, arrays = keras_case(row, sample)
    module = xlate.keras_to_torch(model, check=False, via="direct")
    # integer samples (ids, vocabularies) are checked on their own range too, not only on [0, 2)
    report = xlate.check_parity(model, module, atol=sample.tol or 1e-5)
    assert report.passed, str(report)
    if sample.int_high:
        report = xlate.check_parity(model, module, tuple(arrays), atol=sample.tol or 1e-5)
        assert report.passed, str(report)
    assert row.id in record_of(module).rows_used, f"row {row.id} did not drive the conversion: {record_of(module).rows_used}"
