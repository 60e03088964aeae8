"""torch.optim optimizers that compute keras.optimizers' update rules exactly (Keras->torch emulations).

Each ``KerasX`` is a ``torch.optim.Optimizer`` reproducing ``keras.optimizers.X`` step for step:
epsilon placement ("epsilon hat"), lr inside the momentum buffer, initial accumulator values,
Keras's decoupled ``weight_decay`` (p -= lr*wd*p before the update, skipped for parameter groups
with weight_decay 0: Keras's exclude_from_weight_decay), gradient clipping (``clipnorm`` per
tensor, ``global_clipnorm`` over every parameter, ``clipvalue``) in Keras's order, and a Keras
learning-rate schedule owned by the optimizer (``lr_schedule``: a callable of the 0-based step,
evaluated before each step as Keras evaluates it at ``optimizer.iterations``), Keras's EMA
(``use_ema``, ``ema_momentum``, ``ema_overwrite_frequency``; averages in ``state["average"]``,
``finalize_variable_values()`` loads them) and gradient accumulation
(``gradient_accumulation_steps=k``: ``step()`` after every batch accumulates, every k-th call
applies the mean; the loop calls ``zero_grad()`` before every backward and does not divide the
loss by k). So a plain ``zero_grad(); loss.backward(); opt.step()`` loop reproduces ``model.fit``.

State keys keep Keras's slot names (``momentum``, ``velocity``, ``accumulator``...), plus torch's
per-parameter ``step`` (t after the update), so a Keras optimizer state ports by name.
"""

from __future__ import annotations

import math

import torch

from .clipping import keras_clip
from .ema import finalize_torch, keras_ema_update


class _KerasFormula(torch.optim.Optimizer):
    """Shared by every Keras emulation: clipping, decoupled decay, schedule, EMA, accumulation."""

    #: the keras.optimizers class this optimizer emulates
    keras_class = ""
    #: (state key, initial value) pairs every parameter gets
    _slots: tuple[tuple[str, float], ...] = ()

    def __init__(self, params, defaults, *, clipnorm=None, clipvalue=None, global_clipnorm=None, lr_schedule=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, gradient_accumulation_steps=None):
        if sum(x is not None for x in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set (as in Keras)")
        if gradient_accumulation_steps is not None and gradient_accumulation_steps < 2:
            raise ValueError("gradient_accumulation_steps must be an integer >= 2 (as in Keras)")
        defaults = {"weight_decay": 0.0, **defaults, "iterations": 0}
        super().__init__(params, defaults)
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.lr_schedule = lr_schedule
        self.use_ema, self.ema_momentum = bool(use_ema), float(ema_momentum)
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.last_grad_norm, self.last_clipped = None, False

    # --- per-class pieces -------------------------------------------------------------------
    def _slots_for(self, group) -> tuple[tuple[str, float], ...]:
        return self._slots

    def _init_state(self, p, state, group) -> None:
        for key, init in self._slots_for(group):
            state[key] = torch.full_like(p, init, memory_format=torch.preserve_format)

    def _update(self, p, g, state, group, lr):  # pragma: no cover - abstract
        raise NotImplementedError

    # --- Keras's apply() ----------------------------------------------------------------------
    def _clip(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        grads, self.last_grad_norm, self.last_clipped = keras_clip(
            grads, clipnorm=self.clipnorm, global_clipnorm=self.global_clipnorm, clipvalue=self.clipvalue)
        return grads

    def _apply_update(self, entries, grads) -> None:
        """Clipping, Keras's decoupled weight decay, then the update rule (one real update)."""
        grads = self._clip(grads)
        for (group, p), g in zip(entries, grads):
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.tensor(0.0)
                self._init_state(p, state, group)
            lr = group["lr"]
            if group["weight_decay"]:
                p.sub_(p * group["weight_decay"] * lr)
            state["step"] += 1
            self._update(p, g.to(p.dtype), state, group, lr)

    @property
    def iterations(self) -> int:
        """Keras's ``optimizer.iterations``: real updates (micro-batches // accumulation steps)."""
        micro = self.param_groups[0]["iterations"]
        return micro // self.gradient_accumulation_steps if self.gradient_accumulation_steps else micro

    @torch.no_grad()
    def step(self, closure=None):
        """One Keras ``apply``: call it after every batch's backward(), with zero_grad() before each
        backward even under gradient accumulation (the optimizer accumulates the batches itself)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        entries = [(group, p) for group in self.param_groups for p in group["params"] if p.grad is not None]
        micro = self.param_groups[0]["iterations"]
        for group in self.param_groups:
            if self.lr_schedule is not None:  # Keras evaluates the schedule at the micro-batch count
                group["lr"] = float(self.lr_schedule(group["iterations"]))
        grads = [p.grad for _, p in entries]
        k = self.gradient_accumulation_steps
        if k:
            accumulators = [self.state[p].setdefault("gradient_accumulator", torch.zeros_like(p)) for _, p in entries]
            if (micro + 1) % k == 0:
                self._apply_update(entries, [(g + a) / k for g, a in zip(grads, accumulators)])
                for a in accumulators:
                    a.zero_()
            else:
                for a, g in zip(accumulators, grads):
                    a.copy_(g + a)
                self.last_grad_norm, self.last_clipped = None, False
        else:
            self._apply_update(entries, grads)
        if self.use_ema:
            keras_ema_update(self, self.iterations)
        for group in self.param_groups:
            group["iterations"] += 1
        return loss

    def finalize_variable_values(self) -> None:
        """Keras's ``finalize_variable_values`` (what ``fit`` does at the end with use_ema): load the
        averages into the parameters."""
        if self.use_ema:
            finalize_torch(self)


class KerasSGD(_KerasFormula):
    """keras.optimizers.SGD: m = mu*m - lr*g; p += m (Nesterov: p += mu*m - lr*g)."""

    keras_class = "keras.optimizers.SGD"

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay}, **kwargs)

    def _slots_for(self, group):
        return (("momentum", 0.0),) if group["momentum"] != 0 else ()

    def _update(self, p, g, state, group, lr):
        mu = group["momentum"]
        if mu == 0:
            p.sub_(g * lr)
            return
        m = state["momentum"]
        m.copy_(m * mu - g * lr)
        p.add_(m * mu - g * lr if group["nesterov"] else m)


class KerasAdam(_KerasFormula):
    """keras.optimizers.Adam: a = lr*sqrt(1-b2^t)/(1-b1^t); p -= a*m / (sqrt(v) + eps)."""

    keras_class = "keras.optimizers.Adam"

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, amsgrad=False, weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "amsgrad": amsgrad,
                                  "weight_decay": weight_decay}, **kwargs)

    def _slots_for(self, group):
        return (("momentum", 0.0), ("velocity", 0.0)) + ((("velocity_hat", 0.0),) if group["amsgrad"] else ())

    def _update(self, p, g, state, group, lr):
        beta_1, beta_2 = group["betas"]
        t = state["step"].item()
        m, v = state["momentum"], state["velocity"]
        alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m.add_((g - m) * (1 - beta_1))
        v.add_((g * g - v) * (1 - beta_2))
        if group["amsgrad"]:
            v_hat = state["velocity_hat"]
            torch.maximum(v_hat, v, out=v_hat)
            v = v_hat
        p.sub_(m * alpha / (torch.sqrt(v) + group["eps"]))


class KerasAdamW(KerasAdam):
    """keras.optimizers.AdamW: Keras's Adam with decoupled weight decay (default 0.004)."""

    keras_class = "keras.optimizers.AdamW"

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, amsgrad=False, weight_decay=0.004,
                 **kwargs):
        super().__init__(params, lr, betas, eps, amsgrad, weight_decay, **kwargs)


class KerasRMSprop(_KerasFormula):
    """keras.optimizers.RMSprop: d = sqrt(v [- g_avg^2] + eps); m = mu*m + lr*g/d, p -= m."""

    keras_class = "keras.optimizers.RMSprop"

    def __init__(self, params, lr=0.001, alpha=0.9, momentum=0.0, eps=1e-7, centered=False, weight_decay=0.0,
                 **kwargs):
        super().__init__(params, {"lr": lr, "alpha": alpha, "momentum": momentum, "eps": eps, "centered": centered,
                                  "weight_decay": weight_decay}, **kwargs)

    def _slots_for(self, group):
        slots = [("velocity", 0.0)]
        if group["momentum"] > 0:
            slots.append(("momentum", 0.0))
        if group["centered"]:
            slots.append(("average_gradient", 0.0))
        return tuple(slots)

    def _update(self, p, g, state, group, lr):
        rho = group["alpha"]  # torch's name for Keras's rho (the same decay of the square average)
        v = state["velocity"]
        v.copy_(v * rho + (1 - rho) * g * g)
        if group["centered"]:
            ga = state["average_gradient"]
            ga.copy_(ga * rho + (1 - rho) * g)
            denominator = v - ga * ga + group["eps"]
        else:
            denominator = v + group["eps"]
        increment = lr * g / torch.sqrt(denominator)
        if group["momentum"] > 0:
            m = state["momentum"]
            m.copy_(group["momentum"] * m + increment)
            p.sub_(m)
        else:
            p.sub_(increment)


class KerasAdagrad(_KerasFormula):
    """keras.optimizers.Adagrad: acc += g^2 (from 0.1 by default); p -= lr*g / sqrt(acc + eps)."""

    keras_class = "keras.optimizers.Adagrad"

    def __init__(self, params, lr=0.001, initial_accumulator_value=0.1, eps=1e-7, weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "initial_accumulator_value": initial_accumulator_value, "eps": eps,
                                  "weight_decay": weight_decay}, **kwargs)

    def _slots_for(self, group):
        return (("accumulator", group["initial_accumulator_value"]),)

    def _update(self, p, g, state, group, lr):
        acc = state["accumulator"]
        acc.add_(g * g)
        p.sub_(lr * g / torch.sqrt(acc + group["eps"]))


class KerasAdadelta(_KerasFormula):
    """keras.optimizers.Adadelta (torch's formula too), with Keras's decoupled decay and clipping."""

    keras_class = "keras.optimizers.Adadelta"
    _slots = (("accumulated_grad", 0.0), ("accumulated_delta_var", 0.0))

    def __init__(self, params, lr=0.001, rho=0.95, eps=1e-7, weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay}, **kwargs)

    def _update(self, p, g, state, group, lr):
        rho, eps = group["rho"], group["eps"]
        acc_g, acc_d = state["accumulated_grad"], state["accumulated_delta_var"]
        acc_g.copy_(rho * acc_g + (1 - rho) * g * g)
        delta = -(torch.sqrt(acc_d + eps) * g) / torch.sqrt(acc_g + eps)
        acc_d.copy_(rho * acc_d + (1 - rho) * delta * delta)
        p.add_(lr * delta)


class KerasAdamax(_KerasFormula):
    """keras.optimizers.Adamax: u = max(b2*u, |g|); p -= lr*m / ((1-b1^t)(u + eps))."""

    keras_class = "keras.optimizers.Adamax"
    _slots = (("momentum", 0.0), ("norm", 0.0))

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay},
                         **kwargs)

    def _update(self, p, g, state, group, lr):
        beta_1, beta_2 = group["betas"]
        t = state["step"].item()
        m, u = state["momentum"], state["norm"]
        m.add_((g - m) * (1 - beta_1))
        torch.maximum(beta_2 * u, g.abs(), out=u)
        p.sub_(lr * m / ((1 - beta_1**t) * (u + group["eps"])))


class KerasNadam(_KerasFormula):
    """keras.optimizers.Nadam: u_t = b1*(1 - 0.5*0.96^t) (torch NAdam with momentum_decay=1)."""

    keras_class = "keras.optimizers.Nadam"
    _slots = (("momentum", 0.0), ("velocity", 0.0))

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay},
                         **kwargs)

    def _update(self, p, g, state, group, lr):
        beta_1, beta_2 = group["betas"]
        t = state["step"].item()
        u_t = beta_1 * (1.0 - 0.5 * 0.96**t)
        u_t_1 = beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        # one scalar per parameter (all equal), like torch NAdam's mu_product; Keras keeps one
        u_product = state.setdefault("u_product", torch.tensor(1.0)).item() * u_t
        state["u_product"].fill_(u_product)
        m, v = state["momentum"], state["velocity"]
        m.add_((g - m) * (1 - beta_1))
        v.add_((g * g - v) * (1 - beta_2))
        m_hat = u_t_1 * m / (1 - u_product * u_t_1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - beta_2**t)
        p.sub_(m_hat * lr / (torch.sqrt(v_hat) + group["eps"]))


#: emulation classes by the keras.optimizers class they emulate
BY_KERAS_CLASS = {cls.keras_class: cls for cls in
                  (KerasSGD, KerasAdam, KerasAdamW, KerasRMSprop, KerasAdagrad, KerasAdadelta, KerasAdamax,
                   KerasNadam)}
