"""What the translate_* functions share to find an object's table row: the class name as the
table spells it, the row lookup, the ``emulate`` check, and a Keras optimizer's sub-optimizers
and current learning rate.

Owns these small lookups only; it must not import the pairing, the state port or any
translate_* module (they all import it), and imports torch/Keras only inside functions.
"""

from __future__ import annotations

from ..errors import BadInputError
from ..table import Row, table

# --- class names as the table spells them ---------------------------------------------------


def torch_class_name(obj) -> str:
    """'torch.nn.Linear', 'torch.optim.Adam', 'xlate.KerasAdam' for an object, as rows name it."""
    import torch

    cls = type(obj)
    if cls.__module__.startswith("xlate."):
        return f"xlate.{cls.__name__}"
    for namespace, prefix in ((torch.nn, "torch.nn"), (torch.optim, "torch.optim"),
                              (torch.optim.lr_scheduler, "torch.optim.lr_scheduler")):
        if getattr(namespace, cls.__name__, None) is cls:
            return f"{prefix}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def keras_class_name(obj) -> str:
    """'keras.layers.Dense', 'keras.optimizers.Adam', 'xlate.TorchAdam' for an object."""
    import keras

    cls = type(obj)
    if cls.__module__.startswith("xlate."):
        return f"xlate.{cls.__name__}"
    for namespace, prefix in ((keras.layers, "keras.layers"), (keras.optimizers, "keras.optimizers"),
                              (keras.optimizers.schedules, "keras.optimizers.schedules"),
                              (keras.losses, "keras.losses"), (keras.callbacks, "keras.callbacks")):
        if getattr(namespace, cls.__name__, None) is cls:
            return f"{prefix}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


# --- shared by translate_optimizer / translate_loss / translate_schedule ---------------------


EMULATE = ("auto", "always", "never")


def check_emulate(emulate: str) -> None:
    """The ``emulate`` argument of translate_loss / translate_schedule."""
    if emulate not in EMULATE:
        raise BadInputError(f"emulate must be auto, always or never, got {emulate!r}")


def row_named(name: str, index: dict, families: tuple[str, ...] | None, what: str, hint: str) -> Row:
    """The row ``index`` (``table().by_torch`` / ``by_keras``) holds for class ``name``, of one of
    ``families`` (None: any family); else BadInputError "no {what} row for {name}" with ``hint``."""
    row = index.get(name)
    if row is None or (families is not None and row.family not in families):
        raise BadInputError(f"no {what} row for {name}", hint=hint)
    return row


def optimizer_row(optimizer) -> tuple[Row, str]:
    """(row, formula side) of an optimizer: side 'torch' for torch.optim.X and xlate.TorchX,
    'keras' for keras.optimizers.X and xlate.KerasX."""
    fw = "torch" if is_torch_optimizer(optimizer) else "keras"
    name = torch_class_name(optimizer) if fw == "torch" else keras_class_name(optimizer)
    index = table().by_torch if fw == "torch" else table().by_keras
    row = row_named(name, index, ("optimizer",), "optimizer",
                    "`xlate table --family optimizer` lists the optimizers xlate translates")
    emulation = name.startswith("xlate.")
    side = ("keras" if emulation else "torch") if fw == "torch" else ("torch" if emulation else "keras")
    return row, side


def is_torch_optimizer(obj) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.optim.Optimizer)


def sub_optimizers(optimizer) -> list:
    """The optimizers inside a Keras MultiOptimizer, else ``[optimizer]``."""
    return list(getattr(optimizer, "optimizers", None) or [optimizer])


def keras_learning_rate(optimizer) -> float:
    """A Keras optimizer's current learning rate (a schedule's value at its step) as a float."""
    import keras

    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
