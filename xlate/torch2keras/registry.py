"""Converter registries for torch -> Keras.

``converter(hook)`` registers the function that converts every table row naming that hook
(one function serves Conv1d/2d/3d). ``internal(target)`` registers graph plumbing that is not
an equivalence between frameworks (tuple indexing, symbolic size arithmetic, asserts). Both
registries reject duplicates.

The tables are filled by importing ``xlate.torch2keras.converters`` (each module registers its
functions); whoever needs the full set imports that package. This module must not import the
converters itself, or the two would depend on each other.
"""

from __future__ import annotations

from ..errors import TableError

CONVERTERS: dict[str, object] = {}
INTERNAL: dict[str, object] = {}

# Hooks whose ops want channels-last tensors (used to choose the layout of native inputs).
CHANNEL_HOOKS = {"conv", "conv_transpose", "batch_norm", "pool", "adaptive_pool", "upsample", "pad",
                 "group_norm", "instance_norm"}


def converter(*hooks: str):
    """Register ``fn`` as the converter of every row whose hook is one of ``hooks``."""

    def register(fn):
        for hook in hooks:
            if hook in CONVERTERS:
                raise TableError(f"torch->keras converter for hook {hook!r} registered twice")
            CONVERTERS[hook] = fn
        return fn

    return register


def internal(*targets: str):
    def register(fn):
        for t in targets:
            if t in INTERNAL:
                raise TableError(f"internal op {t!r} registered twice")
            INTERNAL[t] = fn
        return fn

    return register


def get_converter(hook: str):
    """The converter of ``hook``; the caller has imported ``xlate.torch2keras.converters``."""
    try:
        return CONVERTERS[hook]
    except KeyError:
        raise TableError(f"no torch->keras converter for hook {hook!r}") from None
