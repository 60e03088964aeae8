"""Convert every keras.applications constructor Keras -> PyTorch and measure parity, one model per process.

Each model is built with weights=None (random weights, nothing downloaded), seeded, with
non-trivial BatchNorm statistics (``fixtures.keras_models.randomize_statistics``), at a small
input size (32 px, or the family's minimum; ``XLATE_SWEEP_SIZE=64`` for larger), logits out (``classifier_activation=None``). Per model it prints the conversion time,
the max abs / max relative error of the torch module against Keras in float32 on two inputs, and
the float64 reference figures: the same generated module run in float64 (``module.double()``)
against Keras float32 (Keras' own float32 rounding, the floor no converter can beat) and against
torch float32. An independent reference checks that one: the same Keras model built under the
float64 dtype policy with the float32 model's weights; the generated module in float64 against it
shows the conversion exact (about 1e-12) whatever float32 does to a deep model, and Keras float32
against it is Keras' own floor measured without the generated module. Prints a markdown table.

    python scripts/sweep_k2t_applications.py                 # every constructor
    python scripts/sweep_k2t_applications.py ResNet50 VGG16  # some of them
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent

# the smallest input each family accepts with weights=None (default: 32x32)
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71, "NASNetLarge": 32, "NASNetMobile": 32}
SIZE = int(os.environ.get("XLATE_SWEEP_SIZE", "32"))


def constructors() -> list[str]:
    import keras

    return sorted(n for n in dir(keras.applications) if n[0].isupper() and callable(getattr(keras.applications, n)))


def _one(name: str) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    import keras

    from fixtures.keras_models import randomize_statistics
    from xlate.errors import XlateError
    from xlate.keras2torch.convert import keras_to_torch

    size = max(SIZE, MIN_SIZE.get(name, 32))
    keras.utils.set_random_seed(0)
    kwargs = {"weights": None, "input_shape": (size, size, 3)}
    fn = getattr(keras.applications, name)
    model = _build(fn, kwargs)
    randomize_statistics(model)
    twin = _float64_twin(fn, kwargs, model)
    t0 = time.perf_counter()
    try:
        module = keras_to_torch(model)
    except XlateError as e:
        return {"name": name, "size": size, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    worst = {"abs": 0.0, "rel": 0.0, "k32_vs_t64": 0.0, "t32_vs_t64": 0.0, "scale": 0.0,
             "t64_vs_k64": 0.0, "k32_vs_k64": 0.0, "t32_vs_k64": 0.0}
    double = None
    for _ in range(2):
        x = rng.uniform(0, 255, (1, size, size, 3)).astype("float32")
        k = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float64)
        with torch.no_grad():
            t = module(torch.from_numpy(x)).double().numpy()
            if double is None:
                import copy

                double = copy.deepcopy(module).double()
            t64 = double(torch.from_numpy(x).double()).numpy()
        worst["abs"] = max(worst["abs"], float(np.abs(k - t).max()))
        worst["rel"] = max(worst["rel"], float((np.abs(k - t) / np.maximum(np.abs(k), 1e-6)).max()))
        worst["k32_vs_t64"] = max(worst["k32_vs_t64"], float(np.abs(k - t64).max()))
        worst["t32_vs_t64"] = max(worst["t32_vs_t64"], float(np.abs(t - t64).max()))
        worst["scale"] = max(worst["scale"], float(np.abs(t64).max()))
        k64 = np.asarray(keras.ops.convert_to_numpy(twin(x.astype("float64"), training=False)), np.float64)
        worst["t64_vs_k64"] = max(worst["t64_vs_k64"], float(np.abs(t64 - k64).max()))
        worst["k32_vs_k64"] = max(worst["k32_vs_k64"], float(np.abs(k - k64).max()))
        worst["t32_vs_k64"] = max(worst["t32_vs_k64"], float(np.abs(t - k64).max()))
    return {"name": name, "size": size, "seconds": round(seconds, 2), **worst}


def _build(fn, kwargs):
    try:
        return fn(classifier_activation=None, **kwargs)
    except TypeError:
        return fn(**kwargs)


def _float64_twin(fn, kwargs, model):
    """The same architecture under Keras' float64 policy, holding ``model``'s weights."""
    import keras
    import numpy as np

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        twin = _build(fn, kwargs)
    finally:
        keras.config.set_dtype_policy(before)
    twin.set_weights([np.asarray(w, np.float64) for w in model.get_weights()])
    return twin


def main(names: list[str]) -> None:
    names = names or constructors()
    print("| model | input | convert s | max abs err (torch32 vs keras32) | keras32 vs torch64 | torch32 vs torch64 "
          "| torch64 vs keras64 | keras32 vs keras64 | torch32 vs keras64 | max abs output |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        run = subprocess.run([sys.executable, __file__, "--one", name], check=False, capture_output=True, text=True,
                             timeout=3600, env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
        if not line:
            print(f"| {name} | | | crashed: {run.stderr.strip().splitlines()[-1:]} | | | | | | |", flush=True)
            continue
        r = json.loads(line[-1])
        if "error" in r:
            print(f"| {name} | {r['size']} | | {r['error']} | | | | | | |", flush=True)
            continue
        print(f"| {name} | {r['size']} | {r['seconds']} | {r['abs']:.2e} (rel {r['rel']:.1e}) | {r['k32_vs_t64']:.2e} | "
              f"{r['t32_vs_t64']:.2e} | {r['t64_vs_k64']:.1e} | {r['k32_vs_k64']:.2e} | {r['t32_vs_k64']:.2e} | "
              f"{r['scale']:.3g} |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(_one(sys.argv[2])))
    else:
        main(sys.argv[1:])
