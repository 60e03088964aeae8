"""The fast trace's runs form a chain (fxtrace.chain_parents): the width is varied from the run of a
smaller height, the batch from that run. A batch-1 CNN example is varied to batch 2 at a quarter
of its height and width, an eighth of an example's work where batch 2 at the full size cost two.
The shape tracer and the merge compare each run with the run it starts from, so a size of the
height is never taken for one of the width or the batch."""

from __future__ import annotations

import torch
from torch import nn

import xlate
from xlate.record import record_of
from xlate.torch2keras.fxtrace import FastTrace, chain_parents
from xlate.torch2keras.source_graph import Sym


class _Rows(nn.Module):
    """A conv, then every row as a sample: a size that is batch times height (s0*s2)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        rows = y.permute(0, 2, 1, 3).reshape(b * h, c, w)
        return rows.mean(-1).reshape(b, h, c).mean(1)


def _dynamic(model) -> list[bool]:
    return [d["dynamic"] for d in record_of(model).dims]


def _reshapes(graph) -> list:
    return [n.args["shape"] for n in graph.nodes if n.target == "aten.reshape.default"]


def test_batch_run_starts_from_the_smaller_height_and_products_keep_both_symbols():
    example = (torch.randn(1, 3, 32, 32),)
    trace = FastTrace(_Rows(), example)
    assert trace.runs.parents == {"s3": "s2", "s0": "s3"}, trace.runs.parents
    assert trace.runs._sizes_of(trace.plan.symbols["s0"]) == (("s2", 16), ("s3", 16), ("s0", 2))
    assert _reshapes(trace.graph)[0] == [Sym("s0*s2"), 4, Sym("s3")]
    model = xlate.torch_to_keras(_Rows(), example, via="direct")  # the gate runs other sizes
    assert _dynamic(model) == [True, False, True, True]


class _TallOnly(nn.Module):
    """A branch on the height alone: it bounds the height; the batch run, which starts from the
    height's run, must not be blamed for it."""

    def forward(self, x):
        return x * 2 if x.shape[2] > 8 else x


def test_a_condition_on_the_height_bounds_the_height_and_leaves_the_batch_alone():
    model = xlate.torch_to_keras(_TallOnly(), (torch.randn(1, 3, 32, 32),), via="direct")
    dims = record_of(model).dims
    assert [d["dynamic"] for d in dims] == [True, True, True, True]
    assert dims[0]["low"] == 1 and dims[0]["high"] is None
    assert dims[2]["low"] == 9, dims[2]


class _HeightScale(nn.Module):
    """The height as a float factor: no size form explains it, so the height stays static; the
    batch, varied at the height's smaller size, must not be the one kept static."""

    def forward(self, x):
        return x * (x.shape[2] * 0.5)


def test_a_value_of_the_height_pins_the_height_not_the_batch():
    model = xlate.torch_to_keras(_HeightScale(), (torch.randn(1, 3, 32, 16),), via="direct")
    assert _dynamic(model) == [True, True, False, True]


def test_pinning_the_height_after_the_trace_runs_the_batch_again_at_the_full_height():
    """The emitter may keep a size static after the trace: the width's run, made at the height's
    smaller size, is run again from the example, then the batch's run from that one, and the merge
    sees the full height in both."""
    trace = FastTrace(_Rows(), (torch.randn(1, 3, 32, 32),))
    trace.pin(["s2"], "kept static by the test")
    assert trace.runs.parents == {"s0": "s3"}
    assert trace.runs._sizes_of(trace.plan.symbols["s0"]) == (("s3", 16), ("s0", 2))
    assert _reshapes(trace.graph)[0] == [Sym("32*s0"), 4, Sym("s3")]
    batch = next(d for d in trace.graph.dims if d.axis == 0)
    assert batch.dynamic


def test_pinning_the_middle_of_the_chain_runs_the_batch_from_the_height():
    """The width kept static: the batch's run, which started from the width's, starts from the
    height's run instead."""
    trace = FastTrace(_Rows(), (torch.randn(1, 3, 32, 32),))
    trace.pin(["s3"], "kept static by the test")
    assert {k: v for k, v in trace.runs.parents.items() if k in trace.plan.symbols} == {"s0": "s2"}
    assert _reshapes(trace.graph)[0] == [Sym("s0*s2"), 4, 32]
    assert [d.dynamic for d in trace.graph.dims] == [True, False, True, False]


def test_a_size_varied_by_little_starts_from_the_chain_and_ends_no_chain():
    """An image's 3 channels varied to 2 save a third of the work and are usually refused by the
    first convolution: that run starts from the chain's last, like the batch, so its failure
    leaves no later run to do again."""
    trace = FastTrace(_Rows(), (torch.randn(1, 3, 32, 32),))
    s = trace.plan.symbols
    varied = [None, s["s0"], s["s2"], s["s3"]]
    sizes = {"s0": 2, "s1": 2, "s2": 16, "s3": 16}

    class _Channels:  # the channel symbol as the trace saw it before the convolution refused it
        name, size, batch = "s1", 3, False

    assert chain_parents(varied + [_Channels()], sizes) == {"s3": "s2", "s0": "s3", "s1": "s3"}
    assert chain_parents([None, s["s0"], _Channels()], sizes) == {}
