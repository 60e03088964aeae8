"""Giving freed memory back to the operating system between conversion stages.

Tracing runs the model twice; its activations are many mid-sized blocks that glibc's malloc
keeps in its heaps once freed (only blocks above its mmap threshold, at most 32 MB, go back to
the system on free). Without a trim they stay resident while the Keras variables are created,
which come from other, larger allocations: about half the weights' size on top of a 150 M
parameter conversion. ``release_free_memory`` asks glibc to return free heap pages
(``malloc_trim(0)``); elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


#: weights below this size leave too little behind for a full garbage collection to pay: with
#: torch, TensorFlow and Keras loaded, one ``gc.collect()`` walks millions of objects (about 0.4 s,
#: a quarter of a small CNN's conversion), while the trace's activations are freed by reference
#: counting anyway and only need the trim
COLLECT_ABOVE_BYTES = 256 * 2**20


def release_free_memory(weight_bytes: int | None = None) -> None:
    """Hand free heap pages back to the OS (glibc only; a no-op elsewhere), after a full garbage
    collection when the model's weights (``weight_bytes``; unknown counts as large) are at least
    ``COLLECT_ABOVE_BYTES``: there, cycles still holding tensors are worth finding."""
    if weight_bytes is None or weight_bytes >= COLLECT_ABOVE_BYTES:
        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
