"""A ``torch._assert`` on sizes (timm's PatchEmbed: ``_assert(H == self.img_size[0])``) that fails
in a varied run is decided over the size's range like an ``if``: the size it holds at only is kept
static at once, instead of tried at one size after another, each a full attempt of the trace."""

from __future__ import annotations

import torch
from torch import nn

import xlate
from xlate.record import record_of
from xlate.torch2keras.fxtrace import FastTrace, _Runs


class _FixedHeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        torch._assert(x.shape[2] == 32, "the height must be 32")
        return self.conv(x).mean((2, 3))


class _Multiple(nn.Module):
    """An assertion with a lower bound, which the run at a smaller size breaks: 20 or more works."""

    def forward(self, x):
        torch._assert(x.shape[1] >= 20, "at least 20 steps")
        y = x.cumsum(1)
        return y.reshape(y.shape[0], y.shape[1], 1)  # a shape question: the tracer runs the assertion


def test_an_assertion_of_one_size_keeps_that_size_static_without_trying_others(monkeypatch):
    attempts = []
    attempt = _Runs._attempt
    monkeypatch.setattr(_Runs, "_attempt", lambda self: attempts.append(dict(self.sizes)) or attempt(self))
    trace = FastTrace(_FixedHeight(), (torch.randn(1, 3, 32, 32),))
    assert sum("s2" in sizes for sizes in attempts) == 1, attempts  # the height is varied once only
    dims = {(d.index, d.axis): d for d in trace.graph.dims}
    assert not dims[(0, 2)].dynamic and "the height must be 32" in dims[(0, 2)].reason, dims[(0, 2)].reason
    assert dims[(0, 3)].dynamic and dims[(0, 0)].dynamic
    model = xlate.torch_to_keras(_FixedHeight(), (torch.randn(1, 3, 32, 32),), via="direct")
    assert [d["dynamic"] for d in record_of(model).dims] == [True, False, False, True]


def test_an_assertion_of_a_bound_narrows_the_size():
    trace = FastTrace(_Multiple(), (torch.randn(2, 32),))
    dims = {(d.index, d.axis): d for d in trace.graph.dims}
    assert dims[(0, 1)].dynamic and dims[(0, 1)].low == 20, dims[(0, 1)]


class _Patches(nn.Module):
    """timm's PatchEmbed: an assert per image side whose message formats the size, so fx keeps each
    as a node that fails when the runs are recorded, then a position embedding of fixed length."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 4, 4)
        self.pos = nn.Parameter(torch.randn(1, 64, 8))

    def forward(self, x):
        _, _, h, w = x.shape
        torch._assert(h == 32, f"Input height ({h}) doesn't match model (32).")
        torch._assert(w == 32, f"Input width ({w}) doesn't match model (32).")
        return (self.proj(x).flatten(2).transpose(1, 2) + self.pos).mean(1)


def test_the_sizes_a_failed_run_hides_are_tried_alone_in_the_same_attempt(monkeypatch):
    """The width's run starts from the height's, the channels' from the width's: when the height's
    run fails, the other two are run alone from the example at once, so one attempt finds all three
    failures (it took three attempts, each a new trace and example run)."""
    attempts = []
    attempt = _Runs._attempt
    monkeypatch.setattr(_Runs, "_attempt", lambda self: attempts.append(dict(self.sizes)) or attempt(self))
    trace = FastTrace(_Patches(), (torch.randn(1, 3, 32, 32),))
    assert len(attempts) == 2 and set(attempts[1]) == {"s0"}, attempts
    dims = {(d.index, d.axis): d for d in trace.graph.dims}
    assert "Input height" in dims[(0, 2)].reason and "Input width" in dims[(0, 3)].reason
    assert not dims[(0, 1)].dynamic and dims[(0, 0)].dynamic
    module = _Patches().eval()
    model = xlate.torch_to_keras(module, (torch.randn(1, 3, 32, 32),), via="direct")
    assert [d["dynamic"] for d in record_of(model).dims] == [True, False, False, False]
