"""Training-step parity: k identical training steps in both frameworks, compared step by step.

``check_training_parity(source, target, optimizer, loss, batches, ...)`` translates the source's
optimizer (with its state), loss and schedule to the target framework (unless the target's are
given), runs the same batches through both, one optimizer step each, and after every step
compares the paired weights (through the weight transforms) and the predictions on a fixed
evaluation batch. The report lists loss, learning rate, weight error and prediction error per
step. It always compares the two real frameworks; nothing is compared with itself.

Both models (and optimizers) are trained in place: pass copies if you need the originals.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInputError
from ..frameworks import flatten_outputs, framework_of, to_numpy
from ..parity import PrintableReport
from .record import translation_of
from .state import copy_weights, keras_learning_rate, pair_parameters, sub_optimizers, weight_differences


@dataclass
class StepParity:
    """Figures after one optimizer step (step 0: before training)."""

    step: int
    epoch: int
    source_loss: float | None
    target_loss: float | None
    source_lr: float | None
    target_lr: float | None
    max_abs_weight_err: float
    max_abs_pred_err: float
    passed: bool


@dataclass
class TrainingParityReport(PrintableReport):
    passed: bool
    direction: str
    source: str
    target: str
    atol: float
    lr_rtol: float
    steps: list[StepParity]
    max_abs_weight_err: float
    max_abs_pred_err: float
    optimizer: str = ""
    loss: str = ""
    schedule: str = ""
    translations: list[dict] = field(default_factory=list)
    rows_used: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    message: str = ""

    text_width = 120

    def _rich(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        status = Text("PASS", style="bold green") if self.passed else Text("FAIL", style="bold red")
        head = Text.assemble(status, f"  {self.direction}: {self.source} -> {self.target}, {len(self.steps) - 1} step(s);",
                             f" max weight err {self.max_abs_weight_err:.3g}, max prediction err "
                             f"{self.max_abs_pred_err:.3g} (atol {self.atol:g})")
        lines = [head]
        for label, value in (("optimizer", self.optimizer), ("loss", self.loss), ("schedule", self.schedule)):
            if value:
                lines.append(Text(f"{label}: {value}"))
        from rich import box

        table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD)
        for col in ("step", "ep", "loss src", "loss tgt", "lr src", "lr tgt", "w err", "pred err", "ok"):
            table.add_column(col, justify="left" if col == "ok" else "right", no_wrap=True)

        def f(v, digits=6):
            return "-" if v is None else f"{v:.{digits}g}"

        for s in self.steps:
            table.add_row(str(s.step), str(s.epoch), f(s.source_loss), f(s.target_loss), f(s.source_lr, 4),
                          f(s.target_lr, 4), f"{s.max_abs_weight_err:.1e}", f"{s.max_abs_pred_err:.1e}",
                          "yes" if s.passed else "NO")
        lines.append(table)
        if self.message:
            lines.append(Text(self.message))
        return Group(*lines)


# --- one side of the loop -------------------------------------------------------------------


class _TorchSide:
    def __init__(self, model, optimizer, loss, scheduler, stepping):
        self.model, self.optimizer, self.loss, self.scheduler, self.stepping = model, optimizer, loss, scheduler, \
            stepping
        self.epoch_losses: list[float] = []

    def lr(self) -> float:
        group = self.optimizer.param_groups[0]
        schedule = getattr(self.optimizer, "lr_schedule", None)
        return float(schedule(group["iterations"])) if schedule is not None else float(group["lr"])

    def train_step(self, x, y) -> float:
        import torch

        self.model.train()
        self.optimizer.zero_grad()
        out = self.model(torch.from_numpy(x))
        value = self.loss(out, torch.from_numpy(y))
        value.backward()
        self.optimizer.step()
        if self.scheduler is not None and self.stepping == "batch":
            self.scheduler.step()
        self.epoch_losses.append(float(value.detach()))
        return float(value.detach())

    def end_epoch(self, epoch: int) -> None:
        metric = float(np.mean(self.epoch_losses)) if self.epoch_losses else 0.0
        self.epoch_losses = []
        if self.scheduler is None or self.stepping != "epoch":
            return
        import torch

        from .torch_schedules import KerasReduceLROnPlateau

        if isinstance(self.scheduler, (torch.optim.lr_scheduler.ReduceLROnPlateau, KerasReduceLROnPlateau)):
            self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def predict(self, x) -> list[np.ndarray]:
        import torch

        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = [to_numpy(o) for o in flatten_outputs(self.model(torch.from_numpy(x)))]
        self.model.train(was_training)
        return out


class _KerasSide:
    def __init__(self, model, optimizer, loss, callbacks, jit_compile):
        self.model, self.optimizer = model, optimizer
        model.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile)
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.on_train_begin()
        self.epoch_losses: list[float] = []
        self.batch = 0

    def begin_epoch(self, epoch: int) -> None:
        self.batch = 0
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch)

    def lr(self) -> float:
        subs = sub_optimizers(self.optimizer)
        return keras_learning_rate(next((o for o in subs if o.name == "group_0"), subs[0]))

    def begin_batch(self) -> None:
        for cb in self.callbacks:
            cb.on_train_batch_begin(self.batch)

    def train_step(self, x, y) -> float:
        logs = self.model.train_on_batch(x, y, return_dict=True)
        for cb in self.callbacks:
            cb.on_train_batch_end(self.batch, logs)
        self.batch += 1
        self.epoch_losses.append(float(logs["loss"]))
        return float(logs["loss"])

    def end_epoch(self, epoch: int) -> None:
        logs = {"loss": float(np.mean(self.epoch_losses)) if self.epoch_losses else 0.0}
        self.epoch_losses = []
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def predict(self, x) -> list[np.ndarray]:
        return [to_numpy(o) for o in flatten_outputs(self.model(x, training=False))]


def _as_batches(batches, steps):
    batches = list(batches)
    if not batches:
        raise BadInputError("check_training_parity needs at least one (x, y) batch")
    steps = len(batches) if steps is None else int(steps)
    return [tuple(np.asarray(a) for a in batches[i % len(batches)]) for i in range(steps)]


def _describe(obj) -> str:
    t = translation_of(obj)
    return t.describe() if t is not None else type(obj).__name__


def check_training_parity(source, target, optimizer, loss, batches, *, steps=None, schedule=None,
                          steps_per_epoch=None, stepping=None, target_optimizer=None, target_loss=None,
                          target_schedule=None, target_batches=None, eval_inputs=None, loss_target="indices",
                          atol=1e-4, lr_rtol=1e-5, pairing=None, sync_weights=False, jit_compile=False):
    """Train ``source`` and ``target`` for the same steps on the same batches and compare them.

    source / target: a torch module and a Keras model (either way round). optimizer / loss: the
    source's (a torch optimizer over ``source``'s parameters and a torch loss module, or a Keras
    optimizer and loss). schedule: the source's torch scheduler or Keras callback (a Keras
    LearningRateSchedule lives inside the Keras optimizer and is translated with it).
    batches: (x, y) NumPy pairs in the source's layout (``target_batches`` when the target's
    layout differs); ``steps`` defaults to len(batches). steps_per_epoch: epoch boundaries for
    per-epoch schedulers and callbacks (one epoch = all steps when omitted); stepping: when the
    torch scheduler is stepped ("epoch" or "batch"). target_*: use these instead of translating.
    loss_target: "indices" or "probabilities" for CrossEntropyLoss. sync_weights: copy the
    source's weights into the target first. atol bounds both the weight and the prediction error
    after every step; lr_rtol the learning rates. Returns a TrainingParityReport.
    """
    from .losses import translate_loss
    from .optimizers import translate_optimizer
    from .schedules import translate_schedule

    direction = {"torch": "torch2keras", "keras": "keras2torch"}[framework_of(source)]
    if framework_of(target) == framework_of(source):
        raise BadInputError("check_training_parity compares a torch module with a Keras model")
    torch_model, keras_model = (source, target) if direction == "torch2keras" else (target, source)
    data = _as_batches(batches, steps)
    target_data = _as_batches(target_batches, len(data)) if target_batches is not None else data
    spe = int(steps_per_epoch) if steps_per_epoch else len(data)
    if sync_weights:
        copy_weights(source, target, pairing)
    pairs = pair_parameters(torch_model, keras_model, pairing)
    rows_used: dict = {}

    if target_optimizer is None:
        target_optimizer = translate_optimizer(optimizer, target, source_model=source, pairing=pairing)
    if target_loss is None:
        target_loss = translate_loss(loss, target=loss_target)
    if schedule is not None and target_schedule is None:
        if direction == "torch2keras":
            target_schedule = translate_schedule(schedule, steps_per_epoch=spe, stepping=stepping,
                                                 optimizer=target_optimizer, monitor="loss")
        else:
            target_schedule = translate_schedule(schedule, target_optimizer, steps_per_epoch=spe)
    for obj in (target_optimizer, target_loss, target_schedule):
        t = translation_of(obj) if obj is not None else None
        if t is not None:
            for k, v in t.rows_used.items():
                rows_used[k] = rows_used.get(k, 0) + v

    import keras

    if direction == "torch2keras":
        sched_stepping = stepping or ("batch" if type(schedule).__name__ == "OneCycleLR" else "epoch")
        torch_side = _TorchSide(source, optimizer, loss, schedule, sched_stepping)
        callbacks = [target_schedule] if isinstance(target_schedule, keras.callbacks.Callback) else []
        keras_side = _KerasSide(target, target_optimizer, target_loss, callbacks, jit_compile)
        sides = (torch_side, keras_side)
    else:
        callbacks = [schedule] if isinstance(schedule, keras.callbacks.Callback) else []
        keras_side = _KerasSide(source, optimizer, loss, callbacks, jit_compile)
        t = translation_of(target_schedule) if target_schedule is not None else None
        torch_side = _TorchSide(target, target_optimizer, target_loss, target_schedule,
                                getattr(target_schedule, "xlate_stepping", None) or (t.stepping if t else None))
        sides = (keras_side, torch_side)

    eval_x = np.asarray(eval_inputs) if eval_inputs is not None else data[0][0]
    eval_x_target = eval_x if target_batches is None or eval_inputs is not None else target_data[0][0]

    def compare(step, epoch, losses, lrs):
        w = max(weight_differences(torch_model, keras_model, pairs).values(), default=0.0)
        src_pred = sides[0].predict(eval_x)
        dst_pred = sides[1].predict(eval_x_target)
        if len(src_pred) != len(dst_pred) or any(a.shape != b.shape for a, b in zip(src_pred, dst_pred)):
            raise BadInputError(f"the models' outputs differ in shape: {[a.shape for a in src_pred]} vs "
                                f"{[b.shape for b in dst_pred]}", hint="pass target_batches / eval_inputs in the "
                                "target's layout")
        p = max((float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(src_pred, dst_pred)), default=0.0)
        lr_ok = lrs[0] is None or abs(lrs[0] - lrs[1]) <= lr_rtol * abs(lrs[0]) + 1e-12
        return StepParity(step, epoch, losses[0], losses[1], lrs[0], lrs[1], w, p, w <= atol and p <= atol and lr_ok)

    results = [compare(0, 0, (None, None), (None, None))]
    epoch = 0
    for i, ((x, y), (tx, ty)) in enumerate(zip(data, target_data)):
        if i % spe == 0:
            epoch = i // spe
            keras_side.begin_epoch(epoch)
        keras_side.begin_batch()
        lrs = (sides[0].lr(), sides[1].lr())
        src_loss = sides[0].train_step(x, y)
        dst_loss = sides[1].train_step(tx, ty)
        if (i + 1) % spe == 0 or i + 1 == len(data):
            torch_side.end_epoch(epoch)
            keras_side.end_epoch(epoch)
        results.append(compare(i + 1, epoch, (src_loss, dst_loss), lrs))

    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "keras": keras.__version__,
                "keras_backend": keras.backend.backend()}
    translations = [translation_of(o).to_dict() for o in (target_optimizer, target_loss, target_schedule)
                    if o is not None and translation_of(o) is not None]
    failed = [s.step for s in results if not s.passed]
    return TrainingParityReport(
        passed=not failed, direction=direction, source=type(source).__name__, target=type(target).__name__,
        atol=atol, lr_rtol=lr_rtol, steps=results,
        max_abs_weight_err=max(s.max_abs_weight_err for s in results),
        max_abs_pred_err=max(s.max_abs_pred_err for s in results),
        optimizer=f"{_describe(target_optimizer)}", loss=f"{_describe(target_loss)}",
        schedule=_describe(target_schedule) if target_schedule is not None else "",
        translations=translations, rows_used=rows_used, versions=versions,
        message=f"steps out of tolerance: {failed}" if failed else "")
