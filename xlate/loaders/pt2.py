"""``.pt2`` files: a saved ``torch.export`` ExportedProgram, self-contained (graph, weights, example inputs)."""

from __future__ import annotations

import functools
from pathlib import Path

from ..errors import BadInputError, one_line


def load_pt2(path: Path):
    """(module in eval mode, example inputs or None) from a ``.pt2`` file."""
    import torch

    try:
        ep = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged archives
        raise BadInputError(f"{path} is a damaged torch.export archive ({type(e).__name__}: {one_line(e, 200)})",
                            hint="save it again with torch.export.save(program, 'model.pt2')") from None
    return exported_program_module(ep), _exported_example_inputs(ep)


def exported_program_module(program):
    """An ``nn.Module`` running an ExportedProgram that, unlike ``program.module()``, takes eval()."""
    return _exported_program_module_cls()(program)


@functools.cache
def _exported_program_module_cls():
    import torch

    class ExportedProgramModule(torch.nn.Module):
        """An ExportedProgram's module that accepts train()/eval().

        An exported graph is frozen in the mode it was exported in; torch refuses ``eval()`` on it,
        which the parity checker calls. This wrapper records the flag and leaves the graph alone.
        """

        def __init__(self, program):
            super().__init__()
            self.program = program.module()
            self.training = False

        def train(self, mode: bool = True):
            self.training = bool(mode)
            return self

        def forward(self, *args, **kwargs):
            return self.program(*args, **kwargs)

    return ExportedProgramModule


def _exported_example_inputs(ep) -> tuple | None:
    import torch

    if getattr(ep, "example_inputs", None):
        args, kwargs = ep.example_inputs
        if not kwargs and all(isinstance(a, torch.Tensor) for a in args):
            return tuple(a.detach().clone() for a in args)
    specs = []
    user_inputs = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            if val is None or not hasattr(val, "shape"):
                return None
            shape = tuple(int(d) if isinstance(d, int) else 2 for d in val.shape)
            specs.append((shape, val.dtype))
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(s, generator=g).to(d) if d.is_floating_point else torch.zeros(s, dtype=d)
                 for s, d in specs)
