"""The save stage: atomic writes (temp path, then rename), --force, every Keras output format."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xlate.errors import BadInputError
from xlate.save import atomic_path, check_destination, keras_output_kind, save_keras


def test_output_kind_from_the_extension():
    assert keras_output_kind("a/model.keras") == "keras"
    assert keras_output_kind("model.tflite") == "tflite"
    assert keras_output_kind("exported") == "savedmodel"
    with pytest.raises(BadInputError, match="legacy .h5"):
        keras_output_kind("model.h5")
    with pytest.raises(BadInputError, match="cannot tell the output format"):
        keras_output_kind("model.onnx")


def test_atomic_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent.parent == tmp_path and tmp.name == "out.bin"
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failure_leaves_nothing_behind_not_even_new_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("converter died")
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_force_and_is_kept_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(BadInputError, match="already exists") as e:
        check_destination(target, force=False)
    assert "--force" in e.value.hint
    with pytest.raises(RuntimeError), atomic_path(target, force=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    with atomic_path(target, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_folders_are_swapped_whole_with_force(tmp_path):
    target = tmp_path / "pkg"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier run")
    with atomic_path(target, force=True, directory=True) as tmp:
        (tmp / "model.py").write_text("# new")
    assert sorted(os.listdir(target)) == ["model.py"]
    assert os.listdir(tmp_path) == ["pkg"]


@pytest.fixture(scope="module")
def model():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(2, activation="tanh")(inp))


@pytest.mark.parametrize("name", ["m.keras", "m.tflite", "m_saved"])
def test_save_keras_writes_each_format_that_runs_to_the_same_numbers(tmp_path, model, name):
    from xlate.load import load_keras

    path = save_keras(model, tmp_path / name)
    assert os.listdir(tmp_path) == [name]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    reloaded = load_keras(path).model
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    if name == "m_saved":  # carries the Keras model so tf2torch can rebuild the architecture
        rebuilt = load_keras(path, architecture=True).model
        assert [type(layer).__name__ for layer in rebuilt.layers] == ["InputLayer", "Dense"]


def test_a_failed_verification_leaves_nothing(tmp_path, model):
    def verify(tmp):
        assert tmp.exists()
        raise RuntimeError("parity failed on the written file")

    with pytest.raises(RuntimeError, match="parity failed"):
        save_keras(model, tmp_path / "m.keras", verify=verify)
    assert os.listdir(tmp_path) == []


def test_save_keras_refuses_to_overwrite(tmp_path, model):
    (tmp_path / "m.keras").write_bytes(b"mine")
    with pytest.raises(BadInputError, match="already exists"):
        save_keras(model, tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == b"mine"
    save_keras(model, tmp_path / "m.keras", force=True)
    assert (tmp_path / "m.keras").stat().st_size > 100
