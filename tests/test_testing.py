"""``xlate.testing.assert_parity``: passes on a faithful pair, fails with the readable report."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xlate.errors import BadInputError
from xlate.testing import assert_parity

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pair():
    """A torch MLP and a Keras model built by hand with the same weights (no converter involved)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Sigmoid(), torch.nn.Linear(6, 4)).eval()
    inp = keras.Input((8,))
    twin = keras.Model(inp, keras.layers.Dense(4)(keras.layers.Dense(6, activation="sigmoid")(inp)))
    for layer, lin in zip(twin.layers[1:], (net[0], net[2])):
        layer.set_weights([lin.weight.detach().numpy().T, lin.bias.detach().numpy()])
    return net, twin


def test_passes_and_returns_the_report(pair):
    net, twin = pair
    report = assert_parity(net, twin)
    assert report.passed and report.max_abs_err < 1e-5
    x = np.random.default_rng(3).standard_normal((5, 8)).astype("float32")
    assert assert_parity(twin, net, inputs=(x,)).per_output[0].shape == [5, 4]


def test_fails_with_the_readable_report_when_one_weight_differs(pair):
    net, twin = pair
    with torch.no_grad():
        net[2].bias[1] += 1e-3
    try:
        with pytest.raises(AssertionError) as e:
            assert_parity(net, twin, atol=1e-5, rtol=1e-4)
    finally:
        with torch.no_grad():
            net[2].bias[1] -= 1e-3
    text = str(e.value)
    assert "parity failed" in text and "FAIL" in text and "max abs err" in text and "output0" in text


def test_accepts_files(pair, tmp_path):
    net, twin = pair
    torch.export.save(torch.export.export(net, (torch.randn(2, 8),)), tmp_path / "net.pt2")
    twin.save(tmp_path / "twin.keras")
    np.savez(tmp_path / "in.npz", np.ones((2, 8), "float32"))
    assert assert_parity(tmp_path / "net.pt2", str(tmp_path / "twin.keras"), inputs=tmp_path / "in.npz").passed
    with pytest.raises(BadInputError, match="both PyTorch"):
        assert_parity(net, tmp_path / "net.pt2")
