"""Keras emulations of the torch optimizers Keras has no twin for: RAdam, Rprop, ASGD.

Built on ``keras_optimizers._TorchFormula`` (coupled L2 decay, maximize, torch's clip_grad_norm_,
schedulable lr), ``keras.ops`` only; slots keep torch's state names so a torch state ports by
name. The formulas are torch 2.13's single-tensor code paths (``torch/optim/radam.py``,
``rprop.py``, ``asgd.py``), which are the ones that run for CPU tensors.
"""

from __future__ import annotations

from keras import ops

from .keras_optimizers import _register, _TorchFormula


@_register
class TorchRAdam(_TorchFormula):
    """torch.optim.RAdam: Adam's moments, then while rho_t <= 5 an SGD-like step
    p -= lr*m/(1-b1^t); after, p -= lr*m/(1-b1^t) * sqrt(1-b2^t)/(sqrt(v)+eps) * r_t with
    r_t = sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t)),
    rho_t = rho_inf - 2t b2^t/(1-b2^t), rho_inf = 2/(1-b2) - 1. The step scalars are computed in
    float64 as torch computes them in Python. Keras's ``weight_decay`` is torch's
    decoupled_weight_decay=True; ``l2_weight_decay`` its default coupled decay."""

    torch_class = "torch.optim.RAdam"
    _hyperparameters = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, *, l2_weight_decay=0.0,
                 maximize=False, name="torch_radam", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._exp_avgs, self._exp_avg_sqs = self.add_optimizer_variables(var_list, ["exp_avg", "exp_avg_sq"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        b1, b2 = self.beta_1, self.beta_2
        m = self._slot(self._exp_avgs, variable)
        v = self._slot(self._exp_avg_sqs, variable)
        self.assign_add(m, ops.multiply(ops.subtract(g, m), 1.0 - b1))
        self.assign(v, ops.add(ops.multiply(v, b2), ops.multiply(1.0 - b2, ops.multiply(g, g))))
        t = ops.cast(self.iterations + 1, "float64")
        # float64 from the Python floats themselves (ops.cast(0.999, "float64") would go through float32,
        # and rho_t's cancellation turns that 1e-8 into a 1e-3 error in r_t)
        b1_64, b2_64 = ops.convert_to_tensor(b1, "float64"), ops.convert_to_tensor(b2, "float64")
        bias_correction1 = 1.0 - ops.power(b1_64, t)
        bias_correction2 = 1.0 - ops.power(b2_64, t)
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * ops.power(b2_64, t) / bias_correction2
        safe_rho = ops.maximum(rho_t, 5.0)
        rect = ops.sqrt((safe_rho - 4.0) * (safe_rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe_rho))
        corrected = ops.divide(m, ops.cast(bias_correction1, dtype))
        plain = ops.multiply(corrected, lr)
        adaptive = ops.divide(ops.cast(ops.sqrt(bias_correction2), dtype), ops.add(ops.sqrt(v), self.epsilon))
        rectified = ops.multiply(ops.multiply(plain, adaptive), ops.cast(rect, dtype))
        self.assign_sub(variable, ops.where(rho_t > 5.0, rectified, plain))


@_register
class TorchRprop(_TorchFormula):
    """torch.optim.Rprop: s = sign(g * prev) -> factor etaplus (s > 0), etaminus (s < 0), 1 (s = 0);
    step_size = clip(step_size * factor, min, max) (step_size starts at the lr of the first step);
    g = 0 where the factor is etaminus; p -= sign(g) * step_size; prev = g."""

    torch_class = "torch.optim.Rprop"
    _hyperparameters = ("etaminus", "etaplus", "step_size_min", "step_size_max")

    def __init__(self, learning_rate=0.01, etaminus=0.5, etaplus=1.2, step_size_min=1e-6, step_size_max=50.0, *,
                 maximize=False, name="torch_rprop", **kwargs):
        super().__init__(learning_rate, maximize=maximize, name=name, **kwargs)
        self.etaminus, self.etaplus = float(etaminus), float(etaplus)
        self.step_size_min, self.step_size_max = float(step_size_min), float(step_size_max)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._prevs, self._step_sizes = self.add_optimizer_variables(var_list, ["prev", "step_size"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = self._torch_gradient(gradient, variable)
        prev = self._slot(self._prevs, variable)
        size = self._slot(self._step_sizes, variable)
        size_now = ops.where(ops.equal(self.iterations, 0), ops.cast(learning_rate, dtype) * ops.ones_like(size), size)
        s = ops.sign(ops.multiply(g, prev))
        factor = ops.where(s > 0, self.etaplus, ops.where(s < 0, self.etaminus, 1.0))
        factor = ops.cast(factor, dtype)
        new_size = ops.clip(ops.multiply(size_now, factor), self.step_size_min, self.step_size_max)
        g = ops.where(ops.equal(factor, self.etaminus), ops.zeros_like(g), g)
        self.assign(size, new_size)
        self.assign_sub(variable, ops.multiply(ops.sign(g), new_size))
        self.assign(prev, g)


@_register
class TorchASGD(_TorchFormula):
    """torch.optim.ASGD: p *= 1 - lambd*eta; p -= eta*g; ax = p (mu == 1) or ax += (p - ax)*mu; then
    eta = lr / (1 + lambd*lr*t)^alpha and mu = 1/max(1, t - t0). eta starts at the first step's lr
    and mu at 1; torch keeps both per parameter (all equal), here one optimizer variable each."""

    torch_class = "torch.optim.ASGD"
    _hyperparameters = ("lambd", "alpha", "t0")
    #: optimizer-level state torch keeps once per parameter (all equal): ported by name
    scalar_state = ("eta", "mu")

    def __init__(self, learning_rate=0.01, lambd=1e-4, alpha=0.75, t0=1e6, *, l2_weight_decay=0.0, maximize=False,
                 name="torch_asgd", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.lambd, self.alpha, self.t0 = float(lambd), float(alpha), float(t0)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._axs = self.add_optimizer_variables(var_list, "ax")
        self._eta = self.add_variable((), initializer="zeros", dtype="float32", name="eta")
        self._mu = self.add_variable((), initializer="ones", dtype="float32", name="mu")

    def _current_eta(self, learning_rate):
        return ops.where(ops.equal(self.iterations, 0), ops.cast(learning_rate, "float32"), self._eta)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        lr = ops.cast(learning_rate, "float32")
        t = ops.cast(self.iterations + 1, "float32")
        self._eta.assign(lr / ops.power(1.0 + self.lambd * lr * t, self.alpha))
        self._mu.assign(1.0 / ops.maximum(1.0, t - self.t0))

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = self._torch_gradient(gradient, variable)
        eta = ops.cast(self._current_eta(learning_rate), dtype)
        mu = ops.cast(self._mu, dtype)
        new = ops.subtract(ops.multiply(variable, 1.0 - self.lambd * eta), ops.multiply(eta, g))
        self.assign(variable, new)
        ax = self._slot(self._axs, variable)
        self.assign(ax, ops.where(ops.not_equal(mu, 1.0), ops.add(ax, ops.multiply(ops.subtract(new, ax), mu)), new))


#: emulation classes by the torch.optim class they emulate
BY_TORCH_CLASS = {cls.torch_class: cls for cls in (TorchRAdam, TorchRprop, TorchASGD)}
