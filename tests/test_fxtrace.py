"""The fast trace front end (torch.fx + two real runs): where it applies, the Keras model emitted
from its graph matches the torch module, at the example's batch size and at another one; where it
does not, it refuses (FastTraceUnsupported) and torch.export takes over.

    pytest tests/test_fxtrace.py -q -s     # -s prints the fx vs torch.export timing table
"""

from __future__ import annotations

import operator
import statistics
import time

import numpy as np
import pytest
import torch
from torch import nn

import xlate
from fixtures import torch_models as tm
from xlate.frameworks import IOSpec, TensorSpec
from xlate.parity_inputs import make_inputs
from xlate.record import ConversionRecord, attach
from xlate.table import table
from xlate.torch2keras.emit import DynamicShapeError, Emitter
from xlate.torch2keras.export_trace import trace
from xlate.torch2keras.fxtrace import FastTraceUnsupported, fx_trace, trace_fast_or_export
from xlate.torch2keras.port import port_weights
from xlate.torch2keras.source_graph import Ref, Sym

from .rowcases import cases, torch_case

TOL = 1e-5
# fixtures the fast path must handle (the list, and what it handles today)
FAST_PATH = {"mnist_mlp", "lenet", "conv_autoencoder", "resnet_basic", "mobilenet_style", "text_lstm", "text_gru",
             "transformer_encoder"}
HF_FAST_PATH = {"hf_bert", "hf_gpt2", "hf_vit", "hf_resnet", "hf_convnext"}
T2K = cases(table(), "torch2keras")


def _examples(example_inputs) -> list:
    if isinstance(example_inputs, torch.Tensor):
        return [example_inputs]
    return list(example_inputs.values()) if isinstance(example_inputs, dict) else list(example_inputs)


def keras_from_graph(graph, example_inputs):
    """The Keras model the direct path builds from ``graph`` (emit, port, record), as
    xlate/torch2keras/convert.py does it, with an unchanged graph (no static-batch retry)."""
    emitter = Emitter(graph)
    model = emitter.run()
    port_weights(emitter.assignments)
    specs = []
    for meta, name, example in zip(graph.input_metas, graph.inputs, _examples(example_inputs)):
        low, high = 0, None
        if not example.dtype.is_floating_point and example.numel():
            low, high = int(example.min()), int(example.max()) + 1
        specs.append(TensorSpec(tuple(d if isinstance(d, int) else None for d in meta.shape), meta.dtype, low, high,
                                name, example=tuple(example.shape)))
    record = ConversionRecord(direction="torch2keras", path="direct",
                              io=IOSpec(tuple(specs), tuple(emitter.input_perms), tuple(emitter.output_perms),
                                        source="torch"))
    record.rows_used.update(emitter.rows_used)
    attach(model, record)
    return model, emitter


def parity_samples(model, example_inputs, seed=0):
    """4 seeded samples: two at the example's batch size, two at another one (5 for a batch of 2)."""
    import dataclasses

    from xlate.parity_inputs import io_spec_of

    specs = io_spec_of(model).inputs
    batch = _examples(example_inputs)[0].shape[0]
    other = 5 if batch != 5 else 7
    resized = [dataclasses.replace(s, example=(other, *s.example[1:]) if s.shape and s.shape[0] is None else s.example)
               for s in specs]
    return make_inputs(specs, samples=2, seed=seed) + make_inputs(resized, samples=2, seed=seed + 2)


def fast_parity(module, example_inputs, atol=TOL):
    """None when the fast path refuses, else (report, emitter) of the model built from its graph."""
    try:
        graph = fx_trace(module, example_inputs)
    except FastTraceUnsupported:
        return None
    assert isinstance(graph.input_metas[0].shape[0], Sym), "the batch dimension is dynamic"
    model, emitter = keras_from_graph(graph, example_inputs)
    report = xlate.check_parity(module, model, parity_samples(model, example_inputs), atol=atol)
    return report, emitter


# --- fixtures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(tm.FIXTURES))
def test_fixture_fast_path_parity(name):
    module, example = tm.FIXTURES[name]()
    module.eval()
    result = fast_parity(module, example)
    if name in FAST_PATH:
        assert result is not None, f"{name} must take the fast path"
    if result is None:
        with pytest.raises(FastTraceUnsupported):
            fx_trace(module, example)
        return
    report, _ = result
    assert report.passed and report.max_abs_err <= TOL, str(report)
    assert report.samples == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(tm.HF_FIXTURES))
def test_hf_fixture_fast_path_parity(name):
    module, example = tm.HF_FIXTURES[name]()
    module.eval()
    start = time.perf_counter()
    result = fast_parity(module, example)
    assert (result is not None) == (name in HF_FAST_PATH), f"{name}: fast path {'refused' if result is None else 'taken'}"
    if result is not None:
        report, _ = result
        assert report.passed and report.max_abs_err <= TOL, str(report)
    print(f"\n{name}: fast path {'yes' if result else 'no'}, fx_trace + emit + parity {time.perf_counter() - start:.2f} s")


def test_fast_path_timing_table():
    """Which fixtures take the fast path; fx_trace vs torch.export trace() per fixture (median of 3 /
    one run) is printed with -s."""
    rows = []
    for name in sorted(tm.FIXTURES):
        module, example = tm.FIXTURES[name]()
        try:
            fx_trace(module, example)  # warm-up: first-call costs of the kernels
            fast = statistics.median(_seconds(fx_trace, module, example) for _ in range(3))
        except FastTraceUnsupported as e:
            fast, reason = None, str(e)
        else:
            reason = ""
        export = _seconds(trace, module, example)
        rows.append((name, fast, export, reason))
    print("\n| fixture | fast path | fx_trace (ms, median of 3) | torch.export trace (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for name, fast, export, reason in rows:
        if fast is None:
            print(f"| {name} | no: {reason[:80]} | - | {1e3 * export:.0f} | - |")
        else:
            print(f"| {name} | yes | {1e3 * fast:.1f} | {1e3 * export:.0f} | {export / fast:.0f}x |")
    # which fixtures take the fast path is asserted; how much faster it is is a benchmark figure,
    # printed above, never an assertion (on a shared, loaded machine a timing can come out either way)
    assert {n for n, fast, _, _ in rows if fast is not None} >= FAST_PATH


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# --- every torch->Keras row sample ------------------------------------------------------------


@pytest.mark.parametrize("row,sample", [c[:2] for c in T2K], ids=[c[2] for c in T2K])
def test_row_sample_fast_path(row, sample):
    module, inputs = torch_case(row, sample)
    try:
        result = fast_parity(module, inputs, atol=sample.tol or TOL)
    except DynamicShapeError:
        # the emitter needs a static batch here: the converter retries with torch.export, which must pass
        xlate.torch_to_keras(module, inputs, via="direct", atol=sample.tol or TOL)
        return
    if result is None:
        return  # refused: torch.export converts it (tests/test_rows.py)
    report, emitter = result
    assert report.passed, str(report)
    # the same rows drive the conversion as through torch.export (tests/test_rows.py asserts them)
    for expected in [r for r in row.traced_as if r != "-"] if row.traced_as else [row.id]:
        assert expected in emitter.rows_used, f"row {expected} did not drive {row.id}: {emitter.rows_used}"


# --- refusals and the fallback ----------------------------------------------------------------


class _DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


class _ReadsData(nn.Module):
    def forward(self, x):
        return torch.nn.functional.relu(x) * float(x.max())


def _scaled_by_max(x):
    return x * float(x.max())  # reads a value into Python: hidden from fx by torch.fx.wrap


torch.fx.wrap("_scaled_by_max")


class _ReadsDataInWrappedFunction(nn.Module):
    def forward(self, x):
        return _scaled_by_max(torch.relu(x))


class _InPlaceOnInput(nn.Module):
    def forward(self, x):
        torch.relu_(x)
        return x + 1


class _BatchSquared(nn.Module):
    def forward(self, x):
        return x.new_zeros(x.shape[0] * x.shape[0], 3)


class _InPlaceOnView(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.fc(x)
        half, other = y[:, :2], y[:, 1:3]
        self.act(half)  # writes into y through the view, and so into the other view, still used
        return other * 2.0


class _InPlaceThroughView(_InPlaceOnView):
    def forward(self, x):
        y = self.fc(x)
        self.act(y[:, :2])  # writes into y through a view nothing else holds: y's slice scattered back
        return y


class _InPlaceOnParameterView(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        torch.relu_(self.scale[:2])  # would write into the parameter
        return x * self.scale


class _RandomInForward(nn.Module):
    def forward(self, x):
        return x + torch.randn(4)  # fx alone would keep one draw as a constant


REFUSED = [
    (_DataDependent(), "control flow"),
    (_ReadsData(), "torch.fx"),
    (_ReadsDataInWrappedFunction(), "reads tensor data"),
    (_InPlaceOnInput(), "in-place aten::relu_ on an input"),
    (_InPlaceOnView(), "has views"),
    (_InPlaceOnParameterView(), "in-place aten::relu_ (through a view )?on an input or parameter"),
    (_RandomInForward(), "randn"),
]


@pytest.mark.parametrize("module,reason", REFUSED, ids=[type(m).__name__.strip("_") for m, _ in REFUSED])
def test_refuses_what_it_cannot_reproduce(module, reason):
    x = torch.randn(2, 4)
    before = x.clone()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(FastTraceUnsupported, match=reason):
        fx_trace(module, (x,))
    assert torch.equal(x, before), "the example inputs are left untouched"
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items()), "so are the parameters"


def test_batch_of_one_takes_the_fast_path():
    """A batch-1 example: batch decisions come from the run at batch 2, the graph keeps it dynamic."""
    module, example = nn.Linear(3, 2), (torch.randn(1, 3),)
    graph = fx_trace(module, example)
    assert graph.input_metas[0].shape == (Sym("s0"), 3) and graph.traced_by.startswith("torch.fx")
    report, _ = fast_parity(module, example)
    assert report.passed, str(report)


def test_batch_squared_is_a_symbol_on_both_paths():
    """x.new_zeros(B * B, 3): s0**2 from the runs at two batch sizes, as torch.export has it."""
    module, example = _BatchSquared(), (torch.randn(2, 4),)
    for graph in (fx_trace(module, example), trace(module, example)):
        zeros = next(n for n in graph.nodes if n.target.startswith("aten.new_zeros"))
        assert zeros.meta.shape == (Sym("s0**2"), 3), (graph.traced_by, zeros.meta)
    report, _ = fast_parity(module, example)
    assert report.passed, str(report)


class _BatchBranch(nn.Module):
    """Python control flow whose answer changes with the batch size: torch.export guards it, the
    fast path cannot."""

    def forward(self, x):
        return torch.relu(x) if x.shape[0] > 3 else x


def test_batch_branch_bounds_the_batch_on_both_paths():
    """x.shape[0] > 3 is False for batches up to 3: both front ends keep the batch dynamic up to 3."""
    module, example = _BatchBranch(), (torch.randn(2, 4),)
    for graph in (fx_trace(module, example), trace(module, example, dynamic="auto")):
        assert graph.outputs == [Ref(graph.inputs[0])] and not [n for n in graph.nodes if n.op == "call"]
        batch = next(d for d in graph.dims if d.axis == 0)
        assert batch.dynamic and batch.high == 3, (graph.traced_by, batch)


class _LoopOverBatch(nn.Module):
    def forward(self, x):
        return torch.stack([x[i] * i for i in range(x.shape[0])])


def test_fallback_goes_through_torch_export():
    """A Python loop over the batch: fx cannot trace it; torch.export specializes the batch."""
    module, example = _LoopOverBatch(), (torch.randn(2, 4),)
    with pytest.raises(FastTraceUnsupported, match="torch.fx"):
        fx_trace(module, example)
    graph = trace_fast_or_export(module, example)
    assert graph.traced_by.startswith("torch.export (the fx fast path does not apply: torch.fx")
    assert graph.input_metas[0].shape[0] == 2
    assert "torch.export specialized it" in graph.dims[0].reason


class _StaticShapeBranches(nn.Module):
    """Python control flow on sizes that do not depend on the batch (plain fx refuses all of it)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.dim() != 2 or x.shape[1] != 4:
            raise ValueError("expected (N, 4)")
        y = self.fc(x)
        if hasattr(y, "not_a_tensor_attribute"):  # plain fx answers True for every attribute
            y = y * 0
        batch, features = y.shape
        return y.reshape(batch, features, 1) if y.size(1) == 3 and y.dtype == torch.float32 else y


class _BatchComparisons(nn.Module):
    """Conditions on the batch size with one answer for every batch of 2 or more."""

    def forward(self, x, y):
        if x.size(0) != y.shape[0] or x.shape[0] == 1 or 2 * x.shape[0] < x.shape[0]:
            raise ValueError("batch sizes differ")
        return x + y.sum(1, keepdim=True) if x.shape[0] >= 2 else x


def test_batch_comparisons_decided_for_every_batch_size():
    module, example = _BatchComparisons(), (torch.randn(2, 3), torch.randn(2, 4))
    graph = fx_trace(module, example)
    assert [n.target for n in graph.nodes if n.op == "call"] == ["aten.sum.dim_IntList", "aten.add.Tensor"]
    report, _ = fast_parity(module, example)
    assert report.passed, str(report)


@pytest.mark.parametrize("left,compare,right,decided", [
    ((1, 0), operator.ne, (1, 0), True),  # B != B
    ((2, 0), operator.lt, (1, 0), True),  # 2B < B
    ((1, 0), operator.eq, (0, 1), True),  # B == 1: never for B >= 2
    ((1, 0), operator.gt, (0, 1), True),  # B > 1
    ((1, 0), operator.ge, (0, 2), True),  # B >= 2
    ((0, 2), operator.ge, (1, 0), False),  # 2 >= B: true at 2, false at 3
    ((1, 0), operator.gt, (0, 2), False),  # B > 2: false at 2, true at 3
    ((1, 0), operator.eq, (0, 4), False),  # B == 4
    ((2, 0), operator.eq, (0, 5), True),  # 2B == 5: never
    ((1, 0), operator.gt, (0, 3), False),  # B > 3
])
def test_batch_condition_decided_only_when_the_same_for_every_batch(left, compare, right, decided):
    from xlate.torch2keras.fxtrace import _decided

    assert _decided(compare, *left, *right) is decided
    if decided:  # the claim, checked
        answers = {compare(left[0] * b + left[1], right[0] * b + right[1]) for b in range(2, 50)}
        assert len(answers) == 1


def test_static_shape_control_flow_is_traced():
    module, example = _StaticShapeBranches(), (torch.randn(2, 4),)
    graph = fx_trace(module, example)
    assert [n.target for n in graph.nodes if n.op == "call"] == ["aten.linear.default", "aten.reshape.default"]
    assert next(n for n in graph.nodes if n.target == "aten.reshape.default").args["shape"] == [Sym("s0"), 3, 1]
    report, _ = fast_parity(module, example)
    assert report.passed, str(report)


class _Reshapes(nn.Module):
    """Batch-dependent sizes in arguments: view(B * 4, -1), a zeros state, indexing."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        b = x.size(0)
        y = self.fc(x).view(b * 2, -1)
        y = y.view(b, 2, 3)[:, -1, ::2]
        state = torch.zeros((b, 2), dtype=x.dtype)
        return torch.cat([y, state], dim=1) + 1.0


def test_batch_dependent_sizes_become_symbols():
    module, example = _Reshapes(), (torch.randn(2, 6),)
    graph = fx_trace(module, example)
    views = [n for n in graph.nodes if n.target == "aten.view.default"]
    assert views[0].args["size"] == [Sym("2*s0"), -1] and views[1].args["size"] == [Sym("s0"), 2, 3]
    zeros = next(n for n in graph.nodes if n.target == "aten.zeros.default")
    assert zeros.args["size"] == [Sym("s0"), 2] and graph.symbols == {"s0": (0, 0)}
    report, _ = fast_parity(module, example)
    assert report.passed, str(report)


def test_graph_matches_torch_export_on_lenet():
    """Same ops, arguments and shapes as torch.export (cudnn_enabled aside: export turns cuDNN off
    while tracing; no converter reads it)."""
    module, example = tm.lenet()

    def ops(graph):
        out = []
        for n in graph.nodes:
            if n.op == "call" and n.target.startswith("aten."):
                args = {k: (graph.params[v.name][0] if v.name in graph.params else "ref")
                        if hasattr(v, "name") else v for k, v in n.args.items() if k != "cudnn_enabled"}
                shape = tuple("B" if isinstance(d, Sym) else d for d in n.meta.shape)
                out.append((n.target, args, shape, n.module_path, n.module_type))
        return out

    assert ops(fx_trace(module, example)) == ops(trace(module, example))


def test_example_inputs_and_module_mode_untouched():
    module, example = tm.resnet_basic()
    module.train()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    x = example[0].clone()
    fx_trace(module, example)
    assert module.training
    assert torch.equal(example[0], x)
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())


def test_varargs_forward_names_inputs_like_export():
    class Cat(nn.Module):
        def forward(self, *xs):
            return torch.cat([xs[0], xs[1]], 1)

    example = (torch.randn(2, 3), torch.randn(2, 4))
    assert fx_trace(Cat(), example).inputs == trace(Cat(), example).inputs == ["xs_0", "xs_1"]
    assert np.isfinite(fast_parity(Cat(), example)[0].max_abs_err)


def test_an_in_place_write_through_a_view_is_scattered_back():
    from xlate.record import record_of

    module = _InPlaceThroughView().eval()
    keras_model = xlate.torch_to_keras(module, (torch.randn(2, 4),), via="direct")  # the gate: parity
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes

