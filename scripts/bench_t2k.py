"""Benchmark the torch -> Keras direct path over the coverage fixtures.

For each fixture: conversion time (``xlate.torch_to_keras(..., check=False)``, median of 3 after
one warm-up conversion so imports are not counted), max abs error against the torch module on
4 seeded inputs, and forward latency of the converted Keras model vs the torch module, both
called directly on one batch (``model(x)`` / ``module(x)``, median of 20 after warm-up).
For LeNet and the ResNet, a hand-written Keras model of the same architecture (NHWC, 'same'
padding where a Keras user would write it) is timed against the converted model taking NHWC
(io_layout="native") and NCHW (io_layout="source"), all three called the same way: compiled
(``predict_on_batch``, the deployment path) and eager (``model(x)``, dominated by Python
per-layer overhead), in interleaved rounds so machine load hits them alike.

    python scripts/bench_t2k.py                  # every fixture
    python scripts/bench_t2k.py lenet hf_bert    # some of them

``scripts/bench.py`` calls ``run()`` and gets the rows as dicts.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np


def _median_time(fn, repeats: int, warmup: int = 0) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hand_written_lenet():
    import keras
    from keras import layers

    x = keras.Input((28, 28, 1))
    y = layers.MaxPooling2D(2)(layers.ReLU()(layers.BatchNormalization(epsilon=1e-5)(
        layers.Conv2D(6, 5, padding="same")(x))))
    y = layers.MaxPooling2D(2)(layers.ReLU()(layers.BatchNormalization(epsilon=1e-5)(layers.Conv2D(16, 5)(y))))
    y = layers.Flatten()(y)
    y = layers.Dense(84, activation="relu")(layers.Dense(120, activation="relu")(y))
    return keras.Model(x, layers.Dense(10)(y))


def hand_written_resnet(layers_per_stage=(2, 2, 2), widths=(16, 32, 64), num_classes=10):
    import keras
    from keras import layers

    def block(x, planes, stride):
        shortcut = x
        if stride != 1 or x.shape[-1] != planes:
            shortcut = layers.BatchNormalization(epsilon=1e-5)(layers.Conv2D(planes, 1, stride, use_bias=False)(x))
        y = layers.ReLU()(layers.BatchNormalization(epsilon=1e-5)(
            layers.Conv2D(planes, 3, stride, padding="same", use_bias=False)(x)))
        y = layers.BatchNormalization(epsilon=1e-5)(layers.Conv2D(planes, 3, padding="same", use_bias=False)(y))
        return layers.ReLU()(layers.Add()([y, shortcut]))

    x = keras.Input((64, 64, 3))
    y = layers.ReLU()(layers.BatchNormalization(epsilon=1e-5)(
        layers.Conv2D(widths[0], 7, 2, padding="same", use_bias=False)(x)))
    y = layers.MaxPooling2D(3, 2, padding="same")(y)
    for i, (n, w) in enumerate(zip(layers_per_stage, widths)):
        for j in range(n):
            y = block(y, w, 2 if (i > 0 and j == 0) else 1)
    y = layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, layers.Dense(num_classes)(y))


HAND_WRITTEN = {"lenet": hand_written_lenet, "resnet_basic": hand_written_resnet}


def _latency_keras(model, x, repeats=20, compiled=False) -> float:
    call = (lambda: model.predict_on_batch(x)) if compiled else (lambda: model(x, training=False))
    return _median_time(call, repeats, warmup=3)


def _latency_torch(module, example, repeats=20) -> float:
    import torch

    with torch.no_grad():
        return _median_time(lambda: module(*example), repeats, warmup=3)


def bench_one(name: str) -> dict:
    import xlate
    from fixtures import torch_models as tm

    module, example = {**tm.FIXTURES, **tm.HF_FIXTURES}[name]()
    module.eval()
    convert = lambda: xlate.torch_to_keras(module, example, check=False, via="direct")
    seconds = _median_time(convert, 3)
    model = convert()
    report = xlate.check_parity(module, model, samples=4, seed=0)
    keras_in = [np.asarray(t) for t in example]
    row = {
        "fixture": name,
        "convert_s": seconds,
        "max_abs_err": report.max_abs_err,
        "passed": report.passed,
        "torch_ms": 1e3 * _latency_torch(module, example),
        "keras_ms": 1e3 * _latency_keras(model, keras_in[0] if len(keras_in) == 1 else keras_in),
    }
    if name in HAND_WRITTEN:
        native = xlate.torch_to_keras(module, example, check=True, io_layout="native")
        x = keras_in[0].transpose(0, 2, 3, 1)
        hand = HAND_WRITTEN[name]()
        for mode, compiled in (("compiled", True), ("eager", False)):
            times = {"hand": [], "native": [], "source": []}
            for _ in range(10):  # interleaved rounds
                times["hand"].append(_latency_keras(hand, x, repeats=10, compiled=compiled))
                times["native"].append(_latency_keras(native, x, repeats=10, compiled=compiled))
                times["source"].append(_latency_keras(model, keras_in[0], repeats=10, compiled=compiled))
            for key, values in times.items():
                row[f"{mode}_{key}_ms"] = 1e3 * statistics.median(values)
            row[f"{mode}_ratio_native"] = row[f"{mode}_native_ms"] / row[f"{mode}_hand_ms"]
            row[f"{mode}_ratio_source"] = row[f"{mode}_source_ms"] / row[f"{mode}_hand_ms"]
    return row


def run(names=None) -> list[dict]:
    import xlate
    from fixtures import torch_models as tm

    names = list(names or [*tm.FIXTURES, *tm.HF_FIXTURES])
    xlate.torch_to_keras(*tm.mnist_mlp(), check=False)  # warm-up: imports, first graph builds
    return [bench_one(n) for n in names]


def markdown(rows: list[dict]) -> str:
    lines = ["| fixture | convert (s, median of 3) | max abs err | parity | torch (ms) | converted Keras (ms) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fixture']} | {r['convert_s']:.3f} | {r['max_abs_err']:.2e} | "
                     f"{'pass' if r['passed'] else 'FAIL'} | {r['torch_ms']:.2f} | {r['keras_ms']:.2f} |")
    median = statistics.median(r["convert_s"] for r in rows)
    lines += ["", f"Median conversion time over {len(rows)} fixtures: {median:.3f} s", ""]
    hand = [r for r in rows if "compiled_hand_ms" in r]
    if hand:
        intro = ("Converted vs hand-written Keras of the same architecture, batch of 2 (median of 10 "
                 "interleaved rounds of 10 calls):")
        header = ("| fixture | call | hand-written (ms) | converted, NHWC in (ms) | ratio "
                  "| converted, NCHW in (ms) | ratio |")
        lines += [intro, "", header, "|---|---|---|---|---|---|---|"]
        for r in hand:
            for mode in ("compiled", "eager"):
                lines.append(f"| {r['fixture']} | {mode} | {r[f'{mode}_hand_ms']:.2f} | {r[f'{mode}_native_ms']:.2f} | "
                             f"{r[f'{mode}_ratio_native']:.2f} | {r[f'{mode}_source_ms']:.2f} | "
                             f"{r[f'{mode}_ratio_source']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run(sys.argv[1:] or None)))
