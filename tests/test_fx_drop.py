"""The fast trace drops a value while the graph is traced once no later node can read it (its node's
last proxy died and its readers ran), so a traced model holds about what a forward pass holds, not
every value of every input set; a value dropped wrongly is computed again, never read wrong."""

from __future__ import annotations

import torch
from torch import nn

import xlate
from xlate.torch2keras import fx_evaluate
from xlate.torch2keras.fxtrace import FastTrace


class _Deep(nn.Module):
    """Blocks that each ask about a size (timm's ``_assert``, ``if x.shape[-1] > 1``): the graph is
    evaluated block by block while it is traced."""

    def __init__(self, blocks=12):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(blocks))

    def forward(self, x):
        for conv in self.convs:
            y = conv(x).relu()
            x = y + x if y.shape[-1] > 1 else y
        return x.mean((2, 3))


def _held(monkeypatch):
    """The most tensors any stepped set held at once while the graph was traced."""
    most = [0]
    step = fx_evaluate.SteppedRun.step

    def counting(self, n):
        step(self, n)
        if self.graph is None:
            held = sum(1 for v in self.env.values() if isinstance(v, torch.Tensor))
            most[0] = max(most[0], held)

    monkeypatch.setattr(fx_evaluate.SteppedRun, "step", counting)
    return most


def test_a_deep_model_traced_block_by_block_holds_a_few_values_not_all(monkeypatch):
    most = _held(monkeypatch)
    module = _Deep().eval()
    FastTrace(module, (torch.randn(1, 8, 16, 16),))
    # 12 blocks of conv, relu, add: 36 tensor values, all held before; now the input and a block's
    # values
    assert most[0] <= 8, most[0]


def test_the_traced_graph_and_its_parity_are_unchanged_by_dropping():
    module = _Deep().eval()
    x = torch.randn(1, 8, 16, 16)
    model = xlate.torch_to_keras(module, (x,), via="direct")  # the parity gate compares with torch
    assert model.count_params() == sum(p.numel() for p in module.parameters())


class _Revives(nn.Module):
    """Keeps a node past the death of its proxies (a plain fx Proxy made from it, which the tracer
    does not count) and reads it after a size question dropped its value."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        if isinstance(y, torch.fx.Proxy):
            node, tracer = y.node, y.tracer
            z = self.b(y.relu())
            del y
            z = self.c(z) if z.shape[-1] > 1 else z  # evaluates past y's readers: y's value is dropped
            y = torch.fx.Proxy(node, tracer)
        else:
            z = self.b(y.relu())
            z = self.c(z)
        out = y + z
        return out * 2 if out.shape[-1] > 1 else out  # evaluates `y + z` during the trace


def test_a_value_read_after_it_was_dropped_is_computed_again(monkeypatch):
    replays = []
    step = fx_evaluate.RecordedSet.evaluate

    def spying(self, node):
        step(self, node)
        replays.append(self.replayed)

    monkeypatch.setattr(fx_evaluate.RecordedSet, "evaluate", spying)
    module = _Revives().eval()
    model = xlate.torch_to_keras(module, (torch.randn(1, 4, 8, 8),), via="direct")  # parity-gated
    assert any(replays), "the dropped value was never read: the test no longer tests the fallback"
    assert model.count_params() == sum(p.numel() for p in module.parameters())
