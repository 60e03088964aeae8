"""Keras -> PyTorch direct path: fixtures, generated code, layouts, training, errors.

Every parity claim compares the generated torch module with the real Keras model's output. The
fixture tests load the generated ``model.py`` + ``model.safetensors`` in a fresh Python process
that cannot import xlate, so they test what a user gets on disk, not the in-memory object.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import xlate
from fixtures.keras_models import APPLICATIONS, FIXTURES
from xlate.errors import BadInputError, UnsupportedOpError
from xlate.frameworks import flatten_outputs
from xlate.keras2torch.convert import keras_to_torch
from xlate.parity_inputs import make_inputs
from xlate.record import record_of
from xlate.save import save_torch_package
from xlate.testing import fresh_package_error

FAST = ["mlp", "cnn_bn", "text", "transformer_block", "unet"]
SLOW = [name.lower() for name in APPLICATIONS]
RUFF = Path(sys.executable).with_name("ruff")


def fresh_process_error(model, module, outdir: Path) -> float:
    """Max abs error between Keras and the saved package run in a new process without xlate."""
    save_torch_package(module, outdir)
    return fresh_package_error(model, outdir, record_of(module).io.inputs)


def ruff_check(source: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "generated_model.py"
    path.write_text(source)
    return subprocess.run([str(RUFF), "check", "--isolated", "--no-cache", str(path)], check=False,
                          capture_output=True, text=True)


def one_training_step(module, model) -> None:
    """One optimizer step on the generated module: runs, the loss is finite, parameters move."""
    specs = record_of(module).io.inputs
    arrays = make_inputs(specs, samples=1, seed=3)[0]
    module.train()
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    out = module(*[torch.from_numpy(a) for a in arrays])
    loss = sum((o.float() ** 2).mean() for o in flatten_outputs(out))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    moved = [k for k, v in module.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert moved, "no parameter changed"
    module.eval()


def _check_fixture(name, tmp_path):
    model = FIXTURES[name]()
    module = keras_to_torch(model)
    err = fresh_process_error(model, module, tmp_path / "pkg")
    assert err <= 1e-5, f"{name}: max abs error {err:.3g} in a fresh process"
    lint = ruff_check(module._xlate_source, tmp_path)
    assert lint.returncode == 0, lint.stdout
    one_training_step(module, model)


@pytest.mark.parametrize("name", FAST)
def test_fixture_fresh_process_parity_ruff_and_training(name, tmp_path):
    _check_fixture(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_application_fresh_process_parity_ruff_and_training(name, tmp_path):
    _check_fixture(name, tmp_path)


# --- what the generated code looks like ----------------------------------------------------------


def test_generated_code_reads_like_hand_written_torch():
    module = keras_to_torch(FIXTURES["cnn_bn"]())
    src = module._xlate_source
    assert not re.search(r"^\s*(import|from)\s+xlate", src, re.MULTILINE)  # standard torch only
    assert "self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)" in src
    assert "self.bn1 = nn.BatchNorm2d(16, eps=0.001, momentum=0.01)" in src
    assert "x = F.pad(x, (0, 1, 0, 1))  # Keras 'same': the extra pixel goes at the end" in src
    assert "x = x.permute(0, 3, 1, 2)" in src  # once, at the input, not around every conv
    assert src.count(".permute(") == 1
    assert "class Net(nn.Module):" in src


def test_merges_are_plain_torch_calls():
    src = keras_to_torch(FIXTURES["unet"]())._xlate_source
    assert "torch.cat([" in src and "dim=1)" in src
    src = keras_to_torch(FIXTURES["transformer_block"]())._xlate_source
    assert "F.scaled_dot_product_attention(" in src
    # attention_mask can leave a query with nothing to attend to: Keras then averages the values
    assert ".mean(-2, keepdim=True))  # Keras: a query with nothing to attend to averages every value" in src
    x = keras.Input((5, 8))
    model = keras.Model(x, keras.layers.MultiHeadAttention(2, key_dim=4, name="mha")(x, x, use_causal_mask=True))
    module = _parity(model)
    assert "nn.MultiheadAttention(8, 2, batch_first=True)" in module._xlate_source


def test_record_io_rows_and_layers():
    model = FIXTURES["cnn_bn"]()
    module = keras_to_torch(model)
    record = record_of(module)
    assert record.direction == "keras2torch" and record.path == "direct"
    assert record.io.source == "keras" and record.io.input_perms == (None,)
    for row in ("conv2d", "batch_norm", "depthwise_conv2d", "separable_conv2d", "flatten", "linear", "rescaling"):
        assert record.rows_used[row] >= 1, row
    names = dict(module.named_modules())
    assert record.layers and all(layer.target in names for layer in record.layers)
    conv1 = next(layer for layer in record.layers if layer.source == "conv1")
    assert conv1.target == "conv1" and conv1.output_perm == (0, 2, 3, 1)


# --- layouts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn_bn", "unet"])
def test_native_layout_takes_and_returns_nchw(name):
    model = FIXTURES[name]()
    module = keras_to_torch(model, io_layout="native")
    io = record_of(module).io
    assert io.input_perms == ((0, 3, 1, 2),)
    assert "x = x.permute" not in module._xlate_source
    report = xlate.check_parity(model, module, samples=2)
    assert report.passed, str(report)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    out = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
    expected = keras.ops.convert_to_numpy(model(x))
    if expected.ndim == 4:
        out = out.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_flatten_after_conv_permutes_linear_columns_not_activations():
    layers = keras.layers
    inp = keras.Input((6, 5, 3))
    x = layers.Conv2D(4, 3, name="conv")(inp)
    x = layers.Flatten(name="flat")(x)
    out = layers.Dense(7, name="fc")(x)
    model = keras.Model(inp, out)
    module = keras_to_torch(model)
    src = module._xlate_source
    assert "x = x.flatten(1)" in src and src.count(".permute(") == 1
    assert xlate.check_parity(model, module).passed


def test_flatten_read_by_two_layers_keeps_keras_order():
    layers = keras.layers
    inp = keras.Input((6, 6, 2))
    x = layers.Conv2D(3, 3, name="conv")(inp)
    flat = layers.Flatten(name="flat")(x)
    model = keras.Model(inp, [layers.Dense(4, name="fc")(flat), flat])
    module = keras_to_torch(model)
    assert xlate.check_parity(model, module).passed


# --- layer semantics beyond the table samples -----------------------------------------------------


def _parity(model, **kwargs):
    module = keras_to_torch(model, **kwargs)
    report = xlate.check_parity(model, module, samples=2)
    assert report.passed, f"{report}\n{module._xlate_source}"
    return module


def _seq(shape, *layers_, dtype="float32"):
    keras.utils.set_random_seed(0)
    inp = keras.Input(shape, dtype=dtype)
    x = inp
    for layer in layers_:
        x = layer(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize("kernel,strides,padding,size", [
    (3, 2, "same", 8), (3, 2, "same", 7), (4, 2, "same", 5), (2, 3, "valid", 4), (5, 3, "same", 6),
    (3, 1, "valid", 5), (1, 2, "valid", 4),
])
def test_conv2d_transpose_crops(kernel, strides, padding, size):
    _parity(_seq((size, size, 3), keras.layers.Conv2DTranspose(4, kernel, strides=strides, padding=padding)))


def test_conv2d_transpose_output_padding():
    _parity(_seq((5, 5, 3), keras.layers.Conv2DTranspose(2, 3, strides=2, padding="valid", output_padding=1)))


@pytest.mark.parametrize("size", [7, 8, 9])
@pytest.mark.parametrize("layer", ["max", "avg"])
def test_pooling_same_asymmetric(layer, size):
    cls = keras.layers.MaxPooling2D if layer == "max" else keras.layers.AveragePooling2D
    _parity(_seq((size, size, 3), cls(3, strides=2, padding="same")))
    _parity(_seq((size, size, 3), cls(2, strides=2, padding="same")))


@pytest.mark.parametrize("kernel,strides,dilation,size", [(3, 2, 1, 8), (4, 2, 1, 9), (3, 1, 2, 7), (2, 1, 1, 5)])
def test_conv2d_same_padding(kernel, strides, dilation, size):
    _parity(_seq((size, size, 2), keras.layers.Conv2D(3, kernel, strides=strides, dilation_rate=dilation,
                                                      padding="same")))


def test_conv1d_causal_dilated_and_separable1d():
    _parity(_seq((11, 3), keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2),
                 keras.layers.Conv1D(2, 2, strides=2, padding="same")))


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("sequences", [True, False])
@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_bidirectional_merge_modes(cls, sequences, mode):
    inner = getattr(keras.layers, cls)(4, return_sequences=sequences)
    _parity(_seq((6, 5), keras.layers.Bidirectional(inner, merge_mode=mode)))


def test_rnn_variants_state_backwards_and_initial_state():
    layers = keras.layers
    keras.utils.set_random_seed(0)
    x = keras.Input((7, 5))
    h0, c0 = keras.Input((3,)), keras.Input((3,))
    seq, h, c = layers.LSTM(3, return_sequences=True, return_state=True, name="lstm")(x, initial_state=[h0, c0])
    back = layers.GRU(3, go_backwards=True, return_sequences=True, name="gru")(seq)
    last = layers.SimpleRNN(4, activation="relu", name="rnn")(back)
    model = keras.Model([x, h0, c0], [last, h, c])
    _parity(model)


def test_stateful_rnn_is_refused_with_the_reason():
    inp = keras.Input(batch_shape=(2, 6, 5))
    model = keras.Model(inp, keras.layers.LSTM(3, stateful=True, name="stateful_lstm")(inp))
    with pytest.raises(UnsupportedOpError, match="stateful=True.*stateful_lstm"):
        keras_to_torch(model)


def test_batch_norm_training_mode_and_running_statistics():
    layers = keras.layers
    keras.utils.set_random_seed(0)
    model = _seq((5, 5, 4), layers.BatchNormalization(momentum=0.8, epsilon=1e-4, name="bn"))
    module = keras_to_torch(model)
    x = np.random.default_rng(0).standard_normal((6, 5, 5, 4)).astype("float32")
    module.train()
    out_t = module(torch.from_numpy(x)).detach().numpy()
    out_k = keras.ops.convert_to_numpy(model(x, training=True))
    np.testing.assert_allclose(out_t, out_k, atol=1e-5)
    moving = model.get_layer("bn").moving_mean.numpy()
    np.testing.assert_allclose(module.bn.running_mean.numpy(), moving, atol=1e-6)  # momentum 1 - 0.8


def test_normalization_center_without_scale_freezes_the_missing_weight():
    model = _seq((4, 6), keras.layers.LayerNormalization(scale=False, epsilon=1e-5, name="ln"))
    module = _parity(model)
    assert not module.ln.weight.requires_grad and module.ln.bias.requires_grad


def test_mha_general_projection_masks_and_causal():
    layers = keras.layers
    keras.utils.set_random_seed(0)
    q = keras.Input((5, 8))
    kv = keras.Input((7, 6))
    mask = keras.Input((5, 7), dtype="bool")
    out = layers.MultiHeadAttention(3, key_dim=4, value_dim=2, output_shape=5, name="mha")(q, kv,
                                                                                            attention_mask=mask)
    model = keras.Model([q, kv, mask], out)
    _parity(model)
    x = keras.Input((6, 8))
    out = layers.MultiHeadAttention(2, key_dim=4, use_bias=False, name="mha2")(x, x, use_causal_mask=True)
    _parity(keras.Model(x, out))
    out = layers.MultiHeadAttention(2, key_dim=4, name="mha3")(x, x, use_causal_mask=True)
    _parity(keras.Model(x, out))


def test_prelu_per_element_and_relu_variants():
    _parity(_seq((4, 5), keras.layers.PReLU(alpha_initializer="random_normal")))
    _parity(_seq((4, 4, 3), keras.layers.PReLU(alpha_initializer="random_normal", shared_axes=[1, 2])))
    _parity(_seq((9,), keras.layers.ReLU(max_value=2.5, negative_slope=0.1, threshold=0.3)))
    _parity(_seq((9,), keras.layers.Activation("leaky_relu")))


def test_nested_shared_and_dict_outputs():
    layers = keras.layers
    keras.utils.set_random_seed(0)
    tower = keras.Sequential([keras.Input((6,)), layers.Dense(5, activation="tanh", name="t1"),
                              layers.Dense(4, name="t2")], name="tower")
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    shared = layers.Dense(6, name="shared")
    za, zb = tower(shared(a)), tower(shared(b))
    model = keras.Model({"a": a, "b": b}, {"left": za, "sum": layers.Add(name="plus")([za, zb])})
    module = keras_to_torch(model)
    src = module._xlate_source
    assert src.count("nn.Linear(6, 6)") == 1 and src.count("nn.Linear(6, 5)") == 1  # shared: declared once
    assert "return {" in src
    arrays = [np.random.default_rng(0).standard_normal((3, 6)).astype("float32") for _ in range(2)]
    expected = model({"a": arrays[0], "b": arrays[1]})
    got = module(*[torch.from_numpy(x) for x in arrays])
    for key in ("left", "sum"):
        np.testing.assert_allclose(got[key].detach().numpy(), keras.ops.convert_to_numpy(expected[key]), atol=1e-6)


def test_raw_keras_ops_inside_the_graph():
    keras.utils.set_random_seed(0)
    ops = keras.ops
    x = keras.Input((4, 4, 3))
    y = keras.layers.Conv2D(6, 1, name="conv")(x)
    z = ops.add(y, 1.0) * ops.sigmoid(y)
    z = ops.concatenate([z, ops.mean(y, axis=-1, keepdims=True)], axis=-1)
    z = ops.max(z, axis=(1, 2))
    _parity(keras.Model(x, z))


# --- errors --------------------------------------------------------------------------------------


def _local_subclassed():
    """A subclassed model defined in a function: its class cannot be imported, so the traced route
    (which loads the model in a torch-backend process) cannot capture it."""

    class LocalSubclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x) * 2.0

    model = LocalSubclassed()
    model(np.zeros((1, 4), "float32"))
    return model


def _local_layer(name):
    class LocalLayer(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    return LocalLayer(name=name)


def test_subclassed_model_that_cannot_be_imported_is_refused_with_a_clear_error():
    model = _local_subclassed()
    with pytest.raises(UnsupportedOpError, match="LocalSubclassed.*not importable") as e:
        keras_to_torch(model)
    assert "module level" in (e.value.hint or "")
    with pytest.raises(UnsupportedOpError):
        xlate.keras_to_torch(model, via="direct")


def test_every_unsupported_layer_is_listed_at_once():
    layers = keras.layers
    inp = keras.Input((6, 5))
    x = _local_layer("local_a")(inp)
    x = layers.Dense(4, name="fc")(x)
    x = _local_layer("local_b")(x)
    model = keras.Model(inp, x)
    with pytest.raises(UnsupportedOpError, match="not importable") as e:
        keras_to_torch(model)
    where = [w for _, w in e.value.unsupported]
    assert where == ["local_a", "local_b"], e.value.unsupported


def test_coverage_reports_the_route_of_every_layer():
    from xlate.keras2torch.inspect import coverage

    inp = keras.Input((6, 5))
    x = keras.layers.GRU(3, reset_after=False, return_sequences=True, name="old_gru")(inp)
    x = _local_layer("local")(x)
    x = keras.layers.Dense(2, name="fc")(x)
    items = {i.name: i for i in coverage(keras.Model(inp, x))}
    assert items["fc"].row_id == "linear" and items["fc"].route == "table"
    assert items["old_gru"].route == "table" and items["old_gru"].row_id == "gru"
    assert items["local"].route == "unsupported" and items["local"].row_id is None
    assert "not importable" in items["local"].reason
    assert {i.to_dict()["route"] for i in items.values()} == {"table", "unsupported"}


# --- the saved package ---------------------------------------------------------------------------


def test_save_torch_package_is_atomic_and_refuses_to_overwrite(tmp_path):
    module = keras_to_torch(FIXTURES["mlp"]())
    out = save_torch_package(module, tmp_path / "net")
    assert sorted(p.name for p in out.iterdir()) == ["model.py", "model.safetensors"]
    with pytest.raises(BadInputError, match="already exists"):
        save_torch_package(module, tmp_path / "net")
    save_torch_package(module, tmp_path / "net", weights="pth", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == ["model.pth", "model.py"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    state = torch.load(tmp_path / "net" / "model.pth", weights_only=True)
    assert set(state) == set(module.state_dict())


def test_library_entry_point_gates_on_parity():
    model = FIXTURES["transformer_block"]()
    module = xlate.keras_to_torch(model)
    record = record_of(module)
    assert any(n.startswith("parity: max abs err") for n in record.notes)
    assert json.loads(xlate.check_parity(model, module).to_json())["passed"]


def test_same_padding_on_sizes_known_only_at_run_time(tmp_path):
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    x = layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inp)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(x)
    x = layers.AveragePooling2D(2, strides=2, padding="same", name="avgpool")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    model = keras.Model(inp, layers.GlobalAveragePooling2D(name="gap")(x))
    module = keras_to_torch(model)
    assert "def pad_same(" in module._xlate_source
    for size in (9, 10, 17):
        x = np.random.default_rng(size).standard_normal((2, size, size, 3)).astype("float32")
        report = xlate.check_parity(model, module, [x])
        assert report.passed, f"size {size}: {report}"
    lint = ruff_check(module._xlate_source, tmp_path)
    assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize("build", [
    lambda: _seq((9, 3), keras.layers.SeparableConv1D(4, 3, strides=2, padding="same", depth_multiplier=2)),
    lambda: _seq((9, 3), keras.layers.SpatialDropout1D(0.3), keras.layers.Conv1D(2, 3)),
    lambda: _seq((3, 4, 2, 2), keras.layers.UpSampling3D((2, 1, 2))),
    lambda: _seq((8, 8, 3), keras.layers.Conv2D(4, 3, activation="gelu"), keras.layers.GlobalMaxPooling2D(keepdims=True),
                 keras.layers.Reshape((4,)), keras.layers.RepeatVector(3), keras.layers.Permute((2, 1))),
], ids=["separable1d", "spatial_dropout1d", "upsampling3d", "keepdims-reshape-repeat-permute"])
def test_more_layers(build):
    _parity(build())


def test_subclassed_model_falls_back_to_onnx_under_auto():
    pytest.importorskip("tf2onnx")
    model = _local_subclassed()  # not importable: the traced route refuses it, ONNX takes it
    module = xlate.keras_to_torch(model, example_inputs=np.zeros((2, 4), "float32"))
    record = record_of(module)
    assert record.path == "onnx" and any("fell back to ONNX" in n for n in record.notes)


def test_example_inputs_fill_unknown_sizes_in_the_parity_specs():
    model = _seq((None, None, 3), keras.layers.Conv2D(2, 3, strides=2, padding="same"))
    module = keras_to_torch(model, example_inputs=np.zeros((1, 13, 11, 3), "float32"))
    spec = record_of(module).io.inputs[0]
    # the free sizes stay free (the gate runs other sizes of them); the example fills them in
    assert spec.shape == (None, None, None, 3) and spec.example == (1, 13, 11, 3)
    assert xlate.check_parity(model, module).passed
    with pytest.raises(BadInputError, match="rank"):
        keras_to_torch(model, example_inputs=np.zeros((13, 11, 3), "float32"))
