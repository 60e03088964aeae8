"""How many attempts the fast trace needs: each attempt is a new fx trace and a check of every
run, so a failure that changes nothing else settles in the attempt that found it."""

from __future__ import annotations

import torch
from torch import nn

import xlate
from xlate.record import record_of
from xlate.torch2keras.fxtrace import FastTrace, _Runs


class _Cnn(nn.Module):
    """No shape question anywhere (torchvision's ResNets, DenseNets, VGGs): the first convolution
    refuses the run with 2 channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.bn(self.conv(x)).relu(), 1), 1))


class _Asks(_Cnn):
    """The same with a shape question: the runs are stepped while the graph is traced, so the
    graph may depend on the channels' run and is traced again without it."""

    def forward(self, x):
        y = self.bn(self.conv(x)).relu()
        return self.fc(y.mean((2, 3)) if y.shape[-1] > 1 else y.flatten(1))


def _attempts(monkeypatch, module, x):
    attempts = []
    attempt = _Runs._attempt
    monkeypatch.setattr(_Runs, "_attempt", lambda self: attempts.append(dict(self.sizes)) or attempt(self))
    trace = FastTrace(module, (x,))
    return attempts, {(d.index, d.axis): d for d in trace.graph.dims}


def test_a_channel_run_refused_by_the_first_convolution_settles_in_the_same_attempt(monkeypatch):
    x = torch.randn(1, 3, 16, 16)
    attempts, dims = _attempts(monkeypatch, _Cnn().eval(), x)
    assert len(attempts) == 1 and "s1" in attempts[0], attempts
    assert not dims[(0, 1)].dynamic and "3 channels" in dims[(0, 1)].reason, dims[(0, 1)]
    assert dims[(0, 0)].dynamic and dims[(0, 2)].dynamic and dims[(0, 3)].dynamic
    module = _Cnn().eval()
    model = xlate.torch_to_keras(module, (x,), via="direct")  # the parity gate: the graph is right
    assert [d["dynamic"] for d in record_of(model).dims] == [True, False, True, True]


def test_a_graph_that_asked_about_sizes_is_traced_again_without_the_failed_run(monkeypatch):
    x = torch.randn(1, 3, 16, 16)
    attempts, dims = _attempts(monkeypatch, _Asks().eval(), x)
    assert len(attempts) == 2 and "s1" not in attempts[1], attempts
    assert not dims[(0, 1)].dynamic and dims[(0, 2)].dynamic and dims[(0, 3)].dynamic
    model = xlate.torch_to_keras(_Asks().eval(), (x,), via="direct")
    assert [d["dynamic"] for d in record_of(model).dims] == [True, False, True, True]


def _kept(x, p: float):
    return x if p == 0.0 else x * (1 - p)  # torchvision's stochastic_depth in eval mode: no size read


def _padded_even(x):
    return nn.functional.pad(x, (0, x.shape[-1] % 2))  # the width's parity, out of the graph's sight


torch.fx.wrap("_kept")
torch.fx.wrap("_padded_even")


class _KeptWhole(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fn = fn

    def forward(self, x):
        y = self.conv(x)
        return (_kept(y, 0.0) if self.fn == "kept" else _padded_even(y)).mean((2, 3))


def test_a_function_fx_kept_whole_is_probed_at_odd_sizes_only_when_it_reads_sizes(monkeypatch):
    """The odd-size probes (two more runs) check sizes computed with //, % or rounding; a function
    fx keeps whole may compute them out of the graph's sight, unless the recorded runs saw it read
    no size (and it takes none)."""
    probed = []
    probe = _Runs._probe
    monkeypatch.setattr(_Runs, "_probe", lambda self, graph, symbols: probed.append(1) or probe(self, graph, symbols))
    x = torch.randn(1, 3, 16, 16)
    for fn, probes in (("kept", 0), ("padded", 1)):
        probed.clear()
        FastTrace(_KeptWhole(fn).eval(), (x,))
        assert len(probed) == probes, fn
        model = xlate.torch_to_keras(_KeptWhole(fn).eval(), (x,), via="direct")  # gate: odd sizes too
        if fn == "kept":
            assert [d["dynamic"] for d in record_of(model).dims] == [True, False, True, True]


class _PositionBias(nn.Module):
    """A learned bias of the example's height and width added after a size question (LeViT's and
    Hiera's position biases): every other height and every other width fails at the add."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bias = nn.Parameter(torch.randn(1, 8, 16, 16))

    def forward(self, x):
        y = self.conv(x)
        y = y + self.bias
        return y.mean((2, 3)) if y.shape[-1] > 1 else y.flatten(1)


def test_a_run_that_starts_from_one_failed_in_the_trace_is_tried_alone_in_the_same_attempt(monkeypatch):
    x = torch.randn(1, 3, 16, 16)
    attempts, dims = _attempts(monkeypatch, _PositionBias().eval(), x)
    # each attempt fails the height and the width at one size together (the width's run, which
    # starts from the height's, runs alone from the example): not one symbol per attempt
    for sizes in attempts[1:-1]:
        assert "s2" in sizes and "s3" in sizes, attempts
    assert attempts[-1].keys() == {"s0"}, attempts
    assert dims[(0, 0)].dynamic and not dims[(0, 2)].dynamic and not dims[(0, 3)].dynamic
    module = _PositionBias().eval()
    model = xlate.torch_to_keras(module, (x,), via="direct")
    assert [d["dynamic"] for d in record_of(model).dims] == [True, False, False, False]
