"""The user's module as it was: state a forward pass writes into its modules, put back.

Model code caches in forward: HF LeViT keeps ``attention_bias_cache[device] =
attention_biases[:, idxs]`` in eval mode, rotary embeddings keep their cos/sin tables. Traced,
such a cache would keep an fx Proxy or a fake tensor (and break the next trace), and a real run
would leave a tensor computed from parameters, which a later run then reads as a constant (the
parameters behind it no longer trainable). So every trace and every recorded run starts from the
module's own attributes, and the module is given back as it came. A buffer the forward
reassigns (timm ConViT rebuilds ``rel_indices`` when the token count changes) is put back the same
way: traced, it would hold the tracer's Proxy. Owns only that; it does not touch parameters or
submodules (torch's own bookkeeping), nor patch anything.
"""

from __future__ import annotations

import copy
import functools


@functools.cache
def _torch_internals() -> frozenset:
    import torch

    return frozenset(vars(torch.nn.Module()))


class ModuleState:
    """A shallow snapshot of every submodule's plain attributes; ``restore()`` puts them back
    (containers in place, so that references to them stay valid)."""

    def __init__(self, module):
        self._internals = internals = _torch_internals()
        self._saved = []
        for m in module.modules():
            attrs = {k: v for k, v in vars(m).items() if k not in internals}
            contents = {k: copy.copy(v) for k, v in attrs.items() if type(v) in (dict, list, set)}
            self._saved.append((m, attrs, contents, dict(m._buffers)))

    def restore(self) -> None:
        for m, attrs, contents, buffers in self._saved:
            if m._buffers.keys() != buffers.keys() or any(m._buffers[k] is not v for k, v in buffers.items()):
                _refill(m._buffers, buffers)
            now = vars(m)
            for k in [k for k in now if k not in attrs and k not in self._internals]:
                del now[k]  # set during a run (a cache created on first use)
            for k, v in attrs.items():
                if now.get(k) is not v:
                    now[k] = v
                if k in contents:
                    _refill(v, contents[k])


def _refill(container, saved) -> None:
    # no comparison first: a cache's values may be tensors, whose == is elementwise
    if isinstance(container, list):
        container[:] = saved
    else:
        container.clear()
        container.update(saved)
