"""Two training recipes of current practice, built in either framework, for ``xlate check-train
--recipe`` and the tests: each is the source side of a training check, translated by
``translate_training`` and replayed by ``check_training_parity`` with clipping required active.

- ``hf`` (the Hugging Face Trainer's): AdamW with a no-decay group for biases and norm weights
  (Keras: ``exclude_from_weight_decay``), linear warm-up then cosine decay
  (``transformers.get_cosine_schedule_with_warmup`` / Keras ``CosineDecay(warmup_target=...)``),
  gradient clipping at global norm 1.0 (``clip_grad_norm_`` / ``global_clipnorm``) and label
  smoothing 0.1.
- ``timm`` (timm's train.py): SGD with Nesterov momentum and weight decay, cosine with warm restarts
  (``CosineAnnealingWarmRestarts`` per epoch / Keras ``CosineDecayRestarts``), an EMA of the weights
  (``AveragedModel`` + ``get_ema_multi_avg_fn`` / ``use_ema``), gradient accumulation over 2
  batches, clipping by value and label smoothing 0.1.

The built-in models are a small MLP with a LayerNorm (the weights copied through the table's
transforms); a given torch / Keras pair is used instead when passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInputError

RECIPES = ("hf", "timm")
IN_FEATURES, CLASSES, BATCH = 8, 5, 8


@dataclass
class Recipe:
    """A recipe's source side: ``run()`` translates and replays it (check_training_parity)."""

    name: str
    direction: str
    source: object
    target: object
    optimizer: object
    loss: object
    schedule: object
    batches: list
    settings: dict = field(default_factory=dict)  # check_training_parity keywords (the torch loop's settings)

    def run(self, atol: float = 1e-4):
        from .parity import check_training_parity

        return check_training_parity(self.source, self.target, self.optimizer, self.loss, self.batches,
                                     schedule=self.schedule, atol=atol, require_clipping=True, **self.settings)


def models(seed: int = 0):
    """The built-in pair: Linear-LayerNorm-GELU-Linear in torch and Keras, equal weights."""
    import keras
    import torch

    from .pairing import copy_weights

    torch.manual_seed(seed)
    tm = torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, 32), torch.nn.LayerNorm(32), torch.nn.GELU(),
                             torch.nn.Linear(32, CLASSES))
    keras.utils.set_random_seed(seed)
    km = keras.Sequential([keras.Input((IN_FEATURES,)), keras.layers.Dense(32),
                           keras.layers.LayerNormalization(epsilon=1e-5), keras.layers.Activation("gelu"),
                           keras.layers.Dense(CLASSES)])
    copy_weights(tm, km)
    return tm, km


def _data(steps: int, seed: int, one_hot: bool, x_shape=(BATCH, IN_FEATURES), classes=CLASSES):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        x = (rng.standard_normal(x_shape) * 3.0).astype(np.float32)
        y = rng.integers(0, classes, size=x_shape[0])
        out.append((x, np.eye(classes, dtype=np.float32)[y] if one_hot else y.astype(np.int64)))
    return out


def _hf(direction, tm, km, steps, batches):
    import keras
    import torch

    warmup, lr = 3, 3e-3
    if direction == "torch2keras":
        import transformers

        decay = [p for p in tm.parameters() if p.ndim > 1]
        no_decay = [p for p in tm.parameters() if p.ndim <= 1]  # biases and norm weights (the Trainer's rule)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=lr)
        schedule = transformers.get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=steps)
        return Recipe("hf", direction, tm, km, opt, torch.nn.CrossEntropyLoss(label_smoothing=0.1), schedule, batches,
                      {"clip_grad_norm": 1.0, "stepping": "batch"})
    sched = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps - warmup, warmup_target=lr,
                                                   warmup_steps=warmup)
    opt = keras.optimizers.AdamW(sched, weight_decay=0.01, global_clipnorm=1.0)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    return Recipe("hf", direction, km, tm, opt, loss, None, batches)


def _timm(direction, tm, km, steps, batches, spe):
    import keras
    import torch

    if direction == "torch2keras":
        opt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=2, eta_min=1e-3)
        ema = torch.optim.swa_utils.AveragedModel(tm, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9))
        return Recipe("timm", direction, tm, km, opt, torch.nn.CrossEntropyLoss(label_smoothing=0.1), schedule,
                      batches, {"clip_grad_value": 0.05, "ema": ema, "grad_accum_steps": 2, "steps_per_epoch": spe,
                                "stepping": "epoch"})
    sched = keras.optimizers.schedules.CosineDecayRestarts(0.05, first_decay_steps=2, t_mul=2.0, alpha=0.02)
    opt = keras.optimizers.SGD(sched, momentum=0.9, nesterov=True, weight_decay=1e-4, clipvalue=0.05, use_ema=True,
                               ema_momentum=0.9, gradient_accumulation_steps=2)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    return Recipe("timm", direction, km, tm, opt, loss, None, batches, {"steps_per_epoch": spe})


def build_recipe(name: str, direction: str, *, steps: int = 12, seed: int = 0, torch_model=None, keras_model=None,
                 batches=None) -> Recipe:
    """The recipe ``name`` ("hf" or "timm") with its source in the ``direction``'s source framework.
    ``torch_model`` / ``keras_model``: a pair with equal weights and (N, classes) logits instead of
    the built-in one (``batches``: their (x, class index) batches, the labels one-hot encoded for a
    Keras source)."""
    if name not in RECIPES:
        raise BadInputError(f"unknown recipe {name!r}: choose {' or '.join(RECIPES)}")
    if direction not in ("torch2keras", "keras2torch"):
        raise BadInputError(f"direction must be torch2keras or keras2torch, got {direction!r}")
    if (torch_model is None) != (keras_model is None):
        raise BadInputError("pass both models of the pair, or neither")
    if torch_model is None:
        torch_model, keras_model = models(seed)
    if batches is None:
        batches = _data(steps, seed, one_hot=direction == "keras2torch")
    elif direction == "keras2torch":
        classes = int(max(int(np.max(y)) for _, y in batches)) + 1
        batches = [(x, np.eye(classes, dtype=np.float32)[y]) if y.ndim == 1 else (x, y) for x, y in batches]
    if name == "hf":
        return _hf(direction, torch_model, keras_model, len(batches), batches)
    return _timm(direction, torch_model, keras_model, len(batches), batches, spe=4)
