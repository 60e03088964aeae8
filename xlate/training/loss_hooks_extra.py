"""translate_loss hooks for the losses of current practice (focal, hinge family, Poisson, Dice,
Tversky, CTC, the margin / ranking / Gaussian losses): when the other side's native loss computes
the same number, else (None, why not) and xlate's exact emulation is used.

A hook from torch gets the torch module's arguments (``losses._torch_args``) and the class axis;
a hook from Keras the Keras loss's config. ``EMULATION_ARGS``: the torch arguments xlate's Keras
emulation takes, by row.
"""

from __future__ import annotations

_TORCH_TO_KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": None}


def _never(reason):
    return lambda args, class_axis: (None, reason)


def _poisson_t2k(args, class_axis):
    if args.get("log_input", True):
        return None, "log_input=True takes log-rates: Keras's Poisson takes rates (y_pred - y log(y_pred + 1e-7))"
    if args.get("full") or args.get("eps") != 1e-7 or args["reduction"] != "mean":
        return None, "Keras's Poisson is log_input=False, full=False, eps=1e-7 and the mean"
    return "Poisson", {}


def _poisson_k2t(config, class_axis):
    if config.get("reduction") not in ("sum_over_batch_size", "mean"):
        return None, "Keras's 'sum'/'none' work on per-sample means over the last axis"
    return "PoissonNLLLoss", {"log_input": False, "full": False, "eps": 1e-7, "reduction": "mean"}


def _multilabel_t2k(args, class_axis):
    if args["weight"] is not None:
        return None, "class weights have no BinaryCrossentropy argument"
    if class_axis not in (-1, None):
        return None, "Keras averages over the last axis"
    return "BinaryCrossentropy", {"from_logits": True, "reduction": _TORCH_TO_KERAS_REDUCTION[args["reduction"]]}


def _no_keras(what):
    return _never(f"Keras has no {what}: xlate's exact emulation")


def _no_torch(what):
    return _never(f"torch has no {what}: xlate's exact emulation")


# row hook -> (from_torch, from_keras)
HOOKS = {
    "poisson": (_poisson_t2k, _poisson_k2t),
    "gaussian_nll": (_no_keras("Gaussian negative log-likelihood loss"), None),
    "margin_ranking": (_no_keras("margin ranking loss"), None),
    "triplet_margin": (_no_keras("triplet margin loss"), None),
    "multi_margin": (_no_keras("multi-class margin loss (CategoricalHinge takes only the largest other class)"), None),
    "multilabel_soft_margin": (_multilabel_t2k, None),
    "soft_margin": (_no_keras("soft margin loss"), None),
    "hinge_embedding": (_no_keras("hinge embedding loss"), None),
    "ctc": (_never("Keras's CTC takes batch-major logits and does not divide by the target lengths"),
            _never("torch's CTCLoss takes time-major log-probabilities and its 'mean' divides by target lengths")),
    "binary_focal": (None, _no_torch("focal loss module")),
    "categorical_focal": (None, _no_torch("focal loss module")),
    "hinge": (None, _no_torch("binary hinge loss (HingeEmbeddingLoss is a different formula)")),
    "squared_hinge": (None, _no_torch("squared hinge loss")),
    "categorical_hinge": (None, _no_torch("categorical hinge loss (MultiMarginLoss sums over every other class)")),
    "log_cosh": (None, _no_torch("log-cosh loss")),
    "dice": (None, _no_torch("Dice loss")),
    "tversky": (None, _no_torch("Tversky loss")),
}

EMULATION_ARGS = {
    "poisson": ("log_input", "full", "eps"), "gaussian_nll": ("full", "eps"), "margin_ranking": ("margin",),
    "triplet_margin": ("margin", "p", "eps", "swap"), "multi_margin": ("p", "margin", "weight"),
    "multilabel_soft_margin": ("weight",), "soft_margin": (), "hinge_embedding": ("margin",),
    "ctc": ("blank", "zero_infinity"),
}

#: torch losses that take more than (input, target): their Keras emulation stacks the inputs on axis 1
#: of y_pred (CTCLoss: lengths from the padded targets); torch calls them through PackedInputs
PACKED = ("torch.nn.MarginRankingLoss", "torch.nn.TripletMarginLoss", "torch.nn.GaussianNLLLoss", "torch.nn.CTCLoss")
