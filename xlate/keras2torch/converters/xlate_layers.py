"""xlate's own Keras layers back to torch: Constant -> a buffer, Parameter -> an nn.Parameter,
Range -> torch.arange. They are what the torch -> Keras path makes of buffers, folded constants,
bare parameters and arange over a dynamic size, so a converted model converts back directly."""

from __future__ import annotations

from ..registry import converter
from ..source import literal, torch_dtype


def _size(em, node, axis: int) -> str:
    """The size of the anchor input (input 0) on its Keras axis ``axis``, as torch source."""
    anchor = em.input(node, 0)
    return f"{anchor.var}.shape[{anchor.dim(axis)}]"


@converter("xlate_constant")
def constant(em, node, row):
    layer = node.op
    value = em.keras_weights(layer)["value"]
    if layer.trainable_value:
        attr = em.parameter(node.name, value)
    else:
        attr = em.buffer(node.name, value)
    expr = f"self.{attr}"
    if layer.dynamic_axis is not None:  # stored with size 1 there, broadcast to the anchor's size
        shape = [literal(int(d)) for d in value.shape]
        shape[layer.dynamic_axis] = _size(em, node, layer.anchor_axis)
        expr = f"{expr}.expand({', '.join(shape)})"
    em.assign(node, expr)


@converter("xlate_range")
def arange(em, node, row):
    layer = node.op
    n = _size(em, node, layer.anchor_axis)
    expr = f"torch.arange({n}, dtype={torch_dtype(layer.dtype_name)})"
    if layer.step != 1:
        expr = f"{expr} * {literal(layer.step)}"
    if layer.start != 0:
        expr = f"{expr} + {literal(layer.start)}"
    em.assign(node, expr)
