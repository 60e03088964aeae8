"""Sizes built from the batch stay dynamic: expand / repeat / new_zeros to ``x.shape[0]`` (HF BERT,
GPT-2 and ViT embeddings expand to the batch, XCiT repeats its position encoding, HF causal masks
expand to (B, 1, T, T)), converted from batch-1 and batch-2 examples and run at other batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xlate
from xlate.record import record_of
from xlate.torch2keras.export_trace import ExportTrace
from xlate.torch2keras.fxtrace import FastTrace


class ClsExpand(nn.Module):
    """ViT's cls_token.expand(B, -1, -1) before the patch tokens."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), self.fc(x)], 1)


class PosRepeat(nn.Module):
    """timm XCiT: pos.repeat(B, 1, 1, 1), a parameter of batch 1 tiled to the batch."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 4, 5, 6))

    def forward(self, x):
        return x + self.pos.repeat(x.shape[0], 1, 1, 1)


class ComputedRepeat(nn.Module):
    """A computed value tiled by the batch on one axis and by 2 on another."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 4, 5, 6))

    def forward(self, x):
        return x + torch.tanh(self.pos).repeat(x.shape[0], 2, 1, 1)


class TokenRepeat(nn.Module):
    """A (2, 3) table repeated B times along an axis of size 2: (2B, 6), tile's order."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Parameter(torch.randn(2, 3))

    def forward(self, x):
        return torch.cat([x, torch.sigmoid(self.tok).repeat(x.shape[0], 2)], 0)


class NewZeros(nn.Module):
    """x.new_zeros(B, 2, T): padding rows of the batch's size."""

    def forward(self, x):
        return torch.cat([x, x.new_zeros(x.shape[0], 2, x.shape[2])], 1)


class CausalMaskExpand(nn.Module):
    """HF's causal mask: a T x T triangle expanded to (B, 1, T, T)."""

    def forward(self, x):
        b, t, _ = x.shape
        keep = torch.tril(torch.ones(t, t, dtype=torch.bool))
        scores = (x @ x.transpose(1, 2)).unsqueeze(1)
        return scores.masked_fill(~keep[None, None].expand(b, 1, t, t), -1e4)


CASES = {
    "cls-expand": (ClsExpand, (4, 8)),
    "pos-repeat": (PosRepeat, (4, 5, 6)),
    "computed-repeat": (ComputedRepeat, (8, 5, 6)),
    "token-repeat": (TokenRepeat, (6,)),
    "new-zeros": (NewZeros, (3, 5)),
    "causal-mask-expand": (CausalMaskExpand, (6, 8)),
}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_sizes_built_from_the_batch_keep_it_dynamic(name, batch):
    cls, rest = CASES[name]
    torch.manual_seed(0)
    module = cls().eval()
    model = xlate.torch_to_keras(module, (torch.randn(batch, *rest),), via="direct")
    assert model.inputs[0].shape[0] is None, record_of(model).notes
    assert record_of(model).dims[0]["dynamic"]
    for other in (1, 3, 5):
        x = torch.randn(other, *rest)
        with torch.no_grad():
            want = module(x).numpy()
        got = np.asarray(model(x.numpy()))
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5, (other, np.abs(got - want).max())


def test_repeat_by_the_batch_gives_the_same_answer_on_both_front_ends():
    from xlate.torch2keras.convert import emit_pinning

    module, example = PosRepeat().eval(), (torch.randn(1, 4, 5, 6),)
    answers = []
    for traced in (FastTrace(module, example), ExportTrace(module, example)):
        emit_pinning(traced)
        answers.append([(d.index, d.axis, d.dynamic) for d in traced.graph.dims])
    assert answers[0] == answers[1] and answers[0][0] == (0, 0, True)


def test_repeat_by_the_batch_survives_a_keras_reload(tmp_path):
    import keras

    torch.manual_seed(0)
    module = TokenRepeat().eval()
    model = xlate.torch_to_keras(module, (torch.randn(1, 6),), via="direct")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = torch.randn(4, 6)
    with torch.no_grad():
        want = module(x).numpy()
    assert np.abs(np.asarray(loaded(x.numpy())) - want).max() <= 1e-5
