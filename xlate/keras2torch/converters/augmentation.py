"""Keras image augmentation layers.

The random augmentation layers (RandomFlip, RandomRotation, RandAugment, MixUp, ...) and
Equalization/Solarization transform images only when called with ``training=True``; at inference
Keras returns the images unchanged, so the generated module is the identity there too. Their
random training-time transforms are not written into model.py (record note, table limitation):
augment in the torch data pipeline instead. AutoContrast and ContrastLimitedAdaptiveHistogramEqualization
act at inference as well and are written out (``clahe`` follows Keras' vectorized algorithm step by
step: tile histograms, clipping and redistribution, CDFs, bilinear blending of neighbouring tiles).
"""

from __future__ import annotations

from ..helpers import register_helper
from ..registry import NotConvertible, converter
from ..source import literal


@converter("augmentation")
def augmentation(em, node, row):
    x = em.input(node, 0)
    em.notes.append(f"{node.name}: Keras {type(node.op).__name__} augments images in training only; the torch "
                    "module is the identity (augment in the torch data pipeline, e.g. torchvision.transforms.v2)")
    em.alias(node, x)


@converter("auto_contrast")
def auto_contrast(em, node, row):
    cfg = node.config
    x = em.input(node, 0, "keras")
    lo, hi = (float(v) for v in cfg["value_range"])
    src = x.var if "float" in x.dtype else f"{x.var}.float()"
    v = em.temp(f"{node.name}_0_255")
    if (lo, hi) == (0.0, 255.0):
        em.emit(f"{v} = {src}")
    else:
        em.emit(f"{v} = ({src} - {literal(lo)}) / {literal(hi - lo)} * 255.0", "to the 0..255 range")
    low, high = em.temp(f"{node.name}_low"), em.temp(f"{node.name}_high")
    em.emit(f"{low}, {high} = {v}.amin(dim=(1, 2), keepdim=True), {v}.amax(dim=(1, 2), keepdim=True)",
            "per image and channel (Keras reduces axes 1 and 2)")
    out = em.temp(f"{node.name}_out")
    scale = f"(255.0 / ({high} - {low}))"
    em.emit(f"{out} = ({v} * {scale} - {low} * {scale}).clamp(0.0, 255.0)")
    if (lo, hi) != (0.0, 255.0):
        em.emit(f"{out} = {out} / 255.0 * {literal(hi - lo)} + {literal(lo)}", "back to the value range")
    em.assign(node, f"torch.where({out}.isnan(), {src}, {out})", comment="flat channels (0/0) are left as they are")


register_helper("clahe", '''
def clahe(x, value_range, clip_limit, grid):
    """Keras' ContrastLimitedAdaptiveHistogramEqualization of (N, H, W, C) images ``x``."""
    lo, hi = value_range
    images = (x.float() - lo) / (hi - lo) * 255.0
    n, height, width, channels = images.shape
    grid_h, grid_w = grid
    tile_h, tile_w = -(-height // grid_h), -(-width // grid_w)
    pad_h, pad_w = tile_h * grid_h - height, tile_w * grid_w - width
    padded = torch.cat([images, images.flip(1)[:, :pad_h]], 1)  # numpy's 'symmetric' padding
    padded = torch.cat([padded, padded.flip(2)[:, :, :pad_w]], 2)
    tiles = padded.reshape(n, grid_h, tile_h, grid_w, tile_w, channels).permute(0, 1, 3, 5, 2, 4)
    values = tiles.reshape(n, grid_h, grid_w, channels, tile_h * tile_w).to(torch.int32).clamp(0, 255)
    hists = (values.unsqueeze(-1) == torch.arange(256, device=x.device)).float().sum(-2)
    if clip_limit > 0:
        clipped = hists.clamp(0, clip_limit * tile_h * tile_w / 256.0)
        hists = clipped + (hists - clipped).sum(-1, keepdim=True) / 256.0
    cdf = hists.cumsum(-1)
    cdf_min = cdf.amin(-1, keepdim=True)
    denominator = tile_h * tile_w - cdf_min
    cdf = ((cdf - cdf_min) * 255.0 / torch.where(denominator == 0, 1.0, denominator)).clamp(0, 255)
    cdf = torch.cat([cdf[:, :1], cdf, cdf[:, -1:]], 1)
    cdf = torch.cat([cdf[:, :, :1], cdf, cdf[:, :, -1:]], 2)  # (N, grid_h + 2, grid_w + 2, C, 256)
    y = (torch.arange(tile_h * grid_h, dtype=torch.float32, device=x.device) - tile_h / 2.0) / tile_h + 1.0
    xs = (torch.arange(tile_w * grid_w, dtype=torch.float32, device=x.device) - tile_w / 2.0) / tile_w + 1.0
    y0, x0 = y.floor(), xs.floor()
    wy, wx = (y - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    y0, y1 = y0.clamp(0, grid_h + 1).long(), (y0 + 1).clamp(0, grid_h + 1).long()
    x0, x1 = x0.clamp(0, grid_w + 1).long(), (x0 + 1).clamp(0, grid_w + 1).long()
    pixels = padded.clamp(0, 255).to(torch.int32).long()
    b = torch.arange(n, device=x.device)[:, None, None, None]
    c = torch.arange(channels, device=x.device)[None, None, None, :]

    def look(rows, cols):
        return cdf[b, rows[None, :, None, None], cols[None, None, :, None], c, pixels]

    top = look(y0, x0) * (1.0 - wx) + look(y0, x1) * wx
    bottom = look(y1, x0) * (1.0 - wx) + look(y1, x1) * wx
    result = (top * (1.0 - wy) + bottom * wy)[:, :height, :width]
    return (result / 255.0 * (hi - lo) + lo).to(x.dtype)
''')


@converter("clahe")
def contrast_limited_equalization(em, node, row):
    cfg = node.config
    layout = (0, 2, 3, 1) if cfg.get("data_format") == "channels_first" else "keras"
    x = em.input(node, 0, layout)
    if x.rank != 4:
        raise NotConvertible("a single image (rank 3): batch it first")
    em.helpers.add("clahe")
    lo, hi = (float(v) for v in cfg["value_range"])
    grid = tuple(int(g) for g in cfg["tile_grid_size"])
    em.assign(node, f"clahe({x.var}, {literal((lo, hi))}, {literal(float(cfg['clip_limit']))}, {literal(grid)})",
              x.perm, comment="Keras ContrastLimitedAdaptiveHistogramEqualization (NHWC)")
