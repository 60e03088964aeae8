"""Converter registry: one Python function per table-row hook, registered with a decorator.

A converter is called as ``fn(emitter, node, row)`` for every walked node whose table row names
its hook. It reads the node's inputs from the emitter (asking for the layout it needs), declares
torch submodules, ports weights through the row's named transforms and assigns the outputs.
Registering two converters for one hook is an error, so a hook is written exactly once.

``CONVERTERS`` is filled by importing ``xlate.keras2torch.converters`` (each family module registers
its functions); whoever needs the full set imports that package. This module must not import the
converters itself, or the two would depend on each other.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import TableError

CONVERTERS: dict[str, Callable] = {}



class NotConvertible(Exception):
    """A node whose row exists but whose configuration has no torch equivalent (GRU
    reset_after=False, LayerNormalization rms_scaling=True...). The emitter collects every one
    of them and raises a single UnsupportedOpError."""


def converter(*hooks: str, masks: bool = False):
    """Register the decorated function as the keras->torch converter for ``hooks``. ``masks=True``
    says it applies the Keras masks its node may be given (``mask=``, ``query_mask=``...); the
    emitter refuses a masked node whose converter does not."""

    def register(fn: Callable) -> Callable:
        fn.reads_masks = masks
        for hook in hooks:
            if hook in CONVERTERS:
                raise TableError(f"keras2torch hook {hook!r} registered twice "
                                 f"({CONVERTERS[hook].__module__} and {fn.__module__})")
            CONVERTERS[hook] = fn
        return fn

    return register


_MASK_ARGS = ("mask", "query_mask", "value_mask", "key_mask")


def mask_refs(node) -> list:
    """The tensors Keras passes this layer as masks (explicitly, or propagated from a Masking or
    Embedding(mask_zero=True) layer: Keras records them as the call's ``mask=`` arguments)."""
    from .walk import Ref

    if node.kind.startswith("keras.ops."):
        return []  # an op's mask= argument (dot_product_attention) is an ordinary input

    def refs(v) -> list:
        if isinstance(v, Ref):
            return [v]
        return [r for x in v for r in refs(x)] if isinstance(v, (list, tuple)) else []

    return [r for k in _MASK_ARGS for r in refs(node.kwargs.get(k))]


def keras_mask(node) -> bool:
    """Does Keras pass this node a mask?"""
    return bool(mask_refs(node))


def get_converter(hook: str | None) -> Callable | None:
    return CONVERTERS.get(hook) if hook else None
