"""The merge of the fast trace's runs into one symbolic graph.

Run 0 is the example's; run j changes one symbol (dims.Symbol) from run ``parents[j]`` (the
example's, or the run before it in fxtrace.chain_parents' chain: the width varied from the run of a
smaller height, the batch from the last of those) and keeps the other sizes. The runs must record
the same graph. Walking them in step, every int (a tensor size, a size argument) is a vector of
values, one per run: equal everywhere, it is a constant; otherwise it becomes a ``Sym`` whose
expression reproduces the vector:

- an input symbol (``s0`` the batch, ``s1``...), or a product or affine form of them
  (``2*s0``, ``s0*s1``, ``s1 - 1``, ``s0**2``);
- a size the tensor graph already carries (a tensor dim seen earlier with the same vector: a
  convolution's output height), named ``d<n>`` after the first tensor it appears on
  (``SourceGraph.anchors``), or a product, multiple or quotient of such sizes.

A difference no form explains (a constant that changes with a size, a value that is not a size,
another graph) blames the varied symbol: ``VariationFailed(retry=False)``, and the front end
merges again with that symbol kept at the example's size.
"""

from __future__ import annotations

import numpy as np

from .fx_common import VariationFailed, run_parents
from .fx_sizes import SizeInt, SizeQuotient, expression
from .source_graph import SourceGraph, SourceNode, Sym, TensorMeta, has_sym, sym_names, syms_in

# Scalar arguments that are sizes (the emitter builds these from a dynamic size: torch.arange(x.size(1)))
SIZE_SCALARS = {"aten.arange.default": ("end",), "aten.arange.start": ("start", "end"),
                "aten.arange.start_step": ("start", "end")}
MAX_POWER = 3
MAX_ATOMS = 64  # sizes tried in pairwise products


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """Both runs read the same tensor (a parameter): equal without reading its values."""
    return (a.__array_interface__ == b.__array_interface__) and a.dtype == b.dtype


def _size_type(tp) -> bool:
    """Schema types that may hold a dynamic size: int, SymInt and lists of them."""
    if tp is None:
        return True
    core = tp
    while core.startswith(("Optional[", "List[")):
        core = core[core.index("[") + 1:-1]
    return core in ("int", "SymInt")


def _term(k: int, factors: list[str]) -> str:
    body = "*".join(factors)
    if not body:
        return str(k)
    return body if k == 1 else f"{k}*{body}"


class _Merge:
    """Walks the recordings in step and names every size that changes between them."""

    def __init__(self, varied, run_sizes, parents=None):
        self.varied = varied  # per run: the Symbol it changes (None for run 0)
        self.run_sizes = run_sizes  # per run: that symbol's size in it
        # per run: the run it changes that symbol from (None for run 0)
        self.parents = run_parents(parents, len(varied))
        self.assigned = [self._assignment(j) for j in range(len(varied))]  # per run: {symbol: size}
        self.atoms: dict[tuple, str] = {}  # value vector -> expression
        self.anchors: dict[str, tuple[str, int]] = {}
        self.deps: dict[str, frozenset] = {}
        self.metas: dict[str, object] = {}  # node name -> merged meta, for the sizes Python computed
        for j, sym in enumerate(varied):
            if sym is not None:
                self.atoms[self.symbol_vector(j)] = sym.name

    def _assignment(self, j) -> dict:
        if j == 0:
            return {s.name: s.size for s in self.varied[1:]}
        out = dict(self._assignment(self.parents[j]))
        out[self.varied[j].name] = self.run_sizes[j]
        return out

    def symbol_vector(self, j) -> tuple:
        return tuple(a[self.varied[j].name] for a in self.assigned)

    def by_symbol(self, vec) -> dict:
        """{symbol name: (Symbol, [(its size, value) in the run it starts from, (its size, value)]
        for each run that varies it)} for the symbols some run of which changes ``vec``."""
        groups: dict = {}
        for j in range(1, len(vec)):
            sym, p = self.varied[j], self.parents[j]
            groups.setdefault(sym.name, (sym, []))[1].append((self.assigned[p][sym.name], vec[p], self.run_sizes[j], vec[j]))
        return {name: g for name, g in groups.items() if any(v != vp for _, vp, _, v in g[1])}

    def changed(self, vec) -> list[int]:
        return [j for j in range(1, len(vec)) if vec[j] != vec[self.parents[j]]]

    def conflict(self, runs, reason: str):
        """Blame the symbol of the first of ``runs`` whose own change makes the difference: not a run
        that differs only as the run it starts from does."""
        j = next((j for j in runs if self.parents[j] not in runs), runs[0]) if runs else 1
        raise VariationFailed(self.varied[j].name, reason, retry=False)

    def runs_of(self, expr: str) -> list[int]:
        """The runs that vary a symbol ``expr`` depends on."""
        names = set()
        for n in sym_names(expr):
            names |= set(self.deps.get(n, (n,)))
        return [j for j, s in enumerate(self.varied) if s is not None and s.name in names]

    def size_expr(self, node: str, axis: int):
        meta = self.metas.get(node)
        d = meta.shape[axis] if isinstance(meta, TensorMeta) and axis < meta.rank else None
        if d is None:
            raise KeyError(node)
        return d if isinstance(d, int) else d.expr

    def computed(self, values):
        """The expression of a size Python computed (fx_sizes.SizeInt), when every run has one."""
        trees = {v.tree for v in values if isinstance(v, SizeInt)}
        if len(trees) != 1 or not all(isinstance(v, SizeInt) for v in values):
            return None
        try:
            return expression(values[0].tree, self.size_expr)
        except KeyError:
            return None

    # --- naming a vector ----------------------------------------------------------------------

    def fit(self, vec, anchor=None) -> Sym | None:
        """The Sym reproducing ``vec``; with ``anchor`` (node, axis) a new derived size otherwise."""
        if vec in self.atoms:
            name = self.atoms[vec]
            if anchor is not None and name in self.deps and name not in self.anchors:
                self.anchors[name] = anchor
            return Sym(name)
        expr = self._monomial(vec) or self._affine(vec) or self._of_atoms(vec)
        if expr is None and anchor is not None:
            expr = f"d{len(self.deps)}"
            self.anchors[expr] = anchor
            self.deps[expr] = frozenset(self.varied[j].name for j in self.changed(vec))
        if expr is not None:
            self.atoms[vec] = expr
            return Sym(expr)
        return None

    def _monomial(self, vec):
        """k * s_i**e_i * ... for the symbols that change it (e <= MAX_POWER), in every run."""
        groups = self.by_symbol(vec)
        if vec[0] <= 0 or not groups:
            return None
        powers = {}
        for name, (sym, points) in groups.items():
            e = next((e for e in range(1, MAX_POWER + 1)
                      if all(v * sp ** e == vp * size ** e for sp, vp, size, v in points)), None)
            if e is None:
                return None
            powers[name] = (sym.size, e)
        base = int(np.prod([b ** e for b, e in powers.values()]))
        if vec[0] % base:
            return None
        factors = [name if e == 1 else f"{name}**{e}" for name, (_, e) in sorted(powers.items())]
        return _term(vec[0] // base, factors)

    def _affine(self, vec):
        """c + k_i*s_i + ... with integer k, in every run (no constant term with the batch)."""
        groups = self.by_symbol(vec)
        terms, c = [], vec[0]
        for name, (sym, points) in groups.items():
            slopes = {(v - vp) / (size - sp) for sp, vp, size, v in points}
            if len(slopes) != 1 or not float(next(iter(slopes))).is_integer():
                return None
            k = int(slopes.pop())
            c -= k * sym.size
            terms.append(_term(k, [name]) if k > 0 else f"-{_term(-k, [name])}")
        if not terms or (c and any(sym.batch for sym, _ in groups.values())):
            return None
        expr = " + ".join(terms).replace("+ -", "- ")
        return f"{expr} + {c}" if c > 0 else f"{expr} - {-c}" if c < 0 else expr

    def _of_atoms(self, vec):
        """k*d, d//k, d + c or d*e for sizes d, e already named."""
        atoms = list(self.atoms.items())[:MAX_ATOMS]
        for avec, name in atoms:
            a0, v0 = avec[0], vec[0]
            if a0 and v0 % a0 == 0 and all(v == a * (v0 // a0) for v, a in zip(vec, avec)):
                return _term(v0 // a0, [_paren(name)])
            if v0 and a0 % v0 == 0 and v0 < a0 and all(v == a // (a0 // v0) for v, a in zip(vec, avec)):
                return f"{_paren(name)}//{a0 // v0}"
            if all(v - a == v0 - a0 for v, a in zip(vec, avec)):
                c = v0 - a0
                return f"{name} + {c}" if c > 0 else f"{name} - {-c}"
        for i, (avec, a) in enumerate(atoms):
            for bvec, b in atoms[i:]:
                if all(v == x * y for v, x, y in zip(vec, avec, bvec)):
                    return f"{_paren(a)}*{_paren(b)}"
        return None

    # --- walking values -----------------------------------------------------------------------

    def value(self, values, what: str, sizes: bool = True, anchor=None):
        """One value, given per run: a constant, a Sym, or the same structure of them."""
        first = values[0]
        odd = [j for j, v in enumerate(values) if type(v) is not type(first)]
        if odd:
            self.conflict(odd, f"{what} changes type with it ({first!r} vs {values[odd[0]]!r})")
        if isinstance(first, TensorMeta):
            bad = [j for j, v in enumerate(values) if v.dtype != first.dtype or len(v.shape) != len(first.shape)]
            if bad:
                self.conflict(bad, f"{what}: {first} vs {values[bad[0]]}")
            dims = []
            for axis, vec in enumerate(zip(*(v.shape for v in values))):
                if len(set(vec)) == 1:
                    dims.append(vec[0])
                    continue
                sym = self.fit(tuple(vec), None if anchor is None else (anchor, axis))
                dims.append(sym if sym is not None else Sym(self._unnamed(tuple(vec))))
            return TensorMeta(tuple(dims), first.dtype)
        if isinstance(first, (list, tuple)):
            bad = [j for j, v in enumerate(values) if len(v) != len(first)]
            if bad:
                self.conflict(bad, f"{what} changes length with it")
            return type(first)(self.value(list(vs), what, sizes) for vs in zip(*values))
        if isinstance(first, dict):
            bad = [j for j, v in enumerate(values) if v.keys() != first.keys()]
            if bad:
                self.conflict(bad, f"{what} changes with it")
            return {k: self.value([v[k] for v in values], f"{what}.{k}", sizes) for k in first}
        vec = tuple(values)
        expr = self.computed(values) if isinstance(first, SizeInt) else None
        if isinstance(expr, str):
            # a size worked out in Python from dynamic sizes: its formula, even where the runs agree
            if not sizes:
                self.conflict(self.runs_of(expr), f"{what}: a value computed from a dynamic size ({expr}) where a "
                                                  "size is not expected")
            # the name the runs' values have where they have one (2*s0 rather than s0*2); every run,
            # odd-size probes included, agrees with it
            fitted = self.fit(vec) if len(set(vec)) > 1 else None
            return fitted if fitted is not None else Sym(expr)
        if isinstance(first, int) and not isinstance(first, bool) and len(set(vec)) > 1:
            if not sizes:
                self.conflict(self.changed(vec), f"{what}: a value that changes with it where a size is not expected")
            sym = self.fit(vec)
            if sym is None:
                self.conflict(self.changed(vec), f"{what}: {' / '.join(map(str, vec))} follows no size the graph has")
            return sym
        bad = [j for j, v in enumerate(values) if v != first and not (isinstance(first, float) and np.isnan(first)
                                                                       and np.isnan(v))]
        if bad:
            self.conflict(bad, f"{what} changes with it ({first!r} vs {values[bad[0]]!r})")
        # a size Python computed that every run agrees on (max(2*q / q, 1.0)): a plain number
        return float(first) if isinstance(first, SizeQuotient) else int(first) if isinstance(first, SizeInt) else first

    def _unnamed(self, vec) -> str:
        """A dynamic size with no tensor to read it from yet (inside a tuple result)."""
        name = f"d{len(self.deps)}"
        self.deps[name] = frozenset(self.varied[j].name for j in self.changed(vec))
        self.atoms[vec] = name
        return name

    def args(self, values: list[dict], types_: dict, what: str, target: str = "") -> dict:
        first = values[0]
        bad = [j for j, v in enumerate(values) if v.keys() != first.keys()]
        if bad:
            self.conflict(bad, f"{what}: the arguments change with it")
        sized = SIZE_SCALARS.get(target, ())
        return {k: self.value([v[k] for v in values], f"{what}.{k}", sizes=k in sized or _size_type(types_.get(k)))
                for k in first}


def _paren(expr: str) -> str:
    return expr if expr.replace("_", "").isalnum() else f"({expr})"


def merge(recordings, varied, run_sizes, parents=None) -> SourceGraph:
    """One SourceGraph from the runs (see the module doc). ``varied[j]``: the Symbol run j changes
    (None for run 0, the example's) from run ``parents[j]`` (0 unless given); ``run_sizes[j]``: its
    size in that run."""
    m = _Merge(varied, run_sizes, parents)
    first = recordings[0]
    params = [j for j, rec in enumerate(recordings) if [n.name for n in rec.params] != [n.name for n in first.params]]
    if params:
        m.conflict(params, "the parameters used change with it")
    for name, (path, array, _) in first.param_values.items():
        values = [rec.param_values[name] for rec in recordings]
        changes = [j for j, (other_path, other, _) in enumerate(values) if j and (other_path != path or not (
            _same_memory(array, other) or np.array_equal(array, other, equal_nan=True)))]
        if changes:
            m.conflict(changes, f"constant {path} changes with it")
    lengths = [j for j, rec in enumerate(recordings) if len(rec.calls) != len(first.calls)]
    if lengths:
        m.conflict(lengths, f"the graph changes with it ({len(first.calls)} vs {len(recordings[lengths[0]].calls)} calls)")
    inputs = []
    for p in first.params:
        m.metas[p.name] = p.meta
    for k, a in enumerate(first.inputs):
        meta = m.value([rec.inputs[k].meta for rec in recordings], f"input {a.name}", anchor=a.name)
        inputs.append(SourceNode(a.name, "input", meta=meta))
        m.metas[a.name] = meta
    calls = [_merge_call(m, [rec.calls[i] for rec in recordings], first.arg_types)
             for i in range(len(first.calls))]
    outputs = m.value([rec.outputs for rec in recordings], "outputs")
    symbols = {}
    for i, node in enumerate(inputs):
        for axis, d in enumerate(getattr(node.meta, "shape", ())):
            if isinstance(d, Sym) and d.expr in {s.name for s in varied if s is not None}:
                symbols.setdefault(d.expr, (i, axis))
    return SourceGraph(list(first.params) + inputs + calls, [n.name for n in inputs], list(outputs),
                       dict(first.param_values), symbols, dict(first.module_types), [n.meta for n in inputs],
                       traced_by="torch.fx (fast path)", anchors=dict(m.anchors), sym_deps=dict(m.deps))


def _merge_call(m: _Merge, nodes: list, arg_types: dict) -> SourceNode:
    a = nodes[0]
    other = [j for j, b in enumerate(nodes) if not (
        (a.name, a.op, a.target, a.module_path, a.module_type, a.stack) == (
            b.name, b.op, b.target, b.module_path, b.module_type, b.stack) and a.fn is b.fn and a.module is b.module)]
    if other:
        m.conflict(other, f"the graph changes with it at {a.name} ({a.module_path or '<root>'}) / {nodes[other[0]].name}")
    where = f"{a.target} at {a.module_path or '<root>'}"
    args = m.args([n.args for n in nodes], arg_types.get(a.name, {}), where, a.target)
    meta = m.value([n.meta for n in nodes], f"{where} result", anchor=a.name if a.op != "module" else None)
    if a.op == "call" and has_sym(args) and not has_sym(meta):
        # the emitter would fold it as a constant of one size
        runs = sorted({j for sym in syms_in(args) for j in m.runs_of(sym.expr)})
        m.conflict(runs, f"{where}: a size argument with a result of one size")
    call_args = m.value([n.call_args for n in nodes], where)
    call_kwargs = m.value([n.call_kwargs for n in nodes], where)
    m.metas[a.name] = meta
    return SourceNode(a.name, a.op, a.target, args, meta, a.module_path, a.module_type, a.stack,
                      module=a.module, fn=a.fn, call_args=tuple(call_args), call_kwargs=call_kwargs)
