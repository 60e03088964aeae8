"""xlate's run-time-size Keras layers (``xlate.keras_layers.dynamic``) back to torch.

The torch -> Keras path makes them where a size depends on a dynamic input size
(``x.view(B, T, heads, d)``, ``pos[:, :T]``, ``arange(T)``); here each becomes the torch call it
came from, with every size written as Python arithmetic on ``tensor.shape``, so a converted model
converts back on the direct path with its sizes still free. Owns only these layers: the size
expressions' grammar lives with the layers (``keras_layers.dynamic``).
"""

from __future__ import annotations

import ast

from ..registry import converter
from ..source import literal, torch_dtype

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def size_source(em, node, expr) -> str:
    """Torch source for one size: an int, or an expression over ``a<k>_<axis>`` (the size of call
    input k on its Keras axis)."""
    if isinstance(expr, int):
        return literal(expr)

    def render(n) -> str:
        if isinstance(n, ast.BinOp):
            return f"({render(n.left)} {_OPS[type(n.op)]} {render(n.right)})"
        if isinstance(n, ast.UnaryOp):
            return f"(-{render(n.operand)})"
        if isinstance(n, ast.Constant):
            return literal(n.value)
        if isinstance(n, ast.Name):
            k, axis = (int(p) for p in n.id[1:].split("_"))
            v = em.input(node, k)
            return f"{v.var}.shape[{v.dim(axis)}]"
        fn = "max" if n.func.id == "Max" else "min"
        return f"{fn}({', '.join(render(a) for a in n.args)})"

    return render(ast.parse(str(expr), mode="eval").body)


def _sizes(em, node, sizes) -> list[str]:
    return [size_source(em, node, s) for s in sizes]


@converter("xlate_dynamic_reshape")
def dynamic_reshape(em, node, row):
    x = em.input(node, 0, "keras")
    em.assign(node, f"{x.var}.reshape({', '.join(_sizes(em, node, node.op.sizes))})")


@converter("xlate_dynamic_broadcast")
def dynamic_broadcast(em, node, row):
    x = em.input(node, 0, "keras")
    em.assign(node, f"torch.broadcast_to({x.var}, ({', '.join(_sizes(em, node, node.op.sizes))},))")


@converter("xlate_dynamic_size")
def dynamic_size(em, node, row):
    (n,) = _sizes(em, node, node.op.sizes[:1])
    em.assign(node, f"torch.tensor({n}, dtype={torch_dtype(node.op.dtype_name)})")


@converter("xlate_dynamic_range")
def dynamic_range(em, node, row):
    start, end, step = _sizes(em, node, node.op.sizes)
    em.assign(node, f"torch.arange({start}, {end}, {step}, dtype={torch_dtype(node.op.dtype_name)})")


@converter("xlate_dynamic_slice")
def dynamic_slice(em, node, row):
    layer = node.op
    x = em.input(node, 0, "keras")
    start, stop = ("" if b is None else size_source(em, node, b) for b in layer.bounds)
    step = f":{layer.step}" if layer.step != 1 else ""
    index = [":"] * x.rank
    index[layer.axis] = f"{start}:{stop}{step}"
    em.assign(node, f"{x.var}[{', '.join(index)}]")


@converter("xlate_dynamic_pad")
def dynamic_pad(em, node, row):
    x = em.input(node, 0, "keras")
    flat = _sizes(em, node, node.op.sizes)
    pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)]
    widths = [w for before, after in reversed(pairs) for w in (before, after)]  # F.pad: last axis first
    em.assign(node, f"F.pad({x.var}, ({', '.join(widths)},), value={literal(float(node.op.value))})")


@converter("xlate_dynamic_resize")
def dynamic_resize(em, node, row):
    """Channels-last resize to run-time sizes: torch's own interpolate (bilinear with
    align_corners=False, or nearest), which the Keras layer reproduces axis by axis."""
    x = em.input(node, 0, "cf")
    sizes = _sizes(em, node, node.op.sizes)
    if node.op.interpolation == "nearest":
        mode = "'nearest'"
    else:
        mode = {1: "'linear'", 2: "'bilinear'", 3: "'trilinear'"}[len(sizes)] + ", align_corners=False"
    em.assign(node, f"F.interpolate({x.var}, size=({', '.join(sizes)},), mode={mode})", "cf")
