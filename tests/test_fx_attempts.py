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
