"""Fast trace front end: torch.fx symbolic tracing plus two real runs, instead of torch.export.

torch.export spends 0.3-10 s on fake tensors and symbolic shapes. This builds the same kind of
SourceGraph in tens of milliseconds:

1. ``torch.fx`` traces the module symbolically, with every module that has a table row (and the
   recurrent layers, MultiheadAttention) kept as a leaf. Its proxies answer shape questions whose
   answer does not depend on the batch size (``x.dim()``, ``x.shape[1]``, ``x.dtype``; the graph so
   far is evaluated on the examples to know), and conditions on batch sizes that hold for every
   batch of 2 or more (``x.size(0) == y.size(0)``); other Python control flow on traced values
   stops the trace, as in plain fx.
2. The fx graph is run twice on real tensors: at the example's batch size and at a larger one. A
   ``TorchFunctionMode`` records, inside each leaf module and each function or method call, the
   ATen calls torch's own Python code makes (Conv2d.forward -> aten.conv2d with its padding branch,
   LSTM.forward -> aten.zeros + aten.lstm...), so the arguments are exactly the ones torch passes.
   Overloads are chosen the way the dispatcher does, arguments are named by the ATen schema and
   trailing defaults left out, as in an exported program.
3. The two recordings must be the same graph; every size or int argument that differs between them
   and is a multiple of the batch size becomes a ``Sym`` (batch B -> ``s0``, 4*B -> ``4*s0``).

Anything it cannot reproduce exactly (fx tracing errors, data-dependent Python, an op without a
table row, in-place writes to inputs or aliased tensors, a graph or constant that changes with the
batch size...) raises ``FastTraceUnsupported``; ``trace_fast_or_export`` then uses torch.export.
"""

from __future__ import annotations

import functools
import keyword
import logging
import operator
import sys
import types
from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInputError, one_line
from .trace import (
    MODULE_LEVEL,
    Ref,
    SourceGraph,
    SourceNode,
    Sym,
    TensorMeta,
    _as_tuple,
    _public_name,
    aten_name,
    has_sym,
    trace,
)

log = logging.getLogger(__name__)

BATCH_SYMBOL = "s0"


class FastTraceUnsupported(Exception):
    """The fast front end cannot reproduce this module exactly: use torch.export instead."""


def trace_fast_or_export(module, example_inputs) -> SourceGraph:
    """The fx fast path when it applies, else ``trace.trace`` (torch.export)."""
    try:
        return fx_trace(module, example_inputs)
    except FastTraceUnsupported as e:
        log.info("fast trace not applicable, using torch.export: %s", e)
        graph = trace(module, example_inputs)
        graph.traced_by = f"{graph.traced_by} (the fx fast path does not apply: {one_line(e, 160)})"
        return graph


def fx_trace(module, example_inputs) -> SourceGraph:
    """Trace ``module`` with torch.fx and two real runs into a SourceGraph with a dynamic batch.

    Raises FastTraceUnsupported when the result could differ from what the module computes."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    args, kwargs = _as_tuple(example_inputs)
    names, values, call = _bind_inputs(module, args, kwargs)
    batch = _batch_size(values)
    _refuse_hooks(module)
    bigger = batch + 3
    was_training = module.training
    module.eval()
    threads = torch.get_num_threads()
    if _small(module, values):
        # the ops of a small model cost less than waking (and, on a busy machine, waiting for) the
        # intra-op thread pool
        torch.set_num_threads(1)
    try:
        root = _traceable_root(module, names, call)
        graph = _symbolic_trace(root, names, (_copies(values), _copies(values, bigger)))
        with torch.no_grad():
            first = _Run(module, root, graph).execute(names, _copies(values))
            second = _Run(module, root, graph).execute(names, _copies(values, bigger))
    finally:
        torch.set_num_threads(threads)
        module.train(was_training)
    return _merge(first, second, batch, bigger)


# --- inputs and the traced root ---------------------------------------------------------------


def _bind_inputs(module, args, kwargs):
    """Input names (as torch.export names them), tensors, and how the root forward is called."""
    import inspect

    import torch

    values = list(args) if args else list(kwargs.values())
    if not values or not all(isinstance(v, torch.Tensor) for v in values):
        raise FastTraceUnsupported("example inputs that are not all tensors")
    if kwargs:
        names = list(kwargs)
        keys = tuple(names)

        def call(*vals):
            return module.forward(**dict(zip(keys, vals)))
    else:
        params = list(inspect.signature(module.forward).parameters.values())
        names = []
        for p in params:
            if len(names) == len(values):
                break
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append(p.name)
            elif p.kind == p.VAR_POSITIONAL:
                names += [f"{p.name}_{i}" for i in range(len(values) - len(names))]
        if len(names) != len(values):
            raise FastTraceUnsupported("more example inputs than forward() takes positionally")

        def call(*vals):
            return module.forward(*vals)
    if len(set(names)) != len(names) or not all(n.isidentifier() and not keyword.iskeyword(n) and n != "self"
                                                 for n in names):
        raise FastTraceUnsupported(f"input names {names} are not plain identifiers")
    return names, values, call


def _batch_size(values) -> int:
    batched = {v.shape[0] for v in values if v.dim() >= 1}
    if len(batched) != 1:
        raise FastTraceUnsupported(f"inputs disagree on the batch size: {sorted(batched)}")
    (batch,) = batched
    if batch < 2:
        # torch.export specializes a batch of 1; so does the fallback
        raise FastTraceUnsupported("example batch size below 2")
    return batch


SMALL_INPUT = 1 << 16  # elements per sample
SMALL_MODEL = 10_000_000  # parameters


def _small(module, values) -> bool:
    per_sample = sum(v[0].numel() if v.dim() else 1 for v in values)
    return per_sample < SMALL_INPUT and sum(p.numel() for p in module.parameters()) < SMALL_MODEL


def _copies(values, batch: int | None = None) -> list:
    """Fresh copies of the examples; with ``batch``, repeated along dim 0 up to that many rows
    (token ids and masks stay valid)."""
    import torch

    out = []
    for v in values:
        if batch is None or v.dim() == 0:
            out.append(v.clone())
        else:
            out.append(v.index_select(0, torch.arange(batch) % v.shape[0]))
    return out


def _refuse_hooks(module):
    import torch.nn.modules.module as mm

    if mm._global_forward_hooks or mm._global_forward_pre_hooks:
        raise FastTraceUnsupported("global forward hooks")
    for m in module.modules():
        if m._forward_hooks or m._forward_pre_hooks:
            raise FastTraceUnsupported(f"forward hooks on {type(m).__name__}")


def _traceable_root(module, names, call):
    """A module whose forward takes exactly the example inputs, by name, and calls ``module``.

    It shares the module's children, parameters and buffers, so fx sees the same module paths. The
    forward is compiled from source because fx reads the argument names from its code object
    (``*args`` forwards cannot be traced with a known number of inputs)."""
    import torch

    arglist = ", ".join(names)
    namespace = {"_call": call}
    exec(f"def forward(self, {arglist}):\n    return _call({arglist})\n", namespace)  # noqa: S102 - names checked
    root = type("XlateTraceRoot", (torch.nn.Module,), {"forward": namespace["forward"]})()
    object.__setattr__(root, "_modules", module._modules)
    object.__setattr__(root, "_parameters", module._parameters)
    object.__setattr__(root, "_buffers", module._buffers)
    return root


@functools.cache
def _leaf_types() -> set:
    """Public names of the torch.nn classes kept whole by fx: those with a table row."""
    from ..table import table

    names = {name for name in table().by_torch if name.startswith("torch.nn.")}
    return names | set(MODULE_LEVEL) | {"torch.nn.LSTM", "torch.nn.GRU", "torch.nn.RNN"}


# Factories whose values fx would compute once while tracing and keep as a constant.
NONDETERMINISTIC = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
                    "bernoulli", "multinomial", "poisson", "empty", "empty_like", "empty_strided", "new_empty",
                    "uniform_", "normal_", "exponential_", "geometric_", "log_normal_", "cauchy_", "random_",
                    "bernoulli_"}


FACTORIES = {"arange", "zeros", "ones", "full", "eye", "linspace", "tensor", "as_tensor", "scalar_tensor"}


def _symbolic_trace(root, names, examples):
    """fx-trace ``root`` with the table's modules as leaves and shape-aware proxies (see _ShapeTracer)."""
    from torch.overrides import TorchFunctionMode

    tracer = _shape_tracer_class()(_leaf_types(), root, [dict(zip(names, e)) for e in examples])

    class Factories(TorchFunctionMode):
        """Tensors made in forward are graph nodes, as in torch.export, not values fx computes once:
        a random draw would be frozen, and torch.arange(n).expand(proxy, -1) would not trace."""

        def __torch_function__(self, func, types_, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if not tracer.evaluating:
                if name in NONDETERMINISTIC:
                    raise FastTraceUnsupported(f"{name}() in forward (fx would keep one draw as a constant)")
                if name in FACTORIES and isinstance(func, types.BuiltinFunctionType):
                    return tracer.create_proxy("call_function", func, args, kwargs)
            return func(*args, **kwargs)

    try:
        with Factories():
            return tracer.trace(root)
    except FastTraceUnsupported:
        raise
    except Exception as e:  # any fx failure means: use torch.export
        raise FastTraceUnsupported(f"torch.fx: {type(e).__name__}: {one_line(e, 200)}") from e


def _decided(compare, k1, c1, k2, c2) -> bool:
    """Whether k1*B + c1 <op> k2*B + c2 has one answer for all B >= 2 (one of k, c is 0 per side)."""
    k, c = k1 - k2, c2 - c1  # left - right = k * B - c: zero at B = c / k
    if k == 0:
        return True
    crossing = c / k
    if compare in (operator.eq, operator.ne):
        return crossing < 2 or crossing != int(crossing)  # never equal at an integer B >= 2
    if crossing < 2:
        return True
    if crossing == 2:  # zero at B = 2, then the sign of k
        return compare in ((operator.ge, operator.lt) if k > 0 else (operator.le, operator.gt))
    return False


COMPARISONS = {operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge}


@functools.cache
def _shape_tracer_class():
    """A torch.fx Tracer whose proxies answer shape questions that do not depend on the batch.

    Plain fx refuses ``if x.dim() != 3`` or ``if x.shape[1] != self.channels`` (a Proxy in a
    condition). Here the graph built so far is evaluated on the examples at both batch sizes when
    such a question is asked: a size, rank or dtype that is the same at both is answered with that
    value (it does not depend on the batch); a size that differs stays a ``size`` node. A condition
    on such sizes is answered only when it holds for every batch of 2 or more (``to_bool``); any
    other condition on a traced value stops the trace."""
    import torch
    import torch.fx
    from torch.fx._symbolic_trace import _maybe_revert_all_patches
    from torch.fx.node import map_arg

    static_properties = {"ndim", "dtype", "device", "layout", "is_cuda", "is_cpu", "is_sparse", "is_quantized",
                         "is_meta", "is_nested", "requires_grad"}
    static_methods = {"dim", "ndimension", "is_floating_point", "is_complex", "is_signed", "get_device"}

    class ShapeProxy(torch.fx.Proxy):
        def __getattr__(self, k):
            tracer = self.tracer
            if k in static_properties or k == "shape":
                values = tracer.tensors(self)
                if values is not None:
                    return tracer.sizes(self, None) if k == "shape" else tracer.static(values, k, lambda t: getattr(t, k))
            elif k in static_methods or k in ("size", "numel", "nelement"):
                values = tracer.tensors(self)
                if values is not None:
                    if k == "size":
                        return lambda dim=None: tracer.sizes(self, dim)
                    if k in ("numel", "nelement"):
                        return lambda: tracer.numel(self, values)
                    return lambda *a: tracer.static(values, k, lambda t: getattr(t, k)(*a))
            elif not hasattr(torch.Tensor, k) and not k.startswith("_") and tracer.tensors(self) is not None:
                # plain fx answers every attribute (hasattr(x, "anything") is True): a tensor has not
                raise AttributeError(f"'Tensor' object has no attribute '{k}'")
            return super().__getattr__(k)

    class ShapeTracer(torch.fx.Tracer):
        def __init__(self, leaves, root, inputs):
            super().__init__()
            self.proxy_buffer_attributes = True  # buffers are graph inputs, as in torch.export
            self.leaves = leaves
            self.model_root = root
            self.inputs = inputs  # per batch size: placeholder name -> example tensor
            self.envs = [{} for _ in inputs]
            self.batch_sizes = [_batch_size(list(i.values())) for i in inputs]
            self.evaluating = False

        def is_leaf_module(self, m, qualname):
            return _public_name(type(m)) in self.leaves

        def proxy(self, node):
            return ShapeProxy(node, self)

        def tensors(self, proxy):
            """The proxy's value at each batch size, or None when it is not a tensor."""
            node = proxy.node
            if node not in self.envs[0]:
                self._evaluate_until(node)
            values = [env[node] for env in self.envs]
            return values if all(isinstance(v, torch.Tensor) for v in values) else None

        def _evaluate_until(self, target) -> None:
            self.evaluating = True
            try:
                self._evaluate_nodes(target)
            finally:
                self.evaluating = False

        def _evaluate_nodes(self, target) -> None:
            with _maybe_revert_all_patches(), torch.no_grad():
                for node in self.graph.nodes:
                    if node in self.envs[0]:
                        continue
                    for env, inputs in zip(self.envs, self.inputs):
                        try:
                            env[node] = self._evaluate(node, env, inputs)
                        except FastTraceUnsupported:
                            raise
                        except Exception as e:
                            raise FastTraceUnsupported(f"evaluating {node.format_node()}: {type(e).__name__}: {e}") from e
                    if node is target:
                        return

        def _evaluate(self, node, env, inputs):
            if node.op == "placeholder":
                return inputs[node.target]
            if node.op == "get_attr":
                return _fetch_attr(self.model_root, node.target)
            args = map_arg(node.args, lambda a: env[a])
            kwargs = map_arg(node.kwargs, lambda a: env[a])
            if node.op == "call_module":
                return self.model_root.get_submodule(node.target)(*args, **kwargs)
            if node.op == "call_function":
                return node.target(*args, **kwargs)
            if node.op == "call_method":
                return getattr(args[0], node.target)(*args[1:], **kwargs)
            raise FastTraceUnsupported(f"fx node kind {node.op}")

        def to_bool(self, proxy):
            """A comparison that has the same answer for every batch size B >= 2 (the range a dynamic
            batch has in torch.export too): k1*B vs k2*B, or k*B vs a constant it never reaches.
            Any other condition on a traced value stops the trace."""
            node = proxy.node
            compare = node.target if node.op == "call_function" and node.target in COMPARISONS else None
            if compare is not None and len(node.args) == 2 and not node.kwargs:
                (k1, c1), (k2, c2) = sides = [self._linear(a) for a in node.args]
                if None not in (k1, k2) and _decided(compare, k1, c1, k2, c2):
                    return compare(*(k * self.batch_sizes[0] + c for k, c in sides))
            return super().to_bool(proxy)

        def _linear(self, arg):
            """(k, c) with arg == k * batch + c at both batch sizes, k or c zero; (None, None) otherwise."""
            if isinstance(arg, int) and not isinstance(arg, bool):
                return 0, arg
            if not isinstance(arg, torch.fx.Node):
                return None, None
            if arg not in self.envs[0]:
                self._evaluate_until(arg)
            (small, large), (b1, b2) = [env[arg] for env in self.envs], self.batch_sizes
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (small, large)):
                return None, None
            if small == large:
                return 0, small
            if small * b2 != large * b1 or small % b1:
                return None, None
            return small // b1, 0

        @staticmethod
        def static(values, what, fn):
            answers = [fn(v) for v in values]
            if any(a != answers[0] for a in answers[1:]):
                raise FastTraceUnsupported(f"{what} changes with the batch size")
            return answers[0]

        def sizes(self, proxy, dim):
            if isinstance(dim, torch.fx.Proxy):
                return self.create_proxy("call_method", "size", (proxy, dim), {})
            values = self.tensors(proxy)
            if dim is None:
                dims = [self.sizes(proxy, d) for d in range(values[0].dim())]
                return torch.Size(dims) if all(isinstance(d, int) for d in dims) else tuple(dims)
            sizes = {v.shape[dim] for v in values}
            if len(sizes) == 1:
                return sizes.pop()
            return self.create_proxy("call_method", "size", (proxy, dim), {})

        def numel(self, proxy, values):
            counts = {v.numel() for v in values}
            if len(counts) == 1:
                return counts.pop()
            return self.create_proxy("call_method", "numel", (proxy,), {})

    return ShapeTracer


# --- one real run, recorded -------------------------------------------------------------------

# Tensor methods and attributes that read metadata: run as they are, no graph node.
META_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "stride", "is_contiguous", "is_floating_point",
                "is_complex", "is_signed", "element_size", "get_device", "storage_offset", "has_names",
                "is_inference", "_is_view", "__hash__", "_set_grad_enabled"}
META_PROPERTIES = {"shape", "dtype", "device", "ndim", "layout", "requires_grad", "is_cuda", "is_cpu", "is_sparse",
                   "is_quantized", "is_meta", "is_nested", "is_mkldnn", "is_mps", "is_xpu", "names", "is_leaf",
                   "grad_fn", "itemsize"}
# Reading tensor values into Python: the graph would bake in one input's data.
DATA_DEPENDENT = {"__bool__", "item", "tolist", "__int__", "__float__", "__index__", "__complex__", "numpy",
                  "__array__", "__format__", "__repr__", "__str__", "data_ptr", "__setitem__", "__contains__",
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


@dataclass
class _Recording:
    """One run's graph, with concrete sizes."""

    params: list  # param SourceNodes, in order of first use
    inputs: list  # input SourceNodes
    calls: list  # call / module SourceNodes
    outputs: list
    param_values: dict  # node name -> (torch path, array, trainable)
    arg_types: dict  # node name -> {arg name: schema type}, for Sym checks
    module_types: dict = field(default_factory=dict)


class _Run:
    """Interprets the fx graph on real tensors and records the ATen calls torch makes."""

    def __init__(self, module, root, graph):
        import torch

        self.torch = torch
        self.module = module
        self.root = root
        self.graph = graph
        self.root_type = _public_name(type(module))
        self.known = {}  # id(tensor) -> (kind, path, tensor): parameters, buffers, fx constants
        for path, p in module.named_parameters():
            self.known[id(p)] = ("p", path, p)
        for path, b in module.named_buffers():
            self.known[id(b)] = ("b", path, b)
        self.refs: dict[int, str] = {}  # id(tensor) -> node name
        self.keep: list = []  # every tracked tensor stays alive, so ids are not reused
        self.input_ids: set[int] = set()
        self.names: dict[str, int] = {}
        self.rec = _Recording([], [], [], [], {}, {}, {"": self.root_type})
        self.stack: tuple = (("", self.root_type),)
        self.env: dict = {}  # fx node -> its value in this run
        self.last_use: dict = {}  # fx node -> index of the last node that reads it
        self.index = 0  # the fx node being run
        self.created: list = []  # tensors recorded while running the current fx node
        self.mode = None
        self.error: BaseException | None = None
        self.protected: set | None = None

    # -- names and references --

    def _name(self, base: str) -> str:
        k = self.names.get(base, 0)
        self.names[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def _track(self, tensor, name: str) -> None:
        self.refs[id(tensor)] = name
        self.keep.append(tensor)
        self.created.append(tensor)

    def ref(self, tensor) -> Ref:
        name = self.refs.get(id(tensor))
        if name is not None:
            return Ref(name)
        known = self.known.get(id(tensor))
        if known is None:
            raise FastTraceUnsupported(f"a tensor of unknown origin ({tuple(tensor.shape)}) used at {self.where()}")
        kind, path, value = known
        name = self._name(f"{kind}_{path.replace('.', '_')}")
        try:
            array = value.detach().cpu().numpy()
        except Exception as e:  # e.g. bfloat16
            raise FastTraceUnsupported(f"parameter {path}: {e}") from e
        self.rec.params.append(SourceNode(name, "param", meta=_meta(value)))
        self.rec.param_values[name] = (path, array, kind == "p")
        self.refs[id(tensor)] = name
        self.keep.append(tensor)
        return Ref(name)

    def where(self) -> str:
        return self.stack[-1][0] or "<root>"

    # -- the fx graph --

    def execute(self, names, values) -> _Recording:
        torch = self.torch
        import torch.utils._pytree as pytree
        from torch.fx.node import map_arg

        nodes = list(self.graph.nodes)
        for i, n in enumerate(nodes):
            for a in n.all_input_nodes:
                self.last_use[a] = i
        env = self.env
        inputs = dict(zip(names, values))
        self.mode = _recorder_class()(self)
        for i, n in enumerate(nodes):
            self.index = i
            self.created = []
            if n.op == "placeholder":
                value = inputs[n.target]
                node = SourceNode(n.target, "input", meta=_meta(value))
                self.rec.inputs.append(node)
                self.refs[id(value)] = n.target
                self.names[n.target] = 1
                self.keep.append(value)
                self.input_ids.add(id(value))
            elif n.op == "get_attr":
                value = _fetch_attr(self.root, n.target)
                if isinstance(value, torch.Tensor) and id(value) not in self.known:
                    self.known[id(value)] = ("c", n.target, value)
                    self.protected = None
            elif n.op in ("call_module", "call_function", "call_method"):
                args = map_arg(n.args, lambda a: env[a])
                kwargs = map_arg(n.kwargs, lambda a: env[a])
                self._enter(n)
                value = self._call(n, args, kwargs)
            elif n.op == "output":
                out = map_arg(n.args[0], lambda a: env[a])
                self.rec.outputs = [self.ref(v) if isinstance(v, torch.Tensor) else v
                                    for v in pytree.tree_leaves(out)]
                value = None
            else:
                raise FastTraceUnsupported(f"fx node kind {n.op}")
            env[n] = value
        return self.rec

    def _enter(self, n) -> None:
        stack = [("", self.root_type)]
        for path, tp in (n.meta.get("nn_module_stack") or {}).values():
            name = _public_name(tp) if isinstance(tp, type) else str(tp)
            stack.append((path, name))
            self.rec.module_types.setdefault(path, name)
        self.stack = tuple(stack)

    def _call(self, n, args, kwargs):
        if n.op == "call_module":
            mod = self.root.get_submodule(n.target)
            if _public_name(type(mod)) in MODULE_LEVEL:
                return self._module_node(n.target, mod, args, kwargs)
            fn = mod
        elif n.op == "call_function":
            fn = n.target
        else:
            self_obj, *rest = args
            fn, args = getattr(self_obj, n.target), tuple(rest)
        self.error = None
        try:
            with self.mode:
                value = fn(*args, **kwargs)
        except FastTraceUnsupported:
            raise
        except Exception as e:  # the module's own code failed on this run
            if self.error is not None:
                raise self.error from e
            raise FastTraceUnsupported(f"running {n.format_node()}: {type(e).__name__}: {e}") from e
        if self.error is not None:  # swallowed by the module's code: still ours to report
            raise self.error
        return value

    def _module_node(self, path, mod, args, kwargs):
        """A module converted as a whole (MultiheadAttention): one ``module`` node and a getitem
        alias per output, the layout trace._collapse_module_calls produces."""
        torch = self.torch
        call_args = [self._call_value(a) for a in args]
        call_kwargs = {k: self._call_value(v) for k, v in kwargs.items()}
        try:
            out = mod(*args, **kwargs)
        except Exception as e:
            raise FastTraceUnsupported(f"running {path}: {type(e).__name__}: {e}") from e
        outs = out if isinstance(out, tuple) else (out,)
        kind = _public_name(type(mod))
        name = self._name(f"{path}.__call__")
        out_names = [self._name("getitem") if isinstance(o, torch.Tensor) else None for o in outs]
        node = SourceNode(name, "module", kind, {"args": call_args, "kwargs": call_kwargs, "outputs": out_names},
                          tuple(_meta(o) if isinstance(o, torch.Tensor) else None for o in outs), path, kind,
                          self.stack, module=mod)
        self.rec.calls.append(node)
        for k, (o, alias) in enumerate(zip(outs, out_names)):
            if alias is not None:
                self.rec.calls.append(SourceNode(alias, "call", "getitem", {"arg0": Ref(name), "arg1": k}, _meta(o),
                                                 path, kind, self.stack))
                self._track(o, alias)
        return out

    def _call_value(self, v):
        torch = self.torch
        if isinstance(v, torch.Tensor):
            return self.ref(v)
        if isinstance(v, (list, tuple)):
            return type(v)(self._call_value(x) for x in v)
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise FastTraceUnsupported(f"module argument of type {type(v).__name__} at {self.where()}")

    # -- torch functions seen while running a node --

    def on_torch_function(self, mode, func, types_, args, kwargs):
        kind, name = _classify(func)
        if kind == "meta":
            return func(*args, **kwargs)
        if kind == "python":
            from torch.overrides import redispatch_function

            with mode:
                return redispatch_function(func, types_, args, kwargs)
        try:
            if kind == "refuse":
                raise FastTraceUnsupported(f"{name} at {self.where()}")
            if kind == "getitem":
                return self._getitem(*args)
            if kind == "constant":
                return self._constant(func(*args, **kwargs))
            return self._op(func, name, args, kwargs)
        except Exception as e:
            # kept, so that a try/except in the module's code cannot hide a refusal or a bug here
            if self.error is None:
                self.error = e
            raise

    def _op(self, func, name, args, kwargs):
        torch = self.torch
        if "out" in kwargs:
            raise FastTraceUnsupported(f"{name}(out=...) at {self.where()}")
        call_args, call_kwargs = args, kwargs
        if name in CAST_METHODS:
            call_args, call_kwargs = (args[0], getattr(torch, CAST_METHODS[name])), dict(kwargs)
            name = "to"
        op, bound = _tensor_to(call_args, call_kwargs) if name == "to" else (None, None)
        if op is None:
            op, bound = _resolve(name, call_args, call_kwargs)
        if aten_name(op) not in _by_aten():
            raise FastTraceUnsupported(f"{aten_name(op)} (no table row) at {self.where()}")
        self._check_mutation(op, bound)
        try:
            out = func(*args, **kwargs)
        except Exception as e:  # torch rejected the call on this run
            raise FastTraceUnsupported(f"{name} at {self.where()}: {type(e).__name__}: {e}") from e
        self._record(op, bound, out)
        return out

    def _constant(self, tensor):
        name = self._name("c_lifted_tensor")
        self.rec.params.append(SourceNode(name, "param", meta=_meta(tensor)))
        self.rec.param_values[name] = (name[2:], tensor.detach().cpu().numpy().copy(), False)
        self._track(tensor, name)
        return tensor

    def _check_mutation(self, op, bound) -> None:
        """In-place ops are recorded as new values; that is exact only when nothing else sees the
        old one: not an input, parameter or buffer, and no other live tensor sharing its memory."""
        schema = op._schema
        if not schema.is_mutable:
            return
        torch = self.torch
        for a in schema.arguments:
            if a.alias_info is None or not a.alias_info.is_write:
                continue
            t = bound[a.name]
            if not isinstance(t, torch.Tensor):
                raise FastTraceUnsupported(f"in-place {schema.name} at {self.where()}")
            if t.numel() == 0:
                continue
            storage = t.untyped_storage().data_ptr()
            if id(t) in self.input_ids or id(t) in self.known or storage in self._protected_storage():
                raise FastTraceUnsupported(f"in-place {schema.name} on an input or parameter at {self.where()}")
            # values of fx nodes read by this node or later ones, and this node's intermediates
            live = [v for n, v in self.env.items() if self.last_use.get(n, -1) >= self.index]
            others = [o for o in _tensors_in(live) + self.created if o is not t]
            if any(o.numel() and o.untyped_storage().data_ptr() == storage for o in others):
                raise FastTraceUnsupported(f"in-place {schema.name} on a tensor that has views at {self.where()}")

    def _protected_storage(self) -> set:
        """Memory of the inputs, parameters, buffers and constants: never written by a run."""
        if self.protected is None:
            tensors = [t for _, _, t in self.known.values()] + [v for v in self.keep if id(v) in self.input_ids]
            self.protected = {t.untyped_storage().data_ptr() for t in tensors if t.numel()}
        return self.protected

    def _record(self, op, bound, out) -> None:
        torch = self.torch
        schema = op._schema
        target = aten_name(op)
        if target not in _by_aten():
            raise FastTraceUnsupported(f"{target} (no table row) at {self.where()}")
        positional = [a for a in schema.arguments if not a.kwarg_only]
        keyword_only = [a for a in schema.arguments if a.kwarg_only]
        last = max((i for i, a in enumerate(positional) if not _is_default(a, bound[a.name])), default=-1)
        kept = positional[:last + 1]
        kept_kw = [a for a in keyword_only if not _is_default(a, bound[a.name])]
        args = {a.name: self._arg(bound[a.name]) for a in kept + kept_kw}
        if "self" in args:
            args["input"] = args.pop("self")
        base = schema.name.split("::")[-1]
        name = self._name(base)
        inner_path, inner_type = self.stack[-1]
        node = SourceNode(name, "call", target, args, _meta(out), inner_path, inner_type, self.stack, fn=op,
                          call_args=tuple(self._raw(bound[a.name]) for a in kept),
                          call_kwargs={a.name: self._raw(bound[a.name]) for a in kept_kw})
        self.rec.calls.append(node)
        self.rec.arg_types[name] = {("input" if a.name == "self" else a.name): str(a.real_type)
                                    for a in kept + kept_kw}
        if isinstance(out, torch.Tensor):
            self._track(out, name)
        elif isinstance(out, (tuple, list)):
            for k, o in enumerate(out):
                if isinstance(o, torch.Tensor):
                    alias = self._name("getitem")
                    self.rec.calls.append(SourceNode(alias, "call", "getitem", {"arg0": Ref(name), "arg1": k},
                                                     _meta(o), inner_path, inner_type, self.stack))
                    self._track(o, alias)
                elif o is not None:
                    raise FastTraceUnsupported(f"{target} returning {type(o).__name__} at {self.where()}")
        else:
            raise FastTraceUnsupported(f"{target} returning {type(out).__name__} at {self.where()}")

    def _arg(self, v):
        """A value as SourceNode.args hold it: Refs for tensors, dtypes and devices as strings."""
        torch = self.torch
        if isinstance(v, torch.Tensor):
            return self.ref(v)
        if isinstance(v, (list, tuple)):
            return [self._arg(x) for x in v]
        if isinstance(v, torch.dtype):
            return str(v).replace("torch.", "")
        if isinstance(v, (torch.device, torch.memory_format, torch.layout)):
            return str(v)
        return v

    def _raw(self, v):
        """A value as called (for constant folding): Refs for tensors, the rest untouched."""
        if isinstance(v, self.torch.Tensor):
            return self.ref(v)
        if isinstance(v, (list, tuple)):
            return [self._raw(x) for x in v]
        return v

    def _getitem(self, x, index):
        """Tensor indexing as the select / slice / unsqueeze / index ops torch applies."""
        torch = self.torch
        aten = torch.ops.aten
        expected = x[index]
        items = index if isinstance(index, tuple) else (index,)
        used = 0
        for it in items:
            if isinstance(it, bool) or not (it is None or it is Ellipsis or isinstance(it, (int, slice)) or (
                    isinstance(it, torch.Tensor) and it.dim() > 0 and it.dtype in (torch.int64, torch.int32))):
                raise FastTraceUnsupported(f"indexing with {type(it).__name__} at {self.where()}")
            if isinstance(it, slice) and not all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                                 for v in (it.start, it.stop, it.step)):
                raise FastTraceUnsupported(f"slicing with non-int bounds at {self.where()}")
            used += it is not None and it is not Ellipsis
        tensors = [it for it in items if isinstance(it, torch.Tensor)]
        if tensors and any(isinstance(it, int) for it in items):
            raise FastTraceUnsupported(f"indexing that mixes ints and index tensors at {self.where()}")
        cur, dim, advanced = x, 0, {}
        for it in items:
            if it is None:
                cur = self._apply(aten.unsqueeze.default, cur, dim)
                dim += 1
            elif it is Ellipsis:
                dim += x.dim() - used
            elif isinstance(it, int):
                cur = self._apply(aten.select.int, cur, dim, it)
            elif isinstance(it, slice):
                start, stop, step = it.start, it.stop, 1 if it.step is None else it.step
                if not (start in (None, 0) and stop is None and step == 1):
                    cur = self._apply(aten.slice.Tensor, cur, dim, 0 if start is None else start,
                                      sys.maxsize if stop is None else stop, step)
                dim += 1
            else:
                advanced[dim] = it
                dim += 1
        if advanced:
            indices = [advanced.get(d) for d in range(max(advanced) + 1)]
            cur = self._apply(aten.index.Tensor, cur, indices)
        elif cur is x:  # x[:] and friends: torch returns a new view
            cur = self._apply(aten.alias.default, x)
        if cur.shape != expected.shape or cur.dtype != expected.dtype or not torch.equal(
                torch.nan_to_num(cur), torch.nan_to_num(expected)):
            raise FastTraceUnsupported(f"indexing {index!r} not reproduced at {self.where()}")
        return cur

    def _apply(self, op, *args):
        bound = _bind(op._schema, args, {})
        out = op(*args)
        self._record(op, bound, out)
        return out


@functools.cache
def _recorder_class():
    """The TorchFunctionMode that hands every torch call to its run (defined on first use: torch)."""
    from torch.overrides import TorchFunctionMode

    class Recorder(TorchFunctionMode):
        def __init__(self, run):
            super().__init__()
            self.run = run

        def __torch_function__(self, func, types_, args=(), kwargs=None):
            return self.run.on_torch_function(self, func, types_, args, kwargs or {})

    return Recorder


# --- overload resolution and argument binding -------------------------------------------------

_KINDS: dict = {}


def _classify(func):
    """(kind, name) of a callable seen by the mode: meta | python | getitem | constant | op | refuse."""
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
        kind = ("meta", prop) if prop in META_PROPERTIES else ("refuse", f"tensor attribute .{prop}")
    elif name == "__getitem__":
        kind = ("getitem", name)
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


def _resolve(name: str, args, kwargs):
    """The ATen overload the call dispatches to, and every schema argument bound to its value."""
    import torch

    key = (name, _signature(args), tuple((k, _signature((v,))) for k, v in kwargs.items()))
    hit = _RESOLVED.get(key)
    if hit is not None:
        op, packed = hit
        a = _packed(args) if packed else args
        return op, _bind(op._schema, a, kwargs)
    packet = getattr(torch.ops.aten, name, None)
    if packet is None:
        raise FastTraceUnsupported(f"{name}: not an ATen operator")
    for packed in (False, True):
        a = _packed(args) if packed else args
        if a is None:
            continue
        try:
            overload = torch._C._jit_resolve_packet(f"aten::{name}", *a, **kwargs)
        except RuntimeError:  # no schema matches these arguments: try the next form
            continue
        op = getattr(packet, overload or "default")
        bound = _bind(op._schema, a, kwargs, strict=True)
        if bound is not None:
            _RESOLVED[key] = (op, packed)
            return op, bound
    raise FastTraceUnsupported(f"{name}: no ATen overload matches {key[1]}")


def _tensor_to(args, kwargs):
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
    bound = _bind(op._schema, (tensor,), {"dtype": dtype or tensor.dtype, "layout": tensor.layout,
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
        elif isinstance(v, (list, tuple)):
            out.append("[" + _signature(v) + "]")
        else:
            out.append(type(v).__name__)
    return ",".join(out)


def _bind(schema, args, kwargs, *, strict: bool = False):
    """Schema argument name -> value (defaults filled, lists normalized); None when ``strict`` and
    a value is not what Python would pass for that type (e.g. an int for a ScalarType)."""
    params = schema.arguments
    positional = [a for a in params if not a.kwarg_only]
    if len(args) > len(positional):
        return None if strict else _fail(schema, "too many arguments")
    bound = {a.name: v for a, v in zip(positional, args)}
    names = {a.name for a in params}
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
            if strict and not _fits(str(a.real_type), v):
                return None
        elif a.has_default_value():
            v = a.default_value
        else:
            return None if strict else _fail(schema, f"missing {a.name}")
        out[a.name] = _normalized(a, v)
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


def _normalized(arg, v):
    """int[2] given as 1 or [1] -> [1, 1] (the arg parser expands them); tuples, torch.Size -> lists."""
    if isinstance(v, tuple):
        v = list(v)
    if arg.N is not None and str(arg.type).startswith(("List[", "Optional[List[")):
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v] * arg.N
        elif isinstance(v, list) and len(v) == 1 and arg.N > 1:
            v = v * arg.N
    return v


def _is_default(arg, v) -> bool:
    """As the dispatcher decides which arguments to print: a Scalar default only matches a value
    of the same Python type (softplus(beta=1.0) keeps beta; the schema default is the int 1)."""
    if not arg.has_default_value():
        return False
    return _same(v, _normalized(arg, arg.default_value), strict=str(arg.real_type).endswith("number"))


def _same(a, b, strict: bool = False) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, strict) for x, y in zip(a, b))
    if type(a) is type(b):
        return a == b
    numbers = (int, float)
    return (not strict and isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool) and a == b)


def _by_aten():
    from ..table import table

    return table().by_aten


def _fetch_attr(root, target: str):
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _meta(value):
    import torch

    if isinstance(value, torch.Tensor):
        return TensorMeta(tuple(int(d) for d in value.shape), str(value.dtype).replace("torch.", ""))
    if isinstance(value, (tuple, list)):
        return (list if isinstance(value, list) else tuple)(_meta(v) for v in value)
    return value


def _tensors_in(values) -> list:
    import torch

    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out += _tensors_in(v)
        elif isinstance(v, dict):
            out += _tensors_in(list(v.values()))
    return out


# --- the two runs, merged ---------------------------------------------------------------------


class _Merge:
    """Walks two recordings in step; sizes that scale with the batch become Syms."""

    def __init__(self, small: int, large: int):
        self.small, self.large = small, large

    def sym(self, a: int, b: int, what: str):
        if a * self.large == b * self.small and a % self.small == 0 and a > 0:
            k = a // self.small
            return Sym(BATCH_SYMBOL if k == 1 else f"{k}*{BATCH_SYMBOL}")
        raise FastTraceUnsupported(f"{what}: {a} at batch {self.small}, {b} at batch {self.large} "
                                   "is not a multiple of the batch size")

    def value(self, a, b, what: str, sizes: bool = True):
        if type(a) is not type(b):
            raise FastTraceUnsupported(f"{what} changes with the batch size ({a!r} vs {b!r})")
        if isinstance(a, TensorMeta):
            if a.dtype != b.dtype or len(a.shape) != len(b.shape):
                raise FastTraceUnsupported(f"{what}: {a} vs {b}")
            return TensorMeta(tuple(self.value(x, y, what) for x, y in zip(a.shape, b.shape)), a.dtype)
        if isinstance(a, (list, tuple)):
            if len(a) != len(b):
                raise FastTraceUnsupported(f"{what} changes length with the batch size")
            return type(a)(self.value(x, y, what, sizes) for x, y in zip(a, b))
        if isinstance(a, dict):
            if a.keys() != b.keys():
                raise FastTraceUnsupported(f"{what} changes with the batch size")
            return {k: self.value(a[k], b[k], f"{what}.{k}", sizes) for k in a}
        if isinstance(a, int) and not isinstance(a, bool) and a != b:
            if not sizes:
                raise FastTraceUnsupported(f"{what}: a batch-dependent value where a size is not expected")
            return self.sym(a, b, what)
        if a != b and not (isinstance(a, float) and np.isnan(a) and np.isnan(b)):
            raise FastTraceUnsupported(f"{what} changes with the batch size ({a!r} vs {b!r})")
        return a

    def args(self, a: dict, b: dict, types_: dict, what: str, target: str = "") -> dict:
        if a.keys() != b.keys():
            raise FastTraceUnsupported(f"{what}: arguments change with the batch size")
        sized = SIZE_SCALARS.get(target, ())
        return {k: self.value(a[k], b[k], f"{what}.{k}", sizes=k in sized or _size_type(types_.get(k))) for k in a}


# Scalar arguments that are sizes (the emitter builds these from the batch size: torch.arange(x.size(0)))
SIZE_SCALARS = {"aten.arange.default": ("end",), "aten.arange.start": ("start", "end"),
                "aten.arange.start_step": ("start", "end")}


def _size_type(tp) -> bool:
    """Schema types that may hold a batch-dependent size: int, SymInt and lists of them."""
    if tp is None:
        return True
    core = tp
    while core.startswith(("Optional[", "List[")):
        core = core[core.index("[") + 1:-1]
    return core in ("int", "SymInt")


def _merge(first: _Recording, second: _Recording, small: int, large: int) -> SourceGraph:
    m = _Merge(small, large)
    if [n.name for n in first.params] != [n.name for n in second.params]:
        raise FastTraceUnsupported("parameters used change with the batch size")
    for name, (path, array, trainable) in first.param_values.items():
        other = second.param_values[name]
        if other[0] != path or not np.array_equal(array, other[1], equal_nan=True):
            raise FastTraceUnsupported(f"constant {path} changes with the batch size")
    if len(first.calls) != len(second.calls):
        raise FastTraceUnsupported("the graph changes with the batch size")
    inputs = []
    for a, b in zip(first.inputs, second.inputs):
        meta = m.value(a.meta, b.meta, f"input {a.name}")
        if meta.rank and (not isinstance(meta.shape[0], Sym) or any(isinstance(d, Sym) for d in meta.shape[1:])):
            raise FastTraceUnsupported(f"input {a.name} shape {meta.shape}")
        inputs.append(SourceNode(a.name, "input", meta=meta))
    calls = []
    for a, b in zip(first.calls, second.calls):
        same = (a.name, a.op, a.target, a.module_path, a.module_type, a.stack) == (
            b.name, b.op, b.target, b.module_path, b.module_type, b.stack) and a.fn is b.fn and a.module is b.module
        if not same:
            raise FastTraceUnsupported(f"the graph changes with the batch size at {a.name} / {b.name}")
        where = f"{a.target} at {a.module_path or '<root>'}"
        args = m.args(a.args, b.args, first.arg_types.get(a.name, {}), where, a.target)
        meta = m.value(a.meta, b.meta, f"{where} result")
        if a.op == "call" and has_sym(args) and not has_sym(meta):
            # the emitter would fold it as a constant of one batch size
            raise FastTraceUnsupported(f"{where}: a batch-dependent argument with a static result")
        call_args = m.value(a.call_args, b.call_args, where)
        call_kwargs = m.value(a.call_kwargs, b.call_kwargs, where)
        calls.append(SourceNode(a.name, a.op, a.target, args, meta, a.module_path, a.module_type, a.stack,
                                module=a.module, fn=a.fn, call_args=tuple(call_args), call_kwargs=call_kwargs))
    outputs = m.value(first.outputs, second.outputs, "outputs")
    first_batched = next(i for i, n in enumerate(inputs) if n.meta.rank)
    symbols = {BATCH_SYMBOL: (first_batched, 0)}
    module_types = dict(first.module_types)
    return SourceGraph(list(first.params) + inputs + calls, [n.name for n in inputs], list(outputs),
                       dict(first.param_values), symbols, module_types, [n.meta for n in inputs],
                       traced_by="torch.fx (fast path)")
