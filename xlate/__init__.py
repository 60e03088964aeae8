"""xlate: translate models and their training setup between PyTorch and Keras 3, with proof.

The public functions import torch and TensorFlow/Keras only when called, so importing xlate
(and running ``xlate --help``) stays fast.
"""

from __future__ import annotations

from ._version import __version__
from .errors import BadInputError, ParityError, UnsupportedOpError, XlateError

__all__ = [
    "BadInputError",
    "ParityError",
    "ParityReport",
    "UnsupportedOpError",
    "XlateError",
    "__version__",
    "check_parity",
    "check_training_parity",
    "keras_to_torch",
    "load_torch",
    "torch_to_keras",
    "translate_loss",
    "translate_optimizer",
    "translate_schedule",
    "translate_training",
]


def torch_to_keras(module, example_inputs, *, io_layout="source", via="auto", check=True, atol=1e-5, rtol=1e-4,
                   dynamic="auto", floor_factor=3.0):
    """Rebuild a torch ``nn.Module`` as a native, trainable Keras 3 model with ported weights.

    ``example_inputs``: a tensor or tuple of tensors the module is traced with. ``io_layout``:
    "source" (the Keras model takes and returns NCHW like the module) or "native" (NHWC).
    ``dynamic``: which input sizes stay free (``None`` in the Keras inputs): "auto" (every one the
    module accepts at other sizes: batch, sequence length, height and width...), "batch", "none",
    or ``{input name or index: {axis: (min, max)}}`` (exactly those, an error if one cannot be).
    The record (``model._xlate_record.dims``) says per input axis dynamic or static, and why.
    ``check=True`` raises ``ParityError`` unless every output matches within atol/rtol or, for a
    deep model, is within ``floor_factor`` x the module's own float32 rounding of its float64
    result (``floor_factor=None``: atol/rtol alone), at the example's shape and at smaller and
    larger sizes of every dynamic one.
    """
    from .convert import torch_to_keras as _impl

    return _impl(module, example_inputs, io_layout=io_layout, via=via, check=check, atol=atol, rtol=rtol,
                 dynamic=dynamic, floor_factor=floor_factor)


def keras_to_torch(model, *, example_inputs=None, io_layout="source", via="auto", check=True, atol=1e-5, rtol=1e-4,
                   floor_factor=3.0):
    """Rebuild a Keras 3 model as a torch ``nn.Module`` (generated source plus weights); the parity
    gate is the one of ``torch_to_keras``."""
    from .convert import keras_to_torch as _impl

    return _impl(model, example_inputs=example_inputs, io_layout=io_layout, via=via, check=check, atol=atol,
                 rtol=rtol, floor_factor=floor_factor)


def load_torch(path=None, **options):
    """Load a PyTorch model offline -> ``(module, example_inputs)``, the two things ``torch_to_keras`` takes.

    ``path``: a ``.pt2``, a TorchScript archive, a Hugging Face ``save_pretrained`` folder (the module
    then returns one output: ``output_key=``, default the head's main one; ``hf_class=``, ``seq_len=``),
    or a state_dict with ``model_class=``. ``model_class="module:factory"`` with ``model_args=`` (a dict,
    list or JSON text) and optionally ``weights=`` builds the model without a file (``"timm:resnet18"``
    too). ``input_shapes=``/``input_dtypes=`` give example inputs the file cannot. ``example_inputs``
    is None when nothing says what the model takes.
    """
    from .load import load_torch as _impl

    loaded = _impl(path, **options)
    return loaded.model, loaded.example_inputs


def check_parity(source, target, inputs=None, *, atol=1e-5, rtol=1e-4, device="cpu", per_layer=False, samples=4,
                 seed=0, floor_factor=3.0, **options):
    """Run a torch module and a Keras model on the same seeded inputs and compare every output.

    An output passes within atol + rtol * |expected|, or when the target is within
    ``floor_factor`` x the source's own float32 rounding of a float64 run of the source (run only
    for the samples outside atol/rtol; ``floor_factor=None``: atol/rtol alone).
    ``options``: ``training`` (compare in train mode; default: the torch module's mode) and
    ``dtype`` ("float32", "float16", "bfloat16"; tolerances scale with the dtype, and the float32
    run of the source is the rounding reference).
    """
    from .parity import check_parity as _impl

    return _impl(source, target, inputs, atol=atol, rtol=rtol, device=device, per_layer=per_layer, samples=samples,
                 seed=seed, floor_factor=floor_factor, **options)


def check_training_parity(*args, **kwargs):
    """Run k identical training steps in both frameworks and compare weights and predictions."""
    from .training.parity import check_training_parity as _impl

    return _impl(*args, **kwargs)


def translate_optimizer(optimizer, target_params_or_model, **kwargs):
    """Translate a torch.optim optimizer to Keras or back, with an exact emulation where formulas differ.

    torch -> Keras also takes the torch loop's ``clip_grad_norm`` / ``clip_grad_value`` / ``ema`` /
    ``grad_accum_steps`` (and ``source_model=net`` to pair parameters)."""
    from .training.optimizers import translate_optimizer as _impl

    return _impl(optimizer, target_params_or_model, **kwargs)


def translate_loss(loss, **kwargs):
    """Translate a torch loss module to a Keras loss or back."""
    from .training.losses import translate_loss as _impl

    return _impl(loss, **kwargs)


def translate_schedule(schedule_or_callback, *args, **kwargs):
    """Translate an LR scheduler / Keras schedule or callback to the other framework."""
    from .training.schedules import translate_schedule as _impl

    return _impl(schedule_or_callback, *args, **kwargs)


def translate_training(model, optimizer, loss=None, schedule=None, **kwargs):
    """Translate a whole training setup (optimizer, loss, schedule, clipping, EMA, accumulation, loss
    scaling) to the other framework; returns a ``TrainingSetup`` that check_training_parity accepts."""
    from .training.setup import translate_training as _impl

    return _impl(model, optimizer, loss, schedule, **kwargs)


def __getattr__(name):
    if name == "ParityReport":
        from .parity_report import ParityReport

        return ParityReport
    raise AttributeError(f"module 'xlate' has no attribute {name!r}")
