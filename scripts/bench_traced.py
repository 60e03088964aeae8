"""Benchmark the traced Keras -> PyTorch route: custom layers, a subclassed model, keras-hub
backbones and InceptionResNetV2 (``CustomScaleLayer``).

For each case: one conversion's wall time (it includes the ``KERAS_BACKEND=torch`` capture process,
so it is not a warm median), the max abs error of the converted module against the Keras model on
two inputs (keras-hub: token ids + right-padded masks), the same for the saved package run in a
fresh process that cannot import xlate or keras, the traced layer classes and model.py's length.
Prints a markdown table.

    python scripts/bench_traced.py                       # every case (InceptionResNetV2 takes minutes)
    python scripts/bench_traced.py bert gpt2 custom      # some of them
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cases() -> dict:
    import keras
    import numpy as np

    from fixtures import keras_custom
    from fixtures.keras_models import randomize_statistics

    def images(shape):
        rng = np.random.default_rng(7)
        return lambda model: [[rng.standard_normal(shape).astype("float32")] for _ in range(2)]

    def sequences(model):
        rng = np.random.default_rng(4)
        return [[rng.standard_normal((2, n, 6)).astype("float32")] for n in (5, 13)]

    def tokens(model):
        return [keras_custom.token_inputs(model, seed) for seed in (1, 2)]

    def irv2():
        keras.utils.set_random_seed(0)
        model = keras.applications.InceptionResNetV2(weights=None, input_shape=(75, 75, 3),
                                                     classifier_activation=None)
        randomize_statistics(model)
        return model

    cases = {"custom": (keras_custom.custom_layer_model, sequences),
             "subclassed": (keras_custom.subclassed_model, images((2, 8, 8, 3)))}
    for name in sorted(keras_custom.KERAS_HUB):
        cases[name] = ((lambda n=name: keras_custom.keras_hub_backbone(n)), tokens)
    cases["inception_resnet_v2"] = (irv2, images((2, 75, 75, 3)))
    return cases


def run(names: list[str] | None = None) -> list[dict]:
    import xlate
    from xlate.record import record_of
    from xlate.save import save_torch_package
    from xlate.testing import fresh_package_error

    cases = _cases()
    rows = []
    for name in names or list(cases):
        build, inputs = cases[name]
        model = build()
        start = time.perf_counter()
        module = xlate.keras_to_torch(model, via="direct")
        seconds = time.perf_counter() - start
        report = xlate.check_parity(model, module, inputs(model))
        with tempfile.TemporaryDirectory() as tmp:
            outdir = save_torch_package(module, Path(tmp) / "pkg")
            fresh = fresh_package_error(model, outdir, record_of(module).io.inputs, samples=2)
        src = module._xlate_source
        traced = sorted(set(re.findall(r"^class (\w+)\(nn\.Module\):", src, re.MULTILINE)))
        rows.append({"case": name, "convert_s": seconds, "max_abs_err": report.max_abs_err,
                     "passed": report.passed, "fresh_err": fresh, "classes": traced,
                     "lines": src.count("\n")})
    return rows


def main(argv: list[str]) -> None:
    rows = run(argv or None)
    print("| case | convert s | max abs err (2 inputs) | parity | fresh-process err | classes | lines |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['convert_s']:.1f} | {r['max_abs_err']:.3g} | {'pass' if r['passed'] else 'FAIL'} "
              f"| {r['fresh_err']:.3g} | {', '.join(r['classes'])} | {r['lines']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
