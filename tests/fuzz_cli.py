"""Damaged files through the real ``xlate`` executable: one fresh folder and one process per file.

``run_case`` copies the damaged file and the clean companions it is compared with into a fresh
folder, runs the command, and returns what a CI job would see: the exit code, the stderr lines,
whether a traceback showed, what was left in the folder, and how long it took. ``problems`` says
what breaks the contract: exit 2 (or a clean 0/1 when the damage left a valid file) with one
``error:`` line and at most one ``hint:`` line, no traceback, nothing left behind but the output of
a run that succeeded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzzcorpus import COMPANIONS, Damaged

ROOT = Path(__file__).resolve().parents[1]
# what TensorFlow prints on import whatever TF_CPP_MIN_LOG_LEVEL says (absl's pre-init logging)
TF_CHATTER = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} |To enable the following instructions)")
# xlate's own progress line for a stage that runs a while ("checking...", plain mode off a terminal)
PROGRESS = re.compile(r"^[a-z][\w ,./()'-]*\.\.\.$")


@dataclass
class CliResult:
    argv: list
    code: int | None  # None: killed at the timeout
    stderr: list
    seconds: float
    before: set
    after: set

    @property
    def traceback(self) -> bool:
        return any("Traceback (most recent call last)" in line for line in self.stderr)

    @property
    def error(self) -> str:
        """xlate's own error line ('' when there is none)."""
        return next((ln for ln in self.stderr if ln.startswith("error: ")), "")

    @property
    def other_lines(self) -> list[str]:
        """stderr lines that are neither xlate's error/hint nor TensorFlow's start-up chatter."""
        return [ln for ln in self.stderr if not ln.startswith(("error: ", "hint: ")) and not TF_CHATTER.match(ln)
                and not PROGRESS.match(ln)]


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_case(item: Damaged, seeds: Path, work: Path, variant: int = 0, timeout: float = 240) -> CliResult:
    """Run the seed's ``variant``-th command on the damaged file in a fresh folder under ``work``."""
    folder = work / item.path.name.replace(".", "_")
    folder.mkdir(parents=True)
    for name in COMPANIONS:
        if name == item.path.name:
            continue
        src = seeds / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, folder / name)
    target = folder / item.path.name
    (shutil.copytree if item.path.is_dir() else shutil.copyfile)(item.path, target)
    template = item.seed.cli[variant % len(item.seed.cli)]
    argv = [a.replace("{}", item.path.name) for a in template]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env.pop("XLATE_PROGRESS", None)
    before = listing(folder)
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "xlate", *argv], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as e:
        code, stderr = None, (e.stderr or b"").decode("utf-8", "replace") if isinstance(e.stderr, bytes) else ""
    seconds = time.perf_counter() - start
    return CliResult(argv, code, stderr.strip().splitlines(), seconds, before, listing(folder))


def problems(result: CliResult) -> list[str]:
    """What breaks the command-line contract for a damaged input (empty when it holds)."""
    found = []
    if result.code is None:
        return [f"no answer within {result.seconds:.0f} s"]
    if result.code not in (0, 1, 2):
        found.append(f"exit {result.code}")
    if result.traceback:
        found.append("a traceback")
    errors = [ln for ln in result.stderr if ln.startswith("error: ")]
    hints = [ln for ln in result.stderr if ln.startswith("hint: ")]
    if result.code == 2 and (len(errors) != 1 or len(hints) > 1):
        found.append(f"{len(errors)} error lines and {len(hints)} hint lines")
    if result.code == 2 and result.other_lines:
        found.append(f"stderr lines besides the error: {result.other_lines[:3]}")
    new = result.after - result.before
    if result.code != 0 and new:
        found.append(f"left behind: {sorted(new)}")
    if result.code == 0 and any("xlate-tmp" in n or "xlate-old" in n for n in new):
        found.append(f"temporary files left: {sorted(new)}")
    return found
