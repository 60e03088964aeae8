"""Where xlate's exact emulations live, by the class they emulate and by their ``xlate.X`` name.

The emulations are split by family over several modules (one per family, each under ~500
lines); this index finds them without importing torch or Keras until a look-up needs the module.
"""

from __future__ import annotations

import importlib

_KERAS_OPTIMIZERS = ("keras_optimizers", "keras_optimizers_extra", "keras_factored_optimizers")
_TORCH_OPTIMIZERS = ("torch_optimizers", "torch_optimizers_extra", "torch_factored_optimizers")
_KERAS_LOSSES = ("keras_losses", "keras_losses_extra")
_TORCH_LOSSES = ("torch_losses", "torch_losses_extra")
_OTHERS = ("keras_schedules", "composed_schedules", "transformers_schedules", "torch_schedules")


def _module(name: str):
    return importlib.import_module(f"xlate.training.{name}")


def _merged(modules, attr: str) -> dict:
    out = {}
    for name in modules:
        out.update(getattr(_module(name), attr))
    return out


def keras_optimizer_for(torch_class: str):
    """xlate's Keras optimizer computing ``torch_class``'s formula ('torch.optim.Adam' -> TorchAdam)."""
    return _merged(_KERAS_OPTIMIZERS, "BY_TORCH_CLASS")[torch_class]


def torch_optimizer_for(keras_class: str):
    """xlate's torch optimizer computing ``keras_class``'s formula."""
    return _merged(_TORCH_OPTIMIZERS, "BY_KERAS_CLASS")[keras_class]


def keras_optimizer_classes() -> list:
    return list(_merged(_KERAS_OPTIMIZERS, "BY_TORCH_CLASS").values())


def keras_loss_for(torch_class: str):
    return _merged(_KERAS_LOSSES, "BY_TORCH_CLASS")[torch_class]


def torch_loss_for(keras_class: str):
    return _merged(_TORCH_LOSSES, "BY_KERAS_CLASS")[keras_class]


def resolve(name: str):
    """The class an ``xlate.ClassName`` table name stands for."""
    short = name.removeprefix("xlate.")
    for module in (*_KERAS_OPTIMIZERS, *_TORCH_OPTIMIZERS, *_OTHERS, *_KERAS_LOSSES, *_TORCH_LOSSES):
        cls = getattr(_module(module), short, None)
        if isinstance(cls, type):
            return cls
    raise KeyError(f"no xlate emulation class {name!r}")
