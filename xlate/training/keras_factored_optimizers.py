"""Keras emulations of torch's Adafactor and Muon (torch 2.13, ``torch/optim/_adafactor.py`` and
``_muon.py``), whose formulas differ from Keras's classes of the same name.

Adafactor (torch): rho_t = min(lr, 1/sqrt(t)); alpha = max(eps2, RMS(p)) * rho_t (before weight
decay); p *= 1 - lr*wd; a 2-D gradient keeps row/column means of g^2 (lerp with weight
t^beta2_decay; torch's lerp switches formula at weight 0.5), estimate row@col / max(mean(row),
eps1); a vector keeps the full g^2 average; u = g * rsqrt(max(est, eps1^2)); p -= alpha * u /
max(1, RMS(u)/d). Keras's Adafactor adds eps1 to g^2, has no eps1^2 floor and decays the weights
before alpha is taken. A 2-D estimate is symmetric under transposition, so a Dense kernel (torch
(out, in), Keras (in, out)) gets the same update; higher-rank kernels factor different axes in
the two layouts and are refused.

Muon (torch): buf = lerp(buf, g, 1 - mu); u = lerp(g, buf, mu) (Nesterov) or buf; Newton-Schulz
orthogonalisation **in bfloat16** (every product is rounded to bfloat16 once, as torch's CPU
addmm does: computed in float32, rounded once); p *= 1 - lr*wd; p -= lr*ratio*u with ratio
sqrt(max(1, A/B)) ("original", A x B the torch shape) or 0.2*sqrt(max(A, B))
("match_rms_adamw"). Keras's Muon runs Newton-Schulz in float32, keeps m = mu*m + g and scales by
0.2*sqrt(max(A, B)). torch's Muon takes 2-D parameters only.
"""

from __future__ import annotations

import math

from keras import ops

from .keras_optimizers import _register, _TorchFormula


def _torch_lerp(start, end, weight):
    """torch.lerp's CPU kernel: start + w*(end - start) for |w| < 0.5, else end - (end - start)*(1 - w)."""
    return ops.where(ops.abs(weight) < 0.5, start + weight * (end - start), end - (end - start) * (1.0 - weight))


def _norm(x):
    return ops.sqrt(ops.sum(ops.square(x)))


@_register
class TorchAdafactor(_TorchFormula):
    """torch.optim.Adafactor's formula (module docstring), with Keras's argument names: torch's
    beta2_decay, eps = (epsilon_1, epsilon_2) and d (``clip_threshold``); ``torch_weight_decay`` is
    torch's weight_decay (applied after alpha is taken, unlike Keras's ``weight_decay``)."""

    torch_class = "torch.optim.Adafactor"
    _hyperparameters = ("beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold", "torch_weight_decay")

    def __init__(self, learning_rate=0.01, beta_2_decay=-0.8, epsilon_1=None, epsilon_2=1e-3, clip_threshold=1.0,
                 torch_weight_decay=0.0, *, maximize=False, name="torch_adafactor", **kwargs):
        super().__init__(learning_rate, maximize=maximize, name=name, **kwargs)
        self.beta_2_decay, self.clip_threshold = float(beta_2_decay), float(clip_threshold)
        self.epsilon_1 = None if epsilon_1 is None else float(epsilon_1)
        self.epsilon_2, self.torch_weight_decay = float(epsilon_2), float(torch_weight_decay)

    def build(self, var_list):
        if self.built:
            return
        for v in var_list:
            if len(v.shape) > 2:
                raise ValueError(f"TorchAdafactor factors the last two axes, which are not the same axes in the torch "
                                 f"and Keras layouts of {v.path} {tuple(v.shape)}: 1-D and 2-D variables only")
        super().build(var_list)
        self._rows, self._cols, self._variances = [], [], []
        for v in var_list:
            prefix = v.path.replace("/", "_")
            if len(v.shape) == 2:
                self._rows.append(self.add_variable((v.shape[0], 1), dtype=v.dtype, name=f"{prefix}_row_var"))
                self._cols.append(self.add_variable((1, v.shape[1]), dtype=v.dtype, name=f"{prefix}_col_var"))
                self._variances.append(None)
            else:
                self._rows.append(None)
                self._cols.append(None)
                self._variances.append(self.add_variable_from_reference(v, "variance"))

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        i = self._get_variable_index(variable)
        eps1 = 1.1920928955078125e-07 if self.epsilon_1 is None else self.epsilon_1  # finfo(float32).eps
        t = ops.cast(self.iterations + 1, dtype)
        weight = ops.power(t, self.beta_2_decay)
        rho = ops.minimum(lr, 1.0 / ops.sqrt(t))
        size = math.prod(variable.shape)
        alpha = ops.maximum(self.epsilon_2, _norm(variable) / math.sqrt(size)) * rho
        if self.torch_weight_decay:
            self.assign(variable, ops.multiply(variable, 1.0 - lr * self.torch_weight_decay))
        if self._rows[i] is not None:
            row, col = self._rows[i], self._cols[i]
            row_mean = ops.square(ops.sqrt(ops.sum(ops.square(g), axis=-1, keepdims=True))) / g.shape[-1]
            col_mean = ops.square(ops.sqrt(ops.sum(ops.square(g), axis=-2, keepdims=True))) / g.shape[-2]
            self.assign(row, _torch_lerp(row, row_mean, weight))
            self.assign(col, _torch_lerp(col, col_mean, weight))
            estimate = ops.matmul(row, col) / ops.maximum(ops.mean(row, axis=-2, keepdims=True), eps1)
        else:
            variance = self._variances[i]
            self.assign(variance, _torch_lerp(variance, ops.multiply(g, g), weight))
            estimate = variance
        update = ops.rsqrt(ops.maximum(estimate, eps1 * eps1)) * g
        denom = ops.maximum(1.0, _norm(update) / (math.sqrt(size) * self.clip_threshold))
        self.assign_add(variable, update * (-alpha / denom))


def _bf16(x):
    """Round to bfloat16 and back (torch's bfloat16 tensor holding the value)."""
    return ops.cast(ops.cast(x, "bfloat16"), "float32")


def newton_schulz_bf16(g, coefficients, steps, eps):
    """torch's ``_zeropower_via_newtonschulz``: bfloat16 values, one rounding per product."""
    a, b, c = coefficients
    x = _bf16(g)
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = ops.transpose(x)
    norm = _bf16(_norm(x))
    x = _bf16(x / ops.maximum(norm, _bf16(ops.convert_to_tensor(eps, "float32"))))
    for _ in range(steps):
        gram = _bf16(ops.matmul(x, ops.transpose(x)))
        update = _bf16(b * gram + c * ops.matmul(gram, gram))
        x = _bf16(a * x + ops.matmul(update, x))
    return ops.transpose(x) if tall else x


def muon_lr_ratio(torch_shape, adjust_lr_fn) -> float:
    """torch's ``_adjust_lr`` ratio for a parameter of torch shape (A, B)."""
    a, b = torch_shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, a / b))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(a, b))
    return 1.0


@_register
class TorchMuon(_TorchFormula):
    """torch.optim.Muon's formula (module docstring), ns_coefficients as Keras's muon_a/b/c; torch's
    weight_decay is Keras's decoupled ``weight_decay`` (default 0.1 as in torch). ``torch_shapes`` ({variable path: torch shape})
    sets the lr ratio's (A, B); without an entry a variable is a Dense kernel, torch shape
    reversed."""

    torch_class = "torch.optim.Muon"
    _hyperparameters = ("momentum", "nesterov", "muon_a", "muon_b", "muon_c", "eps", "ns_steps", "adjust_lr_fn",
                        "torch_shapes")

    def __init__(self, learning_rate=0.001, momentum=0.95, nesterov=True, muon_a=3.4445, muon_b=-4.775, muon_c=2.0315,
                 eps=1e-7, ns_steps=5, adjust_lr_fn=None, torch_shapes=None, *, weight_decay=0.1, name="torch_muon",
                 **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, name=name, **kwargs)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.muon_a, self.muon_b, self.muon_c = float(muon_a), float(muon_b), float(muon_c)
        self.eps, self.ns_steps, self.adjust_lr_fn = float(eps), int(ns_steps), adjust_lr_fn
        self.torch_shapes = {k: list(v) for k, v in (torch_shapes or {}).items()}

    def build(self, var_list):
        if self.built:
            return
        for v in var_list:
            if len(v.shape) != 2:
                raise ValueError(f"Muon only supports 2D parameters whereas we found {v.path} {tuple(v.shape)} "
                                 "(as torch.optim.Muon)")
        super().build(var_list)
        self._buffers = self.add_optimizer_variables(var_list, "momentum_buffer")
        self._lr_ratios = [muon_lr_ratio(self.torch_shapes.get(v.path) or list(reversed(v.shape)), self.adjust_lr_fn)
                           for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        buf = self._slot(self._buffers, variable)
        new_buf = _torch_lerp(buf, g, 1.0 - self.momentum)
        self.assign(buf, new_buf)
        update = _torch_lerp(g, new_buf, self.momentum) if self.nesterov else new_buf
        update = newton_schulz_bf16(update, (self.muon_a, self.muon_b, self.muon_c), self.ns_steps, self.eps)
        ratio = self._lr_ratios[self._get_variable_index(variable)]
        self.assign_add(variable, update * (-(lr * ratio)))


#: emulation classes by the torch.optim class they emulate
BY_TORCH_CLASS = {cls.torch_class: cls for cls in (TorchAdafactor, TorchMuon)}
