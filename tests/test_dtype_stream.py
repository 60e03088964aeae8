"""The gate's float64 reference of a large torch module, one part at a time (xlate/dtype_stream.py):
the same numbers as moving the whole module, the module put back exactly, and never a float64
copy of every weight at once."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xlate import runners
from xlate.dtype_stream import DtypeStream, floating_bytes, parts


class Block(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.fc = torch.nn.Linear(width, width)

    def forward(self, x):
        return x + torch.tanh(self.fc(self.norm(x)))


class Decoder(torch.nn.Module):
    """Tied embeddings, a ModuleList torch never calls, a bare Parameter of the root."""

    def __init__(self, vocab=50, width=32, depth=6):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.layers = torch.nn.ModuleList(Block(width) for _ in range(depth))
        self.scale = torch.nn.Parameter(torch.rand(width) + 0.5)
        self.head = torch.nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(x * self.scale)


class ReadsAChildsWeight(torch.nn.Module):
    """Code outside a module reads its weight (F.linear refuses float32 weights on float64 inputs)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 16)
        self.out = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.out(torch.nn.functional.linear(x, self.proj.weight, self.proj.bias))


def _whole(module, arrays):
    with runners.TorchRunner(module, "cpu", False, torch.float64) as run:
        assert run.stream is None
        return run(arrays)


def _streamed(module, arrays, monkeypatch):
    monkeypatch.setattr(runners, "STREAM_ABOVE_BYTES", 1)
    monkeypatch.setattr("xlate.dtype_stream.MIN_PART_BYTES", 1)
    with runners.TorchRunner(module, "cpu", False, torch.float64) as run:
        out = run(arrays)
        streamed = run.stream is not None
    return out, streamed


def _state(module):
    return {k: (v.dtype, v.data_ptr(), v.clone()) for k, v in module.state_dict(keep_vars=True).items()}


def _same_state(before, module):
    after = module.state_dict(keep_vars=True)
    assert set(after) == set(before)
    for k, (dtype, ptr, value) in before.items():
        assert after[k].dtype == dtype and after[k].data_ptr() == ptr, k
        assert torch.equal(after[k], value), k


def test_a_streamed_float64_run_equals_moving_the_whole_module(monkeypatch):
    torch.manual_seed(0)
    module = Decoder().eval()
    ids = [np.random.default_rng(0).integers(0, 50, (2, 7))]
    whole = _whole(module, ids)
    before = _state(module)
    streamed, was_streamed = _streamed(module, ids, monkeypatch)
    assert was_streamed
    assert streamed[0].dtype == np.float64
    np.testing.assert_array_equal(streamed[0], whole[0])  # bit-identical
    _same_state(before, module)
    assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_only_the_running_part_is_float64(monkeypatch):
    torch.manual_seed(0)
    module = Decoder(vocab=40, width=64, depth=8).eval()
    total = floating_bytes(module)
    seen = []

    def measure(m, *_):
        seen.append(sum(t.numel() * 8 for t in module.state_dict().values() if t.dtype == torch.float64))

    for layer in module.layers:
        layer.fc.register_forward_hook(measure)
    monkeypatch.setattr("xlate.dtype_stream.MIN_PART_BYTES", 1)
    stream = DtypeStream(module, torch.float64)
    try:
        with torch.no_grad():
            out = module(torch.randint(0, 40, (2, 5)))
    finally:
        stream.close()
    assert out.dtype == torch.float64
    # at a layer: that layer, the root's own scale; never the float64 copy of the whole model (2x total)
    assert seen and max(seen) < total / 2
    assert all(t.dtype == torch.float32 for t in module.state_dict().values())


def test_containers_torch_never_calls_give_their_tensors_to_the_caller():
    module = Decoder(depth=3)
    plist = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(3))])
    module.extra = plist
    got = parts(module, budget=1)
    owners = {id(m) for m, _ in got}
    assert id(module.layers) not in owners and id(plist) not in owners
    root_tensors = next(ts for m, ts in got if m is module)
    assert any(t is plist[0] for t in root_tensors) and any(t is module.scale for t in root_tensors)


def test_code_reading_another_modules_weight_falls_back_to_the_whole_module(monkeypatch):
    torch.manual_seed(0)
    module = ReadsAChildsWeight().eval()
    x = [np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)]
    whole = _whole(module, x)
    before = _state(module)
    monkeypatch.setattr(runners, "STREAM_ABOVE_BYTES", 1)
    monkeypatch.setattr("xlate.dtype_stream.MIN_PART_BYTES", 1)  # each Linear its own part
    with runners.TorchRunner(module, "cpu", False, torch.float64) as run:
        out = run(x)
        assert run.stream is None  # it fell back
    np.testing.assert_array_equal(out[0], whole[0])
    _same_state(before, module)
