"""Benchmark the Keras -> PyTorch direct path over the coverage fixtures.

For each fixture: conversion time (``xlate.keras2torch.convert.keras_to_torch``, median of 3,
after one warm-up conversion so imports are not counted), the parity check's time, the max abs
error of the generated package loaded in a fresh Python process (``model.py`` +
``model.safetensors``, xlate unimportable there) against the Keras model, and forward latency of
both (batch 1, median of 5). Prints a markdown table.

    python scripts/bench_k2t.py                # every fixture
    python scripts/bench_k2t.py mlp cnn_bn     # some of them

``scripts/bench.py`` calls ``run()`` and gets the rows as dicts.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_t2k import _median_time


def fresh_process_error(model, module, workdir: Path, samples: int = 2) -> float:
    """Max abs error of the saved package, run in a new interpreter, against the Keras model."""
    from xlate.record import record_of
    from xlate.save import save_torch_package
    from xlate.testing import fresh_package_error

    outdir = save_torch_package(module, workdir / "pkg", overwrite=True)
    return fresh_package_error(model, outdir, record_of(module).io.inputs, samples=samples)


def _latencies(model, module) -> tuple[float, float]:
    import torch

    from xlate.parity_inputs import make_inputs
    from xlate.record import record_of

    arrays = make_inputs(record_of(module).io.inputs, samples=1, seed=1, batch=1)[0]
    tensors = [torch.from_numpy(a) for a in arrays]
    keras_in = arrays[0] if len(arrays) == 1 else list(arrays)

    def torch_forward():
        with torch.no_grad():
            module(*tensors)

    torch_forward()
    model(keras_in, training=False)
    return (_median_time(torch_forward, 5) * 1e3,
            _median_time(lambda: model(keras_in, training=False), 5) * 1e3)


def bench_fixture(name: str, builder, repeats: int = 3) -> dict:
    import xlate
    from xlate.keras2torch.convert import keras_to_torch
    from xlate.keras2torch.walk import walk

    model = builder()
    convert_s = _median_time(lambda: keras_to_torch(model), repeats)
    module = keras_to_torch(model)
    start = time.perf_counter()
    report = xlate.check_parity(model, module, samples=2)
    check_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        fresh_err = fresh_process_error(model, module, Path(tmp))
    torch_ms, keras_ms = _latencies(model, module)
    return {
        "fixture": name,
        "nodes": len(walk(model).nodes),
        "convert_s": convert_s,
        "check_s": check_s,
        "max_abs_err": fresh_err,
        "in_process_max_abs_err": report.max_abs_err,
        "passed": report.passed and fresh_err <= 1e-5,
        "torch_ms": torch_ms,
        "keras_ms": keras_ms,
        "source_lines": module._xlate_source.count("\n"),
    }


def run(names: list[str] | None = None) -> list[dict]:
    """Benchmark the named fixtures (default: all); one dict per fixture."""
    from fixtures.keras_models import FIXTURES
    from xlate.keras2torch.convert import keras_to_torch

    keras_to_torch(FIXTURES["mlp"]())  # warm-up: imports and converter registration are not conversion
    return [bench_fixture(name, FIXTURES[name]) for name in (names or list(FIXTURES))]


def markdown(rows: list[dict]) -> str:
    head = ("| fixture | graph nodes | convert s (median of 3) | parity check s | max abs err (fresh process) "
            "| torch ms | keras ms | lines of model.py | ok |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['fixture']} | {r['nodes']} | {r['convert_s']:.3f} | {r['check_s']:.2f} | "
                     f"{r['max_abs_err']:.2e} | {r['torch_ms']:.1f} | {r['keras_ms']:.1f} | {r['source_lines']} | "
                     f"{'yes' if r['passed'] else 'NO'} |")
    median = statistics.median(r["convert_s"] for r in rows)
    lines.append("")
    lines.append(f"Median conversion time over {len(rows)} fixtures: {median:.3f} s; "
                 f"worst max abs error: {max(r['max_abs_err'] for r in rows):.2e}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run(sys.argv[1:] or None)))
