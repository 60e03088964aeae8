"""Helpers for users' own test suites (pytest or any other runner).

    from xlate.testing import assert_parity

    def test_export_matches():
        assert_parity("net.pt2", "net.keras")            # files, any format xlate reads
        assert_parity(module, keras_model, inputs=(x,))   # or model objects
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["assert_parity", "compare_models", "fresh_package_error"]


def _as_loaded(obj, role: str, **load_options):
    """A path is loaded (any format xlate reads); a model object is wrapped as it is."""
    from .frameworks import framework_of
    from .load import LoadedModel, load_model

    if isinstance(obj, (str, Path)):
        return load_model(obj, **load_options)
    try:
        fw = framework_of(obj)
    except TypeError:
        from .errors import BadInputError

        raise BadInputError(f"{role}: expected a model file, a torch.nn.Module or a Keras model, got "
                            f"{type(obj).__name__}") from None
    return LoadedModel(fw, obj, "object", Path(f"<{type(obj).__name__}>"))


def _check_inputs_fit(arrays, keras_model, torch_example, *, given: bool = True) -> None:
    """Refuse inputs whose count or shapes cannot fit the model, before running anything.
    ``given``: the arrays came from --inputs (else from the PyTorch model's own example shapes)."""
    from .errors import BadInputError

    declared = None
    try:
        declared = [tuple(t.shape) for t in keras_model.inputs]
    except (AttributeError, TypeError, ValueError):
        pass
    if declared is None and torch_example is not None:
        declared = [(None, *tuple(t.shape)[1:]) for t in torch_example]
    if declared is None:
        return
    if len(arrays) != len(declared):
        raise BadInputError(f"--inputs holds {len(arrays)} array(s) but the model takes {len(declared)} input(s)",
                            hint="save one array per model input, in order: numpy.savez('in.npz', x0, x1, ...)")
    for i, (a, want) in enumerate(zip(arrays, declared)):
        fits = len(a.shape) == len(want) and all(w is None or int(w) == int(d) for d, w in zip(a.shape, want))
        if not fits:
            shown = "(" + ", ".join("N" if w is None else str(w) for w in want) + ")"
            if not given:
                raise BadInputError(f"the PyTorch model's input {i} has shape {tuple(a.shape)} but the Keras model "
                                    f"takes {shown}",
                                    hint="if TARGET was converted with --io-layout native, pass --io-layout native; "
                                         "otherwise the two files are not the same model")
            raise BadInputError(f"--inputs array {i} has shape {tuple(a.shape)} but the model takes {shown}",
                                hint="the arrays must be in the source model's layout, batch first")


def _learn_layer_mapping(src, tgt) -> None:
    """Files carry no conversion record; per-layer localization needs one. Convert the source again
    in memory (deterministic names) and lend its record to the loaded target, whose layers carry
    the same names when xlate wrote it from this source."""
    from .errors import XlateError
    from .record import record_of

    if record_of(tgt.model) is not None or record_of(src.model) is not None:
        return
    try:
        if src.framework == "torch":
            if src.example_inputs is None:
                return
            from .convert import torch_to_keras
            from .load import traceable_module

            converted = torch_to_keras(traceable_module(src), src.example_inputs, check=False)
        else:
            if not src.convertible:
                return
            from .convert import keras_to_torch

            converted = keras_to_torch(src.model, check=False)
    except XlateError:
        return
    record = record_of(converted)
    if record is not None:
        object.__setattr__(tgt.model, "_xlate_record", record)


def _channels_last(rank: int):
    return (0, *range(2, rank), 1) if rank >= 3 else None


def _channels_first(rank: int):
    return (0, rank - 1, *range(1, rank - 1)) if rank >= 3 else None


def _native_io_spec(src, keras_model, torch_example):
    """The I/O spec of a model converted with io_layout="native": the Keras side takes and returns
    channels-last tensors where the PyTorch side has channels-first ones (rank >= 3)."""
    from .frameworks import IOSpec, TensorSpec

    keras_in = [tuple(t.shape) for t in keras_model.inputs]
    keras_out = [tuple(t.shape) for t in keras_model.outputs]
    if src.framework == "torch":
        if torch_example is not None:
            specs = [TensorSpec(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for t in torch_example]
        else:  # the Keras shapes, moved back to channels-first
            specs = [TensorSpec(tuple(s[i] for i in _channels_first(len(s))) if len(s) >= 3 else s,
                                str(t.dtype)) for s, t in zip(keras_in, keras_model.inputs)]
        in_perms = [_channels_last(len(s.shape)) for s in specs]
        out_perms = [_channels_first(len(s)) for s in keras_out]
    else:
        specs = [TensorSpec(s, str(t.dtype)) for s, t in zip(keras_in, keras_model.inputs)]
        in_perms = [_channels_first(len(s)) for s in keras_in]
        out_perms = [_channels_last(len(s)) for s in keras_out]
    return IOSpec(tuple(specs), tuple(in_perms), tuple(out_perms), source=src.framework)


def compare_models(source, target, inputs=None, *, atol=1e-5, rtol=1e-4, samples=4, seed=0, device="cpu",
                   dtype="float32", io_layout="source", model_class=None, input_shapes=(), input_dtypes=(),
                   trust=False, per_layer=False, floor_factor=3.0, torch_options: dict | None = None):
    """Compare two models given as files or objects (one PyTorch, one Keras/TF) -> ``ParityReport``.

    ``inputs``: None (seeded random inputs from the models' signatures), arrays, or the path of an
    ``.npz``/``.npy`` file, in the source model's layout. ``io_layout="native"``: the target was
    converted with native layouts (channels-last on the Keras side, channels-first on the PyTorch
    side, for tensors of rank 3 and more). ``per_layer``: also find the first layer
    whose output departs (for files, the layer mapping comes from converting the source again).
    ``floor_factor``: outputs outside atol/rtol pass within this many times the source's own
    float32 rounding of a float64 run of the source (None: atol/rtol alone); see ``check_parity``.
    ``torch_options``: more ``xlate.load.load_torch`` options (model_args, hf_class, output_key...).
    """
    from .errors import BadInputError, one_line
    from .frameworks import TensorSpec
    from .load import load_inputs
    from .parity import check_parity
    from .parity_inputs import io_spec_of, make_inputs

    if isinstance(inputs, (str, Path)):  # read first: a damaged inputs file is named before the models load
        inputs = load_inputs(inputs)
    options = {"model_class": model_class, "input_shapes": input_shapes, "input_dtypes": input_dtypes, "trust": trust,
               **(torch_options or {})}
    src = _as_loaded(source, "source", **options)
    tgt = _as_loaded(target, "target", **options)
    if src.framework == tgt.framework:
        name = "PyTorch" if src.framework == "torch" else "Keras/TensorFlow"
        raise BadInputError(
            f"check compares a PyTorch model with a Keras/TensorFlow model; {src.path} and {tgt.path} are both {name}",
            hint="give the source model and the model converted from it, e.g. `xlate check net.pt2 net.keras`",
        )
    torch_side, keras_side = (src, tgt) if src.framework == "torch" else (tgt, src)

    if io_layout not in ("source", "native"):
        raise BadInputError(f"io_layout must be 'source' or 'native', got {io_layout!r}")
    if io_layout == "native" and io_spec_of(src.model) is None and io_spec_of(tgt.model) is None:
        spec = _native_io_spec(src, keras_side.model, torch_side.example_inputs)
        object.__setattr__(tgt.model, "_xlate_io", spec)
        if inputs is None:
            inputs = make_inputs(spec.inputs, samples=samples, seed=seed)
    if inputs is not None:
        arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if arrays and not isinstance(arrays[0], (list, tuple)) and io_layout == "source":
            from .frameworks import to_numpy

            _check_inputs_fit([to_numpy(a) for a in arrays], keras_side.model, torch_side.example_inputs)
    elif io_spec_of(src.model) is None and io_spec_of(tgt.model) is None and torch_side.example_inputs is not None:
        # the torch file states its input shapes (a .pt2, or --input-shape): generate inputs of those
        specs = tuple(TensorSpec(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for t in torch_side.example_inputs)
        inputs = make_inputs(specs, samples=samples, seed=seed)
        _check_inputs_fit(inputs[0], keras_side.model, None, given=False)
    if per_layer:
        _learn_layer_mapping(src, tgt)
    try:
        return check_parity(src.model, tgt.model, inputs, atol=atol, rtol=rtol, device=device, samples=samples,
                            seed=seed, per_layer=per_layer, dtype=dtype, floor_factor=floor_factor)
    except BadInputError:
        raise
    except Exception as e:
        if inputs is None:
            raise
        raise BadInputError(f"the models could not run on the given inputs ({type(e).__name__}: {one_line(e)})",
                            hint="the arrays must match the model's inputs in count, shape and dtype") from None


def assert_parity(source, target, inputs=None, *, atol: float = 1e-5, rtol: float = 1e-4, samples: int = 4,
                  seed: int = 0, device: str = "cpu", floor_factor: float | None = 3.0, **load_options):
    """Assert that ``target`` computes the same numbers as ``source`` (one PyTorch, one Keras/TF).

    ``source``/``target``: model objects or paths (``.pt2``, ``.keras``, a SavedModel folder...;
    ``load_options`` such as ``model_class=``/``input_shapes=`` as for ``xlate check``).
    ``inputs``: None (seeded random inputs), arrays, or an ``.npz`` path, in the source's layout.
    Raises ``AssertionError`` with the readable report when an output differs by more than
    ``atol + rtol * |expected|`` and by more than ``floor_factor`` x the source's own float32
    rounding (the gate's rule; ``floor_factor=None``: atol/rtol alone); returns the
    ``ParityReport`` when parity holds.
    """
    report = compare_models(source, target, inputs, atol=atol, rtol=rtol, samples=samples, seed=seed, device=device,
                            floor_factor=floor_factor, **load_options)
    if not report.passed:
        raise AssertionError(f"parity failed: {_name(source)} vs {_name(target)}\n{report}")
    return report


def _name(obj) -> str:
    return str(obj) if isinstance(obj, (str,)) or hasattr(obj, "__fspath__") else type(obj).__name__


# Runs in a fresh interpreter: imports the generated package with xlate made unimportable.
_RUN_PACKAGE_FRESH = r"""
import sys
for name in ("xlate", "keras", "tensorflow", "keras_hub"):
    sys.modules[name] = None  # the generated code must need neither xlate nor Keras
import numpy as np, torch
from safetensors.torch import load_file
package, data_path, result_path = sys.argv[1:4]
sys.path.insert(0, package)
from model import Net
net = Net()
net.load_state_dict(load_file(f"{package}/model.safetensors"))
net.eval()
data = np.load(data_path)
results = {}
for s in range(int(data["samples"])):
    inputs = [torch.from_numpy(data[f"s{s}_in{i}"]) for i in range(int(data["n_inputs"]))]
    with torch.no_grad():
        out = net(*inputs)
    leaves = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, tuple) else [out]
    for j, o in enumerate(leaves):
        results[f"s{s}_out{j}"] = o.numpy()
np.savez(result_path, **results)
"""


def fresh_package_error(keras_model, package: Path, input_specs, *, samples: int = 2, seed: int = 0) -> float:
    """Max abs error of a ``tf2torch`` folder (``model.py`` + ``model.safetensors``) against its Keras model.

    The folder runs in a new Python process where ``import xlate`` and ``import keras`` fail, so
    this proves the generated code stands alone. ``input_specs`` are the module's
    ``record.io.inputs``. Raises ``AssertionError`` when the process fails or an output count or
    shape differs.
    """
    import os
    import subprocess
    import sys
    import tempfile

    import keras
    import numpy as np

    from .frameworks import flatten_outputs, keras_inputs
    from .parity_inputs import make_inputs

    package = Path(package).resolve()
    batches = make_inputs(input_specs, samples=samples, seed=seed)
    data = {"samples": samples, "n_inputs": len(batches[0])}
    expected = []
    for s, arrays in enumerate(batches):
        data.update({f"s{s}_in{i}": a for i, a in enumerate(arrays)})
        out = keras_model(keras_inputs(keras_model, arrays), training=False)
        expected.append([np.asarray(keras.ops.convert_to_numpy(o)) for o in flatten_outputs(out)])
    with tempfile.TemporaryDirectory(prefix="xlate-fresh-") as tmp:
        data_path, result_path = Path(tmp) / "inputs.npz", Path(tmp) / "result.npz"
        np.savez(data_path, **data)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        run = subprocess.run([sys.executable, "-c", _RUN_PACKAGE_FRESH, str(package), str(data_path),
                              str(result_path)], check=False, capture_output=True, text=True, env=env, cwd=tmp,
                             timeout=600)
        if run.returncode != 0:
            raise AssertionError(f"the generated package failed in a fresh process:\n{run.stderr[-3000:]}")
        with np.load(result_path) as got:
            results = {name: got[name] for name in got.files}
    worst = 0.0
    for s, outputs in enumerate(expected):
        produced = [k for k in results if k.startswith(f"s{s}_out")]
        if len(produced) != len(outputs):
            raise AssertionError(f"the package returned {len(produced)} outputs, Keras {len(outputs)}")
        for j, e in enumerate(outputs):
            a = results[f"s{s}_out{j}"]
            if a.shape != e.shape:
                raise AssertionError(f"output {j}: the package gives shape {a.shape}, Keras {e.shape}")
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)))))
    return worst
