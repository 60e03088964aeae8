"""The parity core compares two real frameworks and can fail: wrong weights, wrong shapes, NaNs."""

import json

import keras
import numpy as np
import pytest
import torch
from torch import nn

import xlate
from xlate.errors import BadInputError
from xlate.parity import check_parity
from xlate.parity_report import compare_arrays


def twin_mlp(perturb: float = 0.0):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).eval()
    x = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh")(x)
    y = keras.layers.Dense(3)(h)
    model = keras.Model(x, y)
    model.layers[1].set_weights([module[0].weight.detach().numpy().T, module[0].bias.detach().numpy()])
    w2 = module[2].weight.detach().numpy().T.copy()
    w2[0, 0] += perturb
    model.layers[2].set_weights([w2, module[2].bias.detach().numpy()])
    return module, model


def test_a_faithful_pair_passes_with_the_json_fields():
    module, model = twin_mlp()
    report = xlate.check_parity(module, model)
    assert report.passed and report.max_abs_err < 1e-6 and report.samples == 4
    data = json.loads(report.to_json())
    for key in ("passed", "max_abs_err", "max_rel_err", "per_output", "tolerance", "device", "versions"):
        assert key in data
    assert data["tolerance"] == {"atol": 1e-5, "rtol": 1e-4, "floor_factor": 3.0}
    assert data["versions"]["torch"] == torch.__version__ and data["versions"]["keras"] == keras.__version__
    assert "PASS" in str(report) and "output0" in str(report)


def test_a_wrong_model_fails():
    module, model = twin_mlp(perturb=0.01)
    report = xlate.check_parity(module, model)
    assert not report.passed
    assert report.max_abs_err > 1e-3 and report.per_output[0].mismatched > 0
    assert "FAIL" in str(report)


def test_the_keras_model_can_be_the_source():
    module, model = twin_mlp(perturb=0.01)
    report = check_parity(model, module)
    assert not report.passed and report.source == "keras" and report.target == "torch"


def test_shape_mismatch_fails_with_a_note():
    out = compare_arrays("y", np.zeros((2, 3)), np.zeros((3, 2)), 1e-5, 1e-4)
    assert not out.passed and "shape" in out.note


def test_nan_on_one_side_fails_and_on_both_sides_matches():
    a = np.array([1.0, np.nan])
    assert not compare_arrays("y", a, np.array([1.0, 2.0]), 1e-5, 0).passed
    assert compare_arrays("y", a, a.copy(), 1e-5, 0).passed


def test_given_inputs_are_used_as_is():
    module, model = twin_mlp()
    x = np.ones((7, 6), np.float32)
    report = xlate.check_parity(module, model, inputs=x)
    assert report.passed and report.samples == 1 and report.per_output[0].shape == [7, 3]


def test_integer_inputs_stay_within_the_embedding():
    torch.manual_seed(0)
    module = nn.Embedding(10, 4).eval()
    x = keras.Input((5,), dtype="int32")
    layer = keras.layers.Embedding(10, 4)
    model = keras.Model(x, layer(x))
    layer.set_weights([module.weight.detach().numpy()])
    report = xlate.check_parity(module, model)  # would raise on an index >= 10
    assert report.passed


def test_train_mode_check_leaves_no_trace():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    model = xlate.torch_to_keras(module, (torch.randn(2, 3, 8, 8),), check=False)
    before_t = {k: v.clone() for k, v in module.state_dict().items()}
    before_k = [v.numpy().copy() for v in model.weights]
    report = xlate.check_parity(module, model, training=True)
    assert report.passed and report.training
    assert all(torch.equal(before_t[k], v) for k, v in module.state_dict().items())
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before_k, model.weights))


def test_two_models_of_one_framework_are_refused():
    module, _ = twin_mlp()
    with pytest.raises(BadInputError):
        xlate.check_parity(module, module)
