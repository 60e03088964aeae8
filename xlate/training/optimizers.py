"""translate_optimizer: torch.optim <-> keras.optimizers, driven by the optimizer rows.

The row's ``args`` rename the hyperparameters (``lr`` <-> ``learning_rate``, ``betas[0]`` <->
``beta_1``, ``alpha`` <-> ``rho``...); the row's hook (``optimizer_hooks.HOOKS``) says when the
target's native class computes the same update for the given hyperparameters. Everywhere else
xlate uses its exact emulation of the source's formula (``xlate.TorchX`` Keras optimizers,
``xlate.KerasX`` torch optimizers; ``emulations.py`` finds them) and records which in
``translation_of(optimizer)``.

Weight decay: torch's ``weight_decay`` is coupled L2 except on AdamW, Muon and
Adam/NAdam/RAdam with ``decoupled_weight_decay=True`` (and Adafactor's own, taken after its step
size); Keras's is decoupled. Param groups without decay become ``exclude_from_weight_decay``
and back; groups that differ in anything else a Keras ``MultiOptimizer`` and back.

Training-loop settings travel with the optimizer: torch's ``clip_grad_norm_`` (with its 1e-6)
and ``clip_grad_value_``, an ``AveragedModel`` EMA and gradient accumulation become the Keras
optimizer's ``torch_clip_grad_norm`` / ``clipvalue`` / ``use_ema`` /
``gradient_accumulation_steps``; Keras's clipnorm (per variable), global_clipnorm, clipvalue,
use_ema and gradient_accumulation_steps run inside the torch emulation's ``step()``.
The two directions live in ``optimizers_t2k.py`` and ``optimizers_k2t.py``.
"""

from __future__ import annotations

from ..errors import BadInputError
from ..frameworks import is_keras_model, is_torch_module
from .lookup import is_torch_optimizer
from .optimizer_common import LoopSettings, check_emulate
from .optimizer_hooks import HOOKS, OptimizerHook

__all__ = ["HOOKS", "LoopSettings", "OptimizerHook", "translate_optimizer"]


def translate_optimizer(optimizer, target_params_or_model, *, source_model=None, emulate="auto", port_state=True,
                        pairing=None, steps=None, clip_grad_norm=None, clip_grad_value=None, ema=None,
                        grad_accum_steps=None, loop_out=None):
    """Translate a torch.optim optimizer to Keras or a Keras optimizer to torch.

    ``target_params_or_model``: the Keras model (or its variables) the new Keras optimizer will
    train, or the torch module (or its parameters). ``source_model``: the model the source
    optimizer trains; needed to pair parameters for several param groups / weight-decay
    exclusions, Muon, and the state port. ``emulate``: "auto" (the native class where it computes
    the same update for these hyperparameters, xlate's exact emulation otherwise), "always"
    (always the emulation), "never" (native only; raises where it would differ).
    ``port_state``: move moments, buffers, EMA weights and the step count when the source has
    taken steps.

    torch -> Keras only, what the torch loop does around ``step()``: ``clip_grad_norm=C``
    (``clip_grad_norm_(net.parameters(), C)`` before each step), ``clip_grad_value=V``, ``ema``
    (an ``AveragedModel`` updated after each step, or its decay) and ``grad_accum_steps=k``.
    Keras -> torch: the Keras optimizer's own settings run inside the returned optimizer's
    ``step()``; ``loop_out`` (a dict) receives the torch-loop settings an xlate.TorchX source
    carries. The returned optimizer carries a record: ``xlate.training.translation_of(opt)``.
    """
    check_emulate(emulate)
    loop = LoopSettings(clip_grad_norm, clip_grad_value, ema, grad_accum_steps)
    if is_torch_optimizer(optimizer):
        if is_torch_module(target_params_or_model):
            raise BadInputError("the target of a torch optimizer's translation is a Keras model")
        from .optimizers_t2k import torch_to_keras

        return torch_to_keras(optimizer, target_params_or_model, source_model=source_model, emulate=emulate,
                              port_state=port_state, pairing=pairing, steps=steps, loop=loop)
    import keras

    if isinstance(optimizer, keras.optimizers.Optimizer):
        if is_keras_model(target_params_or_model):
            raise BadInputError("the target of a Keras optimizer's translation is a torch module")
        if not loop.empty:
            raise BadInputError("clip_grad_norm / clip_grad_value / ema / grad_accum_steps describe a torch loop: for a "
                                "Keras optimizer they are its own settings (clipnorm, use_ema, ...)")
        from .optimizers_k2t import keras_to_torch

        return keras_to_torch(optimizer, target_params_or_model, source_model=source_model, emulate=emulate,
                              port_state=port_state, pairing=pairing, steps=steps, loop_out=loop_out)
    raise BadInputError(f"expected a torch.optim or keras.optimizers optimizer, got {type(optimizer).__name__}")
