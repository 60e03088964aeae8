"""LR schedules and callbacks, generated from the schedule/callback rows' samples, both ways.

Each case steps the source the way its framework does (a torch scheduler after each epoch or
batch, a Keras schedule at every optimizer step, Keras callbacks through their hooks) for 4
epochs of 4 optimizer steps, and compares the learning rate of every step with the translated
side's. Real optimizers take every step (with zero gradients, so only the lr matters).
"""

import math

import keras
import numpy as np
import pytest
import torch

import xlate
from xlate.errors import BadInputError
from xlate.table import table
from xlate.training import translation_of
from xlate.training.samples import keras_schedule, sample_stepping, torch_scheduler
from xlate.training.torch_schedules import EarlyStopping

EPOCHS, SPE = 4, 4
SCHEDULES = [r for r in table().family("schedule")]
T2K = [(r, s) for r in SCHEDULES for s in r.samples if s.torch is not None]
K2T = [(r, s) for r in SCHEDULES for s in r.samples if s.keras is not None]
# a metric with plateaus, improvements and a rise: drives ReduceLROnPlateau and EarlyStopping
METRIC = [1.0, 0.8, 0.795, 0.79, 0.79, 0.6, 0.6, 0.61, 0.6, 0.45, 0.449, 0.449, 0.5, 0.5, 0.5, 0.3]


def _ids(cases):
    return [f"{r.id}-{s.id}" for r, s in cases]


def _torch_setup(opt_name="SGD"):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = getattr(torch.optim, opt_name)([p], lr=0.1)
    return p, opt


def torch_trace(opt, param, scheduler, stepping, epochs=EPOCHS, metric=None):
    """(lr, momentum) used by every optimizer step."""
    lrs, momenta = [], []
    for epoch in range(epochs):
        for _ in range(SPE):
            group = opt.param_groups[0]
            lrs.append(group["lr"])
            momenta.append(group["betas"][0] if "betas" in group else group.get("momentum"))
            param.grad = torch.zeros_like(param)
            opt.step()
            if stepping == "batch":
                scheduler.step()
        if stepping == "epoch":
            scheduler.step(metric[epoch]) if metric is not None else scheduler.step()
    return lrs, momenta


def keras_trace(optimizer, callbacks=(), epochs=EPOCHS, metric=None):
    """(lr, beta_1/momentum) Keras uses at every optimizer step, driven like Model.fit drives it."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.build(model.trainable_variables)
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    lrs, momenta = [], []
    zeros = [np.zeros(v.shape, "float32") for v in model.trainable_variables]
    for epoch in range(epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        for batch in range(SPE):
            for cb in callbacks:
                cb.on_train_batch_begin(batch)
            lrs.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
            m = getattr(optimizer, "beta_1", getattr(optimizer, "momentum", None))
            if isinstance(m, keras.optimizers.schedules.LearningRateSchedule):
                m = m(optimizer.iterations)
            momenta.append(None if m is None else float(keras.ops.convert_to_numpy(m)))
            optimizer.apply(zeros, model.trainable_variables)
        logs = {} if metric is None else {"loss": metric[epoch], "val_loss": metric[epoch]}
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
    return lrs, momenta


def _assert_same(a, b, what):
    np.testing.assert_allclose(np.asarray(b, float), np.asarray(a, float), rtol=1e-6, atol=1e-9, err_msg=what)


@pytest.mark.parametrize("row,sample", T2K, ids=_ids(T2K))
def test_schedule_torch_to_keras(row, sample):
    param, opt = _torch_setup("Adam" if sample.id == "adam" else "SGD")
    scheduler = torch_scheduler(row, sample, opt)
    stepping, horizon = sample_stepping(row, sample)
    kopt = xlate.translate_optimizer(opt, [keras.Variable(np.zeros(3, "float32"))], emulate="always")
    translated = xlate.translate_schedule(scheduler, steps_per_epoch=SPE, optimizer=kopt, stepping=stepping,
                                          total_steps=EPOCHS * SPE if horizon else None)
    t = translation_of(translated)
    assert t.row in (row.id, "transformers_warmup", "lambda_lr_sampled") and t.stepping == stepping
    t_lrs, t_mom = torch_trace(opt, param, scheduler, stepping)
    callbacks = [translated] if isinstance(translated, keras.callbacks.Callback) else []
    k_lrs, k_mom = keras_trace(kopt, callbacks)
    assert len(set(np.round(t_lrs, 12))) > 1, "the sample must change the lr"
    _assert_same(t_lrs, k_lrs, f"lr per step, {t.describe()}")
    if row.id in ("one_cycle_lr", "cyclic_lr"):
        _assert_same(t_mom, k_mom, "momentum per step")


@pytest.mark.parametrize("row,sample", K2T, ids=_ids(K2T))
def test_schedule_keras_to_torch(row, sample):
    schedule = keras_schedule(row, sample)
    param, opt = _torch_setup()
    _, horizon = sample_stepping(row, sample)
    translated = xlate.translate_schedule(schedule, opt, total_steps=EPOCHS * SPE if horizon else None)
    t = translation_of(translated)
    assert t.row in (row.id, "exponential_lr")
    if isinstance(schedule, keras.callbacks.Callback):
        kopt = keras.optimizers.SGD(0.1)
        k_lrs, _ = keras_trace(kopt, [schedule])
    else:
        k_lrs, _ = keras_trace(keras.optimizers.SGD(schedule))
    t_lrs, _ = torch_trace(opt, param, translated, translated.xlate_stepping)
    assert len(set(np.round(k_lrs, 12))) > 1, "the sample must change the lr"
    _assert_same(k_lrs, t_lrs, f"lr per step, {t.describe()}")


def test_schedules_stepped_per_batch():
    for make in (lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
                 lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01),
                 lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 / (1 + s))):
        param, opt = _torch_setup()
        scheduler = make(opt)
        kopt = keras.optimizers.SGD(0.1)
        translated = xlate.translate_schedule(scheduler, stepping="batch", optimizer=kopt)
        assert translation_of(translated).stepping == "batch"
        t_lrs, _ = torch_trace(opt, param, scheduler, "batch")
        callbacks = [translated] if isinstance(translated, keras.callbacks.Callback) else []
        k_lrs, _ = keras_trace(kopt, callbacks)
        _assert_same(t_lrs, k_lrs, type(scheduler).__name__)


def test_per_epoch_scheduler_needs_steps_per_epoch():
    _, opt = _torch_setup()
    with pytest.raises(BadInputError, match="steps_per_epoch"):
        xlate.translate_schedule(torch.optim.lr_scheduler.StepLR(opt, 2))


def test_one_cycle_momentum_needs_an_emulation_optimizer():
    _, opt = _torch_setup("Adam")
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=16)
    with pytest.raises(BadInputError, match="cycle"):
        xlate.translate_schedule(scheduler)
    with pytest.raises(xlate.XlateError, match="constant beta_1"):
        xlate.translate_schedule(scheduler, optimizer=keras.optimizers.Adam(0.1))


PLATEAU = table().row("reduce_lr_on_plateau")


@pytest.mark.parametrize("sample", [s for s in PLATEAU.samples if s.torch], ids=lambda s: s.id)
def test_reduce_lr_on_plateau_torch_to_keras(sample):
    param, opt = _torch_setup()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **sample.torch)
    callback = xlate.translate_schedule(scheduler, monitor="val_loss")
    t_lrs, _ = torch_trace(opt, param, scheduler, "epoch", epochs=len(METRIC), metric=METRIC)
    k_lrs, _ = keras_trace(keras.optimizers.SGD(0.1), [callback], epochs=len(METRIC), metric=METRIC)
    assert len(set(t_lrs)) >= 3, "the metric must trigger several reductions"
    _assert_same(t_lrs, k_lrs, translation_of(callback).describe())


@pytest.mark.parametrize("sample", [s for s in PLATEAU.samples if s.keras], ids=lambda s: s.id)
def test_reduce_lr_on_plateau_keras_to_torch(sample):
    callback = keras.callbacks.ReduceLROnPlateau(**sample.keras)
    param, opt = _torch_setup()
    scheduler = xlate.translate_schedule(callback, opt)
    k_lrs, _ = keras_trace(keras.optimizers.SGD(0.1), [callback], epochs=len(METRIC), metric=METRIC)
    t_lrs, _ = torch_trace(opt, param, scheduler, "epoch", epochs=len(METRIC), metric=METRIC)
    assert len(set(k_lrs)) >= 3, "the metric must trigger several reductions"
    _assert_same(k_lrs, t_lrs, translation_of(scheduler).describe())


def test_native_keras_plateau_with_torch_patience_differs():
    """The row's fact: Keras reduces at wait >= patience, torch at bad epochs > patience."""
    param, opt = _torch_setup()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, threshold=0.01,
                                                           threshold_mode="abs")
    naive = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.01)
    t_lrs, _ = torch_trace(opt, param, scheduler, "epoch", epochs=len(METRIC), metric=METRIC)
    k_lrs, _ = keras_trace(keras.optimizers.SGD(0.1), [naive], epochs=len(METRIC), metric=METRIC)
    assert not np.allclose(t_lrs, k_lrs)


EARLY = table().row("early_stopping")


def _stop_epoch_torch(es, metric):
    for epoch, value in enumerate(metric):
        if es.step(value):
            return epoch
    return None


def _stop_epoch_keras(cb, metric):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_begin()
    for epoch, value in enumerate(metric):
        cb.on_epoch_end(epoch, {"val_loss": value})
        if model.stop_training:
            return epoch
    return None


@pytest.mark.parametrize("patience,min_delta", [(0, 0.0), (1, 0.0), (2, 0.01), (3, 0.05)])
def test_early_stopping_both_ways(patience, min_delta):
    keras_cb = keras.callbacks.EarlyStopping(patience=patience, min_delta=min_delta)
    torch_es = xlate.translate_schedule(keras_cb)
    assert isinstance(torch_es, EarlyStopping) and translation_of(torch_es).row == "early_stopping"
    expected = _stop_epoch_keras(keras_cb, METRIC)
    assert _stop_epoch_torch(torch_es, METRIC) == expected
    back = xlate.translate_schedule(EarlyStopping(patience=patience, min_delta=min_delta))
    assert isinstance(back, keras.callbacks.EarlyStopping)
    assert _stop_epoch_keras(back, METRIC) == expected
    assert expected is not None or patience >= 3


def test_early_stopping_restores_best_weights():
    model = torch.nn.Linear(2, 1)
    es = EarlyStopping(patience=1, restore_best_weights=True)
    best = None
    for epoch, value in enumerate([1.0, 0.5, 0.7, 0.8]):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        if value == 0.5:
            best = model.weight.detach().clone()
        if es.step(value, model):
            break
    es.restore(model)
    assert torch.equal(model.weight, best) and es.best_epoch == 1


def test_lambda_lr_needs_a_plain_function():
    _, opt = _torch_setup()
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, [lambda e: 0.5**e])
    cb = xlate.translate_schedule(scheduler, steps_per_epoch=SPE)
    assert isinstance(cb, keras.callbacks.LearningRateScheduler)
    assert math.isclose(cb.schedule(2, 0.1), 0.1 * 0.25)
