"""Per-layer localization: a layer corrupted in the middle of a converted network is the first one
named as diverging, in both directions, with hand-built records and with the real converter."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xlate.frameworks import IOSpec, TensorSpec
from xlate.parity import check_parity
from xlate.record import ConversionRecord, LayerRecord, attach, record_of

NCHW_FROM_NHWC = (0, 3, 1, 2)
NHWC_FROM_NCHW = (0, 2, 3, 1)
# torch module path -> Keras layer name, and whether the output is a 4-D feature map
PAIRS = [("0", "conv_a", True), ("1", "relu_a", True), ("2", "conv_b", True), ("3", "relu_b", True),
         ("4", "conv_c", True), ("5", "relu_c", True), ("6", "pool", True), ("7", "flatten", False),
         ("8", "dense", False)]


def _torch_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    ).eval()


def _keras_twin(module):
    """The same network built by hand in Keras (channels-last inside, NCHW at the boundary)."""
    inputs = keras.Input((3, 10, 10), name="image")
    x = keras.layers.Permute((2, 3, 1), name="to_nhwc")(inputs)
    for tag in "abc":
        x = keras.layers.Conv2D(8, 3, padding="same", name=f"conv_{tag}")(x)
        x = keras.layers.ReLU(name=f"relu_{tag}")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, name="dense")(x)
    model = keras.Model(inputs, outputs)
    convs = [m for m in module if isinstance(m, torch.nn.Conv2d)]
    for tag, conv in zip("abc", convs):
        model.get_layer(f"conv_{tag}").set_weights([conv.weight.detach().numpy().transpose(2, 3, 1, 0),
                                                    conv.bias.detach().numpy()])
    model.get_layer("dense").set_weights([module[8].weight.detach().numpy().T, module[8].bias.detach().numpy()])
    return model


def _pair(direction):
    module = _torch_cnn()
    model = _keras_twin(module)
    spec = TensorSpec((None, 3, 10, 10), "float32")
    if direction == "torch2keras":
        layers = [LayerRecord(t, k, None, NCHW_FROM_NHWC if fmap else None) for t, k, fmap in PAIRS]
        attach(model, ConversionRecord("torch2keras", "direct", IOSpec((spec,), source="torch"), layers))
        return module, model
    layers = [LayerRecord(k, t, None, NHWC_FROM_NCHW if fmap else None) for t, k, fmap in PAIRS]
    attach(module, ConversionRecord("keras2torch", "direct", IOSpec((spec,), source="keras"), layers))
    return model, module


@pytest.mark.parametrize("direction", ["torch2keras", "keras2torch"])
def test_healthy_pair_has_every_layer_within_tolerance(direction):
    source, target = _pair(direction)
    report = check_parity(source, target, per_layer=True)
    assert report.passed, str(report)
    assert report.first_divergence is None
    assert [r.source_name for r in report.per_layer] == [t if direction == "torch2keras" else k
                                                         for t, k, _ in PAIRS]
    assert all(r.passed and r.max_abs_err < 1e-5 for r in report.per_layer)


def test_corrupted_middle_keras_layer_is_the_first_divergence():
    module, model = _pair("torch2keras")
    kernel, bias = model.get_layer("conv_b").get_weights()
    model.get_layer("conv_b").set_weights([kernel, bias + 0.05])
    report = check_parity(module, model, per_layer=True)
    assert not report.passed
    assert report.first_divergence.source_name == "2"
    assert report.first_divergence.target_name == "conv_b"
    names = [r.source_name for r in report.per_layer]
    before = report.per_layer[: names.index("2")]
    assert before and all(r.passed for r in before)
    assert report.first_divergence.max_abs_err == pytest.approx(0.05, rel=1e-3)
    assert "first diverging layer: 2 -> conv_b" in str(report)


def test_corrupted_middle_torch_layer_is_the_first_divergence():
    model, module = _pair("keras2torch")
    with torch.no_grad():
        module[4].weight[0, 0, 1, 1] += 0.5
    report = check_parity(model, module, per_layer=True)
    assert not report.passed
    assert report.first_divergence.source_name == "conv_c"
    assert report.first_divergence.target_name == "4"
    assert all(r.passed for r in report.per_layer[:4])


def test_layout_is_aligned_through_output_perm():
    module, model = _pair("torch2keras")
    record = record_of(model)
    record.layers[0] = LayerRecord("0", "conv_a", None, None)  # forget the layout of one layer
    report = check_parity(module, model, per_layer=True)
    row = report.per_layer[0]
    assert not row.passed and "shape" in row.note
    assert report.first_divergence is row


def test_module_called_twice_is_matched_call_by_call():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(torch.tanh(self.fc(x)))

    torch.manual_seed(0)
    module = Twice().eval()
    inputs = keras.Input((4,))
    dense1 = keras.layers.Dense(4, name="fc_1")
    dense2 = keras.layers.Dense(4, name="fc_2")
    model = keras.Model(inputs, dense2(keras.layers.Activation("tanh", name="tanh")(dense1(inputs))))
    w = [module.fc.weight.detach().numpy().T, module.fc.bias.detach().numpy()]
    dense1.set_weights(w)
    dense2.set_weights([w[0] * 1.5, w[1]])  # the second call site is wrong
    attach(model, ConversionRecord("torch2keras", "direct", IOSpec((TensorSpec((None, 4)),), source="torch"),
                                   [LayerRecord("fc", "fc_1"), LayerRecord("fc", "fc_2")]))
    report = check_parity(module, model, per_layer=True)
    assert [r.name for r in report.per_layer] == ["fc", "fc (call 2)"]
    assert report.per_layer[0].passed
    assert report.first_divergence.name == "fc (call 2)"


def test_no_record_says_so():
    module = _torch_cnn()
    model = _keras_twin(module)
    report = check_parity(module, model, per_layer=True)
    assert report.per_layer == [] and report.first_divergence is None
    assert "nothing to align" in report.message


def test_real_torch_to_keras_conversion_localizes_a_corrupted_layer():
    import xlate

    module = _torch_cnn()
    model = xlate.torch_to_keras(module, torch.randn(2, 3, 10, 10), via="direct")
    record = record_of(model)
    assert record.layers, "the direct torch->keras converter recorded no layers"
    healthy = check_parity(module, model, per_layer=True)
    assert healthy.passed and healthy.first_divergence is None and healthy.per_layer
    middle = next(lr for lr in record.layers if lr.source == "2")
    op = next(op for op in model.operations if op.name == middle.target)
    weights = op.get_weights()
    op.set_weights([weights[0] * 1.1, *weights[1:]])
    report = check_parity(module, model, per_layer=True)
    assert not report.passed
    assert report.first_divergence.source_name == "2", str(report)
    np.testing.assert_array_less(0, report.first_divergence.max_abs_err)


def test_real_keras_to_torch_conversion_localizes_a_corrupted_layer():
    import xlate

    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    x = inputs
    for tag in "abc":
        x = keras.layers.Conv2D(8, 3, padding="same", name=f"conv_{tag}")(x)
        x = keras.layers.ReLU(name=f"relu_{tag}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="dense")(x))
    module = xlate.keras_to_torch(model, via="direct")
    record = record_of(module)
    assert record.layers, "the keras2torch converter fills ConversionRecord.layers"
    healthy = check_parity(model, module, per_layer=True)
    assert healthy.passed and healthy.first_divergence is None
    assert [r.source_name for r in healthy.per_layer][:3] == ["conv_a", "relu_a", "conv_b"]
    middle = next(lr for lr in record.layers if lr.source == "conv_b")
    with torch.no_grad():
        dict(module.named_modules())[middle.target].bias.add_(0.05)
    report = check_parity(model, module, per_layer=True)
    assert not report.passed
    assert report.first_divergence.source_name == "conv_b", str(report)
    assert all(r.passed for r in report.per_layer[:2])
    assert report.first_divergence.max_abs_err == pytest.approx(0.05, rel=1e-3)
