"""Converter registry: one Python function per table-row hook, registered with a decorator.

A converter is called as ``fn(emitter, node, row)`` for every walked node whose table row names
its hook. It reads the node's inputs from the emitter (asking for the layout it needs), declares
torch submodules, ports weights through the row's named transforms and assigns the outputs.
Registering two converters for one hook is an error, so a hook is written exactly once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import TableError

CONVERTERS: dict[str, Callable] = {}

_FAMILIES = ("core", "conv", "pooling", "norm", "activations", "recurrent", "attention", "ops", "shape_ops")


class NotConvertible(Exception):
    """A node whose row exists but whose configuration has no torch equivalent (GRU
    reset_after=False, LayerNormalization rms_scaling=True...). The emitter collects every one
    of them and raises a single UnsupportedOpError."""


def converter(*hooks: str):
    """Register the decorated function as the keras->torch converter for ``hooks``."""

    def register(fn: Callable) -> Callable:
        for hook in hooks:
            if hook in CONVERTERS:
                raise TableError(f"keras2torch hook {hook!r} registered twice "
                                 f"({CONVERTERS[hook].__module__} and {fn.__module__})")
            CONVERTERS[hook] = fn
        return fn

    return register


def load() -> None:
    """Import every converter family once (their decorators fill ``CONVERTERS``)."""
    for family in _FAMILIES:
        importlib.import_module(f"{__package__}.converters.{family}")


def get_converter(hook: str | None) -> Callable | None:
    return CONVERTERS.get(hook) if hook else None
