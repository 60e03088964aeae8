"""Dynamic sizes on whole models: converted once from one example, each model runs with parity at
three or more other sizes of every size it accepts (sequence length, height and width, time
steps, the batch), in both directions and after saving (.keras reloaded, SavedModel, TFLite, the
generated torch package). Batch-1 examples take the fast path as batch 2 does.

    pytest tests/test_dynamic_models.py -q -s     # -s prints each model's dims and errors
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xlate
from fixtures import torch_models as tm
from xlate.load import load_keras
from xlate.record import record_of
from xlate.save import save_keras, save_torch

TOL = 1e-5


def _inputs(shapes, int_high=None, seed=0, int_dtype=np.int64):
    rng = np.random.default_rng(seed)
    if int_high:
        return [rng.integers(0, int_high, size=s).astype(int_dtype) for s in shapes]
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def assert_parity_at(source, target, shapes_list, *, int_high=None, atol=TOL, int_dtype=np.int64):
    """Parity at each listed shape (one input shape per model input); returns the worst error."""
    worst = 0.0
    for k, shapes in enumerate(shapes_list):
        arrays = _inputs(shapes, int_high, seed=k, int_dtype=int_dtype)
        report = xlate.check_parity(source, target, [tuple(arrays)], atol=atol)
        assert report.passed, f"at {shapes}: {report}"
        worst = max(worst, report.max_abs_err)
    return worst


def dims_of(model) -> dict:
    return {(d["input"], d["axis"]): d for d in record_of(model).dims}


def dynamic_axes(model) -> set:
    return {key for key, d in dims_of(model).items() if d["dynamic"]}


def _describe(model) -> str:
    from xlate.torch2keras.dims import DimInfo

    return "; ".join(DimInfo(**d).describe() for d in record_of(model).dims)


def _llama():
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         attn_implementation="sdpa", use_cache=False)
    return LlamaModel(config).eval(), (torch.randint(0, 128, (2, 16)),)


class FCNStyle(nn.Module):
    """A segmentation model in torchvision's FCN pattern: a strided backbone, a 1x1 classifier,
    and a bilinear resize back to the input's size (F.interpolate(size=x.shape[-2:]))."""

    def __init__(self, classes=5):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU())
        self.classifier = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        size = x.shape[-2:]
        y = self.classifier(self.backbone(x))
        return nn.functional.interpolate(y, size=size, mode="bilinear", align_corners=False)


def _fcn():
    torch.manual_seed(0)
    return tm._randomize_norm_stats(FCNStyle()).eval(), (torch.randn(2, 3, 32, 32),)


def _fixture(name):
    def make():
        module, example = (tm.FIXTURES | tm.HF_FIXTURES)[name]()
        return module.eval(), example
    return make


# name: (builder, other shapes (one tuple per input), int_high, dims that must come out dynamic)
TORCH_MODELS = {
    "hf_bert": (_fixture("hf_bert"), [[(1, 5)], [(3, 23)], [(2, 40)], [(1, 64)]], 128,
                {("input_ids", 0), ("input_ids", 1)}),
    "hf_gpt2": (_fixture("hf_gpt2"), [[(1, 5)], [(3, 23)], [(2, 40)], [(1, 64)]], 128,
                {("input_ids", 0), ("input_ids", 1)}),
    "hf_llama": (_llama, [[(1, 5)], [(3, 23)], [(2, 40)], [(1, 100)]], 128, {("input_ids", 0), ("input_ids", 1)}),
    "resnet_basic": (_fixture("resnet_basic"), [[(1, 3, 40, 56)], [(3, 3, 64, 96)], [(1, 3, 97, 33)],
                                                [(2, 3, 128, 128)]], None, {("x", 0), ("x", 2), ("x", 3)}),
    "hf_resnet": (_fixture("hf_resnet"), [[(1, 3, 40, 56)], [(3, 3, 96, 64)], [(1, 3, 33, 97)]], None,
                  {("pixel_values", 0), ("pixel_values", 2), ("pixel_values", 3)}),
    "fcn_segmentation": (_fcn, [[(1, 3, 40, 56)], [(2, 3, 72, 48)], [(1, 3, 96, 96)], [(3, 3, 37, 29)]], None,
                         {("x", 0), ("x", 2), ("x", 3)}),
    "text_lstm": (_fixture("text_lstm"), [[(1, 3)], [(3, 20)], [(2, 37)]], 100, {("tokens", 0), ("tokens", 1)}),
    "text_gru": (_fixture("text_gru"), [[(1, 3)], [(3, 20)], [(2, 37)]], 100, {("tokens", 0), ("tokens", 1)}),
}
SLOW = {"hf_bert", "hf_gpt2", "hf_llama", "hf_resnet", "text_lstm"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in TORCH_MODELS])
def test_torch_model_runs_at_other_sizes(name):
    build, shapes_list, int_high, expected = TORCH_MODELS[name]
    module, example = build()
    model = xlate.torch_to_keras(module, example)  # the gate: the example and a smaller and larger size
    assert expected <= dynamic_axes(model), _describe(model)
    worst = assert_parity_at(module, model, shapes_list, int_high=int_high)
    print(f"\n{name}: {_describe(model)}; max abs err {worst:.2e} at {len(shapes_list)} other shapes")


def test_bert_records_its_position_bound():
    module, example = tm.hf_bert()
    model = xlate.torch_to_keras(module.eval(), example)
    length = dims_of(model)[("input_ids", 1)]
    assert length["dynamic"] and length["high"] == 64 and "position_ids" in length["reason"]


@pytest.mark.slow
def test_vit_image_size_is_static_with_its_reason():
    """ViT without interpolate_pos_encoding checks the image size: the size is pinned, by that check."""
    module, example = tm.hf_vit()
    model = xlate.torch_to_keras(module.eval(), example)
    dims = dims_of(model)
    assert dynamic_axes(model) == {("pixel_values", 0)}
    assert "32" in dims[("pixel_values", 2)]["reason"] and "embeddings" in dims[("pixel_values", 2)]["reason"]
    assert_parity_at(module, model, [[(1, 3, 32, 32)], [(3, 3, 32, 32)], [(5, 3, 32, 32)]])


def test_linear_over_flattened_map_pins_height_and_width():
    module, example = tm.lenet()
    model = xlate.torch_to_keras(module.eval(), example)
    dims = dims_of(model)
    assert dynamic_axes(model) == {("x", 0)}
    assert "fc1" in dims[("x", 2)]["reason"] and "fc1" in dims[("x", 3)]["reason"]
    assert tuple(model.inputs[0].shape) == (None, 1, 28, 28)


class _FixedView(nn.Module):
    """view(B, 16, 4): the fixed sizes pin the size they split."""

    def forward(self, x):
        return x.view(x.shape[0], 16, 4).sum(-1)


def test_fixed_view_pins_the_size_it_splits():
    model = xlate.torch_to_keras(_FixedView(), (torch.randn(2, 64),))
    dims = dims_of(model)
    assert dims[("x", 0)]["dynamic"] and not dims[("x", 1)]["dynamic"]
    assert "view" in dims[("x", 1)]["reason"], dims[("x", 1)]


# --- the same after saving ----------------------------------------------------------------------


def _saved_and_reloaded(model, folder, name, recurrent: bool):
    """(suffix, reloaded model) for .keras, SavedModel and TFLite. TFLite is left out for a recurrent
    model: TensorFlow 2.21's TFLite converter refuses Keras 3 GRU/LSTM (TensorList ops), at static
    sizes too (test_tflite_refuses_recurrent_layers_static_or_not)."""
    for suffix in (".keras", "_savedmodel") + (() if recurrent else (".tflite",)):
        reloaded = load_keras(save_keras(model, folder / f"{name}{suffix}")).model
        object.__setattr__(reloaded, "_xlate_io", model._xlate_io)
        assert [d is None for d in reloaded.inputs[0].shape] == [d is None for d in model.inputs[0].shape], \
            (suffix, reloaded.inputs[0].shape)
        yield suffix, reloaded


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet_basic", "fcn_segmentation", "text_gru"])
def test_saved_torch_to_keras_keeps_dynamic_sizes(name, tmp_path):
    build, shapes_list, int_high, _ = TORCH_MODELS[name]
    module, example = build()
    model = xlate.torch_to_keras(module, example)
    for _, reloaded in _saved_and_reloaded(model, tmp_path, name, recurrent=name.startswith("text")):
        assert_parity_at(module, reloaded, shapes_list[:3], int_high=int_high)


@pytest.mark.slow
def test_tflite_refuses_recurrent_layers_static_or_not(tmp_path):
    """Not a dynamic-size limit: TensorFlow's TFLite converter refuses the GRU at fixed sizes too."""
    from xlate.errors import BadInputError

    module, example = tm.text_gru()
    for dynamic in ("none", "auto"):
        model = xlate.torch_to_keras(module.eval(), example, dynamic=dynamic, check=False)
        with pytest.raises(BadInputError, match="TensorList"):
            save_keras(model, tmp_path / f"gru_{dynamic}.tflite")


# --- Keras models with free sizes, both directions --------------------------------------------


def keras_cnn():
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(y)
    y = keras.layers.MaxPooling2D(2, padding="same")(y)
    y = keras.layers.Conv2D(16, 3, padding="valid", activation="relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(4)(y)), [(2, 32, 32, 3)], [[(1, 24, 40, 3)], [(3, 17, 29, 3)],
                                                                          [(2, 64, 48, 3)]]


def keras_text():
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((None,), dtype="int32")
    y = keras.layers.Embedding(50, 8)(x)
    y = keras.layers.Conv1D(12, 3, padding="same", activation="relu")(y)
    y = keras.layers.GlobalMaxPooling1D()(y)
    return keras.Model(x, keras.layers.Dense(3)(y)), [(2, 10)], [[(1, 3)], [(3, 17)], [(2, 31)]]


def keras_text_rnn():
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((None,), dtype="int32")
    y = keras.layers.Embedding(50, 8)(x)
    y = keras.layers.GRU(12, return_sequences=True)(y)
    y = keras.layers.LSTM(6)(y)
    return keras.Model(x, keras.layers.Dense(3)(y)), [(2, 10)], [[(1, 3)], [(3, 17)], [(2, 31)]]


@pytest.mark.slow
@pytest.mark.parametrize("make", [keras_cnn, keras_text, keras_text_rnn], ids=["cnn", "text", "text-rnn"])
def test_keras_model_with_free_sizes_both_directions(make, tmp_path):
    model, example_shapes, shapes_list = make()
    int_high = None if make is keras_cnn else 50
    example = _inputs(example_shapes, int_high, int_dtype=np.int32)
    module = xlate.keras_to_torch(model, example_inputs=example)  # gated at the example and other sizes
    assert_parity_at(model, module, shapes_list, int_high=int_high, int_dtype=np.int32)
    # the generated package, reloaded from disk
    folder = save_torch(module, tmp_path / "pkg")
    from xlate.load import load_torch

    package = load_torch(folder).model
    assert_parity_at(model, package, shapes_list, int_high=int_high, int_dtype=np.int32)
    # and back: the generated torch module to Keras, from one example, then saved
    torch_example = tuple(torch.from_numpy(a.astype(np.int64) if int_high else a) for a in example)
    again = xlate.torch_to_keras(module, torch_example)
    assert sum(d is None for d in again.inputs[0].shape) == sum(d is None for d in model.inputs[0].shape), \
        _describe(again)
    assert_parity_at(module, again, shapes_list, int_high=int_high)
    for _, reloaded in _saved_and_reloaded(again, tmp_path, "again", recurrent=make is keras_text_rnn):
        assert_parity_at(module, reloaded, shapes_list, int_high=int_high)


# --- batch 1 is the normal case -----------------------------------------------------------------


BATCH1 = {"hf_bert": _fixture("hf_bert"), "hf_gpt2": _fixture("hf_gpt2"), "hf_llama": _llama,
          "resnet_basic": _fixture("resnet_basic"), "hf_resnet": _fixture("hf_resnet")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "resnet_basic" else n
                                  for n in BATCH1])
def test_batch_one_example_takes_the_fast_path_like_batch_two(name):
    module, example = BATCH1[name]()
    one = tuple(t[:1] for t in example)
    two = tuple(t[:1].expand(2, *t.shape[1:]).clone() for t in example)
    models = {b: xlate.torch_to_keras(module, ex) for b, ex in ((1, one), (2, two))}  # both gated
    for b, model in models.items():
        notes = record_of(model).notes
        assert "traced by torch.fx (fast path)" in notes, (b, notes)
    assert dynamic_axes(models[1]) == dynamic_axes(models[2]), (_describe(models[1]), _describe(models[2]))
    assert ("input_ids" if name.startswith(("hf_bert", "hf_gpt", "hf_llama")) else "x", 0) in dynamic_axes(
        models[1]) or ("pixel_values", 0) in dynamic_axes(models[1])
