"""Convolutions (plain, transposed, depthwise, separable), zero padding, cropping and upsampling.

All of them compute channels-first in torch. Keras 'same' padding is turned into numbers here:
symmetric pads go into the torch layer's ``padding=``, asymmetric ones (stride > 1, even
kernels) into an explicit ``F.pad`` with the extra pixel at the end, as TensorFlow does.
"""

from __future__ import annotations

from .. import plan
from ..registry import NotConvertible, converter
from ..source import Code, call, compact


def _spatial(x, channels_last: bool) -> tuple:
    return tuple(x.shape[1:-1] if channels_last else x.shape[2:])


def _layout(cfg) -> tuple[str, bool]:
    channels_last = cfg.get("data_format", "channels_last") != "channels_first"
    return ("cf" if channels_last else "keras"), channels_last


def conv_pads(padding: str, spatial, kernel, strides, dilation) -> list[tuple[int, int]] | None:
    """(left, right) per spatial axis for a Keras padding mode; None when 'same' padding depends
    on a spatial size only known at run time (stride > 1 on a None axis)."""
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "causal":
        return [(d * (k - 1), 0) for k, d in zip(kernel, dilation)]
    if padding == "same":
        try:
            return [plan.same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilation)]
        except ValueError:
            return None
    raise NotConvertible(f"padding={padding!r}")


_WHY = {"same": "Keras 'same': the extra pixel goes at the end", "causal": "Keras 'causal': pad the past only"}


def padded_input(em, node, x, pads, padding: str, *, value=None, kernel=(), strides=(),
                 dilation=()) -> tuple[str, bool]:
    """(source, symmetric): an explicit F.pad statement when the pads are not symmetric, or a
    ``pad_same`` call (a small function in the generated file) when they depend on the input size."""
    extra = {} if value is None else {"value": Code(value)}
    if pads is None:
        em.helpers.add("pad_same")
        src = em.pre(node, call("pad_same", Code(x.var), tuple(kernel), tuple(strides), tuple(dilation), **extra),
                     comment="Keras 'same' for a size known only at run time")
        return src, False
    if all(left == right for left, right in pads):
        return x.var, True
    why = _WHY.get(padding, "")
    src = em.pre(node, call("F.pad", Code(x.var), plan.torch_pad_arg(pads), **extra), comment=why)
    return src, False


def _conv_kwargs(kernel, strides, pads, dilation, symmetric: bool, groups: int = 1, bias: bool = True) -> dict:
    kwargs = {"kernel_size": compact(kernel), "stride": compact(strides),
              "padding": compact(tuple(left for left, _ in pads)) if symmetric else 0}
    if any(d != 1 for d in dilation):
        kwargs["dilation"] = compact(dilation)
    if groups != 1:
        kwargs["groups"] = groups
    if not bias:
        kwargs["bias"] = False
    return kwargs


def _conv_inputs(em, node):
    """What every convolution reads first: (input, channels_last, kernel_size, strides, dilation, weights)."""
    cfg = node.config
    layout, channels_last = _layout(cfg)
    x = em.input(node, 0, layout)
    kernel_size, strides, dilation = (tuple(cfg[k]) for k in ("kernel_size", "strides", "dilation_rate"))
    return x, channels_last, kernel_size, strides, dilation, em.keras_weights(node.op)


def _padded_conv_input(em, node, x, channels_last, kernel_size, strides, dilation):
    """(pads, source, symmetric) for a convolution with the layer's Keras padding mode."""
    padding = node.config["padding"]
    pads = conv_pads(padding, _spatial(x, channels_last), kernel_size, strides, dilation)
    src, symmetric = padded_input(em, node, x, pads, padding, kernel=kernel_size, strides=strides, dilation=dilation)
    return pads, src, symmetric


@converter("conv")
def conv(em, node, row):
    cfg = node.config
    x, channels_last, kernel_size, strides, dilation, arrays = _conv_inputs(em, node)
    rank = len(kernel_size)
    kernel = arrays["kernel"]  # (*k, in/groups, out)
    groups = int(cfg.get("groups", 1))
    pads, src, symmetric = _padded_conv_input(em, node, x, channels_last, kernel_size, strides, dilation)
    kwargs = _conv_kwargs(kernel_size, strides, pads, dilation, symmetric, groups, cfg["use_bias"])
    attr = em.module(node, call(f"nn.Conv{rank}d", int(kernel.shape[-2]) * groups, int(cfg["filters"]), **kwargs))
    em.port(row, attr, arrays)
    em.assign(node, em.fused_activation(node, f"self.{attr}({src})", x.perm), x.perm, module=attr)


@converter("depthwise_conv")
def depthwise_conv(em, node, row):
    cfg = node.config
    x, channels_last, kernel_size, strides, dilation, arrays = _conv_inputs(em, node)
    rank = len(kernel_size)
    (depthwise_name,) = row.weights[0].keras  # Keras 3 calls the depthwise kernel "kernel"
    channels, multiplier = (int(d) for d in arrays[depthwise_name].shape[-2:])
    pads, src, symmetric = _padded_conv_input(em, node, x, channels_last, kernel_size, strides, dilation)
    kwargs = _conv_kwargs(kernel_size, strides, pads, dilation, symmetric, channels, cfg["use_bias"])
    attr = em.module(node, call(f"nn.Conv{rank}d", channels, channels * multiplier, **kwargs))
    em.port(row, attr, arrays, params={"depthwise_kernel": {"multiplier": multiplier}})
    em.assign(node, em.fused_activation(node, f"self.{attr}({src})", x.perm), x.perm, module=attr)


@converter("separable_conv")
def separable_conv(em, node, row):
    cfg = node.config
    x, channels_last, kernel_size, strides, dilation, arrays = _conv_inputs(em, node)
    rank = len(kernel_size)
    channels, multiplier = (int(d) for d in arrays["depthwise_kernel"].shape[-2:])
    pads, src, symmetric = _padded_conv_input(em, node, x, channels_last, kernel_size, strides, dilation)
    kwargs = _conv_kwargs(kernel_size, strides, pads, dilation, symmetric, channels, bias=False)
    depthwise = em.module(node, call(f"nn.Conv{rank}d", channels, channels * multiplier, **kwargs),
                          suffix="_depthwise")
    pointwise = em.module(node, call(f"nn.Conv{rank}d", channels * multiplier, int(cfg["filters"]), kernel_size=1,
                                     **({} if cfg["use_bias"] else {"bias": False})), suffix="_pointwise")
    em.port(row, depthwise, arrays, attrs={"depthwise": depthwise, "pointwise": pointwise})
    expr = em.fused_activation(node, f"self.{pointwise}(self.{depthwise}({src}))", x.perm)
    em.assign(node, expr, x.perm, module=pointwise)


def transpose_crops(full: int, out: int, padding: str, stride: int, k_eff: int) -> tuple[int, int]:
    """(left, right) crops of the full transposed-conv output that Keras (TensorFlow) keeps.

    TF computes the transposed conv as the gradient of a conv over an ``out``-sized input; with
    'same' that conv pads ``total // 2`` at the start, so the result starts that far into the full
    output. A negative right crop means Keras' output is longer than the full one (zeros + bias).
    """
    left = plan.same_padding(out, k_eff, stride, 1)[0] if padding == "same" else 0
    return left, full - out - left


@converter("conv_transpose")
def conv_transpose(em, node, row):
    cfg = node.config
    x, channels_last, kernel_size, strides, dilation, arrays = _conv_inputs(em, node)
    rank = len(kernel_size)
    kernel = arrays["kernel"]  # (*k, out, in)
    out_t = em.graph.tensors[node.outputs[0]]
    in_sizes, out_sizes = _spatial(x, channels_last), _spatial(out_t, channels_last)
    if None in in_sizes or None in out_sizes:
        in_sizes, out_sizes = _nominal_transpose_sizes(node, channels_last, in_sizes)
    padding, output_padding, crop = [], [], []
    for i, o, k, s, d in zip(in_sizes, out_sizes, kernel_size, strides, dilation):
        k_eff = d * (k - 1) + 1
        full = (i - 1) * s + k_eff
        left, right = transpose_crops(full, o, cfg["padding"], s, k_eff)
        # torch keeps full[p : full - p + output_padding]: use p and output_padding where they fit
        if right >= left:
            p, op, extra = left, 0, (0, right - left)
        elif left - right < max(s, d):
            p, op, extra = left, left - right, (0, 0)
        else:
            p, op, extra = max(right, 0), 0, (left - max(right, 0), 0)
            if right < 0:
                raise NotConvertible("a transposed-conv output longer than torch can pad")
        padding.append(p)
        output_padding.append(op)
        crop.append(extra)
    kwargs = {"kernel_size": compact(kernel_size), "stride": compact(strides), "padding": compact(tuple(padding))}
    if any(output_padding):
        kwargs["output_padding"] = compact(tuple(output_padding))
    if any(d != 1 for d in dilation):
        kwargs["dilation"] = compact(dilation)
    if not cfg["use_bias"]:
        kwargs["bias"] = False
    attr = em.module(node, call(f"nn.ConvTranspose{rank}d", int(kernel.shape[-1]), int(cfg["filters"]), **kwargs))
    em.port(row, attr, arrays)
    expr = f"self.{attr}({x.var})"
    if any(left or right for left, right in crop):
        tmp = em.pre(node, expr)
        expr = f"{tmp}[{_crop_index(crop)}]"
        comment = "crop to Keras' output (TensorFlow keeps the start of the full output)"
    else:
        comment = ""
    em.assign(node, em.fused_activation(node, expr, x.perm), x.perm, module=attr, comment=comment)


def _nominal_transpose_sizes(node, channels_last: bool, in_sizes):
    """(input, output) spatial sizes at a nominal size for each dynamic one, from the Keras layer's
    own output-shape rule. The crops that match torch depend on the kernel, stride and padding
    only (Keras' output is i*s + max(k - s, 0) for 'valid', i*s for 'same'): checked at two sizes."""
    layer = node.op
    found = []
    for nominal in (9, 10):
        sizes = tuple(nominal if n is None else n for n in in_sizes)
        channels = int(layer.input.shape[-1 if channels_last else 1])
        shape = (1, *sizes, channels) if channels_last else (1, channels, *sizes)
        out = layer.compute_output_shape(shape)
        out_sizes = tuple(out[1:-1] if channels_last else out[2:])
        found.append((sizes, out_sizes, tuple(o - n * s for o, n, s in zip(out_sizes, sizes, layer.strides))))
    if found[0][2] != found[1][2]:
        raise NotConvertible("a transposed convolution whose cropping depends on a dynamic size")
    return found[0][0], found[0][1]


def _crop_index(crops) -> str:
    """The index that keeps ``[before : size - after]`` of each spatial axis of an (N, C, *spatial) tensor."""
    return ", ".join([":", ":"] + [f"{before or ''}:{-after if after else ''}" for before, after in crops])


def _pairs(padding, rank: int) -> list[tuple[int, int]]:
    """Keras ZeroPadding/Cropping arguments as (before, after) per spatial axis."""
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    padding = list(padding)
    if rank == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [(int(padding[0]), int(padding[1]))]
    out = []
    for p in padding:
        out.append((int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])))
    return out


@converter("pad")
def zero_pad(em, node, row):
    cfg = node.config
    layout, _ = _layout(cfg)
    x = em.input(node, 0, layout)
    rank = x.rank - 2
    pads = _pairs(cfg["padding"], rank)
    attr = em.module(node, call(f"nn.ZeroPad{rank}d", plan.torch_pad_arg(pads)))
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)


@converter("cropping")
def cropping(em, node, row):
    cfg = node.config
    layout, _ = _layout(cfg)
    x = em.input(node, 0, layout)
    crops = _pairs(cfg["cropping"], x.rank - 2)
    em.assign(node, f"{x.var}[{_crop_index(crops)}]", x.perm)


@converter("upsample")
def upsample(em, node, row):
    cfg = node.config
    layout, _ = _layout(cfg)
    x = em.input(node, 0, layout)
    size = cfg["size"]
    size = (size,) if isinstance(size, int) else tuple(size)
    mode = cfg.get("interpolation", "nearest")
    if mode not in ("nearest", "bilinear"):
        from .resize import upsampling  # TensorFlow's other kernels, written out

        return upsampling(em, node, row)
    kwargs = {"scale_factor": compact(size), "mode": mode}
    if mode == "bilinear":
        kwargs["align_corners"] = False
    attr = em.module(node, call("nn.Upsample", **kwargs))
    em.assign(node, f"self.{attr}({x.var})", x.perm, module=attr)
