"""Keras -> PyTorch for the built-in layers of issue 13: hand-built models, training-mode behaviour,
augmentation layers and the keras.applications constructors.

Every hand-built model converts with parity on two inputs, in-process and as the saved package
run in a fresh process without xlate and keras; its generated code passes ``ruff check`` and one
optimizer step. Sizes left as None stay dynamic: those models are also checked on inputs of
several sizes, which a literal size in the generated code would break.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import xlate
from xlate.keras2torch.convert import keras_to_torch
from xlate.record import record_of
from xlate.save import save_torch_package
from xlate.table import table
from xlate.testing import fresh_package_error

from .test_keras2torch import one_training_step, ruff_check

layers = keras.layers


def _check(model, tmp_path, *extra_inputs, train=True):
    """Parity on two generated inputs and on ``extra_inputs``, in a fresh process, ruff, one step."""
    module = keras_to_torch(model)
    report = xlate.check_parity(model, module, samples=2)
    assert report.passed, f"{report}\n{module._xlate_source}"
    for inputs in extra_inputs:
        report = xlate.check_parity(model, module, inputs)
        assert report.passed, f"{report}\n{module._xlate_source}"
    err = fresh_package_error(model, save_torch_package(module, tmp_path / "pkg"), record_of(module).io.inputs)
    assert err <= 1e-5, f"max abs error {err:.3g} in a fresh process"
    lint = ruff_check(module._xlate_source, tmp_path)
    assert lint.returncode == 0, lint.stdout
    if train:
        one_training_step(module, model)
    return module


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_resizing_every_interpolation_on_unknown_image_sizes(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    x = layers.Resizing(12, 10, name="resize")(inp)
    x = layers.Conv2D(4, 3, name="conv")(x)
    x = layers.Resizing(7, 5, interpolation="bicubic", antialias=True, name="bicubic")(x)
    x = layers.Resizing(9, 9, interpolation="lanczos3", crop_to_aspect_ratio=True, name="lanczos")(x)
    x = layers.Resizing(4, 6, interpolation="area", pad_to_aspect_ratio=True, name="area")(x)
    x = layers.UpSampling2D((2, 3), interpolation="lanczos5", name="up")(x)
    x = layers.CenterCrop(6, 6, name="crop")(x)
    model = keras.Model(inp, layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x)))
    module = _check(model, tmp_path, _rng(1).standard_normal((2, 17, 9, 3)).astype("float32"),
                    _rng(2).standard_normal((1, 6, 23, 3)).astype("float32"))
    assert "tf_resize(" in module._xlate_source and "F.interpolate(" in module._xlate_source


def test_gru_reset_before_alone_and_bidirectional_any_length(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 5))
    x = layers.GRU(4, reset_after=False, return_sequences=True, name="gru")(inp)
    x = layers.Bidirectional(layers.GRU(3, reset_after=False, return_sequences=True), name="bi")(x)
    x = layers.GRU(3, reset_after=False, go_backwards=True, name="last")(x)
    model = keras.Model(inp, x)
    module = _check(model, tmp_path, _rng(3).standard_normal((2, 11, 5)).astype("float32"))
    src = module._xlate_source
    assert "class KerasGRU(nn.Module):" in src and "self.gru = KerasGRU(5, 4)" in src
    assert "= nn.GRU(" not in src  # torch's own GRU cannot compute reset_after=False


def test_time_distributed_of_convertible_layers_any_length(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 8, 8, 3))
    x = layers.TimeDistributed(layers.Conv2D(4, 3, strides=2, padding="same"), name="td_conv")(inp)
    x = layers.TimeDistributed(layers.BatchNormalization(), name="td_bn")(x)
    x = layers.TimeDistributed(layers.MaxPooling2D(), name="td_pool")(x)
    x = layers.TimeDistributed(layers.Flatten(), name="td_flat")(x)
    x = layers.TimeDistributed(layers.Dense(6, activation="relu"), name="td_dense")(x)
    encoder = keras.Sequential([keras.Input((6,)), layers.Dense(4, activation="tanh"), layers.Dropout(0.1),
                                layers.Dense(5)], name="step_encoder")
    x = layers.TimeDistributed(encoder, name="td_model")(x)  # a whole model per step
    model = keras.Model(inp, layers.LSTM(5, name="lstm")(x))
    module = _check(model, tmp_path, _rng(4).standard_normal((3, 7, 8, 8, 3)).astype("float32"))
    assert "unflatten(0, (batch, steps))" in module._xlate_source


def test_conv_lstm2d_sequences_strides_and_states(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 9, 9, 2))
    x = layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True, name="convlstm")(inp)
    x, h, c = layers.ConvLSTM2D(2, 2, strides=2, padding="same", return_state=True, name="down")(x)
    model = keras.Model(inp, [layers.Dense(3)(layers.Flatten()(x)), h, c])
    module = _check(model, tmp_path, _rng(5).standard_normal((2, 6, 9, 9, 2)).astype("float32"))
    assert "class ConvLSTM(nn.Module):" in module._xlate_source


def test_attention_and_additive_attention_with_options(tmp_path):
    keras.utils.set_random_seed(0)
    q, v = keras.Input((None, 6), name="q"), keras.Input((None, 6), name="v")
    a = layers.Attention(use_scale=True, score_mode="concat", dropout=0.2, name="luong")([q, v])
    b = layers.AdditiveAttention(name="bahdanau")([q, v, v])
    c, scores = layers.Attention(name="causal")([q, q], use_causal_mask=True, return_attention_scores=True)
    model = keras.Model([q, v], [layers.Concatenate()([a, b, c]), scores])
    for var in model.weights:  # scales away from their initial 1.0
        var.assign(np.full(var.shape, 0.7, "float32"))
    _check(model, tmp_path, (_rng(6).standard_normal((2, 5, 6)).astype("float32"),
                             _rng(7).standard_normal((2, 8, 6)).astype("float32")))


def test_noise_and_activity_regularization_are_identity_in_inference(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    x = layers.Dense(8, name="fc")(inp)
    x = layers.GaussianNoise(0.3, name="noise")(x)
    x = layers.ActivityRegularization(l1=0.01, l2=0.001, name="act_reg")(x)
    x = layers.GaussianDropout(0.2, name="gdrop")(x)
    x = layers.AlphaDropout(0.1, name="adrop")(x)
    module = _check(keras.Model(inp, layers.Dense(3, name="head")(x)), tmp_path)
    assert any("act_reg" in n and "training loss" in n for n in record_of(module).notes)


def _padded_sequences(batch, steps, features, seed):
    """Random sequences whose trailing steps are all-zero padding (and one zero step inside)."""
    x = _rng(seed).standard_normal((batch, steps, features)).astype("float32")
    for i, length in enumerate(_rng(seed + 1).integers(2, steps, batch)):
        x[i, length:] = 0.0
    x[0, 1] = 0.0
    return x


@pytest.mark.parametrize("sequences", [True, False])
def test_masking_reaches_lstm_gru_simple_rnn_and_bidirectional(sequences, tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 4))
    x = layers.Masking(0.0, name="masking")(inp)
    x = layers.LSTM(5, return_sequences=True, name="lstm")(x)
    x = layers.Bidirectional(layers.GRU(3, return_sequences=True), name="bi")(x)
    x = layers.SimpleRNN(3, return_sequences=sequences, name="rnn")(x)
    model = keras.Model(inp, x)
    padded = _padded_sequences(3, 9, 4, seed=8)
    module = _check(model, tmp_path, padded)
    assert "masked_rnn(" in module._xlate_source
    # the mask changes the numbers: the same layers without it would not match Keras
    unmasked = keras.Model(inp, model.get_layer("rnn")(model.get_layer("bi")(model.get_layer("lstm")(inp))))
    ours = module(torch.from_numpy(padded)).detach().numpy()
    theirs = keras.ops.convert_to_numpy(unmasked(padded))
    assert np.abs(ours - theirs).max() > 1e-3


def test_mask_zero_embedding_feeds_rnn_attention_and_pooling(tmp_path):
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32")
    x = layers.Embedding(6, 8, mask_zero=True, name="embed")(ids)
    x = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi")(x)
    x = layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = layers.GRU(4, reset_after=False, return_sequences=True, name="gru")(x)
    model = keras.Model(ids, layers.Dense(2, name="head")(layers.GlobalAveragePooling1D(name="pool")(x)))
    tokens = _rng(9).integers(1, 6, (3, 10)).astype("int32")
    tokens[0, 6:] = 0
    tokens[1, 3:] = 0
    tokens[2, 0] = 0
    _check(model, tmp_path, tokens)


# --- training-mode behaviour -----------------------------------------------------------------------


def _train_outputs(layer, x):
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, layer(inp))
    module = keras_to_torch(model)
    module.train()
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    return ours, keras.ops.convert_to_numpy(model(x, training=True)), module, model


def test_gaussian_noise_and_dropout_draw_keras_distributions_in_training():
    x = np.ones((400, 250), "float32")
    ours, theirs, *_ = _train_outputs(layers.GaussianNoise(0.5), x)
    for out in (ours, theirs):
        assert abs((out - 1).mean()) < 0.01 and abs((out - 1).std() - 0.5) < 0.01
    ours, theirs, *_ = _train_outputs(layers.GaussianDropout(0.3), x)
    for out in (ours, theirs):
        assert abs(out.mean() - 1) < 0.01 and abs(out.std() - np.sqrt(0.3 / 0.7)) < 0.01
    assert not np.array_equal(ours, x)


def test_alpha_dropout_keeps_selu_statistics_in_training():
    x = _rng(10).standard_normal((400, 250)).astype("float32")
    ours, theirs, *_ = _train_outputs(layers.AlphaDropout(0.2), x)
    alpha_p = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - 0.2) * (1 + 0.2 * alpha_p ** 2)) ** -0.5
    dropped = a * alpha_p + (-a * alpha_p * 0.2)
    for out in (ours, theirs):
        assert abs(np.isclose(out, dropped, atol=1e-6).mean() - 0.2) < 0.01
        assert abs(out.mean()) < 0.02 and abs(out.std() - 1) < 0.02


def test_activity_regularization_loss_matches_keras_losses():
    x = _rng(11).standard_normal((5, 7)).astype("float32")
    ours, _, module, model = _train_outputs(layers.ActivityRegularization(l1=0.02, l2=0.1), x)
    np.testing.assert_array_equal(ours, x)
    (keras_loss,) = [float(keras.ops.convert_to_numpy(v)) for v in model.losses]
    (reg,) = [m for m in module.modules() if type(m).__name__ == "ActivityRegularization"]
    assert reg.loss is not None and abs(float(reg.loss) - keras_loss) <= 1e-6 * max(1.0, abs(keras_loss))


def test_spectral_normalization_trains_exactly_like_keras():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    model = keras.Model(inp, layers.SpectralNormalization(layers.Dense(4), power_iterations=2)(inp))
    module = keras_to_torch(model)
    module.train()
    for step in range(3):
        x = _rng(step).standard_normal((3, 5)).astype("float32")
        ours = module(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(model(x, training=True)), atol=1e-6)


# --- augmentation: identity at inference -----------------------------------------------------------

_AUGMENT_ARGS = {"RandomCrop": (8, 8), "RandomRotation": (0.2,), "RandomTranslation": (0.2, 0.2),
                 "RandomZoom": (0.2,), "RandomContrast": (0.5,), "RandomBrightness": (0.3,), "RandomHue": (0.3,),
                 "RandomSaturation": (0.3,), "RandomSharpness": (0.3,), "RandomShear": (0.2,),
                 "RandomColorDegeneration": (0.3,), "Solarization": (0.5,), "MaxNumBoundingBoxes": (5,),
                 "RandomPosterization": (4,)}


@pytest.mark.parametrize("name", sorted(n.rsplit(".", 1)[-1] for n in (table().row("random_augmentation").keras,
                                                                         *table().row("random_augmentation")
                                                                         .keras_aliases)))
def test_augmentation_layer_is_identity_at_inference_in_keras_and_torch(name):
    layer = getattr(layers, name)(*_AUGMENT_ARGS.get(name, ()))
    x = _rng(12).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, layers.Dense(2)(layer(inp)))
    module = keras_to_torch(model)
    assert xlate.check_parity(model, module, x).passed
    # a layer whose symbolic output is its input (Equalization) is no node of the Keras graph at all
    assert record_of(module).rows_used["random_augmentation"] == (1 if layer in model.layers else 0)


# --- keras.applications -----------------------------------------------------------------------------

# the smallest member of each family (the sweep script converts every constructor)
APPLICATIONS = {"ConvNeXtTiny": 32, "DenseNet121": 32, "EfficientNetB0": 32, "EfficientNetV2B0": 32,
                "InceptionV3": 75, "MobileNet": 32, "MobileNetV2": 32, "MobileNetV3Small": 32, "NASNetMobile": 32,
                "ResNet50": 32, "ResNet50V2": 32, "VGG16": 32, "Xception": 71}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_application_converts_within_keras_own_float32_error(name):
    """Parity within 1e-5, or within 3x Keras' own float32 error when that is larger: the float64
    reference is the generated module run in float64 (its float32 run must match it too)."""
    from fixtures.keras_models import randomize_statistics

    size = APPLICATIONS[name]
    keras.utils.set_random_seed(0)
    build = getattr(keras.applications, name)
    try:  # logits, not probabilities: 1000 probabilities near 1e-3 would hide errors
        model = build(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    except TypeError:
        model = build(weights=None, input_shape=(size, size, 3))
    randomize_statistics(model)
    module = keras_to_torch(model)
    x = _rng(13).uniform(0, 255, (2, size, size, 3)).astype("float32")
    ours = module(torch.from_numpy(x)).detach().double().numpy()
    theirs = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float64)
    import copy

    reference = copy.deepcopy(module).double()(torch.from_numpy(x).double()).detach().numpy()
    keras_floor = np.abs(theirs - reference).max()
    assert np.abs(ours - reference).max() <= 3 * keras_floor + 1e-6  # the torch side is float32-exact too
    assert np.abs(ours - theirs).max() <= max(1e-5, 3 * keras_floor), (np.abs(ours - theirs).max(), keras_floor)


def test_hashing_matches_tensorflow_farmhash_on_negative_and_19_digit_values():
    inp = keras.Input((None,), dtype="int64")
    model = keras.Model(inp, layers.Hashing(num_bins=2 ** 31 - 1)(inp))
    module = keras_to_torch(model)
    values = np.concatenate([np.array([0, -1, 7, -999, 10 ** 15, -(10 ** 18), 2 ** 63 - 1, 10 ** 18], np.int64),
                             _rng(14).integers(-(2 ** 62), 2 ** 62, 60), _rng(15).integers(-100, 100, 60)])
    x = values.reshape(8, -1)
    ours = module(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(ours, keras.ops.convert_to_numpy(model(x)))


def test_hashed_crossing_matches_tensorflow_on_negative_and_large_integers():
    a, b = keras.Input((1,), dtype="int64"), keras.Input((1,), dtype="int64")
    model = keras.Model([a, b], layers.HashedCrossing(num_bins=2 ** 31 - 1)((a, b)))
    module = keras_to_torch(model)
    x = (_rng(16).integers(-(2 ** 62), 2 ** 62, (40, 1)), _rng(17).integers(-1000, 1000, (40, 1)))
    ours = module(*[torch.from_numpy(v) for v in x]).numpy()
    np.testing.assert_array_equal(ours, keras.ops.convert_to_numpy(model(list(x))))


STFT_CONFIGS = {"stft": {"mode": "stft", "frame_length": 8},
                "log-same-expand": {"mode": "log", "frame_length": 8, "padding": "same", "frame_step": 3, "expand_dims": True}}


@pytest.mark.parametrize("cfg", STFT_CONFIGS.values(), ids=STFT_CONFIGS.keys())
def test_channels_first_stft_spectrogram_matches_keras_channels_last_on_the_transposed_signal(cfg):
    """Keras' own channels_first STFTSpectrogram needs an NCHW convolution, which TensorFlow lacks on
    CPU; the converted module is held to the channels_last layer (same DFT kernels) instead."""
    x = np.random.default_rng(0).standard_normal((2, 3, 30)).astype("float32")  # (N, C, T)
    first = keras.Model(i := keras.Input((3, 30)), layers.STFTSpectrogram(data_format="channels_first", **cfg)(i))
    last = keras.Model(j := keras.Input((30, 3)), layers.STFTSpectrogram(data_format="channels_last", **cfg)(j))
    module = xlate.keras_to_torch(first, check=False, via="direct")
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    want = np.asarray(last(x.transpose(0, 2, 1)))
    # channels_last: (N, T', C * F) or (N, T', F, C); channels_first: (N, C * F, T') or (N, C, T', F)
    want = want.transpose(0, 3, 1, 2) if cfg.get("expand_dims") else want.transpose(0, 2, 1)
    assert got.shape == want.shape and got.shape[1:] == tuple(first.output.shape[1:])
    if cfg["mode"] == "log":
        # float32 rounding of the DFT is absolute in the power (about 1e-7 of the frame's energy):
        # the log of a small power magnifies it (1.2e-5 at log power -5.5 on an AMD EPYC), so log
        # outputs are compared as powers
        got, want = np.exp(got), np.exp(want)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
