"""The values the torch -> Keras emitter and its converters pass around: ``Const`` (known at
conversion time), ``Value`` (a tensor of the Keras graph, with its layout) and
``DynamicShapeError``.

Owns only these plain types. It sits below ``emit`` and ``converters/*`` so both can import it;
it must not import either of them, the registry, keras or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .source_graph import TensorMeta


class DynamicShapeError(Exception):
    """A dynamic size the Keras graph cannot express here; the converter keeps the input sizes it
    depends on (``symbols``, filled in by the emitter) static and converts again."""

    def __init__(self, message: str, symbols=None):
        super().__init__(message)
        self.symbols = set(symbols or ())
        self.where = ""


@dataclass
class Const:
    """A value known at conversion time (a buffer, a folded constant), in torch layout."""

    array: np.ndarray
    path: str = ""  # torch parameter/buffer path when it is one
    trainable: bool = False
    # its Constant/Parameter layer's output per layout, made once. Kept on the object, not in a
    # cache keyed by id(): a freed temporary's id is soon reused, and a hit on it would silently
    # return another constant's layer.
    tensors: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def shape(self):
        return self.array.shape


@dataclass
class Value:
    """A dynamic tensor of the torch graph as it exists in the Keras graph."""

    meta: TensorMeta
    perm: tuple  # layout of the canonical Keras tensor (see plan.py)
    tensors: dict = field(default_factory=dict)  # perm -> KerasTensor
    # A flatten of a channels-last tensor keeps Keras order: feature j here is torch feature
    # feature_order[j]. ``unflattened`` rebuilds the torch-order tensor when a consumer needs it.
    feature_order: np.ndarray | None = None
    flat_chw: tuple | None = None  # the (C, *S) block a channels-last flatten came from
    unflattened: object = None

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def tensor(self):
        return self.tensors[self.perm]
