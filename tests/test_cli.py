"""The real ``xlate`` executable, driven as a user and a CI job drive it (subprocess).

Every call starts a fresh Python that imports torch and often TensorFlow (~10 s), so each test
makes few calls and asserts everything about them; the format-by-format conversions are marked
slow. Bad input: exit 2, one ``error:`` line and one ``hint:`` line on stderr, no traceback,
and nothing left where the output would have gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

NET_SOURCE = textwrap.dedent('''
    import torch


    class Net(torch.nn.Module):
        """A small MLP: enough float ops that outputs are not bit-identical across frameworks."""

        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(6, 5)
            self.fc2 = torch.nn.Linear(5, 3)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))


    class ConvNet(torch.nn.Module):
        """NCHW convolution then Linear: exercises the layout plan (Flatten after a conv)."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 5)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


    class NeedsArgs(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc = torch.nn.Linear(width, 2)
''')


def run_xlate(*args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the xlate command line (``python -m xlate``, the same entry point as the executable)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("XLATE_PROGRESS", None)
    return subprocess.run([sys.executable, "-m", "xlate", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          check=False,
                          text=True, timeout=timeout)


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_bad_input(result: subprocess.CompletedProcess, *, says: str, before: set[str], folder: Path) -> None:
    """Exit 2, exactly one ``error:`` line (mentioning ``says``) and one ``hint:`` line, no traceback,
    and the folder exactly as it was (nothing half-written, no temporary files)."""
    lines = result.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    hints = [ln for ln in lines if ln.startswith("hint: ")]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and len(hints) == 1, result.stderr
    assert says.lower() in errors[0].lower(), errors[0]
    assert listing(folder) == before, listing(folder) ^ before


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a user's model module and the model saved in every PyTorch format, plus a
    hand-built Keras twin of Net (weights copied) so `check` is tested apart from the converters."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder = tmp_path_factory.mktemp("cli")
    (folder / "mynet.py").write_text(NET_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        import mynet
    finally:
        sys.path.remove(str(folder))
    torch.manual_seed(0)
    net = mynet.Net().eval()
    x = torch.randn(2, 6)
    torch.save(net.state_dict(), folder / "net.pth")
    torch.export.save(torch.export.export(net, (x,)), folder / "net.pt2")
    torch.jit.save(torch.jit.trace(net, x), folder / "net_ts.pt")
    torch.save(net, folder / "net_full.pth")
    from safetensors.torch import save_file

    save_file(net.state_dict(), folder / "net.safetensors")
    conv = mynet.ConvNet().eval()
    torch.export.save(torch.export.export(conv, (torch.randn(2, 3, 8, 8),)), folder / "conv.pt2")

    import keras

    inp = keras.Input((6,))
    out = keras.layers.Dense(3)(keras.layers.Dense(5, activation="tanh")(inp))
    twin = keras.Model(inp, out)
    twin.layers[1].set_weights([net.fc1.weight.detach().numpy().T, net.fc1.bias.detach().numpy()])
    twin.layers[2].set_weights([net.fc2.weight.detach().numpy().T, net.fc2.bias.detach().numpy()])
    twin.save(folder / "twin.keras")
    rng = np.random.default_rng(1)
    np.savez(folder / "in.npz", rng.standard_normal((2, 6)).astype("float32"))
    np.savez(folder / "in_wrong.npz", rng.standard_normal((2, 7)).astype("float32"))
    return folder


# --- the fast path: help, check, exit codes ------------------------------------------------------


def test_help_is_fast_and_lists_every_command(work):
    import time

    start = time.perf_counter()
    result = run_xlate("--help", cwd=work)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0
    for command in ("torch2tf", "tf2torch", "onnx2keras", "onnx2torch", "check", "inspect", "demo", "table"):
        assert command in result.stdout
    assert elapsed < 3.0  # a fresh interpreter included; `time xlate --help` is ~0.12 s here


def test_check_passes_on_a_faithful_twin_and_writes_the_json_report(work):
    result = run_xlate("check", "net.pt2", "twin.keras", "--inputs", "in.npz", "--json", "report.json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout and "output0" in result.stdout
    report = json.loads((work / "report.json").read_text())
    for key in ("passed", "max_abs_err", "max_rel_err", "per_output", "tolerance", "device", "versions"):
        assert key in report
    assert report["passed"] is True
    assert report["max_abs_err"] < 1e-5
    assert report["tolerance"] == {"atol": 1e-5, "rtol": 1e-4, "floor_factor": 3.0}
    assert report["device"] == "cpu"
    assert report["per_output"][0]["shape"] == [2, 3]
    assert {"torch", "keras", "xlate"} <= set(report["versions"])
    assert report["files"] == {"source": "net.pt2", "target": "twin.keras"}


def test_check_exits_1_when_one_weight_is_changed(work):
    import keras

    twin = keras.saving.load_model(work / "twin.keras")
    kernel, bias = twin.layers[2].get_weights()
    bias[0] += 1e-2  # one weight
    twin.layers[2].set_weights([kernel, bias])
    twin.save(work / "tampered.keras")
    result = run_xlate("check", "net.pth", "tampered.keras", "--model-class", "mynet:Net", "--json", "bad.json",
                   cwd=work)
    assert result.returncode == 1, result.stderr
    assert "FAIL" in result.stdout
    report = json.loads((work / "bad.json").read_text())
    assert report["passed"] is False
    assert report["max_abs_err"] == pytest.approx(1e-2, rel=1e-3)


def test_torch2tf_converts_a_pt2_with_the_parity_gate_then_check_and_the_tampered_copy(work):
    """The main path: .pt2 (a conv net, NCHW) -> .keras; the written file passes `check`, and a copy
    with one weight changed fails it."""
    result = run_xlate("torch2tf", "conv.pt2", "-o", "conv.keras", "--json", "conv.json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout and "wrote conv.keras" in result.stdout
    assert json.loads((work / "conv.json").read_text())["passed"] is True
    assert not [p for p in work.iterdir() if "xlate-tmp" in p.name]

    import keras

    import xlate.keras_layers  # noqa: F401 - custom layers the converter may use

    model = keras.saving.load_model(work / "conv.keras")
    layer = next(lyr for lyr in model.layers if lyr.weights)
    weights = layer.get_weights()
    weights[0].flat[0] += 0.05
    layer.set_weights(weights)
    model.save(work / "conv_tampered.keras")
    bad = run_xlate("check", "conv.pt2", "conv_tampered.keras", cwd=work)
    assert bad.returncode == 1, bad.stderr
    assert "FAIL" in bad.stdout


def test_existing_output_needs_force(work):
    (work / "exists.keras").write_bytes(b"keep me")
    before = listing(work)
    refused = run_xlate("torch2tf", "net.pt2", "-o", "exists.keras", cwd=work)
    assert_bad_input(refused, says="already exists", before=before, folder=work)
    assert (work / "exists.keras").read_bytes() == b"keep me"
    forced = run_xlate("torch2tf", "net.pt2", "-o", "exists.keras", "--force", cwd=work)
    assert forced.returncode == 0, forced.stderr
    assert zipfile.is_zipfile(work / "exists.keras")


def test_a_failed_parity_gate_exits_1_and_writes_nothing(work):
    # tolerance 0: float32 through tanh in two frameworks is not bit-identical, so the gate fails
    # (--floor-factor 0: atol/rtol alone; the rounding floor would rightly pass this exact conversion)
    before = listing(work)
    result = run_xlate("torch2tf", "net.pt2", "-o", "strict.keras", "--atol", "0", "--rtol", "0",
                       "--floor-factor", "0", "--report", "strict.html", cwd=work)
    assert result.returncode == 1, result.stderr
    assert "FAIL" in result.stdout
    assert "parity check failed" in result.stderr and "Traceback" not in result.stderr
    assert listing(work) == before | {"strict.html"}  # the picture of the failure, and no model
    assert "<html" in (work / "strict.html").read_text().lower()


# --- bad input: each a one-line cause and a hint, exit 2, nothing written --------------------------


def _make_bad_files(folder: Path) -> None:
    (folder / "empty.pth").write_bytes(b"")
    good = (folder / "net.pth").read_bytes()
    (folder / "truncated.pth").write_bytes(good[: len(good) // 3])
    (folder / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    with zipfile.ZipFile(folder / "garbage.keras", "w") as z:
        z.writestr("junk.bin", np.random.default_rng(1).bytes(512))
    (folder / "net.txt").write_bytes(good)


BAD_CASES = [
    # (id, args, what the error line says)
    ("empty-file", ["torch2tf", "empty.pth", "-o", "out.keras"], "empty"),
    ("truncated-pth", ["torch2tf", "truncated.pth", "-o", "out.keras", "--model-class", "mynet:Net"], "truncated"),
    ("random-bytes-pth", ["torch2tf", "random.pth", "-o", "out.keras"], "not a PyTorch file"),
    ("keras-zip-of-garbage", ["tf2torch", "garbage.keras", "-o", "outdir"], "not a Keras model"),
    ("wrong-extension", ["torch2tf", "net.txt", "-o", "out.keras"], "unknown model file type"),
    ("keras-to-torch2tf", ["torch2tf", "twin.keras", "-o", "out.keras"], "not a PyTorch one"),
    ("pth-to-tf2torch", ["tf2torch", "net.pth", "-o", "outdir"], "not a Keras/TensorFlow one"),
    ("state-dict-without-class", ["torch2tf", "net.pth", "-o", "out.keras", "--input-shape", "2,6"],
     "needs the model's class"),
    ("whole-pickle-without-trust", ["torch2tf", "net_full.pth", "-o", "out.keras", "--input-shape", "2,6"],
     "pickled model"),
    ("model-class-not-importable", ["torch2tf", "net.pth", "-o", "out.keras", "--model-class", "nosuch:Net",
                                    "--input-shape", "2,6"], "cannot import"),
    ("model-class-missing-class", ["torch2tf", "net.pth", "-o", "out.keras", "--model-class", "mynet:Nope",
                                   "--input-shape", "2,6"], "has no 'Nope'"),
    ("model-class-needs-args", ["torch2tf", "net.pth", "-o", "out.keras", "--model-class", "mynet:NeedsArgs",
                                "--input-shape", "2,6"], "NeedsArgs() failed"),
    ("weights-do-not-fit-class", ["torch2tf", "net.pth", "-o", "out.keras", "--model-class", "mynet:ConvNet",
                                  "--input-shape", "2,6"], "do not fit"),
    ("input-shape-malformed", ["torch2tf", "net.pth", "-o", "out.keras", "--model-class", "mynet:Net",
                               "--input-shape", "2,six"], "not a shape"),
    ("missing-file", ["torch2tf", "nowhere.pt2", "-o", "out.keras"], "does not exist"),
    ("unknown-output-extension", ["torch2tf", "net.pt2", "-o", "out.onnx"], "cannot tell the output format"),
    ("tf2torch-output-is-a-file", ["tf2torch", "twin.keras", "-o", "out.pt"], "writes a folder"),
    ("check-same-framework", ["check", "net.pt2", "net_ts.pt"], "both PyTorch"),
]


@pytest.mark.parametrize("args, says", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input_gives_one_line_and_a_hint(work, args, says):
    if not (work / "empty.pth").exists():
        _make_bad_files(work)
    before = listing(work)
    assert_bad_input(run_xlate(*args, cwd=work), says=says, before=before, folder=work)


def test_inputs_npz_that_does_not_fit_the_model(work):
    before = listing(work)
    result = run_xlate("check", "net.pt2", "twin.keras", "--inputs", "in_wrong.npz", cwd=work)
    assert_bad_input(result, says="shape (2, 7)", before=before, folder=work)


def test_debug_shows_the_traceback(work):
    result = run_xlate("--debug", "torch2tf", "nowhere.pt2", "-o", "out.keras", cwd=work)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "BadInputError" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the gpu-marked tests cover --device cuda")
def test_device_cuda_without_a_gpu_is_bad_input(work):
    before = listing(work)
    result = run_xlate("check", "net.pt2", "twin.keras", "--device", "cuda", cwd=work)
    assert_bad_input(result, says="no CUDA device", before=before, folder=work)
