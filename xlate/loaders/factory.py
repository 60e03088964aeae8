"""``--model-class MODULE:CALLABLE`` with ``--model-args JSON``: build a torch model from a class or
any factory function, offline.

``MODULE`` is importable from the current folder (or a ``path/to/file.py``); ``CALLABLE`` may be
dotted (``Net.from_config``). ``--model-args`` is a JSON object (keyword arguments) or list
(positional ones). ``timm:NAME`` is ``timm.create_model("NAME", pretrained=False, ...)``;
torchvision's builders (``torchvision.models:resnet18``) are plain factories. Nothing is ever
downloaded: ``pretrained=True`` or a named ``weights=`` enum is refused with a hint to pass the
weights file, and the Hugging Face hub is switched to offline mode before a factory runs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from ..errors import BadInputError, one_line

MODEL_ARGS_HINT = ("write a JSON object for keyword arguments, e.g. --model-args '{\"num_classes\": 10}', or a "
                   "list for positional ones, e.g. --model-args '[\"resnet50\"]'")


@contextlib.contextmanager
def cwd_on_path():
    """Make modules in the current folder importable, as ``python -m`` would."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def offline() -> None:
    """Keep Hugging Face libraries (transformers, timm's hub) from reaching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _import_module(spec: str, module_name: str):
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.exists():
                raise BadInputError(f"--model-class: {file} does not exist", hint="check the path to the .py file")
            mod_spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[file.stem] = module
            mod_spec.loader.exec_module(module)
            return module
        with cwd_on_path():
            return importlib.import_module(module_name)
    except BadInputError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises on import
        raise BadInputError(
            f"--model-class {spec}: cannot import {module_name!r} ({type(e).__name__}: {one_line(e)})",
            hint=f"run xlate from the folder that holds {module_name.replace('.', '/')}.py, or add it to PYTHONPATH",
        ) from None


def import_model_class(spec: str):
    """``"module:Class"`` (importable from the current folder) or ``"path/file.py:Class"``; the
    attribute may be dotted (``module:Net.from_config``) and may be any callable."""
    module_name, sep, class_name = str(spec).rpartition(":")
    if not sep or not module_name or not class_name:
        raise BadInputError(f"--model-class {spec!r} is not of the form module:Class",
                            hint="e.g. --model-class mynet:Net for class Net in ./mynet.py")
    module = _import_module(spec, module_name)
    obj = module
    for part in class_name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise BadInputError(f"--model-class {spec}: module {module_name!r} has no {class_name!r}",
                                hint="check the spelling of the class name (it is case-sensitive)")
    return obj


def parse_model_args(text) -> tuple[list, dict]:
    """``--model-args``: a JSON object -> keyword arguments, a JSON list -> positional ones."""
    if text is None or text == "":
        return [], {}
    if isinstance(text, dict):
        return [], dict(text)
    if isinstance(text, (list, tuple)):
        return list(text), {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"--model-args is not valid JSON ({e.msg} at character {e.pos}): {text[:80]}",
                            hint=MODEL_ARGS_HINT) from None
    if isinstance(value, dict):
        return [], value
    if isinstance(value, list):
        return value, {}
    raise BadInputError(f"--model-args must be a JSON object or list, not a {type(value).__name__}",
                        hint=MODEL_ARGS_HINT)


def _refuse_downloads(spec: str, kwargs: dict) -> None:
    """``pretrained=True`` (any library's convention) and torchvision's ``weights=`` enums download."""
    if kwargs.get("pretrained"):
        raise BadInputError(f"--model-class {spec} with pretrained=true would download weights; xlate never does",
                            hint="build it with pretrained false and pass the weights file with --weights")
    weights = kwargs.get("weights")
    if str(spec).startswith("torchvision") and weights is not None:
        raise BadInputError(f"--model-class {spec} with weights={weights!r} would download weights; xlate never does",
                            hint="leave weights out (random initialization) and pass the file with --weights")


def _timm_factory(spec: str, name: str):
    """``timm:NAME`` -> ``timm.create_model(NAME, pretrained=False, ...)``; other timm attributes as they are."""
    try:
        import timm
    except Exception as e:  # noqa: BLE001 - timm imports torchvision, which may not fit this torch
        raise BadInputError(f"--model-class {spec}: cannot import timm ({type(e).__name__}: {one_line(e)})",
                            hint="install timm (and a torchvision built for this torch) in this environment") from None
    if hasattr(timm, name):
        return getattr(timm, name)
    if not timm.is_model(name):
        raise BadInputError(f"--model-class {spec}: timm has no model {name!r}",
                            hint="list the names with python -c \"import timm; print(timm.list_models('resnet*'))\"")

    def create(*args, **kwargs):
        return timm.create_model(name, *args, **{"pretrained": False, **kwargs})

    create.__name__ = name
    return create


def build_model(spec: str, model_args=None):
    """Call the class or factory ``spec`` names with ``--model-args``; an ``nn.Module`` in eval mode."""
    import torch

    args, kwargs = parse_model_args(model_args)
    _refuse_downloads(spec, kwargs)
    offline()
    module_name, _, attr = str(spec).rpartition(":")
    if module_name == "timm" and attr:
        factory = _timm_factory(spec, attr)
        if attr == "create_model":
            kwargs.setdefault("pretrained", False)
    else:
        factory = import_model_class(spec)
    if not callable(factory):
        raise BadInputError(f"--model-class {spec} is a {type(factory).__name__}, not a class or a function",
                            hint="name an nn.Module subclass or a function that returns one")
    name = getattr(factory, "__name__", str(spec))
    try:
        model = factory(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the user's constructor or factory
        shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        hint = ("pass its arguments with --model-args (a JSON object or list)" if not (args or kwargs)
                else "check --model-args against the signature of " + name)
        raise BadInputError(f"--model-class {spec}: {name}({shown}) failed ({type(e).__name__}: {one_line(e)})",
                            hint=hint) from None
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"--model-class {spec} returned a {type(model).__name__}, not a torch.nn.Module",
                            hint="name the nn.Module subclass or a factory that returns one")
    return model.eval()


def factory_example_inputs(module):
    """Example inputs a model declares itself: timm's ``pretrained_cfg['input_size']`` (batch 2, which
    the fast fx tracer needs to tell the batch axis)."""
    import torch

    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(isinstance(d, int) for d in size)):
        return None
    return (torch.randn((2, *size), generator=torch.Generator().manual_seed(0)),)
