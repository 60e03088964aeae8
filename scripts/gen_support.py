#!/usr/bin/env python
"""Write docs/support.md, the support matrix, from the mapping table (mappings/*.toml).

The file is generated, never edited by hand: tests/test_docs.py fails when the committed copy
differs from what this script writes. Run `make docs` (or this script) after changing a row.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xlate.table import FAMILIES, known_unsupported, table

TITLES = {"layer": "Layers", "activation": "Activations", "op": "Tensor ops", "optimizer": "Optimizers",
          "loss": "Losses", "schedule": "Learning-rate schedules", "callback": "Callbacks",
          "training": "Training loop: clipping, EMA, accumulation, loss scaling"}


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _directions(row) -> str:
    return {("torch2keras", "keras2torch"): "both", ("torch2keras",): "torch -> keras",
            ("keras2torch",): "keras -> torch"}.get(tuple(row.directions), ", ".join(row.directions))


def _defaults(row) -> str:
    diffs = [f"`{a.torch}` {a.torch_default!r} vs `{a.keras}` {a.keras_default!r}" for a in row.args
             if a.torch not in (None, "-") and a.keras not in (None, "-") and a.torch_default is not None
             and a.keras_default is not None and a.defaults_differ]
    return "; ".join(diffs)


def _weights(row) -> str:
    return "; ".join(f"{'+'.join(w.torch)} -> {'+'.join(w.keras)} ({w.transform})" for w in row.weights)


def render() -> str:
    t = table()
    lines = [
        "# xlate support matrix",
        "",
        "Generated from the mapping table (`mappings/*.toml`) by `scripts/gen_support.py`; do not edit.",
        f"{len(t)} rows. Each row is read in both directions unless marked; every layer, activation and op",
        "row has generated parity tests (`tests/test_rows.py`) that build the row's samples as real models",
        "and compare both frameworks' outputs.",
        "",
    ]
    for family in FAMILIES:
        rows = t.family(family)
        if not rows:
            continue
        if family == "training":  # loop features: no arguments or weights; the formulas are the point
            lines += [f"## {TITLES[family]} ({len(rows)})", "", "| id | PyTorch | Keras | formulas | limitations |",
                      "|---|---|---|---|---|"]
        else:
            lines += [f"## {TITLES[family]} ({len(rows)})", "",
                      "| id | PyTorch | Keras | directions | default differences | weights | limitations |",
                      "|---|---|---|---|---|---|---|"]
        for r in rows:
            torch_names = ", ".join(f"`{n}`" for n in (r.torch, *r.torch_aliases))
            keras_names = ", ".join(f"`{n}`" for n in (r.keras, *r.keras_aliases))
            limits = "; ".join(f"{lim.text} ({lim.handling})" for lim in r.limitations)
            if family == "training":
                lines.append(f"| {r.id} | {_cell(torch_names)} | {_cell(keras_names)} | {_cell(' '.join(r.notes))} | "
                             f"{_cell(limits)} |")
                continue
            lines.append(f"| {r.id} | {_cell(torch_names)} | {_cell(keras_names)} | {_directions(r)} | "
                         f"{_cell(_defaults(r))} | {_cell(_weights(r))} | {_cell(limits)} |")
        lines.append("")
    unsupported = known_unsupported()
    lines += ["## Known unsupported", "",
              "Listed as data in `mappings/_unsupported.toml`; a coverage test fails on any `torch.nn` module or",
              "`keras.layers` class that is neither converted nor listed here.", "",
              "| framework | name | why |", "|---|---|---|"]
    for side in ("torch", "keras", "aten"):
        for name, why in sorted(unsupported.get(side, {}).items()):
            lines.append(f"| {side} | `{name}` | {_cell(why)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = ROOT / "docs" / "support.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(render())
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
