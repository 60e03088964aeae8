"""More ONNX ops for xlate's interpreter (``xlate.onnx_torch.OPS`` takes them in), each to the ONNX
spec: what torch.onnx's exports of real models use beyond the ops tf2onnx emits for Keras layers."""

from __future__ import annotations

import torch


def _gather_elements(a, x, idx):
    axis = a.get("axis", 0)
    axis = axis + x.dim() if axis < 0 else axis
    idx = idx.long()
    return torch.gather(x, axis, torch.where(idx < 0, idx + x.shape[axis], idx))


def _trilu(a, x, k=None):
    k = 0 if k is None else int(k)
    return torch.triu(x, k) if a.get("upper", 1) else torch.tril(x, k)


MORE_OPS = {
    "GatherElements": _gather_elements,
    "Trilu": _trilu,
}
