"""Progress of long work, from the library to whoever shows it.

Long loops (the torch -> Keras emitter's layers, the quantization gate's samples) call
``report(done, total, what)``; it costs one context-variable lookup when nobody listens. The command
line listens (``xlate.commands._common.Steps``) and draws a progress display on a terminal, plain
lines in a log, or nothing under ``--quiet``. Library users may listen too::

    with xlate.progress.listening(lambda done, total, what: print(done, total, what)):
        xlate.torch_to_keras(module, inputs)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Listener = Callable[[int, int, str], None]

_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("xlate_progress", default=None)


def report(done: int, total: int, what: str = "layers") -> None:
    """``done`` of ``total`` items (``what``: "layers", "samples"...) of the current stage are done."""
    listener = _listener.get()
    if listener is not None:
        listener(done, total, what)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the ``report`` calls made inside the block to ``listener(done, total, what)``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
