"""Write the ``nn.Module`` classes of one captured ``Program``, after ``regions.Plan`` has decided
how each Keras layer in it is written.

Each class scope becomes one class named after its Keras type (``TransformerEncoder``,
``CachedMultiHeadAttention``...): ``__init__`` declares its weights as ``nn.Parameter``s named
after the Keras variables (``self.kernel``), its sublayers (generated classes or native torch
modules) and its non-scalar constants; ``forward`` is its first call's ops, one statement each,
spelled by ``spell.py``; sizes are read where they are used (``x.shape[0]``), variables are named
by ``statements.py``. The classes go to a ``classes.ClassRegistry``, which writes equal ones once.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..source import identifier, literal, torch_dtype
from .classes import ClassRegistry
from .native import rename
from .regions import Plan, Region, is_under, refs
from .spell import Args, spell
from .statements import MARKER, RESERVED, Statement, fold_permutes, guard_lines, mark, name_statements

# ops a Python scalar may stand in for a 0-d tensor argument of
_SCALAR_OK = ("aten.add.", "aten.sub.", "aten.mul.", "aten.multiply.", "aten.div.", "aten.divide.", "aten.true_divide.",
              "aten.pow.", "aten.eq.", "aten.ne.", "aten.lt.", "aten.le.", "aten.gt.", "aten.ge.", "aten.rsub.",
              "aten.remainder.", "aten.floor_divide.", "aten.where.", "aten.masked_fill.", "aten.greater.",
              "aten.less.", "aten.greater_equal.", "aten.less_equal.", "aten.not_equal.", "aten.add_.", "aten.sub_.",
              "aten.mul_.", "aten.div_.", "aten.masked_fill_.", "aten.fill_.")


class Retry(Exception):
    """The writer found that ``scope`` cannot be its own class after all (it needs a size it has no
    tensor for): the caller inlines it and writes again."""

    def __init__(self, scope: str):
        super().__init__(scope)
        self.scope = scope


def attr_name(text: str) -> str:
    import torch

    parts = [p.strip("_") for p in text.split(".")]
    name = identifier("_".join(p for p in parts if p) or "layer")
    if hasattr(torch.nn.Module, name) or name in RESERVED:
        name += "_"
    return name


@dataclass
class Written:
    cls: str
    state: dict = field(default_factory=dict)


class ProgramWriter:
    """Writes every class of one program into ``registry``; ``write()`` returns the root's."""

    def __init__(self, plan: Plan, natives, registry: ClassRegistry, *, root_class: str | None = None,
                 root_doc: str = "", config_of=None):
        self.plan, self.p, self.natives, self.registry = plan, plan.program, natives, registry
        self.config_of = config_of or (lambda scope: {})
        self.root_class, self.root_doc = root_class, root_doc
        self.attrs: dict[tuple, str] = {}  # (class scope, child or weight key) -> attribute
        self.helpers: set = set()
        self.rows: Counter = Counter()

    def write(self) -> Written:
        return self._class("")

    # --- one class --------------------------------------------------------------------------------

    def _children(self, scope: str) -> list[str]:
        status = self.plan.status
        out = []
        for child in self.plan.by_scope:
            if child and status.get(child) in ("class", "native"):
                parent = child.rsplit(".", 1)[0] if "." in child else ""
                if self.plan.class_at_or_above(parent) == scope and child != scope:
                    out.append(child)
        return out

    def _class(self, scope: str) -> Written:
        plan, p = self.plan, self.p
        region = plan.by_scope[scope][0]
        init, state, taken = [], {}, set()
        for child in self._children(scope):
            if plan.status[child] == "native":
                snippet = self.natives.snippets[child][0]
                if snippet.attrs & taken:
                    raise Retry(child)
                taken |= snippet.attrs
                self.attrs[(scope, child)] = next(iter(sorted(snippet.attrs, key=len)))
                init += snippet.init
                state.update(snippet.state)
                self.helpers |= snippet.helpers
                self.rows.update(snippet.rows)
                continue
            written = self._class(child)
            name = self._take(attr_name(child[len(scope) + 1:] if scope else child), taken)
            self.attrs[(scope, child)] = name
            init.append(f"self.{name} = {written.cls}")  # the registry's token for its constructor call
            state.update({f"{name}.{k}": v for k, v in written.state.items()})
        for key, w in p.weights.items():
            if plan.home(key) != scope or (scope, ("w", w.path)) in self.attrs or self._in_native(w.owner):
                continue
            rel = w.owner[len(scope):].strip(".") if w.owner is not None and is_under(w.owner, scope) else ""
            name = self._take(attr_name(f"{rel}.{w.name}" if rel else w.name), taken)
            self.attrs[(scope, ("w", w.path))] = name
            array = self.plan.arrays[w.key]
            init.append(_declare(name, array, w.trainable))
            state[name] = array
        body = _Forward(self, scope, region, taken)
        lines, params, ret = body.write()
        init += body.buffers
        state.update(body.state)
        info = p.scopes.get(scope)
        if scope == "" and self.root_class:
            self.registry.add_root(self.root_class, self.root_doc, init, params, lines, ret)
            return Written(self.root_class, state)
        kind = info.kind if info else p.cls
        doc = f"Keras {kind}, written from its torch.export capture (inference-mode computation)."
        token = self.registry.add(info.cls if info else p.cls, info.keras_name if info else "", doc, init, params,
                                  lines, ret, self.config_of(scope))
        return Written(token, state)

    def _in_native(self, owner: str | None) -> bool:
        """Is the owner of a weight inside a native module (which holds the weight itself)?"""
        while owner:
            if self.plan.status.get(owner) == "native":
                return True
            owner = _parent(owner)
        return False

    @staticmethod
    def _take(name: str, taken: set) -> str:
        base, i = name, 1
        while name in taken:
            name = f"{base}_{i}"
            i += 1
        taken.add(name)
        return name

    def path_to(self, scope: str, target: str) -> str:
        """``self.a.b`` attribute path from class ``scope`` to the module of ``target``."""
        chain = []
        p = target
        while p != scope:
            parent = p.rsplit(".", 1)[0] if "." in p else ""
            owner = self.plan.class_at_or_above(parent)
            chain.insert(0, self.attrs[(owner, p)])
            p = owner
        return ".".join(["self", *chain])


def _declare(name: str, array: np.ndarray, trainable: bool) -> str:
    shape = literal(tuple(int(d) for d in array.shape))
    if array.dtype.kind == "f":
        dtype = "" if array.dtype == np.float32 else f", dtype={torch_dtype(array.dtype.name)}"
        grad = "" if trainable else ", requires_grad=False"
        return f"self.{name} = nn.Parameter(torch.zeros({shape}{dtype}){grad})"
    return f'self.register_buffer("{name}", torch.zeros({shape}, dtype={torch_dtype(array.dtype.name)}))'


class _Forward:
    """The statements of one class's forward, then their variable names."""

    def __init__(self, writer: ProgramWriter, scope: str, region: Region, taken: set):
        self.w, self.plan, self.p = writer, writer.plan, writer.p
        self.scope, self.region, self.taken = scope, region, taken
        self.stmts: list[Statement] = []
        self.alias: dict[str, str] = {}
        self.base: dict[str, str] = {}
        self.available: list[str] = []
        self.buffers: list[str] = []
        self.state: dict = {}
        self.consts: dict[str, str] = {}
        self.current = None

    # --- values -----------------------------------------------------------------------------------

    def canon(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def render(self, value) -> str:
        if isinstance(value, dict):
            if set(value) == {"ref"}:
                return self.ref(value["ref"])
            if "dtype" in value:
                return f"torch.{value['dtype']}"
            if "device" in value:
                return self.device() or "None"
            if "layout" in value:
                return f"torch.{value['layout']}"
            if "memory_format" in value:
                return f"torch.{value['memory_format']}"
            return "{" + ", ".join(f"{k!r}: {self.render(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.render(v) for v in value) + "]"
        if isinstance(value, str):
            return repr(value)
        return literal(value)

    def ref(self, name: str) -> str:
        name = self.canon(name)
        p = self.p
        if name in p.weights:
            w = p.weights[name]
            home = self.plan.home(name)
            return f"{self.w.path_to(self.scope, home)}.{self.w.attrs[(home, ('w', w.path))]}"
        if name in p.constants:
            return self.constant(name)
        if name in self.plan.floating:
            return self.size(name)
        return mark(name)

    def constant(self, name: str) -> str:
        key, _ = self.p.constants[name]
        array = self.plan.arrays[key]
        target = self.current.target if self.current is not None else ""
        if array.ndim == 0 and target.startswith(_SCALAR_OK):
            return literal(array.item())
        if name not in self.consts:
            attr = self.w._take(attr_name("constant"), self.taken)
            dtype = torch_dtype(array.dtype.name)
            self.buffers.append(f'self.register_buffer("{attr}", torch.zeros({literal(tuple(array.shape))}, '
                                f"dtype={dtype}))")
            self.state[attr] = array
            self.consts[name] = attr
        return f"self.{self.consts[name]}"

    def size(self, name: str) -> str:
        """A symbolic size, read from a tensor this forward has."""
        op = self.plan.floating[name]
        if op.target == "aten.sym_size.int":
            tensor, dim = self.canon(op.args[0]["ref"]), op.args[1]
            if tensor in self.available:
                return f"{mark(tensor)}.shape[{dim}]"
            for v in self.available:
                meta = self.plan.meta(v)
                if meta is not None and op.meta.sym in meta.shape:
                    return f"{mark(v)}.shape[{meta.shape.index(op.meta.sym)}]"
            raise Retry(self.scope)
        saved = self.current
        self.current = op
        text = spell(op, Args(op, self.render, self.device(), self._meta))
        self.current = saved
        return f"({text})"

    def device(self) -> str | None:
        for v in self.available:
            meta = self.plan.meta(v)
            if meta is not None and meta.kind == "tensor":
                return f"{mark(v)}.device"
        return None

    def _meta(self, value):
        if isinstance(value, dict) and "ref" in value:
            return self.plan.meta(self.canon(value["ref"]))
        return None

    # --- statements -----------------------------------------------------------------------------

    def add(self, outs: list, expr: str, bases: list, comment: str = "") -> None:
        self.stmts.append(Statement(list(outs), expr, list(bases), comment))
        for o, b in zip(outs, bases):
            self.base[o] = b
            self.available.append(o)

    def walk(self, region: Region) -> None:
        status = self.plan.status
        for item in region.items:
            if not isinstance(item, Region):
                self.op(item)
            elif status.get(item.scope) == "inline":
                self.walk(item)
            elif status.get(item.scope) == "native":
                self.native(item)
            else:
                path = self.w.path_to(self.scope, item.scope)
                args = ", ".join(self.ref(v) for v in item.inputs)
                base = path.rsplit(".", 1)[-1]
                self.add(item.outputs, f"{path}({args})", [base] * len(item.outputs))

    def native(self, region: Region) -> None:
        k = self.plan.by_scope[region.scope].index(region)
        snippet = self.w.natives.snippets[region.scope][k]
        prefix = f"{region.scope}@{k}:"
        mapping = {"x": mark(self.canon(region.inputs[0]))}
        for n, line in enumerate(snippet.forward):
            code, _, comment = line.partition("  # ")
            target, _, expr = code.partition(" = ")
            expr = rename(expr, mapping)
            targets = [t.strip() for t in target.split(",")]
            outs = [f"{prefix}{t}#{n}" for t in targets]
            for t, o in zip(targets, outs):
                mapping[t] = mark(o)
            self.add(outs, expr, targets, comment)
        attr = self.w.attrs[(self.w.plan.class_at_or_above(_parent(region.scope)), region.scope)]
        ret = rename(snippet.ret, mapping)
        if MARKER.fullmatch(ret):
            self.alias[region.outputs[0]] = MARKER.fullmatch(ret).group(1)
            self.available.append(region.outputs[0])
        else:
            self.add([region.outputs[0]], ret, [attr])

    def op(self, op) -> None:
        target = op.target
        self.current = op
        expr = spell(op, Args(op, self.render, self.device(), self._meta))
        self.current = None
        self.add([op.name], expr, [_base_name(op, self)])
        if target.startswith("aten.") and target.split(".")[1].endswith("_"):
            self.stmts[-1].comment = "in place"

    # --- names ----------------------------------------------------------------------------------

    def write(self) -> tuple[list[str], list[str], str]:
        region, p = self.region, self.p
        if self.scope == "":
            params = [name for name, _, _ in p.inputs]
            bases = [arg for _, arg, _ in p.inputs]
        else:
            params = list(region.inputs)
            bases = [self.base_of_input(v) for v in params]
        for v, b in zip(params, bases):
            self.base[v] = b
            self.available.append(v)
        self.walk(region)
        if self.scope == "":
            ret_values = [self.render(o) for o in p.outputs]
        else:
            ret_values = [self.ref(v) for v in region.outputs]
        return self._name(params, ret_values)

    def base_of_input(self, v: str) -> str:
        return value_base(self.plan, v)

    def _name(self, params: list, ret_values: list) -> tuple[list[str], list[str], str]:
        stmts, ret_values = fold_permutes(self.stmts, ret_values)
        single = len(params) == 1 and self.scope != ""
        bases = ["x" if single else self.base[v] for v in params]
        lines, names, rets = name_statements(stmts, params, bases, ret_values,
                                             lambda src, out: _same_kind(self.plan, src, out))
        if self.scope == "":
            lines = guard_lines(self.p.guards, [names[v] for v in params]) + lines
        if self.scope == "" and self.p.output_keys:
            ret = "return {" + ", ".join(f"{k!r}: {r}" for k, r in zip(self.p.output_keys, rets)) + "}"
        else:
            ret = "return " + ", ".join(rets)
        return lines, [names[v] for v in params], ret


def _parent(scope: str) -> str:
    return scope.rsplit(".", 1)[0] if "." in scope else ""


def _same_kind(plan: Plan, src: str, out: str) -> bool:
    """May ``out`` take over the variable of ``src``: both tensors of one dtype (a mask does not
    lend its name to the scores it selects)."""
    a, b = plan.meta(src), plan.meta(out)
    if a is None or b is None:
        return (a is None or a.kind == "tensor") and (b is None or b.kind == "tensor")
    return a.kind == b.kind == "tensor" and a.dtype == b.dtype


_PASS_THROUGH = {"to", "getitem", "clone", "contiguous", "expand", "view", "reshape", "unsqueeze", "squeeze",
                 "permute", "transpose", "slice", "select", "alias", "lift_fresh_copy", "to_copy"}


def value_base(plan: Plan, name: str, depth: int = 0) -> str:
    """A variable name for a value: its argument name, or what computed it ('einsum', 'layer_norm');
    reshapes and casts keep the name of what they reshape."""
    for placeholder, arg, _ in plan.program.inputs:
        if placeholder == name:
            return arg
    op = plan.ops.get(name)
    if op is None:
        return "x"
    base = re.sub(r"_\d+$", "", op.name).lstrip("_") or "t"
    if base in _PASS_THROUGH and depth < 32:
        for r in refs(op.args)[:1]:
            return value_base(plan, r, depth + 1)
    return base


def _base_name(op, fw: _Forward) -> str:
    return value_base(fw.plan, op.name)
