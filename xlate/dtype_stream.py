"""Running a large torch module in another dtype one part at a time.

The parity gate's reference runs the source in float64 (xlate.floor). ``module.to(torch.float64)``
holds a float64 copy of every weight at once: twice the float32 model, 8.3 GB for a 1 B-parameter
decoder, on top of the converted model. ``DtypeStream`` instead moves each part of the module to
the dtype only while that part runs (a forward pre-hook) and puts the original tensor back when it
returns (a forward hook that runs on errors too), so at most the running parts exist in float64.

The parts are whole subtrees whose weights fit a budget (a decoder layer), else a module's own
tensors with its children split further. Containers torch never calls (``ModuleList``,
``ModuleDict``, ``ParameterList``, ``ParameterDict``) give their own tensors to the nearest called
ancestor. A tensor shared by several parts (tied embeddings) is moved once while any of them runs,
by a count. A float32 value is exact in float64, so a weight that code outside its module reads is
still exact where torch promotes it (``x + w``). An op that refuses mixed dtypes raises instead
(``F.linear``): ``xlate.runners.TorchRunner`` then moves the whole module and runs again.
"""

from __future__ import annotations

#: weights (bytes, all floating tensors) from which a float64 run is streamed rather than a whole copy
STREAM_ABOVE_BYTES = 256 * 2**20

#: a part is at most this share of the module's floating bytes (or MIN_PART_BYTES, if more)
PART_SHARE = 1 / 16
MIN_PART_BYTES = 32 * 2**20


def floating_bytes(module) -> int:
    """The bytes of the module's floating parameters and buffers, each counted once."""
    seen, total = set(), 0
    for t in _tensors(module, recurse=True):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _tensors(module, recurse: bool):
    mods = module.modules() if recurse else [module]
    for m in mods:
        for table in (m._parameters, m._buffers):
            for t in table.values():
                if t is not None and t.is_floating_point():
                    yield t


def _uncalled(module) -> bool:
    from torch import nn

    return isinstance(module, (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict))


def _own(module) -> list:
    """The module's own floating tensors, with those of the never-called containers below it."""
    out = list(_tensors(module, recurse=False))
    for child in module.children():
        if _uncalled(child):
            out += _own(child)
    return out


def parts(module, budget: int) -> list:
    """(module whose forward moves them, its tensors) for every part of ``module`` (see the doc)."""
    out: list = []

    def walk(m):
        if _uncalled(m):
            for child in m.children():  # its own tensors went to the caller (_own)
                walk(child)
            return
        if floating_bytes(m) <= budget:
            out.append((m, _unique(_tensors(m, recurse=True))))
            return
        mine = _unique(_own(m))
        if mine:
            out.append((m, mine))
        for child in m.children():
            walk(child)

    walk(module)
    return out


def _unique(tensors) -> list:
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


class DtypeStream:
    """Forward hooks that keep each part of ``module`` in ``dtype`` only while it runs (``total``:
    its floating bytes, when the caller has them). ``close()`` removes them and puts every tensor
    back; ``balanced`` says no part was left moved."""

    def __init__(self, module, dtype, total: int | None = None):
        self.dtype = dtype
        self.count: dict[int, int] = {}
        self.original: dict[int, tuple] = {}  # id -> (tensor, its data before the move)
        total = floating_bytes(module) if total is None else total
        budget = max(int(total * PART_SHARE), MIN_PART_BYTES)
        self.handles = []
        for mod, tensors in parts(module, budget):
            self.handles.append(mod.register_forward_pre_hook(lambda m, a, ts=tensors: self._move(ts)))
            self.handles.append(mod.register_forward_hook(lambda m, a, o, ts=tensors: self._back(ts),
                                                          always_call=True))

    def _move(self, tensors) -> None:
        for t in tensors:
            k = id(t)
            c = self.count.get(k, 0)
            if c == 0 and t.dtype != self.dtype:
                self.original[k] = (t, t.data)
                t.data = t.data.to(self.dtype)
            self.count[k] = c + 1

    def _back(self, tensors) -> None:
        for t in tensors:
            k = id(t)
            c = self.count.get(k, 0) - 1
            self.count[k] = max(c, 0)
            if c <= 0 and k in self.original:
                tensor, data = self.original.pop(k)
                tensor.data = data

    @property
    def balanced(self) -> bool:
        return not self.original

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        for tensor, data in self.original.values():
            tensor.data = data
        self.original.clear()
        self.count.clear()
