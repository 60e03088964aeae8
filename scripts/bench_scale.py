#!/usr/bin/env python
"""Large models both ways: conversion seconds and peak memory against parameter count.

Hugging Face Llama decoders built from a config with random weights (the issue's family: hidden
H, intermediate 4H, H/64 heads, H/256 key/value heads (grouped-query; one head at H=256, i.e.
multi-query), vocab 32000, tied embeddings), batch 2, sequence 16:

    10m   hidden 256,  4 layers  (12 M parameters)
    100m  hidden 1024, 8 layers  (154 M)
    600m  hidden 1536, 16 layers (597 M)
    1b    hidden 2048, 16 layers (1.04 B)

Each size runs in fresh processes, one at a time: torch -> Keras (``xlate.torch_to_keras``, parity
gate included) on the torch model, then Keras -> torch (``xlate.keras_to_torch``, gate included,
then ``save_torch_package`` writing model.py + model.safetensors) on that Keras model reloaded from
its saved folder in a new process. Peak memory is ``ru_maxrss`` above the resident size once the
source model is loaded (the high-water mark is reset there through /proc/self/clear_refs, so
building or loading the source does not count), divided by the source's weight bytes. Max abs
error is against a float64 run of the torch model (each module moved to float64 just while it
runs, so the reference costs no float64 copy of the model); "floor" is torch float32's own error
against that reference, the rounding any float32 result has.

Not a timed test: run it on a quiet machine (``make bench`` runs it; or alone):

    python scripts/bench_scale.py                    # every size that fits in the free memory
    python scripts/bench_scale.py --sizes 10m,100m   # some of them
    python scripts/bench_scale.py --write            # and rewrite its section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {"10m": (256, 4), "100m": (1024, 8), "600m": (1536, 16), "1b": (2048, 16)}
BATCH, SEQ, VOCAB = 2, 16, 32000
BEGIN, END = "<!-- bench_scale: begin -->", "<!-- bench_scale: end -->"


def llama(size: str):
    import torch
    import transformers

    hidden, layers = SIZES[size]
    config = transformers.LlamaConfig(
        hidden_size=hidden, num_hidden_layers=layers, intermediate_size=4 * hidden, num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 256), vocab_size=VOCAB, tie_word_embeddings=True, use_cache=False,
        max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def token_ids():
    import torch

    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))


# --- measuring ----------------------------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def start_frameworks() -> None:
    """Import and start torch, TensorFlow/Keras and xlate's converters before measuring: their own
    memory (about 1 GB) is not the conversion's."""
    import keras
    import torch

    import xlate.keras2torch.convert
    import xlate.parity
    import xlate.torch2keras.convert  # noqa: F401 - imported for its cost, before measuring

    keras.ops.convert_to_numpy(keras.ops.matmul(keras.ops.ones((8, 8)), keras.ops.ones((8, 8))))
    torch.ones(8, 8) @ torch.ones(8, 8)


def start_measuring() -> dict:
    """Reset the peak-RSS mark (Linux: clear_refs 5) and note where the measured part starts."""
    import gc
    import resource

    start_frameworks()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False  # the peak then includes loading the source: an upper bound
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"rss": rss(), "reset": reset, "wall": time.perf_counter(), "cpu": usage.ru_utime + usage.ru_stime}


def measured(start: dict, weight_bytes: int) -> dict:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss * 1024 - start["rss"]
    return {"seconds": time.perf_counter() - start["wall"], "cpu_seconds": usage.ru_utime + usage.ru_stime - start["cpu"],
            "peak_extra_bytes": peak, "peak_ratio": peak / weight_bytes, "peak_reset": start["reset"],
            "source_rss_bytes": start["rss"]}


def float64_logits(module, ids):
    """The module's output with every module computing in float64 while it runs (its weights moved
    there and back: float32 -> float64 -> float32 is exact), so no float64 copy of the model exists."""
    import torch

    def move(dtype):
        def hook(mod, *_):
            for p in mod.parameters(recurse=False):
                p.data = p.data.to(dtype)
        return hook

    handles = []
    for m in module.modules():
        if next(m.parameters(recurse=False), None) is not None:
            handles += [m.register_forward_pre_hook(move(torch.float64)), m.register_forward_hook(move(torch.float32))]
    try:
        with torch.no_grad():
            return module(ids).logits.numpy()
    finally:
        for h in handles:
            h.remove()


def keras_bytes(model) -> int:
    import numpy as np

    def itemsize(name: str) -> int:
        return 2 if name == "bfloat16" else np.dtype(name).itemsize

    return sum(int(np.prod(v.shape)) * itemsize(str(v.dtype)) for v in model.weights)


def _max_abs(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _parity_note(record) -> str:
    return next((n for n in (record.notes if record else []) if n.startswith("parity:")), "")


# --- the two directions (each in its own process) ------------------------------------------------


def child_t2k(size: str, work: Path) -> dict:
    import numpy as np
    import torch

    import xlate
    from xlate.record import record_of

    model, ids = llama(size), token_ids()
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    start = start_measuring()
    keras_model = xlate.torch_to_keras(model, (ids,))
    out = measured(start, weight_bytes)
    record = record_of(keras_model)
    out.update(direction="torch2keras", size=size, params=params, weight_bytes=weight_bytes,
               convert_seconds=record.seconds, parity=_parity_note(record),
               target_weight_bytes=keras_bytes(keras_model))
    keras_out = np.asarray(keras_model(ids.numpy()))
    with torch.no_grad():
        torch_out = model(ids).logits.numpy()
    reference = float64_logits(model, ids)
    np.save(work / "ids.npy", ids.numpy())
    np.save(work / "reference.npy", reference)
    out.update(max_abs_err=_max_abs(keras_out, reference), floor=_max_abs(torch_out, reference),
               torch_vs_keras=_max_abs(torch_out, keras_out))
    del model
    t = time.perf_counter()
    # unzipped: a .keras zip makes Keras hold the whole weights file in memory to write (and read) it
    keras_model.save(str(work / "keras_model"), zipped=False)
    out["keras_save_seconds"] = time.perf_counter() - t
    return out


def child_k2t(size: str, work: Path) -> dict:
    import keras
    import numpy as np
    import torch

    import xlate
    import xlate.keras_layers  # registers xlate's layers for load_model
    from xlate.record import record_of
    from xlate.save import save_torch_package

    t = time.perf_counter()
    keras_model = keras.saving.load_model(str(work / "keras_model"), compile=False)
    load_seconds = time.perf_counter() - t
    params = sum(int(np.prod(v.shape)) for v in keras_model.weights)
    weight_bytes = keras_bytes(keras_model)
    ids = np.load(work / "ids.npy")
    start = start_measuring()
    module = xlate.keras_to_torch(keras_model)
    record = record_of(module)
    converted = time.perf_counter() - start["wall"]
    save_torch_package(module, work / "torch_package", overwrite=True)
    out = measured(start, weight_bytes)
    out.update(direction="keras2torch", size=size, params=params, weight_bytes=weight_bytes, load_seconds=load_seconds,
               convert_seconds=record.seconds, convert_and_gate_seconds=converted, parity=_parity_note(record),
               safetensors_bytes=(work / "torch_package" / "model.safetensors").stat().st_size)
    reference = np.load(work / "reference.npy")
    with torch.no_grad():
        torch_out = module(torch.from_numpy(ids)).numpy()
    keras_out = np.asarray(keras_model(ids))
    out.update(max_abs_err=_max_abs(torch_out, reference), floor=_max_abs(keras_out, reference),
               torch_vs_keras=_max_abs(torch_out, keras_out))
    return out


# --- the driver -----------------------------------------------------------------------------------


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def needed_bytes(size: str) -> int:
    """An estimate of one direction's whole resident peak, from the 600m run: about 2.5x the float32
    weights (source, target with its untied LM head, transients) plus 1 GB for the frameworks, and
    a margin."""
    hidden, layers = SIZES[size]
    params = VOCAB * hidden + layers * (2 * hidden * hidden + 2 * hidden * (hidden // 4) + 12 * hidden * hidden)
    return int(2.5 * params * 4 + 1.2e9)


def _run_child(direction: str, size: str, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", direction, size, str(work)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode < 0:
        return {"direction": direction, "size": size,
                "error": f"killed by signal {-proc.returncode} (9: out of memory; see the machine's free memory)"}
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if not ln.startswith(("I0000", "WARNING"))]
        return {"direction": direction, "size": size, "error": " | ".join(tail[-3:]) or f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def run(sizes=tuple(SIZES)) -> list[dict]:
    rows = []
    for size in sizes:
        need, have = needed_bytes(size), _available_bytes()
        if need > have:
            msg = f"skipped: needs about {need / 1e9:.1f} GB, {have / 1e9:.1f} GB available"
            rows += [{"direction": d, "size": size, "error": msg} for d in ("torch2keras", "keras2torch")]
            print(f"{size}: {msg}", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix=f"xlate-scale-{size}-") as tmp:
            for direction in ("torch2keras", "keras2torch"):
                row = _run_child(direction, size, Path(tmp))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if "error" in row:
                    break
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["## Large models (scripts/bench_scale.py)", "",
           (f"Hugging Face Llama from a config, random weights, batch {BATCH}, sequence {SEQ}, one fresh process per "
            "direction. Keras -> torch starts from the converted model, saved and reloaded in a new process, and includes "
            "writing model.safetensors. Seconds: wall clock of the whole call (parity gate included), and its CPU time "
            "(the machine is shared: CPU seconds move less with load). Peak: ru_maxrss above the loaded source (the "
            "frameworks imported and started), in units of the source's weight bytes. Errors: max abs against torch "
            "run in float64; floor: the float32 source's own."),
           "", ("| model | params | direction | wall s | CPU s | convert s (no gate) | peak above source | "
                "max abs err vs float64 | float32 floor | gate |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        hidden, layers = SIZES[r["size"]]
        name = f"Llama {hidden}x{layers}"
        if "error" in r:
            out.append(f"| {name} | | {r['direction']} | {r['error']} | | | | | | |")
            continue
        peak = f"{r['peak_ratio']:.2f}x ({r['peak_extra_bytes'] / 1e9:.2f} GB for {r['weight_bytes'] / 1e9:.2f} GB)"
        if not r.get("peak_reset", True):
            peak += " (upper bound: peak not reset)"
        gate = r["parity"].removeprefix("parity: ")
        out.append(f"| {name} | {r['params'] / 1e6:.0f} M | {r['direction']} | {r['seconds']:.1f} | "
                   f"{r['cpu_seconds']:.1f} | {r['convert_seconds']:.1f} | {peak} | {r['max_abs_err']:.3g} | "
                   f"{r['floor']:.3g} | {gate} |")
    return "\n".join(out) + "\n"


def write_section(text: str, path: Path = ROOT / "BENCHMARKS.md", begin: str = BEGIN, end: str = END) -> None:
    """Rewrite the section between ``begin`` and ``end`` of ``path`` (added at the end if it has none)."""
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}{end}\n"
    if begin in body and end in body:
        head, rest = body.split(begin, 1)
        body = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        body = body.rstrip("\n") + "\n\n" + block
    path.write_text(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--write", action="store_true", help="rewrite this section of BENCHMARKS.md")
    parser.add_argument("--child", nargs=3, metavar=("DIRECTION", "SIZE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        direction, size, work = args.child
        fn = child_t2k if direction == "torch2keras" else child_k2t
        print(json.dumps(fn(size, Path(work))))
        return
    rows = run([s.strip() for s in args.sizes.split(",") if s.strip()])
    text = markdown(rows)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
