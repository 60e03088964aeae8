"""The "load" stage: tell what a model file or folder is, and load it, for both frameworks.

Formats (``detect_format`` returns one of these names):

========================  =====================================================================
torch.export              ``.pt2``: a saved ``torch.export`` ExportedProgram (self-contained)
torch.state_dict          ``.pth``/``.pt``/``.bin``: a dict of tensors; needs ``--model-class``
torch.safetensors         ``.safetensors``: tensors only; needs ``--model-class``
torch.script              a TorchScript archive (``torch.jit.save``), any torch extension
torch.pickle              a whole pickled ``nn.Module``: loading it runs code, so only with trust
torch.package             a folder written by ``xlate tf2torch`` (``model.py`` + weights)
keras                     ``.keras``: a Keras 3 archive
keras.h5                  ``.h5``/``.hdf5``: a legacy Keras HDF5 model
savedmodel                a TensorFlow SavedModel folder
tflite                    ``.tflite``: a TensorFlow Lite flatbuffer (inference only)
========================  =====================================================================

Loading is safe by default: ``torch.load(weights_only=True)``, Keras ``safe_mode=True``; a full
pickle is loaded only with ``trust=True``. Every file that cannot be used gives a
``BadInputError`` with a one-line cause and a hint, never a framework's traceback.
torch, Keras and TensorFlow are imported only by the functions that need them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bound import bounded_load
from .errors import BadInputError, one_line
from .validate import validate_inputs, validate_model

TORCH_EXTENSIONS = (".pt2", ".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".ts", ".torchscript")
KERAS_EXTENSIONS = (".keras", ".h5", ".hdf5", ".tflite")
TORCH_FORMATS = ("torch.export", "torch.state_dict", "torch.safetensors", "torch.script", "torch.pickle",
                 "torch.package")
KERAS_FORMATS = ("keras", "keras.h5", "savedmodel", "tflite")
# Formats that hold a runnable model but no architecture a converter can read.
INFERENCE_ONLY = ("tflite", "savedmodel")

# A SavedModel written by ``xlate torch2tf`` carries the Keras model it was exported from here,
# so ``xlate tf2torch`` can rebuild the architecture (a plain SavedModel holds only a TF graph).
SAVEDMODEL_KERAS_ASSET = "assets.extra/xlate_model.keras"
TORCH_PACKAGE_CODE = "model.py"

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ACCEPTED = ("PyTorch: .pt2 (torch.export), .pth/.pt/.safetensors state_dict with --model-class, TorchScript, "
            "an `xlate tf2torch` folder; Keras/TF: .keras, .h5, a SavedModel folder, .tflite")


@dataclass
class LoadedModel:
    """A model and what is known about it: its framework, its file format and example inputs."""

    framework: str  # "torch" | "keras"
    model: object
    format: str
    path: Path
    example_inputs: tuple | None = None  # torch tensors, in the source layout
    notes: list[str] = field(default_factory=list)

    @property
    def convertible(self) -> bool:
        """False for artifacts that run but hold no architecture a converter can read."""
        return self.format not in INFERENCE_ONLY


# --- detection (no framework imports) ---------------------------------------------------------


def _head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _zip_names(path: Path) -> list[str]:
    """The entries of a zip archive, or BadInputError when it is cut short or damaged."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    # ValueError: a member name that is not UTF-8; NotImplementedError: a damaged "version needed" field
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, OverflowError, struct.error) as e:
        raise BadInputError(
            f"{path} is a damaged or truncated zip archive ({one_line(e, 200)})",
            hint="the file was probably cut short while copying or saving; write it again from the source",
        ) from None


def _sniff_content(path: Path) -> str | None:
    """What the bytes look like, whatever the extension says ("zip", "hdf5", "pickle", ...)."""
    head = _head(path, 16)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return None


def _zip_kind(names: list[str]) -> str:
    """Which framework wrote a zip archive, from its entry names."""
    rel = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if {"config.json", "metadata.json"} <= rel or ("config.json" in rel and any(n.endswith(".weights.h5") for n in rel)):
        return "keras"
    if "archive_format" in rel or any(n.startswith("models/") and n.endswith(".json") for n in rel):
        return "torch.export"
    if "constants.pkl" in rel and any(n.startswith("code/") for n in rel):
        return "torch.script"
    if "data.pkl" in rel:
        return "torch.pickled"  # a state_dict or a whole model: told apart when loading
    if any(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


_KIND_WORDS = {
    "keras": "a Keras .keras archive",
    "torch.export": "a torch.export program (.pt2)",
    "torch.script": "a TorchScript archive",
    "torch.pickled": "a PyTorch torch.save file",
    "hdf5": "an HDF5 (Keras .h5) file",
    "tflite": "a TensorFlow Lite model",
    "pickle": "a (legacy) PyTorch pickle",
    "safetensors": "a safetensors file",
    "npz": "a NumPy .npz archive",
}


def detect_format(path) -> str:
    """Return the format name of a model file or folder (see the module docstring).

    Looks at the extension and the first bytes only; imports no framework. Raises
    ``BadInputError`` for a missing, empty, unknown, mislabelled or damaged file.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path} does not exist", hint="check the path (relative paths start from the current folder)")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "savedmodel"
        if (path / TORCH_PACKAGE_CODE).exists():
            return "torch.package"
        raise BadInputError(
            f"{path} is a folder but neither a TensorFlow SavedModel (no saved_model.pb) nor an "
            f"`xlate tf2torch` output (no {TORCH_PACKAGE_CODE})",
            hint="point at the model file itself, or at the SavedModel folder that holds saved_model.pb",
        )
    if path.stat().st_size == 0:
        raise BadInputError(f"{path} is empty (0 bytes)", hint="the file was not written completely; save the model again")
    ext = path.suffix.lower()
    content = _sniff_content(path)
    kind = _zip_kind(_zip_names(path)) if content == "zip" else content

    if ext not in TORCH_EXTENSIONS + KERAS_EXTENSIONS:
        looks = f"; its content looks like {_KIND_WORDS[kind]}" if kind in _KIND_WORDS else ""
        raise BadInputError(
            f"{path}: unknown model file type {ext or '(no extension)'!r}{looks}",
            hint=f"xlate reads {ACCEPTED}",
        )
    if ext == ".safetensors":
        if kind != "safetensors":
            raise _not_what_it_says(path, "a safetensors file", kind)
        return "torch.safetensors"
    if ext == ".keras":
        if kind != "keras":
            if content == "zip":
                raise BadInputError(
                    f"{path} is a zip archive but not a Keras model (no config.json and weights inside)",
                    hint="a .keras file is written by keras model.save('name.keras'); this one is damaged or "
                         "something else renamed",
                )
            raise _not_what_it_says(path, "a Keras .keras archive (a zip)", kind)
        return "keras"
    if ext in (".h5", ".hdf5"):
        if kind != "hdf5":
            raise _not_what_it_says(path, "an HDF5 file", kind)
        return "keras.h5"
    if ext == ".tflite":
        if kind != "tflite":
            raise _not_what_it_says(path, "a TensorFlow Lite flatbuffer", kind)
        return "tflite"
    # torch extensions: .pt2 .pth .pt .bin .ckpt .ts .torchscript
    if kind == "torch.export":
        return "torch.export"
    if kind == "torch.script":
        return "torch.script"
    if kind in ("torch.pickled", "pickle"):
        return "torch.state_dict"  # may turn out to be a whole pickled model; load_torch tells
    if kind == "safetensors":
        return "torch.safetensors"
    if kind == "zip":
        raise BadInputError(
            f"{path} is a zip archive but not one PyTorch wrote (no data.pkl, code/ or archive_format inside)",
            hint="save the model with torch.save(model.state_dict(), ...), torch.export.save or torch.jit.save",
        )
    raise _not_what_it_says(path, "a PyTorch file", kind)


def _not_what_it_says(path: Path, expected: str, kind: str | None) -> BadInputError:
    if kind in _KIND_WORDS:
        return BadInputError(
            f"{path} is not {expected}: its content is {_KIND_WORDS[kind]}",
            hint="rename it to the extension that matches its content, or pick the right file",
        )
    return BadInputError(
        f"{path} is not {expected}: its bytes match no model format (corrupt, or not a model file)",
        hint="write the file again from the source model; a download or copy may have damaged it",
    )


def framework_of_format(fmt: str) -> str:
    return "torch" if fmt in TORCH_FORMATS else "keras"


# --- arguments ---------------------------------------------------------------------------------


DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"2,3,32,32"`` -> ``(2, 3, 32, 32)``; BadInputError for anything else."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise BadInputError(
            f"--input-shape {text!r} is not a shape",
            hint="write positive integers separated by commas, batch first, e.g. --input-shape 1,3,224,224",
        )
    return shape


def example_inputs_from(shapes, dtypes=(), seed: int = 0) -> tuple:
    """Seeded torch tensors for ``--input-shape``/``--input-dtype`` (one dtype for all, or one each)."""
    import torch

    shapes = [parse_input_shape(s) if isinstance(s, str) else tuple(s) for s in shapes]
    dtypes = list(dtypes)
    if dtypes and len(dtypes) not in (1, len(shapes)):
        raise BadInputError(
            f"{len(dtypes)} --input-dtype for {len(shapes)} --input-shape",
            hint="give one --input-dtype for all inputs, or one per --input-shape in the same order",
        )
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, shape in enumerate(shapes):
        name = dtypes[i if len(dtypes) > 1 else 0] if dtypes else "float32"
        if name not in DTYPES:
            raise BadInputError(f"--input-dtype {name!r} is not one xlate knows", hint=f"use one of {', '.join(DTYPES)}")
        dtype = getattr(torch, name)
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=g).to(dtype))
        elif dtype == torch.bool:
            out.append(torch.randint(0, 2, shape, generator=g).bool())
        else:
            out.append(torch.randint(0, 2, shape, generator=g, dtype=dtype))
    return tuple(out)


@contextlib.contextmanager
def _cwd_on_path():
    """Make modules in the current folder importable, as ``python -m`` would."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_model_class(spec: str):
    """``"module:Class"`` (importable from the current folder) or ``"path/file.py:Class"``."""
    module_name, sep, class_name = str(spec).rpartition(":")
    if not sep or not module_name or not class_name:
        raise BadInputError(f"--model-class {spec!r} is not of the form module:Class",
                            hint="e.g. --model-class mynet:Net for class Net in ./mynet.py")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.exists():
                raise BadInputError(f"--model-class: {file} does not exist", hint="check the path to the .py file")
            mod_spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[file.stem] = module
            mod_spec.loader.exec_module(module)
        else:
            with _cwd_on_path():
                module = importlib.import_module(module_name)
    except BadInputError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises on import
        raise BadInputError(
            f"--model-class {spec}: cannot import {module_name!r} ({type(e).__name__}: {one_line(e)})",
            hint=f"run xlate from the folder that holds {module_name.replace('.', '/')}.py, or add it to PYTHONPATH",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BadInputError(f"--model-class {spec}: module {module_name!r} has no {class_name!r}",
                            hint="check the spelling of the class name (it is case-sensitive)")
    return cls


# --- torch -------------------------------------------------------------------------------------


def exported_program_module(program):
    """An ``nn.Module`` running an ExportedProgram that, unlike ``program.module()``, takes eval()."""
    return _exported_program_module_cls()(program)


@functools.cache
def _exported_program_module_cls():
    import torch

    class ExportedProgramModule(torch.nn.Module):
        """An ExportedProgram's module that accepts train()/eval().

        An exported graph is frozen in the mode it was exported in; torch refuses ``eval()`` on it,
        which the parity checker calls. This wrapper records the flag and leaves the graph alone.
        """

        def __init__(self, program):
            super().__init__()
            self.program = program.module()
            self.training = False

        def train(self, mode: bool = True):
            self.training = bool(mode)
            return self

        def forward(self, *args, **kwargs):
            return self.program(*args, **kwargs)

    return ExportedProgramModule


def _quiet_torch_load(*args, **kwargs):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(*args, **kwargs)


def _read_state_dict(path: Path, fmt: str, trust: bool):
    """Return a state_dict (dict of tensors) or, with trust, whatever a full pickle holds."""
    import pickle

    if fmt == "torch.safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise BadInputError(f"{path} is a damaged safetensors file ({one_line(e)})",
                                hint="write it again with safetensors.torch.save_file") from None
    try:
        return _quiet_torch_load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e) and "Unsupported" not in str(e):
            raise BadInputError(f"{path} is a damaged PyTorch file ({one_line(e, 160)})",
                                hint="write it again with torch.save") from None
        if not trust:
            what = _unsupported_global(str(e))
            raise BadInputError(
                f"{path} is a whole pickled model{what}: loading it runs code from the file, so xlate refuses "
                "by default",
                hint="rerun with --trust only if you trust where the file came from; safer: save "
                     "model.state_dict() and pass --model-class, or save a torch.export program (.pt2)",
            ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, struct.error) as e:
        raise BadInputError(f"{path} is a damaged or truncated PyTorch file ({one_line(e, 160)})",
                            hint="the file was probably cut short; save or copy it again") from None
    # trusted full pickle: it may import the model's module, so the current folder is on the path
    try:
        with _cwd_on_path():
            return _quiet_torch_load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - the pickle runs arbitrary code; report, don't crash
        raise BadInputError(
            f"cannot unpickle {path} ({type(e).__name__}: {one_line(e)})",
            hint="the classes it was pickled with must be importable: run xlate from the project folder that "
                 "defines them",
        ) from None


def _unsupported_global(message: str) -> str:
    marker = "GLOBAL "
    i = message.find(marker)
    if i < 0:
        return ""
    name = message[i + len(marker):].split()[0]
    return f" (it references {name})"


_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


def _unwrap_checkpoint(obj, path: Path, notes: list[str]):
    """Training checkpoints often nest the state_dict ({"model_state_dict": ..., "optimizer": ...})."""
    import torch

    if isinstance(obj, dict) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                notes.append(f"used the state_dict under key {key!r} of the checkpoint")
                return inner
    return obj


def _build_from_state_dict(state, path: Path, model_class: str | None):
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(
            f"{path} holds a {type(state).__name__}, not a model or a state_dict of tensors",
            hint="save model.state_dict(), a torch.export program, or a TorchScript archive",
        )
    if model_class is None:
        raise BadInputError(
            f"{path} holds only weights (a state_dict of {len(state)} tensors); xlate needs the model's class "
            "to rebuild it",
            hint="add --model-class module:Class (importable from the current folder) and --input-shape, e.g. "
                 "--model-class mynet:Net --input-shape 1,3,224,224",
        )
    cls = import_model_class(model_class)
    try:
        module = cls()
    except Exception as e:  # noqa: BLE001 - the user's constructor
        raise BadInputError(f"--model-class {model_class}: {cls.__name__}() failed ({type(e).__name__}: "
                            f"{one_line(e)})",
                            hint="the class must be constructible without arguments; wrap it in one that is") from None
    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"--model-class {model_class} is not a torch.nn.Module", hint="name the nn.Module subclass")
    own = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shapes differ for {', '.join(wrong[:3])}" + (" ..." if len(wrong) > 3 else ""))
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
        raise BadInputError(f"the weights in {path} do not fit {cls.__name__}: {'; '.join(parts)}",
                            hint="--model-class must name the class the state_dict was saved from")
    module.load_state_dict(state)
    module.eval()
    return module


def _exported_example_inputs(ep) -> tuple | None:
    import torch

    if getattr(ep, "example_inputs", None):
        args, kwargs = ep.example_inputs
        if not kwargs and all(isinstance(a, torch.Tensor) for a in args):
            return tuple(a.detach().clone() for a in args)
    specs = []
    user_inputs = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            if val is None or not hasattr(val, "shape"):
                return None
            shape = tuple(int(d) if isinstance(d, int) else 2 for d in val.shape)
            specs.append((shape, val.dtype))
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(s, generator=g).to(d) if d.is_floating_point else torch.zeros(s, dtype=d)
                 for s, d in specs)


@bounded_load
def load_torch(path, *, model_class: str | None = None, input_shapes=(), input_dtypes=(), trust: bool = False,
               fmt: str | None = None) -> LoadedModel:
    """Load a PyTorch model file or folder as an ``nn.Module`` in eval mode, with example inputs
    when the file or the ``--input-shape`` options give them."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if framework_of_format(fmt) != "torch":
        raise BadInputError(f"{path} is a Keras/TensorFlow model ({fmt}), not a PyTorch one",
                            hint=f"to turn it into PyTorch run `xlate tf2torch {path} -o OUTDIR`")
    validate_model(path, fmt)
    import torch

    notes: list[str] = []
    example = example_inputs_from(input_shapes, input_dtypes) if input_shapes else None
    if fmt == "torch.export":
        try:
            ep = torch.export.load(str(path))
        except Exception as e:  # noqa: BLE001 - torch raises many types for damaged archives
            raise BadInputError(f"{path} is a damaged torch.export archive ({type(e).__name__}: {one_line(e, 200)})",
                                hint="save it again with torch.export.save(program, 'model.pt2')") from None
        module = exported_program_module(ep)
        example = example or _exported_example_inputs(ep)
    elif fmt == "torch.script":
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001
            raise BadInputError(f"{path} is a damaged TorchScript archive ({type(e).__name__}: {one_line(e, 200)})",
                                hint="save it again with torch.jit.save") from None
        module.eval()
    elif fmt == "torch.package":
        module = load_torch_package(path)
    else:
        obj = _unwrap_checkpoint(_read_state_dict(path, fmt, trust), path, notes)
        if isinstance(obj, torch.nn.Module):
            module = obj.eval()
            fmt = "torch.pickle"
            notes.append("loaded a whole pickled model (--trust)")
        else:
            module = _build_from_state_dict(obj, path, model_class)
    return LoadedModel("torch", module, fmt, path, example, notes)


def load_torch_package(folder) -> object:
    """Load a folder written by ``xlate tf2torch`` as an ``nn.Module`` in eval mode.

    Imports its ``model.py`` (plain PyTorch source, readable before running), builds class ``Net``
    (or the file's only ``nn.Module`` class) and loads ``model.safetensors`` (or ``model.pth``,
    with ``weights_only=True``).
    """
    import torch

    folder = Path(folder)
    code = folder / TORCH_PACKAGE_CODE
    name = f"_xlate_package_{abs(hash(str(folder.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(name, code)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the file's code raises
        raise BadInputError(f"cannot import {code} ({type(e).__name__}: {one_line(e)})",
                            hint="write the folder again with `xlate tf2torch MODEL -o FOLDER --force`") from None
    classes = [v for v in vars(module).values()
               if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == name]
    cls = getattr(module, "Net", None) or (classes[0] if len(classes) == 1 else None)
    if cls is None:
        raise BadInputError(f"{code} defines no class Net and {len(classes)} nn.Module classes",
                            hint="point at a folder written by `xlate tf2torch`")
    try:
        net = cls()
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{code}: {cls.__name__}() failed ({type(e).__name__}: {one_line(e)})",
                            hint="write the folder again with `xlate tf2torch MODEL -o FOLDER --force`") from None
    weights = [folder / "model.safetensors", folder / "model.pth"]
    found = [w for w in weights if w.exists()]
    if not found:
        raise BadInputError(f"{folder} has {TORCH_PACKAGE_CODE} but no weights (model.safetensors or model.pth)",
                            hint="copy the whole folder that `xlate tf2torch` wrote")
    fmt = "torch.safetensors" if found[0].suffix == ".safetensors" else "torch.state_dict"
    state = _read_state_dict(found[0], fmt, trust=False)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise BadInputError(f"the weights in {found[0]} do not fit {code} ({one_line(e, 200)})",
                            hint="the folder's files come from different runs; write it again with `xlate tf2torch`") \
            from None
    return net.eval()


def traceable_module(loaded):
    """The module handed to the converter (the parity check always runs the loaded model itself).

    torch.export cannot trace a TorchScript module, so a TorchScript archive goes through torch's
    TorchScript -> ExportedProgram converter first.
    """
    if loaded.format != "torch.script":
        return loaded.model
    from .errors import UnsupportedOpError

    try:
        from torch._export.converter import TS2EPConverter

        program = TS2EPConverter(loaded.model, tuple(loaded.example_inputs)).convert()
    except Exception as e:  # noqa: BLE001 - the converter is torch's, and its errors vary
        raise UnsupportedOpError([("TorchScript", f"{type(e).__name__}: {one_line(e)}")], direction="torch2keras",
                                 hint="torch could not turn the TorchScript archive into an ExportedProgram; save "
                                      "the original module with torch.export.save (.pt2) instead") from None
    return exported_program_module(program)


# --- keras -------------------------------------------------------------------------------------


def _import_keras():
    from .frameworks import quiet_tensorflow

    quiet_tensorflow()
    import keras

    with contextlib.suppress(ImportError):
        import xlate.keras_layers  # noqa: F401 - registers xlate's custom layers for deserialization
    return keras


@bounded_load
def load_keras(path, *, trust: bool = False, fmt: str | None = None, architecture: bool = False) -> LoadedModel:
    """Load a Keras/TensorFlow model: ``.keras``, ``.h5``, a SavedModel folder or ``.tflite``.

    SavedModel and TFLite come back as inference-only Keras models that run the TF graph or the
    TFLite interpreter (what a deployment runs; they can be checked, not converted).
    ``architecture=True`` asks for a model a converter can read: a SavedModel then gives the Keras
    model xlate stored inside it, and files without one are refused with a hint.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if framework_of_format(fmt) != "keras":
        raise BadInputError(f"{path} is a PyTorch model ({fmt}), not a Keras/TensorFlow one",
                            hint=f"to turn it into Keras run `xlate torch2tf {path} -o model.keras`")
    validate_model(path, fmt)
    keras = _import_keras()
    notes: list[str] = []
    if fmt in ("keras", "keras.h5"):
        model = _load_keras_file(keras, path, trust)
    elif architecture and fmt == "savedmodel":
        embedded = path / SAVEDMODEL_KERAS_ASSET
        if not embedded.exists():
            raise BadInputError(
                f"the SavedModel {path} holds a TensorFlow graph but no Keras model to rebuild the architecture from",
                hint="convert the .keras or .h5 file it was exported from; `xlate check` can still compare this "
                     "SavedModel with a PyTorch model",
            )
        model = _load_keras_file(keras, embedded, trust)
        notes.append(f"used the Keras model stored in {SAVEDMODEL_KERAS_ASSET}")
        return LoadedModel("keras", model, "keras", path, None, notes)
    elif architecture:
        raise BadInputError(f"{path} is a TFLite flatbuffer: it runs, but holds no architecture xlate can convert",
                            hint="convert the .keras, .h5 or SavedModel it was made from; `xlate check` can still "
                                 "compare it with a PyTorch model")
    elif fmt == "savedmodel":
        model = _savedmodel_as_keras(keras, path)
    else:
        model = tflite_as_keras(path)
    return LoadedModel("keras", model, fmt, path, None, notes)


def _load_keras_file(keras, path: Path, trust: bool):
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not trust)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for damaged or foreign files
        text = one_line(e, 240)
        if "safe_mode" in text or "lambda" in text.lower():
            raise BadInputError(f"{path} contains Python code (a Lambda layer); Keras' safe mode refuses to load it",
                                hint="rerun with --trust only if you trust where the file came from") from None
        if "Unknown layer" in text or "Could not locate class" in text:
            raise BadInputError(f"{path} uses a custom layer Keras cannot find ({text})",
                                hint="the layer's class must be registered with @keras.saving.register_keras_serializable "
                                     "and importable") from None
        raise BadInputError(f"cannot load the Keras model {path} ({type(e).__name__}: {text})",
                            hint="the file is damaged or was written by an incompatible Keras; save it again with "
                                 "model.save('name.keras')") from None


def _savedmodel_as_keras(keras, path: Path):
    """An inference-only Keras model that calls the SavedModel's serving signature."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"cannot load the SavedModel {path} ({type(e).__name__}: {one_line(e, 200)})",
                            hint="the folder is damaged or incomplete; export it again") from None
    endpoint = "serve" if hasattr(loaded, "serve") else "serving_default"
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise BadInputError(f"the SavedModel {path} has no serving_default signature",
                            hint="export it with keras model.export(path) or tf.saved_model.save(..., signatures=...)")
    _, kw = sig.structured_input_signature
    specs = list(kw.values())
    inputs = [keras.Input(shape=tuple(s.shape[1:]), batch_size=s.shape[0], dtype=s.dtype.name, name=s.name or f"in{i}")
              for i, s in enumerate(specs)]
    layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint)
    single = len(inputs) == 1
    out = layer(inputs[0] if single else inputs)
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out)]
    return keras.Model(inputs[0] if single else inputs, out, name="savedmodel")


def tflite_as_keras(path):
    """An inference-only Keras model that runs a ``.tflite`` file with the TFLite interpreter."""
    keras = _import_keras()
    path = Path(path)
    interpreter = _tflite_interpreter(path)
    in_details = interpreter.get_input_details()
    out_details = interpreter.get_output_details()

    class TFLiteModelLayer(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(trainable=False, **kwargs)

        def compute_output_spec(self, inputs):
            batch = (inputs[0] if isinstance(inputs, (list, tuple)) else inputs).shape[0]
            return [keras.KerasTensor((batch, *[int(d) for d in o["shape_signature"][1:]]), dtype=np.dtype(o["dtype"]).name)
                    for o in out_details]

        def call(self, inputs):
            arrays = [keras.ops.convert_to_numpy(a) for a in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
            return [keras.ops.convert_to_tensor(o) for o in run_tflite(interpreter, arrays)]

    inputs = [keras.Input(shape=tuple(int(d) for d in d_["shape_signature"][1:]), dtype=np.dtype(d_["dtype"]).name,
                          name=f"input{i}") for i, d_ in enumerate(in_details)]
    single = len(inputs) == 1
    outs = TFLiteModelLayer(name="tflite")(inputs[0] if single else inputs)
    return keras.Model(inputs[0] if single else inputs, outs if len(outs) > 1 else outs[0], name="tflite")


def _tflite_interpreter(path: Path):
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # from the bytes, not the path: then TFLite verifies the flatbuffer (from a path it does
            # not, and a damaged file segfaults the process)
            interpreter = Interpreter(model_content=path.read_bytes())
        interpreter.allocate_tensors()
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{path} is a damaged TFLite model ({type(e).__name__}: {one_line(e, 200)})",
                            hint="convert it again; a copy may have cut it short") from None
    return interpreter


def run_tflite(interpreter, arrays) -> list[np.ndarray]:
    """Run a TFLite interpreter on arrays (resizing the batch when it differs)."""
    in_details = interpreter.get_input_details()
    if len(arrays) != len(in_details):
        raise BadInputError(f"the TFLite model takes {len(in_details)} input(s), got {len(arrays)}")
    resized = False
    for d, a in zip(in_details, arrays):
        if tuple(d["shape"]) != a.shape:
            interpreter.resize_tensor_input(d["index"], list(a.shape))
            resized = True
    if resized:
        interpreter.allocate_tensors()
    for d, a in zip(interpreter.get_input_details(), arrays):
        interpreter.set_tensor(d["index"], np.ascontiguousarray(a, dtype=d["dtype"]))
    interpreter.invoke()
    outs = interpreter.get_output_details()
    # the converter may list outputs in any order; the names end in ":0", ":1"... in model order
    outs = sorted(outs, key=lambda o: (_output_position(o["name"]), o["index"]))
    return [interpreter.get_tensor(o["index"]).copy() for o in outs]


def _output_position(name: str) -> int:
    tail = name.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


# --- either ------------------------------------------------------------------------------------


def load_model(path, *, model_class=None, input_shapes=(), input_dtypes=(), trust=False,
               architecture: bool = False) -> LoadedModel:
    """Detect the framework of a model file or folder and load it (see ``load_torch``/``load_keras``)."""
    fmt = detect_format(path)
    if framework_of_format(fmt) == "torch":
        return load_torch(path, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                          trust=trust, fmt=fmt)
    return load_keras(path, trust=trust, fmt=fmt, architecture=architecture)


def load_inputs(path) -> list[np.ndarray]:
    """Arrays from an ``.npz`` (in the order saved: arr_0, arr_1... or the names given) or ``.npy``."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"--inputs {path} does not exist", hint="check the path")
    validate_inputs(path)
    try:
        if path.suffix == ".npy":
            return [np.load(path, allow_pickle=False)]
        with np.load(path, allow_pickle=False) as data:
            return [data[k] for k in data.files]
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"--inputs {path} is not a readable .npz/.npy file ({one_line(e, 160)})",
                            hint="write it with numpy.savez('inputs.npz', x) (one array per model input, in order)") \
            from None


def input_signature(loaded: LoadedModel) -> list[tuple] | None:
    """The input shapes a model declares (None where a size is free), when it declares them."""
    if loaded.framework == "keras":
        model = loaded.model
        try:
            return [tuple(t.shape) for t in model.inputs]
        except (AttributeError, TypeError, ValueError):
            return None
    if loaded.example_inputs is not None:
        return [tuple(t.shape) for t in loaded.example_inputs]
    return None
