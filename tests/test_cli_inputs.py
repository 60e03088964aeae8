"""The inputs people actually have, through the real ``xlate`` executable: Hugging Face
``save_pretrained`` folders, factories with arguments, ONNX files; quantized TFLite out; --quiet
and --json -; and the same bad-input care for each (exit 2, one line and a hint, nothing written).

The conversions are slow (each call imports torch and TensorFlow, TFLite writes take seconds) and
marked so; the bad-input cases that stop before any conversion run in the fast suite.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import assert_bad_input, listing, run_xlate

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

NETS = textwrap.dedent('''
    import torch


    class ConvNet(torch.nn.Module):
        """A classifier that needs arguments: conv, BatchNorm, Linear head."""

        def __init__(self, num_classes, width=4):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, width, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(width)
            self.fc = torch.nn.Linear(width * 8 * 8, num_classes)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


    def make_convnet(num_classes=5, width=4):
        """A factory function, as model zoos have them."""
        return ConvNet(num_classes, width)
''')

# A stand-in for timm with the two entry points xlate's `timm:` shortcut calls (the real timm needs
# a torchvision built for this torch; it is checked in the zoo environment, see the closing note).
TIMM_STUB = textwrap.dedent('''
    from nets import make_convnet

    _MODELS = {"convnet_tiny": make_convnet}


    def is_model(name):
        return name in _MODELS


    def create_model(name, pretrained=False, **kwargs):
        if pretrained:
            raise RuntimeError("the stub has no weights to download")
        model = _MODELS[name](**kwargs)
        model.pretrained_cfg = {"input_size": (3, 8, 8)}
        return model
''')


def _save_hf(folder: Path, kind: str, **save) -> None:
    torch.manual_seed(0)
    if kind == "bert":
        config = transformers.BertConfig(vocab_size=96, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=32, num_labels=3)
        model = transformers.BertForSequenceClassification(config)
    elif kind == "llama":
        config = transformers.LlamaConfig(vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32, num_labels=4)
        model = transformers.ViTForImageClassification(config)
    model.eval().save_pretrained(folder, **save)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """nets.py (a class with arguments and a factory), a timm stand-in, Hugging Face folders,
    calibration data, an ONNX export and the damaged or mismatched files of the bad-input cases."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "nets.py").write_text(NETS)
    (folder / "timm").mkdir()
    (folder / "timm" / "__init__.py").write_text(TIMM_STUB)
    for kind in ("bert", "llama", "vit"):
        _save_hf(folder / kind, kind)
    _save_hf(folder / "bert_sharded", "bert", max_shard_size=5000)  # bytes: 4 shards and an index
    assert (folder / "bert_sharded" / "model.safetensors.index.json").exists()
    rng = np.random.default_rng(0)
    np.save(folder / "calib.npy", rng.standard_normal((32, 3, 8, 8)).astype("float32"))
    np.save(folder / "calib_wrong.npy", rng.standard_normal((32, 3, 9, 9)).astype("float32"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("nets_for_tests", folder / "nets.py")
    nets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nets)
    torch.manual_seed(0)
    net = nets.make_convnet(num_classes=10).eval()
    from safetensors.torch import save_file

    save_file(net.state_dict(), folder / "convnet10.safetensors")
    torch.onnx.export(net, (torch.randn(2, 3, 8, 8),), str(folder / "convnet.onnx"), dynamo=True,
                      external_data=False, verbose=False)
    _bad_files(folder)
    return folder


def _bad_files(folder: Path) -> None:
    import shutil

    # the same weights as a pickle (older save_pretrained wrote pytorch_model.bin)
    (folder / "bert_bin").mkdir()
    shutil.copy(folder / "bert" / "config.json", folder / "bert_bin")
    from safetensors.torch import load_file

    torch.save(load_file(folder / "bert" / "model.safetensors"), folder / "bert_bin" / "pytorch_model.bin")
    # a folder whose weights were cut short
    shutil.copytree(folder / "bert", folder / "bert_truncated")
    weights = folder / "bert_truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    # a sharded folder with one shard cut short, one with a shard missing; pickled weights cut short
    shards = sorted(p.name for p in (folder / "bert_sharded").glob("model-*.safetensors"))
    for name in ("bert_shard_truncated", "bert_shard_missing"):
        shutil.copytree(folder / "bert_sharded", folder / name)
    shard = folder / "bert_shard_truncated" / shards[1]
    shard.write_bytes(shard.read_bytes()[:-100])
    (folder / "bert_shard_missing" / shards[-1]).unlink()
    shutil.copytree(folder / "bert_bin", folder / "bert_bin_truncated")
    pickled = folder / "bert_bin_truncated" / "pytorch_model.bin"
    pickled.write_bytes(pickled.read_bytes()[:-5000])
    # a folder whose config does not match its weights (hidden size 16 vs 24)
    shutil.copytree(folder / "bert", folder / "bert_mismatch")
    config = json.loads((folder / "bert_mismatch" / "config.json").read_text())
    (folder / "bert_mismatch" / "config.json").write_text(json.dumps({**config, "hidden_size": 24,
                                                                      "intermediate_size": 48}))
    for name, change in (("bert_no_model_type", lambda c: c.pop("model_type")),
                         ("bert_no_architectures", lambda c: c.pop("architectures")),
                         ("bert_unknown_arch", lambda c: c.update(architectures=["BertForTeleportation"]))):
        shutil.copytree(folder / "bert", folder / name)
        config = json.loads((folder / name / "config.json").read_text())
        change(config)
        (folder / name / "config.json").write_text(json.dumps(config))
    (folder / "corrupt.onnx").write_bytes(np.random.default_rng(2).bytes(3000))
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Hardmax", ["a"], ["b"], name="pick_one"),
             helper.make_node("Det", ["b"], ["c"], name="det_of_it"),
             helper.make_node("Hardmax", ["c"], ["y"], name="pick_again")]
    graph = helper.make_graph(nodes, "unsupported", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "unsupported.onnx")


def _report(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


# --- Hugging Face folders ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind, outputs", [("bert", ["bert.keras", "bert.tflite"]),
                                           ("llama", ["llama.keras", "llama.tflite"]),
                                           ("vit", ["vit.keras"])])
def test_hugging_face_folder_to_keras_and_tflite(work, kind, outputs):
    for out in outputs:
        made = run_xlate("torch2tf", kind, "-o", out, "--json", f"{out}.json", cwd=work)
        assert made.returncode == 0, made.stderr
        report = _report(work, f"{out}.json")
        assert report["passed"] is True
        assert report["per_output"][0]["shape"][-1] == {"bert": 3, "llama": 96, "vit": 4}[kind]  # the logits


@pytest.mark.slow
def test_hugging_face_output_key_sharded_folder_and_check(work):
    made = run_xlate("torch2tf", "bert_sharded", "--output-key", "logits", "--seq-len", "8", "-o", "sharded.keras",
                     "--json", "-", "--quiet", cwd=work)
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)  # --json -: the report is all there is on stdout
    assert report["passed"] is True and report["per_output"][0]["shape"] == [2, 3]
    assert "converting" not in made.stderr  # --quiet: no progress lines either
    checked = run_xlate("check", "bert_sharded", "sharded.keras", "--seq-len", "8", "--quiet", cwd=work)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("PASS") and len(checked.stdout.strip().splitlines()) == 1


def test_load_torch_returns_module_and_example_inputs(work):
    import xlate

    module, inputs = xlate.load_torch(work / "bert_sharded")
    assert inputs[0].dtype == torch.int64 and inputs[0].shape == (2, 16) and int(inputs[0].max()) < 96
    assert module(*inputs).shape == (2, 3)
    module, inputs = xlate.load_torch(work / "vit", output_key="logits")
    assert inputs[0].shape == (2, 3, 16, 16) and module(*inputs).shape == (2, 4)
    hidden, _ = xlate.load_torch(work / "llama", output_key="last_hidden_state", hf_class="AutoModel")
    assert hidden(torch.zeros(1, 5, dtype=torch.int64)).shape == (1, 5, 16)  # the checkpoint's lm_head left out
    pickled, inputs = xlate.load_torch(work / "bert_bin", trust=True)
    torch.testing.assert_close(pickled(*inputs), module_of(work / "bert")(*inputs), rtol=0, atol=0)


def module_of(folder):
    import xlate

    return xlate.load_torch(folder)[0]


# --- factories with arguments ------------------------------------------------------------------


@pytest.mark.slow
def test_factories_with_model_args_and_weights(work):
    made = run_xlate("torch2tf", "--model-class", "nets:make_convnet", "--model-args", '{"num_classes": 10}',
                     "--weights", "convnet10.safetensors", "--input-shape", "2,3,8,8", "-o", "factory_sm", "-q",
                     cwd=work)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("wrote factory_sm (savedmodel") and len(made.stdout.strip().splitlines()) == 1
    assert (work / "factory_sm" / "saved_model.pb").exists()
    # a class with positional arguments; the factory's own (random) initialization
    positional = run_xlate("torch2tf", "--model-class", "nets:ConvNet", "--model-args", "[7, 2]", "--input-shape",
                           "2,3,8,8", "-o", "positional.keras", "--json", "positional.json", cwd=work)
    assert positional.returncode == 0, positional.stderr
    assert _report(work, "positional.json")["per_output"][0]["shape"] == [2, 7]
    # timm:NAME is timm.create_model(NAME, pretrained=False, ...), inputs from its pretrained_cfg
    timm = run_xlate("torch2tf", "--model-class", "timm:convnet_tiny", "--model-args", '{"num_classes": 3}',
                     "-o", "timm_sm", "--json", "timm.json", cwd=work)
    assert timm.returncode == 0, timm.stderr
    assert _report(work, "timm.json")["per_output"][0]["shape"] == [2, 3]


# --- ONNX in -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_to_trainable_keras_and_to_torch_code(work):
    made = run_xlate("onnx2keras", "convnet.onnx", "-o", "from_onnx.keras", "--json", "onnx.json", cwd=work)
    assert made.returncode == 0, made.stderr
    report = _report(work, "onnx.json")
    assert report["passed"] is True and report["source"] == "onnxruntime"
    import keras

    import xlate.keras_layers  # noqa: F401 - xlate's custom layers, if the model uses any

    model = keras.saving.load_model(work / "from_onnx.keras")
    assert model.trainable_weights
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    assert model.inputs[0].shape == (2, 3, 8, 8)  # exported at batch 2, with shapes fixed to it
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype("float32")
    model.fit(x, np.ones((2, 10), "float32"), epochs=1, batch_size=2, verbose=0)
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights))

    torch_made = run_xlate("onnx2torch", "convnet.onnx", "-o", "from_onnx", cwd=work)
    assert torch_made.returncode == 0, torch_made.stderr
    code = (work / "from_onnx" / "model.py").read_text()
    assert "class Net(nn.Module)" in code and "torch.conv2d(" in code and "import xlate" not in code
    assert {p.name for p in (work / "from_onnx").iterdir()} == {"model.py", "model.safetensors"}
    checked = run_xlate("check", "convnet.onnx", "from_onnx.keras", cwd=work)  # onnxruntime vs the Keras file
    assert checked.returncode == 0, checked.stderr


def test_unsupported_onnx_ops_are_listed_at_once_with_their_nodes(work):
    before = listing(work)
    result = run_xlate("onnx2keras", "unsupported.onnx", "-o", "never.keras", cwd=work)
    assert result.returncode == 3, result.stderr
    error = next(ln for ln in result.stderr.splitlines() if ln.startswith("error: "))
    for where in ("Hardmax at pick_one", "Det at det_of_it", "Hardmax at pick_again"):
        assert where in error, error
    assert listing(work) == before


# --- quantized TFLite --------------------------------------------------------------------------


@pytest.mark.slow
def test_quantized_tflite_int8_and_fp16_report_their_metrics(work):
    args = ["torch2tf", "--model-class", "nets:make_convnet", "--weights", "convnet10.safetensors", "--model-args",
            '{"num_classes": 10}', "--input-shape", "2,3,8,8", "--calibration", "calib.npy"]
    int8 = run_xlate(*args, "-o", "int8.tflite", "--quantize", "int8", "--int8-io", "--json", "int8.json", cwd=work)
    assert int8.returncode == 0, int8.stderr
    report = _report(work, "int8.json")
    assert report["passed"] is True and report["quantize"] == "int8"
    output = report["per_output"][0]
    assert output["cosine"] >= 0.99 and output["top1"] >= 0.9 and output["max_abs_err"] > 0
    assert {t["role"] for t in report["io"]} == {"input", "output"}
    assert all(t["dtype"] == "int8" and t["scale"] > 0 for t in report["io"])
    assert report["float_gate"]["passed"] is True and report["samples"] == 32
    fp16 = run_xlate(*args, "-o", "fp16.tflite", "--quantize", "fp16", "--json", "fp16.json", cwd=work)
    assert fp16.returncode == 0, fp16.stderr
    assert _report(work, "fp16.json")["per_output"][0]["cosine"] > 0.9999
    # the gate can fail: no quantized model keeps a cosine of exactly 1
    before = listing(work)
    strict = run_xlate(*args, "-o", "strict.tflite", "--quantize", "int8", "--min-cosine", "1", cwd=work)
    assert strict.returncode == 1, strict.stderr
    assert "cosine" in strict.stderr and "nothing was written" in strict.stderr
    assert listing(work) == before


# --- bad input: exit 2, one line, nothing written ----------------------------------------------


BAD_CASES = [
    ("hf-truncated-weights", ["torch2tf", "bert_truncated", "-o", "out.keras"],
     "model.safetensors is damaged or cut short"),
    ("hf-truncated-shard", ["torch2tf", "bert_shard_truncated", "-o", "out.keras"], "is damaged"),
    ("hf-missing-shard", ["torch2tf", "bert_shard_missing", "-o", "out.keras"], "1 shard(s) not in the folder"),
    ("hf-truncated-pickled-weights", ["torch2tf", "bert_bin_truncated", "--trust", "-o", "out.keras"],
     "pytorch_model.bin"),
    ("hf-config-does-not-match-weights", ["torch2tf", "bert_mismatch", "-o", "out.keras"], "bert_mismatch"),
    ("hf-config-without-model-type", ["torch2tf", "bert_no_model_type", "-o", "out.keras"], "no model_type"),
    ("hf-config-without-architectures", ["torch2tf", "bert_no_architectures", "-o", "out.keras"],
     "names no architectures"),
    ("hf-unknown-architecture", ["torch2tf", "bert_unknown_arch", "-o", "out.keras"], "BertForTeleportation"),
    ("hf-unknown-hf-class", ["torch2tf", "bert", "--hf-class", "AutoModelForTeleportation", "-o", "out.keras"],
     "no such model class"),
    ("hf-wrong-output-key", ["torch2tf", "bert", "--output-key", "pooler", "-o", "out.keras"], "its outputs: logits"),
    ("hf-seq-len-too-long", ["torch2tf", "bert", "--seq-len", "100", "-o", "out.keras"], "max_position_embeddings"),
    ("model-args-not-json", ["torch2tf", "--model-class", "nets:make_convnet", "--model-args", "{num_classes: 10}",
                             "--input-shape", "2,3,8,8", "-o", "out.keras"], "not valid JSON"),
    ("model-args-a-number", ["torch2tf", "--model-class", "nets:make_convnet", "--model-args", "10",
                             "--input-shape", "2,3,8,8", "-o", "out.keras"], "object or list"),
    ("model-args-wrong-keyword", ["torch2tf", "--model-class", "nets:make_convnet", "--model-args",
                                  '{"classes": 10}', "--input-shape", "2,3,8,8", "-o", "out.keras"], "failed"),
    ("weights-do-not-fit-factory", ["torch2tf", "--model-class", "nets:make_convnet", "--weights",
                                    "convnet10.safetensors", "--input-shape", "2,3,8,8", "-o", "out.keras"],
     "shapes differ for 2 (fc.bias (10,) vs (5,)"),
    ("factory-would-download", ["torch2tf", "--model-class", "timm:convnet_tiny", "--model-args",
                                '{"pretrained": true}', "-o", "out.keras"], "would download"),
    ("no-model-at-all", ["torch2tf", "-o", "out.keras"], "no model given"),
    ("hf-option-on-a-state-dict", ["torch2tf", "convnet10.safetensors", "--model-class", "nets:make_convnet",
                                   "--hf-class", "AutoModel", "-o", "out.keras"], "--hf-class does not apply"),
    ("onnx-corrupt", ["onnx2keras", "corrupt.onnx", "-o", "out.keras"], "is damaged: it is not a readable ONNX"),
    ("onnx-not-onnx", ["onnx2torch", "calib.npy", "-o", "outdir"], "unknown model file type"),
    ("int8-without-calibration", ["torch2tf", "bert", "-o", "out.tflite", "--quantize", "int8"],
     "representative dataset"),
    ("quantize-not-tflite", ["torch2tf", "bert", "-o", "out.keras", "--quantize", "fp16"], "not a .tflite"),
    ("calibration-does-not-fit", ["torch2tf", "--model-class", "nets:make_convnet", "--input-shape", "2,3,8,8",
                                  "-o", "out.tflite", "--quantize", "int8", "--calibration", "calib_wrong.npy"],
     "calibration array 0 has shape (32, 3, 9, 9)"),
]


@pytest.mark.parametrize("args, says", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input_gives_one_line_and_a_hint(work, args, says):
    before = listing(work)
    assert_bad_input(run_xlate(*args, cwd=work), says=says, before=before, folder=work)


def test_pickled_bin_weights_need_trust(work):
    before = listing(work)
    refused = run_xlate("torch2tf", "bert_bin", "-o", "out.keras", cwd=work)
    assert_bad_input(refused, says="pytorch_model.bin", before=before, folder=work)
    assert "--trust" in refused.stderr
