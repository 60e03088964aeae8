"""The training-loop rows (mappings/training.toml), generated from their samples: each sample is
the source's optimizer and loop settings; 10 steps on both sides must agree within 1e-4 and show
the row's feature at work (clipping changed the gradients, EMA weights compared, loss-scaled steps
skipped)."""

import keras
import numpy as np
import pytest
import torch

import xlate
from xlate.table import table
from xlate.training.samples import paired_mlp

ROWS = table().family("training")
T2K = [(r, s) for r in ROWS for s in r.samples if s.torch is not None]
K2T = [(r, s) for r in ROWS for s in r.samples if s.keras is not None]
STEPS = 10


def _ids(cases):
    return [f"{r.id}-{s.id}" for r, s in cases]


def _data(sample, seed=0):
    """Class indices (or regression targets whose 1e12 batches overflow a 2**100 loss scale)."""
    rng = np.random.default_rng(seed)
    regression = sample.call.endswith(":regression-overflow")
    out = []
    for i in range(STEPS):
        x = (rng.standard_normal((8, 6)) * 3).astype(np.float32)
        if regression:
            y = (rng.standard_normal((8, 4)) * (1e12 if i in (3, 8) else 1.0)).astype(np.float32)
        else:
            y = rng.integers(0, 4, size=8).astype(np.int64)
        out.append((x, y))
    return out, regression


def _check(report, sample, skipped=None):
    assert report.passed, str(report)
    assert len(report.steps) == STEPS + 1 and report.max_abs_pred_err <= 1e-4
    want = sample.call.split(":")[0]
    if want == "clipped":
        assert report.clipped_steps, "the sample must make clipping act"
    if want == "ema":
        assert report.max_abs_ema_err is not None and report.max_abs_ema_err <= 1e-4
    if want == "skipped":
        assert skipped, "the sample must skip loss-scaled steps"


@pytest.mark.parametrize("row,sample", T2K, ids=_ids(T2K))
def test_training_loop_row_torch_to_keras(row, sample):
    tm, km = paired_mlp(6, 4)
    spec = dict(sample.torch)
    name, kwargs = spec.pop("optimizer")
    optimizer = getattr(torch.optim, name)(tm.parameters(), **kwargs)
    if "ema" in spec:
        spec["ema"] = torch.optim.swa_utils.AveragedModel(
            tm, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(spec["ema"]))
    if "grad_scaler" in spec:
        spec["grad_scaler"] = torch.amp.GradScaler("cpu", **spec["grad_scaler"])
    batches, regression = _data(sample)
    loss = torch.nn.MSELoss() if regression else torch.nn.CrossEntropyLoss()
    report = xlate.check_training_parity(tm, km, optimizer, loss, batches, **spec)
    steps_taken = float(optimizer.state[next(tm.parameters())]["step"]) if regression else STEPS
    _check(report, sample, skipped=steps_taken < STEPS)


@pytest.mark.parametrize("row,sample", K2T, ids=_ids(K2T))
def test_training_loop_row_keras_to_torch(row, sample):
    tm, km = paired_mlp(6, 4)
    spec = dict(sample.keras)
    name, kwargs = spec.pop("optimizer")
    optimizer = getattr(keras.optimizers, name)(**kwargs)
    if "loss_scale" in spec:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, **spec.pop("loss_scale"))
    batches, regression = _data(sample)
    loss = keras.losses.MeanSquaredError() if regression else \
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    report = xlate.check_training_parity(km, tm, optimizer, loss, batches)
    skipped = regression and int(keras.ops.convert_to_numpy(optimizer.iterations)) < STEPS
    _check(report, sample, skipped=skipped)
