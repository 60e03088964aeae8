"""The load stage: format detection from extension and bytes, safe loading, one-line errors."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from xlate.errors import BadInputError
from xlate.load import (
    detect_format,
    import_model_class,
    load_inputs,
    load_keras,
    load_model,
    load_torch,
    parse_input_shape,
)

torch = pytest.importorskip("torch")

MODULE = """
import torch

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x))
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A user's folder: tiny.py defining Tiny, and Tiny saved in every PyTorch format."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    tiny = importlib.import_module("tiny")
    importlib.reload(tiny)
    torch.manual_seed(0)
    net = tiny.Tiny().eval()
    x = torch.randn(2, 4)
    torch.save(net.state_dict(), tmp_path / "tiny.pth")
    torch.save({"epoch": 3, "model_state_dict": net.state_dict(), "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pt")
    torch.save(net, tmp_path / "whole.pth")
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "tiny.pt2")
    torch.jit.save(torch.jit.trace(net, x), tmp_path / "tiny_ts.pt")
    from safetensors.torch import save_file

    save_file(net.state_dict(), tmp_path / "tiny.safetensors")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, net, x


def test_detects_every_torch_format(files):
    folder, _, _ = files
    assert detect_format(folder / "tiny.pt2") == "torch.export"
    assert detect_format(folder / "tiny.pth") == "torch.state_dict"
    assert detect_format(folder / "whole.pth") == "torch.state_dict"  # told apart only by loading safely
    assert detect_format(folder / "tiny_ts.pt") == "torch.script"
    assert detect_format(folder / "tiny.safetensors") == "torch.safetensors"


def test_each_torch_format_loads_to_the_same_numbers(files):
    folder, net, x = files
    expected = net(x)
    for name, options in [("tiny.pth", {"model_class": "tiny:Tiny"}), ("ckpt.pt", {"model_class": "tiny:Tiny"}),
                          ("tiny.safetensors", {"model_class": "tiny:Tiny"}), ("tiny.pt2", {}),
                          ("tiny_ts.pt", {}), ("whole.pth", {"trust": True})]:
        loaded = load_torch(folder / name, **options)
        assert loaded.framework == "torch"
        assert not loaded.model.training
        torch.testing.assert_close(loaded.model(x), expected, rtol=0, atol=0, msg=name)
    ckpt = load_torch(folder / "ckpt.pt", model_class="tiny:Tiny")
    assert any("model_state_dict" in n for n in ckpt.notes)


def test_pt2_brings_its_example_inputs_and_takes_eval(files):
    folder, _, x = files
    loaded = load_torch(folder / "tiny.pt2")
    assert [tuple(t.shape) for t in loaded.example_inputs] == [tuple(x.shape)]
    loaded.model.eval()  # a bare ExportedProgram.module() refuses this; the parity checker calls it
    loaded.model.train(False)


def test_whole_pickle_is_refused_without_trust_and_names_what_it_would_import(files):
    folder, _, _ = files
    with pytest.raises(BadInputError, match="whole pickled model") as e:
        load_torch(folder / "whole.pth")
    assert "tiny.Tiny" in str(e.value)
    assert "--trust" in e.value.hint


def test_input_shapes_and_dtypes(files):
    folder, _, _ = files
    loaded = load_torch(folder / "tiny.pth", model_class="tiny:Tiny", input_shapes=["3,4"])
    assert loaded.example_inputs[0].shape == (3, 4)
    assert parse_input_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_input_shape("2x8") == (2, 8)
    for bad in ("", "a,b", "2,,3", "0,3", "-2,4", "??,4"):
        with pytest.raises(BadInputError, match="not a shape"):
            parse_input_shape(bad)
    # ? or -1: a size that must stay dynamic, traced at 1 (batch) or 32
    assert parse_input_shape("-1,4") == (1, 4) and parse_input_shape("1,3,?,?") == (1, 3, 32, 32)
    with pytest.raises(BadInputError, match="input-dtype"):
        load_torch(folder / "tiny.pth", model_class="tiny:Tiny", input_shapes=["3,4"], input_dtypes=["complex7"])
    ints = load_torch(folder / "tiny.pth", model_class="tiny:Tiny", input_shapes=["3,4", "3"],
                      input_dtypes=["float32", "int64"])
    assert ints.example_inputs[1].dtype == torch.int64


def test_model_class_errors(files):
    with pytest.raises(BadInputError, match="not of the form"):
        import_model_class("tiny.Tiny")
    with pytest.raises(BadInputError, match="cannot import 'nosuch'"):
        import_model_class("nosuch:Net")
    with pytest.raises(BadInputError, match="has no 'Nope'"):
        import_model_class("tiny:Nope")
    folder, _, _ = files
    assert import_model_class(f"{folder / 'tiny.py'}:Tiny").__name__ == "Tiny"
    with pytest.raises(BadInputError, match="holds only weights"):
        load_torch(folder / "tiny.pth")


def test_weights_that_do_not_fit_the_class(files, tmp_path):
    torch.save({"fc.weight": torch.zeros(5, 4), "fc.bias": torch.zeros(5)}, tmp_path / "wrong.pth")
    with pytest.raises(BadInputError, match=r"shapes differ for 2 \(fc.weight \(5, 4\) vs \(3, 4\)"):
        load_torch(tmp_path / "wrong.pth", model_class="tiny:Tiny")
    torch.save({"other.weight": torch.zeros(3, 4)}, tmp_path / "other.pth")
    with pytest.raises(BadInputError, match=r"missing 2 \(fc.weight, fc.bias\); unexpected 1 \(other.weight\)"):
        load_torch(tmp_path / "other.pth", model_class="tiny:Tiny")


@pytest.mark.parametrize("name, content, says", [
    ("empty.pth", b"", "empty"),
    ("random.pth", os.urandom(2048), "not a PyTorch file"),
    ("random.pt2", b"\x00" * 64, "not a PyTorch file"),
    ("model.txt", b"hello", "unknown model file type"),
    ("model", b"hello", "no extension"),
    ("fake.safetensors", b"\x89HDF\r\n\x1a\n" + b"\x00" * 60, "not a safetensors file"),
    ("fake.h5", b"not hdf5 at all", "not an HDF5 file"),
    ("fake.tflite", b"\x00" * 64, "not a TensorFlow Lite"),
    ("fake.keras", b"\x80\x02garbage", "not a Keras .keras archive"),
], ids=lambda v: v if isinstance(v, str) and "." in v or v == "model" else "")
def test_bad_files_are_named_with_a_hint(tmp_path, name, content, says):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(BadInputError, match=says) as e:
        detect_format(tmp_path / name)
    assert e.value.hint
    assert "\n" not in str(e.value)


def test_truncated_and_garbage_archives(files, tmp_path):
    folder, _, _ = files
    data = (folder / "tiny.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated"):
        detect_format(tmp_path / "cut.pth")
    with zipfile.ZipFile(tmp_path / "junk.keras", "w") as z:
        z.writestr("junk", b"x" * 100)
    with pytest.raises(BadInputError, match="not a Keras model"):
        detect_format(tmp_path / "junk.keras")
    with zipfile.ZipFile(tmp_path / "junk.pth", "w") as z:
        z.writestr("junk", b"x" * 100)
    with pytest.raises(BadInputError, match="not one PyTorch wrote"):
        detect_format(tmp_path / "junk.pth")
    (tmp_path / "sd_dir").mkdir()
    with pytest.raises(BadInputError, match="neither a TensorFlow SavedModel"):
        detect_format(tmp_path / "sd_dir")
    with pytest.raises(BadInputError, match="does not exist"):
        detect_format(tmp_path / "nowhere.pt2")


def test_wrong_framework_is_named(files):
    folder, _, _ = files
    with pytest.raises(BadInputError, match="not a Keras/TensorFlow one") as e:
        load_keras(folder / "tiny.pt2")
    assert "torch2tf" in e.value.hint


def test_load_inputs(tmp_path):
    a, b = np.ones((2, 3), "float32"), np.arange(4)
    np.savez(tmp_path / "in.npz", a, b)
    got = load_inputs(tmp_path / "in.npz")
    assert [x.shape for x in got] == [(2, 3), (4,)]
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(BadInputError, match="not a readable"):
        load_inputs(tmp_path / "bad.npz")


@pytest.fixture(scope="module")
def keras_twin(tmp_path_factory):
    """A Keras model saved as .keras, .h5, an exported SavedModel and .tflite."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    folder = tmp_path_factory.mktemp("keras")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="relu")(keras.layers.Dense(5)(inp)))
    model.save(folder / "m.keras")
    model.save(folder / "m.h5")
    model.export(str(folder / "m_sm"), verbose=False)
    from xlate.save import tflite_bytes

    (folder / "m.tflite").write_bytes(tflite_bytes(model))
    return folder, model


def test_every_keras_format_runs_to_the_same_numbers(keras_twin):
    folder, model = keras_twin
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    expected = np.asarray(model(x))
    for name, fmt in [("m.keras", "keras"), ("m.h5", "keras.h5"), ("m_sm", "savedmodel"), ("m.tflite", "tflite")]:
        loaded = load_model(folder / name)
        assert (loaded.framework, loaded.format) == ("keras", fmt)
        assert loaded.convertible == (fmt in ("keras", "keras.h5"))
        np.testing.assert_allclose(np.asarray(loaded.model(x)), expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_architecture_is_refused_for_graph_only_artifacts(keras_twin):
    folder, _ = keras_twin
    with pytest.raises(BadInputError, match="no Keras model"):
        load_keras(folder / "m_sm", architecture=True)
    with pytest.raises(BadInputError, match="no architecture"):
        load_keras(folder / "m.tflite", architecture=True)


def test_damaged_keras_archive(tmp_path):
    with zipfile.ZipFile(tmp_path / "broken.keras", "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"zz")
    with pytest.raises(BadInputError, match="cannot load the Keras model") as e:
        load_keras(tmp_path / "broken.keras")
    assert "save it again" in e.value.hint


def test_keras_lambda_layers_need_trust(tmp_path):
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0)(inp))
    model.save(tmp_path / "lam.keras")
    with pytest.raises(BadInputError, match="Lambda") as e:
        load_keras(tmp_path / "lam.keras")
    assert "--trust" in e.value.hint
    loaded = load_keras(tmp_path / "lam.keras", trust=True)
    np.testing.assert_allclose(np.asarray(loaded.model(np.ones((1, 4), "float32"))), 2.0)
