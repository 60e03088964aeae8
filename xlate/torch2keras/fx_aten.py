"""How the fast trace names what it records the way torch.export would: which kind of call a
torch function is (metadata, Python code to step into, an ATen op...), the ATen overload the
dispatcher picks for a call, and the call's arguments bound to that overload's schema (defaults
filled, trailing defaults left out as an exported program prints them).

Pure functions over torch's own schemas; nothing here runs a model.
"""

from __future__ import annotations

import types

from .fx_common import FastTraceUnsupported

# Tensor methods and attributes that read metadata: run as they are, no graph node.
META_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "stride", "is_contiguous", "is_floating_point",
                "is_complex", "is_signed", "element_size", "get_device", "storage_offset", "has_names",
                "is_inference", "_is_view", "__hash__", "_set_grad_enabled", "untyped_storage"}
META_PROPERTIES = {"shape", "dtype", "device", "ndim", "layout", "requires_grad", "is_cuda", "is_cpu", "is_sparse",
                   "is_quantized", "is_meta", "is_nested", "is_mkldnn", "is_mps", "is_xpu", "names", "is_leaf",
                   "grad_fn", "itemsize"}
# Reading tensor values into Python: the graph would bake in one input's data.
DATA_DEPENDENT = {"__bool__", "item", "tolist", "__int__", "__float__", "__index__", "__complex__", "numpy",
                  "__array__", "__format__", "__repr__", "__str__", "data_ptr", "__contains__",
                  "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount"}
# Tensors made from Python data: constants.
CONSTANT_FACTORIES = {"tensor", "as_tensor", "asarray"}
# Tensor methods whose ATen op has another name.
METHOD_TO_ATEN = {"__eq__": "eq", "__ne__": "ne", "__lt__": "lt", "__le__": "le", "__gt__": "gt", "__ge__": "ge",
                  "__invert__": "bitwise_not", "__abs__": "abs", "__iadd__": "add_", "__isub__": "sub_",
                  "__imul__": "mul_", "__itruediv__": "div_", "__idiv__": "div_", "__radd__": "add", "__rmul__": "mul",
                  "__add__": "add", "__sub__": "sub", "__mul__": "mul", "__truediv__": "div", "__div__": "div",
                  "__neg__": "neg"}
# Tensor.float() and friends are Tensor.to(dtype)
CAST_METHODS = {"float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16", "long": "int64",
                "int": "int32", "short": "int16", "char": "int8", "byte": "uint8", "bool": "bool"}

_KINDS: dict = {}


def classify(func):
    """(kind, name) of a callable seen by the mode: meta | python | getitem | setitem | transpose | constant | op |
    refuse."""
    try:
        return _KINDS[func]
    except (KeyError, TypeError):
        pass
    name = getattr(func, "__name__", repr(func))
    if name in DATA_DEPENDENT:
        kind = ("refuse", f"{name} (reads tensor data into Python)")
    elif isinstance(func, types.FunctionType):
        kind = ("python", name)
    elif name == "__get__":
        prop = getattr(getattr(func, "__self__", None), "__name__", "?")
        kind = ("meta", prop) if prop in META_PROPERTIES else ("transpose", prop) if prop in ("T", "mT") else (
            "refuse", f"tensor attribute .{prop}")
    elif name == "__getitem__":
        kind = ("getitem", name)
    elif name == "__setitem__":
        kind = ("setitem", name)
    elif name in META_METHODS:
        kind = ("meta", name)
    elif name in CONSTANT_FACTORIES:
        kind = ("constant", name)
    elif name.startswith("__") and name not in METHOD_TO_ATEN and name not in ("__and__", "__or__", "__xor__"):
        kind = ("refuse", f"Tensor.{name}")
    else:
        kind = ("op", METHOD_TO_ATEN.get(name, name))
    try:
        _KINDS[func] = kind
    except TypeError:
        pass
    return kind


_RESOLVED: dict = {}


def resolve(name: str, args, kwargs):
    """The ATen overload the call dispatches to, and every schema argument bound to its value."""
    import torch

    key = (name, _signature(args), tuple((k, _signature((v,))) for k, v in kwargs.items()))
    hit = _RESOLVED.get(key)
    if hit is not None:
        op, packed, spread = hit
        a, k = _forms(op._schema, args, kwargs, packed, spread)
        return op, bind(op._schema, a, k)
    packet = getattr(torch.ops.aten, name, None)
    if packet is None:
        raise FastTraceUnsupported(f"{name}: not an ATen operator")
    schemas = None
    for packed, spread in ((False, False), (True, False), (False, True)):
        if spread:  # one int for a fixed-size list (F.conv2d(x, w, stride=2)): Python's binding repeats it
            schemas = schemas or torch._C._jit_get_schemas_for_operator(f"aten::{name}")
        for schema in (schemas if spread else [None]):
            a, k = _forms(schema, args, kwargs, packed, spread)
            if a is None:
                continue
            try:
                overload = torch._C._jit_resolve_packet(f"aten::{name}", *a, **k)
            except RuntimeError:  # no schema matches these arguments: try the next form
                continue
            op = getattr(packet, overload or "default")
            bound = bind(op._schema, a, k, strict=True)
            if bound is not None:
                _RESOLVED[key] = (op, packed, spread)
                return op, bound
    raise FastTraceUnsupported(f"{name}: no ATen overload matches {key[1]}")


def _forms(schema, args, kwargs, packed: bool, spread: bool):
    """The arguments as ATen takes them: varargs sizes packed into one list, and/or (``spread``) a
    single int given for ``schema``'s fixed-size int lists repeated to that size."""
    a = _packed(args) if packed else args
    if not spread or a is None:
        return a, kwargs
    sizes = {arg.name: (i, arg.N) for i, arg in enumerate(schema.arguments)
             if arg.N and str(arg.type) in ("List[int]", "List[SymInt]")}
    if not sizes:
        return None, kwargs

    def repeat(v, n):
        return [v] * n if isinstance(v, int) and not isinstance(v, bool) else v

    by_index = {i: n for i, n in sizes.values()}
    a = tuple(repeat(v, by_index[i]) if i in by_index else v for i, v in enumerate(a))
    return a, {k: repeat(v, sizes[k][1]) if k in sizes else v for k, v in kwargs.items()}


def tensor_to(args, kwargs):
    """Tensor.to(device[, dtype], ...) as its C++ binding dispatches it: aten.to.dtype_layout with
    the tensor's own options filled in (to(dtype) and to(other) resolve as usual: (None, None))."""
    import torch

    if not args or not isinstance(args[0], torch.Tensor):
        return None, None
    tensor, rest = args[0], list(args[1:])
    device = kwargs.get("device")
    if rest and isinstance(rest[0], (torch.device, str, int)) and not isinstance(rest[0], bool):
        device = rest.pop(0)
    if device is None:
        return None, None
    dtype = rest.pop(0) if rest and isinstance(rest[0], torch.dtype) else kwargs.get("dtype")
    flags = dict(zip(("non_blocking", "copy"), rest))
    flags.update({k: kwargs[k] for k in ("non_blocking", "copy", "memory_format") if k in kwargs})
    op = torch.ops.aten.to.dtype_layout
    bound = bind(op._schema, (tensor,), {"dtype": dtype or tensor.dtype, "layout": tensor.layout,
                                          "device": torch.device(device), **flags})
    return op, bound


def _packed(args):
    """Python's varargs sizes (x.view(2, -1), torch.zeros(2, 3)) as the single int list ATen takes."""
    import torch

    head = 1 if args and isinstance(args[0], torch.Tensor) else 0
    rest = args[head:]
    if rest and all(isinstance(v, int) and not isinstance(v, bool) for v in rest):
        return (*args[:head], list(rest))
    return None


def _signature(values) -> str:
    import torch

    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append("T")
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append("int")  # a SizeInt (fx_sizes.py) dispatches as an int
        elif isinstance(v, (list, tuple)):
            out.append("[" + _signature(v) + "]")
        else:
            out.append(type(v).__name__)
    return ",".join(out)


class Arg:
    """What the trace reads of one schema argument, read once per schema (``schema_args``): the
    pybind schema objects build a new Python object, and ``str`` of a type a new string, on each
    access, and every recorded ATen call asked for each of them."""

    __slots__ = ("default", "has_default", "kwarg_only", "list_n", "name", "number", "real_type")

    def __init__(self, a):
        self.name = a.name
        self.kwarg_only = a.kwarg_only
        self.real_type = str(a.real_type)
        # N for a fixed-size int list (int[2]): 1 and [1] are expanded to N values
        self.list_n = a.N if a.N is not None and str(a.type).startswith(("List[", "Optional[List[")) else None
        self.has_default = a.has_default_value()
        self.default = _normalized(self, a.default_value) if self.has_default else None
        self.number = self.real_type.endswith("number")


_SCHEMA_ARGS: dict = {}


def schema_args(schema) -> tuple:
    """(every argument, the positional ones, the keyword-only ones, their names) of ``schema``, as
    ``Arg``s; cached by the schema's id (schemas hash by value, which fails on list defaults), the
    schema kept with them so that its id is never reused."""
    hit = _SCHEMA_ARGS.get(id(schema))
    if hit is None:
        args = tuple(Arg(a) for a in schema.arguments)
        hit = _SCHEMA_ARGS[id(schema)] = ((args, tuple(a for a in args if not a.kwarg_only),
                                           tuple(a for a in args if a.kwarg_only), frozenset(a.name for a in args)),
                                          schema)
    return hit[0]


def bind(schema, args, kwargs, *, strict: bool = False):
    """Schema argument name -> value (defaults filled, lists normalized); None when ``strict`` and
    a value is not what Python would pass for that type (e.g. an int for a ScalarType)."""
    params, positional, _, names = schema_args(schema)
    if len(args) > len(positional):
        return None if strict else _fail(schema, "too many arguments")
    bound = {a.name: v for a, v in zip(positional, args)}
    for k, v in kwargs.items():
        if k not in names and k == "input" and params and params[0].name == "self":
            k = "self"
        if k not in names or k in bound:
            return None if strict else _fail(schema, f"argument {k}")
        bound[k] = v
    out = {}
    for a in params:
        if a.name in bound:
            v = bound[a.name]
            if strict and not _fits(a.real_type, v):
                return None
            out[a.name] = _normalized(a, v)
        elif a.has_default:
            out[a.name] = list(a.default) if isinstance(a.default, list) else a.default  # never the cached one
        else:
            return None if strict else _fail(schema, f"missing {a.name}")
    return out


def _fail(schema, what):
    raise FastTraceUnsupported(f"aten::{schema.name}: {what}")


def _fits(tp: str, v) -> bool:
    """Whether Python value ``v`` is what the arg parser accepts for schema type ``tp``."""
    import torch

    if tp.startswith("Optional["):
        return v is None or _fits(tp[9:-1], v)
    if tp.startswith("List["):
        inner = tp[5:-1]
        if isinstance(v, (list, tuple)):
            return all(_fits(inner, x) for x in v)
        return inner == "int" and isinstance(v, int) and not isinstance(v, bool)
    if tp == "Tensor":
        return isinstance(v, (torch.Tensor, int, float, bool))
    if tp in ("int", "SymInt"):
        return isinstance(v, int)
    if tp == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp == "bool":
        return isinstance(v, bool)
    if tp == "number":
        return isinstance(v, (int, float, bool))
    if tp == "str":
        return isinstance(v, str)
    if tp == "ScalarType":
        return isinstance(v, torch.dtype)
    if tp == "Layout":
        return isinstance(v, torch.layout)
    if tp == "MemoryFormat":
        return isinstance(v, torch.memory_format)
    if tp == "Device":
        return isinstance(v, (torch.device, str, int))
    return False


def _normalized(arg: Arg, v):
    """int[2] given as 1 or [1] -> [1, 1] (the arg parser expands them); tuples, torch.Size -> lists."""
    if isinstance(v, tuple):
        v = list(v)
    n = arg.list_n
    if n is not None:
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v] * n
        elif isinstance(v, list) and len(v) == 1 and n > 1:
            v = v * n
    return v


def is_default(arg: Arg, v) -> bool:
    """As the dispatcher decides which arguments to print: a Scalar default only matches a value
    of the same Python type (softplus(beta=1.0) keeps beta; the schema default is the int 1)."""
    if not arg.has_default:
        return False
    return _same(v, arg.default, strict=arg.number)


def _same(a, b, strict: bool = False) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) or hasattr(a, "tree"):
        return False  # a size computed from tensor sizes (fx_sizes.SizeInt) is kept where it is given
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, strict) for x, y in zip(a, b))
    if type(a) is type(b):
        return a == b
    numbers = (int, float)
    return (not strict and isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool) and a == b)


def by_aten():
    from ..table import table

    return table().by_aten
