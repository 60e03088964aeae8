"""The plain source graph the torch -> Keras trace stage hands to the emitter.

Owns the data model only: nodes, their references (Ref), symbolic sizes (Sym) and tensor metadata,
and the small walkers over nested values (refs_in, syms_in, has_sym). It must not import torch or
know how a graph was captured: torch.export (``trace.py``) and the fx fast trace (``fxtrace.py``)
both build these objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Ref:
    """A reference to another node's value."""

    name: str


@dataclass(frozen=True)
class Sym:
    """A symbolic integer (a dynamic size), e.g. the batch size ``s0`` or ``2*s0``."""

    expr: str


@dataclass
class TensorMeta:
    shape: tuple  # ints, or Sym for dynamic sizes
    dtype: str

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def static_shape(self) -> tuple:
        return tuple(d if isinstance(d, int) else None for d in self.shape)


def has_sym(value) -> bool:
    """Whether a value (a Sym, a TensorMeta, or lists, tuples and dicts of them) has a dynamic size."""
    if isinstance(value, Sym):
        return True
    if isinstance(value, TensorMeta):
        return any(isinstance(d, Sym) for d in value.shape)
    if isinstance(value, (list, tuple)):
        return any(has_sym(v) for v in value)
    if isinstance(value, dict):
        return any(has_sym(v) for v in value.values())
    return False


@dataclass
class SourceNode:
    name: str
    op: str  # "input" | "param" | "const" | "call" | "module" | "output"
    target: str = ""  # "aten.conv2d.default", "getitem", "operator.mul", module class for "module"
    args: dict = field(default_factory=dict)  # normalized by the op schema's argument names
    meta: Any = None  # TensorMeta, a tuple/list of TensorMeta, a Sym/int/float, or None
    module_path: str = ""  # innermost torch module path ("" for the root)
    module_type: str = ""
    stack: tuple = ()  # ((path, qualified type name), ...) outermost first
    module: Any = None  # the torch module object, for "module" nodes
    fn: Any = None  # the callable (ATen overload), for constant folding
    call_args: tuple = ()  # positional args as called (Refs in place of nodes), for constant folding
    call_kwargs: dict = field(default_factory=dict)


@dataclass
class SourceGraph:
    nodes: list[SourceNode]
    inputs: list[str]  # user input node names, in forward() order
    outputs: list  # Refs / constants, in order (flattened)
    params: dict[str, tuple[str, np.ndarray, bool]]  # node name -> (torch path, value, trainable)
    symbols: dict[str, tuple[int, int]]  # symbol name -> (input index, axis) where it first appears
    module_types: dict[str, str]
    input_metas: list[TensorMeta]
    traced_by: str = "torch.export"
    #: sizes the fast trace names after the tensor they first appear on: name -> (node name, axis)
    anchors: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: the input symbols each derived size depends on (name -> names in ``symbols``)
    sym_deps: dict[str, frozenset] = field(default_factory=dict)
    #: per input axis, dynamic or static and why (dims.DimInfo), filled in by the front end
    dims: list = field(default_factory=list)

    def node(self, name: str) -> SourceNode:
        return self._by_name[name]

    def __post_init__(self):
        self._by_name = {n.name: n for n in self.nodes}

    def input_symbols_of(self, value) -> set[str]:
        """The input symbols (``symbols``' names) the dynamic sizes in ``value`` depend on."""
        out = set()
        for sym in syms_in(value):
            for name in sym_names(sym.expr):
                if name in self.symbols:
                    out.add(name)
                else:
                    out |= set(self.sym_deps.get(name, ()))
        return out

    def replace(self, **changes) -> SourceGraph:
        """A copy with some fields changed (the node list shared unless given)."""
        fields = {k: getattr(self, k) for k in ("nodes", "inputs", "outputs", "params", "symbols", "module_types",
                                                "input_metas", "traced_by", "anchors", "sym_deps", "dims")}
        return SourceGraph(**{**fields, **changes})


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
#: functions sympy prints in size expressions (not symbol names)
SIZE_FUNCTIONS = frozenset({"Max", "Min", "floor", "ceiling", "FloorDiv", "CeilToInt", "FloorToInt", "Mod",
                            "PythonMod", "CleanDiv", "Abs"})


def sym_names(expr: str) -> set[str]:
    """The symbol names in a size expression such as ``2*s0*s1 - 1``."""
    return {n for n in _NAME.findall(expr) if n not in SIZE_FUNCTIONS}


def syms_in(value):
    """Every Sym inside a value (a Sym, a TensorMeta, or lists, tuples and dicts of them)."""
    if isinstance(value, Sym):
        yield value
    elif isinstance(value, TensorMeta):
        yield from (d for d in value.shape if isinstance(d, Sym))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from syms_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from syms_in(v)


def refs_in(value):
    """Every Ref inside a value (nested lists, tuples, dicts)."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from refs_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in(v)
