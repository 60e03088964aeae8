"""``--input-shape`` with free sizes: ``1,3,?,?`` (or ``-1``) marks a size that must stay dynamic.

A free size is given an example size to trace with (1 for the batch axis, ``FREE_SIZE`` for the
others); together with ``--static`` the marks become the ``dynamic=`` argument of
``xlate.torch_to_keras``: the marked axes are required dynamic, the others decided as "auto".
"""

from __future__ import annotations

from .errors import BadInputError

FREE = ("?", "-1")
FREE_SIZE = 32  # the example size of a free non-batch axis


def parse(text: str) -> tuple[tuple[int, ...], list[int]]:
    """``"1,3,?,?"`` -> ((1, 3, 32, 32), [2, 3]); BadInputError for anything else."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    shape, free = [], []
    for axis, p in enumerate(parts):
        if p in FREE:
            free.append(axis)
            shape.append(1 if axis == 0 else FREE_SIZE)
            continue
        try:
            shape.append(int(p))
        except ValueError:
            shape = []
            break
    if not shape or any(d <= 0 for d in shape):
        raise BadInputError(
            f"--input-shape {text!r} is not a shape",
            hint="write positive integers separated by commas, batch first, with ? (or -1) for a size that "
                 "must stay free, e.g. --input-shape 1,3,224,224 or --input-shape 1,3,?,?",
        )
    return tuple(shape), free


def dynamic_option(input_shapes, static: bool = False):
    """The ``dynamic=`` argument for the CLI's shapes: "none" with --static, else "auto" plus the
    free axes as required ones."""
    free = {i: {axis: None for axis in parse(s)[1]} for i, s in enumerate(input_shapes) if isinstance(s, str)}
    free = {i: axes for i, axes in free.items() if axes}
    if static:
        if free:
            raise BadInputError("--static fixes every size, but --input-shape marks some free (? or -1)",
                                hint="drop --static, or give numbers instead of ?")
        return "none"
    return {**free, "*": "auto"} if free else "auto"
