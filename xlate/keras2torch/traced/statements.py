"""The statements of a generated ``forward`` before their variables have names, and the pass
that names them.

A statement is ``outs = expr`` where ``expr`` refers to values as ``⟨value⟩`` markers. Naming
runs once over the whole forward: a value whose last use is the current statement hands its
variable on to the statement's output when both are tensors of one dtype (``x = x.permute(...)``),
other outputs are named after what computed them, and names are reused once their value is dead.
Statements whose outputs nobody reads are dropped. ``fold_permutes`` first cancels permutes that
undo each other (a channels-last region between two native convolutions).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..source import identifier

MARKER = re.compile("\u27e8([^\u27e9]+)\u27e9")
_PERMUTE = re.compile("\u27e8([^\u27e9]+)\u27e9\\.permute\\(([-\\d, ]+)\\)")
RESERVED = {"self", "torch", "nn", "F", "math", "Net", "l", "O", "I"} | set(dir(__import__("builtins")))


def mark(name: str) -> str:
    return f"\u27e8{name}\u27e9"


@dataclass
class Statement:
    outs: list
    expr: str
    bases: list
    comment: str = ""


def fold_permutes(stmts: list[Statement], ret_values: list[str]) -> tuple[list[Statement], list[str]]:
    """``b = a.permute(p); c = b.permute(q)`` with ``b`` read once becomes ``c = a.permute(p∘q)``,
    or nothing when that is the identity."""
    uses = Counter(m for s in stmts for m in MARKER.findall(s.expr))
    uses.update(m for r in ret_values for m in MARKER.findall(r))
    kept, made, renamed = [], {}, {}

    def sub(text):
        return MARKER.sub(lambda m: mark(renamed.get(m.group(1), m.group(1))), text)

    for s in stmts:
        s.expr = sub(s.expr)
        match = _PERMUTE.fullmatch(s.expr) if len(s.outs) == 1 else None
        if match and match.group(1) in made and uses[match.group(1)] == 1:
            k, src, first = made.pop(match.group(1))
            kept[k] = None
            perm = tuple(first[int(i)] for i in match.group(2).split(","))
            if perm == tuple(range(len(perm))):
                renamed[s.outs[0]] = src
                continue
            s.expr = f"{mark(src)}.permute({', '.join(map(str, perm))})"
            match = _PERMUTE.fullmatch(s.expr)
        kept.append(s)
        if match:
            made[s.outs[0]] = (len(kept) - 1, match.group(1), tuple(int(i) for i in match.group(2).split(",")))
    return [s for s in kept if s is not None], [sub(r) for r in ret_values]


def name_statements(stmts: list[Statement], params: list, bases: list, ret_values: list, may_pass_on):
    """Variable names for every value. Returns (lines, names by value, return expressions);
    ``may_pass_on(src, out)`` says whether ``out`` may reuse the variable of ``src``."""
    last: dict[str, int] = {}
    for i, s in enumerate(stmts):
        for m in MARKER.findall(s.expr):
            last[m] = i
    for r in ret_values:
        for m in MARKER.findall(r):
            last[m] = len(stmts)
    live: Counter = Counter()
    names: dict[str, str] = {}

    def fresh(base: str) -> str:
        base = identifier(base)
        if base in RESERVED:
            base += "_"
        name, i = base, 1
        while live[name] > 0:
            name = f"{base}_{i}"
            i += 1
        return name

    for v, base in zip(params, bases):
        names[v] = fresh(base)
        live[names[v]] += 1
    lines = []
    for i, s in enumerate(stmts):
        used = MARKER.findall(s.expr)
        dying = [m for m in dict.fromkeys(used) if last.get(m) == i]
        for m in dying:
            live[names[m]] -= 1
        if not any(o in last for o in s.outs) and s.comment != "in place":
            continue
        outs = []
        for j, o in enumerate(s.outs):
            if o not in last:
                outs.append("_")
                continue
            first = used[0] if used else None
            if j == 0 and first in dying and live[names[first]] == 0 and may_pass_on(first, o):
                name = names[first]
            else:
                name = fresh(s.bases[j])
            names[o] = name
            live[name] += 1
            outs.append(name)
        code = MARKER.sub(lambda m: names[m.group(1)], s.expr)
        line = f"{', '.join(outs)} = {code}" if outs else code
        lines.append(f"{line}  # {s.comment}" if s.comment else line)
    rets = [MARKER.sub(lambda m: names[m.group(1)], r) for r in ret_values]
    return lines, names, rets


#: the end of the ValueError a traced class raises for a size it was not traced at (the parity
#: gate's other-size checks skip such a size: the generated code says it is fixed)
FIXED_SIZE_MESSAGE = "and only computes that size"


def guard_lines(guards, variables: list[str]) -> list[str]:
    """Checks for the sizes torch.export fixed: the code computes only those sizes."""
    lines = []
    for i, dim, size in guards:
        var = variables[i]
        message = f"this code was traced with {var}.shape[{dim}] == {size} {FIXED_SIZE_MESSAGE}"
        lines += [f"if {var}.shape[{dim}] != {size}:", f'    raise ValueError(f"{{{var}.shape[{dim}]=}}: {message}")']
    return lines
