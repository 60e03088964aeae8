"""torch emulations of the Keras optimizers torch has no twin for: Lion, Lamb, Ftrl.

Built on ``torch_optimizers._KerasFormula`` (Keras's clipping, decoupled weight decay applied
before the update, EMA, gradient accumulation, a Keras schedule), with Keras 3.15's formulas
(``keras/src/optimizers/{lion,lamb,ftrl}.py``) and Keras's slot names as state keys.
"""

from __future__ import annotations

import torch

from .torch_optimizers import _KerasFormula


class KerasLion(_KerasFormula):
    """keras.optimizers.Lion: p -= lr * sign(b1*m + (1-b1)*g); m = b2*m + (1-b2)*g."""

    keras_class = "keras.optimizers.Lion"
    _slots = (("momentum", 0.0),)

    def __init__(self, params, lr=0.001, betas=(0.9, 0.99), weight_decay=0.0, **kwargs):
        if not 0 < betas[0] <= 1:
            raise ValueError(f"beta_1={betas[0]} must be in (0, 1] (Keras: the optimizer degenerates to SignSGD)")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay}, **kwargs)

    def _update(self, p, g, state, group, lr):
        beta_1, beta_2 = group["betas"]
        m = state["momentum"]
        p.sub_(lr * torch.sign(m * beta_1 + g * (1.0 - beta_1)))
        m.copy_(m * beta_2 + g * (1.0 - beta_2))


class KerasLamb(_KerasFormula):
    """keras.optimizers.Lamb: Adam's bias-corrected update u = m_hat / (sqrt(v_hat) + eps), scaled by
    the trust ratio ||p|| / ||u|| (1 where either norm is 0): p -= ratio * lr * u."""

    keras_class = "keras.optimizers.Lamb"
    _slots = (("momentum", 0.0), ("velocity", 0.0))

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0, **kwargs):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}, **kwargs)

    def _update(self, p, g, state, group, lr):
        beta_1, beta_2 = group["betas"]
        t = torch.tensor(state["step"].item(), dtype=p.dtype)
        m, v = state["momentum"], state["velocity"]
        m.add_((g - m) * (1 - beta_1))
        v.add_((g * g - v) * (1 - beta_2))
        m_hat = m / (1.0 - torch.tensor(beta_1, dtype=p.dtype) ** t)
        v_sqrt = torch.sqrt(v / (1.0 - torch.tensor(beta_2, dtype=p.dtype) ** t)) + group["eps"]
        update = m_hat / v_sqrt
        w_norm = torch.sqrt(torch.sum(p**2))
        g_norm = torch.sqrt(torch.sum(update**2))
        one = torch.ones((), dtype=p.dtype)
        ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, one), one)
        p.sub_(ratio * lr * update)


class KerasFtrl(_KerasFormula):
    """keras.optimizers.Ftrl (FTRL-proximal): with l2' = l2 + beta/(2 lr) and n' = n + g^2,
    z += g + 2*l2_shrinkage*p - (n'^(-lr_power) - n^(-lr_power))/lr * p;
    p = (clip(z, -l1, l1) - z) / (n'^(-lr_power)/lr + 2*l2'); n = n'."""

    keras_class = "keras.optimizers.Ftrl"

    def __init__(self, params, lr=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, weight_decay=0.0, **kwargs):
        if initial_accumulator_value < 0 or learning_rate_power > 0:
            raise ValueError("initial_accumulator_value must be >= 0 and learning_rate_power <= 0 (as in Keras)")
        super().__init__(params, {"lr": lr, "learning_rate_power": learning_rate_power,
                                  "initial_accumulator_value": initial_accumulator_value,
                                  "l1_regularization_strength": l1_regularization_strength,
                                  "l2_regularization_strength": l2_regularization_strength,
                                  "l2_shrinkage_regularization_strength": l2_shrinkage_regularization_strength,
                                  "beta": beta, "weight_decay": weight_decay}, **kwargs)

    def _slots_for(self, group):
        return (("accumulator", group["initial_accumulator_value"]), ("linear", 0.0))

    def _update(self, p, g, state, group, lr):
        power = group["learning_rate_power"]
        l1 = group["l1_regularization_strength"]
        l2 = group["l2_regularization_strength"] + group["beta"] / (2.0 * lr)
        accum, linear = state["accumulator"], state["linear"]
        grad_to_use = g + 2 * group["l2_shrinkage_regularization_strength"] * p
        new_accum = accum + g * g
        linear.add_(grad_to_use - (new_accum.pow(-power) - accum.pow(-power)) / lr * p)
        quadratic = new_accum.pow(-power) / lr + 2 * l2
        p.copy_((torch.clamp(linear, -l1, l1) - linear) / quadratic)
        accum.copy_(new_accum)


#: emulation classes by the Keras class they emulate
BY_KERAS_CLASS = {cls.keras_class: cls for cls in (KerasLion, KerasLamb, KerasFtrl)}
