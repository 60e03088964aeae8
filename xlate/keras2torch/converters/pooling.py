"""Pooling: local (max/average), global and adaptive."""

from __future__ import annotations

from .. import plan
from ..registry import converter
from ..source import call, compact, literal
from .conv import _layout, _spatial, conv_pads, padded_input


def _tuple(v, rank: int) -> tuple:
    return (v,) * rank if isinstance(v, int) else tuple(v)


@converter("pool")
def pool(em, node, row):
    cfg = node.config
    layout, channels_last = _layout(cfg)
    x = em.input(node, 0, layout)
    rank = x.rank - 2
    size = _tuple(cfg["pool_size"], rank)
    strides = _tuple(cfg["strides"] if cfg.get("strides") is not None else cfg["pool_size"], rank)
    pads = conv_pads(cfg["padding"], _spatial(x, channels_last), size, strides, (1,) * rank)
    is_max = type(node.op).__name__.startswith("Max")
    symmetric = pads is not None and all(left == right for left, right in pads) and all(
        2 * left <= k for (left, _), k in zip(pads, size))
    kind = "Max" if is_max else "Avg"
    kwargs = {"stride": compact(strides)}
    if symmetric:
        if any(left for left, _ in pads):
            kwargs["padding"] = compact(tuple(left for left, _ in pads))
            if not is_max:
                kwargs["count_include_pad"] = False  # Keras 'same' averages only the real pixels
        attr = em.module(node, call(f"nn.{kind}Pool{rank}d", compact(size), **kwargs))
        em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)
        return
    attr = em.module(node, call(f"nn.{kind}Pool{rank}d", compact(size), **kwargs))
    if is_max:
        src, _ = padded_input(em, node, x, pads, "same", value="float('-inf')", kernel=size, strides=strides,
                              dilation=(1,) * rank)
        em.assign(node, f"self.{attr}({src})", x.perm, module=attr)
        return
    # Keras 'same' average pooling divides by the number of real pixels in each window
    if pads is None:
        em.helpers.add("pad_same")
        args = f"{literal(tuple(size))}, {literal(tuple(strides))}, {literal((1,) * rank)}"
        padded, ones = f"pad_same({x.var}, {args})", f"pad_same(torch.ones_like({x.var}[:, :1]), {args})"
    else:
        pad_arg = plan.torch_pad_arg(pads)
        padded, ones = f"F.pad({x.var}, {pad_arg})", f"F.pad(torch.ones_like({x.var}[:, :1]), {pad_arg})"
    em.assign(node, f"self.{attr}({padded}) / self.{attr}({ones})", x.perm, module=attr,
              comment="Keras 'same': asymmetric pad, average over real pixels only")


@converter("global_pool", masks=True)
def global_pool(em, node, row):
    cfg = node.config
    _, channels_last = _layout(cfg)
    if node.kwargs.get("mask") is not None:
        return _masked_average(em, node, channels_last)
    x = em.input(node, 0)
    axes = tuple(range(1, x.rank - 1)) if channels_last else tuple(range(2, x.rank))
    dims = tuple(sorted(x.dim(a) for a in axes))
    keep = bool(cfg.get("keepdims"))
    method = "mean" if "Average" in type(node.op).__name__ else "amax"
    expr = call(f"{x.var}.{method}", dim=dims[0] if len(dims) == 1 else dims, **({"keepdim": True} if keep else {}))
    em.assign(node, expr, x.perm if keep else plan.drop_axes(x.perm, axes))


@converter("adaptive_pool")
def adaptive_pool(em, node, row):
    cfg = node.config
    layout, _ = _layout(cfg)
    x = em.input(node, 0, layout)
    rank = x.rank - 2
    kind = "Max" if "Max" in type(node.op).__name__ else "Avg"
    size = cfg["output_size"]
    attr = em.module(node, call(f"nn.Adaptive{kind}Pool{rank}d", compact(_tuple(size, rank))))
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)


def _masked_average(em, node, channels_last: bool):
    """GlobalAveragePooling1D over the unmasked steps only, as Keras computes it with a mask."""
    x = em.input(node, 0, "keras")
    m = em.in_layout(node.kwargs["mask"], "keras")
    keep = em.temp(f"{node.name}_keep")
    em.emit(f"{keep} = {m.var}.bool()[:, {':, None' if channels_last else 'None, :'}]",
            "Keras averages over the unmasked steps only")
    axis = 1 if channels_last else 2
    kwargs = {"keepdim": True} if node.config.get("keepdims") else {}
    num = call(f"torch.where({keep}, {x.var}, 0).sum", dim=axis, **kwargs)
    den = call(f"{keep}.to({x.var}.dtype).sum", dim=axis, **kwargs)
    perm = plan.identity(x.rank) if kwargs else plan.identity(x.rank - 1)
    em.assign(node, f"{num} / {den}", perm)
