"""Python source snippets for the generated torch file: identifiers, literals and calls.

Converters build their lines of ``model.py`` with these (``call("nn.Conv2d", 3, 8, kernel_size=3)``),
so every value is written the same way everywhere: tuples of equal ints collapse, infinities
are spelled out, and code that is already source (``Code``) is not quoted again.
"""

from __future__ import annotations

import keyword
import re

import numpy as np


def identifier(name: str) -> str:
    """A Python identifier from a Keras name ('conv1/conv' -> 'conv1_conv')."""
    s = re.sub(r"\W", "_", str(name)).strip("_") or "layer"
    if s[0].isdigit():
        s = f"layer_{s}"
    if keyword.iskeyword(s):
        s += "_"
    return s


def literal(value) -> str:
    """Python source for a plain value (tuples of equal ints collapse to one int)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        items = [literal(v) for v in value]
        if isinstance(value, tuple):
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        return f"[{', '.join(items)}]"
    if isinstance(value, float):
        if value == float("inf"):
            return "float('inf')"
        if value == float("-inf"):
            return "float('-inf')"
        return repr(value)
    return repr(value)


def compact(value):
    """(3, 3) -> 3 for kernel/stride/padding arguments torch accepts either way."""
    if isinstance(value, (list, tuple)) and value and all(v == value[0] for v in value):
        return value[0]
    return tuple(value) if isinstance(value, list) else value


def call(fn: str, *args, **kwargs) -> str:
    """Render ``fn(arg, ..., key=value)``; args are literals unless already strings of code (``Code``)."""
    parts = [a if isinstance(a, Code) else literal(a) for a in args]
    parts += [f"{k}={v if isinstance(v, Code) else literal(v)}" for k, v in kwargs.items()]
    return f"{fn}({', '.join(parts)})"


class Code(str):
    """A string that is already Python source (not to be quoted by ``call``)."""


def torch_fn_name(qualified: str) -> str:
    """'torch.nn.functional.gelu' -> 'F.gelu', 'torch.nn.ReLU' -> 'nn.ReLU'."""
    if qualified.startswith("torch.nn.functional."):
        return "F." + qualified[len("torch.nn.functional."):]
    if qualified.startswith("torch.nn."):
        return "nn." + qualified[len("torch.nn."):]
    return qualified



_TORCH_DTYPES = {"float32": "torch.float32", "float64": "torch.float64", "float16": "torch.float16",
                 "int32": "torch.int32", "int64": "torch.int64", "bool": "torch.bool", "uint8": "torch.uint8",
                 "int8": "torch.int8", "int16": "torch.int16", "bfloat16": "torch.bfloat16"}


def torch_dtype(dtype: str) -> str:
    return _TORCH_DTYPES.get(str(dtype), "torch.float32")


