"""The "load" stage: tell what a model file or folder is, and load it, for both frameworks.

Formats (``detect_format`` returns one of these names; each is read by one module of
``xlate.loaders``):

========================  =====================================================================
torch.export              ``.pt2``: a saved ``torch.export`` ExportedProgram (self-contained)
torch.state_dict          ``.pth``/``.pt``/``.bin``: a dict of tensors; needs ``--model-class``
torch.safetensors         ``.safetensors``: tensors only; needs ``--model-class``
torch.script              a TorchScript archive (``torch.jit.save``), any torch extension
torch.pickle              a whole pickled ``nn.Module``: loading it runs code, so only with trust
torch.package             a folder written by ``xlate tf2torch`` (``model.py`` + weights)
torch.hf                  a Hugging Face ``save_pretrained`` folder (``config.json`` + weights)
torch.factory             no file: ``--model-class MODULE:CALLABLE`` (+ ``--model-args``) builds it
onnx                      ``.onnx``: run by onnxruntime (``xlate check``) or converted (onnx2keras)
keras                     ``.keras``: a Keras 3 archive
keras.h5                  ``.h5``/``.hdf5``: a legacy Keras HDF5 model
savedmodel                a TensorFlow SavedModel folder
tflite                    ``.tflite``: a TensorFlow Lite flatbuffer (inference only)
========================  =====================================================================

Loading is safe by default: ``torch.load(weights_only=True)``, Keras ``safe_mode=True``; a full
pickle (or a Hugging Face ``pytorch_model.bin``) is loaded only with ``trust=True``. Every file that
cannot be used gives a ``BadInputError`` with a one-line cause and a hint, never a framework's
traceback. torch, Keras and TensorFlow are imported only by the functions that need them.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .bound import bounded_load
from .errors import BadInputError, one_line
from .loaders.factory import import_model_class, parse_model_args  # noqa: F401 - public names of this module
from .loaders.inputs import DTYPES, example_inputs_from, load_inputs, parse_input_shape  # noqa: F401
from .loaders.keras_file import import_keras, load_keras_file, savedmodel_as_keras
from .loaders.pt2 import exported_program_module  # noqa: F401
from .loaders.tflite import run_tflite, tflite_as_keras  # noqa: F401
from .loaders.torch_package import TORCH_PACKAGE_CODE, load_torch_package
from .loaders.torchscript import traceable_module  # noqa: F401
from .validate import validate_model

TORCH_EXTENSIONS = (".pt2", ".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".ts", ".torchscript")
KERAS_EXTENSIONS = (".keras", ".h5", ".hdf5", ".tflite")
TORCH_FORMATS = ("torch.export", "torch.state_dict", "torch.safetensors", "torch.script", "torch.pickle",
                 "torch.package", "torch.hf", "torch.factory")
KERAS_FORMATS = ("keras", "keras.h5", "savedmodel", "tflite")
ONNX_FORMATS = ("onnx",)
# Formats that hold a runnable model but no architecture a converter can read.
INFERENCE_ONLY = ("tflite", "savedmodel")

# A SavedModel written by ``xlate torch2tf`` carries the Keras model it was exported from here,
# so ``xlate tf2torch`` can rebuild the architecture (a plain SavedModel holds only a TF graph).
SAVEDMODEL_KERAS_ASSET = "assets.extra/xlate_model.keras"

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ACCEPTED = ("PyTorch: .pt2 (torch.export), .pth/.pt/.safetensors state_dict with --model-class, TorchScript, "
            "a Hugging Face save_pretrained folder, an `xlate tf2torch` folder; ONNX: .onnx; Keras/TF: .keras, "
            ".h5, a SavedModel folder, .tflite")


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
        if (path / "config.json").exists():
            return "torch.hf"
        raise BadInputError(
            f"{path} is a folder but neither a TensorFlow SavedModel (no saved_model.pb), a Hugging Face "
            f"save_pretrained folder (no config.json) nor an `xlate tf2torch` output (no {TORCH_PACKAGE_CODE})",
            hint="point at the model file itself, or at the folder that holds saved_model.pb or config.json",
        )
    if path.stat().st_size == 0:
        raise BadInputError(f"{path} is empty (0 bytes)", hint="the file was not written completely; save the model again")
    ext = path.suffix.lower()
    if ext == ".onnx":
        return "onnx"  # a protobuf has no magic bytes: the ONNX loader checks it
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
    """"torch", "keras" or "onnx"."""
    if fmt in ONNX_FORMATS:
        return "onnx"
    return "torch" if fmt in TORCH_FORMATS else "keras"


# --- torch -------------------------------------------------------------------------------------

# options that only some torch formats take: (option, the formats, what it is for)
_FORMAT_OPTIONS = (
    ("model_args", ("torch.state_dict", "torch.safetensors", "torch.factory"), "--model-args", "--model-class"),
    ("hf_class", ("torch.hf",), "--hf-class", "a Hugging Face folder"),
    ("output_key", ("torch.hf",), "--output-key", "a Hugging Face folder"),
    ("seq_len", ("torch.hf",), "--seq-len", "a Hugging Face folder"),
)


def _refuse_unused(path, fmt: str, given: dict) -> None:
    for key, formats, option, meant in _FORMAT_OPTIONS:
        if given.get(key) is not None and fmt not in formats:
            raise BadInputError(f"{option} does not apply to {path} ({fmt})",
                                hint=f"{option} is for {meant}; leave it out")
    if given.get("model_class") and fmt not in ("torch.state_dict", "torch.safetensors", "torch.factory"):
        raise BadInputError(f"--model-class does not apply to {path} ({fmt}): the file holds its own architecture",
                            hint="leave --model-class out, or give a state_dict (.pth, .safetensors) with it")


def load_torch(path=None, *, model_class: str | None = None, input_shapes=(), input_dtypes=(), trust: bool = False,
               fmt: str | None = None, model_args=None, weights=None, hf_class: str | None = None,
               output_key: str | None = None, seq_len: int | None = None) -> LoadedModel:
    """Load a PyTorch model file or folder as an ``nn.Module`` in eval mode, with example inputs
    when the file, the model or the ``--input-shape`` options give them.

    ``path=None`` with ``model_class`` builds the model from the class or factory (``model_args``:
    a JSON text, dict or list), with ``weights`` (a state_dict file) or the factory's own.
    ``hf_class``/``output_key``/``seq_len`` apply to a Hugging Face folder.
    """
    if path is None or weights is not None:
        if path is not None:
            raise BadInputError(f"both {path} and --weights {weights} give the weights",
                                hint="give the state_dict once: as MODEL or with --weights")
        if model_class is None:
            raise BadInputError("no model given", hint="name a model file or folder, or --model-class MODULE:CALLABLE")
        path, fmt = (Path(weights), fmt) if weights is not None else (None, "torch.factory")
    options = {"model_class": model_class, "input_shapes": input_shapes, "input_dtypes": input_dtypes, "trust": trust,
               "fmt": fmt, "model_args": model_args, "hf_class": hf_class, "output_key": output_key, "seq_len": seq_len}
    if path is None:  # a factory: no file to validate or bound
        return _load_torch(None, **options)
    return _load_torch_file(Path(path), **options)


def _load_torch(path, *, model_class, input_shapes, input_dtypes, trust, fmt, model_args, hf_class, output_key,
                seq_len) -> LoadedModel:
    """``load_torch`` once the file (or none, for a factory) is known."""
    fmt = fmt or detect_format(path)
    if framework_of_format(fmt) != "torch":
        if fmt == "onnx":
            raise BadInputError(f"{path} is an ONNX file, not a PyTorch model",
                                hint=f"convert it with `xlate onnx2keras {path} -o model.keras` or "
                                     f"`xlate onnx2torch {path} -o OUTDIR`")
        raise BadInputError(f"{path} is a Keras/TensorFlow model ({fmt}), not a PyTorch one",
                            hint=f"to turn it into PyTorch run `xlate tf2torch {path} -o OUTDIR`")
    _refuse_unused(path, fmt, {"model_args": model_args, "hf_class": hf_class, "output_key": output_key,
                               "seq_len": seq_len, "model_class": model_class})
    parse_model_args(model_args)  # malformed JSON is told before torch is even imported
    if path is not None:
        validate_model(path, fmt)  # a Hugging Face folder's loader checks each of its weights files
    notes: list[str] = []
    example = example_inputs_from(input_shapes, input_dtypes) if input_shapes else None
    if fmt == "torch.export":
        from .loaders.pt2 import load_pt2

        module, own = load_pt2(path)
        example = example or own
    elif fmt == "torch.script":
        from .loaders.torchscript import load_torchscript

        module = load_torchscript(path)
    elif fmt == "torch.package":
        module = load_torch_package(path)
    elif fmt == "torch.hf":
        from .loaders.hf_folder import load_hf_folder

        module, own = load_hf_folder(path, hf_class=hf_class, output_key=output_key, seq_len=seq_len, trust=trust,
                                     example=example, notes=notes)
        example = example or own
    else:
        module, fmt, own = _build_torch(path, fmt, model_class, model_args, trust, notes)
        example = example or own
    return LoadedModel("torch", module, fmt, path if path is not None else Path(model_class), example, notes)


_load_torch_file = bounded_load(_load_torch)  # a file's load, bounded in time (see xlate.bound)


def _build_torch(path, fmt, model_class, model_args, trust, notes):
    """A state_dict (or a trusted pickle) and/or a class or factory: (module, format, example inputs)."""
    from .loaders.factory import build_model, factory_example_inputs
    from .loaders.state_dict import fit_state_dict, is_state_dict, read_state_dict, unwrap_checkpoint

    if fmt == "torch.factory":
        module = build_model(model_class, model_args)
        notes.append(f"built by {model_class} with its own (random) initialization")
        return module, fmt, factory_example_inputs(module)
    obj = unwrap_checkpoint(read_state_dict(path, fmt, trust), path, notes)
    import torch

    if isinstance(obj, torch.nn.Module):
        notes.append("loaded a whole pickled model (--trust)")
        return obj.eval(), "torch.pickle", None
    if model_class is None:
        if not is_state_dict(obj):
            raise BadInputError(f"{path} holds a {type(obj).__name__}, not a model or a state_dict of tensors",
                                hint="save model.state_dict(), a torch.export program, or a TorchScript archive")
        raise BadInputError(
            f"{path} holds only weights (a state_dict of {len(obj)} tensors); xlate needs the model's class "
            "to rebuild it",
            hint="add --model-class module:Class (importable from the current folder) and --input-shape, e.g. "
                 "--model-class mynet:Net --input-shape 1,3,224,224",
        )
    module = build_model(model_class, model_args)
    fit_state_dict(module, obj, path, f"{model_class}",
                   hint="--model-class (and --model-args) must build the model the state_dict was saved from")
    return module, fmt, factory_example_inputs(module)


# --- keras -------------------------------------------------------------------------------------


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
    if fmt == "onnx":
        raise BadInputError(f"{path} is an ONNX file, not a Keras/TensorFlow model",
                            hint=f"convert it with `xlate onnx2torch {path} -o OUTDIR` or `xlate onnx2keras {path} "
                                 "-o model.keras`")
    if framework_of_format(fmt) != "keras":
        raise BadInputError(f"{path} is a PyTorch model ({fmt}), not a Keras/TensorFlow one",
                            hint=f"to turn it into Keras run `xlate torch2tf {path} -o model.keras`")
    validate_model(path, fmt)
    keras = import_keras()
    notes: list[str] = []
    if fmt in ("keras", "keras.h5"):
        model = load_keras_file(keras, path, trust)
    elif architecture and fmt == "savedmodel":
        embedded = path / SAVEDMODEL_KERAS_ASSET
        if not embedded.exists():
            raise BadInputError(
                f"the SavedModel {path} holds a TensorFlow graph but no Keras model to rebuild the architecture from",
                hint="convert the .keras or .h5 file it was exported from; `xlate check` can still compare this "
                     "SavedModel with a PyTorch model",
            )
        model = load_keras_file(keras, embedded, trust)
        notes.append(f"used the Keras model stored in {SAVEDMODEL_KERAS_ASSET}")
        return LoadedModel("keras", model, "keras", path, None, notes)
    elif architecture:
        raise BadInputError(f"{path} is a TFLite flatbuffer: it runs, but holds no architecture xlate can convert",
                            hint="convert the .keras, .h5 or SavedModel it was made from; `xlate check` can still "
                                 "compare it with a PyTorch model")
    elif fmt == "savedmodel":
        model = savedmodel_as_keras(keras, path)
    else:
        model = tflite_as_keras(path)
    return LoadedModel("keras", model, fmt, path, None, notes)


# --- either ------------------------------------------------------------------------------------


def load_model(path, *, model_class=None, input_shapes=(), input_dtypes=(), trust=False,
               architecture: bool = False, **torch_options) -> LoadedModel:
    """Detect the framework of a model file or folder and load it (see ``load_torch``/``load_keras``).

    An ONNX file comes back as a torch-side model that runs onnxruntime (what it deploys as), so
    ``xlate check model.onnx model.keras`` compares with onnxruntime itself."""
    if path is None or torch_options.get("weights") is not None:
        return load_torch(path, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                          trust=trust, **torch_options)
    fmt = detect_format(path)
    if fmt == "onnx":
        from .loaders.onnx import load_onnx, runtime_module

        onnx_model = load_onnx(path, input_shapes=input_shapes, input_dtypes=input_dtypes, supported=False)
        return LoadedModel("torch", runtime_module(onnx_model), "onnx", Path(path), onnx_model.example,
                           ["run by onnxruntime"])
    if framework_of_format(fmt) == "torch":
        return load_torch(path, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                          trust=trust, fmt=fmt, **torch_options)
    return load_keras(path, trust=trust, fmt=fmt, architecture=architecture)


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
