"""The capture child: ``python -m xlate.keras2torch.traced.child REQUEST.json`` under ``KERAS_BACKEND=torch``.

Keras picks its backend once, at import, so the parent (TensorFlow backend) cannot run Keras
layers as torch modules itself. Three modes:

- ``"layers"``: the listed layers alone, rebuilt from their configurations and weights, called on
  random inputs of their (known) shapes: nothing else of the model is loaded;
- ``"nodes"``: the model the parent saved (a ``.keras`` file, its custom classes imported from
  their modules, or a ``module:function`` builder plus a weights file), run node by node to each
  listed call when sizes are unknown, so each call gets the arguments it really receives;
- ``"model"``: a subclassed model, exported whole.

Exporting is ``exporting.py``; calls with the same class, configuration and input shapes are
exported once. It writes ``result.json`` (``graph.Program``s as plain data, one-line failures,
timings) and ``arrays.npz``, or ``error.json`` when nothing could be captured.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .exporting import (
    arg_names_of,
    call_module,
    example_input,
    export,
    fill,
    program_from,
    register_sublayers,
    storage_key,
    twin_key,
    twin_program,
)
from .graph import CaptureError


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
        if not model.built:
            raise CaptureError(f"the builder {request['builder']} returned a model that is not built: call it once "
                               "(or build it on keras.Input) before returning it")
        model.load_weights(request["weights"])
        return model
    with keras.saving.custom_object_scope(custom):
        return keras.saving.load_model(request["keras_file"], custom_objects=custom, compile=False, safe_mode=False)


# --- per layer: the calls of a functional graph, or the layers alone ---------------------------------------------------


def call_arguments(graph, targets: list[int], model_inputs: list) -> dict[int, list]:
    """The flat tensor inputs each target node receives: random tensors of the right shape when
    every size but the batch is known, otherwise the model run node by node on ``model_inputs``."""
    import keras

    need = {t for i in targets for t in graph.nodes[i].inputs}
    if all(d is not None for t in need for d in graph.tensors[t].shape[1:]):
        return {i: [example_input(graph.tensors[t]) for t in graph.nodes[i].inputs] for i in targets}
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
        args = fill(node.args, it)
        kwargs = fill(node.kwargs, it)
        out = node.op(*args, **kwargs)
        for tid, value in zip(node.outputs, keras.tree.flatten(out)):
            env[tid] = value
        for t in node.inputs:
            remaining[t] -= 1
            if remaining[t] == 0 and t not in graph.outputs:
                env.pop(t, None)
    return got


@dataclass
class Site:
    """One layer call to export: the layer, its call's structure (``walk.Ref`` for each tensor)
    and the flat tensors it receives."""

    index: int
    path: str
    kind: str
    op: object
    args: tuple
    kwargs: dict
    flat: list
    dynamic: list  # per flat input: the dims Keras leaves unknown


def sites_of_model(model, request: dict, arrays_in: list) -> list[Site]:
    """The listed calls of the reloaded functional model (walked as the parent walked it)."""
    from ..walk import walk

    graph = walk(model)
    targets = [t["index"] for t in request["targets"]]
    for t in request["targets"]:
        node = graph.nodes[t["index"]]
        if node.path != t["path"]:
            raise CaptureError(f"the reloaded model's node {t['index']} is {node.path!r}, expected {t['path']!r}")
    flat_by_target = call_arguments(graph, targets, arrays_in)
    return [Site(i, graph.nodes[i].path, graph.nodes[i].kind, graph.nodes[i].op, graph.nodes[i].args,
                 graph.nodes[i].kwargs, flat_by_target[i],
                 [[d for d, size in enumerate(graph.tensors[t].shape) if size is None] for t in graph.nodes[i].inputs])
            for i in targets]


def _decode_call(value):
    from ..walk import Ref

    if isinstance(value, dict):
        if "__ref__" in value:
            return Ref(0)
        if "__tuple__" in value:
            return tuple(_decode_call(v) for v in value["__tuple__"])
        return {k: _decode_call(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_call(v) for v in value]
    return value


def sites_of_layers(request: dict, custom: dict, weights: dict) -> tuple[list[Site], list]:
    """The listed layers rebuilt from their own configuration and weights, without the model
    (every input size but the batch is known, so random inputs of those shapes suffice)."""
    import keras

    from ..walk import Tensor, kind_of

    sites, failures = [], []
    for spec in request["layers"]:
        try:
            layer = keras.saving.deserialize_keras_object(spec["layer"], custom_objects=custom, safe_mode=False)
            if not layer.built and spec.get("build"):
                layer.build_from_config(spec["build"])
            layer.set_weights([weights[k] for k in spec["weights"]])
        except Exception as e:  # noqa: BLE001 - the parent captures these within the whole model instead
            failures.append({"index": spec["index"], "path": spec["path"], "kind": spec["kind"], "stage": "rebuild",
                             "message": _one_line(e)})
            continue
        tensors = [Tensor(0, tuple(shape), dtype) for shape, dtype in spec["inputs"]]
        sites.append(Site(spec["index"], spec["path"], kind_of(layer), layer, _decode_call(spec["args"]),
                          _decode_call(spec["kwargs"]), [example_input(t) for t in tensors],
                          [[d for d, size in enumerate(t.shape) if size is None] for t in tensors]))
    return sites, failures


def export_sites(sites: list[Site], variables) -> tuple[list, dict, list]:
    """Export every site (a call equal to an earlier one in class, configuration and input shapes
    reuses its graph with its own weights); failures come back one line each."""
    for site in sites:
        register_sublayers(site.op)
    variables = {storage_key(v.value): v for v in variables}
    programs, arrays, failures, done = [], {}, [], {}
    for n, site in enumerate(sites):
        key = twin_key(site, site.flat)
        try:
            if key is not None and key in done:
                program, extra = twin_program(done[key], site, prefix=f"p{n}")
            else:
                ep = export(call_module(site.op, site.args, site.kwargs), site.flat, site.dynamic)
                program, extra = program_from(ep, site.op, name=site.path, variables=variables, prefix=f"p{n}",
                                              arg_names=arg_names_of(site.op, site.args, site.kwargs),
                                              dynamic=site.dynamic)
                if key is not None:
                    done[key] = program
        except Exception as e:  # noqa: BLE001 - every failure goes back as one line, per layer
            failures.append({"index": site.index, "path": site.path, "kind": site.kind, "stage": "export",
                             "message": _one_line(e)})
            continue
        program.notes.append(f"index={site.index}")
        programs.append(program)
        arrays.update(extra)
    return programs, arrays, failures


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
    variables = {storage_key(v.value): v for v in model.weights}
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
        if request["mode"] == "layers":  # the listed layers alone, rebuilt from their configurations
            with np.load(request["weights"]) as data:
                weights = {k: data[k] for k in data.files}
            sites, rebuild_failures = sites_of_layers(request, _custom_objects(request.get("custom", [])), weights)
            loaded = time.perf_counter()
            programs, arrays, failures = export_sites(sites, [v for s in sites for v in s.op.weights])
            failures += rebuild_failures
        else:
            model = load_model(request)
            loaded = time.perf_counter()
            with np.load(request["inputs"]) as data:
                arrays_in = [torch.from_numpy(data[f"in{i}"]) for i in range(len(data.files))]
            if request["mode"] == "model":
                programs, arrays, failures = capture_model(model, request, arrays_in)
            else:
                programs, arrays, failures = export_sites(sites_of_model(model, request, arrays_in), model.weights)
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
