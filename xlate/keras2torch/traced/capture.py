"""Run the capture child (``child.py``) for a Keras model and read back its ``Program``s.

Layers whose input sizes are all known travel alone (their configurations, weights and call
structure); otherwise the model travels as a ``.keras`` file written here, with the import path
of every custom class in it (Keras only deserializes classes it can import or is given), or as a
``module:function`` builder plus a weights file. The example inputs travel as an ``.npz``. The child's answer is
plain JSON and an ``.npz`` of arrays; every way it can fail comes back as one
``UnsupportedOpError`` (so ``via="auto"`` can still try ONNX) naming the layers and the cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ...errors import UnsupportedOpError, one_line
from .graph import Program, from_json

#: seconds the child may take (loading keras-hub alone takes ~10 s on a busy machine)
TIMEOUT = 1800
HINT = ("the traced route loads the model in a torch-backend Keras process: its custom classes must be "
        "importable and serializable (get_config), or pass builder='module:function' to "
        "xlate.keras2torch.convert.keras_to_torch; via='onnx' may still convert it")


def _refuse(items, hint: str = HINT):
    raise UnsupportedOpError(items, direction="keras2torch", hint=hint)


def custom_classes(*roots) -> list[dict]:
    """Import specs of the classes in these layers' trees that are not Keras' own (the child imports them)."""
    import keras

    specs, seen = [], set()
    for layer in (x for root in roots for x in root._flatten_layers(include_self=True, recursive=True)):
        cls = type(layer)
        if cls.__module__.startswith("keras.") or cls in seen:
            continue
        seen.add(cls)
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            _refuse([(f"custom class {cls.__qualname__} (defined in {cls.__module__}, not importable)", layer.name)],
                    hint="define custom layers and models at module level in an importable module, so the traced "
                         "route can load them in its torch-backend process")
        specs.append({"module": cls.__module__, "qualname": cls.__qualname__,
                      "name": keras.saving.get_registered_name(cls)})
    return specs


def importable(cls) -> bool:
    return cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__


def _child_env() -> dict:
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["KERAS_BACKEND"] = "torch"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_child(model, request: dict, example_arrays, *, builder: str | None = None,
              layers: tuple | None = None) -> tuple[list[Program], dict, list]:
    """Save the model (or with ``layers`` = (specs, weights), just those layers), run the child on
    ``request``; returns (programs, arrays, failures)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xlate-trace-") as tmp:
        tmp = Path(tmp)
        if layers is not None:
            specs, weights = layers
            np.savez(tmp / "layers.npz", **weights)
            request.update(layers=specs, weights=str(tmp / "layers.npz"))
        elif builder:
            weights = tmp / "model.weights.h5"
            model.save_weights(str(weights))
            request.update(builder=builder, weights=str(weights))
        else:
            request["custom"] = custom_classes(model)
            path = tmp / "model.keras"
            try:
                model.save(str(path))
            except Exception as e:  # noqa: BLE001 - any save failure is the same refusal
                _refuse([(f"saving {type(model).__name__} as .keras ({one_line(e, 160)})", model.name)])
            request["keras_file"] = str(path)
        np.savez(tmp / "inputs.npz", **{f"in{i}": np.asarray(a) for i, a in enumerate(example_arrays)})
        request.update(inputs=str(tmp / "inputs.npz"), out=str(tmp))
        (tmp / "request.json").write_text(json.dumps(request))
        try:
            run = subprocess.run([sys.executable, "-m", "xlate.keras2torch.traced.child", str(tmp / "request.json")],
                                 env=_child_env(), cwd=tmp, capture_output=True, text=True, timeout=TIMEOUT,
                                 check=False)
        except subprocess.TimeoutExpired:
            _refuse([(f"torch.export capture (no answer within {TIMEOUT} s)", model.name)])
        if (tmp / "error.json").exists():
            error = json.loads((tmp / "error.json").read_text())
            _refuse([(f"torch.export capture ({error['message']})", model.name)])
        if run.returncode != 0 or not (tmp / "result.json").exists():
            tail = [line for line in run.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            _refuse([(f"torch.export capture (the process exited with {run.returncode}: {one_line(tail[0], 200)})",
                      model.name)])
        result = json.loads((tmp / "result.json").read_text())
        with np.load(tmp / "arrays.npz") as data:
            arrays = {k: data[k] for k in data.files}
    programs = [from_json(p) for p in result["programs"]]
    t = result["timing"]
    note = (f"capture {time.perf_counter() - start:.1f}s: a torch-backend process (imports {t['import']:.1f}s, "
            f"loading {t['load']:.1f}s, {t['exports']} torch.export run(s) {t['export']:.1f}s)")
    for p in programs:
        p.notes.append(note)
    return programs, arrays, result["failures"]


def _encode_call(value):
    """A layer call's structure as JSON (tensors as ``{"__ref__": true}``); ValueError if it holds
    anything else JSON cannot say."""
    from ..walk import Ref

    if isinstance(value, Ref):
        return {"__ref__": True}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_call(v) for v in value]}
    if isinstance(value, list):
        return [_encode_call(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode_call(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"a {type(value).__name__} argument")


def layer_specs(graph, indices: list[int]) -> tuple | None:
    """The listed layers on their own (configuration, build shapes, weights, call structure), when
    every one can travel so and every input size but the batch is known; else None (the child then
    loads the whole model and runs it to each call)."""
    import keras

    specs, weights = [], {}
    for n, i in enumerate(indices):
        node = graph.nodes[i]
        if any(d is None for t in node.inputs for d in graph.tensors[t].shape[1:]):
            return None
        try:
            spec = {"index": i, "path": node.path, "kind": node.kind,
                    "layer": keras.saving.serialize_keras_object(node.op), "build": node.op.get_build_config(),
                    "args": _encode_call(node.args), "kwargs": _encode_call(node.kwargs),
                    "inputs": [[list(graph.tensors[t].shape), graph.tensors[t].dtype] for t in node.inputs]}
            json.dumps(spec)
        except Exception:  # noqa: BLE001 - anything that does not serialize goes with the whole model
            return None
        spec["weights"] = []
        for j, array in enumerate(node.op.get_weights()):
            weights[f"w{n}_{j}"] = array
            spec["weights"].append(f"w{n}_{j}")
        specs.append(spec)
    return specs, weights


def capture_layers(model, graph, indices: list[int], example_arrays, *, builder: str | None = None
                   ) -> tuple[dict[int, Program], dict]:
    """Export the calls ``graph.nodes[i]`` for ``i`` in ``indices`` of a functional ``model``.
    Returns {node index: Program} and the arrays; raises one UnsupportedOpError for all failures."""
    programs, arrays, failures = [], {}, []
    layers = layer_specs(graph, indices)
    if layers is not None:
        request = {"mode": "layers", "custom": custom_classes(*(graph.nodes[i].op for i in indices))}
        programs, arrays, failures = run_child(model, request, example_arrays, layers=layers)
        indices = [f["index"] for f in failures if f["stage"] == "rebuild"]  # these go with the whole model
        failures = [f for f in failures if f["stage"] != "rebuild"]
    if indices:
        request = {"mode": "nodes", "targets": [{"index": i, "path": graph.nodes[i].path} for i in indices]}
        more, more_arrays, more_failures = run_child(model, request, example_arrays, builder=builder)
        programs, failures = programs + more, failures + more_failures
        arrays.update({f"n_{k}": v for k, v in more_arrays.items()})
        for p in more:
            _rekey(p, "n_")
    if failures:
        _refuse([(f"{f['kind']} (torch.export: {f['message']})", f["path"]) for f in failures],
                hint="these layers have no table row and torch.export could not capture them; via='onnx' may "
                     "still convert the model")
    by_index = {}
    for p in programs:
        index = int(next(n for n in p.notes if n.startswith("index=")).split("=", 1)[1])
        p.notes = [n for n in p.notes if not n.startswith("index=")]
        by_index[index] = p
    return by_index, arrays


def _rekey(program: Program, prefix: str) -> None:
    """Prefix a program's array keys (two child runs number their arrays alike)."""
    for w in program.weights.values():
        w.key = prefix + w.key
    program.constants = {k: (prefix + key, meta) for k, (key, meta) in program.constants.items()}


def capture_model(model, example_arrays, *, input_names=None, builder: str | None = None) -> tuple[Program, dict]:
    """Export a whole (subclassed) model called on ``example_arrays`` (one array: ``model(x)``,
    several: ``model([x0, x1, ...])``); the batch axis is dynamic."""
    shapes = [[None, *np.shape(a)[1:]] for a in example_arrays]
    request = {"mode": "model", "input_shapes": shapes, "structure": "single" if len(example_arrays) == 1 else "list",
               "input_names": input_names}
    programs, arrays, _ = run_child(model, request, example_arrays, builder=builder)
    return programs[0], arrays
