"""Trace stage: torch.export a module into a small, plain source graph.

The exported program (training IR, non-strict) keeps high-level ATen ops (aten.conv2d,
aten.linear, aten.layer_norm, aten.lstm, aten.scaled_dot_product_attention...), which map onto
Keras layers one to one. Modules whose table row converts them as a whole (e.g.
nn.MultiheadAttention) are exported with a preserved call signature and collapsed into one
``module`` node, so they become one Keras layer.
"""

from __future__ import annotations

import functools
import logging
import operator

import numpy as np

from ..errors import BadInputError, UnsupportedOpError
from ..frameworks import torch_to_numpy
from .source_graph import Ref, SourceGraph, SourceNode, Sym, TensorMeta, refs_in

# torch.nn classes converted as a whole module rather than op by op (by their row's hook).
MODULE_LEVEL = frozenset({"torch.nn.MultiheadAttention", "torch.nn.modules.activation.MultiheadAttention"})


def _qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def _public_name(cls) -> str:
    """torch.nn.modules.conv.Conv2d -> torch.nn.Conv2d where that alias exists (cached: the
    recorder asks once per module call of every run)."""
    import torch

    if getattr(torch.nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return _qualname(cls)


def _meta_of(val):
    import torch

    if isinstance(val, torch.Tensor):
        return TensorMeta(tuple(_size(d) for d in val.shape), str(val.dtype).replace("torch.", ""))
    if isinstance(val, (list, tuple)):
        return type(val)(_meta_of(v) for v in val)
    if isinstance(val, torch.SymInt):
        return _size(val)
    if isinstance(val, (int, float, bool)) or val is None:
        return val
    return None


def _size(d):
    import torch

    if isinstance(d, torch.SymInt):
        expr = d.node.expr
        return int(expr) if expr.is_number else Sym(str(expr))
    return int(d)


@functools.cache
def aten_name(op) -> str:
    """An ATen overload as the table names it: aten.conv2d.default (cached: asked per recorded call)."""
    return f"aten.{op._schema.name.split('::')[-1]}.{op._overloadname}"


def _target_name(target) -> str:
    import torch

    if isinstance(target, torch._ops.OpOverload):
        return aten_name(target)
    if target is operator.getitem:
        return "getitem"
    if getattr(target, "__module__", None) in ("_operator", "operator"):
        return f"operator.{target.__name__}"
    if hasattr(target, "__module__") and hasattr(target, "__name__"):
        return f"{target.__module__}.{target.__name__}"
    return str(target)


def _convert_arg(a):
    import torch
    import torch.fx

    if isinstance(a, torch.fx.Node):
        return Ref(a.name)
    if isinstance(a, (list, tuple)):
        return type(a)(_convert_arg(x) for x in a)
    if isinstance(a, torch.dtype):
        return str(a).replace("torch.", "")
    if isinstance(a, (torch.device, torch.memory_format, torch.layout)):
        return str(a)
    return a


def _nodes_torefs_in(a):
    """Arguments as called, with graph nodes replaced by Refs (dtypes, layouts... kept as is)."""
    import torch.fx

    if isinstance(a, torch.fx.Node):
        return Ref(a.name)
    if isinstance(a, (list, tuple)):
        return type(a)(_nodes_torefs_in(x) for x in a)
    return a


def _normalized_args(node) -> dict:
    """Positional and keyword arguments keyed by the op schema's names ("self" becomes "input")."""
    import torch

    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        names = [a.name for a in target._schema.arguments]
        out = {}
        for name, value in zip(names, node.args):
            out[name] = _convert_arg(value)
        for k, v in node.kwargs.items():
            out[k] = _convert_arg(v)
        if "self" in out:
            out["input"] = out.pop("self")
        return out
    out = {f"arg{i}": _convert_arg(a) for i, a in enumerate(node.args)}
    out.update({k: _convert_arg(v) for k, v in node.kwargs.items()})
    return out


def _as_tuple(example_inputs):
    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs), {}
    raise BadInputError(f"example_inputs must be a tensor, a tuple of tensors or a dict of tensors, "
                        f"got {type(example_inputs).__name__}")


def _mutates(node) -> bool:
    """An in-place write that changes values (detach_, which torch.tensor(...) leaves, does not)."""
    schema = getattr(node.target, "_schema", None)
    return (node.op == "call_function" and schema is not None and schema.is_mutable
            and schema.name != "aten::detach_")


def _inside(node, preserved) -> bool:
    """Whether the node runs inside a preserved module call (converted whole, by its own row)."""
    return any(path in preserved for path, _ in (node.meta.get("nn_module_stack") or {}).values())


def _functional(ep, preserved=()):
    """The program without in-place writes: torch.export keeps ``mask[a:b, c:d] = k`` (torchvision
    swin's shifted-window mask) as fill_ on slice views, which a graph of values cannot express;
    functionalization rewrites them as slice_scatter. Only run when needed (it re-traces); writes
    inside a preserved module (MultiheadAttention's masked_fill_ on its padding mask) are left
    alone, since that module converts as a whole."""
    if not any(_mutates(n) and not _inside(n, preserved) for n in ep.graph.nodes):
        return ep
    return ep.run_decompositions({})


def export_module(module, args, kwargs, dynamic_shapes=None):
    """torch.export the module in eval mode with ``dynamic_shapes`` (torch.export's own form), keeping
    the module-level calls (MultiheadAttention) whole where it can. UnsupportedOpError when it cannot."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if args and kwargs:
        raise BadInputError("pass example inputs either positionally or as keywords, not both")
    preserve = tuple(name for name, m in module.named_modules() if name and _public_name(type(m)) in MODULE_LEVEL)
    was_training = module.training
    module.eval()
    errors = []
    # torch logs a traceback of every fake-tensor failure; the failure is reported below, in one line
    fake_log = logging.getLogger("torch._subclasses.fake_tensor")
    level = fake_log.level
    fake_log.setLevel(logging.CRITICAL)
    try:
        for keep in ((preserve, ()) if preserve else ((),)):
            try:
                return _functional(torch.export.export(module, tuple(args), kwargs or None, strict=False,
                                                       dynamic_shapes=dynamic_shapes,
                                                       preserve_module_call_signature=keep), keep)
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(e)
    finally:
        fake_log.setLevel(level)
        module.train(was_training)
    last = errors[-1]
    msg = " ".join(str(last).split())[:300]
    raise UnsupportedOpError([("torch.export", f"{type(last).__name__}: {msg}")], direction="torch2keras",
                             hint="torch.export could not trace the module; via='onnx' may still convert it")


def graph_from_exported(ep, module=None) -> SourceGraph:

    sig = ep.graph_signature
    state = ep.state_dict
    constants = ep.constants
    params: dict[str, tuple[str, np.ndarray, bool]] = {}
    for node_name, path in sig.inputs_to_parameters.items():
        params[node_name] = (path, torch_to_numpy(state[path]), True)
    for node_name, path in sig.inputs_to_buffers.items():
        value = state[path] if path in state else constants[path]
        params[node_name] = (path, torch_to_numpy(value), False)
    for node_name, path in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
        params[node_name] = (path, torch_to_numpy(constants[path]), False)

    module_types: dict[str, str] = {}
    nodes: list[SourceNode] = []
    inputs: list[str] = []
    outputs: list = []
    input_metas: list[TensorMeta] = []
    user_inputs = set(sig.user_inputs)
    for n in _inline_wrappers(ep).nodes:
        stack = tuple((path, _stack_type(tp)) for path, tp in (n.meta.get("nn_module_stack") or {}).values())
        for path, tp in stack:
            module_types.setdefault(path, tp)
        inner_path, inner_type = stack[-1] if stack else ("", "")
        meta = _meta_of(n.meta.get("val"))
        if n.op == "placeholder":
            if n.name in params:
                nodes.append(SourceNode(n.name, "param", meta=meta))
            elif n.name in user_inputs:
                inputs.append(n.name)
                input_metas.append(meta)
                nodes.append(SourceNode(n.name, "input", meta=meta))
            else:
                raise BadInputError(f"unexpected exported input {n.name}")
        elif n.op == "call_function":
            nodes.append(SourceNode(n.name, "call", _target_name(n.target), _normalized_args(n), meta,
                                    inner_path, inner_type, stack, fn=n.target,
                                    call_args=_nodes_torefs_in(tuple(n.args)),
                                    call_kwargs={k: _nodes_torefs_in(v) for k, v in n.kwargs.items()}))
        elif n.op == "output":
            (outs,) = n.args
            outputs = [_convert_arg(o) for o in outs]
            # drop the buffer mutations torch.export appends (e.g. BatchNorm's num_batches_tracked)
            outputs = outputs[len(sig.buffers_to_mutate):] if sig.buffers_to_mutate else outputs
        else:
            raise BadInputError(f"unexpected node kind {n.op} in the exported program")

    symbols = {}
    for i, m in enumerate(input_metas):
        if isinstance(m, TensorMeta):
            for axis, d in enumerate(m.shape):
                if isinstance(d, Sym):
                    symbols.setdefault(d.expr, (i, axis))
    graph = SourceGraph(nodes, inputs, outputs, params, symbols, module_types, input_metas)
    if module is not None:
        graph = _collapse_module_calls(graph, ep, module)
    return graph


# Higher-order ops torch.export wraps around a region whose only effect is a mode switch that
# does not change float32 inference numbers: @torch.no_grad() (HF rotary embeddings) and
# torch.autocast(enabled=False). Their regions are inlined.
TRANSPARENT_WRAPPERS = {"wrap_with_set_grad_enabled": 1, "wrap_with_autocast": 4}  # name -> index of the submodule


def _inline_wrappers(ep):
    """The exported graph with mode-switch wrappers inlined (get_attr submodules gone)."""
    import operator

    import torch.fx

    graph = ep.graph
    if not any(n.op == "call_function" and getattr(n.target, "__name__", "") in TRANSPARENT_WRAPPERS
               for n in graph.nodes):
        return graph
    out = torch.fx.Graph()
    env: dict = {}
    for n in graph.nodes:
        name = getattr(n.target, "__name__", "") if n.op == "call_function" else ""
        if n.op == "get_attr" and all(u.op == "call_function" and getattr(u.target, "__name__", "") in
                                      TRANSPARENT_WRAPPERS for u in n.users):
            continue  # the wrapped region, inlined where it is called
        if name in TRANSPARENT_WRAPPERS:
            at = TRANSPARENT_WRAPPERS[name]
            sub = getattr(ep.graph_module, n.args[at].target).graph
            operands = iter(n.args[at + 1:])
            sub_env = {}
            for s in sub.nodes:
                if s.op == "placeholder":
                    sub_env[s] = env[next(operands)]
                elif s.op == "output":
                    results = torch.fx.node.map_arg(s.args[0], sub_env.__getitem__)
                    env[n] = tuple(results) if isinstance(results, (list, tuple)) else (results,)
                else:
                    if not s.meta.get("nn_module_stack"):
                        s.meta["nn_module_stack"] = n.meta.get("nn_module_stack", {})
                    sub_env[s] = out.node_copy(s, sub_env.__getitem__)
            continue
        if n.op == "call_function" and n.target is operator.getitem and isinstance(env.get(n.args[0]), tuple):
            env[n] = env[n.args[0]][n.args[1]]
            continue
        env[n] = out.node_copy(n, lambda a: env[a])
    return out


def _stack_type(tp) -> str:
    """The module type of an nn_module_stack entry, as the table names it (torch.nn.Conv2d)."""
    import torch

    if isinstance(tp, str):
        if tp.startswith("torch.nn.modules."):
            cls = getattr(torch.nn, tp.rsplit(".", 1)[-1], None)
            if cls is not None and _qualname(cls) == tp:
                return f"torch.nn.{cls.__name__}"
        return tp
    return _public_name(tp)


def _collapse_module_calls(graph: SourceGraph, ep, module) -> SourceGraph:
    """Replace the nodes of each preserved module call with one ``module`` node."""
    modules = dict(module.named_modules())
    entries = [e for e in ep.module_call_graph if e.fqn and e.signature is not None]
    if not entries:
        return graph
    nodes = graph.nodes
    for entry in entries:
        path = entry.fqn
        mod = modules.get(path)
        if mod is None or _public_name(type(mod)) not in MODULE_LEVEL:
            continue
        out_names = [getattr(a, "name", None) for a in entry.signature.outputs]
        member = [i for i, n in enumerate(nodes) if n.op == "call" and any(p == path for p, _ in n.stack)]
        if not member:
            continue
        group = {nodes[i].name for i in member}
        leaving = _used_outside(nodes, group) | {r.name for r in refs_in(graph.outputs) if r.name in group}
        if not leaving <= set(filter(None, out_names)):
            continue  # the module's internals are used elsewhere: keep converting it op by op
        first = member[0]
        call_args, call_kwargs = _module_call_arguments(entry.signature)
        call = SourceNode(
            name=f"{path}.__call__", op="module", target=_public_name(type(mod)),
            args={"args": call_args, "kwargs": call_kwargs, "outputs": out_names},
            meta=None, module_path=path, module_type=_public_name(type(mod)), stack=nodes[first].stack,
            module=mod,
        )
        # outputs keep their node names: alias nodes pick element k of the module call
        aliases = [SourceNode(name, "call", "getitem", {"arg0": Ref(call.name), "arg1": k},
                              graph.node(name).meta, path, call.module_type, call.stack)
                   for k, name in enumerate(out_names) if name]
        call.meta = tuple(graph.node(n).meta if n else None for n in out_names)
        nodes = [n for n in nodes[:first] if n.name not in group] + [call, *aliases] + [
            n for n in nodes[first:] if n.name not in group]
    return graph.replace(nodes=nodes)


def _module_call_arguments(signature):
    """Rebuild (args, kwargs) of a preserved module call: tensors as Refs, constants as values."""
    leaves = [Ref(a.name) if type(a).__name__ == "TensorArgument" else getattr(a, "value", None)
              for a in signature.inputs]
    args_spec, kwargs_spec = signature.in_spec.children()
    n_args = args_spec.num_leaves
    args = leaves[:n_args]
    kwargs = {}
    pos = n_args
    for key, spec in zip(kwargs_spec.context, kwargs_spec.children()):
        kwargs[key] = leaves[pos] if spec.num_leaves == 1 else leaves[pos:pos + spec.num_leaves]
        pos += spec.num_leaves
    return args, kwargs


def _used_outside(nodes, group) -> set:
    used = set()
    for n in nodes:
        if n.name in group:
            continue
        for r in refs_in(n.args):
            if r.name in group:
                used.add(r.name)
    return used
