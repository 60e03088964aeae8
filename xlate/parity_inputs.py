"""Parity inputs: the models' input specs and seeded random inputs made from them, or the
inputs a caller gave, normalized to a list of samples.

Owns input generation for the parity gate (and for whoever needs inputs shaped like a model's,
such as the converters' example inputs). It must not import ``xlate.parity`` or
``xlate.diagnose``, nor torch/TensorFlow.
"""

from __future__ import annotations

import numpy as np

from .frameworks import IOSpec, TensorSpec, numpy_dtype, to_numpy

DEFAULT_BATCH = 2


DEFAULT_FREE_DIM = 8


def io_spec_of(model) -> IOSpec | None:
    return getattr(model, "_xlate_io", None)


def keras_input_specs(model) -> tuple[TensorSpec, ...]:
    high = embedding_bound(model)
    specs = []
    for t in model.inputs:
        dtype = str(t.dtype)
        specs.append(TensorSpec(tuple(t.shape), dtype, 0, high if "int" in dtype else None, getattr(t, "name", "")))
    return tuple(specs)


def embedding_bound(model) -> int:
    """Exclusive upper bound for generated integer inputs: the smallest Embedding vocabulary (2 without one)."""
    bound = None
    for layer in model._flatten_layers(include_self=False):
        dim = getattr(layer, "input_dim", None)
        if isinstance(dim, int) and type(layer).__name__ == "Embedding":
            bound = dim if bound is None else min(bound, dim)
    return bound or 2


def concrete_shape(shape, batch=DEFAULT_BATCH) -> tuple[int, ...]:
    return tuple((batch if i == 0 else DEFAULT_FREE_DIM) if d is None else int(d) for i, d in enumerate(shape))


def make_inputs(specs, *, samples: int, seed: int, batch: int = DEFAULT_BATCH) -> list[list[np.ndarray]]:
    """Seeded random inputs for each spec: N(0, 1) floats, uniform integers in [low, high)."""
    out = []
    for s in range(samples):
        rng = np.random.default_rng(seed + s)
        arrays = []
        for spec in specs:
            shape = concrete_shape(getattr(spec, "example", None) or spec.shape, batch)
            if spec.dtype == "bool":
                arrays.append(rng.integers(0, 2, size=shape).astype(bool))
            elif spec.is_integer:
                arrays.append(rng.integers(spec.low, spec.high or 2, size=shape).astype(spec.dtype))
            else:
                arrays.append(rng.standard_normal(shape).astype(numpy_dtype(spec.dtype)))
        out.append(arrays)
    return out


def normalize_given_inputs(inputs) -> list[list[np.ndarray]]:
    """Accept one array, a tuple/list of arrays (one sample), or a list of such tuples."""
    if isinstance(inputs, dict):
        inputs = list(inputs.values())
    if not isinstance(inputs, (list, tuple)):
        return [[to_numpy(inputs)]]
    if inputs and all(isinstance(i, (list, tuple)) for i in inputs):
        return [[to_numpy(a) for a in sample] for sample in inputs]
    return [[to_numpy(a) for a in inputs]]


def batches_and_spec(source, target, keras_model, src_fw, inputs, samples, seed):
    """(input samples in the spec-source layout, the I/O spec)."""
    spec = io_spec_of(target) or io_spec_of(source)
    if inputs is None:
        if spec is not None:
            specs = spec.inputs
        else:
            specs = keras_input_specs(keras_model)
            spec = IOSpec(specs, source=src_fw)
        return make_inputs(specs, samples=samples, seed=seed), spec
    return normalize_given_inputs(inputs), spec or IOSpec((), source=src_fw)
