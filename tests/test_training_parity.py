"""Training-step parity: optimizer x loss pairs trained for 8 identical steps in PyTorch and
Keras, both directions, predictions and weights within 1e-4 after every step; resuming from a
ported optimizer state; the controls that show the check can fail.

Models: a torch MLP and the same Keras Dense model with weights copied through the table's
weight transforms (and, once, the models xlate's converters produce).
"""

import json

import keras
import numpy as np
import pytest
import torch

import xlate
from xlate.table import table
from xlate.training import translation_of
from xlate.training.samples import (
    keras_loss,
    keras_optimizer,
    loss_data,
    paired_mlp,
    torch_loss,
    torch_optimizer,
)

STEPS, IN_FEATURES, ATOL = 8, 6, 1e-4

# (optimizer row, sample, loss row, sample): the pairs the issue names, plus a few more
PAIRS_T2K = [
    ("adam", "default", "cross_entropy", "plain"),
    ("sgd", "nesterov", "cross_entropy", "smoothing"),
    ("rmsprop", "default", "mse", "mean"),
    ("adamw", "default", "bce_with_logits", "pos-weight"),
    ("adagrad", "default", "l1", "mean"),
    ("nadam", "default", "huber", "delta"),
    ("sgd", "dampening-l2", "nll", "weighted"),
    ("adamax", "default", "smooth_l1", "beta"),
    ("adadelta", "l2", "bce", "plain"),
    ("rmsprop", "centered-momentum", "cross_entropy", "smoothing-weight-ignore"),
]
PAIRS_K2T = [
    ("adam", "default", "cross_entropy", "plain"),
    ("sgd", "nesterov", "cross_entropy_probabilities", "smoothing"),
    ("rmsprop", "default", "mse", "mean"),
    ("adamw", "default", "bce_with_logits", "plain"),
    ("adagrad", "default", "l1", "mean"),
    ("nadam", "default", "huber", "delta"),
    ("adamax", "default", "kl_div", "keras"),
    ("adadelta", "l2", "bce", "smoothing"),
    ("rmsprop", "centered-momentum", "cross_entropy", "probs-input"),
]


def _sample(row_id, sample_id):
    row = table().row(row_id)
    return row, next(s for s in row.samples if s.id == sample_id)


def _ids(pairs):
    return [f"{o}[{os_}]+{l}[{ls}]" for o, os_, l, ls in pairs]


def _batches(loss_sample, steps=STEPS, seed=0):
    """(x, y) batches whose targets are of the loss sample's kind and shape."""
    rng = np.random.default_rng(seed)
    batch = loss_sample.inputs[0][0]
    out = []
    for i in range(steps):
        _, y = loss_data(loss_sample, seed=seed + i)
        out.append((rng.standard_normal((batch, IN_FEATURES)).astype(np.float32), y))
    return out


class _Head(torch.nn.Module):
    def __init__(self, body, kind):
        super().__init__()
        self.body, self.kind = body, kind

    def forward(self, x):
        y = self.body(x)
        if self.kind == "log_probs":
            return torch.log_softmax(y, -1)
        if self.kind == "probs":
            return torch.softmax(y, -1) if self.softmax else torch.sigmoid(y)
        return y


def _paired(loss_sample, seed=0):
    """A torch MLP and the equal Keras model, ending in the activation the loss expects."""
    out, kind = loss_sample.inputs[0][-1], loss_sample.call.split(":")[0]
    tm, km = paired_mlp(IN_FEATURES, out, seed=seed)
    softmax = not loss_sample.call.endswith(":binary")
    if kind == "logits" or kind == "real":
        return tm, km
    head = _Head(tm, kind)
    head.softmax = softmax
    x = keras.Input((IN_FEATURES,))
    y = km(x)
    if kind == "log_probs":
        y = keras.layers.Activation("log_softmax")(y)
    else:
        y = keras.layers.Activation("softmax" if softmax else "sigmoid")(y)
    return head, keras.Model(x, y)


def _check(report):
    assert report.passed, str(report)
    assert len(report.steps) == STEPS + 1
    assert report.max_abs_pred_err <= ATOL and report.max_abs_weight_err <= ATOL
    for s in report.steps[1:]:
        assert s.source_loss == pytest.approx(s.target_loss, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("opt_row,opt_id,loss_row,loss_id", PAIRS_T2K, ids=_ids(PAIRS_T2K))
def test_training_parity_torch_to_keras(opt_row, opt_id, loss_row, loss_id):
    orow, osample = _sample(opt_row, opt_id)
    lrow, lsample = _sample(loss_row, loss_id)
    tm, km = _paired(lsample)
    optimizer = torch_optimizer(orow, osample, tm.parameters())
    loss = torch_loss(lrow, lsample)
    target = "probabilities" if lsample.call.endswith(":probabilities") else "indices"
    report = xlate.check_training_parity(tm, km, optimizer, loss, _batches(lsample), loss_target=target)
    _check(report)
    assert report.rows_used.get(orow.id) and report.rows_used.get(lrow.id)


@pytest.mark.parametrize("opt_row,opt_id,loss_row,loss_id", PAIRS_K2T, ids=_ids(PAIRS_K2T))
def test_training_parity_keras_to_torch(opt_row, opt_id, loss_row, loss_id):
    orow, osample = _sample(opt_row, opt_id)
    lrow, lsample = _sample(loss_row, loss_id)
    tm, km = _paired(lsample)
    optimizer = keras_optimizer(orow, osample)
    loss = keras_loss(lrow, lsample)
    report = xlate.check_training_parity(km, tm, optimizer, loss, _batches(lsample))
    _check(report)
    assert report.direction == "keras2torch"


def test_training_moves_the_weights():
    """The parity above is not trivially met by weights that stay put."""
    _, lsample = _sample("cross_entropy", "plain")
    tm, km = _paired(lsample)
    before = [p.detach().clone() for p in tm.parameters()]
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.01)
    xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), _batches(lsample))
    assert max(float((p.detach() - b).abs().max()) for p, b in zip(tm.parameters(), before)) > 0.01


RESUME = ["adam", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "adamw"]
RESUME_SAMPLES = {"sgd": "nesterov", "rmsprop": "centered-momentum", "adadelta": "default", "adagrad": "decay-init"}


def _train_torch(tm, optimizer, loss, batches):
    for x, y in batches:
        optimizer.zero_grad()
        loss(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()


@pytest.mark.parametrize("opt_row", RESUME)
def test_resume_in_keras_from_a_ported_torch_state(opt_row):
    """5 torch steps, then port weights and optimizer state to Keras: the next 5 Keras steps
    match 5 more torch steps of the original."""
    orow, osample = _sample(opt_row, RESUME_SAMPLES.get(opt_row, "default"))
    _, lsample = _sample("mse", "mean")
    tm, km = _paired(lsample)
    batches = _batches(lsample, steps=10)
    optimizer = torch_optimizer(orow, osample, tm.parameters())
    loss = torch.nn.MSELoss()
    _train_torch(tm, optimizer, loss, batches[:5])
    report = xlate.check_training_parity(tm, km, optimizer, loss, batches[5:], sync_weights=True)
    assert report.passed, str(report)
    assert any("state ported (5 step" in n for t in report.translations for n in t["notes"]) or opt_row == "sgd"
    assert report.max_abs_pred_err <= ATOL


@pytest.mark.parametrize("opt_row", RESUME)
def test_resume_in_torch_from_a_ported_keras_state(opt_row):
    orow, osample = _sample(opt_row, RESUME_SAMPLES.get(opt_row, "default"))
    _, lsample = _sample("mse", "mean")
    tm, km = _paired(lsample)
    batches = _batches(lsample, steps=10)
    optimizer = keras_optimizer(orow, osample)
    km.compile(optimizer=optimizer, loss="mse")
    for x, y in batches[:5]:
        km.train_on_batch(x, y)
    report = xlate.check_training_parity(km, tm, optimizer, keras.losses.MeanSquaredError(), batches[5:],
                                         sync_weights=True)
    assert report.passed, str(report)
    assert any("state ported (5 step" in n for t in report.translations for n in t["notes"])


def test_resume_without_the_state_does_not_match():
    """Control: the same resume with a fresh (unported) optimizer departs beyond tolerance."""
    _, lsample = _sample("mse", "mean")
    tm, km = _paired(lsample)
    batches = _batches(lsample, steps=10)
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.01)
    loss = torch.nn.MSELoss()
    _train_torch(tm, optimizer, loss, batches[:5])
    fresh = xlate.translate_optimizer(optimizer, km, source_model=tm, port_state=False)
    report = xlate.check_training_parity(tm, km, optimizer, loss, batches[5:], sync_weights=True,
                                         target_optimizer=fresh)
    assert not report.passed


def test_sgd_momentum_with_a_changing_lr_needs_the_emulation():
    """torch SGD momentum + StepLR: native Keras SGD departs once the lr drops; xlate's does not."""
    _, lsample = _sample("mse", "mean")
    batches = _batches(lsample)
    reports = {}
    for name in ("xlate", "native"):
        tm, km = _paired(lsample)
        optimizer = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
        target = None if name == "xlate" else keras.optimizers.SGD(0.1, momentum=0.9)
        reports[name] = xlate.check_training_parity(tm, km, optimizer, torch.nn.MSELoss(), batches,
                                                    schedule=scheduler, steps_per_epoch=2, target_optimizer=target)
    assert reports["xlate"].passed, str(reports["xlate"])
    assert not reports["native"].passed
    lrs = [s.source_lr for s in reports["xlate"].steps[1:]]
    assert lrs[0] == pytest.approx(0.1) and lrs[2] == pytest.approx(0.01) and lrs[4] == pytest.approx(0.001)


def test_schedule_and_plateau_inside_the_training_check():
    _, lsample = _sample("cross_entropy", "plain")
    tm, km = _paired(lsample)
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.05)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, threshold=0.5)
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), _batches(lsample),
                                         schedule=plateau, steps_per_epoch=2)
    assert report.passed, str(report)
    assert len({s.target_lr for s in report.steps[1:]}) >= 2
    tm, km = _paired(lsample, seed=1)
    optimizer = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=STEPS)
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), _batches(lsample),
                                         schedule=cycle)
    assert report.passed, str(report)


def test_models_converted_by_xlate():
    """The real workflow: a converted model (pairing from the conversion) trains the same."""
    _, lsample = _sample("cross_entropy", "plain")
    torch.manual_seed(3)
    tm = torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    km = xlate.torch_to_keras(tm, (torch.randn(2, IN_FEATURES),))
    report = xlate.check_training_parity(tm, km, torch.optim.Adam(tm.parameters(), lr=0.01),
                                         torch.nn.CrossEntropyLoss(), _batches(lsample))
    assert report.passed, str(report)
    back = xlate.keras_to_torch(km)
    report = xlate.check_training_parity(km, back, keras.optimizers.Adam(0.01),
                                         keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                         _batches(lsample, seed=5))
    assert report.passed, str(report)


def test_report_json_and_table():
    _, lsample = _sample("mse", "mean")
    tm, km = _paired(lsample)
    report = xlate.check_training_parity(tm, km, torch.optim.SGD(tm.parameters(), lr=0.1), torch.nn.MSELoss(),
                                         _batches(lsample, steps=3))
    data = json.loads(report.to_json())
    assert data["passed"] is True and len(data["steps"]) == 4
    assert {"source_loss", "target_loss", "source_lr", "target_lr", "max_abs_weight_err",
            "max_abs_pred_err"} <= set(data["steps"][1])
    assert data["translations"][0]["row"] == "sgd"
    text = str(report)
    assert "PASS" in text and "pred err" in text
    assert translation_of(xlate.translate_loss(torch.nn.MSELoss())).row == "mse"


class _TorchCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _cnn_pair():
    from xlate.training.pairing import copy_weights

    torch.manual_seed(0)
    tm = _TorchCNN()
    x = keras.Input((6, 6, 3))
    y = keras.layers.Conv2D(4, 3, activation="relu")(x)
    km = keras.Model(x, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(y)))
    copy_weights(tm, km)
    rng = np.random.default_rng(0)
    nchw = [(rng.standard_normal((4, 3, 6, 6)).astype(np.float32), rng.integers(0, 5, 4).astype(np.int64))
            for _ in range(10)]
    nhwc = [(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y) for x, y in nchw]
    return tm, km, nchw, nhwc


@pytest.mark.parametrize("opt_row", ["adam", "sgd", "rmsprop"])
def test_resume_through_conv_kernel_transforms(opt_row):
    """Moments of a conv kernel move with the kernel (OIHW -> HWIO), both ways."""
    orow, osample = _sample(opt_row, RESUME_SAMPLES.get(opt_row, "default"))
    tm, km, nchw, nhwc = _cnn_pair()
    optimizer = torch_optimizer(orow, osample, tm.parameters())
    _train_torch(tm, optimizer, torch.nn.CrossEntropyLoss(), nchw[:5])
    report = xlate.check_training_parity(tm, km, optimizer, torch.nn.CrossEntropyLoss(), nchw[5:],
                                         target_batches=nhwc[5:], sync_weights=True)
    assert report.passed, str(report)

    tm, km, nchw, nhwc = _cnn_pair()
    kopt = keras_optimizer(orow, osample)
    kloss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    km.compile(optimizer=kopt, loss=kloss)
    for x, y in nhwc[:5]:
        km.train_on_batch(x, y)
    report = xlate.check_training_parity(km, tm, kopt, kloss, nhwc[5:], target_batches=nchw[5:], sync_weights=True)
    assert report.passed, str(report)


def test_state_port_refuses_models_with_different_weights():
    from xlate.errors import BadInputError

    _, lsample = _sample("mse", "mean")
    tm, _ = _paired(lsample)
    _, other = _paired(lsample, seed=7)  # same architecture, other weights: the pairing cannot be proven
    optimizer = torch.optim.Adam(tm.parameters(), lr=0.01)
    _train_torch(tm, optimizer, torch.nn.MSELoss(), _batches(lsample, steps=2))
    with pytest.raises(BadInputError, match="weights differ"):
        xlate.translate_optimizer(optimizer, other, source_model=tm)
