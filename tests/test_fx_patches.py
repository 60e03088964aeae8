"""The shape tracer answers a shape question by running the graph traced so far on real inputs.
torch.fx's patches (``torch.nn.Module.__call__`` and ``__getattr__``) stay on while it does:
reverting and reapplying them assigns to ``torch.nn.Module``, which makes Python walk every Module
subclass loaded (timm and transformers load thousands), four times per question. The tracer's
``call_module`` and ``getattr`` pass the real calls through instead."""

from __future__ import annotations

import numpy as np
import torch
import torch.fx._symbolic_trace as fx_trace
from torch import nn

import xlate
from xlate.torch2keras.fxtrace import FastTrace


class _Asks(nn.Module):
    """Three shape questions, each after a leaf module that must run for real to answer it."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(3))
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        for conv in self.convs:
            x = conv(x)
            b, c, h, w = x.shape  # a question: the runs so far are evaluated
            x = x.reshape(b, c, h * w).softmax(-1).reshape(b, c, h, w) * self.scale.view(1, c, 1, 1)
        return x.flatten(1)


def test_shape_questions_leave_fx_patches_on_and_the_runs_exact(monkeypatch):
    reverts = []
    revert = fx_trace._Patcher.revert_all_patches
    monkeypatch.setattr(fx_trace._Patcher, "revert_all_patches", lambda self: reverts.append(1) or revert(self))
    module = _Asks().eval()
    example = torch.randn(1, 4, 8, 8)
    trace = FastTrace(module, (example,))
    # one revert per fx trace, when it ends (one trace per attempt), none per question
    assert 1 <= len(reverts) <= 2, reverts
    assert torch.nn.Module.__call__ is fx_trace._orig_module_call  # everything put back afterwards
    assert torch.nn.Module.__getattr__ is fx_trace._orig_module_getattr
    # the real runs the questions were answered from computed what the module computes
    sizes = {(d.index, d.axis): d.dynamic for d in trace.graph.dims}
    assert sizes[(0, 0)] and sizes[(0, 2)] and sizes[(0, 3)], sizes
    model = xlate.torch_to_keras(module, (example,), via="direct", check=False)
    other = torch.randn(2, 4, 6, 10)
    with torch.no_grad():
        want = module(other).numpy()
    np.testing.assert_allclose(np.asarray(model(other.numpy())), want, atol=1e-5, rtol=1e-4)
