"""Hugging Face ``save_pretrained`` folders: ``config.json`` plus ``model.safetensors``, sharded
safetensors with an index, or (only with trust: unpickling) ``pytorch_model.bin``.

The model class comes from ``config.architectures`` or ``--hf-class`` (an Auto class such as
``AutoModelForSequenceClassification``, or a concrete one); transformers builds it and loads the
weights (safetensors memory-mapped), entirely offline, after each weights file (every shard an
index names) has passed ``xlate.validate``'s checks. Every weight must fit: a missing or
mis-shaped tensor is bad input, not a silently random layer.

The module handed on returns one tensor: ``--output-key`` (``logits``, ``last_hidden_state``...),
by default the head's main output (the first one the model returns). Example inputs come from
the config: token ids within ``vocab_size`` (``--seq-len`` long), pixel values at ``image_size``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..errors import BadInputError, one_line
from .factory import offline

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
DEFAULT_SEQ_LEN = 16
# batch 2: the fast fx tracer needs two rows to tell the batch axis from the others (and at batch 1
# torch.export trips over Llama's autocast region); the converted model takes any batch anyway
BATCH = 2


def _config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInputError(f"{folder}/config.json is not readable JSON ({one_line(e, 160)})",
                            hint="write the folder again with model.save_pretrained(folder)") from None
    if not isinstance(config, dict):
        raise BadInputError(f"{folder}/config.json holds a {type(config).__name__}, not a config object",
                            hint="write the folder again with model.save_pretrained(folder)")
    if "model_type" not in config:
        raise BadInputError(f"{folder}/config.json has no model_type key: transformers cannot tell the model",
                            hint="write the folder again with model.save_pretrained(folder) (it writes model_type)")
    return config


def _weights(folder: Path, trust: bool) -> bool:
    """Whether the weights are safetensors (else pickled .bin, allowed only with trust)."""
    if any((folder / name).exists() for name in SAFE_WEIGHTS):
        return True
    if any((folder / name).exists() for name in PICKLED_WEIGHTS):
        if not trust:
            raise BadInputError(f"{folder} holds its weights as pytorch_model.bin, a pickle: loading it runs code "
                                "from the file, so xlate refuses by default",
                                hint="rerun with --trust only if you trust where it came from; safer: "
                                     "save_pretrained(folder, safe_serialization=True) writes model.safetensors")
        return False
    raise BadInputError(f"{folder} has config.json but no weights (model.safetensors, a sharded index, or "
                        "pytorch_model.bin)",
                        hint="copy the whole folder save_pretrained wrote, weights included")


def _check_weight_files(folder: Path, safetensors: bool) -> None:
    """Run ``xlate.validate``'s checks on each weights file transformers will read: the single file,
    or every shard an index names (each must be in the folder), before any of them is opened."""
    from ..validate import check_file

    single, index = SAFE_WEIGHTS if safetensors else PICKLED_WEIGHTS
    if (folder / single).exists():
        check_file(folder / single)
        return
    try:
        weight_map = json.loads((folder / index).read_text()).get("weight_map")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise BadInputError(f"{folder}/{index} is not a readable shard index ({one_line(e, 160)})",
                            hint="write the folder again with model.save_pretrained(folder)") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise BadInputError(f"{folder}/{index} has no weight_map naming the shards",
                            hint="write the folder again with model.save_pretrained(folder)")
    shards = sorted({str(v) for v in weight_map.values()})
    absent = [name for name in shards if Path(name).name != name or not (folder / name).is_file()]
    if absent:
        raise BadInputError(f"{folder}/{index} names {len(absent)} shard(s) not in the folder: "
                            f"{', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''}",
                            hint="copy every shard file save_pretrained wrote into the folder")
    for name in shards:
        check_file(folder / name)


def _model_class(folder: Path, config: dict, hf_class: str | None):
    import transformers

    if hf_class:
        cls = getattr(transformers, hf_class, None)
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise BadInputError(f"--hf-class {hf_class}: transformers {transformers.__version__} has no such model "
                                "class",
                                hint="use an Auto class (AutoModel, AutoModelForSequenceClassification, "
                                     "AutoModelForCausalLM, AutoModelForImageClassification...) or a class name "
                                     "like BertForSequenceClassification")
        return cls
    architectures = config.get("architectures") or []
    if not architectures:
        raise BadInputError(f"{folder}/config.json names no architectures, so xlate cannot tell which model "
                            "class to build",
                            hint="pass --hf-class, e.g. --hf-class AutoModel or --hf-class "
                                 "AutoModelForSequenceClassification")
    name = architectures[0]
    cls = getattr(transformers, name, None)
    if cls is None:
        custom = " (the folder ships its own code in auto_map, which xlate does not run)" if "auto_map" in config \
            else ""
        raise BadInputError(f"{folder}: unknown architecture {name!r}{custom}; transformers "
                            f"{transformers.__version__} has no such class",
                            hint="pass --hf-class with a class transformers has (an Auto class such as AutoModel "
                                 "builds from model_type), or upgrade transformers")
    return cls


def _from_pretrained(cls, folder: Path, safetensors: bool, notes: list):
    from transformers.utils import logging as hf_logging

    offline()
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # xlate shows its own progress
    try:
        model, info = cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=safetensors,
                                          output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - transformers and safetensors raise many kinds here
        raise BadInputError(f"cannot build {cls.__name__} from {folder} ({type(e).__name__}: {one_line(e, 240)})",
                            hint="the weights are damaged or do not match config.json; write the folder again "
                                 "with save_pretrained") from None
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
    _check_loading_info(folder, cls, info, notes)
    return model


def _check_loading_info(folder: Path, cls, info: dict, notes: list) -> None:
    """Missing or mis-shaped weights are bad input; weights the class does not use (a checkpoint's
    head, under --hf-class AutoModel) are left out, and the notes say how many."""
    from .state_dict import _listed

    def keys(name):
        return sorted(k if isinstance(k, str) else str(k[0]) for k in info.get(name) or ())

    parts = [f"{word} {_listed(keys(name))}" for name, word in (("missing_keys", "missing"),
                                                                 ("mismatched_keys", "shapes differ for"))
             if keys(name)]
    if info.get("error_msgs"):
        parts.append(one_line(Exception(" ".join(map(str, info["error_msgs"]))), 160))
    if parts:
        raise BadInputError(f"the weights in {folder} do not fit {cls.__name__}: {'; '.join(parts)}",
                            hint="build the class the folder was saved from (config.architectures), or pick it "
                                 "with --hf-class")
    if keys("unexpected_keys"):
        notes.append(f"left out {_listed(keys('unexpected_keys'))}: weights {cls.__name__} does not use")


@functools.cache
def _output_module_cls():
    import torch

    class HFOutput(torch.nn.Module):
        """A Hugging Face model called with its inputs by name, returning one of its outputs."""

        def __init__(self, model, input_names, key):
            super().__init__()
            self.model = model
            self.input_names = tuple(input_names)
            self.key = key

        def forward(self, *inputs):
            out = self.model(**dict(zip(self.input_names, inputs)), return_dict=True)
            return out[self.key]

    return HFOutput


def _example(model, config, seq_len: int | None):
    """(input name, tensor) the config describes for the model's main input."""
    import torch

    name = getattr(model, "main_input_name", "input_ids")
    g = torch.Generator().manual_seed(0)
    text = getattr(config, "text_config", None) or config
    if name == "input_ids":
        vocab = getattr(text, "vocab_size", None)
        if not isinstance(vocab, int) or vocab <= 0:
            raise BadInputError("config.json has no vocab_size, so xlate cannot make token ids for input_ids",
                                hint="add vocab_size to config.json, or give --input-shape 2,16 --input-dtype int64")
        limit = getattr(text, "max_position_embeddings", None)
        length = seq_len or (min(DEFAULT_SEQ_LEN, limit) if isinstance(limit, int) and limit > 0 else DEFAULT_SEQ_LEN)
        if isinstance(limit, int) and limit > 0 and length > limit:
            raise BadInputError(f"--seq-len {length} is longer than the model's max_position_embeddings {limit}",
                                hint=f"use --seq-len {limit} or less")
        return name, torch.randint(0, vocab, (BATCH, length), generator=g)
    if name == "pixel_values":
        vision = getattr(config, "vision_config", None) or config
        size = getattr(vision, "image_size", None)
        if isinstance(size, int):
            size = (size, size)
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise BadInputError("config.json has no image_size, so xlate cannot make pixel_values",
                                hint="give --input-shape 2,3,H,W (e.g. --input-shape 2,3,224,224)")
        channels = getattr(vision, "num_channels", 3)
        return name, torch.randn((BATCH, channels, *map(int, size)), generator=g)
    if name == "input_values":
        return name, torch.randn((BATCH, seq_len or 16000), generator=g)
    raise BadInputError(f"xlate cannot make example inputs for {type(model).__name__}'s main input {name!r}",
                        hint="give --input-shape (and --input-dtype) for it")


def load_hf_folder(folder, *, hf_class=None, output_key=None, seq_len=None, trust=False, example=None,
                   notes=None):
    """(module returning one output tensor, example inputs) from a ``save_pretrained`` folder."""
    import torch

    folder = Path(folder)
    config = _config(folder)
    safetensors = _weights(folder, trust)
    _check_weight_files(folder, safetensors)
    cls = _model_class(folder, config, hf_class)
    notes = [] if notes is None else notes
    model = _from_pretrained(cls, folder, safetensors, notes).eval()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # no past_key_values among the outputs
    name, ids = _example(model, model.config, seq_len) if example is None else (
        getattr(model, "main_input_name", "input_ids"), example[0])
    if example is not None and len(example) != 1:
        raise BadInputError(f"{len(example)} --input-shape for a Hugging Face folder; it takes one ({name})",
                            hint="give one --input-shape, for the model's main input")
    with torch.no_grad():
        try:
            out = model(**{name: ids}, return_dict=True)
        except Exception as e:  # noqa: BLE001 - the model's own checks on its inputs
            raise BadInputError(f"{type(model).__name__} cannot run on {name} of shape {tuple(ids.shape)} "
                                f"({type(e).__name__}: {one_line(e, 200)})",
                                hint="fix --input-shape / --seq-len, or the config values they come from") from None
    tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
    key = output_key or (tensors[0] if tensors else None)
    if key not in tensors:
        raise BadInputError(f"--output-key {output_key}: {type(model).__name__} returns no tensor of that name "
                            f"(its outputs: {', '.join(tensors)})",
                            hint="choose one of its outputs, or leave --output-key out for the first (the head's "
                                 "main output)")
    notes.append(f"{type(model).__name__} from {folder} ({'safetensors' if safetensors else 'pickled .bin'}); "
                 f"input {name} {tuple(ids.shape)}, output {key!r}")
    return _output_module_cls()(model, [name], key).eval(), (ids,)
