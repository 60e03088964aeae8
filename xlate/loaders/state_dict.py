"""State_dicts: ``.pth``/``.pt``/``.bin``/``.ckpt`` (``torch.load(weights_only=True)``), ``.safetensors``
(memory-mapped), training checkpoints that nest one, and whole pickled models (only with trust:
unpickling runs code). ``fit_state_dict`` puts one into a built module, or says exactly why not.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import BadInputError, one_line
from .factory import cwd_on_path


def _quiet_torch_load(*args, **kwargs):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(*args, **kwargs)


def read_state_dict(path: Path, fmt: str, trust: bool):
    """Return a state_dict (dict of tensors) or, with trust, whatever a full pickle holds."""
    import pickle

    if fmt == "torch.safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise BadInputError(f"{path} is a damaged safetensors file ({one_line(e)})",
                                hint="write it again with safetensors.torch.save_file") from None
    try:
        return _quiet_torch_load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e) and "Unsupported" not in str(e):
            raise BadInputError(f"{path} is a damaged PyTorch file ({one_line(e, 160)})",
                                hint="write it again with torch.save") from None
        if not trust:
            what = _unsupported_global(str(e))
            raise BadInputError(
                f"{path} is a whole pickled model{what}: loading it runs code from the file, so xlate refuses "
                "by default",
                hint="rerun with --trust only if you trust where the file came from; safer: save "
                     "model.state_dict() and pass --model-class, or save a torch.export program (.pt2)",
            ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, struct.error) as e:
        raise BadInputError(f"{path} is a damaged or truncated PyTorch file ({one_line(e, 160)})",
                            hint="the file was probably cut short; save or copy it again") from None
    # trusted full pickle: it may import the model's module, so the current folder is on the path
    try:
        with cwd_on_path():
            return _quiet_torch_load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - the pickle runs arbitrary code; report, don't crash
        raise BadInputError(
            f"cannot unpickle {path} ({type(e).__name__}: {one_line(e)})",
            hint="the classes it was pickled with must be importable: run xlate from the project folder that "
                 "defines them",
        ) from None


def _unsupported_global(message: str) -> str:
    marker = "GLOBAL "
    i = message.find(marker)
    if i < 0:
        return ""
    name = message[i + len(marker):].split()[0]
    return f" (it references {name})"


_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


def unwrap_checkpoint(obj, path: Path, notes: list[str]):
    """Training checkpoints often nest the state_dict ({"model_state_dict": ..., "optimizer": ...})."""
    import torch

    if isinstance(obj, dict) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                notes.append(f"used the state_dict under key {key!r} of the checkpoint")
                return inner
    return obj


def is_state_dict(obj) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _listed(keys: list[str], n: int = 4) -> str:
    """``3 (a, b, c)`` / ``12 (a, b, c, d, ...)``: how many, and the first few."""
    shown = ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
    return f"{len(keys)} ({shown})"


def fit_state_dict(module, state, path, what: str, hint: str):
    """Load ``state`` into ``module`` strictly, in eval mode; BadInputError naming the first few
    missing, unexpected and mis-shaped keys, with their counts, when it does not fit."""
    if not is_state_dict(state):
        raise BadInputError(f"{path} holds a {type(state).__name__}, not a model or a state_dict of tensors",
                            hint="save model.state_dict(), a torch.export program, or a TorchScript archive")
    own = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected {_listed(unexpected)}")
        if wrong:
            parts.append(f"shapes differ for {_listed(wrong, 3)}")
        raise BadInputError(f"the weights in {path} do not fit {what}: {'; '.join(parts)}", hint=hint)
    from ..mapped import load_into

    load_into(module, state)  # memory-mapped safetensors stay mapped: no second copy
    return module.eval()
