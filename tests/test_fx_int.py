"""``int()`` of a size in the module's code (timm SAM's relative positions:
``int(2 * max(q_size, k_size) - 1)``): the fast trace keeps the sizes it changes with static and
the others dynamic. It raised a foreign TypeError inside fx, so the whole model fell back to
torch.export, which kept every size static and took 32 s instead of 7."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xlate
from xlate.errors import UnsupportedOpError
from xlate.record import record_of
from xlate.torch2keras.fx_common import FastTraceUnsupported
from xlate.torch2keras.fxtrace import FastTrace


class _RelPos(nn.Module):
    """A table of relative positions cut to the sequence's length, through int()."""

    def __init__(self, dim: int = 8, max_len: int = 16):
        super().__init__()
        self.table = nn.Parameter(torch.randn(2 * max_len - 1, dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (batch, length, dim)
        length = x.shape[1]
        span = int(2 * max(length, length) - 1)  # query and key lengths, as in SAM
        return self.proj(x) + self.table[:span].mean(0) * float(int(x.shape[-1] / 8))


def _dims(module, x) -> dict:
    return {(d.index, d.axis): d for d in FastTrace(module, (x,)).graph.dims}


def test_int_of_a_size_keeps_that_size_static_and_the_batch_dynamic():
    torch.manual_seed(0)
    module, x = _RelPos().eval(), torch.randn(1, 12, 8)
    dims = _dims(module, x)
    assert dims[(0, 0)].dynamic, dims[(0, 0)]
    assert not dims[(0, 1)].dynamic and "int() of a size" in dims[(0, 1)].reason, dims[(0, 1)]
    model = xlate.torch_to_keras(module, (x,), via="direct")  # the parity gate: the graph is right
    assert record_of(model).notes[0].startswith("traced by torch.fx"), record_of(model).notes[0]
    assert [d["dynamic"] for d in record_of(model).dims] == [True, False, False]
    other = torch.randn(3, 12, 8)  # another batch, through the Keras model
    assert torch.allclose(torch.from_numpy(model(other.numpy()).numpy()), module(other), atol=1e-5)


def test_int_of_a_tensor_is_not_a_size_and_stops_the_fast_trace():
    class Item(nn.Module):
        def forward(self, x):
            return x * int(x.sum() > 0)  # data-dependent: no trace can keep it

    module, x = Item().eval(), torch.randn(2, 4)
    with pytest.raises(FastTraceUnsupported, match="not a traced tensor"):
        FastTrace(module, (x,))
    with pytest.raises(UnsupportedOpError):  # torch.export refuses it too: an xlate error, not a crash
        xlate.torch_to_keras(module, (x,), via="direct")
