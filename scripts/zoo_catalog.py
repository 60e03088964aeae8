"""The model zoo's catalog: which third-party models the zoo converts, and how each is built.

Owns the list (torchvision builders, the smallest timm model of each architecture module, Hugging
Face architectures from small configs at realistic depth), building a model with random weights
made realistic (BatchNorm statistics calibrated, zero-initialised weights given noise), and its
example inputs. It does not convert or judge anything: scripts/zoo.py does.

Runs in .venv-zoo (scripts/setup_zoo.sh). torch and torchvision are imported before TensorFlow:
``import tensorflow; import torchvision`` segfaults in that venv.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMM_SELECTION = HERE / "zoo_timm.json"
PARAM_BUDGET = 150_000_000  # larger models belong to the large-model benchmark (scripts/bench_scale.py)
FAMILIES_PER_MODULE = 3  # a timm module's smallest model, plus the smallest of up to 2 other families in it


@dataclass(frozen=True)
class Entry:
    id: str  # "torchvision/resnet50", "timm/levit_128s", "hf/llama"
    family: str  # torchvision | timm | hf
    kind: str  # cnn | vit | decoder | encoder | segmentation | video | audio | multimodal
    spec: dict = field(default_factory=dict, hash=False, compare=False)


# --- torchvision ------------------------------------------------------------------------------

TV_VIDEO_INPUT = {"mvit_v1_b": (16, 224), "mvit_v2_s": (16, 224), "s3d": (16, 224)}


def torchvision_entries() -> list[Entry]:
    import torchvision.models as M

    out = []
    for module, kind in ((M, "cnn"), (M.segmentation, "segmentation"), (M.video, "video")):
        for name in M.list_models(module=module):
            if any(k in name for k in ("vit_", "swin", "maxvit", "mvit")):  # attention, also in video
                tag = "vit"
            else:
                tag = kind
            out.append(Entry(f"torchvision/{name}", "torchvision", tag, {"name": name, "group": kind}))
    return out


def _build_torchvision(spec):
    import torch
    import torchvision.models as M

    name, group = spec["name"], spec["group"]
    kwargs = {"weights": None}
    if group == "segmentation":
        kwargs["weights_backbone"] = None
    model = M.get_model(name, **kwargs)
    if group == "video":
        frames, size = TV_VIDEO_INPUT.get(name, (8, 112))
        shape = (3, frames, size, size)
    else:
        shape = (3, 299, 299) if name == "inception_v3" else (3, 224, 224)
    return model, _images(torch, shape)


# --- timm ---------------------------------------------------------------------------------------

def timm_entries() -> list[Entry]:
    if not TIMM_SELECTION.exists():
        raise SystemExit(f"{TIMM_SELECTION} is missing: run `scripts/zoo.py select-timm`")
    data = json.loads(TIMM_SELECTION.read_text())
    return [Entry(f"timm/{m['name']}", "timm", m["kind"], m) for m in data["models"]]


def _build_timm(spec):
    import timm
    import torch

    model = timm.create_model(spec["name"], pretrained=False)
    return model, _images(torch, tuple(spec["input_size"]))


def select_timm() -> dict:
    """The smallest real model (no ``test_*`` variants) of each timm architecture module, plus the
    smallest of up to two further families in modules that hold several (byobnet's gernet/repvgg),
    within the parameter budget. Built on the meta device (no weights allocated) to count."""
    import timm
    import torch

    chosen, excluded = {}, {}
    for module in timm.list_modules():
        families = {}
        for name in timm.list_models(module=module):
            if name.startswith("test_"):
                continue
            try:
                with torch.device("meta"):
                    model = timm.create_model(name, pretrained=False)
            except Exception as e:  # noqa: BLE001 - a builder that cannot run on meta: skip it
                excluded[name] = f"cannot be built: {type(e).__name__}"
                continue
            params = sum(p.numel() for p in model.parameters())
            size = list(model.pretrained_cfg.get("input_size", (3, 224, 224)))
            family = re.match(r"[a-z]+", name).group(0)
            item = {"name": name, "module": module, "params": params, "input_size": size,
                    "kind": "vit" if is_transformer(model) else "cnn"}
            if params > PARAM_BUDGET or max(size[1:]) > 512:
                excluded.setdefault(name, f"{params / 1e6:.0f}M parameters at {size[1]}px: over the zoo budget")
                continue
            best = families.get(family)
            if best is None or params < best["params"]:
                families[family] = item
        if not families:
            continue
        ranked = sorted(families.values(), key=lambda i: i["params"])
        chosen[ranked[0]["name"]] = ranked[0]  # the module's smallest
        for item in ranked[1:FAMILIES_PER_MODULE]:  # the smallest of other families in it (byobnet's repvgg...)
            chosen.setdefault(item["name"], item)
    models = sorted(chosen.values(), key=lambda i: (i["module"], i["params"]))
    return {"timm": timm.__version__, "models": models,
            "excluded_modules": sorted({m for m in timm.list_modules()} - {i["module"] for i in models})}


#: module classes that compute attention between tokens or positions (timm's Attention, EvaAttention,
#: ClassAttn, XCA, MHSA, HaloAttn, WindowMultiHeadAttention...): a model with one counts as a
#: transformer (hybrids such as CoAtNet, MaxViT and MobileViT included), not a CNN
ATTENTION_CLASS = re.compile(r"attn|attention|^xca$|^mhsa$", re.IGNORECASE)
#: attention over channels or kernel branches only, which CNNs use (SKNet, ResNeSt)
CHANNEL_ATTENTION = frozenset({"SelectiveKernelAttn", "SplitAttn"})


def is_transformer(model) -> bool:
    """Whether ``model`` has an attention module (by class name; channel attention excepted)."""
    import torch

    return any(isinstance(m, torch.nn.MultiheadAttention)
               or (ATTENTION_CLASS.search(type(m).__name__) and type(m).__name__ not in CHANNEL_ATTENTION)
               for m in model.modules())


# --- Hugging Face -------------------------------------------------------------------------------

def _vision():
    return {"hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 128}


TEXT = {"vocab_size": 1000, "max_position_embeddings": 128, "pad_token_id": 0}
ENC = dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=128, **TEXT)
DEC = dict(hidden_size=64, num_hidden_layers=8, num_attention_heads=4, intermediate_size=128, use_cache=False, **TEXT)

# name: (config class, model class, config kwargs, inputs, kind)
HF_SPECS = {
    # encoders
    "bert": ("BertConfig", "BertModel", ENC, "text", "encoder"),
    "roberta": ("RobertaConfig", "RobertaModel", ENC, "text", "encoder"),
    "distilbert": ("DistilBertConfig", "DistilBertModel",
                   dict(dim=64, n_layers=6, n_heads=4, hidden_dim=128, **TEXT), "text", "encoder"),
    "albert": ("AlbertConfig", "AlbertModel", dict(embedding_size=32, **ENC), "text", "encoder"),
    "electra": ("ElectraConfig", "ElectraModel", dict(embedding_size=32, **ENC), "text", "encoder"),
    "deberta_v2": ("DebertaV2Config", "DebertaV2Model", ENC, "text", "encoder"),
    "xlm_roberta": ("XLMRobertaConfig", "XLMRobertaModel", ENC, "text", "encoder"),
    "mpnet": ("MPNetConfig", "MPNetModel", ENC, "text", "encoder"),
    "ernie": ("ErnieConfig", "ErnieModel", ENC, "text", "encoder"),
    "megatron_bert": ("MegatronBertConfig", "MegatronBertModel", ENC, "text", "encoder"),
    "convbert": ("ConvBertConfig", "ConvBertModel", ENC, "text", "encoder"),
    "roformer": ("RoFormerConfig", "RoFormerModel", ENC, "text", "encoder"),
    "mobilebert": ("MobileBertConfig", "MobileBertModel",
                   dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=64,
                        embedding_size=32, intra_bottleneck_size=32, true_hidden_size=32, **TEXT), "text", "encoder"),
    "modernbert": ("ModernBertConfig", "ModernBertModel", ENC, "text", "encoder"),
    "t5_encoder": ("T5Config", "T5EncoderModel",
                   {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 6, "num_heads": 4, "vocab_size": 1000}, "text", "encoder"),
    "bart_encoder": ("BartConfig", "BartModel.encoder",
                     dict(d_model=64, encoder_layers=6, decoder_layers=1, encoder_attention_heads=4,
                          decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, **TEXT),
                     "text", "encoder"),
    # decoders
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, **DEC), "text", "decoder"),
    "llama_mqa": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=1, **DEC), "text", "decoder"),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(num_key_value_heads=2, **DEC), "text", "decoder"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=2, **DEC), "text", "decoder"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(num_key_value_heads=2, head_dim=16, **DEC), "text", "decoder"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(num_key_value_heads=1, head_dim=16, **DEC), "text", "decoder"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(num_key_value_heads=2, head_dim=16, **DEC), "text",
               "decoder"),
    "phi": ("PhiConfig", "PhiForCausalLM", DEC, "text", "decoder"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(num_key_value_heads=2, **DEC), "text", "decoder"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             {"n_embd": 64, "n_layer": 8, "n_head": 4, "n_positions": 128, "vocab_size": 1000, "use_cache": False}, "text",
             "decoder"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", DEC, "text", "decoder"),
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM",
                dict(hidden_size=64, num_layers=8, num_heads=4, attention_types=[[["global", "local"], 4]],
                     window_size=8, intermediate_size=128, use_cache=False, **TEXT), "text", "decoder"),
    "gptj": ("GPTJConfig", "GPTJForCausalLM",
             {"n_embd": 64, "n_layer": 8, "n_head": 4, "rotary_dim": 8, "n_positions": 128, "vocab_size": 1000, "use_cache": False},
             "text", "decoder"),
    "gpt_bigcode_mqa": ("GPTBigCodeConfig", "GPTBigCodeForCausalLM",
                        {"n_embd": 64, "n_layer": 8, "n_head": 4, "multi_query": True, "n_positions": 128, "vocab_size": 1000,
                             "use_cache": False}, "text", "decoder"),
    "falcon": ("FalconConfig", "FalconForCausalLM",
               {"hidden_size": 64, "num_hidden_layers": 8, "num_attention_heads": 4, "multi_query": True, "vocab_size": 1000,
                    "use_cache": False}, "text", "decoder"),
    "opt": ("OPTConfig", "OPTForCausalLM",
            dict(hidden_size=64, num_hidden_layers=8, num_attention_heads=4, ffn_dim=128, word_embed_proj_dim=64,
                 use_cache=False, **TEXT), "text", "decoder"),
    "bloom": ("BloomConfig", "BloomForCausalLM",
              {"hidden_size": 64, "n_layer": 8, "n_head": 4, "vocab_size": 1000, "use_cache": False}, "text", "decoder"),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", dict(num_key_value_heads=2, **DEC), "text", "decoder"),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(num_key_value_heads=2, **DEC), "text", "decoder"),
    "granite": ("GraniteConfig", "GraniteForCausalLM", dict(num_key_value_heads=2, **DEC), "text", "decoder"),
    "starcoder2": ("Starcoder2Config", "Starcoder2ForCausalLM", dict(num_key_value_heads=2, **DEC), "text",
                   "decoder"),
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM",
                {"n_embd": 64, "n_layer": 8, "n_head": 4, "rotary_dim": 8, "n_positions": 128, "n_ctx": 128, "vocab_size": 1000,
                     "use_cache": False}, "text", "decoder"),
    "biogpt": ("BioGptConfig", "BioGptForCausalLM", DEC, "text", "decoder"),
    "xglm": ("XGLMConfig", "XGLMForCausalLM",
             dict(d_model=64, num_layers=8, attention_heads=4, ffn_dim=128, use_cache=False, **TEXT), "text",
             "decoder"),
    # vision
    "vit": ("ViTConfig", "ViTModel", dict(image_size=64, patch_size=8, **_vision()), "image64", "vit"),
    "deit": ("DeiTConfig", "DeiTModel", dict(image_size=64, patch_size=8, **_vision()), "image64", "vit"),
    "beit": ("BeitConfig", "BeitModel", dict(image_size=64, patch_size=8, use_relative_position_bias=True, **_vision()),
             "image64", "vit"),
    "dinov2": ("Dinov2Config", "Dinov2Model", dict(image_size=64, patch_size=8, **_vision()), "image64", "vit"),
    "swin": ("SwinConfig", "SwinModel",
             {"image_size": 64, "patch_size": 4, "embed_dim": 32, "depths": [2, 2, 2], "num_heads": [2, 4, 8], "window_size": 4},
             "image64", "vit"),
    "convnext": ("ConvNextConfig", "ConvNextModel",
                 {"hidden_sizes": [32, 64, 128, 256], "depths": [2, 2, 4, 2]}, "image64", "cnn"),
    "convnextv2": ("ConvNextV2Config", "ConvNextV2Model",
                   {"hidden_sizes": [32, 64, 128, 256], "depths": [2, 2, 4, 2]}, "image64", "cnn"),
    "resnet": ("ResNetConfig", "ResNetModel",
               {"embedding_size": 32, "hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 2, 2]}, "image64", "cnn"),
    "regnet": ("RegNetConfig", "RegNetModel", {"depths": [1, 1, 2, 1], "hidden_sizes": [32, 64, 128, 256]}, "image64",
               "cnn"),
    "mobilenet_v2": ("MobileNetV2Config", "MobileNetV2Model", {"image_size": 64}, "image64", "cnn"),
    "mobilevit": ("MobileViTConfig", "MobileViTModel", {"image_size": 64}, "image64", "vit"),
    "segformer": ("SegformerConfig", "SegformerForSemanticSegmentation",
                  {"hidden_sizes": [16, 32, 64, 128], "num_attention_heads": [1, 2, 4, 8], "decoder_hidden_size": 64,
                       "depths": [2, 2, 2, 2]}, "image64", "segmentation"),
    "levit": ("LevitConfig", "LevitModel", {"image_size": 64}, "image64", "vit"),
    "poolformer": ("PoolFormerConfig", "PoolFormerModel", {"hidden_sizes": [32, 64, 128, 256]}, "image64", "cnn"),
    "efficientnet": ("EfficientNetConfig", "EfficientNetModel", {"image_size": 64, "width_coefficient": 1.0, "hidden_dim": 1280,
                                                                   "depth_coefficient": 1.0}, "image64", "cnn"),
    "clip_vision": ("CLIPVisionConfig", "CLIPVisionModel", dict(image_size=64, patch_size=8, **_vision()), "image64",
                    "vit"),
    "clip_text": ("CLIPTextConfig", "CLIPTextModel", ENC, "text", "encoder"),
    "siglip_vision": ("SiglipVisionConfig", "SiglipVisionModel", dict(image_size=64, patch_size=8, **_vision()),
                      "image64", "vit"),
    # audio
    "whisper_encoder": ("WhisperConfig", "WhisperModel.encoder",
                        {"d_model": 64, "encoder_layers": 6, "decoder_layers": 1, "encoder_attention_heads": 4,
                             "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "num_mel_bins": 16,
                             "max_source_positions": 32, "vocab_size": 1000, "pad_token_id": 0}, "mel", "audio"),
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model",
                 {"hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 128,
                      "conv_dim": [32, 32, 32], "conv_stride": [5, 2, 2], "conv_kernel": [10, 3, 3],
                      "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}, "wave", "audio"),
    "hubert": ("HubertConfig", "HubertModel",
               {"hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 128,
                    "conv_dim": [32, 32, 32], "conv_stride": [5, 2, 2], "conv_kernel": [10, 3, 3],
                    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}, "wave", "audio"),
}


def hf_entries() -> list[Entry]:
    return [Entry(f"hf/{name}", "hf", kind, {"name": name}) for name, (*_, kind) in HF_SPECS.items()]


def _build_hf(spec):
    import torch
    import transformers

    config_cls, model_cls, kwargs, inputs, _ = HF_SPECS[spec["name"]]
    config = getattr(transformers, config_cls)(**kwargs)
    top, _, sub = model_cls.partition(".")
    model = getattr(transformers, top)(config)
    if sub:
        model = getattr(model, sub)
    if inputs == "text":
        vocab = config.vocab_size

        def example(batch, seed):
            g = torch.Generator().manual_seed(seed)
            return (torch.randint(0, vocab, (batch, 16), generator=g),)
        return model, example
    if inputs == "image64":
        return model, _images(torch, (getattr(config, "num_channels", 3), 64, 64))
    if inputs == "mel":
        return model, _floats(torch, (config.num_mel_bins, 2 * config.max_source_positions))
    if inputs == "wave":
        return model, _floats(torch, (1600,))
    raise ValueError(inputs)


# --- building, made realistic -------------------------------------------------------------------

def _floats(torch, shape):
    def example(batch, seed):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn((batch, *shape), generator=g),)
    return example


_images = _floats


FAMILIES = {"torchvision": torchvision_entries, "timm": timm_entries, "hf": hf_entries}


def entries(family: str | None = None) -> list[Entry]:
    """The catalog, or one family of it."""
    return [e for name, make in FAMILIES.items() if family in (None, name) for e in make()]


def build(entry: Entry):
    """(module in eval mode with realistic random weights, example(batch, seed) -> input tuple)."""
    import torch

    torch.manual_seed(0)
    builder = {"torchvision": _build_torchvision, "timm": _build_timm, "hf": _build_hf}[entry.family]
    model, example = builder(entry.spec)
    noise_zero_weights(model)
    calibrate_batchnorm(model, example)
    return model.eval(), example


def noise_zero_weights(model, scale: float = 0.02) -> int:
    """Zero-initialised weights (residual-branch BatchNorm gammas, zero-init heads, layer-scale
    gates) get small seeded noise, so the branches they gate contribute and parity means something.
    Biases stay as they are. Returns how many tensors changed."""
    import torch

    g = torch.Generator().manual_seed(1234)
    changed = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dtype.is_floating_point and p.numel() > 1 and not name.endswith("bias") and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * scale)
                changed += 1
    return changed


def calibrate_batchnorm(model, example, batches: int = 3) -> int:
    """Running statistics from a few seeded batches in train mode (a cumulative average), then the
    momentum restored: the statistics of a trained network, not the 0/1 of a fresh one."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for k in range(batches):
            model(*example(4, 100 + k))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return len(norms)
