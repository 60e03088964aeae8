"""Dynamic input dimensions: the user's ``dynamic=`` choice, the sizes a trace lets vary, and the
outcome per input dimension (dynamic with its bounds, or static with what pins it).

Both trace front ends (torch.fx with real runs, torch.export) start from one ``DimPlan`` and report
through it, so they name the same symbols and give the same answer. A *symbol* is a group of input
dimensions that always have the same size (the batch axis of every input; an axis of the same size
at the same position of several inputs, such as the length of ``input_ids`` and of
``attention_mask``). The batch symbol is ``s0``, the others ``s1``, ``s2``... in input order.

This module owns those records and the sizes the fast trace tries; it does not trace, run the
model or build Keras layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import BadInputError, UnsupportedOpError

DYNAMIC_MODES = ("auto", "batch", "none")
BATCH = "s0"
#: the largest step the fast trace moves a non-batch size by (a power of two: strided layers divide it)
MAX_STEP = 32


@dataclass
class DimInfo:
    """One axis of one model input, as the converted model treats it."""

    input: str
    index: int
    axis: int
    size: int  # the example's size
    dynamic: bool = False
    symbol: str | None = None
    low: int | None = None  # inclusive bounds of a dynamic size (None: unbounded)
    high: int | None = None
    reason: str = ""  # static: what pins it; dynamic: what bounds it ("" when nothing does)
    required: bool = False  # asked for explicitly: not being able to keep it dynamic is an error

    def describe(self) -> str:
        where = f"{self.input}[{self.axis}] = {self.size}"
        if not self.dynamic:
            return f"{where}: static ({self.reason or 'fixed'})"
        span = f"{self.low if self.low is not None else 1}..{self.high if self.high is not None else 'inf'}"
        return f"{where}: dynamic {self.symbol} ({span}{'; ' + self.reason if self.reason else ''})"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Symbol:
    """One size a trace lets vary."""

    name: str
    members: list  # [(input index, axis)], all of the same size
    size: int  # the example's size
    low: int = 1
    high: int | None = None
    required: bool = False
    tried: list = field(default_factory=list)  # variation sizes the fast trace could not use
    bound_reasons: list = field(default_factory=list)

    @property
    def batch(self) -> bool:
        return self.name == BATCH

    def within(self, size: int) -> bool:
        return size >= self.low and (self.high is None or size <= self.high)

    def variation(self) -> int | None:
        """The size the fast trace runs this symbol at next (the others keep their example size), or
        None when every candidate failed. Batch: example + 3 (2 for an example of 1, so that batch
        decisions hold for every batch of 2 or more). Others: a quarter (from 64 up) or half the size
        first (the run costs less), then smaller and larger by a power-of-two step."""
        b = self.size
        if self.batch:
            candidates = [2, 3] if b == 1 else [b + 3, b + 1, b - 1]
        else:
            step = min(MAX_STEP, b & -b, max(1, b // 2))
            candidates = [b // 4 if b >= 64 else b - step, b // 2 if b >= 8 else b - step, b - step, b + step]
        for c in dict.fromkeys(candidates):
            if c >= 2 and c != b and c not in self.tried and self.within(c):
                return c
        return None


class DimPlan:
    """The candidate symbols of one conversion and, per input axis, the outcome.

    ``pin(name, reason)`` makes a symbol static (an error when it was asked for explicitly),
    ``narrow(name, low, high, reason)`` records a bound; ``finish(graph)`` fills in which dims
    came out dynamic in the traced graph."""

    def __init__(self, names, shapes, dynamic="auto"):
        self.names = list(names)
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.mode = dynamic if isinstance(dynamic, str) else "custom"
        self.dims = [DimInfo(n, i, a, d) for i, (n, s) in enumerate(zip(self.names, self.shapes))
                     for a, d in enumerate(s)]
        self.symbols: dict[str, Symbol] = {}
        self._plan(dynamic)

    # --- building the candidates --------------------------------------------------------------

    def _plan(self, dynamic) -> None:
        """``dynamic``: a mode, or {input name or index: {axis: (min, max) or None}} (exactly those
        sizes, required to stay dynamic), optionally with ``"*": mode`` for the sizes it leaves out."""
        required: dict = {}
        mode = dynamic
        if isinstance(dynamic, dict):
            required = self._parse_dict({k: v for k, v in dynamic.items() if k != "*"})
            mode = dynamic.get("*", "none")
        if mode not in DYNAMIC_MODES:
            raise BadInputError(f"dynamic must be one of {', '.join(map(repr, DYNAMIC_MODES))} or "
                                f"{{input: {{axis: (min, max)}}}}, got {dynamic!r}")
        wanted = {(d.index, d.axis): (None, None) for d in self.dims
                  if mode == "auto" or (mode == "batch" and d.axis == 0)}
        wanted.update(required)
        for d in self.dims:
            if (d.index, d.axis) not in wanted:
                d.reason = {"none": "dynamic='none'", "batch": "dynamic='batch'"}.get(mode, "not asked to vary")
        # the batch: axis 0 of every input of rank >= 1, when they agree
        batch = [(d.index, 0) for d in self.dims if d.axis == 0 and (d.index, 0) in wanted]
        sizes = {self.shapes[i][0] for i, _ in batch}
        groups: dict = {}
        if batch and len(sizes) == 1:
            self._add(BATCH, batch, wanted, required)
        for d in self.dims:
            key = (d.index, d.axis)
            if key not in wanted or any(key in s.members for s in self.symbols.values()):
                continue
            if d.size == 1 and key not in required:
                d.reason = "size 1 in the example (a broadcast size)"
                continue
            groups.setdefault((d.axis, d.size), []).append(key)
        for members in groups.values():
            self._add(f"s{len(self.symbols) + (0 if BATCH in self.symbols else 1)}", members, wanted, required)

    def _add(self, name, members, wanted, required) -> None:
        lows = [wanted[m][0] for m in members if wanted[m][0] is not None]
        highs = [wanted[m][1] for m in members if wanted[m][1] is not None]
        size = self.shapes[members[0][0]][members[0][1]]
        sym = Symbol(name, list(members), size, max(lows, default=1 if name == BATCH else 2), min(highs, default=None),
                     any(m in required for m in members))
        if not sym.within(size):
            raise BadInputError(f"{self._label(members[0])}: the example's size {size} is outside "
                                f"dynamic=({sym.low}, {sym.high})")
        for d in self.dims:
            if (d.index, d.axis) in sym.members:
                d.required = sym.required
        self.symbols[name] = sym

    def _parse_dict(self, spec: dict) -> dict:
        wanted = {}
        for key, axes in spec.items():
            if isinstance(key, int) and 0 <= key < len(self.names):
                index = key
            elif key in self.names:
                index = self.names.index(key)
            else:
                raise BadInputError(f"dynamic names input {key!r}, but the model's inputs are {self.names}")
            rank = len(self.shapes[index])
            if not isinstance(axes, dict):
                axes = {a: None for a in axes}
            for axis, bounds in axes.items():
                if not isinstance(axis, int) or not -rank <= axis < rank:
                    raise BadInputError(f"dynamic: input {self.names[index]!r} has no axis {axis!r} (rank {rank})")
                low, high = (None, None) if bounds is None else tuple(bounds)
                wanted[(index, axis % rank)] = (low, high)
        return wanted

    # --- outcomes -----------------------------------------------------------------------------

    def _label(self, member) -> str:
        index, axis = member
        return f"input {self.names[index]!r} axis {axis}"

    def dims_of(self, name: str) -> list[DimInfo]:
        members = set(self.symbols[name].members) if name in self.symbols else set()
        return [d for d in self.dims if (d.index, d.axis) in members]

    def pin(self, name: str, reason: str) -> None:
        """Make symbol ``name`` static: its dims keep the example's size, for ``reason``."""
        sym = self.symbols.pop(name, None)
        if sym is None:
            return
        for d in self.dims:
            if (d.index, d.axis) in sym.members:
                d.reason = reason
        if sym.required:
            raise UnsupportedOpError([(f"{self._label(sym.members[0])} cannot stay dynamic: {reason}", "<inputs>")],
                                     direction="torch2keras",
                                     hint="leave it out of dynamic= (or give a number instead of ? on the CLI)")

    def narrow(self, name: str, low: int | None, high: int | None, reason: str) -> None:
        """Record a bound on a dynamic size; a range down to the example's size alone pins it."""
        sym = self.symbols.get(name)
        if sym is None:
            return
        changed = False
        if low is not None and low > sym.low:
            sym.low, changed = low, True
        if high is not None and (sym.high is None or high < sym.high):
            sym.high, changed = high, True
        if not changed:
            return
        if sym.high is not None and sym.low >= sym.high:
            self.pin(name, reason)
            return
        sym.bound_reasons.append(reason)

    def finish(self, graph) -> list[DimInfo]:
        """Per input axis: dynamic where the traced graph kept the symbol, with its bounds."""
        for d in self.dims:
            sym = next((s for s in self.symbols.values() if (d.index, d.axis) in s.members), None)
            meta = graph.input_metas[d.index]
            shape = getattr(meta, "shape", ())
            traced_dynamic = d.axis < len(shape) and not isinstance(shape[d.axis], int)
            if sym is not None and traced_dynamic:
                d.dynamic, d.symbol, d.low, d.high = True, sym.name, sym.low, sym.high
                d.reason = "; ".join(sym.bound_reasons)
                continue
            d.dynamic, d.symbol, d.low, d.high = False, None, None, None
            if sym is not None:
                d.reason = d.reason or "the trace kept it static"
        return self.dims

    def active(self) -> list[Symbol]:
        return list(self.symbols.values())


class Traced:
    """A traced SourceGraph and the DimPlan it came from. ``pin(names, reason)`` makes those
    symbols static and rebuilds the graph (the fast trace merges its runs again; torch.export
    exports again); the converter calls it when the Keras side cannot express a dynamic size."""

    graph = None
    plan: DimPlan

    def pin(self, names, reason: str) -> None:
        raise NotImplementedError

    def dynamic_symbols(self) -> list[str]:
        return [s.name for s in self.plan.active()]
