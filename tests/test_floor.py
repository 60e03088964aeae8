"""The rounding floor (xlate.floor): a conversion outside atol/rtol passes when it is as close to a
float64 run of the source as the source's own float32 output is, and still fails when it is wrong.

The rule on synthetic arrays first (a floor of 0, a huge floor, one wrong value, integer outputs,
NaNs, one sample's floor against another's error), then the whole gate on a network whose
float32 rounding is far above atol/rtol for the same reason a deep one's is: a large activation
offset that BatchNorm takes away again (calibrated statistics), so the rounding of the large
value is what is left. The deep real models are in test_floor_models.py (slow).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import xlate
from xlate.errors import BadInputError, ParityError
from xlate.floor import FLOOR_CAP, ReferenceRun, check_factor, judge
from xlate.parity import check_parity
from xlate.runners import TorchRunner

TOL = {"atol": 1e-5, "rtol": 1e-4}
RNG = np.random.default_rng(0)


def _rounded(exact: np.ndarray, size: float, seed: int) -> np.ndarray:
    """``exact`` with random 'rounding' errors of about ``size``."""
    return exact + np.random.default_rng(seed).uniform(-size, size, exact.shape)


# --- the rule on arrays ----------------------------------------------------------------------


def test_within_atol_rtol_passes_without_needing_a_reference():
    exact = RNG.standard_normal((2, 100))
    v = judge([(exact, exact + 1e-7, None)], factor=3.0, **TOL)
    assert v.passed and v.rule == "tolerance" and v.mismatched == 0


def test_outside_atol_rtol_but_within_the_floor_passes_by_rounding():
    exact = RNG.standard_normal((2, 1000))
    source, target = _rounded(exact, 1e-4, 1), _rounded(exact, 1e-4, 2)
    assert not judge([(source, target, exact)], factor=None, **TOL).passed  # the old rule fails it
    v = judge([(source, target, exact)], factor=3.0, **TOL)
    assert v.passed and v.rule == "floor" and v.mismatched == 0
    assert v.floor == pytest.approx(np.abs(source - exact).max()) and v.target_vs_ref64 <= 1e-4
    assert v.reason.startswith("exact up to float32 rounding: ") and "from float64 vs the source's own" in v.reason


def test_a_floor_of_zero_is_never_stricter_than_atol_rtol():
    exact = RNG.standard_normal((2, 100))
    within = judge([(exact, exact + 5e-6, exact)], factor=3.0, **TOL)  # source == reference: floor 0
    assert within.passed and within.rule == "tolerance" and within.floor == 0.0
    beyond = judge([(exact, exact + 1e-3, exact)], factor=3.0, **TOL)  # and it excuses nothing
    assert not beyond.passed and beyond.mismatched == 200 and beyond.floor == 0.0


def test_one_wrong_value_in_a_big_tensor_fails():
    exact = RNG.standard_normal((4, 2500))
    source, target = _rounded(exact, 1e-4, 1), _rounded(exact, 1e-4, 2)
    target[3, 17] += 2e-3  # 20x the rounding: a real error on one value of 10,000
    v = judge([(source, target, exact)], factor=3.0, **TOL)
    assert not v.passed and v.mismatched == 1
    assert "beyond 3x the source's own float32 rounding" in v.reason


def test_a_huge_floor_excuses_nothing():
    """A source whose own float32 result is garbage (floor beyond FLOOR_CAP of the output's scale)."""
    exact = RNG.standard_normal((2, 100))
    source = _rounded(exact, 0.5, 1)  # 'rounding' of half the scale
    target = exact.copy()
    target[0, 0] += 1.0  # and a blatantly wrong value, well within 3x that floor
    v = judge([(source, target, exact)], factor=3.0, **TOL)
    assert np.abs(source - exact).max() > FLOOR_CAP["float32"] * np.abs(exact).max()
    assert not v.passed and "too large to judge by" in v.reason


def test_one_samples_large_floor_does_not_excuse_another_samples_error():
    small, large = RNG.standard_normal((2, 500)), 100 * RNG.standard_normal((2, 500))
    quiet = (_rounded(small, 1e-6, 1), _rounded(small, 1e-6, 2), small)
    loud = (_rounded(large, 1e-3, 3), _rounded(large, 1e-3, 4), large)
    assert judge([quiet, loud], factor=3.0, **TOL).passed
    wrong = quiet[1].copy()
    wrong[1, 3] += 5e-4  # far below 3x the loud sample's floor, far above the quiet one's
    v = judge([(quiet[0], wrong, small), loud], factor=3.0, **TOL)
    assert not v.passed and v.mismatched == 1


def test_a_target_that_rounds_more_than_the_source_passes_on_its_own_rounding():
    """TensorFlow's float32 sigmoid/SiLU round several times more than torch's: converted to Keras,
    an exact EfficientNet is 3.7x torch's own rounding from float64. The target's own float32 vs
    float64 distance (its float64 run, never used as the reference) covers that."""
    exact = RNG.standard_normal((2, 1000))
    source = _rounded(exact, 1e-5, 1)
    target_exact = exact.copy()  # the target computes the same function...
    target = _rounded(target_exact, 4e-5, 2)  # ...with 4x the rounding
    first = judge([(source, target, exact)], factor=3.0, **TOL)
    assert not first.passed and first.retry  # the source's floor alone does not cover it
    v = judge([(source, target, exact, target_exact)], factor=3.0, **TOL)
    assert v.passed and v.rule == "floor" and "within 3x the target's own" in v.reason
    assert v.target_floor == pytest.approx(np.abs(target - target_exact).max())


def test_the_targets_own_rounding_does_not_excuse_a_wrong_target():
    exact = RNG.standard_normal((2, 1000))
    source = _rounded(exact, 1e-5, 1)
    wrong = exact * 1.001  # a scaled weight: its float64 run is just as wrong, its rounding small
    target = _rounded(wrong, 1e-5, 2)
    v = judge([(source, target, exact, wrong)], factor=3.0, **TOL)
    assert not v.passed and "beyond 3x either side's own float32 rounding" in v.reason


def test_integer_outputs_get_no_rounding_allowance():
    expected = np.array([[3, 7, 1]])
    reference = np.array([[3, 900, 1]])  # an index that flips between float32 and float64
    v = judge([(expected, np.array([[3, 8, 1]]), reference)], factor=3.0, **TOL)
    assert not v.passed and "not a float output" in v.reason


def test_nan_where_the_reference_is_finite_fails():
    exact = RNG.standard_normal((2, 50))
    source, target = _rounded(exact, 1e-4, 1), _rounded(exact, 1e-4, 2)
    target[0, 0] = np.nan
    assert not judge([(source, target, exact)], factor=3.0, **TOL).passed


def test_without_a_reference_atol_rtol_decide_and_say_so():
    exact = RNG.standard_normal((2, 50))
    v = judge([(exact, exact + 1e-3, None)], factor=3.0, **TOL)
    assert not v.passed and "no float64 reference" in v.reason


def test_float16_checks_measure_against_float32():
    exact = RNG.standard_normal((2, 200))
    v = judge([(_rounded(exact, 2e-2, 1), _rounded(exact, 2e-2, 2), exact)], atol=1.6e-2, rtol=1.6e-2, factor=3.0,
              dtype="float16")
    assert v.passed and v.reason.startswith("exact up to float16 rounding") and "from float32" in v.reason


@pytest.mark.parametrize("bad", [-1, "three", float("nan")])
def test_a_bad_floor_factor_is_bad_input(bad):
    with pytest.raises(BadInputError, match="floor_factor"):
        check_factor(bad)


def test_floor_factor_zero_or_none_is_atol_rtol_alone():
    assert check_factor(0) is None and check_factor(None) is None and check_factor(3) == 3.0


# --- running the source again -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_a_dtype_run_puts_every_parameter_and_buffer_back(dtype):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    objects = [id(t) for t in list(module.parameters()) + list(module.buffers())]
    with TorchRunner(module, "cpu", True, getattr(torch, dtype)) as run:
        out = run([np.ones((2, 3, 6, 6), np.float32)])
    assert out[0].dtype == (np.float64 if dtype == "float64" else np.float32)
    assert objects == [id(t) for t in list(module.parameters()) + list(module.buffers())]
    for k, v in module.state_dict().items():  # same dtype and values: the train-mode run left no trace
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    assert module.training


class _Scale(keras.layers.Layer):
    """A custom layer that cannot be rebuilt under another dtype policy (its __init__ takes no kwargs)."""

    def __init__(self):
        super().__init__()

    def call(self, x):
        return x * 2.0


def test_a_keras_source_that_cannot_be_rebuilt_in_float64_says_why():
    x = keras.Input((4,))
    model = keras.Model(x, _Scale()(keras.layers.Dense(3)(x)))
    reference = ReferenceRun(model, "keras", dtype="float32", device="cpu", keras_device="cpu:0", training=False)
    assert reference.outputs([[np.ones((2, 4), np.float32)]]) is None
    assert reference.note.startswith("no float64 reference: the Keras source cannot re-instantiate it in float64")


def test_a_converted_keras_model_with_xlate_constants_is_rebuilt_wholly_in_float64():
    """A torch buffer becomes xlate's Constant layer (its dtype in ``dtype_name``): it must follow
    the float64 policy too, or the rebuild is refused (a partly float32 'float64' reference)."""
    from xlate.runners import keras_in_dtype

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)
            self.register_buffer("scale", torch.linspace(0.5, 2.0, 4))

        def forward(self, x):
            return self.linear(x) * self.scale.expand(x.shape[0], -1)

    model = xlate.torch_to_keras(Scaled().eval(), (torch.randn(2, 4),))
    clone, dtype, why = keras_in_dtype(model, "float64")
    assert dtype == "float64" and not why and {str(w.dtype) for w in clone.weights} == {"float64"}
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    out = np.asarray(clone(x))
    assert out.dtype == np.float64 and np.abs(out - np.asarray(model(x))).max() < 1e-6


# --- the gate on a network whose rounding is far above atol/rtol ------------------------------


def offset_net(seed: int = 0, offset: float = 300.0) -> torch.nn.Module:
    """Three Linear -> BatchNorm -> Tanh blocks whose Linear outputs sit at +300: BatchNorm (its
    statistics calibrated on seeded batches) subtracts the offset again, leaving the float32
    rounding of 300 (3e-5) amplified, as in a deep network."""
    torch.manual_seed(seed)
    layers, width = [], 16
    for _ in range(3):
        linear = torch.nn.Linear(width, 64)
        with torch.no_grad():
            linear.bias.add_(offset)
        layers += [linear, torch.nn.BatchNorm1d(64, momentum=None), torch.nn.Tanh()]
        width = 64
    module = torch.nn.Sequential(*layers, torch.nn.Linear(64, 8)).train()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            module(torch.randn(64, 16, generator=generator))
    return module.eval()


PERTURBED = "4"  # the second block's BatchNorm


def _perturb_torch(module):
    with torch.no_grad():
        module[int(PERTURBED)].weight.mul_(1.001)


@pytest.fixture(scope="module")
def offset_pair():
    module = offset_net()
    return module, xlate.torch_to_keras(module, (torch.randn(2, 16),), check=False)


def test_the_gate_passes_an_exact_conversion_that_atol_rtol_rejects(offset_pair):
    module, model = offset_pair
    old = check_parity(module, model, floor_factor=None)
    assert not old.passed and old.per_output[0].floor is None and old.reference == ""
    report = check_parity(module, model)
    out = report.per_output[0]
    assert report.passed and out.rule == "floor" and out.mismatched == 0
    assert out.outside_tol == old.per_output[0].outside_tol == old.per_output[0].mismatched > 0
    # the old rule's verdict stays readable next to the new one (the zoo counts both)
    assert not out.tolerance_passed and not report.tolerance_passed and not old.tolerance_passed
    assert out.floor > 1e-5  # the rounding really is above atol
    assert out.target_vs_ref64 <= 3 * max(out.floor, out.target_floor or 0.0)
    assert "the source module run in float64 (torch)" in report.reference
    text = str(report)
    assert "yes (floor)" in text and "exact up to float32 rounding" in text
    data = json.loads(report.to_json())
    assert data["tolerance"]["floor_factor"] == 3.0 and data["per_output"][0]["rule"] == "floor"
    assert data["per_output"][0]["floor"] == out.floor and data["per_output"][0]["target_vs_ref64"] is not None
    assert data["per_output"][0]["tolerance_passed"] is False and data["tolerance_passed"] is False


def test_torch_to_keras_gates_with_the_floor_by_default(offset_pair):
    module, _ = offset_pair
    example = (torch.randn(2, 16),)
    model = xlate.torch_to_keras(module, example)
    assert any("exact up to float32 rounding" in note for note in model._xlate_record.notes)
    with pytest.raises(ParityError):
        xlate.torch_to_keras(module, example, floor_factor=None)


def test_keras_to_torch_gates_with_the_floor_against_the_keras_source_in_float64(offset_pair):
    _, model = offset_pair
    module = xlate.keras_to_torch(model)  # passes the default gate
    report = check_parity(model, module)
    assert report.passed and report.per_output[0].rule == "floor"
    assert "the source rebuilt under a float64 dtype policy (keras)" in report.reference
    assert not check_parity(model, module, floor_factor=None).passed


def test_one_perturbed_layer_fails_and_per_layer_names_it_torch_source(offset_pair):
    module, model = offset_pair
    perturbed = offset_net()
    _perturb_torch(perturbed)
    report = check_parity(perturbed, model, per_layer=True)
    out = report.per_output[0]  # the target's own rounding was measured too, and does not excuse it either
    assert not report.passed and "beyond 3x either side's own float32 rounding" in out.reason, out.reason
    assert out.target_floor is not None and out.target_vs_ref64 > 3 * max(out.floor, out.target_floor)
    assert report.first_divergence is not None and report.first_divergence.name == PERTURBED
    earlier = report.per_layer[:[r.name for r in report.per_layer].index(PERTURBED)]
    # the earlier layers agree, some of them only within rounding (their floor was measured)
    assert earlier and all(r.passed for r in earlier) and any(r.floor is not None for r in earlier)
    assert any(not r.tolerance_passed for r in earlier) and all(r.tolerance_passed == (r.rule == "tolerance")
                                                                for r in earlier)
    plain = check_parity(module, model, per_layer=True, floor_factor=None)
    assert plain.first_divergence is not None and plain.first_divergence.name != PERTURBED


def test_one_perturbed_layer_fails_and_per_layer_names_it_keras_source(offset_pair):
    _, model = offset_pair
    module = xlate.keras_to_torch(model, check=False)  # records which torch module each Keras layer became
    layer = model.get_layer(PERTURBED)
    weights = layer.get_weights()
    layer.set_weights([weights[0] * 1.001, *weights[1:]])
    try:
        report = check_parity(model, module, per_layer=True)
    finally:
        layer.set_weights(weights)
    out = report.per_output[0]  # the target's own rounding was measured too, and does not excuse it either
    assert not report.passed and "beyond 3x either side's own float32 rounding" in out.reason, out.reason
    assert out.target_floor is not None and out.target_vs_ref64 > 3 * max(out.floor, out.target_floor)
    assert report.first_divergence is not None and report.first_divergence.name == PERTURBED


def test_assert_parity_shares_the_rule(offset_pair):
    from xlate.testing import assert_parity

    module, model = offset_pair
    assert assert_parity(module, model).per_output[0].rule == "floor"
    with pytest.raises(AssertionError, match="parity failed"):
        assert_parity(module, model, floor_factor=None)


def test_float16_check_uses_the_float32_source_as_reference():
    """In float16 (tolerances scaled to 16 eps) an offset of 64 leaves rounding of 0.03-0.1, past
    the scaled atol/rtol: the float32 run of the source is the reference."""
    module = offset_net(offset=64.0)
    model = xlate.torch_to_keras(module, (torch.randn(2, 16),), check=False)
    old = check_parity(module, model, dtype="float16", floor_factor=None)
    report = check_parity(module, model, dtype="float16")
    out = report.per_output[0]
    assert not old.passed and report.passed and out.rule == "floor", str(report)
    assert out.reason.startswith("exact up to float16 rounding") and "from float32" in out.reason
    assert "the source module run in float32 (torch)" in report.reference
    assert next(module.parameters()).dtype == torch.float32 and model.weights[0].dtype == "float32"


def test_in_place_updates_after_a_layer_do_not_corrupt_its_captured_output():
    """``x += residual`` (Hugging Face ResNet) and ReLU(inplace=True) change a layer's output tensor
    after its hook ran: the capture must be a copy, or per-layer blames an exact layer."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)
            self.act = torch.nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.bn(self.conv(x))
            y += x
            return self.act(y)

    torch.manual_seed(0)
    module = Block().eval()
    model = xlate.torch_to_keras(module, (torch.randn(2, 3, 8, 8),), check=False)
    report = check_parity(module, model, per_layer=True)
    assert report.passed and report.per_layer and all(r.passed for r in report.per_layer), str(report)
    assert report.tolerance_passed == all(o.rule == "tolerance" for o in report.per_output)


def test_xlate_check_says_which_rule_passed_and_floor_factor_0_is_the_old_rule(offset_pair, tmp_path):
    """The CLI on files: a torch.export program and the converted .keras. The table and the JSON
    name the rule and the figures; ``--floor-factor 0`` is atol/rtol alone, and it fails."""
    from tests.test_cli import run_xlate

    module, model = offset_pair
    torch.export.save(torch.export.export(module, (torch.randn(2, 16),)), tmp_path / "net.pt2")
    model.save(tmp_path / "net.keras")
    ok = run_xlate("check", "net.pt2", "net.keras", "--json", "report.json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "yes (floor)" in ok.stdout and "output0: exact up to float32 rounding: " in ok.stdout
    data = json.loads((tmp_path / "report.json").read_text())
    out = data["per_output"][0]
    assert data["passed"] and data["tolerance"]["floor_factor"] == 3.0 and out["rule"] == "floor"
    assert out["outside_tol"] > 0 and out["floor"] > 0
    assert out["target_vs_ref64"] <= 3 * max(out["floor"], out["target_floor"] or 0.0)
    assert "float64" in data["reference"]
    old = run_xlate("check", "net.pt2", "net.keras", "--floor-factor", "0", cwd=tmp_path)
    assert old.returncode == 1 and "FAIL" in old.stdout and "beyond atol/rtol" in old.stdout, old.stdout


def test_a_carried_float64_reference_works_like_the_live_one(offset_pair):
    """``check_torch_against_reference`` (the GPU machine's path: Keras outputs computed where
    TensorFlow is, carried over) takes the source's float64 outputs the same way."""
    from xlate.parity import check_torch_against_reference
    from xlate.parity_inputs import make_inputs
    from xlate.runners import keras_in_dtype

    module, model = offset_pair
    model64, dtype, _ = keras_in_dtype(model, "float64")
    assert dtype == "float64"
    inputs = make_inputs(model._xlate_io.inputs, samples=2, seed=0)
    expected = [[np.asarray(model(x[0], training=False))] for x in inputs]
    carried = [[np.asarray(model64(x[0], training=False))] for x in inputs]
    without = check_torch_against_reference(module, inputs, expected)
    report = check_torch_against_reference(module, inputs, expected, floor_reference=carried)
    assert not without.passed and "no float64 reference" in without.per_output[0].reason
    assert report.passed and report.per_output[0].rule == "floor", str(report)
    assert report.reference.startswith("the source's carried float64 outputs")
