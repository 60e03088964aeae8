"""Sizes the module's Python code computes during a recorded run, with where they come from.

A recorded run (fx_record.py) hands the module ``SizeInt``s for ``x.size(d)``: ints that remember
the tensor and axis they were read from, and keep an expression through Python arithmetic
(``(w - w % 7) // 2``, ``math.ceil(h / s)``). A size such as TensorFlow's 'same' padding worked
out in Python then reaches the recorded ATen call with its formula, and the merge (fx_merge.py)
turns it into a ``Sym`` of that formula, even where the runs' values happen to agree. Expressions
are the size-expression language of xlate.keras_layers.dynamic (``+ - * // %``).

Only values; nothing here imports torch.
"""

from __future__ import annotations

import math


class SizeInt(int):
    """An int computed from tensor sizes; ``tree`` says how: ("size", node name, axis), ("const", v),
    or (operator, a, b) / ("neg", a)."""

    tree: tuple

    def __new__(cls, value: int, tree: tuple):
        obj = super().__new__(cls, int(value))
        obj.tree = tree
        return obj

    def _op(self, name, other, reverse=False):
        a, b = (other, self) if reverse else (self, other)
        value = _APPLY[name](int(a), int(b))
        if isinstance(value, bool) or not isinstance(value, int):
            return value
        return SizeInt(value, (name, _tree(a), _tree(b)))

    def __add__(self, other):
        return self._op("+", other) if _is_int(other) else NotImplemented

    def __radd__(self, other):
        return self._op("+", other, True) if _is_int(other) else NotImplemented

    def __sub__(self, other):
        return self._op("-", other) if _is_int(other) else NotImplemented

    def __rsub__(self, other):
        return self._op("-", other, True) if _is_int(other) else NotImplemented

    def __mul__(self, other):
        return self._op("*", other) if _is_int(other) else NotImplemented

    def __rmul__(self, other):
        return self._op("*", other, True) if _is_int(other) else NotImplemented

    def __floordiv__(self, other):
        return self._op("//", other) if _is_int(other) else NotImplemented

    def __rfloordiv__(self, other):
        return self._op("//", other, True) if _is_int(other) else NotImplemented

    def __mod__(self, other):
        return self._op("%", other) if _is_int(other) else NotImplemented

    def __rmod__(self, other):
        return self._op("%", other, True) if _is_int(other) else NotImplemented

    def __neg__(self):
        return SizeInt(-int(self), ("neg", self.tree))

    def __truediv__(self, other):
        return SizeQuotient(int(self) / int(other), self, other) if _is_int(other) else NotImplemented

    def __rtruediv__(self, other):
        return SizeQuotient(int(other) / int(self), other, self) if _is_int(other) else NotImplemented

    def __reduce__(self):  # copies and pickles are plain ints
        return int, (int(self),)


class SizeQuotient(float):
    """``a / b`` of sizes; ``math.ceil`` and ``math.floor`` of it are SizeInts again."""

    def __new__(cls, value: float, a, b):
        obj = super().__new__(cls, value)
        obj.a, obj.b = a, b
        return obj

    def __floor__(self):
        return SizeInt(math.floor(float(self)), ("//", _tree(self.a), _tree(self.b)))

    def __ceil__(self):
        return SizeInt(math.ceil(float(self)), ("ceil//", _tree(self.a), _tree(self.b)))

    def __reduce__(self):
        return float, (float(self),)


_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "//": lambda a, b: a // b, "%": lambda a, b: a % b}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tree(v) -> tuple:
    return v.tree if isinstance(v, SizeInt) else ("const", int(v))


def size_of(value: int, node_name: str, axis: int) -> SizeInt:
    return SizeInt(value, ("size", node_name, axis))


def expression(tree: tuple, size_expr) -> str | int:
    """The tree as an int (every size it reads is static) or an expression string; ``size_expr(node,
    axis)`` gives the merged size of a tensor dim (an int or an expression)."""
    kind = tree[0]
    if kind == "const":
        return tree[1]
    if kind == "size":
        return size_expr(tree[1], tree[2])
    if kind == "neg":
        inner = expression(tree[1], size_expr)
        return -inner if isinstance(inner, int) else f"-({inner})"
    a, b = expression(tree[1], size_expr), expression(tree[2], size_expr)
    if isinstance(a, int) and isinstance(b, int):
        return -((-a) // b) if kind == "ceil//" else _APPLY[kind](a, b)
    if kind == "ceil//":
        return f"-((-{_paren(a)})//{_paren(b)})"
    return f"{_paren(a)}{kind}{_paren(b)}"


def _paren(v) -> str:
    text = str(v)
    return text if text.replace("_", "").isalnum() else f"({text})"
