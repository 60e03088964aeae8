"""GPU and reduced-precision parity.

The GPU machine has PyTorch but no TensorFlow, so the Keras side's outputs are computed here on
the CPU (a real conversion by ``xlate.torch_to_keras``) and carried in
fixtures/gpu_reference.npz together with the torch weights and inputs; on the GPU the torch
module runs on CUDA (TF32 off) and is compared with them. ``test_carried_reference_is_what_keras_computes``
keeps the carried file honest (regenerate it with XLATE_WRITE_GPU_REFERENCE=1).
This module imports neither Keras nor TensorFlow at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xlate.parity import check_torch_against_reference

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "gpu_reference.npz"
SAMPLES = 4


def _cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()


def _reference():
    if not REFERENCE.is_file():
        pytest.fail(f"{REFERENCE} is missing: run this file with XLATE_WRITE_GPU_REFERENCE=1 where TensorFlow is")
    data = np.load(REFERENCE)
    module = _cnn()
    module.load_state_dict({k[len("w:"):]: torch.from_numpy(data[k]) for k in data.files if k.startswith("w:")})
    inputs = [[data[f"x{i}"]] for i in range(SAMPLES)]
    expected = [[data[f"y{i}"]] for i in range(SAMPLES)]
    return module, inputs, expected


def test_carried_reference_is_what_keras_computes():
    """Convert the reference CNN with xlate and run Keras on the CPU: the carried outputs must be
    exactly what it computes (rewrites the file with XLATE_WRITE_GPU_REFERENCE=1)."""
    pytest.importorskip("tensorflow")
    import keras

    import xlate

    write = os.environ.get("XLATE_WRITE_GPU_REFERENCE") == "1"
    if write:
        torch.manual_seed(0)
        module = _cnn()
        with torch.no_grad():  # non-trivial BN statistics
            module[1].running_mean.uniform_(-0.5, 0.5)
            module[1].running_var.uniform_(0.5, 2.0)
        rng = np.random.default_rng(0)
        inputs = [[rng.standard_normal((2, 3, 16, 16)).astype(np.float32)] for _ in range(SAMPLES)]
    else:
        module, inputs, _ = _reference()
    model = xlate.torch_to_keras(module, torch.from_numpy(inputs[0][0]))
    with keras.device("cpu:0"):
        outputs = [[np.asarray(model(x[0], training=False))] for x in inputs]
    if write:
        arrays = {f"w:{k}": v.numpy() for k, v in module.state_dict().items()}
        arrays.update({f"x{i}": x[0] for i, x in enumerate(inputs)})
        arrays.update({f"y{i}": y[0] for i, y in enumerate(outputs)})
        np.savez_compressed(REFERENCE, **arrays)
    _, _, expected = _reference()
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got[0], want[0], atol=1e-6, rtol=1e-6)


def test_torch_on_cpu_matches_the_carried_keras_reference():
    module, inputs, expected = _reference()
    report = check_torch_against_reference(module, inputs, expected, device="cpu")
    assert report.passed, str(report)
    assert report.max_abs_err < 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_on_cpu_uses_scaled_tolerances(dtype):
    module, inputs, expected = _reference()
    report = check_torch_against_reference(module, inputs, expected, device="cpu", dtype=dtype)
    eps = {"float16": 2.0**-10, "bfloat16": 2.0**-7}[dtype]
    assert report.atol == pytest.approx(16 * eps) and report.rtol == pytest.approx(16 * eps)
    assert report.dtype == dtype and dtype in report.message
    assert report.passed, str(report)
    assert report.max_abs_err > 1e-6  # it really ran in reduced precision
    assert next(module.parameters()).dtype == torch.float32  # and the module was put back


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_check_parity_reduced_precision_runs_both_sides_in_dtype(dtype):
    pytest.importorskip("tensorflow")
    from tests.test_diagnose import _pair
    from xlate.parity import check_parity

    module, model = _pair("torch2keras")
    report = check_parity(module, model, dtype=dtype, per_layer=True)
    assert report.passed, str(report)
    assert report.dtypes == {"torch": dtype, "keras": dtype}
    assert report.per_layer and all(r.passed for r in report.per_layer)
    assert model.weights[0].dtype == "float32" and next(module.parameters()).dtype == torch.float32


def test_unknown_dtype_is_bad_input():
    from xlate.errors import BadInputError

    module, inputs, expected = _reference()
    with pytest.raises(BadInputError, match="unknown dtype"):
        check_torch_against_reference(module, inputs, expected, dtype="float8")


@pytest.mark.gpu
def test_cuda_float32_matches_the_carried_keras_reference():
    module, inputs, expected = _reference()
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    report = check_torch_against_reference(module, inputs, expected, device="cuda")
    print(report.to_json())
    assert report.passed, str(report)
    assert report.devices["torch"].startswith("cuda:0 (")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    assert next(module.parameters()).device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_reduced_precision_matches_the_reference_within_scaled_tolerance(dtype):
    module, inputs, expected = _reference()
    report = check_torch_against_reference(module, inputs, expected, device="cuda", dtype=dtype)
    print(dtype, report.max_abs_err, report.max_rel_err, report.atol)
    assert report.passed, str(report)


@pytest.mark.gpu
def test_cuda_check_parity_against_keras():
    pytest.importorskip("tensorflow")
    from tests.test_diagnose import _pair
    from xlate.parity import check_parity

    module, model = _pair("torch2keras")
    report = check_parity(module, model, device="cuda", per_layer=True)
    assert report.passed, str(report)
    assert report.devices["torch"].startswith("cuda")
