"""Conversion determinism on the zoo's Hugging Face decoders: each converted in several fresh
processes (same module, same example: the catalog seeds them), and the Keras weights and graph
config hashed; every run must give the same hashes. Run in .venv-zoo:

    PYTHONPATH=$PWD .venv-zoo/bin/python scripts/zoo_determinism.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _hashes() -> dict:
    import hashlib

    import numpy as np
    import torch  # noqa: F401 - before TensorFlow in .venv-zoo
    import torchvision  # noqa: F401
    import zoo_catalog as catalog

    import xlate

    out = {}
    for entry in catalog.entries("hf"):
        if entry.kind != "decoder":
            continue
        module, example = catalog.build(entry)
        km = xlate.torch_to_keras(module, example(2, 0), via="direct", check=False)
        weights = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in km.get_weights()))
        graph = hashlib.sha256(json.dumps(km.get_config(), sort_keys=True, default=str).encode())
        out[entry.id] = f"{weights.hexdigest()[:16]}/{graph.hexdigest()[:16]}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(HERE))
        print(json.dumps(_hashes()))
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    runs = []
    for k in range(args.runs):
        proc = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, env=env,
                              check=True)
        runs.append(json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]))
        print(f"run {k + 1}: {len(runs[-1])} decoders converted", flush=True)
    differing = [m for m in runs[0] if len({r.get(m) for r in runs}) != 1]
    for m in runs[0]:
        print(f"{m}: {'identical' if m not in differing else 'DIFFERS'} in {args.runs} processes ({runs[0][m]})")
    print(f"{len(runs[0]) - len(differing)}/{len(runs[0])} decoders bit-identical in {args.runs} fresh processes")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
