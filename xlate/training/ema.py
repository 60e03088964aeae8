"""Exponential moving averages of the weights: torch's AveragedModel <-> Keras's ``use_ema``.

torch: ``ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(d))`` and, after every
``optimizer.step()``, ``ema.update_parameters(net)``: the first call copies the weights
(n_averaged == 0), later calls ``ema = lerp(ema, w, 1 - d)`` = d*ema + (1-d)*w. With
``use_buffers=False`` (the default) the buffers are copied from the model, not averaged.

Keras (``BaseOptimizer._backend_apply_gradients``): after the update step, for every trainable
variable ``average = m*average + (1-m)*w`` with m = 0 while ``iterations == 0`` (a copy) and
``ema_momentum`` after; with ``ema_overwrite_frequency=N`` the weights are overwritten by their
averages when (iterations + 1) % N == 0; ``fit`` ends with ``finalize_variable_values`` (weights
:= averages). Under gradient accumulation Keras updates the average at **every micro-batch**
(iterations counts real updates, so the first window only copies); a torch loop updates it once
per optimizer step. ``TorchLoopEMA`` gives xlate's Keras emulations the torch loop's order.

This module also moves EMA state between the two (``ema_decay_of``, ``port_ema_*``) and runs
Keras's EMA inside xlate's torch emulations (``keras_ema_update``).
"""

from __future__ import annotations

from ..errors import BadInputError


def ema_decay_of(ema) -> float:
    """The decay of a torch ``AveragedModel`` built with get_ema_multi_avg_fn / get_ema_avg_fn (or a
    float given directly). Anything else (SWA's running mean, a custom function) raises."""
    if isinstance(ema, (int, float)) and not isinstance(ema, bool):
        if not 0.0 <= float(ema) <= 1.0:
            raise BadInputError(f"an EMA decay must be in [0, 1], got {ema}")
        return float(ema)
    fn = getattr(ema, "multi_avg_fn", None) or getattr(ema, "avg_fn", None)
    if fn is None or not hasattr(ema, "n_averaged"):
        raise BadInputError(f"expected a torch.optim.swa_utils.AveragedModel or a decay, got {type(ema).__name__}",
                            hint="AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.999))")
    if fn.__qualname__ not in ("get_ema_multi_avg_fn.<locals>.ema_update", "get_ema_avg_fn.<locals>.ema_update"):
        raise BadInputError(f"the AveragedModel averages with {fn.__qualname__}: only torch's EMA functions "
                            "(get_ema_multi_avg_fn / get_ema_avg_fn) have a Keras counterpart (use_ema)")
    if getattr(ema, "use_buffers", False) and any(True for _ in ema.module.buffers()):
        raise BadInputError("AveragedModel(use_buffers=True) averages the buffers too; Keras's EMA covers the "
                            "trainable variables only", hint="use use_buffers=False (the default)")
    fn = getattr(fn, "__wrapped__", fn)  # torch.no_grad() wraps the closure
    cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ())))
    return float(cells["decay"])


def keras_ema_update(optimizer, iteration: int) -> None:
    """Keras's EMA step inside a torch optimizer (xlate.KerasX): every parameter's
    ``state["average"]`` after the update with Keras's iteration count ``iteration``, then the
    periodic overwrite of the weights."""
    import torch

    m = torch.tensor(0.0 if iteration == 0 else optimizer.ema_momentum, dtype=torch.float32)
    freq = optimizer.ema_overwrite_frequency
    overwrite = bool(freq) and (iteration + 1) % freq == 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if "average" not in state:
                state["average"] = torch.zeros_like(p)
            avg = state["average"]
            mm = m.to(p.dtype)
            avg.copy_(mm * avg + (1 - mm) * p)
            if overwrite:
                p.copy_(avg)


def finalize_torch(optimizer) -> None:
    """``optimizer.finalize_variable_values()`` for a torch emulation: weights := averages."""
    import torch

    with torch.no_grad():
        for group in optimizer.param_groups:
            for p in group["params"]:
                avg = optimizer.state[p].get("average")
                if avg is not None:
                    p.copy_(avg)


class TorchLoopEMA:
    """Mixin for xlate's Keras emulations: with ``torch_ema=True`` and gradient accumulation the
    average is updated once per optimizer update (as a torch loop calling
    ``ema.update_parameters(net)`` after each ``optimizer.step()``), not at every micro-batch."""

    torch_ema = False

    def _update_model_variables_moving_average(self, trainable_variables):
        k = self.gradient_accumulation_steps
        if not (self.torch_ema and k):
            return super()._update_model_variables_moving_average(trainable_variables)
        from keras import ops

        is_update = ops.equal((self._iterations + 1) % k, 0)
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is None:
                continue
            m = ops.cast(ops.not_equal(self.iterations, 0), var.dtype) * self.ema_momentum
            new = m * average + (1 - m) * var
            average.assign(ops.where(is_update, new, average))


def ema_pairs_keras(optimizer) -> dict:
    """{model variable path: Keras average variable} of a Keras optimizer with use_ema."""
    from .lookup import sub_optimizers

    out = {}
    for sub in sub_optimizers(getattr(optimizer, "inner_optimizer", optimizer)):
        averages = getattr(sub, "_model_variables_moving_average", None) or []
        for var, avg in zip(sub._trainable_variables, averages):
            if avg is not None:
                out[var.path] = avg
    return out


def torch_averages(ema_or_optimizer, torch_model) -> dict:
    """{torch parameter name: EMA tensor} from an AveragedModel or an xlate.KerasX optimizer."""
    if hasattr(ema_or_optimizer, "n_averaged"):
        return {n: p.detach() for n, p in ema_or_optimizer.module.named_parameters()}
    params = dict(torch_model.named_parameters())
    by_id = {id(p): n for n, p in params.items()}
    return {by_id[id(p)]: s["average"] for p, s in ema_or_optimizer.state.items()
            if "average" in s and id(p) in by_id}


def port_ema_to_keras(ema_or_optimizer, keras_optimizer, torch_model, pairs) -> int:
    """Copy torch EMA weights (an AveragedModel or a KerasX optimizer's averages) into a built
    Keras optimizer's averages through the weight transforms. Returns the number of averages
    copied (0 when the torch EMA has not been updated yet)."""
    import numpy as np

    from ..frameworks import to_numpy

    if hasattr(ema_or_optimizer, "n_averaged") and int(ema_or_optimizer.n_averaged) == 0:
        return 0
    averages = torch_averages(ema_or_optimizer, torch_model)
    slots = ema_pairs_keras(keras_optimizer)
    copied = 0
    for pair in pairs:
        if not all(n in averages for n in pair.torch):
            continue
        for path, a in zip(pair.keras, pair.to_keras(*(to_numpy(averages[n]) for n in pair.torch))):
            if path not in slots:
                raise BadInputError(f"the Keras optimizer keeps no EMA of {path} (build it with use_ema=True)")
            slots[path].assign(np.asarray(a, dtype=slots[path].dtype))
            copied += 1
    return copied


def port_ema_to_torch(keras_optimizer, target, torch_model, pairs) -> int:
    """Copy a Keras optimizer's averages into a torch AveragedModel (``target.n_averaged`` set to
    the Keras iteration count) or an xlate.KerasX optimizer's ``state["average"]``."""
    import numpy as np
    import torch

    slots = ema_pairs_keras(keras_optimizer)
    if not slots:
        return 0
    params = dict(torch_model.named_parameters())
    ema_params = dict(target.module.named_parameters()) if hasattr(target, "n_averaged") else None
    copied = 0
    with torch.no_grad():
        for pair in pairs:
            if not all(k in slots for k in pair.keras):
                continue
            arrays = pair.to_torch(*(np.asarray(slots[k].numpy()) for k in pair.keras))
            for name, a in zip(pair.torch, arrays):
                value = torch.from_numpy(np.ascontiguousarray(a)).to(params[name].dtype)
                if ema_params is not None:
                    ema_params[name].copy_(value)
                else:
                    target.state[params[name]]["average"] = value
                copied += 1
    if ema_params is not None:
        from keras import ops

        target.n_averaged.fill_(int(ops.convert_to_numpy(keras_optimizer.iterations)))
    return copied
