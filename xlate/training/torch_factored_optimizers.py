"""torch emulations of Keras's Adafactor and Muon (Keras 3.15, ``keras/src/optimizers/adafactor.py``
and ``muon.py``), whose formulas differ from torch's classes of the same name.

Adafactor (Keras): lr = min(lr, 1/sqrt(t)) (relative_step, constant lr only); rho = min(lr,
1/sqrt(t)); alpha = max(eps2, RMS(p)) * rho (after Keras's weight decay); g2 = g^2 + eps1;
b = 1 - t^beta_2_decay; rank >= 2: r = b*r + (1-b)*mean(g2, -1), c = b*c + (1-b)*mean(g2, -2),
v = (r / mean(r)) outer c; else v = b*v + (1-b)*g2; u = g / sqrt(v); p -= alpha * u /
max(1, RMS(u)/clip_threshold). A 2-D estimate is symmetric under transposition (Dense kernels
match); higher-rank variables factor different axes in the two layouts and are refused.

Muon (Keras): 2-D variables (not excluded, not embeddings) get m = mu*m + g, u = g + mu*m
(Nesterov), Newton-Schulz in float32 (x / (||x|| + 1e-7); x = a x + (b A + (c A) A) x with
A = x x^T), p -= (lr*u) * sqrt(max(A, B)) * rms_rate; every other variable gets Keras's AdamW
step (adam_beta_1/2, epsilon, lr * adam_lr_ratio) and ``adam_weight_decay``. Param groups say
which path a parameter takes (``use_adamw``); xlate's translation sets it from the Keras
variable's path, as Keras decides it.
"""

from __future__ import annotations

import math

import torch

from .torch_optimizers import _KerasFormula


def _rms(x):
    return torch.sqrt(torch.mean(x * x))


class KerasAdafactor(_KerasFormula):
    """keras.optimizers.Adafactor's formula (module docstring), on the torch layout, with torch's
    argument names: beta2_decay, eps = (epsilon_1, epsilon_2), d = clip_threshold."""

    keras_class = "keras.optimizers.Adafactor"

    def __init__(self, params, lr=0.001, beta2_decay=-0.8, eps=(1e-30, 1e-3), d=1.0, relative_step=True,
                 weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "beta_2_decay": beta2_decay, "epsilon_1": eps[0], "epsilon_2": eps[1],
                                  "clip_threshold": d, "relative_step": relative_step, "weight_decay": weight_decay},
                         **kwargs)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() > 2:
                    raise ValueError(f"KerasAdafactor factors the last two axes, which differ between the torch and "
                                     f"Keras layouts of a {tuple(p.shape)} tensor: 1-D and 2-D parameters only")

    def _init_state(self, p, state, group):
        if p.dim() >= 2:
            state["r"] = torch.zeros(p.shape[:-1], dtype=p.dtype)
            state["c"] = torch.zeros((*p.shape[:-2], p.shape[-1]), dtype=p.dtype)
        state["velocity"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr):
        t = torch.tensor(state["step"].item(), dtype=p.dtype)
        lr = torch.tensor(lr, dtype=p.dtype)
        inv_sqrt_t = 1.0 / torch.sqrt(t)
        if self.lr_schedule is None and group["relative_step"]:
            lr = torch.minimum(lr, inv_sqrt_t)
        rho = torch.minimum(lr, inv_sqrt_t)
        alpha = torch.maximum(torch.tensor(group["epsilon_2"], dtype=p.dtype), _rms(p)) * rho
        g2 = g * g + group["epsilon_1"]
        beta = 1.0 - torch.pow(t, group["beta_2_decay"])
        if p.dim() >= 2:
            r, c, v = state["r"], state["c"], state["velocity"]
            r.copy_(beta * r + (1.0 - beta) * g2.mean(-1))
            c.copy_(beta * c + (1.0 - beta) * g2.mean(-2))
            v.copy_((r / r.mean(-1, keepdim=True)).unsqueeze(-1) * c.unsqueeze(-2))
        else:
            v = state["velocity"]
            v.copy_(beta * v + (1.0 - beta) * g2)
        u = g / torch.sqrt(v)
        u_hat = u / torch.maximum(torch.ones((), dtype=p.dtype), _rms(u) / group["clip_threshold"])
        p.sub_(alpha * u_hat)


def newton_schulz_keras(x, coefficients, steps):
    """Keras Muon's ``zeropower_via_newtonschulz5`` (float32; note ``c * A @ A`` is (c*A) @ A)."""
    a, b, c = coefficients
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.transpose(-2, -1)
    x = x / (torch.linalg.vector_norm(x) + 1e-7)
    for _ in range(steps):
        temp_a = x @ x.transpose(-2, -1)
        temp_b = b * temp_a + (c * temp_a) @ temp_a
        x = a * x + temp_b @ x
    return x.transpose(-2, -1) if tall else x


class KerasMuon(_KerasFormula):
    """keras.optimizers.Muon's formula (module docstring). A param group's ``use_adamw`` picks the
    AdamW path (default: parameters that are not 2-D) and its ``weight_decay`` is the decay it
    gets (Keras: ``adam_weight_decay`` on the AdamW path, ``weight_decay`` on the Muon path)."""

    keras_class = "keras.optimizers.Muon"

    def __init__(self, params, lr=0.001, adam_betas=(0.9, 0.999), adam_weight_decay=0.004, adam_eps=1e-7,
                 weight_decay=0.004, momentum=0.95, ns_steps=5, nesterov=True, rms_rate=0.2,
                 ns_coefficients=(3.4445, -4.775, 2.0315), adam_lr_ratio=1.0, **kwargs):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        split = []
        for group in groups:
            if "use_adamw" in group:
                split.append(group)
                continue
            for adamw in (False, True):
                ps = [p for p in group["params"] if (p.dim() != 2) == adamw]
                if ps:
                    wd = group.get("weight_decay", adam_weight_decay if adamw else weight_decay)
                    split.append({**group, "params": ps, "use_adamw": adamw, "weight_decay": wd})
        defaults = {"lr": lr, "adam_betas": tuple(adam_betas), "adam_eps": adam_eps, "weight_decay": weight_decay,
                    "momentum": momentum, "ns_steps": ns_steps, "nesterov": nesterov, "rms_rate": rms_rate,
                    "ns_coefficients": tuple(ns_coefficients), "adam_lr_ratio": adam_lr_ratio, "use_adamw": False}
        super().__init__(split, defaults, **kwargs)
        self.adam_weight_decay = adam_weight_decay

    def _slots_for(self, group):
        return (("momentum", 0.0), ("velocity", 0.0)) if group["use_adamw"] else (("momentum", 0.0),)

    def _update(self, p, g, state, group, lr):
        if group["use_adamw"]:
            self._adamw(p, g, state, group, lr * group["adam_lr_ratio"])
            return
        mu = group["momentum"]
        m = state["momentum"]
        m.add_(g + m * (mu - 1))
        update = g + mu * m if group["nesterov"] else m
        update = newton_schulz_keras(update, group["ns_coefficients"], group["ns_steps"])
        scale = math.sqrt(max(p.shape[0], p.shape[1]))
        p.sub_((lr * update) * torch.tensor(scale, dtype=p.dtype) * group["rms_rate"])

    @staticmethod
    def _adamw(p, g, state, group, lr):
        beta_1, beta_2 = group["adam_betas"]
        t = torch.tensor(state["step"].item(), dtype=p.dtype)
        alpha = lr * torch.sqrt(1 - torch.tensor(beta_2, dtype=p.dtype) ** t) / \
            (1 - torch.tensor(beta_1, dtype=p.dtype) ** t)
        m, v = state["momentum"], state["velocity"]
        m.add_((g - m) * (1 - beta_1))
        v.add_((g * g - v) * (1 - beta_2))
        p.sub_(m * alpha / (torch.sqrt(v) + group["adam_eps"]))


#: emulation classes by the Keras class they emulate
BY_KERAS_CLASS = {cls.keras_class: cls for cls in (KerasAdafactor, KerasMuon)}
