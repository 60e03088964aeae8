"""The support matrix in docs/support.md is generated from the table and must be up to date."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_support_matrix_is_current():
    spec = importlib.util.spec_from_file_location("gen_support", ROOT / "scripts" / "gen_support.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    committed = (ROOT / "docs" / "support.md").read_text()
    assert committed == gen.render(), "docs/support.md is stale: run `make docs` (scripts/gen_support.py)"
