"""Variables of a converted model are made with TensorFlow's eager kernel cache in mind
(ported.unscoped_variable_names): their ops carry no scoped name and no shape attribute, so that a
weight of a new shape does not build a new kernel. They must stay ordinary variables: their shape
known to Keras, to tf.function graphs, XLA, SavedModel and TFLite; a value of another shape refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gen_resource_variable_ops as gen

from xlate.torch2keras.ported import unscoped_variable_names


def _model():
    inp = keras.Input((4, 37))
    x = keras.layers.BatchNormalization(name="norm")(inp)
    return keras.Model(inp, keras.layers.Dense(5, name="dense")(x))


def test_handles_are_made_without_a_shape_attribute_and_names_without_scopes(monkeypatch):
    calls = []
    original = gen.var_handle_op
    monkeypatch.setattr(gen, "var_handle_op", lambda *a, **k: calls.append(k) or original(*a, **k))
    with unscoped_variable_names():
        model = _model()
    assert calls and all(k["shape"].rank is None for k in calls), calls
    assert {k["debug_name"].strip("/") for k in calls} >= {"kernel", "gamma"}, calls
    assert gen.var_handle_op is not original and gen.var_handle_op.__name__ == "<lambda>"  # the test's, put back
    assert [tuple(v.shape) for v in model.layers[2].weights] == [(37, 5), (5,)]
    assert [v.path for v in model.layers[1].weights][:2] == ["norm/gamma", "norm/beta"]


def test_those_variables_work_in_graphs_xla_training_saving_and_tflite(tmp_path):
    with unscoped_variable_names():
        model = _model()
    assert gen.var_handle_op.__module__.startswith("tensorflow")  # nothing left patched
    gamma = model.get_layer("norm").gamma
    graph = tf.function(lambda: gamma.value * 2, autograph=False).get_concrete_function()
    assert graph.outputs[0].shape == (37,)
    with pytest.raises(ValueError):
        gamma.assign(np.zeros(3, "float32"))
    x, y = np.random.rand(8, 4, 37).astype("float32"), np.random.rand(8, 4, 5).astype("float32")
    model.compile("adam", "mse", jit_compile=True)
    before = model.get_layer("dense").kernel.numpy().copy()
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.allclose(before, model.get_layer("dense").kernel.numpy())
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)
    model.export(tmp_path / "saved", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # kept: its functions need its variables
    np.testing.assert_allclose(loaded.serve(x).numpy(), np.asarray(model(x)), atol=1e-5)
    flat = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved")).convert()
    assert len(flat) > 1000
