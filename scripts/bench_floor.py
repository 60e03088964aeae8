"""The parity gate with and without the rounding floor, over the fixtures and the deep models.

For each model: convert without the gate, then run the gate's check (``check_parity``, 4 seeded
samples of batch 2) under the old rule (``floor_factor=None``, atol 1e-5 / rtol 1e-4 alone) and
the new default (``floor_factor=3``) in interleaved rounds (median of ``--rounds``), and report
both verdicts, the cross-framework error, the source's own float32-vs-float64 floor and the
target's distance from float64 (of the sample closest to failing), and the times. The floor's
reference run only happens for samples with a value outside atol/rtol, so "cost if needed" adds
the time of the reference run on every sample, measured on its own: what the gate would add for
a model whose every sample needed it. ``per-value`` is the share of values where
|target - float64| > 3 x |source - float64| value by value: what a per-value rule would reject
on an exact conversion.

    python scripts/bench_floor.py                    # everything (about an hour on 2 loaded cores)
    python scripts/bench_floor.py resnet50 mlp       # some of them
    python scripts/bench_floor.py --write docs/floor.md
"""

from __future__ import annotations

import argparse
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


def _deep_models() -> dict:
    """name -> (build, direction): the deep models of tests/test_floor_models.py."""
    from tests import test_floor_models as deep

    def torch_model(build, shape):
        def make():
            import torch

            module = deep.calibrate_torch(build(), (8, *shape[1:]))
            return module, (torch.randn(*shape),)

        return make

    return {
        "resnet50 (HF, 64px)": (torch_model(deep.hf_resnet50, (2, 3, 64, 64)), "torch2keras"),
        "inception_v3-like (96px)": (torch_model(deep.inception_v3_like, (2, 3, 96, 96)), "torch2keras"),
        "resnet50 (HF, 224px)": (torch_model(deep.hf_resnet50, (2, 3, 224, 224)), "torch2keras"),
        "ResNet101 (keras, 64px)": (lambda: deep.keras_application("ResNet101", 64), "keras2torch"),
        "EfficientNetB1 (keras, 64px)": (
            lambda: deep.keras_application("EfficientNetB1", 64, classifier_activation=None), "keras2torch"),
    }


def _fixtures() -> dict:
    from fixtures import keras_models, torch_models

    out = {name: (build, "torch2keras") for name, build in {**torch_models.FIXTURES,
                                                              **torch_models.HF_FIXTURES}.items()}
    out.update({name: (build, "keras2torch") for name, build in keras_models.FIXTURES.items()})
    return out


def _pair(build, direction):
    import xlate

    if direction == "torch2keras":
        module, example = build()
        module.eval()
        return module, xlate.torch_to_keras(module, example, check=False)
    model = build()
    return model, xlate.keras_to_torch(model, check=False)


def _per_value_share(source, target) -> float | None:
    """Share of values where |target - float64| > 3 |source - float64| (all samples)."""
    from xlate.floor import ReferenceRun
    from xlate.frameworks import framework_of
    from xlate.parity import Sides
    from xlate.parity_inputs import batches_and_spec
    from xlate.runners import KerasRunner, TorchRunner

    src_fw = framework_of(source)
    torch_model, keras_model = (source, target) if src_fw == "torch" else (target, source)
    batches, spec = batches_and_spec(source, target, keras_model, src_fw, None, 4, 0)
    sides = Sides(spec, src_fw == "torch")
    reference = ReferenceRun(source, src_fw, dtype="float32", device="cpu", keras_device="cpu:0", training=False)
    refs = sides.reference(reference, batches, list(range(len(batches))))
    bad = total = 0
    with TorchRunner(torch_model, "cpu", False) as run_torch, KerasRunner(keras_model, False, "cpu:0") as run_keras:
        for s, arrays in enumerate(batches):
            expected, actual = sides.compare(arrays, run_torch, run_keras)
            if refs[s] is None:
                return None
            for e, a, r in zip(expected, actual, refs[s]):
                if e.dtype.kind != "f":
                    continue
                r = r.astype(np.float64)
                bad += int((np.abs(a - r) > 3 * np.abs(e - r)).sum())
                total += e.size
    return bad / total if total else None


def measure(name, build, direction, rounds: int) -> dict:
    from xlate.floor import ReferenceRun
    from xlate.frameworks import framework_of
    from xlate.parity import Sides, check_parity
    from xlate.parity_inputs import batches_and_spec

    source, target = _pair(build, direction)
    check_parity(source, target, floor_factor=None)  # warm-up: first calls build graphs
    times = {"old": [], "new": []}
    reports = {}
    for _ in range(rounds):
        for rule, factor in (("old", None), ("new", 3.0)):
            start = time.perf_counter()
            reports[rule] = check_parity(source, target, floor_factor=factor)
            times[rule].append(time.perf_counter() - start)
    src_fw = framework_of(source)
    keras_model = source if src_fw == "keras" else target
    batches, spec = batches_and_spec(source, target, keras_model, src_fw, None, 4, 0)
    reference = ReferenceRun(source, src_fw, dtype="float32", device="cpu", keras_device="cpu:0", training=False)
    start = time.perf_counter()
    Sides(spec, src_fw == "torch").reference(reference, batches, list(range(len(batches))))
    ref_time = time.perf_counter() - start
    new = reports["new"]
    shown = max(new.per_output, key=lambda o: (not o.passed, o.outside_tol, o.max_abs_err))
    return {
        "model": name, "direction": direction.replace("2", " -> "),
        "old": "pass" if reports["old"].passed else "FAIL", "new": "pass" if new.passed else "FAIL",
        "rule": shown.rule, "max_abs": shown.max_abs_err, "floor": shown.floor,
        "target_ref": shown.target_vs_ref64, "outside": f"{shown.outside_tol}/{shown.total}",
        "old_s": statistics.median(times["old"]), "new_s": statistics.median(times["new"]), "ref_s": ref_time,
        "per_value": _per_value_share(source, target) if shown.outside_tol else None,
        "reference": new.reference or reference.description, "note": reference.note,
    }


def _g(value) -> str:
    return "-" if value is None else f"{value:.2g}"


def render(rows: list[dict]) -> str:
    lines = [("| model | direction | old rule | new rule | passed by | max abs err | floor | target vs float64 | "
             "beyond atol/rtol | gate s (old) | gate s (new) | added | cost if needed | per-value |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        added = r["new_s"] / r["old_s"] - 1
        per_value = "-" if r["per_value"] is None else f"{r['per_value']:.1%}"
        lines.append(f"| {r['model']} | {r['direction']} | {r['old']} | {r['new']} | {r['rule']} | "
                     f"{_g(r['max_abs'])} | {_g(r['floor'])} | {_g(r['target_ref'])} | {r['outside']} | "
                     f"{r['old_s']:.2f} | {r['new_s']:.2f} | {added:+.0%} | +{r['ref_s'] / r['old_s']:.0%} | "
                     f"{per_value} |")
    old = sum(r["old"] == "pass" for r in rows)
    new = sum(r["new"] == "pass" for r in rows)
    lines.append("")
    lines.append(f"{len(rows)} models: {old} pass the old rule (atol/rtol alone), {new} pass the new default gate.")
    notes = [f"- {r['model']}: {r['note']}" for r in rows if r["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


COLUMNS = """Each model is converted without the gate, then checked as the gate checks it (4 seeded
batches of 2): under the old rule (atol 1e-5, rtol 1e-4 alone) and the new default (also pass
within 3x the source's own float32-vs-float64 rounding, `xlate/floor.py`). *floor* is the
source's own rounding and *target vs float64* the converted model's distance from the source's
float64 result, on the batch closest to failing; *beyond atol/rtol* counts the values the old
rule rejects. *gate s* are medians of interleaved rounds on a shared, loaded machine (noisy);
*added* is new over old. The float64 run only happens for batches with a value outside
atol/rtol, so a model within atol/rtol pays nothing; *cost if needed* is the float64 run of the
source on all 4 batches, timed on its own, over the old gate's time: what a model whose every
batch needs it pays. *per-value* is the share of values with |target - float64| > 3 x
|source - float64| value by value: what a per-value rule would reject on these exact conversions
(why the floor is a max over each batch's output instead).

Regenerate: `python scripts/bench_floor.py --write docs/floor.md` (an hour on 2 loaded cores)."""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    models = {**_deep_models(), **_fixtures()}
    chosen = [n for n in models if not args.names or any(a in n for a in args.names)]
    rows = []
    for name in chosen:
        build, direction = models[name]
        rows.append(measure(name, build, direction, args.rounds))
        print(render(rows[-1:]).splitlines()[2], flush=True)
    table = render(rows)
    print(table)
    if args.write:
        import platform

        import keras
        import torch

        head = (f"Written by `scripts/bench_floor.py` on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} CPU cores, "
                f"Python {platform.python_version()}, torch {torch.__version__}, keras {keras.__version__} "
                f"({keras.backend.backend()} backend); median of {args.rounds} interleaved rounds.\n")
        args.write.write_text(f"# The parity gate's rounding floor, measured\n\n{head}\n{COLUMNS}\n\n{table}\n")


if __name__ == "__main__":
    main()
