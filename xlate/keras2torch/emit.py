"""Emit stage: generate a readable PyTorch module (source plus state dict) from the walked graph.

Like torch.fx's Interpreter, the emitter visits the nodes once, in order, dispatching each to
the converter its table row names. Converters add ``self.<name> = nn.Xxx(...)`` lines to
``__init__`` and plain statements to ``forward``; weights go through the row's named transforms
into ``state``. Variables are named after the Keras layers, and a value whose last use is the
current statement passes its name on, so a chain of layers reads ``x = self.a(x)``,
``x = self.b(x)``. The layout plan (``plan.py``) decides where a permute is really needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from ..errors import UnsupportedOpError
from ..record import LayerRecord
from ..table import Row, table
from . import plan
from .emit_weights import WeightSink
from .helpers import HELPERS
from .registry import NotConvertible, get_converter, keras_mask, mask_refs
from .source import identifier, literal
from .values import Value
from .walk import Graph, Node, Ref

_RESERVED = {"self", "torch", "nn", "F", "math", "Net"} | set(dir(__builtins__) if isinstance(__builtins__, dict)
                                                               else dir(__import__("builtins")))
_MERGE_HOOKS = {"binary", "cat", "merge", "compare"}
_LAYOUT_SUFFIX = {3: ("nlc", "ncl"), 4: ("nhwc", "nchw"), 5: ("ndhwc", "ncdhw")}


class Emitter(WeightSink):
    """Generates ``__init__`` lines, ``forward`` statements and the state dict for one graph.

    Converters talk to it through ``input``/``in_layout`` (read a tensor in the layout they
    need), ``module``/``parameter``/``buffer`` (declare), ``port`` (weights through a row's
    transforms), and ``assign``/``assign_many``/``alias`` (bind their outputs).
    """

    def __init__(self, graph: Graph, *, io_layout: str = "source"):
        from . import converters  # noqa: F401 - importing the package registers every converter

        self.graph = graph
        self.io_layout = io_layout
        self.table = table()
        self.init_lines: list[str] = []
        self.forward_lines: list[str] = []
        self.state: dict[str, np.ndarray] = {}
        self.values: dict[int, Value] = {}
        self.rows_used: Counter = Counter()
        self.layers: list[LayerRecord] = []
        self.notes: list[str] = []
        self.input_vars: list[str] = []
        self.input_perms: list[plan.Perm] = []
        self.unsupported: list[tuple[str, str]] = []
        self._modules: dict[tuple, tuple[str, str]] = {}  # (id(op), suffix) -> (attr, ctor)
        self._attrs: set[str] = set()
        self._live: Counter = Counter()  # variable -> number of live values bound to it
        self._remaining: Counter = Counter()  # tensor id -> consumers still to emit (+1 if an output)
        self._outputs = set(graph.outputs)
        self._masks = {r.id for n in graph.nodes for r in mask_refs(n)}  # tensors Keras passes as masks
        self._node: Node | None = None
        self._node_tmp: str | None = None
        self._temps: list[str] = []
        self.helpers: set[str] = set()  # module-level functions the generated file needs (HELPERS)
        self._born: dict[str, int] = {}  # variable -> when its name was first used (inputs first)
        self.traced: dict[int, tuple] = {}  # id(node) -> (row, converter): layers traced/ captured
        self.classes: list[str] = []  # classes the generated file defines before Net (traced layers)
        prefix = identifier(graph.name) + "_"
        named = sum(1 for n in graph.nodes if n.name.startswith(prefix))
        self._prefix = prefix if graph.nodes and named * 2 >= len(graph.nodes) else ""
        for node in graph.nodes:
            for tid in set(node.inputs):
                self._remaining[tid] += 1
        for tid in graph.outputs:
            self._remaining[tid] += 1

    # --- the walk ---------------------------------------------------------------------------

    def run(self) -> None:
        self._bind_inputs()
        for node in self.graph.nodes:
            self._convert(node)
        if self.unsupported:
            raise UnsupportedOpError(self.unsupported, direction="keras2torch",
                                     hint="via='onnx' may still convert it; run `xlate inspect MODEL` for coverage")

    def _convert(self, node: Node) -> None:
        """Dispatch one node to its row's converter; refusals are collected, not raised."""
        row = self.table.by_keras.get(node.kind)
        fn = get_converter(row.hook) if row is not None and "keras2torch" in row.directions else None
        row, fn = self.traced.get(id(node), (row, fn))  # no usable row: captured by the traced route
        if fn is None:
            self.unsupported.append((node.kind, node.path))
            self._placeholder(node)
            return
        self._node, self._node_tmp = node, None
        try:
            # a traced layer is captured with its whole call, masks included
            if keras_mask(node) and not getattr(fn, "reads_masks", id(node) in self.traced):
                raise NotConvertible("a Keras mask reaches this layer, and xlate does not apply masks here")
            fn(self, node, row)
        except NotConvertible as e:
            self.unsupported.append((f"{node.kind} ({e})", node.path))
            self._placeholder(node)
            return
        except Exception:
            if not self.unsupported:
                raise
            # most likely a consequence of an earlier placeholder: keep collecting the rest
            self._placeholder(node)
            return
        self.use_row(row)
        for name in self._temps:
            self._live[name] -= 1
        self._temps = []
        for tid in node.outputs:
            if tid not in self.values and self._remaining[tid]:
                raise RuntimeError(f"converter for {node.kind} left output of {node.path} unassigned")
        for tid in set(node.inputs):
            self._consume(tid)

    def _placeholder(self, node: Node) -> None:
        for tid in node.outputs:
            t = self.graph.tensors[tid]
            self.values[tid] = Value(tid, "UNSUPPORTED", plan.identity(t.rank), t.shape, t.dtype)

    def _bind_inputs(self) -> None:
        names = ["x"] if len(self.graph.inputs) == 1 else [identifier(n) for n in self.graph.input_names]
        seen: set[str] = set()
        for tid, name in zip(self.graph.inputs, names):
            if name in _RESERVED or name in HELPERS or name in seen:
                name = f"{name}_input"
            seen.add(name)
            t = self.graph.tensors[tid]
            perm = plan.identity(t.rank)
            if self.io_layout == "native" and t.rank >= 3 and self._wants_channels_first(tid):
                perm = plan.channels_first(t.rank)
            self.input_vars.append(name)
            self.input_perms.append(perm)
            self.use_row(self.table.row("input_layer"))
            self._born.setdefault(name, 0)
            self._bind(tid, name, perm)

    def _wants_channels_first(self, tid: int) -> bool:
        """Does a convolution-like layer read this tensor, directly or through elementwise layers?"""
        frontier, seen = [tid], set()
        while frontier:
            t = frontier.pop()
            for node in self.graph.consumers(t):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                row = self.table.by_keras.get(node.kind)
                hook = row.hook if row is not None else None
                if hook in plan.CHANNELS_FIRST_HOOKS:
                    return True
                if hook in plan.LAYOUT_FREE_HOOKS and len(seen) < 32:
                    frontier += [o for o in node.outputs if self.graph.tensors[o].rank == self.graph.tensors[t].rank]
        return False

    def _bind(self, tid: int, var: str, perm, *, flat_chw=None) -> Value:
        t = self.graph.tensors[tid]
        value = Value(tid, var, tuple(perm), t.shape, t.dtype, flat_chw)
        self.values[tid] = value
        self._live[var] += 1
        return value

    def _consume(self, tid: int) -> None:
        self._remaining[tid] -= 1
        if self._remaining[tid] <= 0 and tid in self.values:
            v = self.values[tid]
            self._live[v.var] -= 1
            for alt in v.alts.values():
                self._live[alt] -= 1

    def use_row(self, row: Row) -> None:
        self.rows_used[row.id] += 1

    def row(self, key: str) -> Row:
        """The table row for a Keras name ('activation:relu', 'keras.ops.add') or a row id."""
        row = self.table.by_keras.get(key) or self.table.by_id.get(key)
        if row is None:
            raise NotConvertible(f"no table row for {key}")
        return row

    # --- reading inputs ---------------------------------------------------------------------

    def value(self, tid_or_ref) -> Value:
        tid = tid_or_ref.id if isinstance(tid_or_ref, Ref) else tid_or_ref
        return self.values[tid]

    def input(self, node: Node, index: int = 0, layout=None) -> Value:
        """Input ``index`` of ``node``, in ``layout`` ("cf", "keras", an explicit perm, or None for
        whatever layout it has)."""
        return self.in_layout(node.inputs[index], layout)

    def in_layout(self, tid_or_ref, layout=None) -> Value:
        v = self.value(tid_or_ref)
        if layout is None:
            if v.flat_chw is not None:
                return self._unflatten_order(v)
            return v
        want = self._resolve(layout, v.rank)
        if v.flat_chw is not None:
            v = self._unflatten_order(v)
        if v.perm == want:
            return v
        if want in v.alts:
            return replace(v, var=v.alts[want], perm=want, alts={})
        q = plan.relative(v.perm, want)
        expr = f"{v.var}.permute{literal(q)}"
        if self._remaining[v.tid] == 1 and self._live[v.var] == 1 and v.tid not in self._outputs and not v.alts:
            self.emit(f"{v.var} = {expr}")
            v.perm = want
            return v
        pair = _LAYOUT_SUFFIX.get(v.rank)
        suffix = (pair[1] if want == plan.channels_first(v.rank) else pair[0]) if pair and (
            want in (plan.channels_first(v.rank), plan.identity(v.rank))) else "t"
        name = self.fresh(f"{v.var}_{suffix}")
        self.emit(f"{name} = {expr}")
        v.alts[want] = name
        self._live[name] += 1
        return replace(v, var=name, perm=want, alts={})

    def _unflatten_order(self, v: Value) -> Value:
        """A channels-first flatten read by something other than a Dense: restore Keras order."""
        spatial = v.flat_chw[1:]
        key = ("keras_order",)
        if key in v.alts:
            return replace(v, var=v.alts[key], flat_chw=None, alts={})
        rank = len(spatial) + 2
        q = plan.relative(plan.channels_first(rank), plan.identity(rank))
        name = self.fresh(f"{v.var}_hwc")
        self.emit(f"{name} = {v.var}.reshape(-1, {', '.join(map(str, v.flat_chw))}).permute{literal(q)}.flatten(1)")
        v.alts[key] = name
        self._live[name] += 1
        return replace(v, var=name, flat_chw=None, alts={})

    @staticmethod
    def _resolve(layout, rank: int) -> plan.Perm:
        if layout == "cf":
            return plan.channels_first(rank)
        if layout == "keras":
            return plan.identity(rank)
        return tuple(layout)

    def consumers(self, tid: int) -> list[Node]:
        return self.graph.consumers(tid)

    def is_output(self, tid: int) -> bool:
        return tid in self._outputs

    # --- writing code -----------------------------------------------------------------------

    def emit(self, line: str, comment: str = "") -> None:
        self.forward_lines.append(f"{line}  # {comment}" if comment else line)

    def _hook(self, node: Node) -> str | None:
        row = self.table.by_keras.get(node.kind)
        return row.hook if row is not None else None

    def short(self, name: str) -> str:
        """A Keras name without the model-name prefix keras.applications puts on every layer
        ('convnext_tiny_stage_0_block_0_layernorm' -> 'stage_0_block_0_layernorm')."""
        if self._prefix and name.startswith(self._prefix) and len(name) > len(self._prefix):
            return name[len(self._prefix):]
        return name

    def fresh(self, base: str) -> str:
        base = identifier(self.short(base))
        if base in _RESERVED or base in HELPERS:
            base += "_"
        name, i = base, 1
        while self._live[name] > 0:
            name = f"{base}_{i}"
            i += 1
        self._born.setdefault(name, len(self._born) + 1)
        return name

    def _output_name(self, node: Node) -> str:
        if self._node_tmp is not None:
            return self._node_tmp
        if node.outputs and node.outputs[0] in self._masks:
            return self.fresh("mask")
        # An input whose last use this is passes its name on: the main data path (the first
        # input), or for merges any operand, the longest-lived first (so a residual block ends
        # in ``x = shortcut + x`` and the trunk keeps its name). Auxiliary inputs (masks,
        # states) never lend theirs.
        merge = self._hook(node) in _MERGE_HOOKS
        candidates = []
        for tid in dict.fromkeys(node.inputs if merge else node.inputs[:1]):
            v = self.values.get(tid)
            if v is not None and self._remaining[tid] == 1 and tid not in self._outputs and self._live[v.var] == 1:
                candidates.append(v.var)
        if candidates:
            return min(candidates, key=lambda var: self._born.get(var, 0))
        return self.fresh(node.name)

    def temp(self, base: str) -> str:
        """A fresh local for a value inside one node's statements (e.g. an LSTM's state tuple)."""
        name = self.fresh(base)
        self._live[name] += 1
        self._temps.append(name)
        return name

    def pre(self, node: Node, expr: str, comment: str = "", *, pattern: str = "{}") -> str:
        """Emit an intermediate statement of ``node`` (e.g. an explicit pad); returns its variable.
        ``pattern`` shapes the assignment target, e.g. "{}, _" to unpack a tuple."""
        name = self._output_name(node)
        self.emit(f"{pattern.format(name)} = {expr}", comment)
        if self._node_tmp is None:
            self._live[name] += 1  # held by this node until its output takes the name over
        self._node_tmp = name
        return name

    def assign(self, node: Node, expr: str, perm=None, *, index: int = 0, comment: str = "",
               flat_chw=None, module: str | None = None, pattern: str = "{}") -> Value:
        """``var = expr`` for output ``index`` of ``node``, laid out as ``perm`` (identity if None)."""
        tid = node.outputs[index]
        rank = self.graph.tensors[tid].rank
        perm = plan.identity(rank) if perm is None else self._resolve(perm, rank)
        name = self._output_name(node) if index == 0 else self.fresh(f"{node.name}_{index}")
        if self._node_tmp is not None:
            self._live[self._node_tmp] -= 1
            self._node_tmp = None
        self.emit(f"{pattern.format(name)} = {expr}", comment)
        value = self._bind(tid, name, perm, flat_chw=flat_chw)
        if module is not None and _is_whole_call(expr, module):
            self.record_layer(node, module, value)
        return value

    def assign_many(self, node: Node, expr: str, perms, *, comment: str = "", module: str | None = None) -> None:
        """``a, b = expr`` for several outputs (``_`` for outputs nobody reads)."""
        names = []
        for i, tid in enumerate(node.outputs):
            if self._remaining[tid] == 0 and tid not in self._outputs:
                names.append("_")
                continue
            name = self._output_name(node) if i == 0 else self.fresh(f"{node.name}_{i}")
            self._live[name] += 1  # reserved while the other names are picked
            names.append(name)
        for name in names:
            if name != "_":
                self._live[name] -= 1
        if self._node_tmp is not None:
            self._live[self._node_tmp] -= 1
            self._node_tmp = None
        self.emit(f"{', '.join(names)} = {expr}", comment)
        for tid, name, perm in zip(node.outputs, names, perms):
            if name != "_":
                rank = self.graph.tensors[tid].rank
                value = self._bind(tid, name, plan.identity(rank) if perm is None else self._resolve(perm, rank))
                if module is not None and tid == node.outputs[0] and _is_whole_call(expr, module):
                    self.record_layer(node, module, value)

    def alias(self, node: Node, value: Value, index: int = 0) -> None:
        """Output ``index`` of ``node`` is ``value`` itself (identity layers, Dropout-free paths)."""
        tid = node.outputs[index]
        self.values[tid] = Value(tid, value.var, value.perm, self.graph.tensors[tid].shape, value.dtype,
                                 value.flat_chw, dict(value.alts))
        self._live[value.var] += 1
        for alt in value.alts.values():
            self._live[alt] += 1

    def record_layer(self, node: Node, attr: str, value: Value) -> None:
        perm = None if plan.is_identity(value.perm) else plan.inverse(value.perm)
        row = self.table.by_keras.get(node.kind)
        self.layers.append(LayerRecord(source=node.name, target=attr, row=row.id if row else None, output_perm=perm))

    # --- declaring submodules, parameters and weights --------------------------------------

    def _attr_name(self, base: str) -> str:
        import torch

        base = identifier(self.short(base))
        if hasattr(torch.nn.Module, base) or base in _RESERVED:
            base += "_layer"
        name, i = base, 1
        while name in self._attrs:
            name = f"{base}_{i}"
            i += 1
        self._attrs.add(name)
        return name

    def module(self, node: Node, ctor: str, *, suffix: str = "") -> str:
        """Declare ``self.<attr> = ctor`` once per Keras layer (shared layers reuse it); returns attr."""
        key = (id(node.op), suffix)
        known = self._modules.get(key)
        if known is not None and known[1] == ctor:
            return known[0]
        attr = self._attr_name(f"{node.name}{suffix}")
        if known is None:
            self._modules[key] = (attr, ctor)
        self.init_lines.append(f"self.{attr} = {ctor}")
        return attr

    def attr_of(self, layer, suffix: str = "") -> str | None:
        """The ``self.<attr>`` already declared for Keras ``layer`` (None if none)."""
        known = self._modules.get((id(layer), suffix))
        return known[0] if known else None

    # --- activations --------------------------------------------------------------------------

    def fused_activation(self, node: Node, expr: str, value_perm=None) -> str:
        """Wrap ``expr`` in the layer's own ``activation=`` (Dense, Conv...), if any."""
        act = node.config.get("activation")
        if act in (None, "linear"):
            return expr
        if not isinstance(act, str):
            raise NotConvertible(f"activation {act!r} is not a built-in activation name")
        from .converters.activations import functional_activation

        return functional_activation(self, f"activation:{act}", {}, expr, value_perm)

    # --- output -------------------------------------------------------------------------------

    def return_statement(self) -> tuple[str, list[plan.Perm]]:
        exprs, perms = [], []
        for tid in self.graph.outputs:
            v = self.values[tid]
            if v.flat_chw is not None:
                v = self._unflatten_order(v)
            if self.io_layout == "source" and not plan.is_identity(v.perm):
                exprs.append(f"{v.var}.permute{literal(plan.relative(v.perm, plan.identity(v.rank)))}")
                perms.append(plan.identity(v.rank))
            else:
                exprs.append(v.var)
                perms.append(v.perm)
        if self.graph.output_keys is not None:
            body = ", ".join(f"{k!r}: {e}" for k, e in zip(self.graph.output_keys, exprs))
            return f"return {{{body}}}", perms
        return f"return {', '.join(exprs)}", perms


def _is_whole_call(expr: str, attr: str) -> bool:
    """True when ``expr`` is just ``self.<attr>(...)``: then a forward hook on the submodule sees
    exactly the Keras layer's output (per-layer diagnostics rely on it). A fused activation, a
    crop or a last-step slice around the call makes it something else."""
    head = f"self.{attr}("
    if not expr.startswith(head):
        return False
    depth = 0
    for i, ch in enumerate(expr[len(head) - 1:], start=len(head) - 1):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i == len(expr) - 1
    return False
