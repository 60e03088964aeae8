"""The capture child: ``python -m xlate.keras2torch.traced.child REQUEST.json`` under ``KERAS_BACKEND=torch``.

Keras picks its backend once, at import, so the parent (TensorFlow backend) cannot run Keras
layers as torch modules itself. This process loads the model the parent saved (a ``.keras``
file, its custom classes imported from their modules, or a ``module:function`` builder plus a
weights file), then exports with ``torch.export`` either the whole model (a subclassed model) or
each listed layer call of its functional graph, with the arguments that call really receives.
Dimensions Keras leaves unknown are exported as dynamic (``Dim.AUTO``: torch keeps them symbolic
where the code allows it). Layer calls with the same class, configuration and input shapes are
exported once. It writes ``result.json`` (``graph.Program``s as plain data, one-line failures)
and ``arrays.npz``, or ``error.json`` when nothing could be captured.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from pathlib import Path

from .graph import DROPPED, CaptureError, Op, Program, Scope, Weight, calls_of, encode, meta_of, target_name


def _one_line(e: BaseException, limit: int = 300) -> str:
    """The cause of a failure on one line: torch.export wraps the real message (``Could not guard on
    data-dependent expression...``) in one that only says where it happened."""
    while str(e).strip().startswith("The error above occurred") and (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    first = str(e).strip().split("\n\n")[0]
    text = " ".join(f"{type(e).__name__}: {first}".split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _custom_objects(specs: list[dict]) -> dict:
    objects = {}
    for spec in specs:
        obj = importlib.import_module(spec["module"])
        for part in spec["qualname"].split("."):
            obj = getattr(obj, part)
        objects[spec["name"]] = obj
        objects[spec["qualname"].rsplit(".", 1)[-1]] = obj
    return objects


def load_model(request: dict):
    import keras

    custom = _custom_objects(request.get("custom", []))
    if request.get("builder"):
        module, _, fn = request["builder"].partition(":")
        model = getattr(importlib.import_module(module), fn)()
        if request.get("weights"):
            model.load_weights(request["weights"])
        return model
    with keras.saving.custom_object_scope(custom):
        return keras.saving.load_model(request["keras_file"], custom_objects=custom, compile=False, safe_mode=False)


# --- the Keras layer tree as torch modules --------------------------------------------------------


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


def _storage_key(t):
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)


# --- one export ---------------------------------------------------------------------------------


def _fill(structure, it):
    from ..walk import Ref

    if isinstance(structure, Ref):
        return next(it)
    if isinstance(structure, list):
        return [_fill(s, it) for s in structure]
    if isinstance(structure, tuple):
        return tuple(_fill(s, it) for s in structure)
    if isinstance(structure, dict):
        return {k: _fill(v, it) for k, v in structure.items()}
    return structure


def _call_module(layer, args, kwargs):
    import keras
    import torch

    class Call(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = layer

        def forward(self, *flat):
            it = iter(flat)
            out = self.l(*_fill(args, it), **_fill(kwargs, it))
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
            var = variables.get(_storage_key(tensor))
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


# --- per layer: the calls of a functional graph ---------------------------------------------------


def _arg_names(layer, args, kwargs) -> list[str]:
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


def _example(tensor, batch: int = 2):
    import numpy as np
    import torch

    shape = tuple(batch if d is None else int(d) for d in tensor.shape)
    if "int" in tensor.dtype:
        return torch.zeros(shape, dtype=getattr(torch, tensor.dtype))
    if tensor.dtype == "bool":
        return torch.ones(shape, dtype=torch.bool)
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.standard_normal(shape).astype(tensor.dtype))


def call_arguments(graph, targets: list[int], model_inputs: list) -> dict[int, list]:
    """The flat tensor inputs each target node receives: random tensors of the right shape when
    every size but the batch is known, otherwise the model run node by node on ``model_inputs``."""
    import keras

    need = {t for i in targets for t in graph.nodes[i].inputs}
    if all(d is not None for t in need for d in graph.tensors[t].shape[1:]):
        return {i: [_example(graph.tensors[t]) for t in graph.nodes[i].inputs] for i in targets}
    env = dict(zip(graph.inputs, model_inputs))
    remaining = {}
    for node in graph.nodes[:max(targets) + 1]:
        for t in node.inputs:
            remaining[t] = remaining.get(t, 0) + 1
    got = {}
    for i, node in enumerate(graph.nodes[:max(targets) + 1]):
        flat = [env[t] for t in node.inputs]
        if i in targets:
            got[i] = flat
        it = iter(flat)
        args = _fill(node.args, it)
        kwargs = _fill(node.kwargs, it)
        out = node.op(*args, **kwargs)
        for tid, value in zip(node.outputs, keras.tree.flatten(out)):
            env[tid] = value
        for t in node.inputs:
            remaining[t] -= 1
            if remaining[t] == 0 and t not in graph.outputs:
                env.pop(t, None)
    return got


def _twin_key(node, flat):
    try:
        config = dict(node.op.get_config())
    except Exception:  # noqa: BLE001 - a layer without a usable config is exported on its own
        return None
    config.pop("name", None)
    shapes = tuple((tuple(t.shape), str(t.dtype)) for t in flat)
    tensors = iter(["T"] * len(flat))  # the call's structure, tensors anonymous
    try:
        return (type(node.op).__module__, type(node.op).__qualname__, json.dumps(config, sort_keys=True, default=repr),
                shapes, repr(_fill((node.args, node.kwargs), tensors)))
    except (TypeError, ValueError):
        return None


def capture_layers(model, request: dict, arrays_in: list) -> tuple[list, dict, list]:
    from ..walk import walk

    graph = walk(model)
    targets = [t["index"] for t in request["targets"]]
    for t in request["targets"]:
        node = graph.nodes[t["index"]]
        if node.path != t["path"]:
            raise CaptureError(f"the reloaded model's node {t['index']} is {node.path!r}, expected {t['path']!r}")
    for i in targets:
        register_sublayers(graph.nodes[i].op)
    flat_by_target = call_arguments(graph, targets, arrays_in)
    variables = {_storage_key(v.value): v for v in model.weights}
    programs, arrays, failures, done = [], {}, [], {}
    for n, i in enumerate(targets):
        node = graph.nodes[i]
        flat = flat_by_target[i]
        key = _twin_key(node, flat)
        try:
            if key is not None and key in done:
                program, extra = twin_program(done[key], node, prefix=f"p{n}")
            else:
                dynamic = [[d for d, size in enumerate(graph.tensors[t].shape) if size is None] for t in node.inputs]
                ep = export(_call_module(node.op, node.args, node.kwargs), flat, dynamic)
                program, extra = program_from(ep, node.op, name=node.path, variables=variables, prefix=f"p{n}",
                                              arg_names=_arg_names(node.op, node.args, node.kwargs), dynamic=dynamic)
                if key is not None:
                    done[key] = program
        except Exception as e:  # noqa: BLE001 - every failure goes back as one line, per layer
            failures.append({"index": i, "path": node.path, "kind": node.kind, "message": _one_line(e)})
            continue
        program.notes.append(f"index={i}")
        programs.append(program)
        arrays.update(extra)
    return programs, arrays, failures


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


# --- the whole model ------------------------------------------------------------------------------


def capture_model(model, request: dict, arrays_in: list) -> tuple[list, dict, list]:
    import keras
    import torch

    register_sublayers(model)
    single = request.get("structure", "single") == "single"
    keys = []

    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = model

        def forward(self, *flat):
            out = self.l(flat[0] if single else list(flat), training=False)
            if isinstance(out, dict):
                keys[:] = list(out)
                return tuple(keras.tree.flatten(list(out.values())))
            return tuple(keras.tree.flatten(out))

    dynamic = [[d for d, size in enumerate(shape) if size is None] for shape in request["input_shapes"]]
    ep = export(Whole(), arrays_in, dynamic)
    variables = {_storage_key(v.value): v for v in model.weights}
    names = request.get("input_names") or [f"x{i}" for i in range(len(arrays_in))]
    program, arrays = program_from(ep, model, name=model.name, arg_names=names, variables=variables, prefix="p0",
                                   dynamic=dynamic, output_keys=keys or None)
    return [program], arrays, []


def main(argv: list[str]) -> int:
    import time

    start = time.perf_counter()
    request = json.loads(Path(argv[0]).read_text())
    out = Path(request["out"])
    try:
        if os.environ.get("KERAS_BACKEND") != "torch":
            raise CaptureError("the capture process must run with KERAS_BACKEND=torch")
        import numpy as np
        import torch

        imported = time.perf_counter()
        model = load_model(request)
        loaded = time.perf_counter()
        with np.load(request["inputs"]) as data:
            arrays_in = [torch.from_numpy(data[f"in{i}"]) for i in range(len(data.files))]
        capture = capture_model if request["mode"] == "model" else capture_layers
        programs, arrays, failures = capture(model, request, arrays_in)
        exported = {p.name for p in programs if not any(n.startswith("same class") for n in p.notes)}
        timing = {"import": imported - start, "load": loaded - imported, "export": time.perf_counter() - loaded,
                  "exports": len(exported)}
        np.savez(out / "arrays.npz", **arrays)
        (out / "result.json").write_text(json.dumps({"programs": [p.to_json() for p in programs],
                                                      "failures": failures, "timing": timing}))
        return 0
    except Exception as e:  # noqa: BLE001 - the parent turns this into one XlateError line
        (out / "error.json").write_text(json.dumps({"message": _one_line(e),
                                                     "traceback": traceback.format_exc()[-4000:]}))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
