"""Split a captured ``Program`` along the Keras layer calls it records, and decide how each Keras
layer inside it is written.

Every op carries the calls it sits in (``Op.calls``), so the ops form a tree of ``Region``s: one
per call of a sublayer, nested as the calls were. A layer (a *scope*) is then written as

- ``"class"``: its own ``nn.Module`` class, its calls ``self.<attr>(...)``;
- ``"native"``: a torch module from its table row (``nn.Linear``...), when each call takes one
  tensor and returns one and the row's converter accepts it (``native.py`` decides);
- ``"inline"``: its ops written into the caller's forward, when it cannot stand alone (calls that
  differ from each other, a call split in two, a weight it reads that lives elsewhere).

Weights live in the nearest class at or above the layer that owns them, so a weight is one
``nn.Parameter`` however many calls read it. Symbolic sizes (``x.shape[0]`` and arithmetic on
them) float: the writer re-derives them where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import Meta, Op, Program

FLOATING_TARGETS = ("aten.sym_size.int",)
INT_MAX = 9223372036854775807
_NO_OPS = ("aten.lift_fresh_copy.default", "aten.alias.default", "aten.detach.default", "aten.detach_.default")


def is_floating(op: Op) -> bool:
    return op.target in FLOATING_TARGETS or (op.target.startswith("sym.") and op.meta.kind in ("sym", "int"))


def refs(value) -> list[str]:
    """The value names an encoded argument refers to, in order."""
    if isinstance(value, dict):
        if "ref" in value and len(value) == 1:
            return [value["ref"]]
        return [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def scope_of(call: str) -> str:
    return call.split("@", 1)[0]


def is_under(path: str, ancestor: str) -> bool:
    """``path`` is ``ancestor`` or inside it (module paths; '' is the root)."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


@dataclass(eq=False)
class Region:
    scope: str
    call: str
    parent: Region | None
    items: list = field(default_factory=list)  # Op | Region, in execution order
    defined: set = field(default_factory=set)
    used: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def ops(self):
        for item in self.items:
            if isinstance(item, Region):
                yield from item.ops()
            else:
                yield item

    def regions(self):
        for item in self.items:
            if isinstance(item, Region):
                yield item
                yield from item.regions()


class Plan:
    """The region tree of one program and the status of each scope in it."""

    def __init__(self, program: Program, arrays: dict):
        self.program = program
        self.arrays = arrays
        self.ops = {o.name: o for o in program.ops}
        self._drop_no_ops()
        self.floating = {o.name: o for o in program.ops if is_floating(o)}
        self.root = self._build()
        self.users: dict[str, set] = {}
        for op in program.ops:
            for r in refs(op.args) + refs(op.kwargs):
                self.users.setdefault(r, set()).add(op.name)
        self.output_refs = set(refs(program.outputs))
        self.by_scope: dict[str, list[Region]] = {"": [self.root]}
        for r in self.root.regions():
            self.by_scope.setdefault(r.scope, []).append(r)
        self._bind(self.root)
        self.status: dict[str, str] = {}

    # --- no-ops -------------------------------------------------------------------------------------

    def _drop_no_ops(self) -> None:
        """Remove ops that leave their input as it is (a cast to its own dtype, a full slice,
        a copy nothing writes to...) and point their users at the input."""
        p = self.program
        inplace = any(o.target.startswith("aten.") and o.target.split(".")[1].endswith("_") for o in p.ops)
        alias: dict[str, str] = {}

        def canon(value):
            if isinstance(value, dict):
                if set(value) == {"ref"}:
                    name = value["ref"]
                    while name in alias:
                        name = alias[name]
                    return {"ref": name}
                return {k: canon(v) for k, v in value.items()}
            if isinstance(value, list):
                return [canon(v) for v in value]
            return value

        kept = []
        for op in p.ops:
            op.args, op.kwargs = canon(op.args), canon(op.kwargs)
            if self._is_no_op(op, inplace):
                alias[op.name] = op.args[0]["ref"]
                continue
            kept.append(op)
        p.ops = kept
        p.outputs = canon(p.outputs)
        self.ops = {o.name: o for o in kept}

    def _is_no_op(self, op: Op, inplace: bool) -> bool:
        t = op.target
        if not op.args or not isinstance(op.args[0], dict) or set(op.args[0]) != {"ref"}:
            return False
        src = self.meta(op.args[0]["ref"])
        if t in _NO_OPS or (t == "aten.clone.default" and not inplace):
            return True
        if t.startswith("aten.to.") or t == "aten._to_copy.default":
            fmt = op.kwargs.get("memory_format")
            return src is not None and src.dtype == op.meta.dtype and fmt in (None, {"memory_format": "preserve_format"})
        if t == "aten.slice.Tensor":
            start, end, step = (op.args + [None, None, None, 1])[2:5]
            return start in (None, 0) and end in (None, INT_MAX) and step in (None, 1)
        if t == "aten.dropout.default":
            return len(op.args) > 2 and op.args[2] is False
        return False

    # --- the tree ---------------------------------------------------------------------------------

    def _build(self) -> Region:
        root = Region("", "", None)
        stack = [root]
        for op in self.program.ops:
            if op.name in self.floating:
                continue
            calls = list(op.calls)
            depth = 0
            while depth < len(stack) - 1 and depth < len(calls) and stack[depth + 1].call == calls[depth]:
                depth += 1
            del stack[depth + 1:]
            for call in calls[depth:]:
                region = Region(scope_of(call), call, stack[-1])
                stack[-1].items.append(region)
                stack.append(region)
            stack[-1].items.append(op)
        return root

    def meta(self, name: str):
        """The Meta of a value (None when unknown)."""
        if name in self.ops:
            return self.ops[name].meta
        for placeholder, _, meta in self.program.inputs:
            if placeholder == name:
                return meta
        if name in self.program.constants:
            return self.program.constants[name][1]
        if name in self.program.weights:
            w = self.program.weights[name]
            return Meta("tensor", tuple(w.shape), w.dtype)
        return None

    def is_data(self, name: str) -> bool:
        """A value passed between regions (not a weight, a constant or a floating size)."""
        p = self.program
        return name not in p.weights and name not in p.constants and name not in self.floating

    def _bind(self, region: Region) -> None:
        order = []
        for item in region.items:
            if isinstance(item, Region):
                self._bind(item)
                region.defined |= item.defined
                order += item.used
            else:
                region.defined.add(item.name)
                order += refs(item.args) + refs(item.kwargs)
        region.used = list(dict.fromkeys(order))
        region.inputs = [v for v in region.used if v not in region.defined and self.is_data(v)]
        if region.parent is None:
            region.inputs = [name for name, _, _ in self.program.inputs]
            region.outputs = []
            return
        defined_order = [o.name for o in region.ops()]
        region.outputs = [v for v in defined_order if v in self.output_refs or any(
            u not in region.defined and u not in self.floating for u in self.users.get(v, ()))]

    # --- weights --------------------------------------------------------------------------------

    def weight_uses(self, region: Region):
        """(weight placeholder, the op using it) for every op inside ``region``."""
        for op in region.ops():
            for r in refs(op.args) + refs(op.kwargs):
                if r in self.program.weights:
                    yield r, op

    def home(self, weight: str) -> str:
        """The class scope a weight is declared in: the nearest class at or above its owner."""
        owner = self.program.weights[weight].owner
        return self.class_at_or_above("" if owner is None else owner)

    def class_at_or_above(self, path: str) -> str:
        while path and self.status.get(path) != "class":
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return path

    def renderer(self, region: Region) -> Region:
        """The region whose class forward writes ``region``'s own ops (inline regions write into their caller)."""
        while region.parent is not None and self.status.get(region.scope) != "class":
            region = region.parent
        return region

    # --- statuses -------------------------------------------------------------------------------

    def signature(self, region: Region) -> tuple:
        """What a call computes, with names replaced by positions: equal for calls one class can serve."""
        local = {v: ("in", i) for i, v in enumerate(region.inputs)}
        p = self.program

        def norm(value):
            if isinstance(value, dict) and set(value) == {"ref"}:
                name = value["ref"]
                if name in local:
                    return local[name]
                if name in p.weights:
                    w = p.weights[name]
                    rel = w.owner[len(region.scope):] if w.owner is not None and is_under(w.owner, region.scope) \
                        else ("abs", w.owner)
                    return ("w", rel, w.name)
                if name in p.constants:
                    array = self.arrays[p.constants[name][0]]
                    return ("c", array.dtype.str, array.shape, array.tobytes())
                if name in self.floating:
                    op = self.floating[name]
                    return ("s", op.target, norm(op.args))
                return ("?", name)
            if isinstance(value, dict):
                return tuple(sorted((k, norm(v)) for k, v in value.items()))
            if isinstance(value, list):
                return tuple(norm(v) for v in value)
            return value

        out = []
        counter = 0
        for item in region.items:
            if isinstance(item, Region):
                out.append(("call", item.scope[len(region.scope):], tuple(norm({"ref": v}) for v in item.inputs)))
                for v in item.outputs:
                    local[v] = ("v", counter)
                    counter += 1
            else:
                out.append((item.target, norm(item.args), norm(item.kwargs), item.meta.dtype))
                local[item.name] = ("v", counter)
                counter += 1
        out.append(("return", tuple(norm({"ref": v}) for v in region.outputs)))
        return tuple(out)

    def decide(self, native) -> None:
        """Set ``self.status``; ``native(scope, regions) -> bool`` says whether a scope can be a
        native module (and prepares it)."""
        scopes = self.program.scopes
        status = self.status
        for scope, regions in self.by_scope.items():
            calls = [r.call for r in regions]
            if scope == "":
                status[scope] = "class"
            elif scope not in scopes or len(set(calls)) != len(calls) or len(set(map(self.signature, regions))) > 1:
                status[scope] = "inline"
            else:
                status[scope] = "class"
        for scope, regions in self.by_scope.items():
            if scope and status[scope] == "class" and self._native_candidate(scope, regions) and native(scope, regions):
                status[scope] = "native"
        while self._fix():
            pass

    def _native_candidate(self, scope: str, regions: list[Region]) -> bool:
        for r in regions:
            if len(r.inputs) != 1 or len(r.outputs) != 1 or any(True for _ in r.regions()):
                return False
            for name, _ in self.weight_uses(r):
                owner = self.program.weights[name].owner
                if owner is None or not is_under(owner, scope):
                    return False
        for name, w in self.program.weights.items():
            if w.owner is not None and is_under(w.owner, scope):
                inside = {o.name for r in regions for o in r.ops()}
                if any(u not in inside for u in self.users.get(name, ())):
                    return False
        return True

    def _fix(self) -> bool:
        """Inline one scope that cannot stand as written; True when something changed."""
        status = self.status
        for scope, regions in self.by_scope.items():
            if not scope or status[scope] not in ("class", "native"):
                continue
            for r in regions:
                caller = self.renderer(r.parent)
                if not is_under(scope, caller.scope) or scope == caller.scope:
                    status[scope] = "inline"
                    return True
        for region in [self.root, *self.root.regions()]:
            if status.get(region.scope) != "class" and region.parent is not None:
                continue
            for name, op in self._own_weight_uses(region):
                if not is_under(self.home(name), region.scope):
                    if region.parent is None:
                        return False
                    status[region.scope] = "inline"
                    return True
        return False

    def _own_weight_uses(self, region: Region):
        """Weight uses written by ``region``'s forward: its ops and those of inline sub-regions."""
        for item in region.items:
            if isinstance(item, Region):
                if self.status.get(item.scope) == "inline":
                    yield from self._own_weight_uses(item)
                continue
            for r in refs(item.args) + refs(item.kwargs):
                if r in self.program.weights:
                    yield r, item

    def inline(self, scope: str) -> None:
        """Make ``scope`` inline after the fact (the writer found it cannot stand alone) and re-fix."""
        self.status[scope] = "inline"
        while self._fix():
            pass
