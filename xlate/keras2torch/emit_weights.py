"""The emitter's weight side: parameters, buffers and Keras weights ported into the state dict.

Owns how Keras arrays become entries of the generated module's state dict: through a table
row's named transforms (``port``), or as a declared ``nn.Parameter``/buffer. It must not emit
``forward`` statements or decide layouts; the Emitter (``emit.py``) mixes it in and supplies
``_attr_name``, ``init_lines`` and ``state``.
"""

from __future__ import annotations

import numpy as np

from ..frameworks import accepted_kwargs
from ..table import Row
from ..transforms import get_transform
from .registry import NotConvertible
from .source import literal, torch_dtype


class WeightSink:
    """Mixin of Emitter: declares parameters and buffers and ports Keras weights into ``state``."""

    state: dict
    init_lines: list

    def parameter(self, name: str, array: np.ndarray, *, trainable: bool = True) -> str:
        attr = self._attr_name(name)
        shape = ", ".join(str(d) for d in array.shape) or "()"
        if trainable:
            self.init_lines.append(f"self.{attr} = nn.Parameter(torch.zeros({shape}))")
        else:
            self.init_lines.append(
                f"self.{attr} = nn.Parameter(torch.zeros({shape}), requires_grad=False)")
        self.state[attr] = np.asarray(array, dtype=np.float32)
        return attr

    def buffer(self, name: str, array: np.ndarray) -> str:
        attr = self._attr_name(name)
        array = np.asarray(array)
        shape = literal(tuple(int(d) for d in array.shape))
        dtype = torch_dtype(array.dtype)
        self.init_lines.append(f'self.register_buffer("{attr}", torch.zeros({shape}, dtype={dtype}))')
        self.state[attr] = array
        return attr

    def keras_weights(self, layer) -> dict[str, np.ndarray]:
        """The layer's variables by path relative to the layer ('kernel', 'query/kernel'...), and
        by the attribute that holds them (custom layers often leave a variable unnamed)."""
        out = {}
        prefix = f"{layer.path}/"
        by_id = {}
        for v in layer.weights:
            rel = v.path.removeprefix(prefix)
            out[rel] = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            by_id[id(v)] = rel
        for attr, value in vars(layer).items():
            if id(value) in by_id and attr not in out and not attr.startswith("_"):
                out[attr] = out[by_id[id(value)]]
        return out

    def port(self, row: Row, attr: str, arrays: dict[str, np.ndarray], *, override: dict | None = None,
             params: dict | None = None, suffix: str = "", attrs: dict | None = None, sep: str = ".") -> None:
        """Move Keras arrays into the state dict through ``row.weights`` (named transforms only).

        ``arrays`` are looked up by name or by path suffix ('kernel' finds 'lstm_cell/kernel');
        ``override`` swaps a transform by name for a layout reason (flatten_dense_kernel);
        ``suffix`` is appended to torch names ('_reverse'); ``attrs`` routes torch names with a
        prefix ('depthwise.weight') to separate submodules.
        """
        for w in row.weights:
            found = [_lookup(arrays, k) for k in w.keras]
            if all(f is None for f in found):
                continue  # e.g. no bias (use_bias=False)
            if any(f is None for f in found):
                missing = [k for k, f in zip(w.keras, found) if f is None]
                raise NotConvertible(f"weights {missing} missing for row {row.id}")
            name = (override or {}).get(w.transform, w.transform)
            transform = get_transform(name)
            kwargs = accepted_kwargs(transform.inverse, (params or {}).get(name, {}))
            torch_arrays = transform.to_torch(*found, **kwargs)
            for tname, array in zip(w.torch, torch_arrays):
                tname = tname + suffix
                if attrs and "." in tname:
                    head, rest = tname.split(".", 1)
                    key = f"{attrs[head]}.{rest}"
                else:
                    key = f"{attr}{sep}{tname}"
                self.state[key] = array


def _lookup(arrays: dict, name: str):
    if name in arrays:
        return arrays[name]
    hits = [k for k in arrays if k.endswith("/" + name)]
    return arrays[hits[0]] if len(hits) == 1 else None
