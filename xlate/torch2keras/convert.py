"""torch -> Keras, the direct path: trace -> emit (layout plan + converters) -> port weights."""

from __future__ import annotations

import contextlib
import re

import numpy as np

from ..errors import ConverterFailure, UnsupportedOpError, XlateError
from ..frameworks import IOSpec, TensorSpec, float_dtype, quiet_tensorflow, without_kv_cache
from ..memory import release_free_memory
from ..record import ConversionRecord, LayerRecord, attach
from .emit import DynamicShapeError, Emitter
from .fxtrace import trace_dynamic
from .port import port_weights
from .ported import unscoped_variable_names
from .trace import _as_tuple


def _input_specs(graph, example_inputs) -> tuple[TensorSpec, ...]:
    args, kwargs = _as_tuple(example_inputs)  # one of them is empty
    specs = []
    for meta, name, example in zip(graph.input_metas, graph.inputs, [*args, *kwargs.values()]):
        low, high = 0, None
        if not example.dtype.is_floating_point and example.numel():
            low, high = int(example.min()), int(example.max()) + 1
        specs.append(TensorSpec(meta.static_shape, meta.dtype, low, high, name, example=tuple(example.shape)))
    return tuple(specs)


def build(module, example_inputs, *, io_layout: str = "source", dynamic="auto"):
    """Trace and emit, keeping static every dynamic size the Keras graph cannot express.

    Returns (traced, emitter, keras model). The model's weights are not ported yet."""
    traced = trace_dynamic(module, example_inputs, dynamic)
    emitter, model = emit_pinning(traced, io_layout=io_layout, model_name=_model_name(module))
    return traced, emitter, model


def emit_pinning(traced, *, io_layout: str = "source", model_name: str = "xlate_converted"):
    """Emit the traced graph; a dynamic size the Keras graph cannot express pins the input sizes it
    depends on (with the op and module path as the reason) and the graph is emitted again."""
    while True:
        emitter = Emitter(traced.graph, io_layout=io_layout, model_name=model_name)
        try:
            return emitter, emitter.run()
        except DynamicShapeError as e:
            active = traced.dynamic_symbols()
            pinned = [s for s in active if s in e.symbols] or active
            if not pinned:
                raise UnsupportedOpError([(str(e), e.where or "<graph>")], direction="torch2keras") from e
            traced.pin(pinned, f"{e.where or 'the Keras graph'}: {e}")


def torch_to_keras(module, example_inputs, *, io_layout: str = "source", dynamic="auto"):
    """Convert ``module`` into a Keras functional model with ported weights (no parity gate here:
    ``xlate.convert`` runs it). Every failure is an XlateError: a foreign exception outside the
    emitter's per-op net (trace reading, weight port) becomes a ConverterFailure too."""
    try:
        return _torch_to_keras(module, example_inputs, io_layout=io_layout, dynamic=dynamic)
    except XlateError:
        raise
    except Exception as e:
        raise ConverterFailure("torch -> Keras conversion", "<model>", e, direction="torch2keras") from e


def _torch_to_keras(module, example_inputs, *, io_layout: str, dynamic):
    quiet_tensorflow()
    import keras  # noqa: F401 - imported before building layers

    dtype = float_dtype(module)
    weight_bytes = _weight_bytes(module)
    with without_kv_cache(module) as cache_off:
        traced = trace_dynamic(module, example_inputs, dynamic)
        release_free_memory(weight_bytes)  # the trace's real runs leave their activations in malloc's heaps
        with dtype_policy(dtype), unscoped_variable_names():
            emitter, model = emit_pinning(traced, io_layout=io_layout, model_name=_model_name(module))
            weights = port_weights(emitter.assignments)
    graph = traced.graph
    emitter.assignments = []
    release_free_memory(weight_bytes)
    if dtype != "float32":
        emitter.notes.append(f"{dtype} weights: Keras layers built under the {dtype} dtype policy")
    if cache_off:
        emitter.notes.append("traced with use_cache=False: a KV cache is inference state, not an output")
    dims = [d.to_dict() for d in graph.dims]
    record = ConversionRecord(
        direction="torch2keras", path="direct",
        io=IOSpec(_input_specs(graph, example_inputs), tuple(emitter.input_perms), tuple(emitter.output_perms),
                  source="torch", extras={"dims": dims}),
        layers=_layer_records(emitter), weights=weights,
        rows_used=emitter.rows_used, notes=[f"traced by {graph.traced_by}", *emitter.notes, *_dim_notes(graph.dims)],
        dims=dims,
    )
    attach(model, record)
    return model


def _weight_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def _dim_notes(dims) -> list[str]:
    dynamic = [d.describe() for d in dims if d.dynamic]
    static = [d.describe() for d in dims if not d.dynamic and d.reason not in ("", "not asked to vary")]
    return [f"dynamic: {'; '.join(dynamic)}"] * bool(dynamic) + [f"static: {'; '.join(static)}"] * bool(static)


@contextlib.contextmanager
def dtype_policy(dtype: str):
    """Layers made inside get Keras' ``dtype`` policy (variables and compute in it); float32 as is."""
    import keras

    if dtype == "float32":
        yield
        return
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


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
