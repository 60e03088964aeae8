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


def test_fresh_package_error_runs_the_folder_without_xlate_and_sees_a_changed_weight(pair, tmp_path):
    from safetensors.torch import load_file, save_file

    from xlate.keras2torch.convert import keras_to_torch
    from xlate.record import record_of
    from xlate.save import save_torch_package
    from xlate.testing import fresh_package_error

    _, twin = pair
    module = keras_to_torch(twin)
    package = save_torch_package(module, tmp_path / "pkg")
    specs = record_of(module).io.inputs
    assert fresh_package_error(twin, package, specs) < 1e-5
    weights = package / "model.safetensors"
    state = load_file(weights)
    bias = next(k for k in state if k.endswith("bias"))
    state[bias] += 0.5
    save_file(state, weights)
    assert fresh_package_error(twin, package, specs) > 0.01
    (package / "model.py").write_text("raise ImportError('broken on purpose')\n")
    with pytest.raises(AssertionError, match="failed in a fresh process"):
        fresh_package_error(twin, package, specs)
