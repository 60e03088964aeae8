"""Time and memory bounds on reading model files, for what validation cannot make safe.

``xlate.validate`` rules out the damage it can see in the bytes (sizes that do not fit, broken
checksums, the HDF5 heap loop). What it cannot rule out is bounded here, two ways:

- ``run_probe``: a reader run in a child process under a wall-clock limit and an address-space
  limit, for readers in C that hold the GIL while they work (h5py/HDF5): nothing in the loading
  process itself could interrupt those. A child that runs out of time, dies on a signal or runs
  out of memory makes a ``DamagedFileError``; the loading process never touches the file first.
- ``deadline``: around a framework's load in this process (``bounded_load`` decorates the load
  functions). After N seconds the load is interrupted with ``DamagedFileError`` (SIGALRM, raised on
  the main thread at the next Python instruction). In the command line (``allow_hard_exit``), a
  watchdog thread that finds the load still running ``GRACE_S`` later (a reader in C code that
  released the GIL) prints the one-line error and hint, removes the temporary outputs registered
  with ``removed_on_hard_exit`` (``save.atomic_path`` registers its own) and exits 2.

Both limits grow with the file's size; ``XLATE_LOAD_TIMEOUT`` / ``XLATE_PROBE_TIMEOUT`` (seconds)
set them outright, for very large files on slow disks.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .errors import DamagedFileError

GRACE_S = 5.0
LOAD_BASE_S, LOAD_BYTES_PER_S = 120.0, 25 * 2**20  # framework imports included: seconds on a busy machine
PROBE_BASE_S, PROBE_BYTES_PER_S = 30.0, 100 * 2**20  # the probe itself takes ~0.3 s on a small file
PROBE_MEMORY_BASE = 1 * 2**30  # the probe's own interpreter, numpy and h5py take ~150 MiB of address space

_hard_exit = False
_pending: dict[int, tuple[list[Path], list[Path]]] = {}
_pending_lock = threading.Lock()
_keys = itertools.count()
_active = threading.local()


def _size(path: Path) -> int:
    path = Path(path)
    try:
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _from_env(name: str) -> float | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def load_seconds(path) -> float:
    """How long a framework may take to load ``path`` in this process."""
    return _from_env("XLATE_LOAD_TIMEOUT") or LOAD_BASE_S + _size(path) / LOAD_BYTES_PER_S


def probe_seconds(path) -> float:
    """How long a child-process probe may take to read ``path``."""
    return _from_env("XLATE_PROBE_TIMEOUT") or PROBE_BASE_S + _size(path) / PROBE_BYTES_PER_S


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.3g}"


def expired(path, seconds: float, variable: str = "XLATE_LOAD_TIMEOUT") -> DamagedFileError:
    return DamagedFileError(
        f"{path}: the file could not be read within {_seconds_text(seconds)} s; it is probably damaged",
        hint=f"write it again from the source model; a healthy but very large file on a slow disk can be given "
             f"more time with {variable}=SECONDS",
    )


# --- a reader in a child process -----------------------------------------------------------------


def run_probe(script: Path, path, *, what: str, seconds: float | None = None, memory: int | None = None) -> dict:
    """Run ``python script PATH MEMORY_BYTES`` and return the JSON object it prints.

    The script sets its own address-space limit from MEMORY_BYTES first thing (no preexec_fn: this
    process may have threads). Its verdict is ``{"ok": true}`` or ``{"error": "one line"}``; an
    error, a timeout, a signal or a failed start each raise ``DamagedFileError``.
    """
    path = Path(path)
    seconds = probe_seconds(path) if seconds is None else seconds
    memory = PROBE_MEMORY_BASE + 2 * _size(path) if memory is None else memory
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONBREAKPOINT")}
    try:
        done = subprocess.run([sys.executable, str(script), str(path), str(memory)], capture_output=True, text=True,
                              timeout=seconds, env=env, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise expired(path, seconds, "XLATE_PROBE_TIMEOUT") from None
    verdict = _last_json(done.stdout)
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else "a signal"
        raise DamagedFileError(f"{path} is damaged: reading it crashed {what} ({name})")
    if verdict is None:
        tail = " ".join(done.stderr.split())[-200:]
        raise DamagedFileError(f"{path}: {what} could not read it (exit {done.returncode}{': ' + tail if tail else ''})")
    if "error" in verdict:
        raise DamagedFileError(f"{path} is damaged: {verdict['error']}")
    return verdict


def _last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


# --- a deadline on a load in this process ------------------------------------------------------


class _Expired(BaseException):
    """Raised into the loading thread when its deadline passes: a BaseException, so the loaders'
    own ``except Exception`` clauses do not turn it into a different error."""


def allow_hard_exit() -> None:
    """The command line calls this: past a deadline it may print the error and exit the process."""
    global _hard_exit
    _hard_exit = True


@contextlib.contextmanager
def removed_on_hard_exit(*paths, empty_folders=()):
    """While inside, a hard exit on an expired deadline first removes ``paths`` (temporary outputs),
    then each of ``empty_folders`` that is empty by then (parent folders made for the output)."""
    key = next(_keys)
    with _pending_lock:
        _pending[key] = ([Path(p) for p in paths], [Path(p) for p in empty_folders])
    try:
        yield
    finally:
        with _pending_lock:
            _pending.pop(key, None)


def _exit_now(error: DamagedFileError) -> None:
    """The watchdog's last resort: the main thread is stuck in C code that released the GIL."""
    with _pending_lock:
        pending = list(_pending.values())
    for paths, folders in pending:
        for p in paths:
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        for folder in folders:
            with contextlib.suppress(OSError):
                folder.rmdir()
    text = f"error: {error}\nhint: {error.hint}\n"
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", "replace"))
    os._exit(error.exit_code)


@contextlib.contextmanager
def deadline(path, seconds: float | None = None):
    """Bound the block (a framework loading ``path``) to ``seconds`` (default ``load_seconds``)."""
    if getattr(_active, "on", False):  # an outer deadline already covers this load
        yield
        return
    seconds = load_seconds(path) if seconds is None else seconds
    error = expired(path, seconds)
    on_main = threading.current_thread() is threading.main_thread()
    use_alarm = on_main and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    done = threading.Event()
    previous = None
    if use_alarm:
        def _alarm(signum, frame):
            raise _Expired()

        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    watchdog = None
    if _hard_exit and on_main:
        watchdog = threading.Thread(target=lambda: done.wait(seconds + GRACE_S) or _exit_now(error),
                                    name="xlate-load-deadline", daemon=True)
        watchdog.start()
    _active.on = True
    try:
        try:
            yield
        finally:  # an alarm that fires while this runs is still caught below
            _active.on = False
            done.set()
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
    except _Expired:
        raise error from None


def bounded_load(fn):
    """Decorate a load function whose first argument is the path: its body runs under ``deadline``."""

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        with deadline(path):
            return fn(path, *args, **kwargs)

    return wrapper
