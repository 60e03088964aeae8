"""The fast trace's recorded runs stepped while the graph is traced (fx_evaluate.py): they answer the
shape tracer's questions and then go on as the recordings, so each must record exactly what a run
of the complete graph records, refuse what it refuses, and start again where it cannot go on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xlate
from xlate.record import record_of
from xlate.torch2keras.fx_common import FastTraceUnsupported
from xlate.torch2keras.fx_evaluate import RecordedSet
from xlate.torch2keras.fx_inputs import bind_inputs, traceable_root
from xlate.torch2keras.fx_record import Run
from xlate.torch2keras.fx_sizes import SizeInt
from xlate.torch2keras.fx_tracer import symbolic_trace
from xlate.torch2keras.fxtrace import fx_trace

from .test_fxtrace import REFUSED, _InPlaceOnView, _InPlaceThroughView, fast_parity

FAST = "traced by torch.fx (fast path)"


class _AskedAfter(nn.Module):
    """``inner``, then a shape question on its output: the tracer steps the recorded runs through
    every node of ``inner`` while the graph is still being traced."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x)
        later = y + 0  # a node after all of inner's: the question below steps the runs through them
        return y * 2 if later.dim() == 2 else y


STEPPED = [(m, reason) for m, reason in REFUSED if "in-place" in reason or "views" in reason]


@pytest.mark.parametrize("module,reason", STEPPED, ids=[type(m).__name__.strip("_") for m, _ in STEPPED])
def test_a_run_stepped_during_the_trace_refuses_as_a_whole_recording_would(module, reason):
    x = torch.randn(2, 4)
    before = x.clone()
    with pytest.raises(FastTraceUnsupported, match=reason):
        fx_trace(_AskedAfter(module), (x,))
    assert torch.equal(x, before)


class _InPlaceWithDeadView(_InPlaceOnView):
    def forward(self, x):
        y = self.fc(x)
        y.view(-1)  # a view of y that nothing reads
        self.act(y)
        return y


def test_an_in_place_write_judged_after_the_trace_converts_when_no_live_view_sees_it():
    """Who reads a view later is known only once the graph is complete: an in-place write stepped
    during the trace is judged then, and passes when the only view is dead."""
    module, example = _AskedAfter(_InPlaceWithDeadView()).eval(), (torch.randn(2, 4),)
    report, _ = fast_parity(module, example)
    assert report.passed, str(report)


def test_a_write_through_a_view_stepped_during_the_trace_is_scattered_back():
    module = _AskedAfter(_InPlaceThroughView()).eval()
    keras_model = xlate.torch_to_keras(module, (torch.randn(2, 4),), via="direct")  # the gate: parity
    assert FAST in record_of(keras_model).notes


class _Block(nn.Module):
    """Conv, BatchNorm, in-place ReLU, an in-place residual add and a slice, then a shape question
    on the result (timm's CNNs ask theirs down to the last layer)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        y += x
        z = y[:, :2].relu()
        h, w = z.shape[-2:]
        if h > 1 and w > 1:  # asked after every node above
            z = z.reshape(z.shape[0], -1, h * w)
        return z.mean(-1) + y.size(1)


def _inputs(module, x):
    names, _values, call = bind_inputs(module, (x,), {})
    return names, traceable_root(module, names, call)


def _summary(rec) -> list:
    """Everything a Recording says, with sizes as (value, expression)."""

    def plain(v):
        if isinstance(v, SizeInt):
            return ("size", int(v), v.tree)
        if isinstance(v, (list, tuple)):
            return [plain(a) for a in v]
        if isinstance(v, dict):
            return {k: plain(a) for k, a in v.items()}
        return v

    nodes = rec.params + rec.inputs + rec.calls
    return [(n.name, n.op, n.target, plain(n.args), n.meta, n.stack) for n in nodes] + [
        plain(rec.outputs), {k: (p, a.shape, t) for k, (p, a, t) in rec.param_values.items()},
        rec.arg_types, rec.module_types]


def _whole(module, root, names, graph, x):
    with torch.no_grad():
        return Run(module, root, graph).execute(names, [x.clone()])


def test_a_stepped_recording_is_the_recording_of_the_whole_graph():
    module, x = _Block().eval(), torch.randn(2, 3, 8, 8)
    names, root = _inputs(module, x)
    evaluated = RecordedSet(module, root, names, [x.clone()])
    with torch.no_grad():
        graph = symbolic_trace(root, names, [evaluated], [None])
        stepped = evaluated.run.done
        evaluated.settle(graph)
        assert not evaluated.fresh and evaluated.failed is None
        recording = evaluated.recording(graph)
    assert 5 < stepped < len(graph.nodes), "the runs were stepped through most of the graph"
    assert _summary(recording) == _summary(_whole(module, root, names, graph, x))
    assert evaluated.env == {} and evaluated.run.env == {}, "the set forgets its tensors once recorded"


class _Other(nn.Module):
    def forward(self, x):
        return x.relu() * 3


def test_a_graph_changed_under_a_run_is_recorded_again():
    module, x = _Block().eval(), torch.randn(2, 3, 8, 8)
    names, root = _inputs(module, x)
    evaluated = RecordedSet(module, root, names, [x.clone()])
    with torch.no_grad():
        symbolic_trace(root, names, [evaluated], [None])
        other_names, other_root = _inputs(_Other(), x)
        other = symbolic_trace(other_root, other_names, [[x.clone()]], [None])
        recording = evaluated.recording(other)
    assert evaluated.fresh
    assert _summary(recording) == _summary(_whole(module, root, names, other, x))


def _padded_to_even(x):
    return torch.nn.functional.pad(x, (0, x.shape[-1] % 2))  # fx keeps this function whole


torch.fx.wrap("_padded_to_even")


class _Wrapped(nn.Module):
    def forward(self, x):
        y = _padded_to_even(x.relu())
        return y * 2 if y.dim() == 4 else y


def test_a_graph_calling_a_function_fx_kept_whole_is_recorded_from_scratch():
    """Such a function may keep state in the module, and each recording starts from the module's
    own attributes: a run stepped side by side with the others is not kept."""
    module, x = _Wrapped().eval(), torch.randn(2, 3, 5, 5)
    names, root = _inputs(module, x)
    evaluated = RecordedSet(module, root, names, [x.clone()])
    with torch.no_grad():
        graph = symbolic_trace(root, names, [evaluated], [None])
        assert evaluated.run.done > 0
        recording = evaluated.recording(graph)
    assert evaluated.fresh
    assert _summary(recording) == _summary(_whole(module, root, names, graph, x))
    report, _ = fast_parity(module, (x,))
    assert report.passed, str(report)


class _FailsToRecord(nn.Module):
    def forward(self, x):
        y = torch.special.bessel_j0(x)  # no table row: the recording stops, plain evaluation goes on
        return y * 2 if y.dim() == 2 else y


def test_a_recording_that_cannot_go_on_raises_its_error_when_recorded():
    module, x = _FailsToRecord().eval(), torch.randn(2, 4)
    names, root = _inputs(module, x)
    evaluated = RecordedSet(module, root, names, [x.clone()])
    with torch.no_grad():
        graph = symbolic_trace(root, names, [evaluated], [None])  # the question is still answered
        with pytest.raises(FastTraceUnsupported, match="no table row"):
            evaluated.recording(graph)


def test_no_op_that_moves_a_tensor_to_other_memory_is_recorded():
    """A stepped run indexes its values by memory address until the graph is complete."""
    from xlate.torch2keras.fx_aten import by_aten

    assert not {"aten.resize_.default", "aten.resize_as_.default", "aten.set_.source_Tensor"} & set(by_aten())


def test_runs_of_one_root_share_its_lookups_and_record_alike():
    """Every run of a trace looks up the same submodules, module stacks and parameters
    (fx_record.run_cache, kept on the trace root): the second run records exactly what the first
    did, its parameter arrays are views of the module's own tensors, and another root starts
    from its own cache."""
    module, x = _Block().eval(), torch.randn(2, 3, 8, 8)
    names, root = _inputs(module, x)
    graph = symbolic_trace(root, names, [[x.clone()]], [None])
    first = _whole(module, root, names, graph, x)
    cache = root.__dict__["_xlate_run_cache"]
    assert cache["modules"] and cache["stacks"] and cache["params"] and cache["known"]
    second = _whole(module, root, names, graph, x)
    assert _summary(second) == _summary(first)
    tensors = dict(module.state_dict(keep_vars=True))
    for path, array, _ in second.param_values.values():
        assert array.__array_interface__["data"][0] == tensors[path].data_ptr()
    _, other_root = _inputs(module, x)
    assert "_xlate_run_cache" not in other_root.__dict__
