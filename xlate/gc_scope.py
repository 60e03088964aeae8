"""Cyclic garbage collection that looks at the conversion's own objects only.

A conversion creates many long-lived objects (graph nodes, Keras layers, variables). Each time their
number grows by a quarter of the objects the process already tracks, CPython runs a full
collection, which walks every object of the process: torch, TensorFlow, the user's model and its
library. Measured on timm rexnetr_100 in the zoo's process: 2.2 s of a 6.1 s conversion was such
collections (0.04 s with the process's earlier objects frozen). ``new_objects_only`` freezes what
existed before the conversion (``gc.freeze``) and unfreezes it afterwards, so garbage the conversion
makes is still collected while it runs; nothing else about the process's collector changes.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.Lock()
_depth = 0
_froze = False


@contextlib.contextmanager
def new_objects_only():
    """Freeze the process's objects for the duration (nested and concurrent scopes share one freeze,
    undone when the last one exits). A process that froze objects itself is left as it is: its
    frozen objects are already outside collections, and unfreezing them is not ours to do."""
    global _depth, _froze
    with _lock:
        if _depth == 0:
            _froze = gc.get_freeze_count() == 0 and gc.isenabled()
            if _froze:
                gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _froze:
                gc.unfreeze()
                _froze = False
