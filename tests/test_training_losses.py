"""Loss translation, generated from the loss rows' samples, in both directions.

Each case builds the sample's loss in the source framework, translates it, and compares the
value and the gradient with respect to the predictions on seeded data of the sample's kinds
(logits, log-probabilities, probabilities; class indices, probabilities, binary, real targets).
"""

import inspect

import keras
import numpy as np
import pytest
import torch

import xlate
from xlate.errors import UnsupportedOpError
from xlate.table import table
from xlate.training import translation_of
from xlate.training.samples import class_and_defaults, keras_loss, loss_data, torch_loss

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="gradients of the Keras side are taken with TensorFlow")

ROWS = table().family("loss")
T2K = [(r, s) for r in ROWS for s in r.samples if s.torch is not None and "torch2keras" in r.directions]
K2T = [(r, s) for r in ROWS for s in r.samples if s.keras is not None and "keras2torch" in r.directions]


def _ids(cases):
    return [f"{r.id}-{s.id}" for r, s in cases]


def _torch_value_and_grad(loss, pred, target, log_softmax=False):
    x = torch.tensor(pred, requires_grad=True)
    value = loss(torch.log_softmax(x, -1) if log_softmax else x, torch.from_numpy(target))
    value.sum().backward()
    return value.detach().numpy(), x.grad.numpy()


def _keras_value_and_grad(loss, pred, target, log_softmax=False):
    import tensorflow as tf

    x = tf.Variable(pred)
    with tf.GradientTape() as tape:
        value = loss(target, tf.nn.log_softmax(x, -1) if log_softmax else x)
        total = tf.reduce_sum(value)
    return np.asarray(value), tape.gradient(total, x).numpy()


def _through_log_softmax(sample) -> bool:
    """Log-probability predictions are differentiated through a log_softmax (as a model produces
    them): torch's CTC gradient w.r.t. its input assumes exactly that, and for the others it is
    the same gradient."""
    return sample.call.startswith("log_probs:")


def _target_kind(sample):
    return "probabilities" if sample.call.endswith(":probabilities") else "indices"


@pytest.mark.parametrize("row,sample", T2K, ids=_ids(T2K))
def test_loss_torch_to_keras(row, sample):
    pred, target = loss_data(sample)
    tl = torch_loss(row, sample)
    kl = xlate.translate_loss(tl, target=_target_kind(sample))
    assert translation_of(kl).row == row.id
    ls = _through_log_softmax(sample)
    tv, tg = _torch_value_and_grad(tl, pred, target, ls)
    kv, kg = _keras_value_and_grad(kl, pred, target, ls)
    assert tv.shape == kv.shape
    np.testing.assert_allclose(kv, tv, rtol=1e-5, atol=1e-6, err_msg=translation_of(kl).describe())
    np.testing.assert_allclose(kg, tg, rtol=1e-4, atol=1e-6, err_msg=translation_of(kl).describe())


@pytest.mark.parametrize("row,sample", K2T, ids=_ids(K2T))
def test_loss_keras_to_torch(row, sample):
    pred, target = loss_data(sample)
    kl = keras_loss(row, sample)
    tl = xlate.translate_loss(kl)
    assert translation_of(tl).row == row.id
    ls = _through_log_softmax(sample)
    kv, kg = _keras_value_and_grad(kl, pred, target, ls)
    tv, tg = _torch_value_and_grad(tl, pred, target, ls)
    np.testing.assert_allclose(tv, kv, rtol=1e-5, atol=1e-6, err_msg=translation_of(tl).describe())
    np.testing.assert_allclose(tg, kg, rtol=1e-4, atol=1e-6, err_msg=translation_of(tl).describe())


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_row_defaults_match_the_real_classes(row):
    torch_path, _ = class_and_defaults(row.torch)
    keras_path, _ = class_and_defaults(row.keras)
    sides = []
    if torch_path and torch_path.startswith("torch.nn."):
        sides.append(("torch", inspect.signature(getattr(torch.nn, torch_path.rsplit(".", 1)[-1]).__init__).parameters))
    if keras_path and keras_path.startswith("keras.losses.") and " " not in row.keras:
        sides.append(("keras", inspect.signature(getattr(keras.losses, keras_path.rsplit(".", 1)[-1]).__init__).parameters))
    for side, params in sides:
        for a in row.args:
            name, default = (a.torch, a.torch_default) if side == "torch" else (a.keras, a.keras_default)
            if name in params and default is not None:
                real = params[name].default
                expected = None if default == "None" else default
                assert real == expected, f"{row.id}: {side} {name} default is {real}, row says {default}"


def test_cross_entropy_is_always_from_logits():
    kl = xlate.translate_loss(torch.nn.CrossEntropyLoss())
    assert isinstance(kl, keras.losses.SparseCategoricalCrossentropy)
    assert kl.get_config()["from_logits"] is True and not translation_of(kl).emulated


def test_probability_targets_use_categorical_crossentropy():
    kl = xlate.translate_loss(torch.nn.CrossEntropyLoss(label_smoothing=0.1), target="probabilities")
    assert isinstance(kl, keras.losses.CategoricalCrossentropy)
    assert translation_of(kl).row == "cross_entropy_probabilities"


def test_loss_names_and_functions_translate():
    assert isinstance(xlate.translate_loss("mse"), torch.nn.MSELoss)
    assert isinstance(xlate.translate_loss(keras.losses.mean_absolute_error), torch.nn.L1Loss)
    sparse = xlate.translate_loss("sparse_categorical_crossentropy")  # from_logits=False: probabilities in
    assert translation_of(sparse).emulated


def test_emulations_translate_back_to_the_native_class():
    kl = xlate.translate_loss(torch.nn.SmoothL1Loss(beta=0.5, reduction="sum"))
    back = xlate.translate_loss(kl)
    assert type(back) is torch.nn.SmoothL1Loss and back.beta == 0.5 and back.reduction == "sum"
    tl = xlate.translate_loss(keras.losses.BinaryCrossentropy(label_smoothing=0.2))
    again = xlate.translate_loss(tl)
    assert type(again) is keras.losses.BinaryCrossentropy and again.get_config()["label_smoothing"] == 0.2


def test_cosine_embedding_loss_has_no_keras_counterpart():
    with pytest.raises(UnsupportedOpError, match="CosineEmbeddingLoss"):
        xlate.translate_loss(torch.nn.CosineEmbeddingLoss())


def test_emulated_keras_losses_serialize():
    from xlate.training import keras_losses

    loss = keras_losses.TorchCrossEntropyLoss(weight=[1.0, 2.0], ignore_index=1, label_smoothing=0.1)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is keras_losses.TorchCrossEntropyLoss and again.get_config() == loss.get_config()
