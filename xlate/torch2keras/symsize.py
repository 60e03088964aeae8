"""Dynamic sizes in the Keras graph: which Keras tensor carries each symbol of the torch graph, and
the xlate.keras_layers.dynamic layers that read sizes from them at run time.

A torch size such as ``Sym("s0*s1")`` becomes the expression ``a1_0*a2_1`` over the call inputs
of one of those layers: ``a<k>_<axis>`` is the size of input k on that Keras axis. An input symbol
is read from the Keras input that has it; a size the fast trace named after a tensor (``d3``, see
fx_merge.py) from that tensor. Where no tensor carries a size, ``DynamicShapeError`` asks the
converter to keep it static.

Used by the converters; it does not decide layouts (plan.py) or which sizes are dynamic.
"""

from __future__ import annotations

import re

from .source_graph import Sym, sym_names
from .values import DynamicShapeError, Value

_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class SizeSpec:
    """The call inputs of a dynamic-size layer and each size as an int or expression over them."""

    def __init__(self, ctx, local=()):
        """``local``: (keras tensor, torch sizes in that tensor's Keras axis order) tried first, in
        order: the layer's own input first (``a0_*``)."""
        self.ctx = ctx
        self.tensors = []
        self.local = []
        for tensor, sizes in local:
            self.local.append((self._index(tensor), list(sizes)))

    def _index(self, tensor) -> int:
        for k, t in enumerate(self.tensors):
            if t is tensor:
                return k
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def size(self, d):
        """An int, or the expression of Sym ``d`` over the call inputs."""
        if d is None or isinstance(d, int):
            return d
        if not isinstance(d, Sym):
            raise DynamicShapeError(f"size {d!r} at {self.ctx.where()}")
        for k, sizes in self.local:
            for axis, s in enumerate(sizes):
                if s == d:
                    return f"a{k}_{axis}"
        expr = _NAME.sub(lambda m: self._name(m.group(0)), d.expr)
        from ..keras_layers.dynamic import check_expression

        if not check_expression(expr):
            raise DynamicShapeError(f"the size {d.expr} at {self.ctx.where()} has no Keras form")
        return expr

    def _name(self, name: str) -> str:
        if name not in sym_names(name):  # a function name such as Max
            return name
        tensor, axis = self.carrier(name)
        return f"a{self._index(tensor)}_{axis}"

    def carrier(self, name: str):
        """(Keras tensor, Keras axis) that has the size ``name``."""
        ctx = self.ctx
        graph = ctx.graph
        if name in graph.symbols:
            index, torch_axis = graph.symbols[name]
            value = ctx.env[graph.inputs[index]]
        elif name in graph.anchors:
            node, torch_axis = graph.anchors[name]
            value = ctx.env.get(node)
            if isinstance(value, tuple):
                value = None
        else:
            value = None
        if not isinstance(value, Value) or value.feature_order is not None:
            raise DynamicShapeError(f"no tensor carries the size {name} at {ctx.where()}")
        return value.tensor, value.perm.index(torch_axis)

    def sizes(self, values) -> list:
        return [self.size(d) for d in values]

    def inputs(self):
        """What to call the layer on: one tensor, or a list when there are several."""
        return self.tensors[0] if len(self.tensors) == 1 else list(self.tensors)


def keras_order(value: Value) -> list:
    """The torch sizes of ``value`` in its Keras tensor's axis order."""
    return [value.meta.shape[p] for p in value.perm]


def is_static(sizes) -> bool:
    return all(isinstance(d, int) for d in sizes)


def reshape(ctx, tensor, target, local_sizes):
    """``tensor.reshape(target)`` (Keras order); sizes read at run time where more than one is dynamic."""
    from ..keras_layers import DynamicReshape

    dynamic = [d for d in target if not isinstance(d, int)]
    if len(dynamic) <= 1:
        return ctx.keras.ops.reshape(tensor, tuple(-1 if not isinstance(d, int) else d for d in target))
    spec = SizeSpec(ctx, [(tensor, local_sizes)])
    sizes = spec.sizes(target)
    return DynamicReshape(sizes, name=ctx.layer_name("reshape"))(spec.inputs())


def broadcast(ctx, tensor, target, local_sizes):
    """``broadcast_to(tensor, target)`` (Keras order) with dynamic sizes read at run time."""
    from ..keras_layers import DynamicBroadcast

    if is_static(target):
        return ctx.keras.ops.broadcast_to(tensor, tuple(target))
    spec = SizeSpec(ctx, [(tensor, local_sizes)])
    sizes = spec.sizes(target)
    return DynamicBroadcast(sizes, name=ctx.layer_name("expand"))(spec.inputs())


def size_tensor(ctx, size, dtype: str, local=()):
    """A scalar tensor holding ``size`` (an int or a Sym) at run time."""
    from ..keras_layers import DynamicSize

    if isinstance(size, int):
        return size
    spec = SizeSpec(ctx, local)
    return DynamicSize([spec.size(size)], dtype_name=dtype, name=ctx.layer_name("size"))(spec.inputs())


def product(sizes):
    """The product of sizes (ints and Syms) as an int or a Sym."""
    static, parts = 1, []
    for d in sizes:
        if isinstance(d, int):
            static *= d
        else:
            parts.append(f"({d.expr})")
    if not parts:
        return static
    return Sym("*".join(parts + ([str(static)] if static != 1 else [])))


def arange(ctx, start, end, step, dtype: str):
    """``arange(start, end, step)`` with one of them dynamic."""
    from ..keras_layers import DynamicRange

    spec = SizeSpec(ctx)
    sizes = spec.sizes([start, end, step])
    return DynamicRange(sizes, dtype_name=dtype, name=ctx.layer_name("arange"))(spec.inputs())


def slice_axis(ctx, tensor, local_sizes, axis: int, start, stop, step: int, length=None):
    """``tensor[..., start:stop:step]`` on Keras ``axis`` with dynamic bounds or a dynamic size;
    ``length``: the result's size there when the torch graph has it fixed."""
    from ..keras_layers import DynamicSlice

    spec = SizeSpec(ctx, [(tensor, local_sizes)])
    bounds = [spec.size(start), spec.size(stop)]
    return DynamicSlice(bounds, axis=axis, step=step, length=length, name=ctx.layer_name("slice"))(spec.inputs())


def pad(ctx, tensor, local_sizes, width, value: float):
    """Constant padding by ``width`` ((before, after) per Keras axis) with dynamic amounts."""
    from ..keras_layers import DynamicPad

    spec = SizeSpec(ctx, [(tensor, local_sizes)])
    sizes = spec.sizes([p for pair in width for p in pair])
    return DynamicPad(sizes, value=value, name=ctx.layer_name("pad"))(spec.inputs())


def resize(ctx, tensor, local_sizes, spatial, interpolation: str):
    """``image.resize`` of a channels-last tensor to the (dynamic) ``spatial`` sizes."""
    from ..keras_layers import DynamicResize

    spec = SizeSpec(ctx, [(tensor, local_sizes)])
    sizes = spec.sizes(spatial)
    return DynamicResize(sizes, interpolation=interpolation, name=ctx.layer_name("resize"))(spec.inputs())
