"""The two training loops a training check runs, one batch at a time.

``TorchLoop`` is the loop a torch user writes: ``zero_grad(); loss.backward(); step()`` with,
where the setup says so, ``clip_grad_norm_`` / ``clip_grad_value_`` before the step,
``ema.update_parameters(net)`` after it, gradient accumulation (the loss divided by k, step and
``zero_grad`` every k batches, a per-batch scheduler stepped per optimizer step) and a
``GradScaler`` (scale, unscale_, clip, step, update) under ``torch.autocast``. xlate's KerasX
optimizers do Keras's clipping / EMA / accumulation inside ``step()``: their loop is the plain one.

``KerasLoop`` is ``model.fit`` one batch at a time: ``train_on_batch`` with the callbacks' hooks.
Both report the loss of every batch and, where the loop clips, the gradient norm it measured and
whether clipping changed the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..frameworks import flatten_outputs, to_numpy
from .lookup import keras_learning_rate, sub_optimizers


@dataclass
class StepInfo:
    loss: float
    grad_norm: float | None = None
    clipped: bool = False


class TorchLoop:
    def __init__(self, model, optimizer, loss, scheduler, stepping, *, clip_grad_norm=None, clip_grad_value=None,
                 ema=None, grad_accum_steps=None, grad_scaler=None, autocast_dtype=None):
        self.model, self.optimizer, self.loss, self.scheduler, self.stepping = model, optimizer, loss, scheduler, \
            stepping
        self.clip_grad_norm, self.clip_grad_value, self.ema = clip_grad_norm, clip_grad_value, ema
        self.k = grad_accum_steps or 1
        self.scaler, self.autocast_dtype = grad_scaler, autocast_dtype
        self.epoch_losses: list[float] = []
        self.micro = 0

    def lr(self) -> float:
        group = self.optimizer.param_groups[0]
        schedule = getattr(self.optimizer, "lr_schedule", None)
        return float(schedule(group["iterations"])) if schedule is not None else float(group["lr"])

    def _forward(self, x, y):
        import contextlib

        import torch

        device = next(self.model.parameters()).device.type
        ctx = torch.autocast(device, dtype=getattr(torch, self.autocast_dtype)) if self.autocast_dtype else \
            contextlib.nullcontext()
        with ctx:
            return self.loss(self.model(torch.from_numpy(x)), torch.from_numpy(y))

    def _clip(self) -> tuple[float | None, bool]:
        import torch

        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.clip_grad_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm))
            return norm, self.clip_grad_norm / (norm + 1e-6) < 1.0
        if self.clip_grad_value is not None:
            clipped = any(bool((p.grad.abs() > self.clip_grad_value).any()) for p in params)
            torch.nn.utils.clip_grad_value_(params, self.clip_grad_value)
            return None, clipped
        return None, False

    def train_step(self, x, y) -> StepInfo:
        self.model.train()
        if self.micro % self.k == 0:
            self.optimizer.zero_grad()
        value = self._forward(x, y)
        scaled = value / self.k if self.k > 1 else value
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        self.micro += 1
        info = StepInfo(float(value.detach()))
        if self.micro % self.k == 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            info.grad_norm, info.clipped = self._clip()
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if self.scheduler is not None and self.stepping == "batch":
                self.scheduler.step()
        if hasattr(self.optimizer, "last_clipped"):  # an xlate.KerasX clips (Keras's way) inside step()
            info.grad_norm, info.clipped = self.optimizer.last_grad_norm, self.optimizer.last_clipped
        self.epoch_losses.append(info.loss)
        return info

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

    def averages(self):
        """What holds this loop's EMA weights: the AveragedModel, or a KerasX optimizer (None: no EMA,
        or not updated yet)."""
        if self.ema is not None:
            return self.ema if int(self.ema.n_averaged) > 0 else None
        if getattr(self.optimizer, "use_ema", False) and any("average" in s for s in self.optimizer.state.values()):
            return self.optimizer
        return None


class KerasLoop:
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
        subs = sub_optimizers(getattr(self.optimizer, "inner_optimizer", self.optimizer))
        return keras_learning_rate(next((o for o in subs if o.name == "group_0"), subs[0]))

    def begin_batch(self) -> None:
        for cb in self.callbacks:
            cb.on_train_batch_begin(self.batch)

    def train_step(self, x, y) -> StepInfo:
        logs = self.model.train_on_batch(x, y, return_dict=True)
        for cb in self.callbacks:
            cb.on_train_batch_end(self.batch, logs)
        self.batch += 1
        self.epoch_losses.append(float(logs["loss"]))
        return StepInfo(float(logs["loss"]))

    def end_epoch(self, epoch: int) -> None:
        logs = {"loss": float(np.mean(self.epoch_losses)) if self.epoch_losses else 0.0}
        self.epoch_losses = []
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def predict(self, x) -> list[np.ndarray]:
        return [to_numpy(o) for o in flatten_outputs(self.model(x, training=False))]
