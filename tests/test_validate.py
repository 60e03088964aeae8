"""The container checks of xlate.validate and the bounds of xlate.bound, one damage pattern each.

Each test builds a small valid file, checks that it passes, then damages it the way the pattern
says and checks the one-line ``DamagedFileError``. The fuzzing of every format (test_fuzz.py)
covers the same checks at random; these name what each check is for.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xlate.bound import deadline, run_probe
from xlate.errors import BadInputError, DamagedFileError
from xlate.validate import validate_inputs, validate_model
from xlate.validate.arrays import check_safetensors
from xlate.validate.hdf5 import _PROBE, check_hdf5
from xlate.validate.torchpickle import check_legacy_pickle
from xlate.validate.zips import check_zip

ROOT = Path(__file__).resolve().parents[1]


def _one_line(error: pytest.ExceptionInfo, says: str) -> None:
    assert says.lower() in str(error.value).lower(), str(error.value)
    assert "\n" not in str(error.value) and error.value.hint and error.value.exit_code == 2


# --- HDF5 ----------------------------------------------------------------------------------------


@pytest.fixture
def h5_file(tmp_path) -> Path:
    """Attributes as Keras writes them (variable-length strings, in a global heap) and one dataset."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        f.attrs["backend"] = "tensorflow"
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [b"dense"]
        group.create_dataset("kernel", data=np.arange(123457, dtype="float32"), chunks=(4096,))
    return path


def _zero_first_heap_object(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"GCOL")
    assert at > 0 and data[at + 4] == 1
    data[at + 16:at + 32] = bytes(16)  # the first object's header: index 0, size 0
    path.write_bytes(bytes(data))


def test_a_zero_size_heap_object_is_refused_before_hdf5_reads_it(h5_file):
    check_hdf5(h5_file)  # the valid file passes both steps, the probe included
    _zero_first_heap_object(h5_file)
    start = time.perf_counter()
    with pytest.raises(DamagedFileError) as e:
        check_hdf5(h5_file, probe=False)  # from the bytes alone, no HDF5 library involved
    _one_line(e, "would loop forever")
    assert time.perf_counter() - start < 60  # generous: the check is a byte scan (microseconds here)


def test_the_probe_bounds_what_hdf5_does_with_it(h5_file):
    """The same file straight to the h5py probe: HDF5 really spins on it, and the bound answers."""
    _zero_first_heap_object(h5_file)
    with pytest.raises(DamagedFileError) as e:
        run_probe(_PROBE, h5_file, what="the HDF5 library", seconds=3)
    _one_line(e, "could not be read within 3 s; it is probably damaged")
    assert "XLATE_PROBE_TIMEOUT" in e.value.hint


def test_hdf5_cut_short_and_datasets_larger_than_the_file(h5_file, tmp_path):
    data = h5_file.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DamagedFileError) as e:
        check_hdf5(tmp_path / "cut.h5")
    _one_line(e, "cut short")
    dims = (123457).to_bytes(8, "little")  # the dataset's size and maximum size in its dataspace
    assert data.count(dims) == 2
    (tmp_path / "big.h5").write_bytes(data.replace(dims, (10**12).to_bytes(8, "little")))
    with pytest.raises(DamagedFileError) as e:  # without the check, reading it asks numpy for 4 TB
        check_hdf5(tmp_path / "big.h5")
    _one_line(e, "more than the file's")


# --- zips ----------------------------------------------------------------------------------------


def _keras_like_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3"}))
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "x" * 40}}))
        z.writestr("model.weights.h5", bytes(range(256)) * 8)


def test_zip_members_must_match_their_crc_and_sizes(tmp_path):
    path = tmp_path / "m.keras"
    _keras_like_zip(path)
    validate_model(path, "keras")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("model.weights.h5")
    at = info.header_offset + 30 + len(info.filename) + 100  # a byte inside the member's data
    data[at] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as e:
        check_zip(tmp_path / "flipped.keras", "a Keras .keras archive")
    _one_line(e, "Bad CRC-32 for file 'model.weights.h5'")
    # the central directory claims a bigger uncompressed size than the member stores
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(info.filename)] != info.filename.encode():
        central = data.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into("<I", data, central + 24, 10**9)
    (tmp_path / "sizes.keras").write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as e:
        check_zip(tmp_path / "sizes.keras", "a Keras .keras archive")
    _one_line(e, "claims 1,000,000,000 bytes")


# --- tensors -------------------------------------------------------------------------------------


def test_safetensors_header_length_and_tensor_ranges(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": np.ones((2, 3), "float32"), "b": np.zeros(4, "int64")}, path)
    check_safetensors(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 0, len(data) * 10)
    (tmp_path / "long.safetensors").write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as e:
        check_safetensors(tmp_path / "long.safetensors")
    _one_line(e, "header claims")
    data = path.read_bytes()
    (tmp_path / "shape.safetensors").write_bytes(data.replace(b"[2,3]", b"[9,3]"))
    with pytest.raises(DamagedFileError) as e:
        check_safetensors(tmp_path / "shape.safetensors")
    _one_line(e, "needs 108 bytes")


def test_npy_and_npz_headers_must_fit_their_data(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 6), "float32"))
    np.savez(tmp_path / "x.npz", np.ones((2, 6), "float32"))
    validate_inputs(tmp_path / "x.npy")
    validate_inputs(tmp_path / "x.npz")
    data = (tmp_path / "x.npy").read_bytes()
    assert b"(2, 6)" in data
    # the shape grows into the header's padding, so the header keeps its length and still parses
    (tmp_path / "big.npy").write_bytes(data.replace(b"(2, 6), }        ", b"(2, 600000000), }"))
    with pytest.raises(DamagedFileError) as e:  # np.load would allocate what the header claims first
        validate_inputs(tmp_path / "big.npy")
    _one_line(e, "bytes of data follow")
    with pytest.raises(BadInputError, match="not a readable"):
        (tmp_path / "text.npz").write_text("a,b\n1,2\n")
        validate_inputs(tmp_path / "text.npz")


def test_legacy_torch_pickle_element_counts_must_fit_the_file(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "old.pth"
    torch.save({"w": torch.ones(12345)}, path, _use_new_zipfile_serialization=False)
    check_legacy_pickle(path)
    validate_model(path, "torch.state_dict")
    data = path.read_bytes()
    count = b"M" + struct.pack("<H", 12345)  # BININT2 12345: the tensor's size and its storage's element count
    assert data.count(count) == 2
    damaged = tmp_path / "count.pth"
    damaged.write_bytes(data.replace(count, b"J" + struct.pack("<i", 10**9)))
    with pytest.raises(DamagedFileError) as e:  # torch would allocate 4 GB for it before reading a byte
        check_legacy_pickle(damaged)
    _one_line(e, "claims 1,000,000,000 elements")
    (tmp_path / "cut.pth").write_bytes(data[:200])
    with pytest.raises(DamagedFileError) as e:
        check_legacy_pickle(tmp_path / "cut.pth")
    _one_line(e, "cut short")


def test_onnx_initializers_must_hold_their_shape(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((3, 4), "float32"), name="w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    validate_model(tmp_path / "m.onnx", "onnx")
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:20]
    onnx.save(model, str(tmp_path / "short.onnx"))
    with pytest.raises(DamagedFileError) as e:
        validate_model(tmp_path / "short.onnx", "onnx")
    _one_line(e, "raw_data size (20 bytes) is too small")  # the ONNX checker's own words
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "ext.onnx"),
              save_as_external_data=True, location="ext.data", size_threshold=0)
    validate_model(tmp_path / "ext.onnx", "onnx")
    with open(tmp_path / "ext.data", "r+b") as f:
        f.truncate(20)
    with pytest.raises(DamagedFileError) as e:
        validate_model(tmp_path / "ext.onnx", "onnx")
    _one_line(e, "keeps its data up to byte 48 of ext.data, which has 20")
    (tmp_path / "cut.onnx").write_bytes((tmp_path / "m.onnx").read_bytes()[:40])
    with pytest.raises(DamagedFileError) as e:
        validate_model(tmp_path / "cut.onnx", "onnx")
    _one_line(e, "not a readable ONNX protobuf")


# --- bounds --------------------------------------------------------------------------------------


def test_a_probe_that_crashes_or_says_nothing_is_a_damaged_file(tmp_path):
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    with pytest.raises(DamagedFileError) as e:
        run_probe(crash, crash, what="the HDF5 library", seconds=30)
    _one_line(e, "crashed the HDF5 library (SIGSEGV)")
    greedy = tmp_path / "greedy.py"
    greedy.write_text("import resource, sys\nm = int(sys.argv[2])\nresource.setrlimit(resource.RLIMIT_AS, (m, m))\n"
                      "x = bytearray(4 * m)\n")
    with pytest.raises(DamagedFileError) as e:  # the address-space limit turns a runaway allocation into an error
        run_probe(greedy, greedy, what="the HDF5 library", seconds=30, memory=512 * 2**20)
    _one_line(e, "MemoryError")


def test_a_load_past_its_deadline_is_a_damaged_file(tmp_path):
    path = tmp_path / "net.keras"
    start = time.perf_counter()
    with pytest.raises(DamagedFileError) as e, deadline(path, 0.5):
        while True:  # a loader looping in Python
            pass
    _one_line(e, "could not be read within 0.5 s; it is probably damaged")
    assert time.perf_counter() - start < 30


HARD_EXIT = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from xlate.bound import allow_hard_exit, deadline
    from xlate.save import atomic_path

    allow_hard_exit()
    with atomic_path(Path(sys.argv[1]) / "sub" / "out.keras") as tmp:
        tmp.write_text("half written")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # as if stuck in C: no signal gets through
        with deadline(Path(sys.argv[1]) / "net.h5", 0.5):
            time.sleep(120)  # releases the GIL, so the watchdog thread can run
""")


def test_past_the_grace_period_the_command_line_exits_2_and_removes_temporaries(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", HARD_EXIT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"error: {tmp_path / 'net.h5'}: the file could not be read within 0.5 s; it is probably damaged"
    assert lines[1].startswith("hint: ") and len(lines) == 2
    assert list(tmp_path.iterdir()) == []  # the temporary output and the parent made for it are gone


@pytest.mark.parametrize("field", ["utf8-name", "version-needed"])
def test_damaged_zip_directories_are_named_by_detection(tmp_path, field):
    """Two fields of a zip's central directory that made zipfile raise what detect_format did not
    catch (UnicodeDecodeError, NotImplementedError), found by the fuzzing."""
    from xlate.load import detect_format

    path = tmp_path / "net.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("net/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("net/version", b"3\n")
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    if field == "utf8-name":
        data[at + 9] |= 0x08  # the UTF-8 flag ...
        data[at + 46] ^= 0x80  # ... on a name that is not UTF-8 any more
    else:
        struct.pack_into("<H", data, at + 6, 203)  # "version needed to extract": 20.3
    path.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="damaged or truncated zip archive") as e:
        detect_format(path)
    assert "\n" not in str(e.value)


def test_an_npz_without_arrays_says_so(tmp_path):
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(BadInputError, match="holds no arrays"):
        validate_inputs(tmp_path / "empty.npz")
