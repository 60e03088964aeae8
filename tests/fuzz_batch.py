"""Load many (damaged) model files in one process, as ``xlate`` would, and say how each went.

``python -m tests.fuzz_batch MANIFEST`` reads JSON lines (path, format, load_args; see
``fuzzcorpus.manifest``) and prints one JSON line per file before and after loading it:
``{"i": 3, "start": true}`` then ``{"i": 3, "outcome": "ok"|"error"|"foreign", ...}``. A file that
never reports back hung (or killed the process); ``run_batch`` restarts the worker after it, so
one bad file costs one timeout, not the batch. One process imports torch and TensorFlow once
for hundreds of files, which is what keeps the CI corpus to a couple of minutes.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_one(entry: dict):
    from xlate import load

    fmt, path, args = entry["format"], entry["path"], entry["load_args"]
    if fmt.startswith("inputs."):
        return load.load_inputs(path)
    if fmt == "onnx":
        return _load_onnx(path)
    return load.load_model(path, **args)


def _load_onnx(path):
    """The ONNX checks xlate runs before onnx.load, then what a loader builds from the file."""
    import onnx

    from xlate.onnx_torch import OnnxGraphModule
    from xlate.validate import validate_model

    validate_model(path, "onnx")
    return OnnxGraphModule(onnx.load(str(path)))


def worker(manifest: Path, skip: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from xlate.errors import XlateError

    entries = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
    cwd = os.getcwd()
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if i < skip:
            continue
        print(json.dumps({"i": i, "start": True}), flush=True)
        start = time.perf_counter()
        result = {"i": i}
        try:
            _load_one(entry)
            result["outcome"] = "ok"
        except XlateError as e:
            lines = str(e).splitlines()
            result.update(outcome="error", code=e.exit_code, lines=len(lines), message=lines[0] if lines else "",
                          type=type(e).__name__)
        except Exception as e:  # noqa: BLE001 - what the fuzzing looks for: a foreign exception
            result.update(outcome="foreign", type=type(e).__name__, message=" ".join(str(e).split())[:300])
        os.chdir(cwd)  # a loader must not leave the process elsewhere
        result["seconds"] = round(time.perf_counter() - start, 3)
        result["first"] = entry["format"] not in seen  # its time includes importing this format's framework
        seen.add(entry["format"])
        print(json.dumps(result), flush=True)


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run_worker(manifest: Path, skip: int, results: dict, *, cwd, env, per_file_s, first_file_s, max_rss_mib) -> int:
    """One worker process from entry ``skip`` on; returns where the next worker starts."""
    with tempfile.TemporaryFile("w+") as errors:  # a pipe could fill up with TensorFlow's logging and stall
        proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz_batch", str(manifest), str(skip)], cwd=cwd,
                                env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
        current, started, first = None, time.monotonic(), True
        try:
            while True:
                try:
                    line = lines.get(timeout=0.05)
                except queue.Empty:
                    line = ""
                if line is None:  # the worker is gone: done, or it died on the current file
                    proc.wait()
                    if current is None:
                        return sys.maxsize
                    errors.seek(0)
                    results[current] = {"i": current, "outcome": "died", "code": proc.returncode,
                                        "stderr": errors.read()[-400:]}
                    return current + 1
                if line:
                    msg = json.loads(line)
                    if msg.get("start"):
                        current, started = msg["i"], time.monotonic()
                    else:
                        results[msg["i"]], current, first = msg, None, False
                    continue
                over = time.monotonic() - started > (first_file_s if first else per_file_s)
                rss = _rss_mib(proc.pid)
                if current is not None and (over or rss > max_rss_mib):
                    results[current] = {"i": current, "outcome": "hang" if over else "memory",
                                        "seconds": round(time.monotonic() - started, 1), "rss_mib": round(rss)}
                    return current + 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def run_batch(manifest: Path, count: int, *, cwd: Path, per_file_s: float = 30.0, first_file_s: float = 180.0,
              max_rss_mib: float = 8192.0, env: dict | None = None) -> list[dict]:
    """Run the worker over ``manifest`` (``count`` entries); a file that takes longer than
    ``per_file_s`` (``first_file_s`` for a worker's first, which imports the frameworks) or grows the
    process beyond ``max_rss_mib`` is recorded as "hang"/"memory" and a new worker goes on after it.
    A worker that dies on a file records "died" with its exit status."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), **(env or {})}
    results: dict[int, dict] = {}
    skip = 0
    while skip < count:
        skip = _run_worker(manifest, skip, results, cwd=cwd, env=env, per_file_s=per_file_s,
                           first_file_s=first_file_s, max_rss_mib=max_rss_mib)
    return [results.get(i, {"i": i, "outcome": "missing"}) for i in range(count)]


if __name__ == "__main__":
    worker(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
