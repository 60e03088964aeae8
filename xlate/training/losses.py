"""translate_loss: torch.nn losses <-> keras.losses, driven by the loss rows.

The row's ``args`` carry the argument names and defaults; its hook (``HOOKS``) says when the
target's native loss computes the same number for these arguments (for instance torch's
CrossEntropyLoss without weight or label smoothing is SparseCategoricalCrossentropy(
from_logits=True)). Otherwise the result is xlate's exact emulation of the source's formula:
a Keras ``xlate>TorchX`` loss or a torch ``KerasX`` module. ``translation_of(loss)`` says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BadInputError, UnsupportedOpError, XlateError
from ..frameworks import accepted_kwargs
from ..table import Row, table
from . import loss_hooks_extra
from .lookup import check_emulate, keras_class_name, row_named, torch_class_name
from .record import Translation, attach_translation

_TORCH_TO_KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": None}
_KERAS_TO_TORCH_REDUCTION = {"sum_over_batch_size": "mean", "mean": "mean", "mean_with_sample_weight": "mean",
                             "sum": "sum", None: "none", "none": "none"}


@dataclass(frozen=True)
class LossHook:
    """torch->Keras: ``from_torch(args, class_axis)`` returns (native Keras class name, kwargs) when
    the native loss is exact, else (None, reason). Keras->torch likewise with ``from_keras``."""

    from_torch: Callable | None
    from_keras: Callable | None


def _torch_args(loss) -> dict:
    """The constructor arguments of a torch loss module, as plain Python values."""
    args = {"reduction": getattr(loss, "reduction", "mean")}
    for key in ("weight", "pos_weight"):
        value = getattr(loss, key, None)
        args[key] = None if value is None else [float(v) for v in value.detach().reshape(-1)]
    for key in ("ignore_index", "label_smoothing", "beta", "delta", "log_target", "margin", "log_input", "full", "eps",
                "p", "swap", "blank", "zero_infinity"):
        if hasattr(loss, key):
            args[key] = getattr(loss, key)
    return args


def _mean_only(native: str, **extra):
    def hook(args, class_axis):
        if args["reduction"] != "mean":
            return None, f"torch reduction {args['reduction']!r} sums elements, Keras's sums per-sample means"
        return native, extra
    return hook


def _cross_entropy_t2k(args, class_axis):
    if args["weight"] is not None:
        return None, "torch's weighted mean divides by sum(w[y]); Keras's class weights divide by N"
    if args["label_smoothing"]:
        return None, "SparseCategoricalCrossentropy has no label smoothing"
    if class_axis not in (-1, None):
        return None, "Keras's SparseCategoricalCrossentropy takes classes on the last axis only"
    return "SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": args["ignore_index"],
                                             "reduction": _TORCH_TO_KERAS_REDUCTION[args["reduction"]]}


def _cross_entropy_probs_t2k(args, class_axis):
    if args["weight"] is not None:
        return None, "class weights have no CategoricalCrossentropy argument"
    if args["reduction"] == "none" or class_axis not in (-1, None):
        return None, "per-element values / a class axis other than the last"
    return "CategoricalCrossentropy", {"from_logits": True, "label_smoothing": args["label_smoothing"],
                                       "reduction": _TORCH_TO_KERAS_REDUCTION[args["reduction"]]}


def _bce_with_logits_t2k(args, class_axis):
    if args["pos_weight"] is not None or args["weight"] is not None:
        return None, "pos_weight / weight have no Keras BinaryCrossentropy argument"
    return _mean_only("BinaryCrossentropy", from_logits=True)(args, class_axis)


def _smooth_l1_t2k(args, class_axis):
    if args["beta"] != 1.0:
        return None, f"SmoothL1(beta={args['beta']}) = Huber(delta=beta)/beta: native Huber only for beta=1"
    return _mean_only("Huber", delta=1.0)(args, class_axis)


def _never(reason):
    return lambda args, class_axis: (None, reason)


# Keras -> torch: (native torch class name, kwargs) or (None, reason)
def _scce_k2t(config, class_axis):
    if not config.get("from_logits"):
        return None, "from_logits=False: Keras clips and renormalises the probabilities"
    if config.get("axis", -1) != -1 or class_axis not in (1, None):
        return None, "torch's CrossEntropyLoss takes classes on dim 1"
    ignore = config.get("ignore_class")
    return "CrossEntropyLoss", {"ignore_index": -100 if ignore is None else int(ignore),
                                "reduction": _KERAS_TO_TORCH_REDUCTION[config.get("reduction")]}


def _cce_k2t(config, class_axis):
    if not config.get("from_logits"):
        return None, "from_logits=False: Keras renormalises and clips the probabilities"
    if config.get("axis", -1) != -1 or class_axis not in (1, None):
        return None, "torch's CrossEntropyLoss takes classes on dim 1"
    if config.get("reduction") in (None, "none"):
        return None, "per-sample values"
    return "CrossEntropyLoss", {"label_smoothing": float(config.get("label_smoothing", 0.0)),
                                "reduction": _KERAS_TO_TORCH_REDUCTION[config.get("reduction")]}


def _bce_k2t(config, class_axis):
    if not config.get("from_logits"):
        return None, "Keras clips probabilities to [1e-7, 1-1e-7], torch clamps log(p) at -100"
    if config.get("label_smoothing"):
        return None, "Keras's label smoothing y(1-e) + 0.5e has no torch argument"
    if config.get("reduction") not in ("sum_over_batch_size", "mean"):
        return None, "Keras's 'sum' adds per-sample means"
    return "BCEWithLogitsLoss", {"reduction": "mean"}


def _mean_k2t(native, **extra):
    def hook(config, class_axis):
        if config.get("reduction") not in ("sum_over_batch_size", "mean"):
            return None, "Keras's 'sum'/'none' work on per-sample means over the last axis"
        return native, {**extra, **{k: config[k] for k in ("delta",) if k in config}, "reduction": "mean"}
    return hook


HOOKS: dict[str, LossHook] = {
    "cross_entropy": LossHook(_cross_entropy_t2k, _scce_k2t),
    "cross_entropy_probabilities": LossHook(_cross_entropy_probs_t2k, _cce_k2t),
    "nll": LossHook(_never("NLLLoss reads x[y] directly; SCCE(from_logits=True) renormalises"), None),
    "bce": LossHook(_never("torch clamps log(p) at -100, Keras clips p to [1e-7, 1-1e-7]"), _bce_k2t),
    "bce_with_logits": LossHook(_bce_with_logits_t2k, _bce_k2t),
    "mse": LossHook(_mean_only("MeanSquaredError"), _mean_k2t("MSELoss")),
    "l1": LossHook(_mean_only("MeanAbsoluteError"), _mean_k2t("L1Loss")),
    "huber": LossHook(lambda a, c: _mean_only("Huber", delta=a["delta"])(a, c), _mean_k2t("HuberLoss")),
    "smooth_l1": LossHook(_smooth_l1_t2k, None),
    "kl_div": LossHook(_never("torch takes log-probability inputs, Keras probabilities (both clipped)"),
                       _never("Keras takes probabilities and clips both to [1e-7, 1]; torch takes log-probabilities")),
    "cosine_similarity_loss": LossHook(None, _never("torch has no cosine-similarity loss on (y_true, y_pred)")),
    **{hook: LossHook(*fns) for hook, fns in loss_hooks_extra.HOOKS.items()},
}

# Emulation constructor arguments: the emulation keeps torch's names, plus torch_reduction.
_TORCH_EMULATION_ARGS = {
    "cross_entropy": ("weight", "ignore_index", "label_smoothing"),
    "cross_entropy_probabilities": ("weight", "label_smoothing"),
    "nll": ("weight", "ignore_index"),
    "bce": ("weight",),
    "bce_with_logits": ("pos_weight", "weight"),
    "mse": (), "l1": (), "huber": ("delta",), "smooth_l1": ("beta",), "kl_div": ("log_target",),
    **loss_hooks_extra.EMULATION_ARGS,
}


def _row_for(name: str, index: dict) -> Row:
    return row_named(name, index, ("loss",), "loss", "`xlate table --family loss` lists the losses xlate translates")


def _torch_to_keras(loss, *, target, class_axis, emulate):
    import keras

    from .emulations import keras_loss_for

    if type(loss).__name__ == "PackedInputs":  # the torch side's stacking of a multi-input loss
        loss = loss.loss
    name = torch_class_name(loss)
    row = _row_for(name, table().by_torch)
    if name.startswith("xlate."):  # an xlate.KerasX module: back to the native Keras loss it emulates
        return _emulation_back_to_keras(loss, row)
    if "torch2keras" not in row.directions:
        reasons = "; ".join(lim.text for lim in row.limitations if lim.direction in ("torch2keras", "both"))
        raise UnsupportedOpError([(name, "loss")], direction="torch2keras", hint=reasons or None)
    if row.id == "cross_entropy" and target == "probabilities":
        row = table().row("cross_entropy_probabilities")
    args = _torch_args(loss)
    native, detail = HOOKS[row.hook].from_torch(args, class_axis)
    if emulate == "never" and native is None:
        raise XlateError(f"no native Keras loss computes this {name}: {detail}",
                         hint="use emulate='auto' for xlate's exact emulation")
    if native is not None and emulate != "always":
        result = getattr(keras.losses, native)(**detail)
        translation = Translation(row.id, "torch2keras", name, f"keras.losses.{native}", False)
    else:
        cls = keras_loss_for("torch.nn.CrossEntropyLoss" if row.id.startswith("cross_entropy") else row.torch)
        kwargs = {k: args[k] for k in _TORCH_EMULATION_ARGS[row.id] if k in args}
        if row.id.startswith("cross_entropy"):
            kwargs.update(target=target, class_axis=-1 if class_axis is None else class_axis)
        result = cls(**kwargs, torch_reduction=args["reduction"])
        notes = [f"exact emulation xlate.{cls.__name__}: {detail or 'forced by emulate'}"]
        if row.torch in loss_hooks_extra.PACKED:
            notes.append("y_pred holds the torch loss's inputs stacked on axis 1")
        translation = Translation(row.id, "torch2keras", name, f"xlate.{cls.__name__}", True, notes=notes)
    return attach_translation(result, translation)


def _emulation_back_to_keras(module, row: Row):
    import inspect

    import keras

    name = row.keras.rsplit(".", 1)[-1]
    cls = getattr(keras.losses, name)
    kwargs = {k: getattr(module, k) for k in inspect.signature(cls.__init__).parameters
              if k not in ("self", "name", "dtype") and hasattr(module, k)}
    result = cls(**kwargs)
    translation = Translation(row.id, "torch2keras", f"xlate.{type(module).__name__}", f"keras.losses.{name}", False)
    return attach_translation(result, translation)


def _keras_config(loss) -> tuple[str, dict]:
    """(class name as rows spell it, config) for a Keras loss object, function or name."""
    import keras

    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        config = loss.get_config()
        if hasattr(loss, "fn"):  # LossFunctionWrapper: the arguments live in _fn_kwargs
            config = {**getattr(loss, "_fn_kwargs", {}), **config}
        return keras_class_name(loss), config
    if callable(loss):
        return f"keras.losses.{loss.__name__}", {"reduction": "sum_over_batch_size"}
    raise BadInputError(f"expected a Keras loss, loss function or name, got {type(loss).__name__}")


def _keras_to_torch(loss, *, class_axis, emulate):
    import torch

    from .emulations import torch_loss_for

    name, config = _keras_config(loss)
    row = _row_for(name, table().by_keras)
    if name.startswith("xlate."):  # an xlate.TorchX Keras loss: back to the torch loss it emulates
        return _emulation_back_to_torch(loss, row)
    if row.id == "bce" and config.get("from_logits"):
        row = table().row("bce_with_logits")
    if "keras2torch" not in row.directions or HOOKS[row.hook].from_keras is None:
        raise UnsupportedOpError([(name, "loss")], direction="keras2torch")
    native, detail = HOOKS[row.hook].from_keras(config, class_axis)
    if emulate == "never" and native is None:
        raise XlateError(f"no native torch loss computes this {name}: {detail}",
                         hint="use emulate='auto' for xlate's exact emulation")
    if native is not None and emulate != "always":
        result = getattr(torch.nn, native)(**detail)
        translation = Translation(row.id, "keras2torch", name, f"torch.nn.{native}", False)
    else:
        keras_name = "keras.losses.BinaryCrossentropy" if row.id == "bce_with_logits" else row.keras
        cls = torch_loss_for(keras_name)
        result = cls(**accepted_kwargs(cls.__init__, config if class_axis is None else {**config, "axis": class_axis}))
        translation = Translation(row.id, "keras2torch", name, f"xlate.{cls.__name__}", True,
                                  notes=[f"exact emulation xlate.{cls.__name__}: {detail or 'forced by emulate'}"])
    return attach_translation(result, translation)


def _emulation_back_to_torch(loss, row: Row):
    import torch

    cls = getattr(torch.nn, loss.torch_class.rsplit(".", 1)[-1])
    config = loss.get_config()
    kwargs = {k: v for k, v in config.items() if k not in ("name", "dtype", "reduction", "torch_reduction")}
    kwargs["reduction"] = config["torch_reduction"]
    for key in ("weight", "pos_weight"):
        kwargs[key] = None if config.get(key) is None else torch.tensor(config[key])
    if config.get("class_axis", -1) != -1 or not config.get("time_major", True):
        raise XlateError(f"{type(loss).__name__} with its class / time axis moved has no {cls.__name__} counterpart")
    result = cls(**accepted_kwargs(cls.__init__, kwargs))
    target = f"torch.nn.{cls.__name__}"
    if loss.torch_class in loss_hooks_extra.PACKED:
        from .torch_losses_extra import PackedInputs

        result, target = PackedInputs(result), f"xlate.PackedInputs(torch.nn.{cls.__name__})"
    translation = Translation(row.id, "keras2torch", f"xlate.{type(loss).__name__}", target, False)
    return attach_translation(result, translation)


def translate_loss(loss, *, target="indices", class_axis=None, emulate="auto"):
    """Translate a torch loss module to a Keras loss, or a Keras loss (object, function or name)
    to a torch loss module.

    ``target``: for torch's CrossEntropyLoss, whether the labels are class "indices" or class
    "probabilities" (the module cannot tell). ``class_axis``: where the classes are in the
    predictions the translated loss receives, when not the target framework's own convention
    (Keras: last axis; torch: dim 1). ``emulate``: "auto" (native where exact, else xlate's
    emulation), "always", or "never" (raise where no native loss is exact).
    ``translation_of(result)`` records the row and whether the result is an emulation.
    """
    check_emulate(emulate)
    if target not in ("indices", "probabilities"):
        raise BadInputError(f"target must be 'indices' or 'probabilities', got {target!r}")
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(loss, torch.nn.Module):
        return _torch_to_keras(loss, target=target, class_axis=class_axis, emulate=emulate)
    return _keras_to_torch(loss, class_axis=class_axis, emulate=emulate)
