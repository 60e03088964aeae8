"""Training parity for the optimizers and losses of current practice: every new optimizer row and
every new loss row trains 10 identical steps in torch and Keras, both directions, with the
predictions (and weights) within 1e-4 after every step.

Models: a torch MLP and the same Keras model (weights copied through the table's transforms)
ending in the head the loss expects (probabilities, log-probabilities, a positive rate, stacked
inputs for the multi-input torch losses, time-major log-probabilities for CTC).
"""

import keras
import numpy as np
import pytest
import torch

import xlate
from xlate.table import table
from xlate.training.pairing import copy_weights
from xlate.training.samples import keras_loss, keras_optimizer, loss_data, torch_loss, torch_optimizer

STEPS, IN_FEATURES, ATOL, TIME = 10, 6, 1e-4, 8

# (optimizer row, sample, loss row, sample): each new optimizer and each new loss at least once per direction.
# Muon is not paired with CTC: torch rounds Muon's update to bfloat16 first, so the ~1e-6 relative difference
# between TensorFlow's and torch's CTC gradients can flip a bfloat16 rounding (the row's stated bound).
T2K = [
    ("radam", "default", "poisson", "log-input"),
    ("rprop", "default", "gaussian_nll", "default"),
    ("asgd", "default", "margin_ranking", "margin"),
    ("adafactor", "default", "triplet_margin", "default"),
    ("muon", "default", "multi_margin", "p2-weight"),
    ("lion", "back", "multilabel_soft_margin", "weight"),
    ("lamb", "back", "soft_margin", "default"),
    ("ftrl", "back", "hinge_embedding", "default"),
    ("radam", "decoupled", "ctc", "mean"),
    ("adafactor", "decay", "binary_focal", "back"),
    ("muon", "match-rms", "categorical_focal", "back"),
    ("adam", "default", "hinge", "back"),
    ("rmsprop", "default", "squared_hinge", "back"),
    ("sgd", "nesterov", "categorical_hinge", "back"),
    ("adamw", "default", "log_cosh", "back"),
    ("adam", "default", "dice", "back"),
    ("adam", "default", "tversky", "back"),
    ("sgd", "nesterov", "poisson", "full"),
]
K2T = [
    ("radam", "back", "poisson", "keras"),
    ("rprop", "back", "gaussian_nll", "back"),
    ("asgd", "back", "margin_ranking", "back"),
    ("adafactor", "default", "triplet_margin", "back"),
    ("muon", "keras", "multi_margin", "back"),
    ("lion", "default", "multilabel_soft_margin", "back"),
    ("lamb", "decay", "soft_margin", "back"),
    ("ftrl", "l1-l2", "hinge_embedding", "back"),
    ("adamw", "default", "ctc", "keras"),
    ("adafactor", "decay", "binary_focal", "logits-balanced"),
    ("muon", "keras-exclude", "categorical_focal", "logits"),
    ("adam", "default", "hinge", "binary"),
    ("rmsprop", "default", "squared_hinge", "pm1"),
    ("sgd", "nesterov", "categorical_hinge", "default"),
    ("muon", "back", "log_cosh", "default"),
    ("adam", "default", "dice", "per-sample"),
    ("nadam", "default", "tversky", "default"),
]


def _sample(row_id, sample_id):
    row = table().row(row_id)
    return row, next(s for s in row.samples if s.id == sample_id)


def _ids(pairs):
    return [f"{o}[{os_}]+{l}[{ls}]" for o, os_, l, ls in pairs]


def _head_torch(kind, binary, shape):
    """shape None: a per-time-step output (N, T, C), left as it is (CTC)."""
    def head(y):
        if shape is None and kind == "log_probs":  # torch's CTC: time-major (T, N, C) log-probabilities
            return torch.log_softmax(y, -1).transpose(0, 1)
        if shape is not None:
            y = y.reshape(y.shape[0], *shape)
        if kind == "log_probs":
            return torch.log_softmax(y, -1)
        if kind == "probs":
            return torch.sigmoid(y) if binary else torch.softmax(y, -1)
        if kind == "positive":
            return torch.nn.functional.softplus(y) + 0.05
        if kind == "mean_var":
            return torch.cat([y[:, :1], torch.nn.functional.softplus(y[:, 1:]) + 0.05], 1)
        return y
    return head


def _head_keras(kind, binary, shape, y):
    ops = keras.ops
    if shape is None and kind == "log_probs":
        return ops.transpose(ops.log_softmax(y, -1), (1, 0, 2))
    if shape is not None and len(shape) > 1:
        y = keras.layers.Reshape(shape)(y)
    if kind == "log_probs":
        return ops.log_softmax(y, -1)
    if kind == "probs":
        return ops.sigmoid(y) if binary else ops.softmax(y, -1)
    if kind == "positive":
        return ops.softplus(y) + 0.05
    if kind == "mean_var":
        return ops.concatenate([y[:, :1], ops.softplus(y[:, 1:]) + 0.05], 1)
    return y


class _Net(torch.nn.Module):
    def __init__(self, in_features, out, head, bias):
        super().__init__()
        self.fc1 = torch.nn.Linear(in_features, 16, bias=bias)
        self.fc2 = torch.nn.Linear(16, out, bias=bias)
        self.head = head

    def forward(self, x):
        return self.head(self.fc2(torch.tanh(self.fc1(x))))


def _models(loss_sample, bias=True, seed=0):
    """(torch model, Keras model, input shape of one batch) producing the loss sample's predictions."""
    kind = loss_sample.call.split(":")[0]
    binary = loss_sample.call.endswith(":binary")
    pred = tuple(loss_sample.inputs[0])
    ctc_time_major = kind == "log_probs" and len(pred) == 3
    keras_ctc = loss_sample.call.endswith(":ctc_labels") and kind == "logits"
    per_step = ctc_time_major or keras_ctc  # a Dense per time step on (N, T, F)
    shape = (pred[-1],) if per_step else pred[1:]
    out = int(np.prod(shape))
    torch.manual_seed(seed)
    tm = _Net(IN_FEATURES, out, _head_torch(kind, binary, None if per_step else shape), bias)
    x_shape = ((pred[1] if ctc_time_major else pred[0]), TIME, IN_FEATURES) if per_step else (pred[0], IN_FEATURES)
    x = keras.Input(x_shape[1:])
    h = keras.layers.Dense(16, activation="tanh", use_bias=bias)(x)
    y = keras.layers.Dense(out, use_bias=bias)(h)
    km = keras.Model(x, _head_keras(kind, binary, None if per_step else shape, y))
    copy_weights(tm, km)
    return tm, km, x_shape


def _batches(loss_sample, x_shape, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(x_shape).astype(np.float32) * 2.0, loss_data(loss_sample, seed=seed + i)[1])
            for i in range(steps)]


def _check(report):
    assert report.passed, str(report)
    assert len(report.steps) == STEPS + 1
    assert report.max_abs_pred_err <= ATOL and report.max_abs_weight_err <= ATOL
    for s in report.steps[1:]:
        assert s.source_loss == pytest.approx(s.target_loss, rel=1e-4, abs=1e-5)
    first, last = report.steps[1], report.steps[-1]
    assert first.source_loss != last.source_loss  # the model trained


@pytest.mark.parametrize("opt_row,opt_id,loss_row,loss_id", T2K, ids=_ids(T2K))
def test_modern_training_parity_torch_to_keras(opt_row, opt_id, loss_row, loss_id):
    orow, osample = _sample(opt_row, opt_id)
    lrow, lsample = _sample(loss_row, loss_id)
    tm, km, x_shape = _models(lsample, bias=osample.model != "mlp-nobias")
    optimizer = torch_optimizer(orow, osample, tm.parameters())
    report = xlate.check_training_parity(tm, km, optimizer, torch_loss(lrow, lsample), _batches(lsample, x_shape),
                                         loss_target="probabilities" if lsample.call.endswith(":probabilities")
                                         else "indices")
    _check(report)
    assert report.rows_used.get(orow.id) and report.rows_used.get(lrow.id)


@pytest.mark.parametrize("opt_row,opt_id,loss_row,loss_id", K2T, ids=_ids(K2T))
def test_modern_training_parity_keras_to_torch(opt_row, opt_id, loss_row, loss_id):
    orow, osample = _sample(opt_row, opt_id)
    lrow, lsample = _sample(loss_row, loss_id)
    tm, km, x_shape = _models(lsample, bias=osample.model != "mlp-nobias")
    report = xlate.check_training_parity(km, tm, keras_optimizer(orow, osample), keras_loss(lrow, lsample),
                                         _batches(lsample, x_shape))
    _check(report)
    assert report.direction == "keras2torch"
    assert report.rows_used.get(orow.id) and report.rows_used.get(lrow.id)


RESUME = [("radam", "decoupled"), ("rprop", "default"), ("asgd", "default"), ("muon", "default")]
RESUME_K2T = [("lion", "default"), ("lamb", "decay"), ("ftrl", "l1-l2"), ("muon", "keras")]


@pytest.mark.parametrize("opt_row,opt_id", RESUME, ids=[r for r, _ in RESUME])
def test_resume_in_keras_from_a_ported_torch_state(opt_row, opt_id):
    """5 torch steps, then the state (moments, Rprop's step sizes, ASGD's eta/mu/ax) ports to the
    Keras emulation: the next 5 steps match 5 more torch steps."""
    orow, osample = _sample(opt_row, opt_id)
    _, lsample = _sample("log_cosh", "default")
    tm, km, x_shape = _models(lsample, bias=osample.model != "mlp-nobias")
    batches = _batches(lsample, x_shape, steps=10)
    optimizer, loss = torch_optimizer(orow, osample, tm.parameters()), torch_loss(table().row("mse"),
                                                                                 table().row("mse").samples[0])
    for x, y in batches[:5]:
        optimizer.zero_grad()
        loss(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()
    report = xlate.check_training_parity(tm, km, optimizer, loss, batches[5:], sync_weights=True)
    assert report.passed, str(report)
    # torch's Muon, like SGD, keeps no step count: its momentum buffers port all the same
    assert any("state ported" in n for t in report.translations for n in t["notes"])


@pytest.mark.parametrize("opt_row,opt_id", RESUME_K2T, ids=[r for r, _ in RESUME_K2T])
def test_resume_in_torch_from_a_ported_keras_state(opt_row, opt_id):
    orow, osample = _sample(opt_row, opt_id)
    _, lsample = _sample("log_cosh", "default")
    tm, km, x_shape = _models(lsample)
    batches = _batches(lsample, x_shape, steps=10)
    optimizer = keras_optimizer(orow, osample)
    km.compile(optimizer=optimizer, loss="mse")
    for x, y in batches[:5]:
        km.train_on_batch(x, y)
    report = xlate.check_training_parity(km, tm, optimizer, keras.losses.MeanSquaredError(), batches[5:],
                                         sync_weights=True)
    assert report.passed, str(report)
    assert any("state ported (5 step" in n for t in report.translations for n in t["notes"])


def test_new_emulations_serialize_with_keras():
    from xlate.training import composed_schedules, transformers_schedules
    from xlate.training.emulations import keras_optimizer_classes

    for cls in keras_optimizer_classes():
        opt = cls(learning_rate=0.02)
        again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert type(again) is cls and again.get_config() == opt.get_config()
    lin = composed_schedules.TorchLinearLR(0.1, 0.5, 1.0, 3, steps_per_epoch=2)
    schedules = [
        composed_schedules.TorchSequentialLR([lin, composed_schedules.TorchPolynomialLR(0.1, 4, 2.0, 2)], [2], 2),
        composed_schedules.TorchChainedScheduler([lin], 0.1),
        composed_schedules.TorchCosineAnnealingWarmRestarts(0.1, 1, 2, 0.01, 2),
        composed_schedules.TorchCyclicLR(0.01, 0.1, 3, mode="exp_range", gamma=0.9),
        composed_schedules.TorchSampledLR([0.1, 0.05], 2),
        composed_schedules.TorchPerUpdateLR(lin, 2),
        transformers_schedules.TransformersSchedule("cosine", 0.1, 2, 10),
    ]
    steps = np.arange(12)
    for schedule in schedules:
        again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
        np.testing.assert_allclose([float(again(s)) for s in steps], [float(schedule(s)) for s in steps])
