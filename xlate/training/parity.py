"""Training-step parity: k identical training steps in both frameworks, compared step by step.

``check_training_parity(source, target, optimizer, loss, batches, ...)`` translates the source's
training setup (``translate_training``: optimizer with its state, loss, schedule, clipping, EMA,
accumulation, loss scaling) to the target framework (unless a ``setup`` or the target's objects
are given), runs the same batches through both loops (``loops.py``), and after every batch
compares the paired weights (through the weight transforms), the EMA weights where there are
some, and the predictions on a fixed evaluation batch. The report lists loss, learning rate,
gradient norm and whether clipping was active, and the errors, per step. It always compares the
two real frameworks; nothing is compared with itself.

Both models (and optimizers) are trained in place: pass copies if you need the originals.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInputError
from ..frameworks import framework_of, to_numpy
from ..parity_report import PrintableReport
from .pairing import copy_weights, pair_parameters, weight_differences
from .record import translation_of


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
    max_abs_ema_err: float | None = None
    grad_norm: float | None = None  # the gradient norm the clipping loop measured (before clipping)
    clipped: bool = False  # clipping changed the gradients of this step


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
    max_abs_ema_err: float | None = None
    clipped_steps: list[int] = field(default_factory=list)
    loop: list[str] = field(default_factory=list)

    text_width = 130
    cli_width = 130

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
        ema = any(s.max_abs_ema_err is not None for s in self.steps)
        clip = any(s.grad_norm is not None or s.clipped for s in self.steps)
        cols = ["step", "ep", "loss src", "loss tgt", "lr src", "lr tgt", *(["gnorm", "clip"] if clip else []),
                "w err", *(["ema err"] if ema else []), "pred err", "ok"]
        for col in cols:
            table.add_column(col, justify="left" if col in ("ok", "clip") else "right", no_wrap=True)

        def f(v, digits=6):
            return "-" if v is None else f"{v:.{digits}g}"

        for s in self.steps:
            row = [str(s.step), str(s.epoch), f(s.source_loss), f(s.target_loss), f(s.source_lr, 4), f(s.target_lr, 4)]
            if clip:
                row += [f(s.grad_norm, 4), "yes" if s.clipped else ""]
            row.append(f"{s.max_abs_weight_err:.1e}")
            if ema:
                row.append("-" if s.max_abs_ema_err is None else f"{s.max_abs_ema_err:.1e}")
            table.add_row(*row, f"{s.max_abs_pred_err:.1e}", "yes" if s.passed else "NO")
        lines.append(table)
        if clip:
            lines.append(Text(f"clipping active on step(s) {self.clipped_steps}" if self.clipped_steps else
                              "clipping never active"))
        if self.message:
            lines.append(Text(self.message))
        return Group(*lines)


def _as_batches(batches, steps):
    batches = list(batches)
    if not batches:
        raise BadInputError("check_training_parity needs at least one (x, y) batch")
    steps = len(batches) if steps is None else int(steps)
    return [tuple(np.asarray(a) for a in batches[i % len(batches)]) for i in range(steps)]


def _describe(obj) -> str:
    t = translation_of(obj)
    return t.describe() if t is not None else type(obj).__name__


def _setup_around(direction, source, target, target_optimizer, loss, schedule, spe, stepping, loss_target):
    """A setup around a given target optimizer (the loss and schedule translated as usual)."""
    from .losses import translate_loss
    from .schedules import translate_schedule
    from .setup import TrainingSetup

    setup = TrainingSetup(direction, target_optimizer, translate_loss(loss, target=loss_target), steps_per_epoch=spe)
    if schedule is not None:
        if direction == "torch2keras":
            setup.schedule = translate_schedule(schedule, steps_per_epoch=spe, stepping=stepping,
                                                optimizer=target_optimizer, monitor="loss")
        else:
            setup.schedule = translate_schedule(schedule, target_optimizer, steps_per_epoch=spe)
        setup.stepping = translation_of(setup.schedule).stepping
    return setup


def _ema_error(torch_loop, keras_optimizer, torch_model, pairs) -> float | None:
    """Max abs difference of the EMA weights (Keras layout), None while either side has none."""
    from .ema import ema_pairs_keras, torch_averages

    holder = torch_loop.averages()
    slots = ema_pairs_keras(keras_optimizer)
    if holder is None or not slots:
        return None
    averages = torch_averages(holder, torch_model)
    errs = [float(np.max(np.abs(a - np.asarray(slots[k].numpy())))) if a.size else 0.0
            for pair in pairs if all(n in averages for n in pair.torch)
            for k, a in zip(pair.keras, pair.to_keras(*(to_numpy(averages[n]) for n in pair.torch)))]
    return max(errs, default=None)


def _loops(direction, source, target, optimizer, loss, schedule, stepping, setup, jit_compile):
    import keras

    from .loops import KerasLoop, TorchLoop

    is_callback = lambda s: isinstance(s, keras.callbacks.Callback)
    if direction == "torch2keras":
        src_loop = setup.source_loop
        torch_loop = TorchLoop(source, optimizer, loss, schedule,
                               setup.stepping or stepping or ("batch" if type(schedule).__name__ == "OneCycleLR"
                                                              else "epoch"),
                               clip_grad_norm=src_loop.clip_grad_norm, clip_grad_value=src_loop.clip_grad_value,
                               ema=src_loop.ema if hasattr(src_loop.ema, "n_averaged") else None,
                               grad_accum_steps=src_loop.grad_accum_steps, grad_scaler=setup.source_grad_scaler,
                               autocast_dtype=setup.source_autocast)
        callbacks = setup.callbacks or ([setup.schedule] if is_callback(setup.schedule) else [])
        keras_loop = KerasLoop(target, setup.optimizer, setup.loss, callbacks, jit_compile)
        return torch_loop, keras_loop, (torch_loop, keras_loop)
    keras_loop = KerasLoop(source, optimizer, loss, [schedule] if is_callback(schedule) else [], jit_compile)
    torch_loop = TorchLoop(target, setup.optimizer, setup.loss, setup.schedule,
                           getattr(setup.schedule, "xlate_stepping", None) or setup.stepping,
                           clip_grad_norm=setup.clip_grad_norm, clip_grad_value=setup.clip_grad_value, ema=setup.ema,
                           grad_accum_steps=setup.grad_accum_steps, grad_scaler=setup.grad_scaler,
                           autocast_dtype=setup.autocast_dtype)
    return torch_loop, keras_loop, (keras_loop, torch_loop)


def check_training_parity(source, target, optimizer, loss, batches, *, steps=None, schedule=None,
                          steps_per_epoch=None, stepping=None, target_optimizer=None, target_loss=None,
                          target_schedule=None, target_batches=None, eval_inputs=None, loss_target="indices",
                          atol=1e-4, lr_rtol=1e-5, pairing=None, sync_weights=False, jit_compile=False, setup=None,
                          clip_grad_norm=None, clip_grad_value=None, ema=None, grad_accum_steps=None,
                          grad_scaler=None, autocast_dtype=None, require_clipping=False):
    """Train ``source`` and ``target`` for the same batches and compare them after every batch.

    source / target: a torch module and a Keras model (either way round). optimizer / loss: the
    source's (a torch optimizer over ``source``'s parameters and a torch loss module, or a Keras
    optimizer and loss). schedule: the source's torch scheduler or Keras callback (a Keras
    LearningRateSchedule lives inside the Keras optimizer and is translated with it).
    batches: (x, y) NumPy pairs in the source's layout (``target_batches`` when the target's
    layout differs); ``steps`` defaults to len(batches). steps_per_epoch: epoch boundaries for
    per-epoch schedulers and callbacks (one epoch = all steps when omitted); stepping: when the
    torch scheduler is stepped ("epoch" or "batch"). A torch source's loop settings:
    clip_grad_norm / clip_grad_value / ema (an AveragedModel) / grad_accum_steps / grad_scaler /
    autocast_dtype. ``setup``: a ``translate_training`` result to use instead of translating;
    target_*: use these instead of translating. loss_target: "indices" or "probabilities" for
    CrossEntropyLoss. sync_weights: copy the source's weights into the target first. atol bounds
    the weight, EMA and prediction errors after every step; lr_rtol the learning rates.
    require_clipping: fail unless clipping changed the gradients on at least one step.
    Returns a TrainingParityReport.
    """
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
    if setup is None and target_optimizer is None:
        from .setup import translate_training

        setup = translate_training(source, optimizer, loss, schedule if target_schedule is None else None,
                                   target=target, clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value,
                                   ema=ema, grad_accum_steps=grad_accum_steps, steps_per_epoch=spe, stepping=stepping,
                                   total_steps=len(data), grad_scaler=grad_scaler, autocast_dtype=autocast_dtype,
                                   loss_target=loss_target, pairing=pairing)
    elif setup is None:
        from .optimizer_common import LoopSettings

        setup = _setup_around(direction, source, target, target_optimizer, loss,
                              schedule if target_schedule is None else None, spe, stepping, loss_target)
        setup.source_loop = LoopSettings(clip_grad_norm, clip_grad_value, ema, grad_accum_steps)
        setup.source_grad_scaler, setup.source_autocast = grad_scaler, autocast_dtype
    if target_loss is not None:
        setup.loss = target_loss
    if target_schedule is not None:
        setup.schedule = target_schedule
        t = translation_of(target_schedule)
        setup.stepping = getattr(target_schedule, "xlate_stepping", None) or (t.stepping if t else setup.stepping)
    loops = _loops(direction, source, target, optimizer, loss, schedule, stepping, setup, jit_compile)
    rows_used: dict = {}
    for obj in (setup.optimizer, setup.loss, setup.schedule):
        t = translation_of(obj) if obj is not None else None
        for k, v in (t.rows_used.items() if t is not None else ()):
            rows_used[k] = rows_used.get(k, 0) + v
    eval_x = np.asarray(eval_inputs) if eval_inputs is not None else data[0][0]
    eval_x_target = eval_x if target_batches is None or eval_inputs is not None else target_data[0][0]
    results = _replay(loops, data, target_data, spe, (torch_model, keras_model), pairs, (eval_x, eval_x_target),
                      atol, lr_rtol)
    return _report(results, direction, source, target, setup, rows_used, atol, lr_rtol, require_clipping)


def _replay(loops, data, target_data, spe, models, pairs, eval_xs, atol, lr_rtol) -> list[StepParity]:
    """Train both loops batch by batch; the figures before training and after every batch."""
    torch_loop, keras_loop, sides = loops
    torch_model, keras_model = models
    keras_opt = keras_loop.optimizer

    def compare(step, epoch, losses, lrs, info=None):
        w = max(weight_differences(torch_model, keras_model, pairs).values(), default=0.0)
        src_pred, dst_pred = sides[0].predict(eval_xs[0]), sides[1].predict(eval_xs[1])
        if len(src_pred) != len(dst_pred) or any(a.shape != b.shape for a, b in zip(src_pred, dst_pred)):
            raise BadInputError(f"the models' outputs differ in shape: {[a.shape for a in src_pred]} vs "
                                f"{[b.shape for b in dst_pred]}", hint="pass target_batches / eval_inputs in the "
                                "target's layout")
        p = max((float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(src_pred, dst_pred)), default=0.0)
        e = _ema_error(torch_loop, keras_opt, torch_model, pairs)
        lr_ok = lrs[0] is None or abs(lrs[0] - lrs[1]) <= lr_rtol * abs(lrs[0]) + 1e-12
        ok = w <= atol and p <= atol and lr_ok and (e is None or e <= atol)
        return StepParity(step, epoch, losses[0], losses[1], lrs[0], lrs[1], w, p, ok, e,
                          info.grad_norm if info else None, bool(info and info.clipped))

    results = [compare(0, 0, (None, None), (None, None))]
    epoch = 0
    for i, ((x, y), (tx, ty)) in enumerate(zip(data, target_data)):
        if i % spe == 0:
            epoch = i // spe
            keras_loop.begin_epoch(epoch)
        keras_loop.begin_batch()
        lrs = (sides[0].lr(), sides[1].lr())
        infos = (sides[0].train_step(x, y), sides[1].train_step(tx, ty))
        if (i + 1) % spe == 0 or i + 1 == len(data):
            torch_loop.end_epoch(epoch)
            keras_loop.end_epoch(epoch)
        info = infos[0] if sides[0] is torch_loop else infos[1]
        results.append(compare(i + 1, epoch, (infos[0].loss, infos[1].loss), lrs, info))
    return results


def _report(results, direction, source, target, setup, rows_used, atol, lr_rtol, require_clipping):
    import keras
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "keras": keras.__version__,
                "keras_backend": keras.backend.backend()}
    translations = [translation_of(o).to_dict() for o in (setup.optimizer, setup.loss, setup.schedule)
                    if o is not None and translation_of(o) is not None]
    failed = [s.step for s in results if not s.passed]
    clipped = [s.step for s in results if s.clipped]
    messages = [f"steps out of tolerance: {failed}"] if failed else []
    if require_clipping and not clipped:
        messages.append("clipping was required but never changed the gradients")
    emas = [s.max_abs_ema_err for s in results if s.max_abs_ema_err is not None]
    return TrainingParityReport(
        passed=not failed and not (require_clipping and not clipped), direction=direction,
        source=type(source).__name__, target=type(target).__name__, atol=atol, lr_rtol=lr_rtol, steps=results,
        max_abs_weight_err=max(s.max_abs_weight_err for s in results),
        max_abs_pred_err=max(s.max_abs_pred_err for s in results),
        optimizer=_describe(setup.optimizer), loss=_describe(setup.loss) if setup.loss is not None else "",
        schedule=_describe(setup.schedule) if setup.schedule is not None else "",
        translations=translations, rows_used=rows_used, versions=versions, message="; ".join(messages),
        max_abs_ema_err=max(emas) if emas else None, clipped_steps=clipped, loop=list(setup.loop))
