"""Gradient clipping, both frameworks' formulas, for the emulations and the training loops.

torch (a loop calls these before ``optimizer.step()``):

- ``clip_grad_norm_(params, C)``: total = ||(||g_1||, ..., ||g_n||)||_2 (the norm of the per-tensor
  norms), coef = min(C / (total + 1e-6), 1), every g *= coef. The 1e-6 sits in the denominator.
- ``clip_grad_value_(params, V)``: g = clamp(g, -V, V).

Keras (``BaseOptimizer._clip_gradients``, inside ``apply``, after loss-scale unscaling and, with
gradient accumulation, on the averaged gradient of the window):

- ``clipnorm=C``: **per variable**: g * C / max(||g||, C) (``tf.clip_by_norm``).
- ``global_clipnorm=C``: scale = C * min(1 / ||G||, 1 / C) over all gradients, no epsilon; a
  non-finite norm makes the scale NaN.
- ``clipvalue=V``: clip(g, -V, V), the same as torch's clip_grad_value_.

``keras_clip`` is Keras's formula in torch (xlate.KerasX optimizers apply it in ``step()``);
``TorchClipping`` is a mixin giving xlate's Keras emulations torch's clip_grad_norm_ formula
(``torch_clip_grad_norm=C``). Both record what they did (``last_grad_norm``, ``last_clipped``)
so a training check can assert that clipping was active.
"""

from __future__ import annotations

TORCH_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


def keras_clip(grads: list, *, clipnorm=None, global_clipnorm=None, clipvalue=None):
    """Keras's ``_clip_gradients`` on torch tensors: (clipped grads, measured norm, clipped?).

    The measured norm is the global norm for global_clipnorm, the largest per-tensor norm for
    clipnorm, None otherwise; clipped says whether any value changed.
    """
    import torch

    if clipnorm is not None and clipnorm > 0:
        norms = [torch.sqrt(torch.sum(g * g)) for g in grads]
        out = [g * clipnorm / torch.maximum(n, torch.tensor(clipnorm, dtype=g.dtype)) for g, n in zip(grads, norms)]
        worst = max((float(n) for n in norms), default=0.0)
        return out, worst, worst > clipnorm
    if global_clipnorm is not None and global_clipnorm > 0:
        norm = torch.sqrt(torch.sum(torch.stack([torch.sum(g * g) for g in grads])))
        scale = global_clipnorm * torch.minimum(1.0 / norm, torch.tensor(1.0 / global_clipnorm))
        scale = scale + (norm - norm)  # Keras: a non-finite norm makes the scale NaN
        return [g * scale for g in grads], float(norm), float(norm) > global_clipnorm
    if clipvalue is not None and clipvalue > 0:
        clipped = any(bool((g.abs() > clipvalue).any()) for g in grads)
        return [torch.clamp(g, -clipvalue, clipvalue) for g in grads], None, clipped
    return grads, None, False


def torch_total_norm(grads: list) -> float:
    """The total 2-norm torch's clip_grad_norm_ measures (the norm of the per-tensor norms)."""
    import torch

    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


class TorchClipping:
    """Mixin for xlate's Keras emulations (``keras.optimizers.Optimizer`` subclasses):
    ``torch_clip_grad_norm=C`` clips the gradients the way ``torch.nn.utils.clip_grad_norm_(
    params, C)`` does before ``optimizer.step()``: coefficient min(C / (total + 1e-6), 1), total the
    norm of the per-variable norms. Keras's own clipnorm / global_clipnorm / clipvalue still work."""

    torch_clip_grad_norm = None

    def _set_torch_clipping(self, torch_clip_grad_norm):
        if torch_clip_grad_norm is not None and (self.clipnorm or self.global_clipnorm or self.clipvalue):
            raise ValueError("torch_clip_grad_norm cannot be combined with clipnorm, global_clipnorm or clipvalue")
        self.torch_clip_grad_norm = None if torch_clip_grad_norm is None else float(torch_clip_grad_norm)

    def _clip_gradients(self, grads):
        if not self.torch_clip_grad_norm:
            return super()._clip_gradients(grads)
        from keras import ops

        norms = [ops.sqrt(ops.sum(ops.square(g))) for g in grads if g is not None]
        total = ops.sqrt(ops.sum(ops.square(ops.stack(norms))))
        coef = ops.minimum(self.torch_clip_grad_norm / (total + TORCH_CLIP_EPS), 1.0)
        return [g if g is None else g * ops.cast(coef, g.dtype) for g in grads]
