"""How each captured ATen op is written in the generated source: the torch call a person would
write (``x + y``, ``x.reshape(b, s, 4)``, ``F.layer_norm(...)``, ``x[:, 1:3]``).

``spell(op, args)`` returns one Python expression. ``Args`` renders the op's encoded arguments
(values come back as ``⟨name⟩`` markers the source writer later replaces by variable names).
An op with no entry here is written as the ``torch.<name>`` function of the same schema when
torch has one, else as ``torch.ops.aten.<name>.<overload>(...)``: always valid torch, never xlate.
"""

from __future__ import annotations

from collections.abc import Callable

INT_MAX = 9223372036854775807

_SPELLINGS: dict[str, Callable] = {}


class Args:
    """The arguments of one op, rendered on demand by ``render`` (an encoded value -> code)."""

    def __init__(self, op, render: Callable, device: str | None, meta: Callable):
        self.op, self.render, self.device, self.meta = op, render, device, meta
        self.args, self.kwargs = list(op.args), dict(op.kwargs)

    def rank(self, i: int) -> int:
        return self.meta(self.args[i]).rank

    def __len__(self) -> int:
        return len(self.args)

    def raw(self, i: int, default=None):
        return self.args[i] if i < len(self.args) else default

    def __getitem__(self, i: int) -> str:
        return self.render(self.args[i])

    def get(self, i: int, name: str, default=None):
        """Argument ``i`` (or keyword ``name``) as raw data, ``default`` when absent."""
        if i < len(self.args):
            return self.args[i]
        return self.kwargs.get(name, default)

    def code(self, value) -> str:
        return self.render(value)

    def unpacked(self, i: int) -> str:
        """A list argument as comma-separated items (for ``x.permute(0, 2, 1)``)."""
        value = self.args[i]
        items = value if isinstance(value, list) else [value]
        return ", ".join(self.render(v) for v in items)

    def keywords(self, *skip: str, device=True) -> str:
        """The keyword arguments as ``, k=v`` (devices become the inputs' device; layout and
        pin_memory dropped: their defaults)."""
        parts = []
        for k, v in self.kwargs.items():
            if k in skip or k in ("layout", "pin_memory") or (k == "memory_format" and v is not None and
                                                            v.get("memory_format") == "preserve_format"):
                continue
            if k == "device":
                if device and self.device:
                    parts.append(f"device={self.device}")
                continue
            if v is None:
                continue
            parts.append(f"{k}={self.render(v)}")
        return "".join(f", {p}" for p in parts)


def spelling(*targets: str):
    def register(fn):
        for t in targets:
            _SPELLINGS[t] = fn
        return fn

    return register


def spell(op, args: Args) -> str:
    fn = _SPELLINGS.get(op.target) or _SPELLINGS.get(op.target.rsplit(".", 1)[0])
    if fn is not None:
        text = fn(args)
        if text is not None:
            return text
    return generic(op, args)


def generic(op, a: Args) -> str:
    import torch

    _, name, overload = op.target.split(".", 2) if op.target.count(".") >= 2 else ("", op.target, "default")
    positional = ", ".join(a[i] for i in range(len(a)))
    fn = getattr(torch, name, None)
    if fn is not None and type(fn).__name__ == "builtin_function_or_method" and not name.startswith("_"):
        return f"torch.{name}({positional}{a.keywords()})"
    return f"torch.ops.aten.{name}.{overload}({positional}{a.keywords()})"


# --- arithmetic ---------------------------------------------------------------------------------

_INFIX = {"add": "+", "sub": "-", "mul": "*", "multiply": "*", "div": "/", "divide": "/", "true_divide": "/",
          "floor_divide": "//", "remainder": "%", "pow": "**", "matmul": "@", "eq": "==", "ne": "!=", "lt": "<",
          "le": "<=", "gt": ">", "ge": ">=", "greater": ">", "less": "<", "greater_equal": ">=", "less_equal": "<=",
          "not_equal": "!=", "bitwise_and": "&", "bitwise_or": "|", "bitwise_xor": "^",
          "__and__": "&", "__or__": "|", "__xor__": "^"}


def _operand(text: str) -> str:
    return f"({text})" if text.startswith("-") or " " in text else text


def _infix(symbol: str):
    def fn(a: Args):
        alpha = a.kwargs.get("alpha", 1)
        if alpha not in (1, 1.0) or a.kwargs.get("rounding_mode") is not None:
            return None
        return f"{_operand(a[0])} {symbol} {_operand(a[1])}"

    return fn


for _name, _symbol in _INFIX.items():
    spelling(f"aten.{_name}")(_infix(_symbol))
for _name in ("add_", "sub_", "mul_", "div_", "masked_fill_", "clamp_", "copy_", "fill_", "zero_"):
    spelling(f"aten.{_name}")(lambda a, _n=_name: f"{a[0]}.{_n}({', '.join(a[i] for i in range(1, len(a)))}"
                                                   f"{a.keywords()})")

spelling("sym.mul")(_infix("*"))
spelling("sym.add")(_infix("+"))
spelling("sym.sub")(_infix("-"))
spelling("sym.floordiv")(_infix("//"))
spelling("sym.truediv")(_infix("/"))
spelling("sym.mod")(_infix("%"))
spelling("sym.pow")(_infix("**"))


@spelling("aten.rsub")
def _rsub(a):
    if a.kwargs.get("alpha", 1) not in (1, 1.0) or len(a) > 2:
        return None
    return f"{_operand(a[1])} - {_operand(a[0])}"


@spelling("aten.neg", "sym.neg")
def _neg(a):
    return f"-{_operand(a[0])}"


@spelling("aten.bitwise_not")
def _invert(a):
    return f"~{_operand(a[0])}"


@spelling("getitem")
def _getitem(a):
    return f"{a[0]}[{a[1]}]"


@spelling("aten.sym_size.int")
def _sym_size(a):
    return f"{a[0]}.shape[{a[1]}]"


@spelling("sym.sym_max", "sym.sym_min")
def _sym_max(a):
    fn = "max" if a.op.target.endswith("max") else "min"
    return f"{fn}({a[0]}, {a[1]})"


# --- views and indexing -------------------------------------------------------------------------


def _method(name: str, unpack: int | None = None):
    """``x.name(...)``; ``unpack``: the index of a list argument written as separate items."""

    def fn(a: Args):
        rest = []
        for i in range(1, len(a)):
            rest.append(a.unpacked(i) if i == unpack else a[i])
        return f"{a[0]}.{name}({', '.join(rest)}{a.keywords()})"

    return fn


for _name in ("reshape", "view", "permute", "expand", "repeat", "tile"):
    spelling(f"aten.{_name}")(_method(_name, unpack=1))
spelling("aten._unsafe_view")(_method("view", unpack=1))
for _name in ("transpose", "unsqueeze", "flatten", "unflatten", "contiguous", "clone", "t", "masked_fill",
              "chunk", "unbind", "narrow", "expand_as", "type_as", "squeeze", "split", "split_with_sizes", "new_zeros",
              "new_ones", "new_full", "new_empty"):
    spelling(f"aten.{_name}")(_method(_name))


def _index(dim: int, item: str) -> str:
    return "[" + ", ".join([":"] * dim + [item]) + "]"


@spelling("aten.slice.Tensor")
def _slice(a):
    dim, start, end, step = a.get(1, "dim", 0), a.get(2, "start"), a.get(3, "end"), a.get(4, "step", 1)
    lo = "" if start in (None, 0) else a.code(start)
    hi = "" if end is None or end == INT_MAX else a.code(end)
    item = f"{lo}:{hi}" + ("" if step in (1, None) else f":{a.code(step)}")
    return f"{a[0]}{_index(dim % a.rank(0), item)}"


@spelling("aten.select.int")
def _select(a):
    return f"{a[0]}{_index(a.raw(1) % a.rank(0), a[2])}"


@spelling("aten.index.Tensor")
def _index_tensor(a):
    items = [":" if i is None else a.code(i) for i in a.raw(1)]
    return f"{a[0]}[{', '.join(items)}]"


@spelling("aten.embedding.default")
def _embedding(a):
    if len(a) > 2 and a.raw(2) not in (-1, None):
        return f"F.embedding({a[1]}, {a[0]}, padding_idx={a[2]})"
    return f"F.embedding({a[1]}, {a[0]})"


@spelling("aten.einsum.default")
def _einsum(a):
    return f"torch.einsum({a[0]}, {a.unpacked(1)})"


@spelling("aten.cat.default", "aten.stack.default", "aten.concat.default", "aten.concatenate.default")
def _cat(a):
    fn = a.op.target.split(".")[1]
    fn = "cat" if fn in ("concat", "concatenate") else fn
    dim = a.get(1, "dim", 0)
    return f"torch.{fn}({a[0]}" + ("" if dim == 0 else f", dim={a.code(dim)}") + ")"


# --- conversions ----------------------------------------------------------------------------------


@spelling("aten.to", "aten._to_copy.default")
def _to(a):
    dtype = a.kwargs.get("dtype")
    if dtype is None and len(a) > 1 and isinstance(a.raw(1), dict) and "dtype" in a.raw(1):
        dtype = a.raw(1)
    if dtype is None:
        return a[0]
    return f"{a[0]}.to({a.code(dtype)})"


# --- functional ops -------------------------------------------------------------------------------


def _functional(name: str, keep: int | None = None, names: tuple = ()):
    """``F.name(arg0, ...)`` with the first ``keep`` positional arguments (None: all); later
    positional arguments become keywords when ``names`` names them."""

    def fn(a: Args):
        n = len(a) if keep is None else min(keep, len(a))
        parts = [a[i] for i in range(n)]
        for i, key in enumerate(names, start=n):
            if i < len(a) and key:
                parts.append(f"{key}={a[i]}")
        return f"{name}({', '.join(parts)}{a.keywords()})"

    return fn


for _name in ("relu", "silu", "mish", "hardswish", "hardsigmoid", "relu6", "elu", "selu", "celu", "softplus",
              "leaky_relu", "hardtanh", "glu", "logsigmoid", "softsign", "tanhshrink", "gelu"):
    spelling(f"aten.{_name}")(_functional(f"F.{_name}"))
spelling("aten.linear")(_functional("F.linear"))
spelling("aten.layer_norm")(_functional("F.layer_norm", keep=5))
spelling("aten.group_norm")(_functional("F.group_norm", keep=5))
spelling("aten.rms_norm")(_functional("F.rms_norm", keep=4))
spelling("aten.scaled_dot_product_attention")(_functional("F.scaled_dot_product_attention", keep=3,
                                                          names=("attn_mask", "dropout_p", "is_causal")))
for _name in ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "max_pool1d",
              "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
              "adaptive_avg_pool2d", "adaptive_avg_pool3d", "pixel_shuffle", "one_hot"):
    spelling(f"aten.{_name}")(_functional(f"F.{_name}"))


@spelling("aten.softmax.int", "aten.log_softmax.int", "aten._softmax.default", "aten._log_softmax.default")
def _softmax(a):
    fn = "log_softmax" if "log_softmax" in a.op.target else "softmax"
    dtype = a.kwargs.get("dtype") or (a.raw(2) if a.op.target.endswith(".int") else None)
    extra = f", dtype={a.code(dtype)}" if isinstance(dtype, dict) else ""
    return f"torch.{fn}({a[0]}, dim={a[1]}{extra})"


@spelling("aten.constant_pad_nd.default")
def _pad(a):
    value = a.get(2, "value", 0)
    return f"F.pad({a[0]}, {a[1]}" + ("" if value in (0, 0.0) else f", value={a.code(value)}") + ")"


@spelling("aten.dropout.default")
def _dropout(a):
    return f"F.dropout({a[0]}, p={a[1]}, training=self.training)"


@spelling("aten.batch_norm.default")
def _batch_norm(a):
    # (input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
    return f"F.batch_norm({a[0]}, {a[3]}, {a[4]}, {a[1]}, {a[2]}, {a[5]}, {a[6]}, {a[7]})"


@spelling("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar")
def _where(a):
    return f"torch.where({a[0]}, {a[1]}, {a[2]})"


for _name in ("mean", "sum", "amax", "amin", "prod", "any", "all", "argmax", "argmin", "logsumexp", "std", "var",
              "max", "min", "cumsum", "cumprod", "norm"):
    spelling(f"aten.{_name}")(_method(_name))


@spelling("aten.linalg_vector_norm.default")
def _vector_norm(a):
    return _functional("torch.linalg.vector_norm")(a)


@spelling("aten.arange", "aten.full", "aten.zeros", "aten.ones", "aten.empty", "aten.scalar_tensor",
          "aten.zeros_like", "aten.ones_like", "aten.full_like", "aten.empty_like", "aten.tril", "aten.triu",
          "aten.where", "aten.clamp", "aten.clip", "aten.maximum", "aten.minimum")
def _torch_fn(a):
    name = a.op.target.split(".")[1]
    return f"torch.{name}({', '.join(a[i] for i in range(len(a)))}{a.keywords()})"
