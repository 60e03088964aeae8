"""Plain data of one captured computation: what the capture child sends back to the parent.

A ``Program`` is a ``torch.export`` graph without torch objects: its ops (ATen targets as
strings, arguments with ``{"ref": name}`` for values), the Keras layer calls each op sits in
(from ``nn_module_stack``), the Keras variables its parameters are (by path, owner layer and
name), the tensor constants, the user inputs and outputs. ``exporting.program_from`` builds it
in the child with ``encode``/``meta_of``/``target_name`` here; ``to_json``/``from_json`` carry it
across the process boundary. Arrays travel separately (an ``.npz`` keyed by ``Weight.key``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# ATen ops that are bookkeeping, never computation: dropped from the graph.
DROPPED = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_scalar.default", "aten.sym_constrain_range_for_size.default",
    "aten.sym_constrain_range.default", "aten._assert_async.msg", "aten._functional_assert_scalar.default",
})


@dataclass
class Meta:
    """What a value is: a tensor (shape with symbolic dims as strings, dtype), a symbolic int,
    a list of values, or anything else."""

    kind: str  # "tensor" | "sym" | "int" | "list" | "other"
    shape: tuple = ()
    dtype: str = ""
    sym: str = ""
    items: tuple = ()

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class Op:
    name: str
    target: str  # "aten.add.Tensor", "getitem", "sym.mul", ...
    args: list
    kwargs: dict
    meta: Meta
    calls: tuple = ()  # Keras layer calls it sits in, outermost first: ("attention", "attention.query@1")


@dataclass
class Weight:
    """A Keras variable the graph reads."""

    key: str  # the array's key in the npz
    path: str  # the Keras variable path ('transformer_layer_0/self_attention_layer/query/kernel')
    name: str  # the variable's own name ('kernel')
    owner: str  # the owning layer's module path inside the traced root ('' root, None: outside it)
    trainable: bool
    shape: tuple
    dtype: str
    index: int = 0  # its position among the owner's own variables (to find it in a twin layer)


@dataclass
class Scope:
    """A Keras layer inside the traced root, by its torch module path ('' is the root)."""

    path: str
    cls: str
    kind: str  # the table key (``walk.kind_of``)
    keras_name: str
    locator: tuple  # indices through ``_flatten_layers(recursive=False)`` from the root


@dataclass
class Program:
    name: str  # the traced layer's path in the model, or the model's name
    cls: str  # the traced root's class name
    inputs: list  # [(placeholder, argument name, Meta)]
    ops: list
    weights: dict  # placeholder -> Weight
    constants: dict  # placeholder -> (array key, Meta)
    outputs: list  # encoded values
    scopes: dict  # module path -> Scope
    output_keys: list | None = None
    notes: list = field(default_factory=list)
    guards: list = field(default_factory=list)  # [input index, dim, size]: sizes torch.export fixed

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def from_json(d: dict) -> Program:
    def meta(m):
        return Meta(m["kind"], tuple(m["shape"]), m["dtype"], m["sym"], tuple(meta(i) for i in m["items"]))

    ops = [Op(o["name"], o["target"], o["args"], o["kwargs"], meta(o["meta"]), tuple(o["calls"])) for o in d["ops"]]
    weights = {k: Weight(**{**w, "shape": tuple(w["shape"])}) for k, w in d["weights"].items()}
    scopes = {k: Scope(**{**s, "locator": tuple(s["locator"])}) for k, s in d["scopes"].items()}
    constants = {k: (v[0], meta(v[1])) for k, v in d["constants"].items()}
    inputs = [(p, n, meta(m)) for p, n, m in d["inputs"]]
    return Program(d["name"], d["cls"], inputs, ops, weights, constants, d["outputs"], scopes, d["output_keys"],
                   list(d["notes"]), [tuple(g) for g in d["guards"]])


# --- building a Program from an ExportedProgram (runs in the child, torch imported) ------------


class CaptureError(Exception):
    """The exported graph holds something the source writer cannot express."""


def encode(a):
    """An fx argument as plain data."""
    import torch

    if isinstance(a, torch.fx.Node):
        return {"ref": a.name}
    if isinstance(a, (list, tuple)):
        return [encode(x) for x in a]
    if isinstance(a, dict):
        return {str(k): encode(v) for k, v in a.items()}
    if isinstance(a, torch.dtype):
        return {"dtype": str(a).removeprefix("torch.")}
    if isinstance(a, torch.device):
        return {"device": str(a)}
    if isinstance(a, torch.layout):
        return {"layout": str(a).removeprefix("torch.")}
    if isinstance(a, torch.memory_format):
        return {"memory_format": str(a).removeprefix("torch.")}
    if a is None or isinstance(a, (bool, int, float, str)):
        return a
    raise CaptureError(f"an argument of type {type(a).__name__} ({a!r})")


def meta_of(val) -> Meta:
    import torch

    if isinstance(val, torch.Tensor):
        # a symbolic size torch.export specialized prints as its value
        shape = tuple(d if isinstance(d, int) else int(str(d)) if str(d).isdigit() else str(d) for d in val.shape)
        return Meta("tensor", shape, str(val.dtype).removeprefix("torch."))
    if isinstance(val, torch.SymInt):
        return Meta("int", sym=str(val)) if str(val).isdigit() else Meta("sym", sym=str(val))
    if isinstance(val, bool):
        return Meta("other")
    if isinstance(val, int):
        return Meta("int", sym=str(val))
    if isinstance(val, (list, tuple)):
        return Meta("list", items=tuple(meta_of(v) for v in val))
    return Meta("other")


_SYM_OPS = {"mul": "sym.mul", "add": "sym.add", "sub": "sym.sub", "floordiv": "sym.floordiv", "truediv": "sym.truediv",
            "mod": "sym.mod", "neg": "sym.neg", "getitem": "getitem", "pow": "sym.pow"}


def target_name(target) -> str:
    import operator

    import torch

    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    if getattr(target, "__module__", None) in (operator.__name__, "_operator"):
        name = target.__name__
        if name in _SYM_OPS:
            return _SYM_OPS[name]
    name = getattr(target, "__name__", str(target))
    if name in ("sym_float", "sym_int", "sym_max", "sym_min", "sym_sum"):
        return f"sym.{name}"
    raise CaptureError(f"the graph calls {getattr(target, '__module__', '')}.{name}, which has no torch spelling")


def calls_of(node) -> tuple:
    """The Keras layer calls an fx node sits in, outermost first, relative to the traced root
    (the wrapper module is ``""`` and the root layer ``"l"``)."""
    out = []
    for key, value in (node.meta.get("nn_module_stack") or {}).items():
        path = value[0] if isinstance(value, tuple) else ""
        if not isinstance(path, str) or path in ("", "l") or not path.startswith("l."):
            continue
        call = path[2:]
        if "@" in key:
            call += "@" + key.rsplit("@", 1)[1]
        out.append(call)
    return tuple(out)
