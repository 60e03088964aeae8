"""Folders written by ``xlate tf2torch`` / ``xlate onnx2torch``: ``model.py`` (plain PyTorch source)
plus ``model.safetensors`` (or ``model.pth``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import BadInputError, one_line
from .state_dict import read_state_dict

TORCH_PACKAGE_CODE = "model.py"


def load_torch_package(folder) -> object:
    """Load a folder written by ``xlate tf2torch`` as an ``nn.Module`` in eval mode.

    Imports its ``model.py`` (plain PyTorch source, readable before running), builds class ``Net``
    (or the file's only ``nn.Module`` class) and loads ``model.safetensors`` (or ``model.pth``,
    with ``weights_only=True``).
    """
    import torch

    folder = Path(folder)
    code = folder / TORCH_PACKAGE_CODE
    name = f"_xlate_package_{abs(hash(str(folder.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(name, code)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the file's code raises
        raise BadInputError(f"cannot import {code} ({type(e).__name__}: {one_line(e)})",
                            hint="write the folder again with `xlate tf2torch MODEL -o FOLDER --force`") from None
    classes = [v for v in vars(module).values()
               if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == name]
    cls = getattr(module, "Net", None) or (classes[0] if len(classes) == 1 else None)
    if cls is None:
        raise BadInputError(f"{code} defines no class Net and {len(classes)} nn.Module classes",
                            hint="point at a folder written by `xlate tf2torch`")
    try:
        net = cls()
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{code}: {cls.__name__}() failed ({type(e).__name__}: {one_line(e)})",
                            hint="write the folder again with `xlate tf2torch MODEL -o FOLDER --force`") from None
    weights = [folder / "model.safetensors", folder / "model.pth"]
    found = [w for w in weights if w.exists()]
    if not found:
        raise BadInputError(f"{folder} has {TORCH_PACKAGE_CODE} but no weights (model.safetensors or model.pth)",
                            hint="copy the whole folder that `xlate tf2torch` wrote")
    fmt = "torch.safetensors" if found[0].suffix == ".safetensors" else "torch.state_dict"
    state = read_state_dict(found[0], fmt, trust=False)
    from ..mapped import load_into

    try:
        load_into(net, state)
    except RuntimeError as e:
        raise BadInputError(f"the weights in {found[0]} do not fit {code} ({one_line(e, 200)})",
                            hint="the folder's files come from different runs; write it again with `xlate tf2torch`") \
            from None
    return net.eval()
