"""What the fast trace's modules share: its two refusals and a few value helpers.

``FastTraceUnsupported``: the fast path cannot reproduce the module; torch.export takes over.
``VariationFailed``: one varied size cannot be used as run (the module rejects it, takes another
branch, or the graph changes with it); the front end tries another size or keeps it static.
Nothing here imports torch at module import time.
"""

from __future__ import annotations

import functools
import operator
import types

from .source_graph import TensorMeta


class FastTraceUnsupported(Exception):
    """The fast front end cannot reproduce this module exactly: use torch.export instead."""


class VariationFailed(FastTraceUnsupported):
    """The run with symbol ``symbol`` varied failed or disagrees with the example's run.

    ``retry``: another size of the symbol may work (the module rejected this one); otherwise the
    symbol is pinned to the example's size for ``reason``."""

    def __init__(self, symbol: str, reason: str, *, retry: bool = True):
        super().__init__(f"{symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason
        self.retry = retry


class EqualityAsserted(FastTraceUnsupported):
    """``torch._assert(a == b)`` failed in a run: a size that breaks an equality of sizes breaks
    it at every other size too, so its symbol is kept static rather than tried again."""


def asserted(node):
    """The condition fx node ``node`` asserts when it is ``torch._assert(condition, ...)``, else None."""
    import torch

    return node.args[0] if node.op == "call_function" and node.target is torch._assert and node.args else None


def asserts_equality(node) -> bool:
    """Whether fx node ``node`` is ``torch._assert`` of an ``==`` of two values."""
    cond = asserted(node)
    return getattr(cond, "op", None) == "call_function" and cond.target is operator.eq


class BoundFound(FastTraceUnsupported):
    """A condition in the module's code bounds a symbol (``x.size(1) > 64: raise ...``): the trace
    restarts with the bound recorded, so every run's size lies within it."""

    def __init__(self, symbol: str, low, high, reason: str):
        super().__init__(f"{symbol}: {reason}")
        self.symbol, self.low, self.high, self.reason = symbol, low, high, reason


def run_parents(parents, count: int) -> list:
    """Per run: the run it changes its symbol from (None for the example's run 0; 0 unless given:
    fxtrace.chain_parents)."""
    return list(parents) if parents is not None else [None] + [0] * (count - 1)


def parents_first(parents) -> list:
    """The runs in an order where each comes after the run it starts from (the example's first), so
    that a failure a run shares with that run is blamed on that run's symbol."""
    return sorted(range(len(parents)), key=lambda j: run_depth(parents, j))


def run_depth(parents, j) -> int:
    """How many runs ``j`` starts from, the example's included (0 for the example's)."""
    depth = 0
    while parents[j] is not None:
        j, depth = parents[j], depth + 1
    return depth


def fetch_attr(root, target: str):
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def meta_of(value):
    """A TensorMeta (or nested list/tuple of them) of concrete tensors; other values as they are."""
    import torch

    if isinstance(value, torch.Tensor):
        return TensorMeta(tuple(value.shape), dtype_name(value.dtype))  # a concrete tensor's sizes are ints
    if isinstance(value, (tuple, list)):
        return (list if isinstance(value, list) else tuple)(meta_of(v) for v in value)
    return value


@functools.cache
def dtype_name(dtype) -> str:
    """torch.float32 -> "float32" (cached: every recorded value asks)."""
    return str(dtype).replace("torch.", "")


def tensors_in(values) -> list:
    import torch

    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out += tensors_in(v)
        elif isinstance(v, dict):
            out += tensors_in(list(v.values()))
    return out


def module_path_of(node) -> str:
    """The innermost torch module path an fx node was traced in ("<root>" for the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "<root>"
    path, _ = list(stack.values())[-1]
    return path or "<root>"


def mutable(value):
    """fx node arguments as the graph's code would pass them: fx holds lists and dicts immutable,
    but a function it kept whole may change its list arguments (torchvision's video Swin
    ``_get_window_and_shift_size``), which the generated code builds anew on every call."""
    if isinstance(value, list):
        return [mutable(v) for v in value]
    if isinstance(value, dict):
        return {k: mutable(v) for k, v in value.items()}
    if type(value) is tuple:
        return tuple(mutable(v) for v in value)
    return value


def opaque_function(target) -> bool:
    """A Python function of the model's own library in the fx graph: fx kept it whole
    (``torch.fx.wrap``), so what it computes from sizes is out of the graph's sight."""
    module = getattr(target, "__module__", None) or ""
    return isinstance(target, types.FunctionType) and not module.split(".")[0] in (
        "torch", "_operator", "operator", "math", "builtins")
