"""Quantized TFLite in process: the gate's metrics, and a pattern int8 used to break on."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _stem_and_block():
    """A ResNet stem (max pool with padding 1) whose output feeds a residual add."""
    from fixtures.torch_models import BasicBlock

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(3, 2, 1), BasicBlock(8, 8)).eval()


@pytest.mark.slow
def test_int8_max_pool_with_padding_then_a_residual_add(tmp_path):
    """Max pooling's padding used to be -inf: int8 calibration then gave the pooled tensor an infinite
    scale, and TFLite aborted the process preparing the add. Edge padding keeps the range finite."""
    import xlate
    from xlate.quant_parity import check_quantized
    from xlate.quantize import Quantization
    from xlate.save import save_keras

    module = _stem_and_block()
    keras_model = xlate.torch_to_keras(module, (torch.randn(2, 3, 16, 16),))
    calibration = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype("float32")
    q = Quantization("int8", [calibration], "random", int8_io=True)
    reports = []
    save_keras(keras_model, tmp_path / "q.tflite", quantization=q,
               verify=lambda tmp: reports.append(check_quantized(module, tmp, keras_model, q)))
    (report,) = reports
    assert report.passed and report.cosine > 0.99, report.to_dict()
    assert report.per_output[0].top1 is None  # a feature map, not a classifier's (batch, classes)
    assert {t["role"] for t in report.io} == {"input", "output"}


def test_cosine_and_top1_metrics():
    from xlate.quant_parity import _cosines, _top1

    a = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(_cosines(a, a), [1.0, 1.0])  # all zeros on both sides counts as equal
    np.testing.assert_allclose(_cosines(a, -a)[0], -1.0)
    assert _top1(a[:1], np.array([[0.0, 3.0, 1.0]])) == 0.0
    assert _top1(np.ones((2, 3, 4)), np.ones((2, 3, 4))) is None  # not (batch, classes)
