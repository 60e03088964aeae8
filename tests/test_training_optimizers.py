"""Optimizer translation, generated from the optimizer rows' samples, in both directions.

Each case builds the row's sample as a real optimizer in the source framework, translates it,
feeds both sides the same gradients for 8 steps (large and tiny ones, so epsilon placement
matters) and compares the weights. Also checked: the table's default values against the real
classes' signatures, the native-vs-emulation choice, param groups, and that the native classes
with matched hyperparameters really do differ where the rows say so.
"""

import inspect

import keras
import numpy as np
import pytest
import torch

import xlate
from xlate.errors import XlateError
from xlate.table import table
from xlate.training import translation_of
from xlate.training.pairing import pair_parameters, weight_differences
from xlate.training.samples import _resolve, keras_optimizer, paired_mlp, sample_mlp, torch_optimizer

ROWS = table().family("optimizer")
T2K = [(r, s) for r in ROWS for s in r.samples if s.torch is not None]
K2T = [(r, s) for r in ROWS for s in r.samples if s.keras is not None]
STEPS = 8


def _ids(cases):
    return [f"{r.id}-{s.id}" for r, s in cases]


def _gradients(model, step, seed=0, tiny=False):
    """Per-parameter gradients in torch layout: normal ones with tiny ones (1e-6) every third
    step, or only tiny ones (where epsilon placement dominates, as for rarely-updated parameters)."""
    rng = np.random.default_rng(seed + step)
    scale = 1e-6 if tiny or step % 3 == 2 else 1.0
    return {n: (rng.standard_normal(tuple(p.shape)) * scale).astype(np.float32) for n, p in model.named_parameters()}


def _step_both(tm, km, topt, kopt, step, tiny=False):
    grads = _gradients(tm, step, tiny=tiny)
    for name, p in tm.named_parameters():
        p.grad = torch.from_numpy(grads[name])
    topt.step()
    by_path = {}
    for pair in pair_parameters(tm, km):
        for path, g in zip(pair.keras, pair.to_keras(*(grads[n] for n in pair.torch))):
            by_path[path] = g
    kopt.apply([by_path[v.path] for v in km.trainable_variables], km.trainable_variables)


def _max_weight_error(tm, km):
    return max(weight_differences(tm, km, pair_parameters(tm, km)).values())


@pytest.mark.parametrize("row,sample", T2K, ids=_ids(T2K))
def test_optimizer_torch_to_keras(row, sample):
    tm, km = sample_mlp(sample, 5, 3)
    topt = torch_optimizer(row, sample, tm.parameters())
    kopt = xlate.translate_optimizer(topt, km, source_model=tm)
    assert translation_of(kopt).row == row.id
    assert translation_of(kopt).rows_used[row.id] == 1
    for step in range(STEPS):
        _step_both(tm, km, topt, kopt, step)
    err = _max_weight_error(tm, km)
    moved = max(float(np.abs(p.detach().numpy()).max()) for p in tm.parameters())
    assert err < 1e-6, f"{row.id}/{sample.id}: weights differ by {err} ({translation_of(kopt).describe()})"
    assert moved > 0


@pytest.mark.parametrize("row,sample", K2T, ids=_ids(K2T))
def test_optimizer_keras_to_torch(row, sample):
    tm, km = sample_mlp(sample, 5, 3)
    kopt = keras_optimizer(row, sample)
    kopt.build(km.trainable_variables)
    topt = xlate.translate_optimizer(kopt, tm, source_model=km)
    assert translation_of(topt).row == row.id
    for step in range(STEPS):
        _step_both(tm, km, topt, kopt, step)
    err = _max_weight_error(tm, km)
    assert err < 1e-6, f"{row.id}/{sample.id}: weights differ by {err} ({translation_of(topt).describe()})"


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_row_defaults_match_the_real_classes(row):
    """Every default the row writes down is the real constructor default on that side."""
    torch_cls, keras_cls = _resolve(row.torch), _resolve(row.keras)
    torch_params = inspect.signature(torch_cls.__init__).parameters
    keras_params = inspect.signature(keras_cls.__init__).parameters
    checked = 0
    for a in row.args:
        if a.torch not in (None, "-") and a.torch_default is not None:
            name, _, index = a.torch.partition("[")
            default = torch_params[name].default
            if index:
                default = default[int(index.rstrip("]"))]
            assert default == a.torch_default, f"{row.id}: torch {a.torch} default is {default}, row says {a.torch_default}"
            checked += 1
        if a.keras in keras_params and a.keras_default is not None:
            default = keras_params[a.keras].default
            expected = None if a.keras_default == "None" else a.keras_default
            assert default == expected, f"{row.id}: keras {a.keras} default is {default}, row says {a.keras_default}"
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("torch_cls,torch_kw,keras_cls,keras_kw", [
    ("Adam", {"lr": 0.01, "eps": 1e-8}, "Adam", {"learning_rate": 0.01, "epsilon": 1e-8}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-8}, "RMSprop", {"learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-8}),
    ("Adagrad", {"lr": 0.05}, "Adagrad", {"learning_rate": 0.05}),
], ids=["adam-epsilon", "rmsprop-epsilon", "adagrad-accumulator"])
def test_native_classes_with_matched_names_differ(torch_cls, torch_kw, keras_cls, keras_kw):
    """The facts the emulations exist for: the native classes really diverge (so the emulation
    tests above can fail)."""
    tm, km = paired_mlp(5, 3)
    topt = getattr(torch.optim, torch_cls)(tm.parameters(), **torch_kw)
    kopt = getattr(keras.optimizers, keras_cls)(**keras_kw)
    for step in range(STEPS):
        _step_both(tm, km, topt, kopt, step, tiny=True)
    assert _max_weight_error(tm, km) > 1e-3


EPS_CASES = [c for c in T2K if c[0].id in ("adam", "rmsprop", "adagrad") and c[1].id == "default"]


@pytest.mark.parametrize("row,sample", EPS_CASES, ids=_ids(EPS_CASES))
def test_emulation_is_exact_where_epsilon_dominates(row, sample):
    tm, km = paired_mlp(5, 3)
    topt = torch_optimizer(row, sample, tm.parameters())
    kopt = xlate.translate_optimizer(topt, km)
    start = {n: p.detach().clone() for n, p in tm.named_parameters()}
    for step in range(STEPS):
        _step_both(tm, km, topt, kopt, step, tiny=True)
    moved = max(float((p.detach() - start[n]).abs().max()) for n, p in tm.named_parameters())
    assert moved > 1e-3  # epsilon-sized gradients still move the weights: the case the emulation is for
    assert _max_weight_error(tm, km) < 1e-6


def test_native_target_where_the_formula_is_the_same():
    tm, km = paired_mlp(5, 3)
    cases = [
        (torch.optim.SGD(tm.parameters(), lr=0.1), keras.optimizers.SGD),
        (torch.optim.NAdam(tm.parameters(), lr=0.01, momentum_decay=1.0), keras.optimizers.Nadam),
        (torch.optim.Adadelta(tm.parameters()), keras.optimizers.Adadelta),
    ]
    for topt, native in cases:
        kopt = xlate.translate_optimizer(topt, km)
        assert type(kopt) is native and not translation_of(kopt).emulated
    kopt = keras.optimizers.Nadam(0.01, weight_decay=0.01)
    back = xlate.translate_optimizer(kopt, tm)
    assert type(back) is torch.optim.NAdam
    assert back.defaults["momentum_decay"] == 1.0 and back.defaults["decoupled_weight_decay"]


def test_emulate_never_refuses_a_formula_difference():
    tm, km = paired_mlp(5, 3)
    with pytest.raises(XlateError, match="epsilon"):
        xlate.translate_optimizer(torch.optim.Adam(tm.parameters()), km, emulate="never")
    with pytest.raises(XlateError, match="lr"):
        xlate.translate_optimizer(keras.optimizers.SGD(0.1, momentum=0.9), tm, emulate="never")


def test_emulation_round_trips_to_the_native_class():
    tm, km = paired_mlp(5, 3)
    topt = torch.optim.RMSprop(tm.parameters(), lr=0.005, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01)
    kopt = xlate.translate_optimizer(topt, km)
    back = xlate.translate_optimizer(kopt, tm)
    assert type(back) is torch.optim.RMSprop
    for key in ("lr", "alpha", "momentum", "centered", "weight_decay", "eps"):
        assert back.defaults[key] == pytest.approx(topt.defaults[key]), key
    kadam = keras.optimizers.AdamW(0.01, weight_decay=0.05)
    tadam = xlate.translate_optimizer(kadam, tm)
    again = xlate.translate_optimizer(tadam, km)
    assert type(again) is keras.optimizers.AdamW and again.weight_decay == pytest.approx(0.05)


def test_param_groups_without_decay_become_keras_exclusions_and_back():
    tm, km = paired_mlp(5, 3)
    decay = [p for n, p in tm.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in tm.named_parameters() if n.endswith("bias")]
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=0.01)
    kopt = xlate.translate_optimizer(topt, km, source_model=tm)
    assert kopt.weight_decay == pytest.approx(0.1)
    for step in range(STEPS):
        _step_both(tm, km, topt, kopt, step)
    assert _max_weight_error(tm, km) < 1e-5

    tm2, km2 = paired_mlp(5, 3, seed=1)
    kopt2 = keras.optimizers.AdamW(0.01, weight_decay=0.1)
    kopt2.exclude_from_weight_decay(var_names=["bias"])
    kopt2.build(km2.trainable_variables)
    topt2 = xlate.translate_optimizer(kopt2, tm2, source_model=km2)
    decays = sorted(g["weight_decay"] for g in topt2.param_groups)
    assert decays == [0.0, pytest.approx(0.1)]
    for step in range(STEPS):
        _step_both(tm2, km2, topt2, kopt2, step)
    assert _max_weight_error(tm2, km2) < 1e-5


def test_param_groups_with_different_lrs_become_a_multi_optimizer():
    tm, km = paired_mlp(5, 3)
    first = list(tm[0].parameters())
    second = list(tm[2].parameters())
    topt = torch.optim.SGD([{"params": first, "lr": 0.1}, {"params": second, "lr": 0.01, "momentum": 0.9}])
    kopt = xlate.translate_optimizer(topt, km, source_model=tm)
    assert isinstance(kopt, keras.optimizers.MultiOptimizer)
    for step in range(STEPS):
        _step_both(tm, km, topt, kopt, step)
    assert _max_weight_error(tm, km) < 1e-5


def test_emulations_serialize_with_keras():
    from xlate.training import keras_optimizers
    from xlate.training.keras_schedules import TorchOneCycleLR

    for cls in keras_optimizers.BY_TORCH_CLASS.values():
        opt = cls(learning_rate=0.02)
        again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert type(again) is cls and again.get_config() == opt.get_config()
    cycled = keras_optimizers.TorchAdam(0.01, beta_1=TorchOneCycleLR(0.1, 12, quantity="momentum"))
    again = keras.optimizers.deserialize(keras.optimizers.serialize(cycled))
    assert isinstance(again.beta_1, TorchOneCycleLR) and again.beta_1.quantity == "momentum"


def test_keras_schedule_inside_the_optimizer_goes_both_ways():
    tm, km = paired_mlp(5, 3)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    kopt = keras.optimizers.SGD(schedule, momentum=0.9)
    kopt.build(km.trainable_variables)
    topt = xlate.translate_optimizer(kopt, tm)
    assert topt.lr_schedule.keras_schedule is schedule
    for step in range(STEPS):
        _step_both(tm, km, topt, kopt, step)
    assert _max_weight_error(tm, km) < 1e-5
    back = xlate.translate_optimizer(topt, km, source_model=tm)  # state and all: 8 steps in
    assert type(back) is keras.optimizers.SGD and back._learning_rate is schedule
    assert int(back.iterations.numpy()) == STEPS
    assert float(back.learning_rate.numpy()) == pytest.approx(0.1 * 0.5 ** (STEPS / 2))
