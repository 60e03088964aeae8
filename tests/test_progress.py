"""Progress on long work: the library reports, the command line shows (rich on a terminal, plain
lines in a log or under CI=true, nothing when quiet)."""

from __future__ import annotations

import io
import time

import xlate.cli  # noqa: F401 - registers the commands (xlate.commands imports it)
from xlate import progress
from xlate.commands import _common


def test_reports_reach_the_listener_only_inside_its_block():
    seen = []
    progress.report(1, 2)  # nobody listens: nothing happens
    with progress.listening(lambda *a: seen.append(a)):
        progress.report(1, 4, "layers")
    progress.report(2, 4)
    assert seen == [(1, 4, "layers")]


def test_mode_follows_quiet_ci_and_the_terminal(monkeypatch):
    assert _common.progress_mode(quiet=True) == "quiet"
    monkeypatch.setenv("CI", "true")
    assert _common.progress_mode() == "plain"


def _steps(monkeypatch, *, terminal: bool):
    buf = io.StringIO()
    from rich.console import Console

    console = Console(file=buf, force_terminal=terminal, width=100, highlight=False)
    monkeypatch.setattr(_common, "stderr_console", lambda: console)
    monkeypatch.setattr(_common, "SHOW_AFTER_S", 0.0)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("XLATE_PROGRESS", raising=False)
    return _common.Steps(), buf


def _work(steps):
    with steps.step("converting"):
        time.sleep(0.1)  # past SHOW_AFTER_S: the display starts
        for i in range(1, 5):
            progress.report(i, 4, "layers")
            time.sleep(0.12)  # rich redraws ten times a second


def test_a_terminal_gets_a_live_display_with_layers_done_of_total(monkeypatch):
    steps, buf = _steps(monkeypatch, terminal=True)
    assert steps.mode == "rich"
    _work(steps)
    out = buf.getvalue()
    assert "converting" in out and "3/4" in out and "layers" in out
    assert "converting: done in" in out


def test_a_log_gets_plain_lines(monkeypatch):
    steps, buf = _steps(monkeypatch, terminal=False)
    assert steps.mode == "plain"
    _work(steps)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "converting..."
    assert "converting: 2/4 layers" in lines
    assert lines[-1].startswith("converting: done in") and lines[-1].endswith("(4 layers)")
    assert "\x1b[" not in buf.getvalue()  # no terminal codes in a log


def test_quiet_shows_nothing(monkeypatch):
    _, buf = _steps(monkeypatch, terminal=True)
    steps = _common.Steps(quiet=True)
    _work(steps)
    assert buf.getvalue() == ""
