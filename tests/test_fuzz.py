"""Damaged copies of small valid files of every input format, through ``load`` and the real executable.

The fixed seed corpus of CI: ``CORPUS_SEED`` gives the same damaged files on every run (a failure
names the file and the damage, e.g. ``net-20251-3.h5 zero@2201+2096``). Most files go through
``load`` in one process (tests/fuzz_batch.py), a few through ``xlate`` itself. The contract: a
clean answer (loaded, or a one-line ``XlateError`` with exit code 2), never a hang, a crash or a
foreign exception; through the executable, exit 2 (or a clean 0/1 where the damage left a valid
file) with one ``error:`` line, no traceback and nothing left behind. ``make fuzz`` runs the same
with more files (scripts/fuzz.py).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.fuzz_batch import run_batch
from tests.fuzz_cli import listing, problems, run_case
from tests.fuzzcorpus import SEED_BY_NAME, Damaged, build_seeds, damaged, manifest

pytest.importorskip("torch")
pytest.importorskip("keras")
pytestmark = pytest.mark.slow

CORPUS_SEED = 20251
PER_SEED = 8
SWAPS = 12


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return build_seeds(tmp_path_factory.mktemp("seeds"))


def test_the_ci_corpus_loads_cleanly_in_one_process(seeds, tmp_path):
    items = damaged(seeds, tmp_path / "damaged", seed=CORPUS_SEED, per_seed=PER_SEED, swaps=SWAPS)
    (tmp_path / "manifest.jsonl").write_text(manifest(items))
    before = listing(seeds)
    results = run_batch(tmp_path / "manifest.jsonl", len(items), cwd=seeds, per_file_s=30)
    bad = [f"{d.path.name} ({d.how}): {r}" for d, r in zip(items, results)
           if r["outcome"] not in ("ok", "error") or (r["outcome"] == "error" and (r["code"], r["lines"]) != (2, 1))]
    assert not bad, "\n".join(bad)
    assert {d.seed.name for d in items} == set(SEED_BY_NAME)  # every format was damaged
    assert sum(r["outcome"] == "error" for r in results) > len(items) // 2  # the damage was seen, mostly
    assert listing(seeds) == before  # loading wrote nothing beside the seeds


def _issue_file(seeds: Path, folder: Path) -> Path:
    """The issue's recipe on its model (Conv2D, Flatten, Dense saved with model.save("net.h5")): a tenth
    of the file zeroed from a random offset in its first half, at the first offset that makes HDF5 spin."""
    from xlate.validate.hdf5 import check_hdf5

    data = (seeds / "net.h5").read_bytes()
    rng = random.Random(0)
    for _ in range(200):
        start = rng.randrange(len(data) // 2)
        damaged_bytes = bytearray(data)
        damaged_bytes[start:start + len(data) // 10] = bytes(len(damaged_bytes[start:start + len(data) // 10]))
        path = folder / "net.h5"
        path.write_bytes(bytes(damaged_bytes))
        try:
            check_hdf5(path, probe=False)
        except Exception as e:  # noqa: BLE001 - looking for the heap loop only
            if "loop forever" in str(e):
                return path
    raise AssertionError("no offset in 200 hit the global heap")


def test_the_issue_reproduction_answers_at_once_through_the_executable(seeds, tmp_path):
    from xlate.bound import run_probe
    from xlate.errors import DamagedFileError
    from xlate.validate.hdf5 import _PROBE

    path = _issue_file(seeds, tmp_path)
    with pytest.raises(DamagedFileError, match="within 3 s"):  # HDF5 really spins on this file
        run_probe(_PROBE, path, what="the HDF5 library", seconds=3)
    item = Damaged(path, SEED_BY_NAME["net.h5"], "zero-tenth")
    for variant in range(3):  # tf2torch, check, inspect
        result = run_case(item, seeds, tmp_path / f"run{variant}", variant, timeout=180)
        assert result.code == 2, result.stderr
        assert not problems(result), problems(result)
        assert "loop forever" in result.error, result.stderr


def _utf8_flag_on_a_latin_name(data: bytes) -> bytes:
    """Two flipped bits in a zip's central directory: the UTF-8 flag set on a name that is not UTF-8."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    out[at + 9] |= 0x08  # general purpose flag bit 11
    out[at + 46] ^= 0x80  # the first byte of the name
    return bytes(out)


# damaged files through the executable, one per family of loader; before validation, the first
# three were a segfault, a UnicodeDecodeError and an IndexError from torch's legacy reader
CLI_CASES = [
    ("net.tflite", lambda d: d[: len(d) * 2 // 3], 0),
    ("net_ts.pt", _utf8_flag_on_a_latin_name, 0),
    ("net_legacy.pth", lambda d: d[:16], 1),
    ("in.npz", lambda d: d[:100] + bytes(8) + d[108:], 0),
    ("net.pt2", lambda d: d[: len(d) // 2], 0),
]


@pytest.mark.parametrize(("seed_name", "damage", "variant"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_damaged_files_through_the_executable(seeds, tmp_path, seed_name, damage, variant):
    seed = SEED_BY_NAME[seed_name]
    stem, dot, ext = seed_name.partition(".")
    path = tmp_path / f"{stem}-damaged{dot}{ext}"
    path.write_bytes(damage((seeds / seed_name).read_bytes()))
    result = run_case(Damaged(path, seed, "fixed"), seeds, tmp_path / "run", variant, timeout=180)
    assert not problems(result), (problems(result), result.stderr)
    assert result.code == 2, result.stderr


def test_a_load_past_its_deadline_exits_2_through_the_executable(seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("XLATE_LOAD_TIMEOUT", "0.05")  # far too short for any load: the bound answers
    result = run_case(Damaged(seeds / "net.keras", SEED_BY_NAME["net.keras"], "none"), seeds, tmp_path, 0)
    assert result.code == 2, result.stderr
    assert not problems(result), problems(result)
    # problems() allows only TensorFlow's C++ start-up chatter and a progress line beside it
    assert result.error == "error: net.keras: the file could not be read within 0.05 s; it is probably damaged"


def test_tflite_indices_are_checked_before_the_interpreter_follows_them(seeds, tmp_path):
    import flatbuffers

    from xlate.errors import DamagedFileError
    from xlate.validate.tflite import _schema, check_tflite

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray((seeds / "net.tflite").read_bytes()), 0)
    model.subgraphs[0].tensors[0].buffer = len(model.buffers) + 7
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    (tmp_path / "bad.tflite").write_bytes(bytes(builder.Output()))
    with pytest.raises(DamagedFileError, match="refers to buffer"):
        check_tflite(tmp_path / "bad.tflite")
    check_tflite(seeds / "net.tflite")


def test_tflite_is_built_from_its_bytes_so_tflite_verifies_it(seeds, tmp_path):
    """A string length that points 2 GB past the end: the interpreter built from the path reads it
    and dies on SIGBUS; built from the bytes (as xlate.load does) TFLite's verifier refuses it."""
    import subprocess
    import sys

    from xlate.errors import BadInputError
    from xlate.load import load_model

    data = bytearray((seeds / "net.tflite").read_bytes())
    at = data.find(b"CONVERSION_METADATA")
    assert at > 4 and int.from_bytes(data[at - 4:at], "little") == len("CONVERSION_METADATA")
    data[at - 4:at] = (0x7FFFFFF0).to_bytes(4, "little")
    path = tmp_path / "meta.tflite"
    path.write_bytes(bytes(data))
    by_path = ("import warnings; warnings.simplefilter('ignore')\n"
               "from tensorflow.lite.python.interpreter import Interpreter\n"
               f"Interpreter(model_path={str(path)!r}).allocate_tensors()\n")
    crashed = subprocess.run([sys.executable, "-c", by_path], capture_output=True, text=True, timeout=300, check=False)
    assert crashed.returncode < 0, crashed.stderr[-500:]  # killed by a signal
    with pytest.raises(BadInputError, match="not a valid Flatbuffer"):
        load_model(path)
