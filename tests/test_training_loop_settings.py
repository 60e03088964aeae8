"""What a training loop does around the optimizer, beyond the generated row tests
(test_training_loop_rows.py): clip_grad_norm_ on the emulations, EMA resumed from a ported state
both ways, accumulation with schedules, loss scaling's state after skipped steps, the stated
bound for bfloat16 compute, the TrainingSetup's torch loop, and the controls that show each check
can fail (per-variable vs global norm, a restarted EMA, no accumulation, clipping never active).
"""

import keras
import numpy as np
import pytest
import torch

import xlate
from xlate.training.mixed_precision import mixed_precision_bound
from xlate.training.pairing import copy_weights
from xlate.training.samples import paired_mlp

STEPS, ATOL = 10, 1e-4
get_ema = torch.optim.swa_utils.get_ema_multi_avg_fn


def _batches(steps=STEPS, seed=0, scale=3.0, one_hot=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        y = rng.integers(0, 4, size=8)
        out.append(((rng.standard_normal((8, 6)) * scale).astype(np.float32),
                    np.eye(4, dtype=np.float32)[y] if one_hot else y.astype(np.int64)))
    return out


def _ce_keras():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _ema(tm, decay=0.8):
    return torch.optim.swa_utils.AveragedModel(tm, multi_avg_fn=get_ema(decay))


# --- clipping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_clip_grad_norm_torch_to_keras(opt):
    tm, km = paired_mlp(6, 4)
    optimizer = torch.optim.SGD(tm.parameters(), lr=0.1) if opt == "sgd" else \
        torch.optim.AdamW(tm.parameters(), lr=0.01)
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), _batches(),
                                         clip_grad_norm=0.5, require_clipping=True)
    assert report.passed, str(report)
    t = next(t for t in report.translations if t["row"] == opt)
    assert t["target"].startswith("xlate.Torch") and any("clip_grad_norm_ -> torch_clip_grad_norm" in n
                                                         for n in t["notes"])
    assert len(report.clipped_steps) >= 3


def test_clip_grad_value_torch_to_keras_is_native_clipvalue():
    tm, km = paired_mlp(6, 4)
    kopt = xlate.translate_optimizer(torch.optim.SGD(tm.parameters(), lr=0.1), km, clip_grad_value=0.05)
    assert type(kopt) is keras.optimizers.SGD and kopt.clipvalue == 0.05
    report = xlate.check_training_parity(tm, km, torch.optim.SGD(tm.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(),
                                         _batches(), clip_grad_value=0.05, require_clipping=True)
    assert report.passed and report.clipped_steps, str(report)


def test_per_variable_clipnorm_is_not_clip_grad_norm():
    """Control: Keras's clipnorm clips each variable; torch's clip_grad_norm_ the global norm."""
    tm, km = paired_mlp(6, 4)
    report = xlate.check_training_parity(tm, km, torch.optim.SGD(tm.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(),
                                         _batches(), clip_grad_norm=0.5,
                                         target_optimizer=keras.optimizers.SGD(0.1, clipnorm=0.5))
    assert not report.passed


def test_require_clipping_fails_when_it_never_clips():
    tm, km = paired_mlp(6, 4)
    report = xlate.check_training_parity(tm, km, torch.optim.SGD(tm.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(),
                                         _batches(), clip_grad_norm=1e6, require_clipping=True)
    assert not report.passed and "never" in report.message


# --- EMA ----------------------------------------------------------------------------------------


def test_ema_resume_in_keras_continues_the_trajectory():
    """5 torch steps with an AveragedModel, then port optimizer state and EMA weights: 5 more steps on
    both sides keep weights and EMA weights together."""
    tm, km = paired_mlp(6, 4)
    batches = _batches(10)
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.02)
    ema, loss = _ema(tm), torch.nn.CrossEntropyLoss()
    for x, y in batches[:5]:
        optimizer.zero_grad()
        loss(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()
        ema.update_parameters(tm)
    report = xlate.check_training_parity(tm, km, optimizer, loss, batches[5:], ema=ema, sync_weights=True)
    assert report.passed, str(report)
    notes = [n for t in report.translations for n in t["notes"]]
    assert any("EMA weights ported" in n for n in notes) and any("state ported (5 step" in n for n in notes)
    assert report.steps[1].max_abs_ema_err is not None and report.max_abs_ema_err <= ATOL


def test_ema_resume_without_the_averages_does_not_match():
    """Control: the same resume with the EMA restarted (a decay instead of the AveragedModel's state)."""
    tm, km = paired_mlp(6, 4)
    batches = _batches(10)
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.02)
    ema, loss = _ema(tm), torch.nn.CrossEntropyLoss()
    for x, y in batches[:5]:
        optimizer.zero_grad()
        loss(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()
        ema.update_parameters(tm)
    copy_weights(tm, km)
    fresh = xlate.translate_optimizer(optimizer, km, source_model=tm, ema=0.8)
    report = xlate.check_training_parity(tm, km, optimizer, loss, batches[5:], ema=ema, target_optimizer=fresh)
    assert not report.passed and report.max_abs_ema_err > ATOL


def test_ema_resume_in_torch_continues_the_trajectory():
    tm, km = paired_mlp(6, 4)
    batches = _batches(10)
    kopt = keras.optimizers.SGD(0.1, momentum=0.9, use_ema=True, ema_momentum=0.8)
    km.compile(optimizer=kopt, loss=_ce_keras())
    for x, y in batches[:5]:
        km.train_on_batch(x, y)
    report = xlate.check_training_parity(km, tm, kopt, _ce_keras(), batches[5:], sync_weights=True)
    assert report.passed, str(report)
    assert report.steps[1].max_abs_ema_err is not None and report.max_abs_ema_err <= ATOL
    assert any("state ported (5 step" in n for t in report.translations for n in t["notes"])


def test_ema_round_trip_keeps_the_averages():
    """torch -> Keras -> torch: the AveragedModel's weights come back in translate_training's setup."""
    tm, km = paired_mlp(6, 4)
    batches = _batches(6)
    optimizer = torch.optim.SGD(tm.parameters(), lr=0.1)
    ema = _ema(tm, 0.5)
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), batches, ema=ema)
    assert report.passed
    kopt = km.optimizer
    tm2, _ = paired_mlp(6, 4, seed=3)
    copy_weights(km, tm2)
    setup = xlate.translate_training(km, kopt, target=tm2)
    assert setup.ema is None and setup.optimizer.use_ema  # Keras's EMA runs inside the xlate.KerasSGD step
    averages = {n: s["average"] for n, s in ((n, setup.optimizer.state[p]) for n, p in tm2.named_parameters())}
    for name, p in ema.module.named_parameters():
        np.testing.assert_allclose(averages[name].numpy(), p.detach().numpy(), atol=1e-6)


# --- gradient accumulation -------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [None, "step", "batch"])
def test_accumulation_torch_to_keras(schedule):
    tm, km = paired_mlp(6, 4)
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.02)
    sched, kwargs = None, {}
    if schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        kwargs = {"steps_per_epoch": 4}
    elif schedule == "batch":
        sched = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.2, total_iters=4)
        kwargs = {"stepping": "batch"}
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), _batches(12), schedule=sched,
                                         grad_accum_steps=2, **kwargs)
    assert report.passed, str(report)
    lrs = [s.target_lr for s in report.steps[1:]]
    assert schedule is None or len(set(np.round(lrs, 9))) > 1
    assert lrs[0] == lrs[1]  # one lr per 2-batch window


def test_accumulation_with_ema_and_clipping_torch_to_keras():
    tm, km = paired_mlp(6, 4)
    optimizer = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), _batches(12), ema=_ema(tm),
                                         grad_accum_steps=3, clip_grad_norm=0.5, require_clipping=True)
    assert report.passed, str(report)
    assert report.max_abs_ema_err <= ATOL


def test_accumulation_keras_to_torch_in_a_plain_loop():
    tm, km = paired_mlp(6, 4)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5)
    kopt = keras.optimizers.SGD(schedule, momentum=0.9, gradient_accumulation_steps=3, use_ema=True, ema_momentum=0.8)
    report = xlate.check_training_parity(km, tm, kopt, _ce_keras(), _batches(12))
    assert report.passed, str(report)
    assert any("zero_grad" in line for line in report.loop)


def test_accumulation_loop_differs_from_a_plain_step_per_batch():
    """Control: a Keras optimizer that does not accumulate departs from the accumulating torch loop."""
    tm, km = paired_mlp(6, 4)
    optimizer = torch.optim.SGD(tm.parameters(), lr=0.1)
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), _batches(6),
                                         grad_accum_steps=2, target_optimizer=keras.optimizers.SGD(0.1))
    assert not report.passed


# --- mixed precision ---------------------------------------------------------------------------


def _regression(steps=12, seed=0, overflow=(3, 8)):
    """Regression batches; the targets of the ``overflow`` batches are 1e12, so their scaled loss's
    gradients overflow float32 at a 2**100 loss scale: those steps are skipped on both sides."""
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal((8, 6)) * 3).astype(np.float32),
             (rng.standard_normal((8, 4)) * (1e12 if i in overflow else 1.0)).astype(np.float32)) for i in range(steps)]


def test_grad_scaler_torch_to_keras_exact_with_skipped_steps():
    tm, km = paired_mlp(6, 4)
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.02)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100, growth_interval=2)
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.MSELoss(), _regression(), grad_scaler=scaler)
    assert report.passed, str(report)
    assert type(km.optimizer).__name__ == "LossScaleOptimizer"
    assert float(scaler.get_scale()) == float(keras.ops.convert_to_numpy(km.optimizer.dynamic_scale)) == 2.0**102
    assert float(optimizer.state[next(tm.parameters())]["step"]) == 10  # 2 of 12 steps skipped on both sides
    assert int(keras.ops.convert_to_numpy(km.optimizer.iterations)) == 10


def _bf16_keras(seed=0):
    """paired_mlp's Keras model with mixed_bfloat16 layers (float32 variables)."""
    torch.manual_seed(seed)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="tanh", dtype="mixed_bfloat16"),
                           keras.layers.Dense(4, dtype="mixed_bfloat16")])
    copy_weights(tm, km)
    return tm, km


def _weight_gap(torch_mixed, keras_mixed, batches):
    """Max weight difference after training the two sides (autocast / mixed policy as given)."""
    tm, km = _bf16_keras() if keras_mixed else paired_mlp(6, 4)
    if not keras_mixed:
        torch.manual_seed(0)
        tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
        copy_weights(tm, km)
    report = xlate.check_training_parity(tm, km, torch.optim.SGD(tm.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(),
                                         batches, autocast_dtype="bfloat16" if torch_mixed else None, atol=1.0)
    return report.max_abs_weight_err


def test_bfloat16_parity_is_bounded_by_each_side_s_own_rounding():
    """Mixed precision cannot match exactly (the frameworks round at different points): the torch
    autocast run and the Keras mixed_bfloat16 run stay within 3x of their own distance to float32."""
    batches = _batches(5)
    cross = _weight_gap(True, True, batches)
    torch_dev = _weight_gap(True, False, batches)  # torch bf16 vs Keras float32 ~ torch's own rounding
    keras_dev = _weight_gap(False, True, batches)  # torch float32 vs Keras bf16 ~ Keras's own rounding
    exact = _weight_gap(False, False, batches)
    holds, bound = mixed_precision_bound(cross, torch_dev, keras_dev)
    assert exact < 1e-6 < cross  # float32 is exact, bfloat16 is not
    assert holds, f"cross {cross:.3g} > bound {bound:.3g} (torch {torch_dev:.3g}, keras {keras_dev:.3g})"


def test_translate_training_maps_autocast_and_policies():
    tm, km = paired_mlp(6, 4)
    setup = xlate.translate_training(tm, torch.optim.SGD(tm.parameters(), lr=0.1), target=km,
                                     autocast_dtype="bfloat16", grad_scaler=torch.amp.GradScaler("cpu"))
    assert setup.dtype_policy == "mixed_bfloat16" and type(setup.optimizer).__name__ == "LossScaleOptimizer"
    tm2, km2 = _bf16_keras()
    back = xlate.translate_training(km2, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)), target=tm2)
    assert back.autocast_dtype == "bfloat16" and back.grad_scaler.get_scale() == 2.0**15


# --- the setup object ------------------------------------------------------------------------------


def test_translate_training_gives_the_torch_loop_back_for_a_torch_formula():
    """An xlate.TorchX Keras optimizer with a torch loop's settings: translate_training returns
    them (clip_grad_norm, an AveragedModel with the Keras averages, accumulation) for the torch
    loop; translate_optimizer alone refuses to drop them."""
    from xlate.errors import BadInputError
    from xlate.training.keras_optimizers import TorchSGD

    tm, km = paired_mlp(6, 4)
    kopt = TorchSGD(0.1, momentum=0.9, torch_clip_grad_norm=0.5, use_ema=True, ema_momentum=0.8)
    km.compile(optimizer=kopt, loss=_ce_keras())
    batches = _batches(8)
    for x, y in batches[:3]:
        km.train_on_batch(x, y)
    with pytest.raises(BadInputError, match="translate_training"):
        xlate.translate_optimizer(kopt, tm, source_model=km)
    copy_weights(km, tm)
    setup = xlate.translate_training(km, kopt, _ce_keras(), target=tm)
    assert type(setup.optimizer) is torch.optim.SGD and setup.clip_grad_norm == 0.5
    assert isinstance(setup.ema, torch.optim.swa_utils.AveragedModel) and int(setup.ema.n_averaged) == 3
    assert any("clip_grad_norm_" in line for line in setup.loop)
    report = xlate.check_training_parity(km, tm, kopt, _ce_keras(), batches[3:], setup=setup)
    assert report.passed, str(report)
    assert report.max_abs_ema_err <= ATOL and report.clipped_steps
