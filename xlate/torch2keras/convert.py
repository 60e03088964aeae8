"""torch -> Keras, the direct path: trace -> emit (layout plan + converters) -> port weights."""

from __future__ import annotations

import re

import numpy as np

from ..errors import ConverterFailure, XlateError
from ..frameworks import IOSpec, TensorSpec, quiet_tensorflow, without_kv_cache
from ..record import ConversionRecord, LayerRecord, attach
from .emit import DynamicShapeError, Emitter
from .fxtrace import trace_fast_or_export
from .port import port_weights
from .trace import TensorMeta, _as_tuple, trace


def _input_specs(graph, example_inputs) -> tuple[TensorSpec, ...]:
    args, kwargs = _as_tuple(example_inputs)  # one of them is empty
    specs = []
    for meta, name, example in zip(graph.input_metas, graph.inputs, [*args, *kwargs.values()]):
        low, high = 0, None
        if not example.dtype.is_floating_point and example.numel():
            low, high = int(example.min()), int(example.max()) + 1
        specs.append(TensorSpec(meta.static_shape, meta.dtype, low, high, name))
    return tuple(specs)


def torch_to_keras(module, example_inputs, *, io_layout: str = "source"):
    """Convert ``module`` into a Keras functional model with ported weights (no parity gate here:
    ``xlate.convert`` runs it). Every failure is an XlateError: a foreign exception outside the
    emitter's per-op net (trace reading, weight port) becomes a ConverterFailure too."""
    try:
        return _torch_to_keras(module, example_inputs, io_layout=io_layout)
    except XlateError:
        raise
    except Exception as e:
        raise ConverterFailure("torch -> Keras conversion", "<model>", e, direction="torch2keras") from e


def _torch_to_keras(module, example_inputs, *, io_layout: str):
    quiet_tensorflow()
    import keras  # noqa: F401 - imported before building layers

    with without_kv_cache(module) as cache_off:
        graph = trace_fast_or_export(module, example_inputs)
        try:
            emitter = Emitter(graph, io_layout=io_layout, model_name=_model_name(module))
            model = emitter.run()
        except DynamicShapeError as e:
            # a size depends on the batch in a way the Keras graph cannot express: fix the batch size
            graph = trace(module, example_inputs, dynamic=False)
            batch = graph.input_metas[0].shape[0] if isinstance(graph.input_metas[0], TensorMeta) else None
            emitter = Emitter(graph, io_layout=io_layout, batch_size=batch, model_name=_model_name(module))
            model = emitter.run()
            emitter.notes.append(f"static batch size {batch}: {e}")
    if cache_off:
        emitter.notes.append("traced with use_cache=False: a KV cache is inference state, not an output")
    weights = port_weights(emitter.assignments)
    record = ConversionRecord(
        direction="torch2keras", path="direct",
        io=IOSpec(_input_specs(graph, example_inputs), tuple(emitter.input_perms), tuple(emitter.output_perms),
                  source="torch"),
        layers=_layer_records(emitter), weights=weights,
        rows_used=emitter.rows_used, notes=[f"traced by {graph.traced_by}", *emitter.notes],
    )
    attach(model, record)
    return model


def _model_name(module) -> str:
    """The Keras model is named after the torch class (a valid Keras name)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", type(module).__name__).strip("_")
    return name or "xlate_converted"


def _layer_records(emitter) -> list[LayerRecord]:
    """One record per call of each torch module that owns a table row, aligned on its output."""
    table = emitter.table
    out = []
    for path, calls in emitter.module_outputs.items():
        row = table.by_torch.get(emitter.graph.module_types.get(path, ""))
        if row is None:
            continue
        for value, tensor in calls:
            history = getattr(tensor, "_keras_history", None)
            if history is None:
                continue
            inverse = tuple(int(i) for i in np.argsort(value.perm))
            out.append(LayerRecord(
                source=path, target=history.operation.name, row=row.id,
                output_perm=None if inverse == tuple(range(len(inverse))) else inverse,
                feature_order=None if value.feature_order is None else value.feature_order.tolist()))
    return out
