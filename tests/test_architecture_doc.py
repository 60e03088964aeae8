"""docs/architecture.md stays true to the tree: every path it names exists, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# `xlate/parity.py`, `xlate/torch2keras/converters/`, `mappings/layers.toml`, `mappings/*.toml`...
PATH = re.compile(r"`((?:xlate|mappings|scripts|tests|docs)/[^`\s]*)`")


def named_paths() -> list[str]:
    return sorted(set(PATH.findall(DOC.read_text())))


def test_the_page_names_the_stage_modules():
    assert len(named_paths()) > 20


def test_every_path_named_exists():
    missing = [p for p in named_paths() if not (list(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_readme_links_it():
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()


def test_every_plain_object_named_is_a_class_in_xlate():
    """The `CamelCase` names of the stage table (LoadedModel, SourceGraph, ParityReport...) are
    classes defined somewhere under xlate/."""
    names = set(re.findall(r"`([A-Z][A-Za-z]+)`", DOC.read_text()))
    defined = set()
    for path in (ROOT / "xlate").rglob("*.py"):
        defined |= set(re.findall(r"^\s*class (\w+)", path.read_text(), re.MULTILINE))
    assert names and not names - defined, f"not classes in xlate/: {sorted(names - defined)}"
