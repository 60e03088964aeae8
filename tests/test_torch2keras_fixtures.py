"""torch -> Keras on the coverage fixtures: exact parity in eval and train mode, a fit step,
the native layout, saving and reloading (also under the JAX backend), and clean failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import xlate
from fixtures import torch_models as tm
from xlate.errors import ParityError, UnsupportedOpError
from xlate.record import record_of

ROOT = Path(__file__).resolve().parents[1]
FAST = sorted(tm.FIXTURES)
SLOW = sorted(tm.HF_FIXTURES)
ALL = [pytest.param(n, id=n) for n in FAST] + [pytest.param(n, id=n, marks=pytest.mark.slow) for n in SLOW]
TOL = 1e-5


def build(name):
    module, example = {**tm.FIXTURES, **tm.HF_FIXTURES}[name]()
    return module.eval(), example


def without_randomness(module: nn.Module) -> nn.Module:
    """Dropout probabilities set to 0 (modules and Hugging Face attention), so train mode is
    deterministic and comparable."""
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
        for attr in ("dropout", "attention_dropout", "dropout_prob"):
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, 0.0)
    config = getattr(module, "config", None)
    if config is not None:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop",
                    "attn_pdrop", "drop_path_rate"):
            if hasattr(config, key):
                setattr(config, key, 0.0)
    return module


@pytest.mark.parametrize("name", ALL)
def test_fixture_converts_with_exact_parity(name):
    module, example = build(name)
    model = xlate.torch_to_keras(module, example, via="direct")  # the gate raises ParityError on failure
    report = xlate.check_parity(module, model, samples=4, seed=0)
    assert report.passed and report.max_abs_err <= TOL, str(report)
    assert report.samples == 4 and not report.training
    assert record_of(model).path == "direct"


@pytest.mark.parametrize("name", ALL)
def test_fixture_train_mode_parity_and_fit_step(name):
    module, example = build(name)
    module = without_randomness(module).train()
    model = xlate.torch_to_keras(module, example, via="direct", check=False)
    report = xlate.check_parity(module, model, samples=4, seed=1, training=True)
    assert report.passed and report.max_abs_err <= TOL, str(report)
    assert report.training

    # the converted model is a native Keras model: it trains with fit()
    inputs = [np.asarray(t) for t in example]
    targets = [np.zeros_like(np.asarray(o)) for o in _outputs(model, inputs)]
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(inputs[0] if len(inputs) == 1 else inputs, targets[0] if len(targets) == 1 else targets,
                        epochs=1, batch_size=len(inputs[0]), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = sum(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    assert changed > 0


def _outputs(model, inputs):
    out = model(inputs[0] if len(inputs) == 1 else inputs)
    return out if isinstance(out, (list, tuple)) else [out]


def test_native_layout_takes_and_returns_channels_last():
    module, example = build("conv_autoencoder")
    model = xlate.torch_to_keras(module, example, io_layout="native")
    # batch, height and width stay dynamic (a fully convolutional model)
    assert tuple(model.inputs[0].shape) == (None, None, None, 3)
    assert tuple(model.outputs[0].shape) == (None, None, None, 3)
    for shape in ((2, 3, 32, 32), (1, 3, 48, 40)):
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        expected = module(torch.from_numpy(x)).detach().numpy()
        actual = np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(actual, expected, atol=TOL, rtol=0)


def test_source_layout_uses_one_transpose_at_each_boundary():
    module, example = build("resnet_basic")
    model = xlate.torch_to_keras(module, example)
    transposes = [op for op in model.operations if type(op).__name__ == "Transpose"]
    assert len(transposes) == 1, [op.name for op in transposes]  # the NCHW input; the output is (N, C)


def test_flatten_after_conv_permutes_the_dense_weight_not_the_activations():
    module, example = build("lenet")
    model = xlate.torch_to_keras(module, example, io_layout="native")
    assert not [op for op in model.operations if type(op).__name__ == "Transpose"]
    fc1 = model.get_layer("fc1").kernel.numpy()
    # Keras flattens (H, W, C); torch's columns are (C, H, W)
    w = module.fc1.weight.detach().numpy().reshape(120, 16, 5, 5).transpose(0, 2, 3, 1).reshape(120, -1).T
    np.testing.assert_array_equal(fc1, w)


def test_layers_are_named_after_torch_modules_and_hold_the_weights():
    module, example = build("resnet_basic")
    model = xlate.torch_to_keras(module, example)
    conv = model.get_layer("layer2_0_conv1")
    np.testing.assert_array_equal(conv.kernel.numpy(),
                                  module.layer2[0].conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    bn = model.get_layer("layer2_0_bn1")
    assert bn.epsilon == module.layer2[0].bn1.eps and abs(bn.momentum - 0.9) < 1e-12


class TwoUnsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.ReLU(), nn.Bilinear(4, 4, 4))

    def forward(self, x):
        y = self.conv(x)
        y = self.block[1](self.block[0](y), y)
        return torch.fft.rfft(y, dim=-1).abs()


def test_unsupported_model_lists_every_unmapped_op_at_once():
    with pytest.raises(UnsupportedOpError) as info:
        xlate.torch_to_keras(TwoUnsupported().eval(), (torch.randn(1, 3, 4, 4),), via="direct")
    ops = {op for op, _ in info.value.unsupported}
    assert {"aten.bilinear.default", "aten.fft_rfft.default"} <= ops, ops
    assert ("aten.bilinear.default", "block.1") in info.value.unsupported
    assert "bilinear" in str(info.value) and "fft_rfft" in str(info.value)


def test_failed_parity_gate_raises_with_the_report():
    module, example = build("lenet")
    with pytest.raises(ParityError) as info:
        # float32 rounding differs by ~1e-8; floor_factor=None: atol/rtol alone (the rounding floor would pass it)
        xlate.torch_to_keras(module, example, atol=0.0, rtol=0.0, floor_factor=None)
    report = info.value.report
    assert not report.passed and report.max_abs_err > 0
    assert "FAIL" in str(report)


@pytest.mark.parametrize("name", ["lenet", "resnet_basic", pytest.param("hf_bert", marks=pytest.mark.slow)])
def test_saved_keras_reloads_and_matches_under_jax(name, tmp_path):
    module, example = build(name)
    model = xlate.torch_to_keras(module, example)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    x = [np.asarray(t) for t in example]
    expected = [o.detach().numpy() for o in _torch_outputs(module, example)]
    np.savez(tmp_path / "io.npz", *x)
    np.savez(tmp_path / "expected.npz", *expected)
    script = f"""
import json, numpy as np, keras
import xlate.keras_layers  # registers xlate's custom layers
assert keras.backend.backend() == "jax"
model = keras.saving.load_model({str(path)!r})
x = list(np.load({str(tmp_path / 'io.npz')!r}).values())
out = model(x[0] if len(x) == 1 else x)
out = out if isinstance(out, (list, tuple)) else [out]
expected = list(np.load({str(tmp_path / 'expected.npz')!r}).values())
print(json.dumps([float(np.abs(np.asarray(o) - e).max()) for o, e in zip(out, expected)]))
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    errors = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(errors) == len(expected) and max(errors) <= TOL, errors


def _torch_outputs(module, example):
    with torch.no_grad():
        out = module(*example)
    from xlate.frameworks import flatten_outputs

    return [o for o in flatten_outputs(out) if isinstance(o, torch.Tensor)]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_conversion_runs_on_other_keras_backends(backend):
    """The converted model is built from keras.layers/keras.ops only: PyTorch -> JAX for free."""
    script = """
import sys, torch, keras, xlate
sys.path.insert(0, ".")
from fixtures import torch_models as tm
for name in ("lenet", "text_gru", "transformer_encoder"):
    module, example = getattr(tm, name)()
    model = xlate.torch_to_keras(module.eval(), example)  # raises ParityError unless exact
    report = xlate.check_parity(module, model)
    assert report.passed and report.max_abs_err <= 1e-5, (name, str(report))
    print(name, keras.backend.backend(), report.max_abs_err)
"""
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900,
                         cwd=ROOT, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count(f" {backend} ") == 3, run.stdout


def test_savedmodel_and_tflite_exports_match_torch(tmp_path):
    import tensorflow as tf

    from xlate.save import save_keras

    module, example = build("lenet")
    model = xlate.torch_to_keras(module, example)
    x = np.random.default_rng(3).standard_normal((2, 1, 28, 28)).astype("float32")
    expected = module(torch.from_numpy(x)).detach().numpy()

    saved = save_keras(model, tmp_path / "lenet_savedmodel")
    loaded = tf.saved_model.load(str(saved))
    np.testing.assert_allclose(loaded.serve(tf.constant(x)).numpy(), expected, atol=TOL, rtol=0)

    lite = save_keras(model, tmp_path / "lenet.tflite")
    interpreter = tf.lite.Interpreter(model_path=str(lite))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_record_pairs_every_trainable_parameter_with_its_exact_transform(name):
    """Every trainable torch parameter is a trainable Keras variable (nothing frozen into a
    constant), recorded with its exact transform: optimizer state ports through these pairs
    (xlate.training.pairing), flatten -> Linear included."""
    from xlate.training.pairing import pair_parameters
    from xlate.transforms import get_transform

    module, example = build(name)
    model = xlate.torch_to_keras(module, example)
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    variables = {v.path: v for v in model.weights}
    for w in record_of(model).weights:
        torch_arrays = [(params.get(t) if t in params else buffers[t]).detach().numpy() for t in w.torch]
        for path, expected in zip(w.keras, get_transform(w.transform).to_keras(*torch_arrays, **w.params)):
            np.testing.assert_array_equal(variables[path].numpy(), expected)
    pairs = pair_parameters(module, model)  # raises unless every trainable parameter is paired
    assert {n for p in pairs for n in p.torch} == {n for n, p in module.named_parameters() if p.requires_grad}
    trainable = {v.path for v in model.trainable_variables}
    assert all(k in trainable for p in pairs for k in p.keras)
