"""ceil_mode pooling keeps the spatial sizes dynamic (torchvision googlenet / squeezenet, timm
vovnet / hgnetv2 max pools; timm avg_down ``AvgPool2d(2, 2, ceil_mode=True,
count_include_pad=False)`` in resnet*d, resnest, resnet10t): the overhang is padded by stride - 1
at every size, so one Keras graph computes torch's output at odd and even sizes alike. Only a
kernel smaller than padding + stride (where torch may drop a last window) keeps them static."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xlate
from xlate.record import record_of

POOLS = {  # name: (class, kernel, stride, padding, extra kwargs)
    "max-3-2": (torch.nn.MaxPool2d, 3, 2, 0, {}),
    "max-3-2-pad": (torch.nn.MaxPool2d, 3, 2, 1, {}),
    "max-2-1": (torch.nn.MaxPool2d, 2, 1, 0, {}),  # timm hgnetv2's stem
    "max-2-2-1d": (torch.nn.MaxPool1d, 2, 2, 0, {}),
    "avg-2-2-exclude": (torch.nn.AvgPool2d, 2, 2, 0, {"count_include_pad": False}),
    "avg-2-2-include": (torch.nn.AvgPool2d, 2, 2, 0, {}),
    "avg-3-2-pad-include": (torch.nn.AvgPool2d, 3, 2, 1, {}),
    "avg-3-2-pad-exclude": (torch.nn.AvgPool2d, 3, 2, 1, {"count_include_pad": False}),
}


class _Pooled(torch.nn.Module):
    def __init__(self, pool, channels):
        super().__init__()
        conv = torch.nn.Conv1d if isinstance(pool, torch.nn.MaxPool1d) else torch.nn.Conv2d
        self.conv = conv(3, channels, 1)
        self.pool = pool

    def forward(self, x):
        return self.pool(self.conv(x)) * 2.0


@pytest.mark.parametrize("name", list(POOLS))
@pytest.mark.parametrize("batch", [1, 2])
def test_ceil_mode_pooling_stays_dynamic_and_matches_torch_at_every_size(name, batch):
    cls, k, s, p, kwargs = POOLS[name]
    module = _Pooled(cls(k, s, p, ceil_mode=True, **kwargs), 4).eval()
    one_d = cls is torch.nn.MaxPool1d
    example = torch.randn(batch, 3, 12) if one_d else torch.randn(batch, 3, 12, 16)
    model = xlate.torch_to_keras(module, (example,), via="direct")
    assert all(d is None for d in model.inputs[0].shape[2:]), model.inputs[0].shape
    for size in ((5,), (8,), (13,)) if one_d else ((5, 6), (7, 9), (10, 11), (13, 8)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            want = module(x).numpy()
        got = np.asarray(model(x.numpy()))
        assert got.shape == want.shape, (size, got.shape, want.shape)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=f"{name} at {size}")


def test_a_kernel_smaller_than_padding_plus_stride_keeps_the_sizes_static():
    module = _Pooled(torch.nn.MaxPool2d(1, 2, 0, ceil_mode=True), 4).eval()  # torch may drop the last window
    model = xlate.torch_to_keras(module, (torch.randn(1, 3, 8, 9),), via="direct")
    assert tuple(model.inputs[0].shape[2:]) == (8, 9)
    reasons = [d.get("reason", "") for d in record_of(model).dims if not d.get("dynamic")]
    assert any("ceil_mode" in r for r in reasons), record_of(model).dims
