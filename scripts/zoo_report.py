"""docs/zoo.md from the zoo's results (docs/zoo.json): totals, failures by class, medians, and
one line per conversion. Owns the presentation only; scripts/zoo.py produces the figures."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

ZOO_BEGIN, ZOO_END = "<!-- zoo: begin -->", "<!-- zoo: end -->"
FAILED = ("parity", "unsupported", "converter-bug", "xlate-error", "crash", "killed", "timeout")
TRANSFORMER_KINDS = ("vit", "encoder", "decoder", "audio")


def _conversions(rows):
    for r in rows:
        for c in r.get("conversions", []):
            yield r, c


def _median(values) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.2f} s" if values else "-"


def summary_line(rows) -> str:
    judged = [r for r in rows if r["status"] != "build-error"]
    passed = sum(r["status"] == "pass" for r in judged)
    crashes = sum(r["status"] == "crash" for r in judged)
    bugs = sum(r["status"] == "converter-bug" for r in judged)
    share = f"{100 * passed / len(judged):.1f}%" if judged else "-"
    return (f"zoo: {passed}/{len(judged)} models pass at batch 1 and 2 ({share}); {crashes} foreign exceptions; "
            f"{bugs} converter bugs")


def _totals(rows) -> list[str]:
    lines = ["| family | models | pass | " + " | ".join(FAILED) + " | build-error |",
             "|---|---|---|" + "---|" * len(FAILED) + "---|"]
    families = ["torchvision", "timm", "hf"]
    for fam in [*families, "all"]:
        sel = [r for r in rows if fam == "all" or (r.get("family") or r["id"].split("/")[0]) == fam]
        count = Counter(r["status"] for r in sel)
        lines.append(f"| {fam} | {len(sel)} | {count['pass']} | " + " | ".join(str(count[s]) for s in FAILED)
                     + f" | {count['build-error']} |")
    return lines


def _speed(rows) -> list[str]:
    ok = [(r, c) for r, c in _conversions(rows) if c.get("seconds") is not None]
    cnn = [(r, c) for r, c in ok if r.get("kind") in ("cnn", "segmentation", "video") and r["family"] != "hf"]
    tf = [(r, c) for r, c in ok if r.get("kind") in TRANSFORMER_KINDS]
    lines = ["| models | batch 1 | batch 2 | gate (both batches) | peak memory above the source (median) |",
             "|---|---|---|---|---|"]
    for label, sel in (("torchvision/timm CNNs", cnn), ("transformers (ViT, encoders, decoders, audio)", tf),
                       ("all", ok)):
        peaks = [c["peak_mb"] for _, c in sel if c.get("peak_mb") is not None]
        peak = f"{statistics.median(peaks):.0f} MB" if peaks else "-"
        lines.append(f"| {label} | {_median(c['seconds'] for _, c in sel if c['batch'] == 1)} | "
                     f"{_median(c['seconds'] for _, c in sel if c['batch'] == 2)} | "
                     f"{_median(c.get('gate_seconds') for _, c in sel)} | {peak} |")
    models = {label: len({r["id"] for r, _ in sel}) for label, sel in (("cnn", cnn), ("transformer", tf))}
    lines += ["", (f"{models['cnn']} CNNs and {models['transformer']} transformers converted. A model with an "
                   "attention module is a transformer (hybrids such as CoAtNet, MaxViT and MobileViT included; "
                   "channel attention such as SKNet's does not count): scripts/zoo_catalog.py is_transformer.")]
    return lines


def _machine(rows) -> list[str]:
    refs = [r["machine_ms"] for r in rows if r.get("machine_ms") is not None]
    if not refs:
        return []
    return [(f"Machine reference (scripts/zoo.py machine_reference, a fixed pure-Python workload, median "
             f"of {len(refs)} model processes): {statistics.median(refs):.0f} ms. Conversion time is mostly "
             "interpreter time: tables measured on other days or machines compare through it.")]


def _rules(rows) -> list[str]:
    gated = [c for _, c in _conversions(rows) if "tolerance_pass" in c]
    old = sum(c["tolerance_pass"] for c in gated)
    new = sum(c["status"] == "pass" for c in gated)
    by_floor = sum(c["status"] == "pass" and c.get("rule") == "floor" for c in gated)
    return [(f"Of {len(gated)} conversions that reached the gate, {old} pass the fixed tolerance alone "
            f"(atol 1e-5, rtol 1e-4) and {new} pass the default gate: that tolerance, or within 3x the "
            f"source's own float32 rounding of its float64 result ({by_floor} passed by that rule).")]


def _failures(rows) -> list[str]:
    causes = Counter()
    for r, c in _conversions(rows):
        if c["status"] != "pass":
            causes[(c["status"], (c.get("reason") or "")[:110])] += 1
    for r in rows:
        if not r.get("conversions"):
            causes[(r["status"], (r.get("reason") or "")[:110])] += 1
    if not causes:
        return ["None."]
    lines = ["| status | cause | conversions |", "|---|---|---|"]
    for (status, reason), n in causes.most_common():
        lines.append(f"| {status} | {_cell(reason)} | {n} |")
    return lines


def _fmt(v, spec=".2g"):
    return "-" if v is None else format(v, spec)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _per_model(rows) -> list[str]:
    lines = [("| model | params | batch | trace | convert | peak MB | max abs err | output scale | fp32 floor | "
             "dynamic axes | status | cause |"), "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = f"{r['params'] / 1e6:.1f}M" if r.get("params") else "-"
        if not r.get("conversions"):
            lines.append(f"| {r['id']} | {params} | | | | | | | | | {r['status']} | {_cell(r.get('reason', ''))} |")
            continue
        for c in r["conversions"]:
            seconds = f"{c['seconds']:.2f} s" if c.get("seconds") is not None else "-"
            lines.append(
                f"| {r['id']} | {params} | {c['batch']} | {c.get('trace', '-')} | {seconds} | "
                f"{_fmt(c.get('peak_mb'), '.0f')} | {_fmt(c.get('max_abs'))} | {_fmt(c.get('scale'))} | "
                f"{_fmt(c.get('floor'))} | {c.get('dynamic', '-')} | {c['status']} | {_cell(c.get('reason', ''))} |")
    return lines


def write(rows, path: Path) -> None:
    versions = next((r.get("versions") for r in rows if r.get("versions")), {})
    text = [
        "# The real-model zoo: torch -> Keras on third-party model code",
        "",
        "Generated by `make zoo` (`scripts/zoo.py`, one model per process in `.venv-zoo`); do not edit.",
        "Each model is built from its library with random weights made realistic (BatchNorm statistics",
        "calibrated on seeded batches, zero-initialised weights given noise), converted with",
        "`via=\"direct\"` from a batch-1 and from a batch-2 example, and judged by xlate's default parity",
        "gate on two seeded inputs against the torch model's own outputs. A model passes when both",
        "conversions pass. `crash` is a foreign exception reaching the user (an xlate bug); `killed`",
        "is a model process killed by a signal (SIGKILL: the out-of-memory killer) before it wrote a row;",
        "`converter-bug` is a converter that failed on one op, reported to the user as an xlate",
        "error naming the op and module (still a bug); `build-error` is a model its",
        "library cannot build here (not counted).",
        "",
        "Versions: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "-"),
        "",
        "xlate commits measured (models per commit): "
        + (", ".join(f"{c} ({n})" for c, n in Counter(r.get("commit", "?") for r in rows).most_common()) or "-"),
        "",
        "**" + summary_line(rows) + "**",
        "",
        "## Totals", "", *_totals(rows), "",
        "## Conversion time (median)", "", *_speed(rows), "", *_machine(rows), "",
        "## Parity rule", "", *_rules(rows), "",
        "## Failures by cause", "", *_failures(rows), "",
        "## Per model", "", *_per_model(rows), "",
    ]
    path.write_text("\n".join(text))


def benchmarks_section(rows) -> str:
    """The zoo's figures for BENCHMARKS.md (beside the fixtures' benchmarks), from docs/zoo.json."""
    commits = ", ".join(f"{c} ({n})" for c, n in Counter(r.get("commit", "?") for r in rows).most_common())
    return "\n".join([
        "## The real-model zoo (torch -> Keras)", "",
        f"From `make zoo` (docs/zoo.json, per model in docs/zoo.md); xlate commits measured: {commits}.", "",
        "**" + summary_line(rows) + "**", "",
        *_speed(rows), "", *_machine(rows), "",
    ])


def write_benchmarks(rows, path: Path) -> None:
    """Rewrite the zoo's section of BENCHMARKS.md (added at the end if it has none)."""
    from bench_scale import write_section

    write_section(benchmarks_section(rows), path, ZOO_BEGIN, ZOO_END)
