"""Example inputs from the command line (``--input-shape``, ``--input-dtype``) and ``--inputs`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError, one_line
from ..validate import validate_inputs

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"2,3,32,32"`` -> ``(2, 3, 32, 32)``, a free size (``?``/``-1``) at its example size
    (input_shapes.parse); BadInputError for anything else."""
    from ..input_shapes import parse

    return parse(text)[0]


def example_inputs_from(shapes, dtypes=(), seed: int = 0) -> tuple:
    """Seeded torch tensors for ``--input-shape``/``--input-dtype`` (one dtype for all, or one each)."""
    import torch

    shapes = [parse_input_shape(s) if isinstance(s, str) else tuple(s) for s in shapes]
    dtypes = list(dtypes)
    if dtypes and len(dtypes) not in (1, len(shapes)):
        raise BadInputError(
            f"{len(dtypes)} --input-dtype for {len(shapes)} --input-shape",
            hint="give one --input-dtype for all inputs, or one per --input-shape in the same order",
        )
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, shape in enumerate(shapes):
        name = dtypes[i if len(dtypes) > 1 else 0] if dtypes else "float32"
        if name not in DTYPES:
            raise BadInputError(f"--input-dtype {name!r} is not one xlate knows", hint=f"use one of {', '.join(DTYPES)}")
        dtype = getattr(torch, name)
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=g).to(dtype))
        elif dtype == torch.bool:
            out.append(torch.randint(0, 2, shape, generator=g).bool())
        else:
            out.append(torch.randint(0, 2, shape, generator=g, dtype=dtype))
    return tuple(out)


def load_inputs(path) -> list[np.ndarray]:
    """Arrays from an ``.npz`` (in the order saved: arr_0, arr_1... or the names given) or ``.npy``."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"--inputs {path} does not exist", hint="check the path")
    validate_inputs(path)
    try:
        if path.suffix == ".npy":
            return [np.load(path, allow_pickle=False)]
        with np.load(path, allow_pickle=False) as data:
            return [data[k] for k in data.files]
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"--inputs {path} is not a readable .npz/.npy file ({one_line(e, 160)})",
                            hint="write it with numpy.savez('inputs.npz', x) (one array per model input, in order)") \
            from None
