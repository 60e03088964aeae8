"""Patterns from third-party model code (torchvision, timm, Hugging Face) that once broke the
torch -> Keras converter, each reduced to a small module. The zoo (scripts/zoo.py) finds them;
these keep them fixed without the zoo's venv."""

from __future__ import annotations

import pytest
import torch

import xlate


def _convert(module, *inputs):
    """Convert from each example (batch 1 and 2 are both usual) and gate against torch."""
    module.eval()
    return xlate.torch_to_keras(module, inputs, via="direct")


class FlattenThenHead(torch.nn.Module):
    """torchvision mobilenet_v2 / efficientnet / alexnet: pool, flatten, an elementwise op (a
    Dropout in eval mode, an activation), then Linear."""

    def __init__(self, pool):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.pool = torch.nn.AdaptiveAvgPool2d(pool)
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(8 * pool * pool, 5))

    def forward(self, x):
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return self.head(torch.nn.functional.hardswish(x) * 2.0)


@pytest.mark.parametrize("pool", [1, 3])
@pytest.mark.parametrize("batch", [1, 2])
def test_linear_after_flatten_and_elementwise_ops(pool, batch):
    _convert(FlattenThenHead(pool), torch.randn(batch, 3, 12, 12))


class PackedBias(torch.nn.Module):
    """timm BEiT / EVA: the qkv bias is cat(q_bias, zeros, v_bias), two parameters around a
    buffer, used as F.linear's bias. Both parameters must stay trainable."""

    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(8, 24, bias=False)
        self.q_bias = torch.nn.Parameter(torch.randn(8))
        self.v_bias = torch.nn.Parameter(torch.randn(8))
        self.register_buffer("k_bias", torch.zeros(8), persistent=False)

    def forward(self, x):
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        return torch.nn.functional.linear(x, self.qkv.weight, bias)


def test_linear_with_a_bias_computed_from_parameters():
    keras_model = _convert(PackedBias(), torch.randn(2, 5, 8))
    trainable = sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    assert trainable == 8 * 24 + 8 + 8
