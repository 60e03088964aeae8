"""Which input sizes stay dynamic, and why: the DimPlan, the dynamic= choices, the same answer from
the fx fast path and torch.export, the run-time size layers, and the CLI (--input-shape ?, --static,
xlate inspect)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import xlate
from fixtures import torch_models as tm
from xlate.errors import BadInputError, UnsupportedOpError
from xlate.record import record_of
from xlate.torch2keras.dims import DimPlan
from xlate.torch2keras.export_trace import ExportTrace
from xlate.torch2keras.fxtrace import FastTrace

from .test_cli import run_xlate


def test_plan_groups_equal_sizes_of_several_inputs_and_keeps_size_one_static():
    plan = DimPlan(["ids", "mask", "pixels"], [(2, 16), (2, 16), (2, 1, 8, 8)])
    assert plan.symbols["s0"].members == [(0, 0), (1, 0), (2, 0)]
    assert plan.symbols["s1"].members == [(0, 1), (1, 1)]  # ids and mask: one length
    # equal sizes at different axes (a square image) vary on their own
    assert plan.symbols["s2"].members == [(2, 2)] and plan.symbols["s3"].members == [(2, 3)]
    pixels_c = next(d for d in plan.dims if (d.index, d.axis) == (2, 1))
    assert "size 1" in pixels_c.reason


def test_plan_modes_and_explicit_bounds():
    assert list(DimPlan(["x"], [(2, 3, 8)], "none").symbols) == []
    assert list(DimPlan(["x"], [(2, 3, 8)], "batch").symbols) == ["s0"]
    plan = DimPlan(["x"], [(2, 3, 8)], {"x": {2: (4, 16)}})
    (sym,) = plan.active()
    assert sym.members == [(0, 2)] and (sym.low, sym.high) == (4, 16) and sym.required
    mixed = DimPlan(["x"], [(2, 3, 8)], {0: {2: None}, "*": "batch"})
    assert set(mixed.symbols) == {"s0", "s1"} and mixed.symbols["s1"].required and not mixed.symbols["s0"].required
    for bad, says in [("sometimes", "dynamic must be"), ({"y": {1: None}}, "names input"),
                      ({"x": {5: None}}, "no axis"), ({"x": {2: (10, 20)}}, "outside")]:
        with pytest.raises(BadInputError, match=says):
            DimPlan(["x"], [(2, 3, 8)], bad)


def test_dynamic_choices_through_the_api():
    module, example = tm.text_gru()
    module.eval()
    static = xlate.torch_to_keras(module, example, dynamic="none")
    assert tuple(static.inputs[0].shape) == (2, 12)
    batch = xlate.torch_to_keras(module, example, dynamic="batch")
    assert tuple(batch.inputs[0].shape) == (None, 12)
    length = xlate.torch_to_keras(module, example, dynamic={"tokens": {1: (4, 40)}})
    assert tuple(length.inputs[0].shape) == (2, None)
    d = next(d for d in record_of(length).dims if d["axis"] == 1)
    assert d["dynamic"] and (d["low"], d["high"]) == (4, 40)


def test_a_required_size_that_cannot_stay_dynamic_is_an_error_with_its_reason():
    module, example = tm.lenet()
    with pytest.raises(UnsupportedOpError, match="cannot stay dynamic.*fc1"):
        xlate.torch_to_keras(module.eval(), example, dynamic={"x": {2: None}, "*": "auto"})


class _FCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x):
        return nn.functional.interpolate(self.conv(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class _Branchy(nn.Module):
    """A bound from Python (T <= 20), a pinned size (the last axis, by a Linear) and a free batch."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        if x.shape[1] > 20:
            raise ValueError("too long")
        return self.fc(x).mean(1)


@pytest.mark.parametrize("make", [
    lambda: (_Branchy(), (torch.randn(2, 7, 6),)),
    lambda: (tm.lenet()[0].eval(), tm.lenet()[1]),
    lambda: (tm.resnet_basic()[0].eval(), tm.resnet_basic()[1]),
    lambda: (tm.transformer_encoder()[0].eval(), tm.transformer_encoder()[1]),
    lambda: (_FCN(), (torch.randn(2, 3, 32, 32),)),
    pytest.param(lambda: (tm.hf_bert()[0].eval(), tm.hf_bert()[1]), marks=pytest.mark.slow),
    pytest.param(lambda: (tm.hf_gpt2()[0].eval(), tm.hf_gpt2()[1]), marks=pytest.mark.slow),
    pytest.param(lambda: (tm.hf_vit()[0].eval(), tm.hf_vit()[1]), marks=pytest.mark.slow),
], ids=["python-bound", "lenet", "resnet", "transformer", "fcn", "bert", "gpt2", "vit"])
def test_fast_path_and_torch_export_give_the_same_answer(make):
    """Recurrent layers are the one known difference: torch.export's GRU/LSTM kernels specialize the
    sequence length (Dim.DYNAMIC is refused there), the fast path keeps it dynamic (with parity at
    other lengths, tests/test_dynamic_models.py)."""
    from xlate.torch2keras.convert import emit_pinning

    module, example = make()
    fast, export = FastTrace(module, example), ExportTrace(module, example)

    def answer(traced):
        emit_pinning(traced)  # what the Keras graph keeps, as a conversion does
        return [(d.index, d.axis, d.dynamic, d.high) for d in traced.graph.dims]

    assert answer(fast) == answer(export), ([d.describe() for d in fast.graph.dims],
                                            [d.describe() for d in export.graph.dims])


def test_python_bound_is_recorded_with_its_condition():
    model = xlate.torch_to_keras(_Branchy(), (torch.randn(2, 7, 6),))
    length = next(d for d in record_of(model).dims if d["axis"] == 1)
    assert length["dynamic"] and length["high"] == 20 and "> 20" in length["reason"]


# --- the run-time size layers -------------------------------------------------------------------


def _layers():
    from xlate.keras_layers import (
        DynamicBroadcast,
        DynamicPad,
        DynamicRange,
        DynamicReshape,
        DynamicResize,
        DynamicSize,
        DynamicSlice,
    )

    return [
        (DynamicReshape(["a0_0", "a0_1", 2, 4]), lambda n: [np.ones((2, n, 8), "float32")],
         lambda x: x.reshape(2, -1, 2, 4)),
        (DynamicBroadcast(["a1_0", 1, "a1_1"]), lambda n: [np.ones((1, 1, 1), "float32"), np.ones((3, n), "float32")],
         lambda x, y: np.broadcast_to(x, (3, 1, y.shape[1]))),
        (DynamicRange([0, "a0_1 - 1", 1]), lambda n: [np.ones((1, n), "float32")], lambda x: np.arange(x.shape[1] - 1)),
        (DynamicSlice([1, "a0_1//2"], axis=1), lambda n: [np.arange(2 * n, dtype="float32").reshape(2, n)],
         lambda x: x[:, 1:x.shape[1] // 2]),
        (DynamicSize(["a0_0*a0_1"], dtype_name="int32"), lambda n: [np.ones((3, n), "float32")],
         lambda x: np.int32(x.size)),
        (DynamicPad([0, 0, 0, "a0_1 % 3", 0, 0], value=-1.0), lambda n: [np.ones((1, n, 2), "float32")],
         lambda x: np.pad(x, [(0, 0), (0, x.shape[1] % 3), (0, 0)], constant_values=-1.0)),
        (DynamicResize(["2*a0_1", "a0_2 + 3"]), lambda n: [np.random.default_rng(0).random((1, n, 5, 2), "float32")],
         None),
    ]


@pytest.mark.parametrize("index", range(7))
def test_size_layers_round_trip_their_config_and_run_at_any_size(index):
    import keras
    import tensorflow as tf

    layer, make, expected = _layers()[index]
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()

    def call(xs):
        return clone(list(xs) if len(xs) > 1 else xs[0])

    # a TensorFlow graph with free sizes (what SavedModel and TFLite export) and eager calls agree
    specs = [tf.TensorSpec((None,) * a.ndim, a.dtype) for a in make(4)]
    graph_fn = tf.function(lambda *xs: call(xs), input_signature=specs)
    for n in (4, 7, 12):
        arrays = make(n)
        eager = np.asarray(call(arrays))
        np.testing.assert_array_equal(eager, np.asarray(graph_fn(*arrays)))
        if expected is not None:
            np.testing.assert_allclose(eager, expected(*arrays), rtol=0, atol=1e-6)
    # and it builds in a functional model on inputs with free sizes
    symbolic = call([keras.Input(batch_shape=(None,) * a.ndim, dtype=str(a.dtype)) for a in make(4)])
    assert len(symbolic.shape) == np.ndim(expected(*make(4))) if expected is not None else True


def test_dynamic_resize_is_torch_interpolate():
    from xlate.keras_layers import DynamicResize

    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype("float32")
    for mode, sizes in (("bilinear", (9, 4)), ("bilinear", (5, 21)), ("nearest", (10, 14)), ("nearest", (3, 7))):
        layer = DynamicResize([*sizes], interpolation=mode)
        got = np.asarray(layer(x))
        want = nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=sizes, mode=mode,
                                         **({"align_corners": False} if mode == "bilinear" else {}))
        np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), atol=1e-6, rtol=0)


# --- the command line ---------------------------------------------------------------------------

CNN_SOURCE = '''
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class Flat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 8, 2)

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))
'''


@pytest.fixture(scope="module")
def cli_work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dyncli")
    (folder / "cnn.py").write_text(CNN_SOURCE)
    import importlib.util

    spec = importlib.util.spec_from_file_location("cnn", folder / "cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.Net().state_dict(), folder / "net.pth")
    torch.save(module.Flat().state_dict(), folder / "flat.pth")
    return folder


@pytest.mark.slow
def test_cli_free_sizes_static_and_inspect(cli_work):
    import keras

    import xlate.keras_layers  # noqa: F401 - the size layers

    free = run_xlate("torch2tf", "net.pth", "--model-class", "cnn:Net", "--input-shape", "1,3,?,?", "-o", "free.keras",
                     cwd=cli_work)
    assert free.returncode == 0, free.stderr
    assert "also checked at input shape(s)" in free.stdout
    assert tuple(keras.saving.load_model(cli_work / "free.keras").inputs[0].shape) == (None, 3, None, None)
    static = run_xlate("torch2tf", "net.pth", "--model-class", "cnn:Net", "--input-shape", "1,3,16,16", "--static",
                       "-o", "static.keras", cwd=cli_work)
    assert static.returncode == 0, static.stderr
    assert tuple(keras.saving.load_model(cli_work / "static.keras").inputs[0].shape) == (1, 3, 16, 16)
    # a size marked free that the model pins: exit 3, with the op that pins it
    pinned = run_xlate("torch2tf", "flat.pth", "--model-class", "cnn:Flat", "--input-shape", "1,3,?,8",
                       "-o", "pinned.keras", cwd=cli_work)
    assert pinned.returncode == 3 and "fc" in pinned.stderr and "Traceback" not in pinned.stderr, pinned.stderr
    assert not (cli_work / "pinned.keras").exists()
    inspect = run_xlate("inspect", "flat.pth", "--model-class", "cnn:Flat", "--input-shape", "2,3,32,8", "--json",
                        cwd=cli_work)
    dims = json.loads(inspect.stdout)["dims"]
    assert [(d["axis"], d["dynamic"]) for d in dims] == [(0, True), (1, False), (2, False), (3, False)]
    assert all("fc" in d["reason"] for d in dims[2:]), dims
    table = run_xlate("inspect", "net.pth", "--model-class", "cnn:Net", "--input-shape", "2,3,8,8", cwd=cli_work)
    assert "input sizes" in table.stdout and "dynamic" in table.stdout
