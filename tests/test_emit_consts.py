"""The emitter's constant cache: one Keras constant per torch constant, never another's."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_constants_made_for_one_call_never_share_a_cache_entry():
    """A Const made for one call (a broadcast or permuted copy) is freed right after it; CPython
    gives the next one the same id(), which keyed the cache, so Llama's rotary sin once came out
    as its cos (in about one conversion in eight)."""
    from xlate.torch2keras.emit import Const, Emitter
    from xlate.torch2keras.fxtrace import trace_fast_or_export

    emitter = Emitter(trace_fast_or_export(torch.nn.Linear(3, 2).eval(), (torch.randn(2, 3),)))
    emitter.run()
    tensors = []
    for i in range(40):  # each Const is dropped as soon as const_tensor returns
        tensors.append(emitter.const_tensor(Const(np.full(80, float(i), np.float32)), None))
    assert len({id(t) for t in tensors}) == 40
    values = [a.values["value"][0] for a in emitter.assignments if "value" in a.values]
    assert values[-40:] == [float(i) for i in range(40)]
