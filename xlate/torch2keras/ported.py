"""Weights on their way from torch to Keras: computed one tensor at a time, when Keras needs them.

A converter names, for each Keras variable, the torch arrays it comes from and the table's named
transform (``Pending``); nothing is converted then. When the layer is built, the variable is
created from its converted value directly (``FromTorch``, set as the layer's initializer just for
that build), so Keras never draws random weights that the port would overwrite; the converted
copy is released as soon as TensorFlow holds the value. After the build the layer gets its own
initializers back (``restore``), so its config (and a clone trained from scratch) shows the
layer's usual glorot/zeros/ones, never the ported values. Variables of layers that take no
initializer per variable (MultiHeadAttention, recurrent cells, RMSNormalization's scale) are
created by Keras as usual and assigned in the port stage, one tensor at a time as well.

The torch arrays here are views of the module's own tensors (memory-mapped ones included), so
holding them costs nothing; each is copied once, into its Keras variable.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import XlateError

# Keras variable name -> the constructor argument (and attribute) that initializes it, per class.
# Only layers where each attribute initializes exactly that one variable.
_DENSE = {"kernel": "kernel_initializer", "bias": "bias_initializer"}
_NORM = {"gamma": "gamma_initializer", "beta": "beta_initializer"}
INITIALIZER_ATTRS = {
    "Dense": _DENSE,
    "Conv1D": _DENSE, "Conv2D": _DENSE, "Conv3D": _DENSE,
    "Conv1DTranspose": _DENSE, "Conv2DTranspose": _DENSE, "Conv3DTranspose": _DENSE,
    "DepthwiseConv1D": {"kernel": "depthwise_initializer", "bias": "bias_initializer"},
    "DepthwiseConv2D": {"kernel": "depthwise_initializer", "bias": "bias_initializer"},
    "Embedding": {"embeddings": "embeddings_initializer"},
    "BatchNormalization": {**_NORM, "moving_mean": "moving_mean_initializer",
                           "moving_variance": "moving_variance_initializer"},
    "LayerNormalization": _NORM,
    "GroupNormalization": _NORM,
    "PReLU": {"alpha": "alpha_initializer"},
}


class Pending:
    """The Keras arrays one named transform makes from some torch arrays, computed on first use;
    each is handed out once (``take``) and then forgotten, so no converted copy outlives its variable."""

    __slots__ = ("arrays", "left", "out", "params", "transform")

    def __init__(self, transform, arrays, params: dict | None = None):
        self.transform = transform
        self.arrays = tuple(arrays)
        self.params = params or {}
        self.out = None
        self.left = transform.keras_arity

    def piece(self, index: int) -> Piece:
        return Piece(self, index)

    def take(self, index: int) -> np.ndarray:
        if self.out is None:
            if self.left <= 0:
                raise XlateError("internal: a ported weight was taken twice")
            self.out = list(self.transform.to_keras_views(*self.arrays, **self.params))
            self.arrays = ()
        array, self.out[index] = self.out[index], None
        self.left -= 1
        if self.left == 0:
            self.out = None
        return array


class Piece:
    """One Keras variable's value: output ``index`` of a Pending transform."""

    __slots__ = ("index", "pending")

    def __init__(self, pending: Pending, index: int):
        self.pending = pending
        self.index = index

    def take(self) -> np.ndarray:
        return self.pending.take(self.index)


def value_of(value) -> np.ndarray:
    """A queued weight as an array: a Piece computed now (and released by its Pending), an array as
    is. It may be a view of the torch tensor (see ``for_variable``)."""
    return value.take() if isinstance(value, Piece) else np.asarray(value)


#: elements from which the backend's transpose beats NumPy's strided copy (below it, the cost of one
#: eager op dominates: a depthwise kernel is copied faster by NumPy)
BACKEND_TRANSPOSE_MIN = 1 << 16


def for_variable(array: np.ndarray, dtype: str):
    """``array`` as the value a Keras variable of ``dtype`` is created from or assigned.

    The backend copies an array into its own memory, so a view of the torch tensor goes as it is
    (never aliased: TensorFlow and JAX copy NumPy input). A large permuted view of a contiguous
    array (a Dense or conv kernel) is read by the backend in place (``_read_only_view``), then
    permuted there into the one new buffer the variable keeps; NumPy's strided copy is about three
    times slower than the backend's transpose. Another dtype is cast
    by Keras (NumPy has no bfloat16 of its own)."""
    import keras

    ops = keras.ops
    copies = keras.backend.backend() in ("tensorflow", "jax")  # Keras' torch backend may share NumPy memory
    large = array.size >= BACKEND_TRANSPOSE_MIN
    order = _contiguous_order(array) if copies and large and not array.flags.c_contiguous else None
    if order is not None:
        tensor = ops.transpose(_read_only_view(array.transpose(order)), tuple(int(i) for i in np.argsort(order)))
    elif not array.flags.c_contiguous:
        tensor = np.require(array, requirements="C")
    else:
        tensor = array if copies else array.copy()
    if keras.backend.standardize_dtype(tensor.dtype) != dtype:
        tensor = ops.cast(ops.convert_to_tensor(tensor), dtype)
    return tensor


#: the alignment TensorFlow's CPU kernels require of a tensor's memory (EIGEN_MAX_ALIGN_BYTES)
TF_ALIGNMENT = 64


def _read_only_view(array: np.ndarray):
    """A backend tensor that reads ``array``'s memory (the torch tensor's) without copying it, for
    the transpose to read from: TensorFlow takes it through DLPack; its ``convert_to_tensor``
    would copy the whole weight first (one more pass over every large kernel, into fresh pages).
    The view lives only as the transpose's input, whose result is a new buffer: no variable ever
    shares torch's memory. Anything DLPack refuses (a read-only memory map) is copied, and so is
    memory off TensorFlow's 64-byte alignment (a large torch tensor's block can start 16 bytes
    into its pages: TensorFlow's kernels abort the process on such a tensor, torchvision VGG)."""
    import keras

    if keras.backend.backend() == "tensorflow" and array.ctypes.data % TF_ALIGNMENT == 0:
        import tensorflow as tf

        try:
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except (BufferError, TypeError, ValueError, tf.errors.InvalidArgumentError):
            pass
    return keras.ops.convert_to_tensor(array)


def _contiguous_order(array: np.ndarray):
    """The axis order that makes ``array`` C-contiguous (it is a permuted view of a contiguous
    array), or None."""
    order = tuple(int(i) for i in np.argsort([-s for s in array.strides], kind="stable"))
    return order if array.transpose(order).flags.c_contiguous else None


class FromTorch:
    """A Keras initializer that returns one ported value (a Piece or an array) for one variable.

    Set on an unbuilt layer for its build only; ``restore`` puts the layer's own initializer back.
    It is a plain callable with Keras' initializer signature ``(shape, dtype)``: Keras accepts any
    callable there, and it is never serialized (it is gone before the model is returned)."""

    def __init__(self, value, where: str):
        self.value = value
        self.where = where
        self.used = False  # True once its variable was created from the value

    def __call__(self, shape, dtype=None):
        import keras

        if self.used:
            raise XlateError(f"internal: the initializer for {self.where} was used twice")
        array = value_of(self.value)
        self.value, self.used = None, True
        if tuple(shape) != tuple(array.shape):
            raise XlateError(f"weight {self.where}: shape {tuple(array.shape)} does not fit {tuple(shape)}")

        return for_variable(array, keras.backend.standardize_dtype(dtype or "float32"))


@contextlib.contextmanager
def unscoped_variable_names():
    """TensorFlow variables made inside are named by their Keras name alone ("kernel", "gamma"),
    not by the layer's name scope ("conv1/kernel"): their Keras names and paths, which saving,
    loading and training use, are the layer's as usual.

    TensorFlow's eager runtime caches one kernel per distinct op and attributes, and a variable's
    scoped name is an attribute of the op that makes it: each variable of a converted model missed
    that cache and built its kernel anew (about 1 ms per variable, a quarter of the Keras stage of
    a CNN with BatchNorm). Variables of one name and shape now share it. ``tf.variable_creator_scope``
    is TensorFlow's own hook for this; other backends are left alone."""
    import keras

    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    def creator(next_creator, **kwargs):
        name = kwargs.get("name")
        if isinstance(name, str) and name and not name.endswith("/"):
            kwargs["name"] = name.rsplit("/", 1)[-1] + "/"  # a trailing "/": an absolute scope, no prefix
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator), _shapeless_handles():
        yield


@contextlib.contextmanager
def _shapeless_handles():
    """Eager variable handles made inside carry no shape attribute (the ``VarHandleOp`` op's, which
    keys TensorFlow's eager kernel cache): every distinct weight shape missed that cache and built
    a kernel anew, 0.3 ms each, 10-15% of converting a CNN whose channel counts all differ (timm
    rexnet). The shape is still the variable's, and its handle's shape data (what ``tf.function``,
    SavedModel and XLA read) is still set from it; only the op's attribute is left unknown, which
    the kernel does not need (it stores whatever value is assigned). Only eager handles, and only
    while TensorFlow has the op wrapper where this expects it; otherwise nothing changes."""
    import tensorflow as tf
    from tensorflow.python.ops import gen_resource_variable_ops as gen

    original = getattr(gen, "var_handle_op", None)
    if original is None or not tf.executing_eagerly():
        yield
        return

    unknown = tf.TensorShape(None)  # unknown rank (None itself is refused by the op's fast path)

    def var_handle_op(*args, **kwargs):
        if "shape" in kwargs and tf.executing_eagerly():
            kwargs["shape"] = unknown
        return original(*args, **kwargs)

    gen.var_handle_op = var_handle_op
    try:
        yield
    finally:
        gen.var_handle_op = original


def initializer_attrs(layer) -> dict:
    """{Keras variable name: initializer attribute} for a layer class that has them, else {}."""
    import keras

    for cls in type(layer).__mro__:
        attrs = INITIALIZER_ATTRS.get(cls.__name__)
        if attrs is not None and getattr(keras.layers, cls.__name__, None) is cls:
            return attrs
    return {}


def prepare(layer, values: dict, where: str) -> dict:
    """Before ``layer`` is built: make each variable in ``values`` start from its ported value.
    Returns {variable name: (attribute, the layer's own initializer, the FromTorch set there)}."""
    if getattr(layer, "built", True):
        return {}
    replaced = {}
    for name, attr in initializer_attrs(layer).items():
        if name in values and hasattr(layer, attr):
            init = FromTorch(values[name], f"{where} -> {layer.name}/{name}")
            replaced[name] = (attr, getattr(layer, attr), init)
            setattr(layer, attr, init)
    return replaced


def restore(layer, replaced: dict) -> set:
    """Give the layer its own initializers back (its config shows glorot/zeros/ones again).
    Returns the names of the variables that were created from their ported values."""
    done = set()
    for name, (attr, original, init) in replaced.items():
        if attr is not None:  # None: our own layers (Constant), which take it as an argument only
            setattr(layer, attr, original)
        if init.used:
            done.add(name)
    return done
