"""Keras -> PyTorch through the traced route: custom layers, a subclassed model, keras-hub backbones
and InceptionResNetV2's CustomScaleLayer, captured with torch.export in a torch-backend process.

Every parity figure compares the generated module with the real (TensorFlow-backend) Keras model;
the saved package also runs in a fresh process that cannot import xlate or keras, passes
``ruff check --isolated`` and takes one optimizer step (its weights are nn.Parameters).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import xlate
from fixtures import keras_custom
from tests.test_keras2torch import fresh_process_error, one_training_step, ruff_check
from xlate.errors import UnsupportedOpError
from xlate.record import record_of


def _package_checks(model, module, tmp_path, *, tol: float = 1e-5) -> None:
    err = fresh_process_error(model, module, tmp_path / "pkg")
    assert err <= tol, f"max abs error {err:.3g} in a fresh process"
    lint = ruff_check(module._xlate_source, tmp_path)
    assert lint.returncode == 0, lint.stdout
    src = module._xlate_source
    assert not re.search(r"^\s*(import|from)\s+(xlate|keras)", src, re.MULTILINE)


def _moved_after_a_step(module, model, *names: str) -> None:
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    one_training_step(module, model)
    after = dict(module.named_parameters())
    for name in names:
        assert not torch.equal(before[name], after[name].detach()), f"{name} did not train"


@pytest.fixture(scope="module")
def custom_layer_conversion():
    model = keras_custom.custom_layer_model()
    return model, xlate.keras_to_torch(model)


def test_custom_layer_comes_out_as_its_own_class_with_native_sublayers(custom_layer_conversion):
    _, module = custom_layer_conversion
    src = module._xlate_source
    assert "class GatedResidual(nn.Module):" in src
    assert "self.gated = GatedResidual()" in src
    # sublayers with a table row are torch's own modules, the layer's own weight keeps its Keras name
    for line in ("self.gate = nn.Linear(8, 8)", "self.hidden_0 = nn.Linear(8, 8)", "self.hidden_1 = nn.Linear(8, 8)",
                 "self.norm = nn.LayerNorm(8, eps=1e-05)", "self.scale = nn.Parameter(torch.zeros((8,)))"):
        assert line in src, line
    assert "torch.ops.aten" not in src  # every captured op has a readable spelling
    assert "x.shape[0], x.shape[1]" in src  # the unknown sequence length stays symbolic
    record = record_of(module)
    assert record.path == "direct" and record.rows_used["traced"] == 1
    assert any("traced layer GatedResidual" in n for n in record.notes)
    assert isinstance(module.gated.scale, torch.nn.Parameter)


def test_custom_layer_parity_on_two_inputs_of_other_lengths(custom_layer_conversion, tmp_path):
    model, module = custom_layer_conversion
    rng = np.random.default_rng(4)
    for length in (5, 13):  # the capture ran at another length
        x = rng.standard_normal((2, length, 6)).astype("float32")
        report = xlate.check_parity(model, module, [x])
        assert report.passed, f"length {length}: {report}"
    _package_checks(model, module, tmp_path)
    _moved_after_a_step(module, model, "gated.scale", "gated.hidden_0.weight", "gated.norm.weight", "conv_in.weight")


def test_a_layer_that_cannot_be_imported_is_refused_before_any_capture():
    class Local(keras.layers.Layer):
        def call(self, x):
            return x + 1.0

    inp = keras.Input((4,))
    model = keras.Model(inp, Local(name="local")(keras.layers.Dense(4, name="fc")(inp)))
    with pytest.raises(UnsupportedOpError, match=r"Local .*not importable.* at local"):
        xlate.keras_to_torch(model, via="direct")


def test_inspect_names_the_route_of_every_layer_and_of_a_subclassed_model():
    from xlate.keras2torch.inspect import coverage

    items = {i.name: i.to_dict() for i in coverage(keras_custom.custom_layer_model())}
    assert items["gated"]["route"] == "traced" and items["gated"]["row"] == "traced"
    assert {items[n]["route"] for n in ("conv_in", "conv_out", "pool", "head")} == {"table"}
    (whole,) = coverage(keras_custom.subclassed_model())
    assert whole.route == "traced" and "subclassed" in whole.reason


@pytest.mark.slow
def test_a_layer_torch_export_cannot_capture_is_refused_with_the_cause_on_one_line():
    model = keras_custom.data_dependent_model()
    with pytest.raises(UnsupportedOpError, match="data-dependent") as e:
        xlate.keras_to_torch(model, via="direct")
    assert [w for _, w in e.value.unsupported] == ["branchy"]
    assert "\n" not in str(e.value) and "error above occurred" not in str(e.value)


@pytest.mark.slow
def test_a_size_the_code_depends_on_is_fixed_and_checked():
    model = keras_custom.running_max_model()
    module = xlate.keras_to_torch(model, example_inputs=np.zeros((1, 6, 3), "float32"))
    assert "if x.shape[1] != 6:" in module._xlate_source
    assert any("fixed x.shape[1] at 6" in n for n in record_of(module).notes)
    assert xlate.check_parity(model, module, [np.random.default_rng(0).standard_normal((3, 6, 3), "float32")]).passed
    with pytest.raises(ValueError, match="traced with x.shape.1. == 6"):
        module(torch.zeros(2, 5, 3))


@pytest.mark.slow
def test_subclassed_model_with_a_custom_layer_and_python_control_flow(tmp_path):
    model = keras_custom.subclassed_model()
    module = xlate.keras_to_torch(model, via="direct")
    src = module._xlate_source
    assert "class Scale(nn.Module):" in src and "class Net(nn.Module):" in src
    for line in ("self.conv = nn.Conv2d(3, 6, kernel_size=3, stride=1, padding=1)", "self.blocks_0 = nn.Linear(6, 6)",
                 "self.bn = nn.BatchNorm2d(6, eps=0.001, momentum=0.01)", "self.scale = Scale()"):
        assert line in src, line
    assert src.count(".permute(") == 2  # conv + batch norm share one channels-first stretch
    rng = np.random.default_rng(7)
    inputs = [[rng.standard_normal((2, 8, 8, 3)).astype("float32")] for _ in range(2)]
    report = xlate.check_parity(model, module, inputs)
    assert report.passed, str(report)
    _package_checks(model, module, tmp_path)
    _moved_after_a_step(module, model, "scale.gain", "blocks_0.weight", "conv.weight", "bn.weight")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(keras_custom.KERAS_HUB))
def test_keras_hub_backbone(name, tmp_path):
    pytest.importorskip("keras_hub")
    model = keras_custom.keras_hub_backbone(name)
    module = xlate.keras_to_torch(model)
    samples = [keras_custom.token_inputs(model, seed) for seed in (1, 2)]  # right-padded masks
    report = xlate.check_parity(model, module, samples)
    assert report.passed, str(report)
    longer = keras_custom.token_inputs(model, 3, length=14)
    assert xlate.check_parity(model, module, [longer]).passed
    _package_checks(model, module, tmp_path)
    one_training_step(module, model)
    assert all(isinstance(p, torch.nn.Parameter) for p in module.parameters())


@pytest.mark.slow
def test_subclassed_model_from_a_builder_takes_the_weights_of_the_model_given():
    from xlate.keras2torch.convert import keras_to_torch

    model = keras_custom.subclassed_model()
    rng = np.random.default_rng(11)
    for v in model.trainable_weights:  # not the builder's seeded weights: the converted ones must be these
        v.assign(v.numpy() + 0.05 * rng.standard_normal(tuple(v.shape)).astype("float32"))
    module = keras_to_torch(model, builder="fixtures.keras_custom:subclassed_model")
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    assert xlate.check_parity(model, module, [x]).passed


@pytest.mark.slow
def test_inception_resnet_v2_custom_scale_layer(tmp_path):
    from fixtures.keras_models import randomize_statistics

    keras.utils.set_random_seed(0)
    # the real architecture (all 40 CustomScaleLayer calls) at its smallest input size
    model = keras.applications.InceptionResNetV2(weights=None, input_shape=(75, 75, 3), classifier_activation=None)
    randomize_statistics(model)
    module = xlate.keras_to_torch(model)
    src = module._xlate_source
    assert "class CustomScaleLayer(nn.Module):" in src and src.count("class CustomScaleLayer") == 1
    for scale in (0.17, 0.1, 0.2, 1.0):  # one class, the scale a constructor argument
        assert f"CustomScaleLayer(scale={scale})" in src
    _package_checks(model, module, tmp_path, tol=1e-4)
    one_training_step(module, model)


def test_a_keras_file_names_the_module_of_its_custom_classes_and_trust_imports_it(tmp_path, monkeypatch):
    import json
    import sys
    import zipfile

    from xlate.errors import BadInputError
    from xlate.keras_classes import import_custom_modules

    name = "xlate_test_user_layers"
    (tmp_path / f"{name}.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    config = {"module": "keras.src.models.functional", "class_name": "Functional", "config": {"layers": [
        {"module": "keras.layers", "class_name": "Dense", "config": {}},
        {"module": name, "class_name": "GatedResidual", "config": {}}]}}
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
    with pytest.raises(BadInputError, match=rf"GatedResidual from {name}\)"):
        import_custom_modules(path, trust=False)
    assert name not in sys.modules
    assert import_custom_modules(path, trust=True) == [name]
    assert sys.modules[name].IMPORTED
    assert import_custom_modules(path, trust=False) == []  # imported now: nothing left to ask for
