"""The ONNX fallback path, for models the direct converters cannot handle.

torch -> ONNX (``torch.onnx.export``) -> TensorFlow SavedModel (onnx2tf) -> a Keras 3 model that
wraps the SavedModel in a ``keras.layers.TFSMLayer``; and Keras -> ONNX (Keras' own
``model.export(format="onnx")``, i.e. tf2onnx, with an explicit input signature) -> a torch
module that runs the ONNX graph (``xlate.onnx_torch``).

What the results are, honestly: the Keras model of the torch -> Keras path is a SavedModel graph
behind a ``TFSMLayer``: inference only, not trainable, TensorFlow backend only, and it keeps a
reference to the SavedModel folder (``saved_model_dir(model)``). The torch module of the
Keras -> torch path is an ONNX-graph interpreter with real ``nn.Parameter``s: trainable and
saveable with ``state_dict``, but not readable source code.

Owns building those models and matching their input/output layouts to the source's; finding and
running the exporters and onnx2tf is ``onnx_tools.py``'s job.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import BadInputError, UnsupportedOpError
from .frameworks import IOSpec, TensorSpec, to_numpy
from .layout import channels_first, channels_last, inverse
from .onnx_tools import (
    OnnxToolError,
    export_keras_onnx,
    export_torch_onnx,
    opset_of,
    quietly,
    run_onnx2tf,
    version_of,
)
from .record import ConversionRecord, attach

# --- torch -> ONNX -> TensorFlow ------------------------------------------------------------------


def _as_tuple(example_inputs) -> tuple:
    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in example_inputs):
        return tuple(example_inputs)
    raise BadInputError("example_inputs must be a torch.Tensor or a tuple of tensors for the ONNX path")


def _inverse(perm):
    return None if perm is None else inverse(perm)


def _candidates(src_shape, tgt_shape) -> list:
    """Permutations p (or None) with src_shape permuted by p == tgt_shape (batch axis free)."""
    out = []
    if len(src_shape) != len(tgt_shape):
        return out
    for perm in (None, channels_last(len(src_shape)) if len(src_shape) >= 3 else None):
        if perm is None and out and out[0] is None:
            continue
        shape = src_shape if perm is None else tuple(src_shape[i] for i in perm)
        if all(t is None or i == 0 or s == t for i, (s, t) in enumerate(zip(shape, tgt_shape))):
            out.append(perm)
    return out


@functools.cache
def _saved_model_layer_class():
    import keras

    @keras.saving.register_keras_serializable(package="xlate")
    class SavedModelLayer(keras.layers.TFSMLayer):
        """A TFSMLayer that calls the endpoint with one positional argument per model input and
        returns a list for several outputs (TFSMLayer passes a list as one argument)."""

        def call(self, inputs, training=False):
            if isinstance(inputs, (list, tuple)):
                out = self.call_endpoint_fn(*inputs)
            else:
                out = self.call_endpoint_fn(inputs)
            if isinstance(out, dict):
                out = [out[k] for k in sorted(out, key=_output_index)]
            return out

    return SavedModelLayer


def _output_index(name: str):
    tail = name.rsplit("_", 1)[-1]
    return (0, int(tail)) if tail.isdigit() else (1, name)


def torch_to_keras(module, example_inputs, *, io_layout: str = "source", onnx2tf: str | None = None,
                   workdir: str | os.PathLike | None = None):
    """torch module -> ONNX -> TensorFlow SavedModel (onnx2tf) -> Keras 3 model (TFSMLayer).

    The returned model takes (``io_layout="source"``) the module's own layouts, or
    (``"native"``) onnx2tf's channels-last layouts, with the I/O spec recorded for parity checks.
    The SavedModel folder is kept (``saved_model_dir(model)``): the layer reads from it.
    """
    import keras

    start = time.perf_counter()
    example = _as_tuple(example_inputs)
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="xlate-onnx-"))
    folder.mkdir(parents=True, exist_ok=True)
    onnx_file = folder / "model.onnx"
    dynamic_batch, opset = export_torch_onnx(module, example, onnx_file)
    export_s = time.perf_counter() - start
    saved = folder / "saved_model"
    how = run_onnx2tf(onnx_file, saved, onnx2tf=onnx2tf)
    onnx2tf_s = time.perf_counter() - start - export_s

    layer = quietly(lambda: _saved_model_layer_class()(str(saved), call_endpoint="serving_default",
                                                        trainable=False, name="onnx2tf_saved_model"))
    tf_inputs = _signature_inputs(saved)
    if len(tf_inputs) != len(example):
        raise OnnxToolError(f"onnx2tf's SavedModel takes {len(tf_inputs)} inputs, the module {len(example)}")

    # Which layout did onnx2tf give each input and output? Decided by shapes, and where both
    # layouts fit (square images...), by running the module and the SavedModel and keeping the
    # assignment whose outputs agree.
    in_perms, out_perms = _match_layouts(module, example, layer, tf_inputs)

    src_specs = tuple(TensorSpec((None if dynamic_batch else t.shape[0], *t.shape[1:]), str(t.dtype).replace(
        "torch.", ""), 0, _int_high(t), f"input_{i}") for i, t in enumerate(example))
    if io_layout == "source":
        k_inputs = [keras.Input(tuple(t.shape[1:]), batch_size=None if dynamic_batch else t.shape[0],
                                dtype=str(t.dtype).replace("torch.", ""), name=f"input_{i}")
                    for i, t in enumerate(example)]
        fed = [x if p is None else keras.layers.Permute(p[1:], name=f"to_onnx2tf_layout_{i}")(x)
               for i, (x, p) in enumerate(zip(k_inputs, in_perms))]
    else:
        k_inputs = [keras.Input(tuple(s.shape[1:]), batch_size=None if dynamic_batch else s.shape[0],
                                dtype=s.dtype.name, name=f"input_{i}") for i, s in enumerate(tf_inputs)]
        fed = k_inputs
    outs = layer(fed if len(fed) > 1 else fed[0])
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    if io_layout == "source":
        outs = [o if p is None else keras.layers.Permute(_inverse(p)[1:], name=f"from_onnx2tf_layout_{i}")(o)
                for i, (o, p) in enumerate(zip(outs, out_perms))]
    model = keras.Model(k_inputs if len(k_inputs) > 1 else k_inputs[0], outs if len(outs) > 1 else outs[0],
                        name="onnx2tf_model")
    model.trainable = False

    native = io_layout == "native"
    spec = IOSpec(src_specs,
                  input_perms=tuple(in_perms) if native else (),
                  output_perms=tuple(_inverse(p) for p in out_perms) if native else (),
                  source="torch", extras={"saved_model": str(saved), "onnx": str(onnx_file)})
    record = ConversionRecord("torch2keras", "onnx", spec)
    record.notes += [
        (f"torch.onnx.export (dynamo, opset {opset}, {'dynamic' if dynamic_batch else 'static'} batch) "
        f"{export_s:.1f}s; {how} {onnx2tf_s:.1f}s"),
        (f"the Keras model wraps the TensorFlow SavedModel {saved} in a TFSMLayer: inference only, not "
        "trainable, TensorFlow backend only; no per-layer mapping"),
    ]
    if module.training:
        record.notes.append("the module is in train mode; the ONNX graph was exported in eval mode")
    attach(model, record)
    return model


def saved_model_dir(model) -> str | None:
    """The SavedModel folder behind a Keras model made by the ONNX path (save or copy this)."""
    spec = getattr(model, "_xlate_io", None)
    return None if spec is None else spec.extras.get("saved_model")


def _int_high(t) -> int | None:
    if t.is_floating_point() or t.dtype.is_complex:
        return None
    return int(t.max().item()) + 1 if t.numel() else 2


def _signature_inputs(saved: Path):
    import tensorflow as tf

    sig = tf.saved_model.load(str(saved)).signatures["serving_default"]
    specs = sig.structured_input_signature[1]
    # onnx2tf keeps the ONNX input order, and the names are input_0, input_1, ...
    return [specs[k] for k in sorted(specs, key=_output_index)]


def _match_layouts(module, example, layer, tf_inputs):
    import itertools

    import torch

    in_choices = []
    for t, s in zip(example, tf_inputs):
        cands = _candidates(tuple(t.shape), tuple(s.shape))
        if not cands:
            raise OnnxToolError(f"onnx2tf input shape {tuple(s.shape)} is no layout of {tuple(t.shape)}")
        in_choices.append(cands)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(tuple(t.shape)).astype(np.float32) if t.is_floating_point()
              else t.numpy() for t in example]
    with torch.no_grad():
        was = module.training
        module.eval()
        ref = module(*[torch.from_numpy(a) for a in arrays])
        module.train(was)
    from .frameworks import flatten_outputs

    ref = [to_numpy(r) for r in flatten_outputs(ref)]
    best = None
    for combo in itertools.product(*in_choices):
        fed = [a if p is None else np.transpose(a, p) for a, p in zip(arrays, combo)]
        got = layer(fed if len(fed) > 1 else fed[0])
        got = [to_numpy(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
        if len(got) != len(ref):
            raise OnnxToolError(f"onnx2tf's SavedModel returns {len(got)} outputs, the module {len(ref)}")
        perms, err = [], 0.0
        for r, g in zip(ref, got):
            options = [(np.abs(np.transpose(r, p) - g).max() if p else np.abs(r - g).max(), p)
                       for p in _candidates(r.shape, g.shape)]
            if not options:
                err = float("inf")
                perms.append(None)
                continue
            e, p = min(options, key=lambda o: o[0])
            err = max(err, float(e))
            perms.append(p)
        if best is None or err < best[0]:
            best = (err, list(combo), perms)
    return best[1], best[2]


# --- Keras -> ONNX -> torch -------------------------------------------------------------------


def _keras_signature(model, example_inputs):
    import keras

    if not getattr(model, "inputs", None):
        if example_inputs is None:
            raise BadInputError("the Keras model has no input shapes (subclassed and never called): pass "
                                "example_inputs")
        model(example_inputs)
        arrays = example_inputs if isinstance(example_inputs, (list, tuple)) else [example_inputs]
        shapes = [(None, *np.shape(a)[1:]) for a in arrays]
        dtypes = [str(np.asarray(to_numpy(a)).dtype) for a in arrays]
        names = [f"input_{i}" for i in range(len(arrays))]
    else:
        shapes = [tuple(t.shape) for t in model.inputs]
        dtypes = [str(t.dtype) for t in model.inputs]
        names = [getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(model.inputs)]
    specs = [keras.InputSpec(shape=s, dtype=d, name=n) for s, d, n in zip(shapes, dtypes, names)]
    return specs, shapes, dtypes


def keras_to_torch(model, *, example_inputs=None, io_layout: str = "source",
                   workdir: str | os.PathLike | None = None):
    """Keras model -> ONNX (tf2onnx) -> a torch module running the ONNX graph.

    ``io_layout="source"``: the module takes Keras' layouts (NHWC...); ``"native"``: torch's
    channels-first layouts for rank >= 3 tensors, permuted at the boundary.
    """
    from . import onnx_torch
    from .parity_inputs import embedding_bound

    start = time.perf_counter()
    specs, shapes, dtypes = _keras_signature(model, example_inputs)
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="xlate-onnx-"))
    folder.mkdir(parents=True, exist_ok=True)
    onnx_file = folder / "model.onnx"
    graph = export_keras_onnx(model, onnx_file, specs)
    export_s = time.perf_counter() - start
    opset = opset_of(graph)
    missing = onnx_torch.unsupported_ops(graph)
    if missing:
        raise UnsupportedOpError(missing, direction="ONNX->torch",
                                 hint="these ONNX ops have no implementation in xlate.onnx_torch yet")
    inner = onnx_torch.OnnxGraphModule(graph)
    n_out = len(inner.output_names)
    high = embedding_bound(model)
    src_specs = tuple(TensorSpec(s, d, 0, high if ("int" in d) else None, f"input_{i}")
                      for i, (s, d) in enumerate(zip(shapes, dtypes)))
    if io_layout == "native":
        to_torch = [channels_first(len(s)) if len(s) >= 3 and "float" in d else None
                    for s, d in zip(shapes, dtypes)]
        out_ranks = [_rank_of(o) for o in graph.graph.output]
        to_keras_out = [channels_last(r) if r and r >= 3 else None for r in out_ranks]
        module = onnx_torch.PermutedIO(inner, [_inverse(p) for p in to_torch],
                                       [_inverse(p) for p in to_keras_out])
        spec = IOSpec(src_specs, input_perms=tuple(to_torch), output_perms=tuple(to_keras_out), source="keras",
                      extras={"onnx": str(onnx_file)})
    else:
        module = inner
        spec = IOSpec(src_specs, source="keras", extras={"onnx": str(onnx_file)})
    module.eval()
    record = ConversionRecord("keras2torch", "onnx", spec)
    ops = sorted({op for op, *_ in inner.nodes})
    record.notes += [
        (f"Keras model.export(format='onnx') (tf2onnx {version_of('tf2onnx')}, opset {opset}) {export_s:.1f}s; "
        f"{len(inner.nodes)} ONNX nodes ({', '.join(ops)}) run by xlate.onnx_torch; {n_out} output(s)"),
        ("the torch module interprets the ONNX graph: trainable parameters and a state_dict, no generated "
        "source; inference-mode semantics (BatchNormalization uses its moving statistics, no dropout)"),
    ]
    attach(module, record)
    return module


def _rank_of(value_info) -> int | None:
    t = value_info.type.tensor_type
    return len(t.shape.dim) if t.HasField("shape") else None
