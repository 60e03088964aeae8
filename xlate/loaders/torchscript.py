"""TorchScript archives (``torch.jit.save``): loaded as they are, and handed to the converter as an
ExportedProgram (torch.export cannot trace a ScriptModule)."""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError, one_line
from .pt2 import exported_program_module


def load_torchscript(path: Path):
    """A TorchScript archive as a ScriptModule in eval mode."""
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{path} is a damaged TorchScript archive ({type(e).__name__}: {one_line(e, 200)})",
                            hint="save it again with torch.jit.save") from None
    return module.eval()


def traceable_module(loaded):
    """The module handed to the converter (the parity check always runs the loaded model itself).

    torch.export cannot trace a TorchScript module, so a TorchScript archive goes through torch's
    TorchScript -> ExportedProgram converter first.
    """
    if loaded.format != "torch.script":
        return loaded.model
    from ..errors import UnsupportedOpError

    try:
        from torch._export.converter import TS2EPConverter

        program = TS2EPConverter(loaded.model, tuple(loaded.example_inputs)).convert()
    except Exception as e:  # noqa: BLE001 - the converter is torch's, and its errors vary
        raise UnsupportedOpError([("TorchScript", f"{type(e).__name__}: {one_line(e)}")], direction="torch2keras",
                                 hint="torch could not turn the TorchScript archive into an ExportedProgram; save "
                                      "the original module with torch.export.save (.pt2) instead") from None
    return exported_program_module(program)
