"""Keras optimizers that compute torch.optim's update rules exactly (the torch->Keras emulations).

Each class ``TorchX`` is a ``keras.optimizers.Optimizer`` built from ``keras.ops`` only (so it
runs on every Keras backend) that reproduces ``torch.optim.X`` step for step: epsilon placement,
coupled L2 weight decay (``l2_weight_decay``; Keras's own ``weight_decay`` stays the decoupled
decay, which is what torch's AdamW does), ``maximize``, first-step rules. Slots keep torch's state
names (``exp_avg``, ``momentum_buffer``, ``sum``...), so a torch optimizer state ports by name.

Hyperparameters that torch's OneCycleLR cycles (``beta_1``, ``momentum``) may be a Keras
``LearningRateSchedule``; it is evaluated at ``optimizer.iterations`` like the learning rate.
A torch loop's ``clip_grad_norm_`` is ``torch_clip_grad_norm`` (``clipping.TorchClipping``), and
its once-per-step EMA under gradient accumulation ``torch_ema=True`` (``ema.TorchLoopEMA``). The
emulations of RAdam, Rprop, ASGD, Adafactor and Muon live in ``keras_optimizers_extra`` and
``keras_factored_optimizers``.

The classes are registered as ``xlate>TorchX`` so models compiled with them save and load
(``import xlate.training.keras_optimizers`` before ``keras.saving.load_model``).
"""

from __future__ import annotations

import keras
from keras import ops
from keras.optimizers.schedules import LearningRateSchedule

from .clipping import TorchClipping
from .ema import TorchLoopEMA

_register = keras.saving.register_keras_serializable(package="xlate")


def _serialize(value):
    if isinstance(value, LearningRateSchedule):
        return keras.optimizers.schedules.serialize(value)
    return value


def _deserialize(value):
    if isinstance(value, dict):
        return keras.optimizers.schedules.deserialize(value)
    return value


class _TorchFormula(TorchClipping, TorchLoopEMA, keras.optimizers.Optimizer):
    """Shared by every torch emulation: coupled L2 decay, maximize, schedulable hyperparameters,
    torch's clip_grad_norm_ (``torch_clip_grad_norm``) and a torch loop's EMA order under
    accumulation (``torch_ema``)."""

    #: the torch.optim class this optimizer emulates
    torch_class = ""
    #: constructor arguments get_config saves, besides the base optimizer's
    _hyperparameters: tuple[str, ...] = ()
    #: hyperparameters that may be schedules (serialized as such)
    _schedulable: tuple[str, ...] = ()

    def __init__(self, learning_rate, *, l2_weight_decay=0.0, maximize=False, torch_clip_grad_norm=None,
                 torch_ema=False, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.l2_weight_decay = float(l2_weight_decay or 0.0)
        self.maximize = bool(maximize)
        self._set_torch_clipping(torch_clip_grad_norm)
        self.torch_ema = bool(torch_ema)

    def _value(self, hyper, dtype):
        """A hyperparameter's value at this step (a schedule is evaluated at ``iterations``)."""
        if isinstance(hyper, LearningRateSchedule):
            return ops.cast(hyper(self.iterations), dtype)
        return ops.cast(hyper, dtype)

    def _torch_gradient(self, gradient, variable):
        """torch's gradient preprocessing: negate for maximize, then add the coupled L2 term."""
        g = ops.cast(gradient, variable.dtype)
        if self.maximize:
            g = ops.negative(g)
        if self.l2_weight_decay and self._use_weight_decay(variable):
            g = ops.add(g, ops.multiply(ops.cast(self.l2_weight_decay, variable.dtype), variable))
        return g

    def _slot(self, slots, variable):
        return slots[self._get_variable_index(variable)]

    def _step(self, dtype):
        """torch's step count t for the update being made (1 on the first step)."""
        return ops.cast(self.iterations + 1, dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"l2_weight_decay": self.l2_weight_decay, "maximize": self.maximize,
                       "torch_clip_grad_norm": self.torch_clip_grad_norm, "torch_ema": self.torch_ema})
        config.update({key: _serialize(getattr(self, key)) for key in self._hyperparameters})
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in cls._schedulable:
            if key in config:
                config[key] = _deserialize(config[key])
        return super().from_config(config, custom_objects=custom_objects)


@_register
class TorchSGD(_TorchFormula):
    """torch.optim.SGD: b = mu*b + (1-dampening)*g (b = g on the first step); p -= lr*b.

    Nesterov: p -= lr*(g + mu*b). The buffer is lr-free, so an lr change rescales the whole
    step, as in torch (Keras's SGD keeps lr inside its buffer).
    """

    torch_class = "torch.optim.SGD"
    _hyperparameters = ("momentum", "dampening", "nesterov")
    _schedulable = ("momentum",)

    def __init__(self, learning_rate=0.001, momentum=0.0, dampening=0.0, nesterov=False, *, l2_weight_decay=0.0,
                 maximize=False, name="torch_sgd", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.momentum = momentum
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)

    @property
    def _uses_momentum(self):
        return isinstance(self.momentum, LearningRateSchedule) or self.momentum != 0

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._buffers = []
        if self._uses_momentum:
            self._buffers = self.add_optimizer_variables(var_list, "momentum_buffer")
            # torch creates the buffer on the first step (b = g, no dampening): 0 until then
            self._buffers_started = self.add_variable((), initializer="zeros", dtype="float32",
                                                      name="momentum_buffer_started")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        if self._uses_momentum:
            self._buffers_started.assign(1.0)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        if not self._uses_momentum:
            self.assign_sub(variable, ops.multiply(lr, g))
            return
        mu = self._value(self.momentum, dtype)
        buf = self._slot(self._buffers, variable)
        started = ops.greater(self._buffers_started, 0.0)
        new_buf = ops.where(started, ops.add(ops.multiply(mu, buf), ops.multiply(1.0 - self.dampening, g)), g)
        self.assign(buf, new_buf)
        step = ops.add(g, ops.multiply(mu, new_buf)) if self.nesterov else new_buf
        self.assign_sub(variable, ops.multiply(lr, step))



@_register
class TorchAdam(_TorchFormula):
    """torch.optim.Adam: p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) (AMSGrad: max of v)."""

    torch_class = "torch.optim.Adam"
    _hyperparameters = ("beta_1", "beta_2", "epsilon", "amsgrad")
    _schedulable = ("beta_1",)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, amsgrad=False, *,
                 l2_weight_decay=0.0, maximize=False, name="torch_adam", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._exp_avgs, self._exp_avg_sqs = self.add_optimizer_variables(var_list, ["exp_avg", "exp_avg_sq"])
        self._max_exp_avg_sqs = self.add_optimizer_variables(var_list, "max_exp_avg_sq") if self.amsgrad else []

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        t = self._step(dtype)
        beta_1 = self._value(self.beta_1, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)
        m = self._slot(self._exp_avgs, variable)
        v = self._slot(self._exp_avg_sqs, variable)
        self.assign_add(m, ops.multiply(ops.subtract(g, m), 1.0 - beta_1))
        self.assign(v, ops.add(ops.multiply(v, beta_2), ops.multiply(1.0 - beta_2, ops.square(g))))
        if self.amsgrad:
            v_max = self._slot(self._max_exp_avg_sqs, variable)
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        bias_correction1 = 1.0 - ops.power(beta_1, t)
        bias_correction2 = 1.0 - ops.power(beta_2, t)
        denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction2)), self.epsilon)
        self.assign_sub(variable, ops.multiply(ops.divide(lr, bias_correction1), ops.divide(m, denom)))



@_register
class TorchAdamW(TorchAdam):
    """torch.optim.AdamW: Keras's decoupled ``weight_decay`` (p -= lr*wd*p first), then torch's Adam."""

    torch_class = "torch.optim.AdamW"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, amsgrad=False,
                 weight_decay=0.01, *, name="torch_adamw", **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, name=name,
                         **kwargs)


@_register
class TorchRMSprop(_TorchFormula):
    """torch.optim.RMSprop: avg = sqrt(v [- g_avg^2]) + eps (eps outside the root); b = mu*b + g/avg;
    p -= lr*b (or lr*g/avg without momentum)."""

    torch_class = "torch.optim.RMSprop"
    _hyperparameters = ("rho", "epsilon", "momentum", "centered")
    _schedulable = ("momentum",)

    def __init__(self, learning_rate=0.01, rho=0.99, epsilon=1e-8, momentum=0.0, centered=False, *,
                 l2_weight_decay=0.0, maximize=False, name="torch_rmsprop", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.rho = float(rho)
        self.epsilon = float(epsilon)
        self.momentum = momentum
        self.centered = bool(centered)

    @property
    def _uses_momentum(self):
        return isinstance(self.momentum, LearningRateSchedule) or self.momentum > 0

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._square_avgs = self.add_optimizer_variables(var_list, "square_avg")
        self._grad_avgs = self.add_optimizer_variables(var_list, "grad_avg") if self.centered else []
        self._buffers = self.add_optimizer_variables(var_list, "momentum_buffer") if self._uses_momentum else []

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        rho = ops.cast(self.rho, dtype)
        sq = self._slot(self._square_avgs, variable)
        self.assign(sq, ops.add(ops.multiply(sq, rho), ops.multiply(1.0 - rho, ops.square(g))))
        if self.centered:
            ga = self._slot(self._grad_avgs, variable)
            self.assign_add(ga, ops.multiply(ops.subtract(g, ga), 1.0 - rho))
            avg = ops.sqrt(ops.subtract(sq, ops.square(ga)))
        else:
            avg = ops.sqrt(sq)
        avg = ops.add(avg, self.epsilon)
        if self._uses_momentum:
            buf = self._slot(self._buffers, variable)
            self.assign(buf, ops.add(ops.multiply(self._value(self.momentum, dtype), buf), ops.divide(g, avg)))
            self.assign_sub(variable, ops.multiply(lr, buf))
        else:
            self.assign_sub(variable, ops.multiply(lr, ops.divide(g, avg)))



@_register
class TorchAdagrad(_TorchFormula):
    """torch.optim.Adagrad: sum += g^2; p -= lr/(1 + (t-1)*lr_decay) * g / (sqrt(sum) + eps)."""

    torch_class = "torch.optim.Adagrad"
    _hyperparameters = ("lr_decay", "initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.01, lr_decay=0.0, initial_accumulator_value=0.0, epsilon=1e-10, *,
                 l2_weight_decay=0.0, maximize=False, name="torch_adagrad", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.lr_decay = float(lr_decay)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._sums = self.add_optimizer_variables(
            var_list, "sum", initializer=keras.initializers.Constant(self.initial_accumulator_value))

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        t = self._step(dtype)
        clr = ops.divide(lr, 1.0 + (t - 1.0) * self.lr_decay)
        s = self._slot(self._sums, variable)
        self.assign_add(s, ops.square(g))
        self.assign_sub(variable, ops.multiply(clr, ops.divide(g, ops.add(ops.sqrt(s), self.epsilon))))



@_register
class TorchAdadelta(_TorchFormula):
    """torch.optim.Adadelta (the formula Keras uses too) with torch's coupled L2 decay and maximize."""

    torch_class = "torch.optim.Adadelta"
    _hyperparameters = ("rho", "epsilon")

    def __init__(self, learning_rate=1.0, rho=0.9, epsilon=1e-6, *, l2_weight_decay=0.0, maximize=False,
                 name="torch_adadelta", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._square_avgs, self._acc_deltas = self.add_optimizer_variables(var_list, ["square_avg", "acc_delta"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        rho = ops.cast(self.rho, dtype)
        sq = self._slot(self._square_avgs, variable)
        acc = self._slot(self._acc_deltas, variable)
        self.assign(sq, ops.add(ops.multiply(sq, rho), ops.multiply(1.0 - rho, ops.square(g))))
        std = ops.sqrt(ops.add(sq, self.epsilon))
        delta = ops.multiply(ops.divide(ops.sqrt(ops.add(acc, self.epsilon)), std), g)
        self.assign(acc, ops.add(ops.multiply(acc, rho), ops.multiply(1.0 - rho, ops.square(delta))))
        self.assign_sub(variable, ops.multiply(lr, delta))



@_register
class TorchAdamax(_TorchFormula):
    """torch.optim.Adamax: u = max(b2*u, |g| + eps); p -= lr/(1-b1^t) * m / u."""

    torch_class = "torch.optim.Adamax"
    _hyperparameters = ("beta_1", "beta_2", "epsilon")
    _schedulable = ("beta_1",)

    def __init__(self, learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=1e-8, *, l2_weight_decay=0.0,
                 maximize=False, name="torch_adamax", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._exp_avgs, self._exp_infs = self.add_optimizer_variables(var_list, ["exp_avg", "exp_inf"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        t = self._step(dtype)
        beta_1 = self._value(self.beta_1, dtype)
        m = self._slot(self._exp_avgs, variable)
        u = self._slot(self._exp_infs, variable)
        self.assign_add(m, ops.multiply(ops.subtract(g, m), 1.0 - beta_1))
        self.assign(u, ops.maximum(ops.multiply(u, self.beta_2), ops.add(ops.abs(g), self.epsilon)))
        clr = ops.divide(lr, 1.0 - ops.power(beta_1, t))
        self.assign_sub(variable, ops.multiply(clr, ops.divide(m, u)))



@_register
class TorchNAdam(_TorchFormula):
    """torch.optim.NAdam with its momentum schedule mu_t = b1*(1 - 0.5*0.96^(t*momentum_decay)).

    Keras's Nadam is this with momentum_decay = 1. ``mu_product`` is one scalar (torch keeps one
    per parameter, all equal); Keras's ``weight_decay`` is torch's decoupled_weight_decay=True.
    """

    torch_class = "torch.optim.NAdam"
    _hyperparameters = ("beta_1", "beta_2", "epsilon", "momentum_decay")

    def __init__(self, learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum_decay=0.004, *,
                 l2_weight_decay=0.0, maximize=False, name="torch_nadam", **kwargs):
        super().__init__(learning_rate, l2_weight_decay=l2_weight_decay, maximize=maximize, name=name, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.momentum_decay = float(momentum_decay)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._exp_avgs, self._exp_avg_sqs = self.add_optimizer_variables(var_list, ["exp_avg", "exp_avg_sq"])
        dtype = var_list[0].dtype if var_list else keras.backend.floatx()
        self._mu_product = self.add_variable((), initializer="ones", dtype=dtype, name="mu_product")

    def _mu(self, t, dtype):
        return self.beta_1 * (1.0 - 0.5 * ops.power(ops.cast(0.96, dtype), t * self.momentum_decay))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        dtype = self._mu_product.dtype
        self._mu_product.assign(self._mu_product * self._mu(self._step(dtype), dtype))
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = self._torch_gradient(gradient, variable)
        t = self._step(dtype)
        mu = self._mu(t, dtype)
        mu_next = self._mu(t + 1.0, dtype)
        mu_product = ops.cast(self._mu_product, dtype)
        m = self._slot(self._exp_avgs, variable)
        v = self._slot(self._exp_avg_sqs, variable)
        self.assign_add(m, ops.multiply(ops.subtract(g, m), 1.0 - self.beta_1))
        self.assign(v, ops.add(ops.multiply(v, self.beta_2), ops.multiply(1.0 - self.beta_2, ops.square(g))))
        bias_correction2 = 1.0 - ops.power(ops.cast(self.beta_2, dtype), t)
        denom = ops.add(ops.sqrt(ops.divide(v, bias_correction2)), self.epsilon)
        grad_coef = ops.divide(lr * (1.0 - mu), 1.0 - mu_product)
        momentum_coef = ops.divide(lr * mu_next, 1.0 - mu_product * mu_next)
        self.assign_sub(variable, ops.multiply(grad_coef, ops.divide(g, denom)))
        self.assign_sub(variable, ops.multiply(momentum_coef, ops.divide(m, denom)))



#: emulation classes by the torch.optim class they emulate
BY_TORCH_CLASS = {cls.torch_class: cls for cls in
                  (TorchSGD, TorchAdam, TorchAdamW, TorchRMSprop, TorchAdagrad, TorchAdadelta, TorchAdamax, TorchNAdam)}
