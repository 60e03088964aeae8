"""Resizing (every interpolation, crop/pad to aspect ratio), UpSampling2D's interpolations, CenterCrop.

Keras resizes with TensorFlow's ``tf.image.resize`` (half-pixel centres). torch's
``F.interpolate`` computes the same for 'nearest' (as 'nearest-exact') and 'bilinear' without
antialiasing; the other kernels differ (torch's bicubic is a=-0.75, TensorFlow's Keys a=-0.5
with renormalized borders and 1/1024-quantized offsets; torch has no Lanczos; 'area' uses
fractional box overlaps), so the generated file gets ``tf_resize``: one (out, in) weight matrix
per axis, built at run time from the input's size with TensorFlow's kernels, applied as two
matmuls. Sizes always come from ``x.shape``, so unknown input sizes stay dynamic.
"""

from __future__ import annotations

from ..helpers import register_helper
from ..registry import NotConvertible, converter
from ..source import Code, call, literal

register_helper("tf_resize", '''
def resize_weights(in_size, out_size, method, antialias, device):
    """(out_size, in_size) weights of TensorFlow's tf.image.resize along one axis (half-pixel
    centres): resized = weights @ x along that axis. Lanczos, antialiased kernels and Keys cubic
    follow scale_and_translate; 'bicubic' without antialias the legacy kernel; 'area' box overlaps."""
    f32 = {"dtype": torch.float32, "device": device}
    inv = in_size / out_size
    out = torch.arange(out_size, **f32)
    src = torch.arange(in_size, **f32)
    if method == "area":
        start, end = out * inv, (out + 1) * inv
        overlap = torch.minimum(end[:, None], src + 1) - torch.maximum(start[:, None], src)
        return overlap.clamp(min=0) / inv
    if method == "bicubic" and not antialias:
        centre = (out + 0.5) * inv - 0.5
        base = torch.floor(centre)
        delta = torch.round((centre - base) * 1024) / 1024
        dist = (src[None, :] - base[:, None] - delta[:, None]).abs()
        taps = (src[None, :] >= base[:, None] - 1) & (src[None, :] <= base[:, None] + 2)
        weights = torch.where(dist < 1, (1.5 * dist - 2.5) * dist * dist + 1,
                              ((-0.5 * dist + 2.5) * dist - 4) * dist + 2) * taps
    else:
        radius = {"bilinear": 1, "bicubic": 2, "lanczos3": 3, "lanczos5": 5}[method]
        scale = max(inv, 1.0) if antialias else 1.0
        x = ((src[None, :] + 0.5 - (out[:, None] + 0.5) * inv) / scale).abs()
        if method == "bilinear":
            weights = (1 - x).clamp(min=0)
        elif method == "bicubic":
            weights = torch.where(x < 1, (1.5 * x - 2.5) * x * x + 1, ((-0.5 * x + 2.5) * x - 4) * x + 2)
        else:
            px = math.pi * x
            weights = torch.where(x <= 1e-3, torch.ones_like(x),
                                  radius * torch.sin(px) * torch.sin(px / radius) / (px * px).clamp(min=1e-30))
        weights = weights * (x < radius)
    total = weights.sum(1, keepdim=True)
    return weights / torch.where(total.abs() >= 1e-35, total, torch.ones_like(total))


def tf_resize(x, size, method, antialias=False):
    """tf.image.resize of an (N, C, H, W) tensor to ``size`` (height, width)."""
    height = resize_weights(x.shape[-2], size[0], method, antialias, x.device).to(x.dtype)
    width = resize_weights(x.shape[-1], size[1], method, antialias, x.device).to(x.dtype)
    return height @ x @ width.T
''')

_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")


def resize_expr(em, src: str, size: str, method: str, antialias: bool) -> tuple[str, str]:
    """(torch source resizing the (N, C, H, W) tensor ``src`` to ``size`` like tf.image.resize, a comment)."""
    if method not in _METHODS:
        raise NotConvertible(f"interpolation={method!r}")
    if method == "nearest":
        return call("F.interpolate", Code(src), size=Code(size), mode="nearest-exact"), \
            "TensorFlow's nearest: half-pixel centres, torch's 'nearest-exact'"
    if method == "bilinear" and not antialias:
        return call("F.interpolate", Code(src), size=Code(size), mode="bilinear", align_corners=False), ""
    em.helpers.add("tf_resize")
    kwargs = {"antialias": True} if antialias else {}
    return call("tf_resize", Code(src), Code(size), method, **kwargs), \
        f"TensorFlow's {method} kernel{' with antialiasing' if antialias else ''}"


def _layout(cfg) -> str:
    return "cf" if cfg.get("data_format", "channels_last") != "channels_first" else "keras"


@converter("resizing")
def resizing(em, node, row):
    cfg = node.config
    x = em.input(node, 0, _layout(cfg))
    if x.rank != 4:
        raise NotConvertible("Resizing of a single image (rank 3): batch it first")
    height, width = int(cfg["height"]), int(cfg["width"])
    src = x.var if "float" in x.dtype else f"{x.var}.float()"
    if cfg.get("crop_to_aspect_ratio"):
        src = em.pre(node, f"crop_to_aspect({src}, {height}, {width})", "Keras crop_to_aspect_ratio")
        em.helpers.add("crop_to_aspect")
    elif cfg.get("pad_to_aspect_ratio"):
        if cfg.get("fill_mode", "constant") != "constant":
            raise NotConvertible(f"pad_to_aspect_ratio with fill_mode={cfg['fill_mode']!r}")
        src = em.pre(node, f"pad_to_aspect({src}, {height}, {width}, {literal(float(cfg['fill_value']))})",
                     "Keras pad_to_aspect_ratio")
        em.helpers.add("pad_to_aspect")
    expr, comment = resize_expr(em, src, literal((height, width)), cfg["interpolation"], bool(cfg.get("antialias")))
    em.assign(node, expr, x.perm, comment=comment)


register_helper("crop_to_aspect", '''
def crop_to_aspect(x, height, width):
    """The largest centred crop of (N, C, H, W) ``x`` with the aspect ratio height:width (Keras)."""
    h, w = x.shape[-2:]
    crop_h = max(min(h, int(w * height / width)), 1)
    crop_w = max(min(w, int(h * width / height)), 1)
    top, left = int((h - crop_h) / 2), int((w - crop_w) / 2)
    return x[..., top:top + crop_h, left:left + crop_w]
''')

register_helper("pad_to_aspect", '''
def pad_to_aspect(x, height, width, value):
    """Pad (N, C, H, W) ``x`` evenly on both sides to the aspect ratio height:width (Keras)."""
    h, w = x.shape[-2:]
    top = int((max(h, int(w * height / width)) - h) / 2)
    left = int((max(w, int(h * width / height)) - w) / 2)
    return F.pad(x, (left, left, top, top), value=value)
''')


def upsampling(em, node, row):
    """UpSampling2D with a kernel nn.Upsample does not have (bicubic, lanczos3/5, area)."""
    cfg = node.config
    x = em.input(node, 0, _layout(cfg))
    sh, sw = (int(s) for s in cfg["size"])
    size = f"({x.var}.shape[-2] * {sh}, {x.var}.shape[-1] * {sw})"
    expr, comment = resize_expr(em, x.var, size, cfg["interpolation"], False)
    em.assign(node, expr, x.perm, comment=comment)


@converter("center_crop")
def center_crop(em, node, row):
    """Keras CenterCrop: the centred window; a statically smaller image is cropped to the target
    aspect ratio and resized up (bilinear) instead, as Keras' smart_resize does."""
    cfg = node.config
    x = em.input(node, 0, _layout(cfg))
    if x.rank != 4:
        raise NotConvertible("CenterCrop of a single image (rank 3): batch it first")
    height, width = int(cfg["height"]), int(cfg["width"])
    src = x.var if "float" in x.dtype else f"{x.var}.float()"
    h, w = x.torch_shape[-2:]
    if h is not None and w is not None and (h < height or w < width):
        em.helpers.add("crop_to_aspect")
        cropped = em.pre(node, f"crop_to_aspect({src}, {height}, {width})",
                         "Keras CenterCrop of a smaller image: crop to the aspect ratio, then resize")
        em.assign(node, call("F.interpolate", Code(cropped), size=(height, width), mode="bilinear",
                             align_corners=False), x.perm)
        return
    top, left = em.temp(f"{node.name}_top"), em.temp(f"{node.name}_left")
    em.emit(f"{top}, {left} = ({src}.shape[-2] - {height}) // 2, ({src}.shape[-1] - {width}) // 2")
    em.assign(node, f"{src}[..., {top}:{top} + {height}, {left}:{left} + {width}]", x.perm,
              comment="Keras CenterCrop")
