"""Module-level functions and classes a generated ``model.py`` may need, written out only when used.

A converter that needs one adds its name to ``emitter.helpers``; ``render`` writes the sources
(and the helpers they need in turn) above the ``Net`` class, in a stable order. Converter
families register their own helpers next to the code that uses them, so each family owns the
torch it writes. Helpers use only ``math``, ``torch``, ``torch.nn`` (``nn``) and
``torch.nn.functional`` (``F``), like the rest of the generated file.
"""

from __future__ import annotations

from ..errors import TableError

HELPERS: dict[str, str] = {}
_REQUIRES: dict[str, tuple[str, ...]] = {}


def register_helper(name: str, source: str, *, requires: tuple[str, ...] = ()) -> None:
    """Register the source of helper ``name`` (a function or class of that name)."""
    if name in HELPERS:
        raise TableError(f"generated-code helper {name!r} registered twice")
    HELPERS[name] = source.strip("\n")
    _REQUIRES[name] = tuple(requires)


def helper_sources(names) -> list[str]:
    """The sources of ``names`` and of every helper they require, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dep in _REQUIRES[name]:
            visit(dep)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return [HELPERS[name] for name in order]


register_helper("pad_same", '''
def pad_same(x, kernel_size, stride, dilation, value=0.0):
    """TensorFlow's 'same' padding for the spatial dims of an (N, C, *spatial) tensor, computed
    from its size at run time: the extra pixel goes at the end."""
    pads = []
    for size, k, s, d in reversed(list(zip(x.shape[2:], kernel_size, stride, dilation))):
        total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)
''')
