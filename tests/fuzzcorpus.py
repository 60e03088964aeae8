"""Small valid model files of every input format xlate reads, and seeded damaged copies of them.

Used by tests/test_fuzz.py (a fixed seed corpus in CI) and scripts/fuzz.py (``make fuzz``).
``build_seeds(folder)`` writes one small valid file (or folder) per format; ``damaged(seeds, out,
seed=..., per_seed=...)`` writes damaged copies: truncations, flipped bytes, zeroed regions (among
them the issue's "a tenth of the file from an offset in its first half"), a zip member dropped,
a file of a folder damaged or removed, and one format's bytes under another's name. The same
seed gives the same files, so a failure is reproducible from its name.
"""

from __future__ import annotations

import importlib.util
import io
import json
import random
import shutil
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

NET_SOURCE = textwrap.dedent('''
    import torch


    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(6, 5)
            self.fc2 = torch.nn.Linear(5, 3)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))
''')


@dataclass(frozen=True)
class Seed:
    """A valid file of one format and how xlate is told to read it."""

    name: str  # file or folder name inside the seed folder
    format: str  # what the file is (a detect_format name, or "inputs.npy"/"inputs.npz"/"onnx")
    load_args: dict = field(default_factory=dict)  # keyword arguments for xlate.load.load_model
    cli: tuple = ()  # argument lists for the real executable ("{}" = the file); () = not read by the CLI


# The torch seeds are all the same Net (6 -> 5 -> 3); the Keras seeds the same small conv net, and
# pkg is that conv net converted to PyTorch. CLI argument lists: "{}" is the damaged file; the
# other names are clean companions copied beside it (see COMPANIONS).
TORCH_CLASS = {"model_class": "mynet:Net", "input_shapes": ("2,6",)}
_STATE = ("--model-class", "mynet:Net", "--input-shape", "2,6")
_KERAS_CLI = (("tf2torch", "{}", "-o", "out"), ("check", "pkg", "{}"), ("inspect", "{}"))
SEEDS = (
    Seed("net.h5", "keras.h5", {"architecture": True}, _KERAS_CLI),
    Seed("net.keras", "keras", {"architecture": True}, _KERAS_CLI),
    Seed("net.pt2", "torch.export", {}, (("torch2tf", "{}", "-o", "out.keras"), ("check", "{}", "twin.keras"),
                                         ("inspect", "{}"))),
    Seed("net.pth", "torch.state_dict", TORCH_CLASS, (("torch2tf", "{}", "-o", "out.keras", *_STATE),
                                                      ("check", "{}", "twin.keras", *_STATE[:2]))),
    Seed("net_legacy.pth", "torch.state_dict", TORCH_CLASS, (("torch2tf", "{}", "-o", "out.keras", *_STATE),
                                                             ("inspect", "{}", *_STATE))),
    Seed("net.safetensors", "torch.safetensors", TORCH_CLASS, (("torch2tf", "{}", "-o", "out.keras", *_STATE),
                                                               ("check", "{}", "twin.keras", *_STATE[:2]))),
    Seed("net_ts.pt", "torch.script", {"input_shapes": ("2,6",)}, (("torch2tf", "{}", "-o", "out.keras",
                                                                    "--input-shape", "2,6"),
                                                                   ("check", "{}", "twin.keras"))),
    Seed("net_full.pth", "torch.pickle", {"trust": True, "input_shapes": ("2,6",)},
         (("torch2tf", "{}", "-o", "out.keras", "--trust", "--input-shape", "2,6"),
          ("check", "{}", "twin.keras"))),
    Seed("net_sm", "savedmodel", {"architecture": True}, (("tf2torch", "{}", "-o", "out"), ("inspect", "{}"))),
    Seed("graph_sm", "savedmodel", {}, (("check", "pkg", "{}"),)),  # the same SavedModel, run as its TF graph
    Seed("net.tflite", "tflite", {}, (("check", "pkg", "{}"),)),
    Seed("pkg", "torch.package", {}, (("check", "{}", "net.keras"), ("inspect", "{}", "--input-shape", "2,8,8,3"))),
    Seed("in.npy", "inputs.npy", {}, (("check", "net.pt2", "twin.keras", "--inputs", "{}"),)),
    Seed("in.npz", "inputs.npz", {}, (("check", "net.pt2", "twin.keras", "--inputs", "{}"),)),
    Seed("net.onnx", "onnx", {}, ()),  # no ONNX input in the CLI yet: checked through validate + onnx.load
)
COMPANIONS = ("mynet.py", "twin.keras", "net.pt2", "net.keras", "pkg")
SEED_BY_NAME = {s.name: s for s in SEEDS}


def build_seeds(folder: Path) -> Path:
    """Write every seed (and mynet.py, twin.keras, a clean net.pt2 the CLI compares with) into ``folder``."""
    import sys

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mynet.py").write_text(NET_SOURCE)
    # this folder's mynet, registered only while the seeds are written (torch.save of the whole
    # model pickles mynet.Net by name); another test's mynet is put back afterwards
    previous = sys.modules.pop("mynet", None)
    spec = importlib.util.spec_from_file_location("mynet", folder / "mynet.py")
    mynet = importlib.util.module_from_spec(spec)
    sys.modules["mynet"] = mynet
    try:
        spec.loader.exec_module(mynet)
        _write_seeds(folder, mynet)
    finally:
        sys.modules.pop("mynet", None)
        if previous is not None:
            sys.modules["mynet"] = previous
    return folder


def _write_seeds(folder: Path, mynet) -> None:
    import numpy as np
    import torch

    torch.manual_seed(0)
    net = mynet.Net().eval()
    x = torch.randn(2, 6)
    torch.save(net.state_dict(), folder / "net.pth")
    torch.save(net.state_dict(), folder / "net_legacy.pth", _use_new_zipfile_serialization=False)
    torch.save(net, folder / "net_full.pth")
    torch.export.save(torch.export.export(net, (x,)), folder / "net.pt2")
    torch.jit.save(torch.jit.trace(net, x), folder / "net_ts.pt")
    from safetensors.torch import save_file

    save_file(net.state_dict(), folder / "net.safetensors")
    rng = np.random.default_rng(1)
    np.save(folder / "in.npy", rng.standard_normal((2, 6)).astype("float32"))
    np.savez(folder / "in.npz", rng.standard_normal((2, 6)).astype("float32"))
    _keras_seeds(folder, net)
    _onnx_seed(folder / "net.onnx", net)


def _keras_seeds(folder: Path, net) -> None:
    import keras

    from xlate.save import save_keras, write_torch_package

    conv = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                             keras.layers.Dense(5)])
    conv.save(folder / "net.h5")  # the legacy HDF5 format the hang was seen on
    conv.save(folder / "net.keras")
    save_keras(conv, folder / "net_sm")  # a SavedModel carrying its Keras model (as torch2tf writes it)
    shutil.copytree(folder / "net_sm", folder / "graph_sm")
    save_keras(conv, folder / "net.tflite")
    inp = keras.Input((6,))
    twin = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(5, activation="tanh")(inp)))
    twin.layers[1].set_weights([net.fc1.weight.detach().numpy().T, net.fc1.bias.detach().numpy()])
    twin.layers[2].set_weights([net.fc2.weight.detach().numpy().T, net.fc2.bias.detach().numpy()])
    twin.save(folder / "twin.keras")
    import xlate

    module = xlate.keras_to_torch(conv, check=False)
    (folder / "pkg").mkdir()
    write_torch_package(module, folder / "pkg")


def _onnx_seed(path: Path, net) -> None:
    """A two-Gemm ONNX graph with Net's weights, built with onnx.helper (no exporter run)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    inits = [numpy_helper.from_array(v, name=k) for k, v in w.items()]
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
             helper.make_node("Tanh", ["h"], ["t"]),
             helper.make_node("Gemm", ["t", "fc2.weight", "fc2.bias"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


# --- damage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damaged:
    """A damaged copy: where it is, which seed it came from, and what was done to it."""

    path: Path
    seed: Seed
    how: str


def _files_of(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _offset(rng: random.Random, n: int) -> int:
    """Half of the damage lands in the first quarter of a file, where the headers and indexes are."""
    return rng.randrange(max(1, n // 4)) if rng.random() < 0.5 else rng.randrange(max(1, n))


def _mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    n = len(data)
    kind = rng.choice(("truncate", "flip", "zero", "zero-tenth", "flip", "zero"))
    if kind == "truncate":
        cut = rng.choice((rng.randrange(n), n - 1, n // 2, min(n - 1, 16), _offset(rng, n)))
        return data[:cut], f"truncate@{cut}"
    out = bytearray(data)
    if kind == "flip":
        count = rng.choice((1, 1, 2, 4, 8))
        places = sorted(_offset(rng, n) for _ in range(count))
        for p in places:
            out[p] ^= rng.randrange(1, 256)
        return bytes(out), "flip@" + ",".join(map(str, places))
    if kind == "zero-tenth":  # the reproduction: a tenth of the file from an offset in its first half
        start, length = rng.randrange(max(1, n // 2)), max(1, n // 10)
    else:
        start, length = _offset(rng, n), rng.choice((1, 4, 16, 64, 256, max(1, n // 10)))
    out[start:start + length] = bytes(len(out[start:start + length]))
    return bytes(out), f"zero@{start}+{length}"


def _drop_member(data: bytes, rng: random.Random) -> tuple[bytes, str] | None:
    """The zip rewritten without one of its members (a consistent archive that lacks a part)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            victim = rng.choice(infos)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as out:
                for info in infos:
                    if info.filename != victim.filename:
                        out.writestr(info, z.read(info.filename))
    except zipfile.BadZipFile:
        return None
    return buf.getvalue(), f"drop:{victim.filename}"


def _damage_one(src: Path, dst: Path, rng: random.Random) -> str:
    """Write a damaged copy of the file or folder ``src`` at ``dst``; return what was done."""
    if src.is_dir():
        shutil.copytree(src, dst)
        files = _files_of(dst)
        victim = rng.choice(files)
        rel = victim.relative_to(dst)
        if rng.random() < 0.15:
            victim.unlink()
            return f"remove:{rel}"
        data, how = _mutate_bytes(victim.read_bytes(), rng) if victim.stat().st_size else (b"x", "fill")
        victim.write_bytes(data)
        return f"{rel}:{how}"
    data = src.read_bytes()
    if data[:4] == b"PK\x03\x04" and rng.random() < 0.2:
        dropped = _drop_member(data, rng)
        if dropped is not None:
            dst.write_bytes(dropped[0])
            return dropped[1]
    damaged_bytes, how = _mutate_bytes(data, rng)
    dst.write_bytes(damaged_bytes)
    return how


def damaged(seeds_folder: Path, out: Path, *, seed: int, per_seed: int, swaps: int = 0,
            only: tuple[str, ...] | None = None) -> list[Damaged]:
    """``per_seed`` damaged copies of each seed (or of the seeds named in ``only``), plus ``swaps``
    files of one format under another format's name, all under ``out``."""
    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SEEDS if only is None or s.name in only]
    made = []
    for s in chosen:
        src = Path(seeds_folder) / s.name
        stem, dot, ext = s.name.partition(".")
        for i in range(per_seed):
            dst = out / f"{stem}-{seed}-{i}{dot}{ext}"
            how = _damage_one(src, dst, rng)
            made.append(Damaged(dst, s, how))
    files = [s for s in chosen if not (Path(seeds_folder) / s.name).is_dir()]
    for i in range(swaps):
        a, b = rng.sample(files, 2)  # a's bytes under b's name
        stem, dot, ext = b.name.partition(".")
        dst = out / f"{stem}-swap{seed}-{i}{dot}{ext}"
        shutil.copyfile(Path(seeds_folder) / a.name, dst)
        made.append(Damaged(dst, b, f"swap:{a.name}"))
    return made


def manifest(items: list[Damaged]) -> str:
    """JSON lines the batch loader reads: path, format, load arguments."""
    return "\n".join(json.dumps({"path": str(d.path), "format": d.seed.format, "how": d.how,
                                 "load_args": d.seed.load_args}) for d in items) + "\n"
