"""Large-model plumbing: variables made from the ported weights, layers that keep their own
initializers, a gate that copies no weights, half precision kept half, and a converted decoder
converted back on the direct path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import xlate
import xlate.keras_layers  # registers xlate's layers for load_model
from xlate.record import record_of


class Zoo(torch.nn.Module):
    """One of each layer whose Keras variables are created from the ported values."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.dw = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.bn = torch.nn.BatchNorm2d(4)
        self.gn = torch.nn.GroupNorm(2, 4)
        self.act = torch.nn.PReLU(4)
        self.ln = torch.nn.LayerNorm(8)
        self.fc = torch.nn.Linear(4 * 6 * 6 + 8, 5)

    def forward(self, x, ids):
        y = self.act(self.gn(self.bn(self.dw(self.conv(x)))))
        e = self.ln(self.emb(ids)).mean(1)
        return self.fc(torch.cat([torch.flatten(y, 1), e], 1))


def _zoo():
    torch.manual_seed(0)
    m = Zoo().eval()
    with torch.no_grad():  # realistic BatchNorm statistics
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
    return m, (torch.randn(2, 3, 6, 6), torch.randint(0, 10, (2, 5)))


def _refuse_random(*args, **kwargs):
    raise AssertionError("a Keras variable was drawn at random, then overwritten by the port")


def test_variables_are_created_from_the_ported_weights_not_drawn_at_random(monkeypatch):
    import keras.src.random as keras_random

    module, inputs = _zoo()
    for name in ("uniform", "normal", "truncated_normal"):
        monkeypatch.setattr(keras_random, name, _refuse_random)
    model = xlate.torch_to_keras(module, inputs)  # the parity gate passes: the values are the ported ones
    assert len(model.weights) >= 16


def test_converted_layers_keep_their_own_initializers():
    module, inputs = _zoo()
    model = xlate.torch_to_keras(module, inputs)
    text = json.dumps(model.get_config(), default=str)
    assert "FromTorch" not in text
    by_type = {type(layer).__name__: layer.get_config() for layer in model.layers}
    expected = {
        "Dense": {"kernel_initializer": "GlorotUniform", "bias_initializer": "Zeros"},
        "Conv2D": {"kernel_initializer": "GlorotUniform", "bias_initializer": "Zeros"},
        "DepthwiseConv2D": {"depthwise_initializer": "GlorotUniform", "bias_initializer": "Zeros"},
        "Embedding": {"embeddings_initializer": "RandomUniform"},
        "BatchNormalization": {"gamma_initializer": "Ones", "beta_initializer": "Zeros",
                               "moving_mean_initializer": "Zeros", "moving_variance_initializer": "Ones"},
        "GroupNormalization": {"gamma_initializer": "Ones", "beta_initializer": "Zeros"},
        "LayerNormalization": {"gamma_initializer": "Ones", "beta_initializer": "Zeros"},
        "PReLU": {"alpha_initializer": "Zeros"},
    }
    for layer_type, initializers in expected.items():
        config = by_type[layer_type]
        for key, class_name in initializers.items():
            assert config[key]["class_name"] == class_name, (layer_type, key, config[key])
    # a clone trained from scratch starts from those initializers, not from the ported weights
    clone = keras.models.clone_model(model)
    dense = next(i for i, w in enumerate(model.weights) if w.path.endswith("kernel") and len(w.shape) == 2)
    assert not np.allclose(clone.weights[dense].numpy(), model.weights[dense].numpy())
    assert keras.Model.from_config(model.get_config()).count_params() == model.count_params()


def test_tensorflow_names_variables_by_their_keras_name_alone(tmp_path):
    """TensorFlow's own variable names carry no layer scope (one cached kernel per name and shape,
    not one per variable); Keras names and paths, which saving and training use, are the layers'."""
    tf = pytest.importorskip("tensorflow")
    module, inputs = _zoo()
    model = xlate.torch_to_keras(module, inputs)
    paths = [w.path for w in model.weights]
    assert len(set(paths)) == len(paths) and all("/" in p for p in paths)
    assert {w.value.name for w in model.weights} == {f"{w.name}:0" for w in model.weights}
    with tf.name_scope("outer"):  # the naming ends with the conversion
        assert tf.Variable(1.0, name="after").name == "outer/after:0"
    x = [t.numpy() for t in inputs]
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(reloaded(x)), np.asarray(model(x)))
    model.compile(optimizer="adam", loss="mse")  # one slot per variable, although names repeat
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(x, np.zeros((2, 5), "float32"), epochs=1, verbose=0)
    assert len(model.optimizer.variables) == 2 * len(before) + 2
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


@pytest.mark.parametrize("perm", [(2, 3, 1, 0), (1, 0), (0, 2, 1), (2, 0, 1, 3)])
@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("memory", ["torch", "read-only", "unaligned"])
def test_a_permuted_weight_view_becomes_its_own_contiguous_variable(perm, large, memory):
    """A transposed kernel (a view of the torch tensor; a large one is read in place by the backend
    through DLPack and permuted there, a small one permuted by NumPy; a read-only one, as a memory
    map gives, copied): the variable holds the permuted values, in its own memory."""
    from xlate.torch2keras.ported import BACKEND_TRANSPOSE_MIN, for_variable

    shape = ((64, 40, 9, 4) if large else (5, 3, 2, 4))[:len(perm)]
    if large and len(perm) < 4:
        shape = (int(BACKEND_TRANSPOSE_MIN ** (1 / len(perm))) + 2,) * len(perm)
    base = torch.randn(shape)
    if memory == "unaligned":  # 16 bytes into a 64-byte-aligned block, as a large torch tensor can be
        block = torch.empty(base.numel() + 32)
        skip = next(k for k in range(4, 20) if (block.data_ptr() + 4 * k) % 64 == 16)
        base = block[skip:skip + base.numel()].view(shape).copy_(base)
    array = base.numpy()
    if memory == "read-only":
        array = array.view()
        array.setflags(write=False)
    view = array.transpose(perm)
    expected = view.copy()
    var = keras.Variable(for_variable(view, "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(var), expected)
    base.add_(1.0)  # the torch tensor changes; the variable must not
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(var), expected)
    var.assign(var + 5.0)  # nor does the torch tensor change with the variable
    np.testing.assert_array_equal(base.numpy().transpose(perm), expected + 1.0)


def test_the_gate_copies_no_weights_in_eval_mode():
    from xlate.runners import KerasRunner, TorchRunner

    module, inputs = _zoo()
    model = xlate.torch_to_keras(module, inputs, check=False)
    params = {id(p) for p in module.parameters()}
    with TorchRunner(module, "cpu", False) as runner:
        saved = {id(t): s for _, _, t, s in runner.slots}
        for p in module.parameters():
            assert saved[id(p)].data_ptr() == p.data_ptr()  # a reference, not a clone
        assert all(saved[id(b)].data_ptr() != b.data_ptr() for b in module.buffers() if b.numel() and id(b) not in params)
    with KerasRunner(model, False) as runner:
        assert runner.weights == []
    with KerasRunner(model, True) as runner:
        assert {id(v) for v, _ in runner.weights} == {id(v) for v in model.non_trainable_weights}


def _tiny_llama(layers=2, kv_heads=1):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=layers, intermediate_size=128,
                                      num_attention_heads=4, num_key_value_heads=kv_heads, vocab_size=100,
                                      tie_word_embeddings=True, use_cache=False, max_position_embeddings=64)
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    return transformers.LlamaForCausalLM(config).eval(), ids


def test_a_bfloat16_decoder_stays_bfloat16_end_to_end(tmp_path):
    module, ids = _tiny_llama()
    module.to(torch.bfloat16)
    model = xlate.torch_to_keras(module, (ids,))  # gated in bfloat16, with bfloat16 tolerances
    record = record_of(model)
    assert any("bfloat16 dtype policy" in n for n in record.notes), record.notes
    floats = {str(w.dtype) for w in model.weights if "float" in str(w.dtype)}
    assert floats == {"bfloat16"}
    assert {layer.dtype_policy.name for layer in model.layers if layer.weights} == {"bfloat16"}
    report = xlate.check_parity(module, model, dtype="bfloat16")
    assert report.passed and report.atol > 1e-5 and "bfloat16" in report.message
    out = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(model(ids.numpy()), "float32")))
    path = tmp_path / "llama.keras"
    model.save(path)
    back = keras.saving.load_model(path)
    assert {str(w.dtype) for w in back.weights if "float" in str(w.dtype)} == {"bfloat16"}
    again = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(back(ids.numpy()), "float32")))
    np.testing.assert_array_equal(out, again)


def test_a_converted_decoder_converts_back_on_the_direct_path(tmp_path):
    module, ids = _tiny_llama()
    model = xlate.torch_to_keras(module, (ids,))
    path = tmp_path / "llama.keras"
    model.save(path)  # a .keras config stores slice keys as lists
    back = xlate.keras_to_torch(keras.saving.load_model(path))  # gated against the Keras model
    record = record_of(back)
    assert record.path == "direct", record.notes
    with torch.no_grad():
        np.testing.assert_allclose(back(ids).numpy(), module(ids).logits.numpy(), atol=1e-4, rtol=1e-4)


MODEL_FILE = textwrap.dedent('''
    import torch


    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.norm = torch.nn.LayerNorm(8)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.conv(x)).mean((2, 3))
            return self.fc(self.norm(y))
''')


def test_torch2tf_dtype_bfloat16_keeps_a_bfloat16_checkpoint_half(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "net.py").write_text(MODEL_FILE)
    sys.path.insert(0, str(tmp_path))
    try:
        import net
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    save_file({k: v.to(torch.bfloat16) for k, v in net.Net().state_dict().items()}, tmp_path / "net.safetensors")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "xlate", "torch2tf", "net.safetensors", "--model-class", "net:Net", "--input-shape",
         "2,3,8,8", "--dtype", "bfloat16", "-o", "net.keras", "--json", "report.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["dtype"] == "bfloat16", report
    model = keras.saving.load_model(tmp_path / "net.keras")
    assert {str(w.dtype) for w in model.weights} == {"bfloat16"}


def _mapped_file(address: int) -> str | None:
    """The file whose mapping holds ``address`` in this process (Linux /proc/self/maps), if any."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            begin, end = (int(a, 16) for a in fields[0].split("-"))
            if begin <= address < end:
                return fields[5].strip() if len(fields) > 5 else None
    return None


def test_safetensors_weights_stay_memory_mapped_when_loaded(tmp_path, monkeypatch):
    """A .safetensors state_dict (and a tf2torch folder) loads into the module's parameters as the
    file's mapped pages, not as a copy; a tensor of another dtype is cast to the module's, tied
    parameters stay tied, and the numbers are the file's."""
    from safetensors.torch import save_file

    from xlate.load import load_torch
    from xlate.mapped import load_into

    (tmp_path / "two.py").write_text(
        "import torch\nclass Two(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a = torch.nn.Linear(6, 5)\n        self.b = torch.nn.Linear(5, 2)\n"
        "    def forward(self, x):\n        return self.b(torch.relu(self.a(x)))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    source = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    state = {k.replace("0.", "a.").replace("2.", "b."): v for k, v in source.state_dict().items()}
    save_file(state, tmp_path / "two.safetensors")
    loaded = load_torch(tmp_path / "two.safetensors", model_class="two:Two").model
    for name, p in loaded.named_parameters():
        if sys.platform.startswith("linux"):
            assert _mapped_file(p.data_ptr()) == str(tmp_path / "two.safetensors"), name
        assert p.requires_grad
        torch.testing.assert_close(p.detach(), state[name], rtol=0, atol=0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)

    half = torch.nn.Linear(4, 4)
    load_into(half, {"weight": torch.ones(4, 4, dtype=torch.float16), "bias": torch.zeros(4, dtype=torch.float16)})
    assert half.weight.dtype == torch.float32 and half.weight.requires_grad

    tied = torch.nn.Module()
    tied.emb, tied.head = torch.nn.Embedding(3, 2), torch.nn.Linear(2, 3, bias=False)
    tied.head.weight = tied.emb.weight
    load_into(tied, {"emb.weight": torch.full((3, 2), 2.0), "head.weight": torch.full((3, 2), 2.0)})
    assert tied.head.weight is tied.emb.weight and float(tied.emb.weight.detach()[0, 0]) == 2.0
