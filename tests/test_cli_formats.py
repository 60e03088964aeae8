"""Every file format through the real ``xlate`` executable, both directions, and ``xlate demo``.

Slow (each call imports torch and TensorFlow afresh, and SavedModel/TFLite writes take seconds):
marked ``slow``; the fast CLI contract is in test_cli.py.
"""

from __future__ import annotations

import json

import pytest

from tests import test_cli
from tests.test_cli import assert_bad_input, listing, run_xlate

work = test_cli.work  # the same workspace fixture (one instance per module)

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def test_whole_pickle_loads_only_with_trust(work):
    before = listing(work)
    refused = run_xlate("torch2tf", "net_full.pth", "-o", "full.keras", "--input-shape", "2,6", cwd=work)
    assert_bad_input(refused, says="pickled model", before=before, folder=work)
    assert "--trust" in refused.stderr
    trusted = run_xlate("torch2tf", "net_full.pth", "-o", "full.keras", "--input-shape", "2,6", "--trust", cwd=work)
    assert trusted.returncode == 0, trusted.stderr
    assert (work / "full.keras").exists()


def test_inspect_lists_each_layer_and_its_route(work):
    import keras

    inp = keras.Input((6,))
    noisy = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GaussianNoise(0.1)(keras.layers.Dense(5)(inp))))
    noisy.save(work / "noisy.keras")
    result = run_xlate("inspect", "noisy.keras", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    routes = {i["op"]: i["route"] for i in json.loads(result.stdout)["items"]}
    assert routes == {"keras.layers.Dense": "table", "keras.layers.GaussianNoise": "table"}
    words = keras.Input((1,), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(words)
    strings = keras.Model(words, keras.layers.Embedding(4, 2, name="embed")(ids))
    strings.save(work / "strings.keras")
    refused = run_xlate("inspect", "strings.keras", cwd=work)
    assert refused.returncode == 3, refused.stderr  # what a conversion would exit with
    assert "NOT COVERED" in refused.stdout and "StringLookup" in refused.stdout
    assert "1 of 2 not covered" in refused.stdout
    covered = run_xlate("inspect", "twin.keras", "--json", cwd=work)
    assert covered.returncode == 0, covered.stderr
    report = json.loads(covered.stdout)
    assert report["covered"] == report["total"] == 2
    assert {i["row"] for i in report["items"]} == {"linear"}
    assert {i["route"] for i in report["items"]} == {"table"}


def test_state_dict_to_savedmodel_and_back_to_torch(work):
    made = run_xlate("torch2tf", "net.pth", "--model-class", "mynet:Net", "--input-shape", "2,6", "-o", "net_sm",
                     cwd=work)
    assert made.returncode == 0, made.stderr
    assert (work / "net_sm" / "saved_model.pb").exists()
    assert (work / "net_sm" / "assets.extra" / "xlate_model.keras").exists()
    # check runs the SavedModel's TensorFlow graph (what serving runs), not the stored Keras model
    checked = run_xlate("check", "net.pth", "net_sm", "--model-class", "mynet:Net", "--json", "sm.json", cwd=work)
    assert checked.returncode == 0, checked.stderr
    assert json.loads((work / "sm.json").read_text())["passed"] is True
    back = run_xlate("tf2torch", "net_sm", "-o", "net_from_sm", cwd=work)
    assert back.returncode == 0, back.stderr
    assert {p.name for p in (work / "net_from_sm").iterdir()} == {"model.py", "model.safetensors"}
    again = run_xlate("check", "net_sm", "net_from_sm", cwd=work)
    assert again.returncode == 0, again.stderr


def test_torchscript_to_tflite_then_check_and_refuse_tflite_as_a_source(work):
    made = run_xlate("torch2tf", "net_ts.pt", "--input-shape", "2,6", "-o", "net.tflite", cwd=work)
    assert made.returncode == 0, made.stderr
    assert (work / "net.tflite").read_bytes()[4:8] == b"TFL3"
    checked = run_xlate("check", "net.pt2", "net.tflite", "--samples", "2", cwd=work)
    assert checked.returncode == 0, checked.stderr
    before = listing(work)
    refused = run_xlate("tf2torch", "net.tflite", "-o", "from_tflite", cwd=work)
    assert_bad_input(refused, says="no architecture", before=before, folder=work)


def test_conv_net_to_tflite_keeps_the_nchw_interface(work):
    made = run_xlate("torch2tf", "conv.pt2", "-o", "conv.tflite", cwd=work)
    assert made.returncode == 0, made.stderr
    checked = run_xlate("check", "conv.pt2", "conv.tflite", cwd=work)
    assert checked.returncode == 0, checked.stderr


def test_native_layout_tflite_is_checked_with_io_layout_native(work):
    made = run_xlate("torch2tf", "conv.pt2", "-o", "conv_nhwc.tflite", "--io-layout", "native", cwd=work)
    assert made.returncode == 0, made.stderr
    plain = run_xlate("check", "conv.pt2", "conv_nhwc.tflite", cwd=work)
    assert plain.returncode == 2 and "--io-layout native" in plain.stderr, plain.stderr
    native = run_xlate("check", "conv.pt2", "conv_nhwc.tflite", "--io-layout", "native", cwd=work)
    assert native.returncode == 0, native.stderr


def test_safetensors_to_keras_and_h5_to_torch(work):
    made = run_xlate("torch2tf", "net.safetensors", "--model-class", "mynet:Net", "--input-shape", "2,6", "-o",
                     "st.keras", cwd=work)
    assert made.returncode == 0, made.stderr
    import keras

    keras.saving.load_model(work / "twin.keras").save(work / "twin.h5")
    back = run_xlate("tf2torch", "twin.h5", "-o", "twin_torch", "--json", "h5.json", cwd=work)
    assert back.returncode == 0, back.stderr
    assert json.loads((work / "h5.json").read_text())["passed"] is True
    checked = run_xlate("check", "twin_torch", "twin.h5", cwd=work)
    assert checked.returncode == 0, checked.stderr


def test_check_per_layer_names_the_tampered_layer_of_a_tf2torch_folder(work):
    made = run_xlate("tf2torch", "twin.keras", "-o", "twin_pkg", cwd=work)
    assert made.returncode == 0, made.stderr
    from safetensors.torch import load_file, save_file

    weights = work / "twin_pkg" / "model.safetensors"
    state = load_file(weights)
    last_bias = next(k for k, v in state.items() if k.endswith("bias") and v.shape == (3,))  # the output layer
    state[last_bias][0] += 0.01
    save_file(state, weights)
    result = run_xlate("check", "twin.keras", "twin_pkg", "--per-layer", "--json", "pl.json", cwd=work)
    assert result.returncode == 1, result.stderr
    report = json.loads((work / "pl.json").read_text())
    assert report["first_divergence"]["source_name"] == last_bias.rsplit(".", 1)[0]
    assert "first diverging layer" in result.stdout


def test_plain_savedmodel_is_checked_but_not_converted(work):
    import keras

    keras.saving.load_model(work / "twin.keras").export(str(work / "plain_sm"), verbose=False)
    checked = run_xlate("check", "net.pt2", "plain_sm", cwd=work)
    assert checked.returncode == 0, checked.stderr
    before = listing(work)
    refused = run_xlate("tf2torch", "plain_sm", "-o", "from_plain", cwd=work)
    assert_bad_input(refused, says="no Keras model", before=before, folder=work)


def test_progress_is_shown_for_a_large_model(work):
    big = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 16)).eval()
    torch.export.save(torch.export.export(big, (torch.randn(2, 1024),)), work / "big.pt2")
    made = run_xlate("torch2tf", "big.pt2", "-o", "big.keras", cwd=work)
    assert made.returncode == 0, made.stderr
    assert "1,066,000 parameters" in made.stderr
    assert "converting: done in" in made.stderr


def test_demo_converts_the_mnist_mlp_both_ways(work):
    result = run_xlate("demo", "--out", "demo_out", cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("PASS") >= 3  # two parity reports and the round trip
    assert (work / "demo_out" / "mnist_mlp.keras").exists()
    assert (work / "demo_out" / "mnist_mlp_torch" / "model.py").exists()
    assert "outputs" in result.stdout
    refused = run_xlate("demo", "--out", "demo_out", cwd=work)
    assert refused.returncode == 2 and "already exists" in refused.stderr
