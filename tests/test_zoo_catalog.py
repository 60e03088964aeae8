"""The zoo's catalog labels a model a transformer by its attention modules (scripts/zoo_catalog.py):
the zoo's CNN and transformer medians are taken over those labels."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import zoo_catalog


def _model(*class_names):
    blocks = [type(name, (torch.nn.Module,), {})() for name in class_names]
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), *blocks)


def test_attention_modules_make_a_transformer():
    # timm's ViT, EVA, CaiT, XCiT, ConViT, HaloNet and Swin-V2-CR attention classes
    for name in ("Attention", "EvaAttention", "ClassAttn", "XCA", "MHSA", "HaloAttn", "WindowMultiHeadAttention"):
        assert zoo_catalog.is_transformer(_model(name)), name
    assert zoo_catalog.is_transformer(torch.nn.Sequential(torch.nn.MultiheadAttention(8, 2)))


def test_cnns_and_channel_attention_stay_cnns():
    # SKNet's and ResNeSt's attention is over kernel branches and channels; squeeze-excitation too
    for names in ((), ("SelectiveKernelAttn",), ("SplitAttn",), ("SEModule", "EcaModule"), ("ConvMixer",)):
        assert not zoo_catalog.is_transformer(_model(*names)), names
