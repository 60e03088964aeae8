"""``.tflite`` flatbuffers, run by the TFLite interpreter (inference only; resized for other shapes).

A quantized model with integer inputs/outputs (int8 with a scale and zero point) is fed and read
in float: inputs are quantized and outputs dequantized with the tensors' own parameters, so it
compares with the float model it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError, one_line
from ..frameworks import native_stderr_silenced
from .keras_file import import_keras


def tflite_as_keras(path):
    """An inference-only Keras model that runs a ``.tflite`` file with the TFLite interpreter."""
    keras = import_keras()
    path = Path(path)
    interpreter = tflite_interpreter(path)
    in_details = interpreter.get_input_details()
    out_details = interpreter.get_output_details()

    class TFLiteModelLayer(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(trainable=False, **kwargs)

        def compute_output_spec(self, inputs):
            batch = (inputs[0] if isinstance(inputs, (list, tuple)) else inputs).shape[0]
            return [keras.KerasTensor((batch, *_signature(o)[1:]), dtype=float_dtype(o))
                    for o in out_details]

        def call(self, inputs):
            arrays = [keras.ops.convert_to_numpy(a) for a in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
            return [keras.ops.convert_to_tensor(o) for o in run_tflite(interpreter, arrays)]

    inputs = [keras.Input(shape=_signature(d_)[1:], dtype=float_dtype(d_), name=f"input{i}")
              for i, d_ in enumerate(in_details)]
    single = len(inputs) == 1
    outs = TFLiteModelLayer(name="tflite")(inputs[0] if single else inputs)
    return keras.Model(inputs[0] if single else inputs, outs if len(outs) > 1 else outs[0], name="tflite")


def _signature(details) -> tuple:
    """A TFLite tensor's shape signature, None where a size is dynamic (-1)."""
    return tuple(None if int(d) < 0 else int(d) for d in details["shape_signature"])


def quantization_of(detail) -> tuple[float, int] | None:
    """(scale, zero point) of a quantized integer input/output tensor, else None."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if scale and np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return float(scale), int(zero)
    return None


def float_dtype(detail) -> str:
    """The dtype a caller gives or gets: float32 for a quantized tensor, else the tensor's own."""
    return "float32" if quantization_of(detail) else np.dtype(detail["dtype"]).name


def _to_input(a: np.ndarray, detail) -> np.ndarray:
    q = quantization_of(detail)
    dtype = np.dtype(detail["dtype"])
    if q is not None and np.issubdtype(np.asarray(a).dtype, np.floating):
        scale, zero = q
        info = np.iinfo(dtype)
        return np.clip(np.round(np.asarray(a) / scale) + zero, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(a, dtype=dtype)


def _from_output(a: np.ndarray, detail) -> np.ndarray:
    q = quantization_of(detail)
    if q is None:
        return a.copy()
    scale, zero = q
    return ((a.astype(np.float32) - zero) * scale).astype(np.float32)


def _interpreter_classes():
    """(Interpreter, OpResolverType) from ai_edge_litert when installed, else from TensorFlow."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return Interpreter, OpResolverType


def tflite_interpreter(path: Path):
    """An allocated interpreter for ``path``. Where the default XNNPACK delegate cannot prepare a
    node (some int8 graphs with float fallbacks), TFLite's own kernels run it instead."""
    import warnings

    Interpreter, OpResolverType = _interpreter_classes()
    content = Path(path).read_bytes()

    def make(**options):
        with warnings.catch_warnings(), native_stderr_silenced():
            warnings.simplefilter("ignore")
            # from the bytes, not the path: then TFLite verifies the flatbuffer (from a path it does
            # not, and a damaged file segfaults the process)
            interpreter = Interpreter(model_content=content, **options)
            interpreter.allocate_tensors()
        return interpreter

    try:
        try:
            return make()
        except RuntimeError as e:
            if "delegate" not in str(e).lower() and "xnnpack" not in str(e).lower():
                raise
            return make(experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{path} is a damaged TFLite model ({type(e).__name__}: {one_line(e, 200)})",
                            hint="convert it again; a copy may have cut it short") from None


def run_tflite(interpreter, arrays) -> list[np.ndarray]:
    """Run a TFLite interpreter on arrays (resizing it when a shape differs; float arrays quantized
    for integer inputs, integer outputs dequantized)."""
    in_details = interpreter.get_input_details()
    if len(arrays) != len(in_details):
        raise BadInputError(f"the TFLite model takes {len(in_details)} input(s), got {len(arrays)}")
    resized = False
    for d, a in zip(in_details, arrays):
        if tuple(d["shape"]) != a.shape:
            interpreter.resize_tensor_input(d["index"], list(a.shape))
            resized = True
    if resized:
        interpreter.allocate_tensors()
    for d, a in zip(interpreter.get_input_details(), arrays):
        interpreter.set_tensor(d["index"], _to_input(a, d))
    interpreter.invoke()
    outs = interpreter.get_output_details()
    # the converter may list outputs in any order; the names end in ":0", ":1"... in model order
    outs = sorted(outs, key=lambda o: (_output_position(o["name"]), o["index"]))
    return [_from_output(interpreter.get_tensor(o["index"]), o) for o in outs]


def _output_position(name: str) -> int:
    tail = name.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0
