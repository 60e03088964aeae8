"""The generated classes of one file: one per Keras layer type where the code allows it.

Classes are collected as drafts (each Keras layer written gives one) and finalized at the end:
drafts of one Keras type whose code differs only in numbers (InceptionResNetV2's CustomScaleLayer
at scales 0.17, 0.1, 0.2 and 1.0, say) become one class taking those numbers as constructor
arguments, named after the layer's configuration entry of that value where one matches
(``CustomScaleLayer(scale=0.17)``). Equal drafts are one class. Until then a draft is referred to
by a token (``⟪3⟫``) that ``resolve`` replaces by its constructor call everywhere in the file.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field

from ..helpers import HELPERS
from ..source import identifier
from .statements import RESERVED

_TOKEN = re.compile("\u27ea(\\d+)\u27eb")
MAX_ARGUMENTS = 6


@dataclass
class Draft:
    id: int
    base: str
    hint: str
    doc: str
    init: list
    params: list
    lines: list
    ret: str
    config: dict = field(default_factory=dict)

    @property
    def deps(self) -> set[int]:
        return {int(m) for line in self.init for m in _TOKEN.findall(line)}


def class_text(name, doc, init, params, lines, ret, args=()) -> str:
    out = [f"class {name}(nn.Module):", f'    """{doc}"""', "", f"    def __init__({', '.join(['self', *args])}):",
           "        super().__init__()"]
    out += [f"        self.{a} = {a}" for a in args]
    out += [f"        {line}" for line in init]
    out += ["", f"    def forward({', '.join(['self', *params])}):"]
    out += [f"        {line}" for line in lines]
    out.append(f"        {ret}")
    return "\n".join(out)


def _numbers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, literal) of every number in one line of code."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return [(t.start[1], t.end[1], t.string) for t in tokens if t.type == tokenize.NUMBER and t.start[0] == 1]


def _template(lines: list[str]) -> tuple[tuple, list[str]]:
    shape, values = [], []
    for line in lines:
        nums = _numbers(line)
        cut, last = [], 0
        for start, end, lit in nums:
            cut.append(line[last:start])
            values.append(lit)
            last = end
        cut.append(line[last:])
        shape.append(tuple(cut))
    return tuple(shape), values


def _fill(shape: tuple, values: list[str]) -> list[str]:
    out, it = [], iter(values)
    for cut in shape:
        out.append("".join(p + (next(it) if i < len(cut) - 1 else "") for i, p in enumerate(cut)))
    return out


class ClassRegistry:
    def __init__(self, taken=("Net",)):
        self.drafts: list[Draft] = []
        self.roots: list[Draft] = []  # classes with a fixed name (Net), written last
        self.taken = set(taken)
        self.ctor: dict[int, str] = {}
        self.names: dict[int, str] = {}
        self.texts: list[str] = []

    def add(self, base: str, hint: str, doc, init, params, lines, ret, config=None) -> str:
        """Draft a class; returns the token that stands for its constructor call."""
        draft = Draft(len(self.drafts), identifier(base), hint, doc, list(init), list(params), list(lines), ret,
                      dict(config or {}))
        self.drafts.append(draft)
        return f"\u27ea{draft.id}\u27eb"

    def add_root(self, name: str, doc, init, params, lines, ret) -> None:
        self.roots.append(Draft(-1, name, "", doc, list(init), list(params), list(lines), ret))

    def snapshot(self):
        return len(self.drafts), len(self.roots)

    def restore(self, state) -> None:
        del self.drafts[state[0]:]
        del self.roots[state[1]:]

    def resolve(self, text: str) -> str:
        return _TOKEN.sub(lambda m: self.ctor[int(m.group(1))], text)

    def name_of(self, token: str) -> str:
        match = _TOKEN.fullmatch(token)
        return self.names[int(match.group(1))] if match else token

    # --- finalizing -------------------------------------------------------------------------------

    def finalize(self) -> list[str]:
        """Decide every class and constructor call; returns the class sources, dependencies first."""
        pending = list(self.drafts)
        while pending:
            ready = [d for d in pending if d.deps <= set(self.ctor)]
            if not ready:
                raise RuntimeError("generated classes depend on each other in a cycle")
            groups: dict[tuple, list] = {}
            for d in ready:
                init = [self.resolve(line) for line in d.init]
                shape, values = _template([*d.lines, d.ret])
                key = (d.base, d.doc, tuple(init), tuple(d.params), shape)
                groups.setdefault(key, []).append((d, values))
            for (base, doc, init, params, shape), members in groups.items():
                self._write_group(base, doc, list(init), list(params), shape, members)
            pending = [d for d in pending if d.id not in self.ctor]
        for root in self.roots:
            text = class_text(root.base, root.doc, [self.resolve(x) for x in root.init], root.params,
                              [self.resolve(x) for x in root.lines], root.ret)
            self.texts.append(text)
        return self.texts

    def _write_group(self, base, doc, init, params, shape, members) -> None:
        columns = list(zip(*(values for _, values in members))) if members[0][1] else []
        varying = [k for k, column in enumerate(columns) if len(set(column)) > 1]
        if len(varying) > MAX_ARGUMENTS:  # too different to share one class: one class per distinct body
            by_values: dict[tuple, list] = {}
            for d, values in members:
                by_values.setdefault(tuple(values), []).append((d, values))
            for group in by_values.values():
                self._write_group(base, doc, init, params, shape, group)
            return
        first = members[0][0]
        name = self._name(base, first.hint)
        args = self._argument_names(varying, members, init, params)
        template_values = [f"self.{args[varying.index(k)]}" if k in varying else v
                           for k, v in enumerate(members[0][1])]
        body = _fill(shape, template_values)
        self.texts.append(class_text(name, doc, init, params, body[:-1], body[-1], args))
        for d, values in members:
            call = ", ".join(f"{a}={values[k]}" for a, k in zip(args, varying))
            self.ctor[d.id] = f"{name}({call})"
            self.names[d.id] = name

    def _name(self, base: str, hint: str) -> str:
        if base in RESERVED or base in HELPERS:  # a Keras class named F, nn, torch, list... or like a helper
            base += "Layer"
        candidates = [base, base + "".join(p.capitalize() for p in re.split(r"[\W_]+", hint) if p)]
        name = next((c for c in candidates if c not in self.taken), None)
        n = 2
        while name is None:
            name = f"{base}{n}" if f"{base}{n}" not in self.taken else None
            n += 1
        self.taken.add(name)
        return name

    @staticmethod
    def _argument_names(varying, members, init, params) -> list[str]:
        """A constructor argument per varying number: the configuration entry every layer of the
        group holds that number in, else ``value_<k>``."""
        used = set(params) | {"self"} | {re.split(r"\W", line[5:], 1)[0] for line in init if line.startswith("self.")}
        names = []
        for k in varying:
            found = None
            for key in members[0][0].config:
                if all(_same_number(d.config.get(key), values[k]) for d, values in members):
                    found = identifier(key)
                    break
            name = found if found and found not in used else f"value_{k}"
            while name in used:
                name += "_"
            used.add(name)
            names.append(name)
        return names


def _same_number(value, literal: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return float(value) == float(literal)
    except ValueError:
        return False
