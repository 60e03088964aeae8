"""Build the training rows' samples as real objects: optimizers, losses, schedules, synthetic data
and a paired torch/Keras MLP. The generated tests and ``xlate check-train --demo`` use them, so
every sample in ``mappings/{optimizers,losses,schedules}.toml`` is a case that can fail.
"""

from __future__ import annotations

import re

import numpy as np

from ..table import Row, Sample


def class_and_defaults(name: str):
    """'keras.losses.BinaryCrossentropy(from_logits=True)' -> ('keras.losses.BinaryCrossentropy',
    {'from_logits': True}); descriptive names that are not a call give (None, {})."""
    m = re.fullmatch(r"([\w.]+)(?:\((.*)\))?", name.strip())
    if not m:
        return None, {}
    path, inner = m.groups()
    if inner and "=" in inner:
        try:
            return path, eval(f"dict({inner})", {})
        except (SyntaxError, NameError, TypeError, ValueError):
            return path, {}
    return path, {}


def _resolve(path: str):
    import importlib

    if path.startswith("xlate."):
        from .emulations import resolve

        return resolve(path)
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _torch_kwargs(kwargs: dict) -> dict:
    import torch

    out = {}
    for k, v in kwargs.items():
        if k in ("weight", "pos_weight") and v is not None:
            v = torch.tensor(v, dtype=torch.float32)
        elif k == "betas":
            v = tuple(v)
        elif k == "lr_lambda" and isinstance(v, str):
            v = eval(v, {})
        out[k] = v
    return out


def torch_optimizer(row: Row, sample: Sample, params):
    return _resolve(sample.torch_cls or row.torch)(params, **_torch_kwargs(sample.torch))


def keras_optimizer(row: Row, sample: Sample):
    return _resolve(sample.keras_cls or row.keras)(**sample.keras)


def torch_loss(row: Row, sample: Sample):
    """The sample's torch loss, called as loss(prediction, target): a loss over several inputs is
    wrapped in xlate's PackedInputs (inputs stacked on axis 1 of the prediction)."""
    from .loss_hooks_extra import PACKED

    path, _ = class_and_defaults(sample.torch_cls or row.torch)  # "(target=probabilities)" describes the data
    loss = _resolve(path)(**_torch_kwargs(sample.torch))
    if path in PACKED:
        from .torch_losses_extra import PackedInputs

        loss = PackedInputs(loss)
    return loss


def keras_loss(row: Row, sample: Sample):
    path, defaults = class_and_defaults(sample.keras_cls or row.keras)
    return _resolve(path)(**{**({} if sample.keras_cls else defaults), **sample.keras})


def torch_scheduler(row: Row, sample: Sample, optimizer):
    """A schedule sample: kwargs; ``schedulers = [[class, kwargs], ...]`` for composed schedulers;
    ``transformers = "get_..._schedule_with_warmup"`` for Hugging Face's schedule functions."""
    kwargs = _torch_kwargs(sample.torch)
    if "transformers" in kwargs:
        import transformers

        return getattr(transformers, kwargs.pop("transformers"))(optimizer, **kwargs)
    if "schedulers" in kwargs:
        kwargs["schedulers"] = [_resolve(f"torch.optim.lr_scheduler.{name}")(optimizer, **_torch_kwargs(kw))
                                for name, kw in kwargs["schedulers"]]
    cls = _resolve(class_and_defaults(sample.torch_cls or row.torch)[0])
    if cls.__name__ == "ChainedScheduler":
        return cls(kwargs.pop("schedulers"), optimizer=optimizer, **kwargs)
    return cls(optimizer, **kwargs)


def keras_schedule(row: Row, sample: Sample):
    kwargs = dict(sample.keras)
    if "schedule" in kwargs and isinstance(kwargs["schedule"], str):
        kwargs["schedule"] = eval(kwargs["schedule"], {})
    if "schedules" in kwargs:
        kwargs["schedules"] = [_resolve(name)(**kw) for name, kw in kwargs["schedules"]]
    return _resolve(sample.keras_cls or row.keras)(**kwargs)


def sample_stepping(row: Row, sample: Sample) -> tuple[str, bool]:
    """(how the torch scheduler of a schedule sample is stepped, whether the run's length is given):
    the sample's ``call`` ("batch", "epoch", "+horizon"), else the row's usual stepping."""
    stepping, _, horizon = (sample.call or "").partition("+")
    return stepping or ("batch" if row.id in ("one_cycle_lr", "cyclic_lr", "transformers_warmup") else "epoch"), \
        horizon == "horizon"


def loss_data(sample: Sample, seed: int = 0):
    """(prediction, target) NumPy arrays for a loss sample, by its ``call`` kinds."""
    rng = np.random.default_rng(seed)
    pred_kind, target_kind = sample.call.split(":")
    pred_shape, target_shape = (tuple(s) for s in sample.inputs)
    return _make(pred_kind, pred_shape, rng, sample), _make(target_kind, target_shape, rng, sample)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _make(kind, shape, rng, sample):
    x = rng.standard_normal(shape).astype(np.float32)
    if kind in ("logits", "real"):
        return x
    if kind == "log_probs":
        return np.log(_softmax(x)).astype(np.float32)
    if kind == "probs" and sample.call.endswith(":binary"):
        return (1 / (1 + np.exp(-x))).astype(np.float32)  # independent probabilities (BCE)
    if kind in ("probs", "probabilities"):
        return _softmax(x).astype(np.float32)  # a distribution over the last axis
    if kind == "binary":
        return (rng.random(shape) > 0.5).astype(np.float32)
    if kind == "indices":
        return rng.integers(0, sample.int_high, size=shape).astype(np.int64)
    if kind == "pm1":
        return np.where(rng.random(shape) > 0.5, 1.0, -1.0).astype(np.float32)
    if kind == "counts":
        return rng.poisson(2.0, size=shape).astype(np.float32)
    if kind == "positive":
        return (np.exp(x) * 0.5 + 0.05).astype(np.float32)
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "mean_var":  # (N, 2, ...): an input and a positive variance stacked on axis 1
        x[:, 1] = np.exp(x[:, 1]) * 0.5 + 0.05
        return x
    if kind == "ctc_labels":  # (N, S) labels in 1..C-1 padded at the end with 0 (the blank)
        labels = rng.integers(1, sample.int_high, size=shape)
        lengths = rng.integers(1, shape[1] + 1, size=shape[0])
        return np.where(np.arange(shape[1])[None, :] < lengths[:, None], labels, 0).astype(np.int64)
    raise ValueError(f"unknown sample data kind {kind!r}")


def paired_mlp(in_features: int, out_features: int, hidden: int = 16, seed: int = 0, activation: str = "tanh",
               bias: bool = True):
    """A torch MLP and the same Keras Dense model with the torch weights copied through the
    table's weight transforms (``xlate.training.pairing.copy_weights``). ``bias=False``: 2-D weights
    only (torch's Muon)."""
    import keras
    import torch

    from .pairing import copy_weights

    torch.manual_seed(seed)
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    tm = torch.nn.Sequential(torch.nn.Linear(in_features, hidden, bias=bias), act(),
                             torch.nn.Linear(hidden, out_features, bias=bias))
    keras.utils.set_random_seed(seed)
    km = keras.Sequential([keras.Input((in_features,)), keras.layers.Dense(hidden, activation=activation, use_bias=bias),
                           keras.layers.Dense(out_features, use_bias=bias)])
    copy_weights(tm, km)
    return tm, km


def sample_mlp(sample: Sample, in_features: int, out_features: int, seed: int = 0):
    """The paired MLP a training sample runs on: ``model = "mlp-nobias"`` drops the biases."""
    if sample.model not in ("", "mlp-nobias"):
        raise ValueError(f"unknown sample model {sample.model!r}")
    return paired_mlp(in_features, out_features, seed=seed, bias=sample.model != "mlp-nobias")
