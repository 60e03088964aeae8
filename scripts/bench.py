#!/usr/bin/env python
"""Benchmark both conversion directions over the coverage fixtures and write BENCHMARKS.md.

Not a timed test: run it on a quiet machine (`make bench`). Each direction's details are in
scripts/bench_t2k.py (torch -> Keras) and scripts/bench_k2t.py (Keras -> torch); large models
(12 M to 1 B parameters, seconds and peak memory) in scripts/bench_scale.py.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_k2t
import bench_scale
import bench_t2k


def main() -> None:
    import keras
    import torch

    t2k = bench_t2k.run()
    k2t = bench_k2t.run()
    scale = bench_scale.run()
    cpu = platform.processor() or platform.machine()
    text = "\n".join([
        "# Benchmarks",
        "",
        (f"Written by `scripts/bench.py` on {datetime.date.today()}: {os.cpu_count()} CPU cores ({cpu}), "
         f"Python {platform.python_version()}, torch {torch.__version__}, keras {keras.__version__} "
         f"({keras.backend.backend()} backend). Conversion times exclude the first conversion of the run "
         "(imports, first graph builds)."),
        "",
        "## PyTorch -> Keras",
        "",
        bench_t2k.markdown(t2k),
        "## Keras -> PyTorch",
        "",
        bench_k2t.markdown(k2t),
        "",
        bench_scale.BEGIN,
        bench_scale.markdown(scale) + bench_scale.END,
        "",
        *_zoo_section(),
    ])
    (ROOT / "BENCHMARKS.md").write_text(text)
    print(text)


def _zoo_section() -> list[str]:
    """The zoo's medians (docs/zoo.json, written by `make zoo`), kept beside the fixtures' figures."""
    import json

    import zoo_report

    results = ROOT / "docs" / "zoo.json"
    if not results.exists():
        return []
    rows = json.loads(results.read_text())["models"]
    return [zoo_report.ZOO_BEGIN, zoo_report.benchmarks_section(rows) + zoo_report.ZOO_END, ""]


if __name__ == "__main__":
    main()
