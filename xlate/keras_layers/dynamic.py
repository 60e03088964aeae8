"""Keras layers whose sizes are read from tensors at run time: a torch size computed from dynamic
dimensions (``x.view(B, T, heads, head_dim)``, ``arange(T)``, ``zeros(B, T)``, ``pos[:, :T]``).

Each layer is called on ``[x, *anchors]`` (or on the anchors alone); a size is an int or an
expression over ``a<k>_<axis>``, the size of call input k on that axis, with ``+ - * // %``,
``**``, ``Max`` and ``Min``. Expressions are evaluated with plain Python arithmetic on
``keras.ops.shape`` results, which are ints (JAX, torch) or scalar tensors (TensorFlow graphs), so
the layers run on every Keras backend and export to SavedModel and TFLite with dynamic shapes.
"""

from __future__ import annotations

import ast
import functools
import operator

import keras

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod, ast.Pow: operator.pow}


@functools.lru_cache(maxsize=4096)
def _parse(expr: str):
    tree = ast.parse(expr, mode="eval").body

    def check(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return check(node.left) and check(node.right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return check(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return True
        if isinstance(node, ast.Name) and node.id.startswith("a"):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Max", "Min"):
            return all(check(a) for a in node.args)
        raise ValueError(f"not a size expression: {expr!r}")

    check(tree)
    return tree


def check_expression(expr: str) -> bool:
    """Whether ``expr`` is a size expression these layers evaluate."""
    try:
        _parse(expr)
    except (ValueError, SyntaxError):
        return False
    return True


def size_value(expr, shapes):
    """An int or size expression evaluated on ``shapes`` (one shape tuple per call input)."""
    if isinstance(expr, int):
        return expr

    def ev(node):
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            k, axis = node.id[1:].split("_")
            return shapes[int(k)][int(axis)]
        values = [ev(a) for a in node.args]
        if all(isinstance(v, int) for v in values):
            return (max if node.func.id == "Max" else min)(values)
        fn = keras.ops.maximum if node.func.id == "Max" else keras.ops.minimum
        return functools.reduce(fn, values)

    return ev(_parse(expr))


def static_size(expr, shapes):
    """The expression's value on static shapes, or None when a size it reads is unknown."""
    try:
        value = size_value(expr, shapes)
    except TypeError:  # None in the arithmetic
        return None
    return value if isinstance(value, int) else None


def _shapes(inputs, static: bool = False):
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return [tuple(t.shape) if static else keras.ops.shape(t) for t in inputs]


def _first(inputs):
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


def _as_list(values):
    return [v if isinstance(v, int) else str(v) for v in values]


class _Sized(keras.layers.Layer):
    """A layer with a list of sizes (ints or expressions) in its config."""

    def __init__(self, sizes=(), **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.sizes = _as_list(sizes)
        for s in self.sizes:
            if isinstance(s, str):
                _parse(s)

    def run_sizes(self, inputs):
        shapes = _shapes(inputs)
        return [size_value(s, shapes) for s in self.sizes]

    def spec_sizes(self, inputs):
        shapes = _shapes(inputs, static=True)
        return [static_size(s, shapes) for s in self.sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": list(self.sizes)}


@keras.saving.register_keras_serializable(package="xlate")
class DynamicReshape(_Sized):
    """``reshape(x, sizes)`` with sizes read from ``[x, *anchors]`` at run time."""

    def call(self, inputs):
        return keras.ops.reshape(_first(inputs), self.run_sizes(inputs))

    def compute_output_spec(self, inputs):
        x = _first(inputs)
        return keras.KerasTensor(tuple(self.spec_sizes(inputs)), dtype=x.dtype)


@keras.saving.register_keras_serializable(package="xlate")
class DynamicBroadcast(_Sized):
    """``broadcast_to(x, sizes)``: a size-1 axis (a constant, a batch-1 state) grown to a run-time size."""

    def call(self, inputs):
        return keras.ops.broadcast_to(_first(inputs), self.run_sizes(inputs))

    def compute_output_spec(self, inputs):
        x = _first(inputs)
        return keras.KerasTensor(tuple(self.spec_sizes(inputs)), dtype=x.dtype)


@keras.saving.register_keras_serializable(package="xlate")
class DynamicSize(_Sized):
    """A size (``sizes[0]``) read at run time, as a scalar tensor (an index stride over dynamic dims)."""

    def __init__(self, sizes=(1,), dtype_name="int64", **kwargs):
        super().__init__(sizes, **kwargs)
        self.dtype_name = dtype_name

    def call(self, inputs):
        return keras.ops.cast(keras.ops.convert_to_tensor(self.run_sizes(inputs)[0]), self.dtype_name)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((), dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "dtype_name": self.dtype_name}


@keras.saving.register_keras_serializable(package="xlate")
class DynamicRange(_Sized):
    """``arange(start, end, step)`` with sizes (start, end, step) read from the anchors."""

    def __init__(self, sizes=(0, 1, 1), dtype_name="int64", **kwargs):
        super().__init__(sizes, **kwargs)
        self.dtype_name = dtype_name

    def call(self, inputs):
        start, end, step = self.run_sizes(inputs)
        return keras.ops.arange(start, end, step, dtype=self.dtype_name)

    def compute_output_spec(self, inputs):
        start, end, step = self.spec_sizes(inputs)
        n = None if None in (start, end, step) else max(0, -(-(end - start) // step))
        return keras.KerasTensor((n,), dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "dtype_name": self.dtype_name}


@keras.saving.register_keras_serializable(package="xlate")
class DynamicSlice(_Sized):
    """``x[..., start:stop:step, ...]`` on ``axis`` with start and stop (sizes[0:2]; None: open)
    read at run time. ``length``: the result's size on ``axis`` when it is known to be fixed
    (``x[:, -1:]`` of a dynamic length)."""

    def __init__(self, sizes=(0, None), axis=0, step=1, length=None, **kwargs):
        super().__init__([s for s in sizes if s is not None], **kwargs)
        self.bounds = [None if s is None else (s if isinstance(s, int) else str(s)) for s in sizes]
        self.axis, self.step = int(axis), int(step)
        self.length = None if length is None else int(length)

    def _index(self, values, rank):
        index = [slice(None)] * rank
        index[self.axis] = slice(values[0], values[1], self.step)
        return tuple(index)

    def _values(self, inputs, static):
        shapes = _shapes(inputs, static=static)
        fn = static_size if static else size_value
        return [None if b is None else fn(b, shapes) for b in self.bounds]

    def call(self, inputs):
        x = _first(inputs)
        return x[self._index(self._values(inputs, False), len(x.shape))]

    def compute_output_spec(self, inputs):
        x = _first(inputs)
        shape = list(x.shape)
        start, stop = self._values(inputs, True)
        n = shape[self.axis]
        if self.length is not None:
            shape[self.axis] = self.length
        elif n is not None and (start is not None or self.bounds[0] is None) and (
                stop is not None or self.bounds[1] is None):
            shape[self.axis] = len(range(n)[slice(start, stop, self.step)])
        else:
            shape[self.axis] = None
        return keras.KerasTensor(tuple(shape), dtype=x.dtype)

    def get_config(self):
        config = super().get_config()
        config.pop("sizes")
        return {**config, "sizes": self.bounds, "axis": self.axis, "step": self.step, "length": self.length}


@keras.saving.register_keras_serializable(package="xlate")
class DynamicPad(_Sized):
    """Constant padding of ``x`` by (before, after) per axis, flattened in ``sizes``, read at run time
    (TensorFlow's 'same' padding worked out in Python from a dynamic size)."""

    def __init__(self, sizes=(), value=0.0, **kwargs):
        super().__init__(sizes, **kwargs)
        self.value = float(value)

    def call(self, inputs):
        flat = self.run_sizes(inputs)
        width = [[flat[2 * i], flat[2 * i + 1]] for i in range(len(flat) // 2)]
        out = keras.ops.pad(_first(inputs), width, constant_values=self.value)
        # padding by run-time amounts loses every static size in a TensorFlow graph; the reshape gives
        # back the ones that are known (a TFLite convolution needs its channel count)
        static = self.compute_output_spec(inputs).shape
        shape = keras.ops.shape(out)
        return keras.ops.reshape(out, [d if d is not None else shape[i] for i, d in enumerate(static)])

    def compute_output_spec(self, inputs):
        x = _first(inputs)
        flat = self.spec_sizes(inputs)
        shape = [None if n is None or flat[2 * i] is None or flat[2 * i + 1] is None else n + flat[2 * i] + flat[2 * i + 1]
                 for i, n in enumerate(x.shape)]
        return keras.KerasTensor(tuple(shape), dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "value": self.value}


@keras.saving.register_keras_serializable(package="xlate")
class DynamicResize(_Sized):
    """Resize of a channels-last tensor to spatial sizes read at run time (torch's
    ``interpolate(size=other.shape[-2:])``), computed as torch does it, one spatial axis at a time:
    bilinear with align_corners=False (source position (i + 0.5) * in / out - 0.5, clamped at 0),
    or nearest (source floor(i * in / out))."""

    def __init__(self, sizes=(), interpolation="bilinear", **kwargs):
        super().__init__(sizes, **kwargs)
        self.interpolation = interpolation

    def call(self, inputs):
        x = _first(inputs)
        for k, out in enumerate(self.run_sizes(inputs)):
            x = self._resize_axis(x, 1 + k, out)
        return x

    def _resize_axis(self, x, axis: int, out):
        ops = keras.ops
        n = ops.shape(x)[axis]
        scale = ops.divide(ops.cast(n, "float32"), ops.cast(out, "float32"))
        index = ops.cast(ops.arange(out), "float32")
        last = ops.cast(n, "int32") - 1
        if self.interpolation == "nearest":
            src = ops.minimum(ops.cast(ops.floor(index * scale), "int32"), last)
            return ops.take(x, src, axis=axis)
        src = ops.maximum((index + 0.5) * scale - 0.5, 0.0)
        low = ops.cast(ops.floor(src), "int32")
        high = ops.minimum(low + 1, last)
        low = ops.minimum(low, last)
        weight = ops.cast(src - ops.floor(src), x.dtype)
        shape = [1] * len(x.shape)
        shape[axis] = -1
        weight = ops.reshape(weight, shape)
        return ops.take(x, low, axis=axis) * (1 - weight) + ops.take(x, high, axis=axis) * weight

    def compute_output_spec(self, inputs):
        x = _first(inputs)
        return keras.KerasTensor((x.shape[0], *self.spec_sizes(inputs), x.shape[-1]), dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}
