"""Keras files (``.keras``, legacy ``.h5``) and TensorFlow SavedModel folders."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import BadInputError, one_line


def import_keras():
    from ..frameworks import quiet_tensorflow

    quiet_tensorflow()
    import keras

    with contextlib.suppress(ImportError):
        import xlate.keras_layers  # noqa: F401 - registers xlate's custom layers for deserialization
    return keras


def load_keras_file(keras, path: Path, trust: bool):
    from ..keras_classes import import_custom_modules

    import_custom_modules(path, trust=trust)
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not trust)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for damaged or foreign files
        text = one_line(e, 240)
        if "safe_mode" in text or "lambda" in text.lower():
            raise BadInputError(f"{path} contains Python code (a Lambda layer); Keras' safe mode refuses to load it",
                                hint="rerun with --trust only if you trust where the file came from") from None
        if "Unknown layer" in str(e) or "Could not locate class" in str(e):
            raise BadInputError(f"{path} uses a custom layer Keras cannot find ({text})",
                                hint="the layer's class must be registered with @keras.saving.register_keras_serializable "
                                     "and importable") from None
        raise BadInputError(f"cannot load the Keras model {path} ({type(e).__name__}: {text})",
                            hint="the file is damaged or was written by an incompatible Keras; save it again with "
                                 "model.save('name.keras')") from None


def savedmodel_as_keras(keras, path: Path):
    """An inference-only Keras model that calls the SavedModel's serving signature."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"cannot load the SavedModel {path} ({type(e).__name__}: {one_line(e, 200)})",
                            hint="the folder is damaged or incomplete; export it again") from None
    endpoint = "serve" if hasattr(loaded, "serve") else "serving_default"
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise BadInputError(f"the SavedModel {path} has no serving_default signature",
                            hint="export it with keras model.export(path) or tf.saved_model.save(..., signatures=...)")
    _, kw = sig.structured_input_signature
    specs = list(kw.values())
    inputs = [keras.Input(shape=tuple(s.shape[1:]), batch_size=s.shape[0], dtype=s.dtype.name, name=s.name or f"in{i}")
              for i, s in enumerate(specs)]
    layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint)
    single = len(inputs) == 1
    out = layer(inputs[0] if single else inputs)
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out)]
    return keras.Model(inputs[0] if single else inputs, out, name="savedmodel")
