"""Mixed precision: torch's GradScaler / autocast <-> Keras's LossScaleOptimizer / dtype policies.

Loss scaling translates exactly. Both scale the loss by a power of two, unscale the gradients
(g * (1/s) in torch, g / s in Keras: the same for a power of two), skip the step when a gradient
is not finite and halve the scale (torch ``backoff_factor=0.5``, Keras hard-coded), and double it
after ``growth_interval`` / ``dynamic_growth_steps`` finite steps in a row (torch
``growth_factor=2``, Keras hard-coded). The order of operations is the same: scaled loss ->
gradients -> finite check -> unscale -> clip -> step -> scale update. A scaler with other factors
has no Keras counterpart and is refused. Two differences remain, written in the rows' notes:
after a skipped step torch's per-batch scheduler still advances while a Keras schedule (counted by
the inner optimizer's iterations) does not; and under gradient accumulation Keras checks every
micro-batch (a non-finite one is dropped) where torch skips the whole window.

Compute precision does not translate exactly: ``torch.autocast(dtype=bfloat16 | float16)`` and
the Keras policies ``mixed_bfloat16`` / ``mixed_float16`` round at different points (torch casts
the inputs of the ops on its autocast lists, matmul and convolution among them, and runs other
ops in whatever dtype reaches them; a Keras layer casts its inputs and kernel to the compute
dtype, adds its bias there, and some layers compute in float32; accumulation orders differ). Each op carries a relative rounding error up to the format's unit roundoff
(bfloat16 2^-8 = 3.9e-3, float16 2^-11 = 4.9e-4), so the bound xlate states and checks is
relative to the float32 run: the two mixed-precision runs differ from each other by at most
``MIXED_PRECISION_FACTOR`` times the larger of their own distances to the float32 runs
(``mixed_precision_bound``).
"""

from __future__ import annotations

from ..errors import XlateError

POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: the two frameworks' mixed-precision runs stay within this factor of their own float32 deviation
MIXED_PRECISION_FACTOR = 3.0


def policy_for(autocast_dtype: str | None) -> str | None:
    """torch autocast dtype -> Keras dtype policy name."""
    if autocast_dtype is None:
        return None
    if autocast_dtype not in POLICIES:
        raise XlateError(f"autocast dtype {autocast_dtype!r}: only bfloat16 and float16 have Keras policies")
    return POLICIES[autocast_dtype]


def autocast_for(policy) -> str | None:
    """Keras dtype policy (name or object) -> torch autocast dtype, None for a float32 policy."""
    name = getattr(policy, "name", policy)
    return {v: k for k, v in POLICIES.items()}.get(name)


def keras_autocast(model) -> str | None:
    """The torch autocast dtype for a Keras model: the compute dtype of its weight layers' policies
    (all mixed the same way), else None."""
    names = {layer.dtype_policy.name for layer in model._flatten_layers(include_self=False, recursive=True)
             if layer.weights}
    dtypes = {autocast_for(n) for n in names}
    if len(dtypes) > 1:
        raise XlateError(f"the Keras model mixes dtype policies {sorted(names)}: torch.autocast has one dtype")
    return dtypes.pop() if dtypes else None


def keras_loss_scale(scaler, optimizer, variables):
    """A torch GradScaler around ``optimizer`` (a Keras optimizer): the LossScaleOptimizer doing the
    same, at the scaler's current scale and growth count."""
    import keras

    if scaler is None or not scaler.is_enabled():
        return optimizer
    if scaler.get_growth_factor() != 2.0 or scaler.get_backoff_factor() != 0.5:
        raise XlateError(f"GradScaler(growth_factor={scaler.get_growth_factor()}, backoff_factor="
                         f"{scaler.get_backoff_factor()}): Keras's LossScaleOptimizer hard-codes 2 and 0.5")
    lso = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=float(scaler.get_scale()),
                                              dynamic_growth_steps=int(scaler.get_growth_interval()))
    lso.build(list(variables))
    lso.step_counter.assign(int(scaler._get_growth_tracker()))
    return lso


def torch_grad_scaler(lso, device: str = "cpu"):
    """A Keras LossScaleOptimizer -> the torch GradScaler doing the same (scale and growth count
    carried over when it has taken steps)."""
    import keras
    import torch

    built = bool(lso.built)
    scale = float(keras.ops.convert_to_numpy(lso.dynamic_scale)) if built else float(lso.initial_scale)
    scaler = torch.amp.GradScaler(device, init_scale=scale, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=int(lso.dynamic_growth_steps))
    if built:
        scaler._init_growth_tracker = int(keras.ops.convert_to_numpy(lso.step_counter))
    return scaler


def mixed_precision_bound(cross: float, torch_vs_fp32: float, keras_vs_fp32: float,
                          factor: float = MIXED_PRECISION_FACTOR) -> tuple[bool, float]:
    """(holds, bound): the torch and Keras mixed-precision runs differ by ``cross``; the bound is
    ``factor`` times the larger of each run's distance to its own float32 run."""
    bound = factor * max(torch_vs_fp32, keras_vs_fp32)
    return cross <= bound, bound
