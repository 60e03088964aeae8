"""Running one side of a parity check: a torch module on a device and in a dtype, a Keras model
under a device scope or rebuilt in another dtype, each put back exactly as it was afterwards.

Used by ``xlate.parity`` (the two sides), ``xlate.floor`` (the source again at a higher
precision) and ``xlate.diagnose`` (per-layer captures). TF32 is off on a GPU (semantics.md
section 10) while a runner is open.
"""

from __future__ import annotations

import sys

import numpy as np

from .dtype_stream import STREAM_ABOVE_BYTES, DtypeStream, floating_bytes
from .errors import one_line
from .frameworks import flatten_outputs, float_dtype, keras_inputs, numpy_to_torch, to_numpy
from .memory import release_free_memory


class TorchRunner:
    """Runs the torch module on ``device`` in ``dtype`` (None: as it is), then puts every parameter
    and buffer back exactly as it was (values, dtype, device; the same Parameter and buffer objects).

    A tensor the move replaces (another dtype or device) keeps its original storage untouched, so
    only a reference is kept; a tensor the move leaves in place (already that dtype and device) is
    cloned, since a train-mode run updates it in place (BatchNorm statistics, counters). So a
    float64 run costs one float64 copy of the weights, not a float32 clone besides; from
    ``STREAM_ABOVE_BYTES`` of weights only the running parts are copied (xlate.dtype_stream), and
    the whole module is moved only when that fails.
    """

    def __init__(self, module, device: str, training: bool, dtype=None):
        import torch

        self.torch = torch
        self.module = module
        self.device = device
        self.training = training
        self.dtype = dtype

    def _stays(self, t) -> bool:
        torch = self.torch
        want = self.dtype if self.dtype is not None and t.is_floating_point() else t.dtype
        return t.dtype == want and t.device == torch.device(self.device)

    def __enter__(self):
        self.slots = []  # (owning module, its _parameters or _buffers dict, key, tensor, saved data)
        for mod in self.module.modules():
            for table in (mod._parameters, mod._buffers):
                for key, t in table.items():
                    if t is not None:
                        # a forward pass under no_grad never writes a parameter: only buffers that
                        # stay in place are cloned (a train-mode run updates BatchNorm statistics)
                        stays = self._stays(t)
                        saved = t.detach().clone() if stays and table is mod._buffers else t.data
                        self.slots.append((table, key, t, saved))
        self.was_training = self.module.training
        self.module.train(self.training)
        self.module.to(self.device)
        self.stream = None
        if self.dtype is not None:
            weight_bytes = floating_bytes(self.module)
            if weight_bytes >= STREAM_ABOVE_BYTES:
                # no whole copy in that dtype; what the runs before left in the heap goes back first
                release_free_memory(weight_bytes)
                self.stream = DtypeStream(self.module, self.dtype, weight_bytes)
            else:
                self.module.to(self.dtype)
        self.tf32 = _disable_torch_tf32(self.torch) if str(self.device).startswith("cuda") else None
        return self

    def __call__(self, arrays):
        torch = self.torch
        try:
            with torch.no_grad():
                out = self.module(*torch_tensors(arrays, self.device, self.dtype))
        except Exception:
            if self.stream is None:
                raise
            self._unstream()  # code that reads another module's weight, in an op refusing mixed dtypes
            return self(arrays)
        if self.stream is not None and not self.stream.balanced:
            self._unstream()  # a part that never returned: run again with the whole module moved
            return self(arrays)
        # numpy has no bfloat16: compare reduced-precision outputs as float32
        return [to_numpy(o.float() if o.is_floating_point() and o.dtype != torch.float64 else o)
                for o in flatten_outputs(out) if isinstance(o, torch.Tensor)]

    def _unstream(self) -> None:
        self.stream.close()
        self.stream = None
        self.module.to(self.dtype)

    def __exit__(self, *exc):
        if self.stream is not None:
            self.stream.close()
        if self.tf32 is not None:
            _restore_torch_tf32(self.torch, self.tf32)
        for table, key, t, saved in self.slots:
            table[key] = t  # Module.to replaces buffer objects (and parameters under some torch flags)
            t.data = saved
        self.module.train(self.was_training)


def torch_tensors(arrays, device, dtype=None) -> list:
    """numpy arrays as torch tensors on ``device``; floating ones cast to ``dtype`` when given."""
    tensors = []
    for a in arrays:
        t = numpy_to_torch(a).to(device)
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors.append(t)
    return tensors


class KerasRunner:
    """Runs the Keras model under a device scope (None: Keras' default), with TensorFlow's TF32
    off on a GPU, then puts every weight back (``restore=False``: a throwaway clone, left as is)."""

    def __init__(self, model, training: bool, device: str | None = None, *, restore: bool = True):
        self.model = model
        self.training = training
        self.device = device
        self.restore = restore

    def __enter__(self):
        # a call never writes trainable variables; training=True updates BatchNorm's statistics
        # (eval mode writes nothing: no copy of a large model's weights)
        self.weights = ([(v, v.numpy()) for v in self.model.non_trainable_weights]
                        if self.restore and self.training else [])
        self.tf32 = _disable_tf_tf32() if str(self.device).startswith("gpu") else None
        return self

    def __call__(self, arrays):
        import keras

        x = keras_inputs(self.model, arrays)
        if self.device is None:
            out = self.model(x, training=self.training)
        else:
            with keras.device(self.device):
                out = self.model(x, training=self.training)
        return [float32_if_reduced(to_numpy(o)) for o in flatten_outputs(out)]

    def __exit__(self, *exc):
        _restore_tf_tf32(self.tf32)
        for v, w in self.weights:
            v.assign(w)


def float32_if_reduced(a: np.ndarray) -> np.ndarray:
    """float16 (and other sub-float32 floats) as float32; float32/float64 and integers as they are."""
    return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype.itemsize < 4 else a


def keras_in_dtype(model, dtype: str):
    """(model to run, its dtype, note): the Keras model re-instantiated with a ``dtype`` policy
    ("float16", "bfloat16", "float64") and the same weights (inputs keep their dtype: token ids stay
    integers), or the model itself in float32 when that is impossible (the note says why)."""
    if dtype == "float32":
        return model, "float32", ""
    if float_dtype(model) == dtype:  # built in that dtype already (a bfloat16 conversion)
        return model, dtype, ""
    import keras

    try:
        def with_dtype(layer):
            config = layer.get_config()
            if isinstance(layer, keras.layers.Layer):  # a bare op (keras.ops in a functional graph) has no dtype
                config["dtype"] = dtype
            if "float" in str(config.get("dtype_name", "")):  # xlate's Constant/Parameter: a float value follows
                config["dtype_name"] = dtype
            return layer.__class__.from_config(config)

        clone = keras.models.clone_model(model, clone_function=with_dtype)
        if len(clone.weights) != len(model.weights):
            raise ValueError("the clone has different weights")
        for new, old in zip(clone.weights, model.weights):
            new.assign(keras.ops.cast(old.value, new.dtype))
        stuck = [f"{v.path} ({v.dtype})" for v in clone.weights if "float" in str(v.dtype) and str(v.dtype) != dtype]
        if stuck and dtype == "float64":  # a reference must really be float64 (reduced dtypes may mix)
            raise ValueError(f"{len(stuck)} weight(s) are not {dtype}, first {stuck[0]}")
    except Exception as e:  # noqa: BLE001 - any reason: Keras stays float32, said by the caller
        reason = one_line(e, 160) or type(e).__name__
        return model, "float32", f"cannot re-instantiate it in {dtype}: {reason}"
    return clone, dtype, ""


def _disable_torch_tf32(torch):
    """TF32 off for CUDA matmul and cuDNN conv (semantics.md section 10); returns the old flags."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return old


def _restore_torch_tf32(torch, old) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _disable_tf_tf32():
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    old = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return old


def _restore_tf_tf32(old) -> None:
    tf = sys.modules.get("tensorflow")
    if tf is not None and old is not None:
        tf.config.experimental.enable_tensor_float_32_execution(old)
