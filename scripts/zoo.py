"""The real-model zoo: convert third-party models torch -> Keras, one model per process, and
write docs/zoo.md and docs/zoo.json.

    .venv-zoo/bin/python scripts/zoo.py run [--smoke] [--only REGEX] [--jobs N] [--timeout S]
    .venv-zoo/bin/python scripts/zoo.py one ENTRY_ID          (one model, JSON on stdout)
    .venv-zoo/bin/python scripts/zoo.py report                (docs/zoo.md from docs/zoo.json)
    .venv-zoo/bin/python scripts/zoo.py select-timm           (rewrite scripts/zoo_timm.json)

Each model is built with realistic random weights (scripts/zoo_catalog.py), converted with
``via="direct"`` from a batch-1 and from a batch-2 example, and judged by xlate's own parity gate
on two seeded inputs (the example and another draw) against the torch model's real outputs.
Per conversion it records the trace path, conversion seconds, peak memory, max abs error, the
output's scale, the float32 floor, which dimensions stayed dynamic, and a failure's one-line cause.
A failure that is not an XlateError is a crash: a bug in xlate.

``make zoo`` runs all of it; ``make zoo-smoke`` (part of ``make test``) runs the smoke subset and
fails when any of it does not pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / "docs" / "zoo.json"
SMOKE_RESULTS = ROOT / "build" / "zoo-smoke.json"  # the smoke run never rewrites the committed table
TABLE = ROOT / "docs" / "zoo.md"
BATCHES = (1, 2)

# at most 12 models across families, batch 1 and 2 each: CNNs, ViTs, a decoder LLM at 8 layers.
# (torchvision swin_t left the smoke set: with every size dynamic its conversion takes minutes on 2
# cores, too slow for CI; the full zoo still converts it)
SMOKE = ("torchvision/resnet18", "torchvision/mobilenet_v3_small", "torchvision/efficientnet_b0",
         "torchvision/shufflenet_v2_x0_5", "timm/levit_128s", "timm/convnext_zepto_rms", "timm/deit_tiny_patch16_224",
         "hf/bert", "hf/llama", "hf/qwen2", "hf/vit", "hf/whisper_encoder")


# --- one model, in its own process --------------------------------------------------------------

def run_one(entry_id: str) -> dict:
    import torch  # before TensorFlow: the other order segfaults in .venv-zoo
    import torchvision  # noqa: F401
    import zoo_catalog as catalog

    entry = next((e for e in catalog.entries(entry_id.split("/")[0]) if e.id == entry_id), None)
    if entry is None:
        raise SystemExit(f"unknown zoo entry {entry_id!r}")
    torch.set_num_threads(int(os.environ.get("ZOO_THREADS", "1")))
    row = {"id": entry.id, "family": entry.family, "kind": entry.kind}
    try:
        module, example = catalog.build(entry)
    except Exception as e:  # noqa: BLE001 - the model itself cannot be built here: not xlate's failure
        row.update(status="build-error", reason=_one_line(e))
        return row
    row["params"] = sum(p.numel() for p in module.parameters())
    _warm_up()
    row["machine_ms"] = machine_reference()
    row["conversions"] = [_convert_once(module, example, batch) for batch in BATCHES]
    row["status"] = next((c["status"] for c in row["conversions"] if c["status"] != "pass"), "pass")
    row["versions"] = _versions()
    return row


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("torch", "torchvision", "timm", "transformers", "tensorflow-cpu", "keras"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def machine_reference() -> float:
    """Milliseconds of a fixed pure-Python workload (best of 3), measured in each model process:
    conversion time is mostly interpreter time, so tables measured on different days (or
    machines) compare through it."""
    def work():
        d, total = {}, 0
        for i in range(200_000):
            d[i & 1023] = total
            total += len(str(i)) + d.get(i & 511, 0) % 7
        return total

    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def _warm_up() -> None:
    """Import TensorFlow/Keras and build one tiny model first, so that a model's conversion time
    is its own and not the frameworks' start-up."""
    import torch

    import xlate

    xlate.torch_to_keras(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()), (torch.randn(2, 4),),
                         via="direct")


def _convert_once(module, example, batch: int) -> dict:
    import resource

    import numpy as np
    import torch

    import xlate
    from xlate.errors import ConverterFailure, ParityError, UnsupportedOpError, XlateError
    from xlate.record import record_of

    inputs = [example(batch, 0), example(batch, 1)]
    out = {"batch": batch}
    rss_before = _rss_mb()
    start = time.perf_counter()
    try:
        keras_model = xlate.torch_to_keras(module, inputs[0], via="direct", check=False)
    except ConverterFailure as e:  # a converter bug, reported as an xlate error: still a bug to fix
        where = _where(e.__cause__) if e.__cause__ is not None else ""
        return {**out, "status": "converter-bug", "reason": _one_line(e), "where": where}
    except UnsupportedOpError as e:
        return {**out, "status": "unsupported", "reason": _one_line(e)}
    except XlateError as e:
        return {**out, "status": "xlate-error", "reason": f"{type(e).__name__}: {_one_line(e)}"}
    except Exception as e:  # noqa: BLE001 - a foreign exception is an xlate bug: recorded as a crash
        return {**out, "status": "crash", "reason": f"{type(e).__name__}: {_one_line(e)}", "where": _where(e)}
    out["seconds"] = round(time.perf_counter() - start, 3)
    out["peak_mb"] = round(max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before), 1)
    record = record_of(keras_model)
    out["trace"] = _trace_path(record)
    out["dynamic"] = _dynamic_dims(keras_model)
    out["keras_trainable"] = int(sum(np.prod(w.shape) for w in keras_model.trainable_weights))
    out["torch_trainable"] = int(sum(p.numel() for p in module.parameters() if p.requires_grad))
    with torch.no_grad():
        scale = max(float(np.abs(a).max()) for a in _flat_outputs(module(*inputs[0])))
    out["scale"] = scale
    start = time.perf_counter()
    try:
        report = xlate.check_parity(module, keras_model, [tuple(t.numpy() for t in i) for i in inputs])
    except XlateError as e:
        return {**out, "status": "xlate-error", "reason": f"parity check: {type(e).__name__}: {_one_line(e)}"}
    except Exception as e:  # noqa: BLE001
        return {**out, "status": "crash", "reason": f"parity check: {type(e).__name__}: {_one_line(e)}"}
    out["gate_seconds"] = round(time.perf_counter() - start, 3)
    out.update(_parity_figures(report))
    out["status"] = "pass" if report.passed else "parity"
    if not report.passed:
        out["reason"] = _one_line(ParityError(report))
    return out


def _parity_figures(report) -> dict:
    """The gate's figures: max abs error, and (where the gate reports them) the source's own
    float32-vs-float64 floor and the converted model's distance from float64."""
    figures = {"max_abs": report.max_abs_err, "tolerance_pass": bool(report.tolerance_passed)}
    for key in ("floor", "target_vs_ref64"):
        values = [getattr(o, key) for o in report.per_output if getattr(o, key, None) is not None]
        if values:
            figures[key] = max(values)
    rules = [o.rule for o in report.per_output]
    # the rule that decided the whole conversion: failed anywhere, else the floor if any output needed it
    figures["rule"] = "failed" if "failed" in rules else "floor" if "floor" in rules else "tolerance"
    return figures


def _trace_path(record) -> str:
    # "traced by torch.export (the fx fast path does not apply: torch.fx: ...)" is an export
    traced = next((n for n in record.notes if n.startswith("traced by ")), "") if record else ""
    return "fx" if traced.startswith("traced by torch.fx") else "export" if "torch.export" in traced else "?"


def _dynamic_dims(keras_model) -> list:
    """Per input, the axes left free (None) in the Keras model's input shape."""
    return [[i for i, d in enumerate(t.shape) if d is None] for t in keras_model.inputs]


def _flat_outputs(out):
    import torch

    if isinstance(out, torch.Tensor):
        return [out.detach().numpy()]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        out = list(out.values()) if isinstance(out, dict) else list(out.to_tuple())
    if isinstance(out, (list, tuple)):
        return [a for o in out for a in _flat_outputs(o)]
    return []


def _where(e: BaseException) -> str:
    """The innermost xlate frame of a crash (file:line function), to start debugging from."""
    import traceback

    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/xlate/" in f.filename]
    f = frames[-1] if frames else traceback.extract_tb(e.__traceback__)[-1]
    return f"{f.filename.rsplit('/xlate/', 1)[-1]}:{f.lineno} {f.name}"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _one_line(e: BaseException, limit: int = 240) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- the whole zoo -------------------------------------------------------------------------------

def run_all(ids: list[str], jobs: int, timeout: float, resume: bool, path: Path = RESULTS) -> list[dict]:
    """Run ``ids`` and store their rows in ``path``, next to the rows of other models already there."""
    stored = {r["id"]: r for r in _load(path)}
    todo = [i for i in ids if not (resume and i in stored)]
    print(f"zoo: {len(ids)} models, {len(todo)} to run, {jobs} at a time, {timeout:.0f} s each", flush=True)
    results = dict(stored)
    commit = _commit()

    def one(entry_id):
        start = time.perf_counter()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0"}
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__)), "one", entry_id], check=False,
                                  capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else {
                "id": entry_id, "status": _no_row_status(proc.returncode),
                "reason": f"process exited {proc.returncode}: {_one_line(proc.stderr[-600:] or 'no output')}"}
        except subprocess.TimeoutExpired:
            row = {"id": entry_id, "status": "timeout", "reason": f"no answer within {timeout:.0f} s"}
        row["wall_seconds"] = round(time.perf_counter() - start, 1)
        row["commit"] = commit  # rows of several runs can share docs/zoo.json: each names its code
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for k, row in enumerate(pool.map(one, todo), 1):
            results[row["id"]] = row
            print(f"[{k}/{len(todo)}] {row['id']}: {row['status']} {row.get('reason', '')[:150]}", flush=True)
            _save(list(results.values()), path)
    return [results[i] for i in ids]


def _commit() -> str:
    """The xlate commit being measured (with '+dirty' for uncommitted changes)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # the zoo's own results (docs/, its BENCHMARKS.md section) do not count as a change to the code measured
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)docs", ":(top,exclude)BENCHMARKS.md") else "")


def _no_row_status(returncode: int) -> str:
    """A model process that printed no row: killed by a signal (SIGKILL here is the out-of-memory
    killer: the conversion needed more memory than the machine has), else a crash of its own."""
    return "killed" if returncode < 0 else "crash"


def _load(path: Path = RESULTS) -> list[dict]:
    rows = json.loads(path.read_text())["models"] if path.exists() else []
    for r in rows:  # rows written before "killed" was told apart from "crash"
        if r["status"] == "crash" and re.match(r"process exited -\d+", r.get("reason", "")):
            r["status"] = "killed"
    return rows


def _save(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"models": rows}, indent=1) + "\n")
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--smoke", action="store_true", help="only the CI smoke subset; exit 1 unless all pass")
    run.add_argument("--only", help="regular expression on entry ids")
    run.add_argument("--jobs", type=int, default=1)
    run.add_argument("--timeout", type=float, default=600)
    run.add_argument("--resume", action="store_true", help="keep results already in docs/zoo.json")
    one = sub.add_parser("one")
    one.add_argument("entry")
    sub.add_parser("report")
    sub.add_parser("select-timm")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.cmd == "one":
        print(json.dumps(run_one(args.entry), default=float))
        return 0
    import zoo_catalog as catalog
    import zoo_report

    if args.cmd == "select-timm":
        import torch

        data = catalog.select_timm()
        catalog.TIMM_SELECTION.write_text(json.dumps(data, indent=1) + "\n")
        print(f"{len(data['models'])} timm models from {len({m['module'] for m in data['models']})} modules")
        return 0
    if args.cmd == "report":
        zoo_report.write(_load(), TABLE)
        zoo_report.write_benchmarks(_load(), ROOT / "BENCHMARKS.md")
        return 0
    import torch  # noqa: F401 - before TensorFlow (the catalog imports torchvision)
    import torchvision  # noqa: F401

    ids = [e.id for e in catalog.entries()]
    if args.cmd == "list":
        print("\n".join(ids))
        return 0
    if args.smoke:
        ids = list(SMOKE)
    if args.only:
        ids = [i for i in ids if re.search(args.only, i)]
    rows = run_all(ids, args.jobs, args.timeout, args.resume, SMOKE_RESULTS if args.smoke else RESULTS)
    if args.smoke:
        failed = [r for r in rows if r["status"] != "pass"]
        for r in failed:
            print(f"FAIL {r['id']}: {r['status']}: {r.get('reason') or _first_reason(r)}")
        print(f"zoo smoke: {len(rows) - len(failed)}/{len(rows)} pass")
        return 1 if failed else 0
    known = set(catalog_ids := [e.id for e in catalog.entries()])
    rows = [r for r in _load() if r["id"] in known]  # a model dropped from the catalog leaves the table
    rows.sort(key=lambda r: catalog_ids.index(r["id"]))
    zoo_report.write(rows, TABLE)
    zoo_report.write_benchmarks(rows, ROOT / "BENCHMARKS.md")
    print(zoo_report.summary_line(rows))
    return 0


def _first_reason(row) -> str:
    return next((c.get("reason", "") for c in row.get("conversions", []) if c.get("status") != "pass"), "")


if __name__ == "__main__":
    sys.exit(main())
