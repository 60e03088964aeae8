"""One real run of the fx graph, recorded: the ATen calls torch's own Python code makes.

The fx graph (see fx_tracer.py) is interpreted on real tensors under a ``TorchFunctionMode`` that
records, inside each leaf module and each function or method call, the ATen calls torch makes
(Conv2d.forward -> aten.conv2d with its padding branch, LSTM.forward -> aten.zeros + aten.lstm...),
so the arguments are exactly the ones torch passes. Overloads and arguments are named as in an
exported program (fx_aten.py). A run yields a ``Recording`` with concrete sizes; fx_merge.py turns
several runs into one symbolic graph.

Anything a recording cannot reproduce exactly (data-dependent Python, an op without a table row,
in-place writes to inputs or aliased tensors...) raises ``FastTraceUnsupported``.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field

from ..frameworks import torch_to_numpy
from .fx_aten import CAST_METHODS, bind, by_aten, classify, is_default, resolve, schema_args, tensor_to
from .fx_common import (
    EqualityAsserted,
    FastTraceUnsupported,
    asserts_equality,
    fetch_attr,
    meta_of,
    mutable,
    opaque_function,
    tensors_in,
)
from .fx_getitem import record_getitem
from .fx_setitem import VIEW_OPS, record_setitem, write_through_view
from .fx_sizes import size_of
from .source_graph import Ref, SourceNode
from .trace import MODULE_LEVEL, _public_name, aten_name

#: the tensor attributes and methods that read its sizes
SIZE_READS = frozenset({"size", "shape", "numel", "nelement", "stride"})


@dataclass
class Recording:
    """One run's graph, with concrete sizes."""

    params: list  # param SourceNodes, in order of first use
    inputs: list  # input SourceNodes
    calls: list  # call / module SourceNodes
    outputs: list
    param_values: dict  # node name -> (torch path, array, trainable)
    arg_types: dict  # node name -> {arg name: schema type}, for Sym checks
    module_types: dict = field(default_factory=dict)
    #: the fx nodes of functions fx kept whole (fx_common.opaque_function) that read a tensor's size
    sized_opaque: set = field(default_factory=set)


def run_cache(root) -> dict:
    """What every run of one trace root looks up alike, kept on the root: the submodule of each
    call_module target, each fx node's module stack, the module's parameters and buffers, each
    parameter as a NumPy view and its meta.
    The runs of one trace all start from the same module state (ModuleState.restore)."""
    cache = root.__dict__.get("_xlate_run_cache")
    if cache is None:
        cache = {"modules": {}, "stacks": {}, "params": {}}
        object.__setattr__(root, "_xlate_run_cache", cache)
    return cache


class Run:
    """Interprets the fx graph on real tensors and records the ATen calls torch makes."""

    def __init__(self, module, root, graph):
        import torch

        self.torch = torch
        self.module = module
        self.root = root
        self.graph = graph
        self.root_type = _public_name(type(module))
        self.cache = run_cache(root)
        known = self.cache.get("known")
        if known is None:  # the module's own tensors, alike in every run (each run adds its fx constants)
            known = {id(p): ("p", path, p) for path, p in module.named_parameters()}
            known.update((id(b), ("b", path, b)) for path, b in module.named_buffers())
            self.cache["known"] = known
        self.known = dict(known)  # id(tensor) -> (kind, path, tensor): parameters, buffers, fx constants
        # id(tensor) -> (node name, a weak reference to that tensor): a tensor may die once no
        # later node reads it (its memory goes back during the run), and an id reused by a new
        # tensor then finds a dead reference instead of the old name
        self.refs: dict[int, tuple] = {}
        self.keep: list = []  # the inputs stay alive
        self.views: dict[int, tuple] = {}  # id(view) -> (weakref view, its base, aten op, its args)
        self.input_ids: set[int] = set()
        self.names: dict[str, int] = {}
        self.rec = Recording([], [], [], [], {}, {}, {"": self.root_type})
        self.stack: tuple = (("", self.root_type),)
        self.env: dict = {}  # fx node -> its value in this run
        self.last_use: dict = {}  # fx node -> index of the last node that reads it
        self.index = 0  # the fx node being run
        self.created: list = []  # tensors recorded while running the current fx node
        self.mode = None
        self.error: BaseException | None = None
        self.protected: set | None = None
        self.inputs: dict = {}  # placeholder name -> tensor
        self.opaque: str | None = None  # the fx node running, when it calls a function fx kept whole
        self.done = 0  # how many fx nodes have run

    # -- names and references --

    def _name(self, base: str) -> str:
        k = self.names.get(base, 0)
        self.names[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def _track(self, tensor, name: str) -> None:
        self.refs[id(tensor)] = (name, weakref.ref(tensor))
        self.created.append(tensor)

    def ref(self, tensor) -> Ref:
        entry = self.refs.get(id(tensor))
        if entry is not None and entry[1]() is tensor:
            return Ref(entry[0])
        known = self.known.get(id(tensor))
        if known is None:
            raise FastTraceUnsupported(f"a tensor of unknown origin ({tuple(tensor.shape)}) used at {self.where()}")
        kind, path, value = known
        name = self._name(f"{kind}_{path.replace('.', '_')}")
        cached = self.cache["params"].get(id(value))
        if cached is not None and cached[0] is value:
            _, array, meta = cached
        else:  # the same tensor in every run of the trace: converted once
            try:
                array = torch_to_numpy(value)
            except Exception as e:  # e.g. bfloat16
                raise FastTraceUnsupported(f"parameter {path}: {e}") from e
            meta = meta_of(value)
            self.cache["params"][id(value)] = (value, array, meta)
        self.rec.params.append(SourceNode(name, "param", meta=meta))
        self.rec.param_values[name] = (path, array, kind == "p")
        self.refs[id(tensor)] = (name, weakref.ref(tensor))
        return Ref(name)

    def where(self) -> str:
        return self.stack[-1][0] or "<root>"

    # -- the fx graph --

    def execute(self, names, values) -> Recording:
        self.begin(names, values)
        try:
            return self.finish()
        finally:  # the recorder and this run refer to each other: a failed run's values go now
            self.release()

    def begin(self, names, values) -> None:
        """Start a run on these inputs: ``step`` runs the fx nodes one at a time (fx_evaluate.py
        steps them while the graph is still being traced), ``finish`` the rest of the graph."""
        self.inputs = dict(zip(names, values))
        self.mode = recorder_class()(self)

    def finish(self) -> Recording:
        nodes = list(self.graph.nodes)
        self.last_use = {a: i for i, n in enumerate(nodes) for a in n.all_input_nodes}
        for n in nodes[self.done:]:
            self.step(n)
        return self.rec

    def release(self) -> None:
        self.mode = None
        self.env.clear()

    def step(self, n) -> None:
        """Run fx node ``n``, the next one, recording the ATen calls torch makes."""
        torch = self.torch
        import torch.utils._pytree as pytree
        from torch.fx.node import map_arg

        env, i = self.env, self.done
        self.index = i
        self.created = []
        if n.op == "placeholder":
            value = self.inputs[n.target]
            node = SourceNode(n.target, "input", meta=meta_of(value))
            self.rec.inputs.append(node)
            self.refs[id(value)] = (n.target, weakref.ref(value))
            self.names[n.target] = 1
            self.keep.append(value)
            self.input_ids.add(id(value))
        elif n.op == "get_attr":
            value = fetch_attr(self.root, n.target)
            if isinstance(value, torch.Tensor) and id(value) not in self.known:
                self.known[id(value)] = ("c", n.target, value)
                self.protected = None
        elif n.op in ("call_module", "call_function", "call_method"):
            args = mutable(map_arg(n.args, lambda a: env[a]))
            kwargs = mutable(map_arg(n.kwargs, lambda a: env[a]))
            self._enter(n)
            value = self._call(n, args, kwargs)
            if n.op == "call_method" and n.target in ("size", "numel") and args:
                value = self._sized(value, args[0], n.target, args[1:])
        elif n.op == "output":
            out = map_arg(n.args[0], lambda a: env[a])
            self.rec.outputs = [self.ref(v) if isinstance(v, torch.Tensor) else v
                                for v in pytree.tree_leaves(out)]
            value = None
        else:
            raise FastTraceUnsupported(f"fx node kind {n.op}")
        env[n] = value
        self.done = i + 1
        for a in n.all_input_nodes:  # a value no later node reads is dropped: its memory goes back
            if self.last_use.get(a) == i:
                env.pop(a, None)

    def _sized(self, value, tensor, method, dims):
        """``x.size(d)`` as a SizeInt that remembers x and d (fx_sizes.py); ``x.size()`` as a tuple of them."""
        torch = self.torch
        if not isinstance(tensor, torch.Tensor):
            return value
        try:
            name = self.ref(tensor).name
        except FastTraceUnsupported:
            return value
        if method == "numel":
            return value  # a product of every size: the merge fits it from the runs
        if isinstance(value, int) and dims:
            return size_of(value, name, dims[0] % tensor.dim())
        if isinstance(value, (tuple, list)):
            return tuple(size_of(v, name, axis) for axis, v in enumerate(value))
        return value

    def _enter(self, n) -> None:
        stacks = self.cache["stacks"]
        stack = stacks.get(n)
        if stack is None:  # the node's module stack, the same in every run
            stack = [("", self.root_type)]
            for path, tp in (n.meta.get("nn_module_stack") or {}).values():
                stack.append((path, _public_name(tp) if isinstance(tp, type) else str(tp)))
            stack = stacks[n] = tuple(stack)
        types = self.rec.module_types
        for path, name in stack[1:]:
            if path not in types:
                types[path] = name
        self.stack = stack

    def _call(self, n, args, kwargs):
        if n.op == "call_module":
            mod = self.cache["modules"].get(n.target)
            if mod is None:
                mod = self.cache["modules"][n.target] = self.root.get_submodule(n.target)
            if _public_name(type(mod)) in MODULE_LEVEL:
                return self._module_node(n.target, mod, args, kwargs)
            fn = mod
        elif n.op == "call_function":
            fn = n.target
            self.opaque = n.name if opaque_function(fn) else None
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
            kind = EqualityAsserted if isinstance(e, AssertionError) and asserts_equality(n) else FastTraceUnsupported
            raise kind(f"running {n.format_node()}: {type(e).__name__}: {e}") from e
        finally:
            self.opaque = None
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
                          tuple(meta_of(o) if isinstance(o, torch.Tensor) else None for o in outs), path, kind,
                          self.stack, module=mod)
        self.rec.calls.append(node)
        for k, (o, alias) in enumerate(zip(outs, out_names)):
            if alias is not None:
                self.rec.calls.append(SourceNode(alias, "call", "getitem", {"arg0": Ref(name), "arg1": k}, meta_of(o),
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
        kind, name = classify(func)
        if kind == "meta":
            if self.opaque is not None and name in SIZE_READS:
                self.rec.sized_opaque.add(self.opaque)
            return func(*args, **kwargs)
        if kind == "python":
            from torch.overrides import redispatch_function

            with mode:
                return redispatch_function(func, types_, args, kwargs)
        try:
            if kind == "refuse":
                raise FastTraceUnsupported(f"{name} at {self.where()}")
            if kind == "getitem":
                return record_getitem(self, *args)
            if kind == "setitem":
                return record_setitem(self, *args)
            if kind == "transpose":  # x.T, x.mT (HF Falcon's fused QKV): the permute torch makes of it
                x = args[0]
                dims = list(range(x.dim()))
                dims = dims[::-1] if name == "T" else dims[:-2] + dims[:-3:-1]
                return self.apply(self.torch.ops.aten.permute.default, x, dims)
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
        op, bound = tensor_to(call_args, call_kwargs) if name == "to" else (None, None)
        if op is None:
            op, bound = resolve(name, call_args, call_kwargs)
        if aten_name(op) not in by_aten():
            raise FastTraceUnsupported(f"{aten_name(op)} (no table row) at {self.where()}")
        written = _written(op, bound)
        if written and id(written[0]) in self.views:
            return write_through_view(self, func, op, bound, args, kwargs, written[0])
        for t in written:
            self.check_writable(t, f"in-place {op._schema.name}")
        try:
            out = func(*args, **kwargs)
        except Exception as e:  # torch rejected the call on this run
            raise FastTraceUnsupported(f"{name} at {self.where()}: {type(e).__name__}: {e}") from e
        self.record_call(op, bound, out)
        return out

    def _constant(self, tensor):
        name = self._name("c_lifted_tensor")
        self.rec.params.append(SourceNode(name, "param", meta=meta_of(tensor)))
        self.rec.param_values[name] = (name[2:], torch_to_numpy(tensor).copy(), False)
        self._track(tensor, name)
        return tensor

    def check_writable(self, t, what: str, allow=frozenset()) -> None:
        """In-place writes are recorded as new values; that is exact only when nothing else sees the
        old one: not an input, parameter or buffer, and no other live tensor sharing its memory.
        Refuse a write to ``t`` that something else would see; ``allow``: ids of views the caller
        writes back itself."""
        if not isinstance(t, self.torch.Tensor):
            raise FastTraceUnsupported(f"{what} at {self.where()}")
        if t.numel() == 0:
            return
        storage = t.untyped_storage().data_ptr()
        if id(t) in self.input_ids or id(t) in self.known or storage in self._protected_storage():
            raise FastTraceUnsupported(f"{what} on an input or parameter at {self.where()}")
        # this node's intermediates, and the values of fx nodes read by this node or later ones
        message = f"{what} on a tensor that has views at {self.where()}"
        if shares(self.created, t, storage, allow):
            raise FastTraceUnsupported(message)
        self.check_live(t, storage, allow, message)

    def check_live(self, t, storage, allow, message) -> None:
        """Refuse a write to ``t`` when the value of an fx node read later shares its memory (a run
        stepped while the graph grows judges that once the graph is complete: fx_evaluate.py)."""
        live = [v for n, v in self.env.items() if self.last_use.get(n, -1) >= self.index]
        if shares(tensors_in(live), t, storage, allow):
            raise FastTraceUnsupported(message)

    def _protected_storage(self) -> set:
        """Memory of the inputs, parameters, buffers and constants: never written by a run."""
        if self.protected is None:
            tensors = [t for _, _, t in self.known.values()] + self.keep  # keep: the inputs
            self.protected = {t.untyped_storage().data_ptr() for t in tensors if t.numel()}
        return self.protected

    def record_call(self, op, bound, out) -> None:
        torch = self.torch
        schema = op._schema
        target = aten_name(op)
        if target not in by_aten():
            raise FastTraceUnsupported(f"{target} (no table row) at {self.where()}")
        _, positional, keyword_only, _ = schema_args(schema)
        last = max((i for i, a in enumerate(positional) if not is_default(a, bound[a.name])), default=-1)
        kept = list(positional[:last + 1])
        kept_kw = [a for a in keyword_only if not is_default(a, bound[a.name])]
        args = {a.name: self._arg(bound[a.name]) for a in kept + kept_kw}
        if "self" in args:
            args["input"] = args.pop("self")
        base = schema.name.split("::")[-1]
        name = self._name(base)
        inner_path, inner_type = self.stack[-1]
        node = SourceNode(name, "call", target, args, meta_of(out), inner_path, inner_type, self.stack, fn=op,
                          call_args=tuple(self._raw(bound[a.name]) for a in kept),
                          call_kwargs={a.name: self._raw(bound[a.name]) for a in kept_kw})
        self.rec.calls.append(node)
        self.rec.arg_types[name] = {("input" if a.name == "self" else a.name): a.real_type
                                    for a in kept + kept_kw}
        if isinstance(out, torch.Tensor):
            self._track(out, name)
            if target in VIEW_OPS and isinstance(bound.get("self"), torch.Tensor):
                # the base held while the view lives (x[a:][b:c].mul_(): the middle view is a temporary)
                key, views = id(out), self.views
                views[key] = (weakref.ref(out, lambda _, k=key: views.pop(k, None)), bound["self"], op,
                              tuple(bound[a.name] for a in schema.arguments[1:]))
        elif isinstance(out, (tuple, list)):
            for k, o in enumerate(out):
                if isinstance(o, torch.Tensor):
                    alias = self._name("getitem")
                    self.rec.calls.append(SourceNode(alias, "call", "getitem", {"arg0": Ref(name), "arg1": k},
                                                     meta_of(o), inner_path, inner_type, self.stack))
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

    def apply(self, op, *args):
        bound = bind(op._schema, args, {})
        out = op(*args)
        self.record_call(op, bound, out)
        return out


def shares(tensors, t, storage, allow) -> bool:
    """Whether a tensor other than ``t`` (and the views in ``allow``) lies in the memory ``storage``."""
    return any(o is not t and id(o) not in allow and o.numel() and o.untyped_storage().data_ptr() == storage
               for o in tensors)


def _written(op, bound) -> list:
    """The arguments an in-place op writes (none for a functional op)."""
    schema = op._schema
    if not schema.is_mutable:
        return []
    return [bound[a.name] for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]


@functools.cache
def recorder_class():
    """The TorchFunctionMode that hands every torch call to its run (defined on first use: torch)."""
    from torch.overrides import TorchFunctionMode

    class Recorder(TorchFunctionMode):
        def __init__(self, run):
            super().__init__()
            self.run = run

        def __torch_function__(self, func, types_, args=(), kwargs=None):
            return self.run.on_torch_function(self, func, types_, args, kwargs or {})

    return Recorder

