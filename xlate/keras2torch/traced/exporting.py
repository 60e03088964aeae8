"""Capture, inside the torch-backend child: a Keras layer (or model) exported with torch.export
and turned into a plain-data ``graph.Program``.

Every Keras sublayer is made a torch submodule first (Keras tracks layers kept in lists or dicts
that torch cannot see), so ``nn_module_stack`` names the Keras layer call of every op. The
graph's parameters are matched to the Keras variables by storage (torch.export lifts them as
copies sharing it), each with the layer that owns it; the other tensors are constants. Input sizes
Keras leaves unknown are exported as ``Dim.AUTO`` (without duck sizing, so two sizes that happen
to be equal stay two symbols); a size the code fixes anyway becomes a guard.
"""

from __future__ import annotations

import json

from .graph import DROPPED, CaptureError, Op, Program, Scope, Weight, calls_of, encode, meta_of, target_name


def register_sublayers(layer, seen=None) -> None:
    """Make every Keras sublayer a torch submodule, so its calls show in ``nn_module_stack``
    (layers kept in lists or dicts are tracked by Keras but invisible to torch)."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return
    seen.add(id(layer))
    known = {id(m) for m in layer._modules.values()}
    for i, sub in enumerate(layer._flatten_layers(include_self=False, recursive=False)):
        if id(sub) not in known:
            name = _holder_name(layer, sub) or f"layer_{i}"
            while name in layer._modules:
                name += "_"
            layer.add_module(name, sub)
            known.add(id(sub))
        register_sublayers(sub, seen)


def _holder_name(layer, sub) -> str | None:
    attrs = sorted(vars(layer).items(), key=lambda kv: kv[0].startswith("_"))  # public attributes first
    for attr, value in attrs:
        if attr in ("_layers", "_tracker"):
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
        for key, item in items:
            if item is sub:
                return f"{attr.strip('_')}_{key}".replace(".", "_")
    return None


def scopes_of(root) -> dict[str, Scope]:
    import keras

    from ..walk import kind_of

    locators = {id(root): ()}
    frontier = [root]
    while frontier:
        layer = frontier.pop(0)
        for i, sub in enumerate(layer._flatten_layers(include_self=False, recursive=False)):
            if id(sub) not in locators:
                locators[id(sub)] = (*locators[id(layer)], i)
                frontier.append(sub)
    scopes = {}
    for path, mod in root.named_modules():
        if isinstance(mod, keras.Layer) and id(mod) in locators:
            scopes[path] = Scope(path, type(mod).__name__, kind_of(mod), mod.name, locators[id(mod)])
    return scopes


def own_variables(root) -> dict[int, tuple[str, int]]:
    """id(variable) -> (module path of the layer that owns it, its index among that layer's own)."""
    import keras

    owners = {}
    for path, mod in root.named_modules():
        if not isinstance(mod, keras.Layer):
            continue
        inner = {id(v) for sub in mod._flatten_layers(include_self=False, recursive=False) for v in sub.weights}
        own = [v for v in mod.weights if id(v) not in inner]
        for i, v in enumerate(own):
            owners.setdefault(id(v), (path, i))
    return owners


def storage_key(t):
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)


def fill(structure, it):
    from ..walk import Ref

    if isinstance(structure, Ref):
        return next(it)
    if isinstance(structure, list):
        return [fill(s, it) for s in structure]
    if isinstance(structure, tuple):
        return tuple(fill(s, it) for s in structure)
    if isinstance(structure, dict):
        return {k: fill(v, it) for k, v in structure.items()}
    return structure


def call_module(layer, args, kwargs):
    import keras
    import torch

    class Call(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = layer

        def forward(self, *flat):
            it = iter(flat)
            out = self.l(*fill(args, it), **fill(kwargs, it))
            return tuple(keras.tree.flatten(out))

    return Call()


def export(module, flat: list, dynamic: list):
    """torch.export ``module(*flat)``; ``dynamic[i]``: the dims of input i to keep symbolic."""
    import torch
    import torch.fx.experimental._config as fx_config
    from torch.export import Dim

    shapes = tuple({d: Dim.AUTO for d in dims} or None for dims in dynamic)
    with fx_config.patch(use_duck_shape=False), torch.no_grad():
        return torch.export.export(module, tuple(flat), dynamic_shapes=(shapes,), strict=False)


def program_from(ep, root, *, name: str, arg_names: list[str], variables: dict, prefix: str, dynamic: list,
                 output_keys=None) -> tuple[Program, dict]:
    """The plain-data Program of an ExportedProgram whose root layer is ``root`` (the wrapper's ``l``)."""
    from torch.export.graph_signature import InputKind, OutputKind

    owners = own_variables(root)
    kinds = {s.arg.name: s for s in ep.graph_signature.input_specs}
    if any(s.kind != OutputKind.USER_OUTPUT for s in ep.graph_signature.output_specs):
        raise CaptureError("the layer mutates its state in inference (a buffer or input is written)")
    inputs, weights, constants, arrays, ops = [], {}, {}, {}, []
    user = 0
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = kinds[node.name]
            if spec.kind == InputKind.USER_INPUT:
                inputs.append((node.name, arg_names[user] if user < len(arg_names) else f"x{user}",
                               meta_of(node.meta["val"])))
                user += 1
                continue
            if not node.users:
                continue
            if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                raise CaptureError(f"a {spec.kind.name} input")
            tensor = ep.state_dict.get(spec.target) if spec.target in ep.state_dict else ep.constants[spec.target]
            key = f"{prefix}__{node.name}"
            var = variables.get(storage_key(tensor))
            arrays[key] = tensor.detach().cpu().numpy()
            if var is None:
                constants[node.name] = (key, meta_of(tensor))
            else:
                owner, index = owners.get(id(var), (None, 0))
                weights[node.name] = Weight(key, var.path, var.name, owner, bool(var.trainable), tuple(tensor.shape),
                                            str(tensor.dtype).removeprefix("torch."), index)
        elif node.op == "call_function":
            target = target_name(node.target)
            if target in DROPPED:
                continue
            ops.append(Op(node.name, target, encode(list(node.args)), encode(dict(node.kwargs)),
                          meta_of(node.meta.get("val")), calls_of(node)))
        elif node.op == "output":
            outputs = encode(list(node.args[0]))
        else:
            raise CaptureError(f"a {node.op} node ({node.target}): control flow or a submodule call torch.export kept")
    program = Program(name, type(root).__name__, inputs, ops, weights, constants, outputs, scopes_of(root),
                      output_keys)
    for i, ((_, arg, meta), dims) in enumerate(zip(inputs, dynamic)):
        for d in dims:
            if isinstance(meta.shape[d], int):
                program.guards.append((i, d, meta.shape[d]))
                program.notes.append(f"torch.export fixed {arg}.shape[{d}] at {meta.shape[d]}: the code depends on it")
    return program, arrays


def arg_names_of(layer, args, kwargs) -> list[str]:
    import inspect

    from ..walk import Ref

    try:
        params = [p for p in inspect.signature(layer.call).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        params = []
    names = []

    def visit(s, base):
        if isinstance(s, Ref):
            names.append(base)
        elif isinstance(s, (list, tuple)):
            for i, x in enumerate(s):
                visit(x, f"{base}_{i}")
        elif isinstance(s, dict):
            for k, x in s.items():
                visit(x, f"{base}_{k}")

    for i, a in enumerate(args):
        visit(a, params[i] if i < len(params) else f"x{i}")
    for k, a in kwargs.items():
        visit(a, k)
    return names


def example_input(tensor, batch: int = 2):
    import numpy as np
    import torch

    shape = tuple(batch if d is None else int(d) for d in tensor.shape)
    if "int" in tensor.dtype:
        return torch.zeros(shape, dtype=getattr(torch, tensor.dtype))
    if tensor.dtype == "bool":
        return torch.ones(shape, dtype=torch.bool)
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.standard_normal(shape).astype(tensor.dtype))


def twin_key(node, flat):
    try:
        config = dict(node.op.get_config())
    except Exception:  # noqa: BLE001 - a layer without a usable config is exported on its own
        return None
    config.pop("name", None)
    shapes = tuple((tuple(t.shape), str(t.dtype)) for t in flat)
    tensors = iter(["T"] * len(flat))  # the call's structure, tensors anonymous
    try:
        return (type(node.op).__module__, type(node.op).__qualname__, json.dumps(config, sort_keys=True, default=repr),
                shapes, repr(fill((node.args, node.kwargs), tensors)))
    except (TypeError, ValueError):
        return None


def twin_program(program: Program, node, *, prefix: str) -> tuple[Program, dict]:
    """``program`` with its weights read from ``node``'s layer (same class, config and input
    shapes); constants are shared with the original."""
    import copy

    import keras

    twin = copy.deepcopy(program)
    twin.name = node.path
    twin.notes = [f"same class, configuration and input shapes as {program.name}: exported once"]
    owners = {path: mod for path, mod in node.op.named_modules() if isinstance(mod, keras.Layer)}
    arrays = {}
    for name, w in program.weights.items():
        if w.owner is None or w.owner not in owners:
            raise CaptureError("the layer reads a variable of another layer")
        layer = owners[w.owner]
        inner = {id(v) for sub in layer._flatten_layers(include_self=False, recursive=False) for v in sub.weights}
        var = [v for v in layer.weights if id(v) not in inner][w.index]
        key = f"{prefix}__{name}"
        twin.weights[name] = Weight(key, var.path, var.name, w.owner, bool(var.trainable), w.shape, w.dtype, w.index)
        arrays[key] = var.value.detach().cpu().numpy()
    return twin, arrays
