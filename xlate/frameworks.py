"""Small helpers that tell the frameworks apart and move data between them.

Nothing here imports torch or Keras at module import time: an object can only be a torch
module if torch is already imported, and likewise for Keras.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from dataclasses import dataclass, field

import numpy as np


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_silenced():
    """Swallow what C++ code writes to file descriptor 2 inside the block (the TFLite converter's
    "fully_quantize: ..." and the interpreter's "Created TensorFlow Lite XNNPACK delegate" lines).
    Python exceptions still carry their messages."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (pytest, notebooks): nothing to do
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def is_torch_module(obj) -> bool:
    """A torch module that is not a Keras layer (under Keras' torch backend, layers are modules too)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module) and not is_keras_model(obj)


def is_keras_model(obj) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Layer)


def framework_of(obj) -> str:
    if is_keras_model(obj):
        return "keras"
    if is_torch_module(obj):
        return "torch"
    raise TypeError(f"expected a torch.nn.Module or a keras.Model, got {type(obj).__name__}")


def torch_to_numpy(t) -> np.ndarray:
    """A torch tensor as a NumPy array sharing its memory (on the CPU); bfloat16 as ml_dtypes'
    bfloat16, the NumPy type TensorFlow and JAX use (NumPy has none of its own)."""
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def numpy_dtype(name: str):
    """A dtype name as a NumPy dtype; "bfloat16" is ml_dtypes' (the one TensorFlow and JAX use)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def numpy_to_torch(a: np.ndarray):
    """``torch.from_numpy`` that also takes ml_dtypes' bfloat16 (sharing memory, like from_numpy)."""
    import torch

    if not a.flags.c_contiguous:  # (np.ascontiguousarray itself would turn a 0-d array into 1-d)
        a = np.ascontiguousarray(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


REDUCED_FLOATS = ("bfloat16", "float16")


def float_dtype(model) -> str:
    """The dtype every floating weight of a torch module or Keras model has, when it is a reduced
    one (bfloat16, float16); else (float32, float64, mixed, none) "float32"."""
    if is_keras_model(model):
        names = {str(v.dtype) for v in model.weights}
    elif is_torch_module(model):
        names = {str(p.dtype).removeprefix("torch.") for p in model.parameters()}
    else:
        return "float32"
    floats = {n for n in names if "float" in n}
    return floats.pop() if len(floats) == 1 and floats <= set(REDUCED_FLOATS) else "float32"


def to_numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch_to_numpy(x)
    if hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    keras = sys.modules.get("keras")
    if keras is not None:
        return np.asarray(keras.ops.convert_to_numpy(x))
    return np.asarray(x)


def accepted_kwargs(fn, kwargs: dict) -> dict:
    """The entries of ``kwargs`` that name a parameter of ``fn`` (e.g. ``cls.__init__``)."""
    names = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in names}


def keras_inputs(model, arrays):
    """Arrays given in ``model.inputs`` order, structured as the Keras model's call takes them: one
    array, a list, or for a functional model built on a dict of inputs (keras-hub backbones) that dict."""
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        import keras

        return keras.tree.pack_sequence_as(struct, list(arrays))
    return arrays[0] if len(arrays) == 1 else list(arrays)


def is_kv_cache(obj) -> bool:
    """A Hugging Face KV cache (DynamicCache, StaticCache...): inference-time state a decoder
    returns beside its outputs, not an output a converted model computes."""
    cls = type(obj)
    return cls.__module__.startswith("transformers.") and cls.__name__.endswith("Cache")


@contextlib.contextmanager
def without_kv_cache(module):
    """Run a Hugging Face model with ``config.use_cache`` off (restored afterwards): traced with
    it on, a decoder returns a DynamicCache, which no graph format can carry."""
    config = getattr(module, "config", None)
    if not getattr(config, "use_cache", False):
        yield False
        return
    config.use_cache = False
    try:
        yield True
    finally:
        config.use_cache = True


def flatten_outputs(out) -> list:
    """Flatten a model's output (tensor, tuple, list, dict, Hugging Face ModelOutput) into a list of
    leaves in a stable order: sequences in order, mappings in insertion order, None and KV caches
    dropped."""
    if out is None or is_kv_cache(out):
        return []
    if isinstance(out, dict) or (hasattr(out, "keys") and hasattr(out, "values") and hasattr(out, "to_tuple")):
        leaves = []
        for v in out.values():
            leaves += flatten_outputs(v)
        return leaves
    if isinstance(out, (list, tuple)):
        leaves = []
        for v in out:
            leaves += flatten_outputs(v)
        return leaves
    return [out]


@dataclass(frozen=True)
class TensorSpec:
    """Shape (None where a size is free), dtype and, for integer inputs, the range [low, high).
    ``example``: the shape of the example the model was converted from (the parity gate's default)."""

    shape: tuple
    dtype: str = "float32"
    low: int = 0
    high: int | None = None
    name: str = ""
    example: tuple | None = None

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.integer) or self.dtype == "bool"


@dataclass(frozen=True)
class IOSpec:
    """How a converted model is called compared to its source.

    ``inputs`` describe the *source* model's inputs. ``input_perms[i]`` is the permutation that
    turns source input i into the target's input i (None: passed as is); ``output_perms[i]``
    turns the target's output i back into the source's layout.
    """

    inputs: tuple[TensorSpec, ...]
    input_perms: tuple[tuple[int, ...] | None, ...] = ()
    output_perms: tuple[tuple[int, ...] | None, ...] = ()
    source: str = "torch"
    extras: dict = field(default_factory=dict)
