"""What validating a model file costs next to loading it: ``python scripts/bench_validate.py [--big]``.

For a small conv net (and with ``--big`` a ~100 MB MLP) saved as .h5, .keras and .pt2, prints the
median time of ``xlate.validate.validate_model`` alone and of ``xlate.load.load_model`` (which
runs it), in this process after a first warm-up load (framework imports excluded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _median(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _write(folder: Path, big: bool) -> list[Path]:
    import keras
    import torch

    if big:
        keras_model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(4096), keras.layers.Dense(4096),
                                        keras.layers.Dense(1024)])
        torch_model, example = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.Linear(4096, 4096),
                                                   torch.nn.Linear(4096, 1024)), torch.randn(2, 1024)
    else:
        keras_model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                                        keras.layers.Dense(5)])
        torch_model, example = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh()), torch.randn(2, 6)
    tag = "big" if big else "small"
    keras_model.save(folder / f"{tag}.h5")
    keras_model.save(folder / f"{tag}.keras")
    torch.export.save(torch.export.export(torch_model.eval(), (example,)), folder / f"{tag}.pt2")
    return [folder / f"{tag}.h5", folder / f"{tag}.keras", folder / f"{tag}.pt2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", action="store_true", help="also a ~100 MB model")
    args = parser.parse_args()
    from xlate.load import detect_format, load_model
    from xlate.validate import validate_model

    with tempfile.TemporaryDirectory() as tmp:
        paths = _write(Path(tmp), False) + (_write(Path(tmp), True) if args.big else [])
        print(f"{'file':12s} {'size':>10s} {'validate (ms)':>14s} {'load incl. validate (ms)':>25s}")
        for path in paths:
            fmt = detect_format(path)
            load_model(path)  # warm-up: imports, first graph builds
            validate = _median(lambda p=path, f=fmt: validate_model(p, f), 5)
            load = _median(lambda p=path: load_model(p), 3)
            print(f"{path.name:12s} {path.stat().st_size / 2**20:8.2f} MB {validate * 1000:14.1f} {load * 1000:25.1f}")


if __name__ == "__main__":
    main()
