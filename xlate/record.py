"""The conversion record: what a converter did, attached to the model it returns.

Plain data shared by the converters (which fill it), the parity checker (which reads the I/O
layout from it) and per-layer localization (which aligns source and target layers with it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .frameworks import IOSpec


@dataclass
class LayerRecord:
    """One source layer and where its output lives in the target model.

    source: torch module path (e.g. "layer1.0.conv1") or Keras layer name.
    target: the target-side name: a Keras operation name (``model.operations``) or a torch
            submodule path in the generated module.
    output_perm: permutation that turns the target's output of this layer into the source's
            layout (None: same layout).
    feature_order: for a flattened output kept in the target's element order, the source
            feature index at each target position (target[..., j] == source[..., feature_order[j]]).
    A module called several times has one record per call, in call order.
    """

    source: str
    target: str
    row: str | None = None
    output_perm: tuple[int, ...] | None = None
    feature_order: list[int] | None = None


@dataclass(frozen=True)
class WeightRecord:
    """Source tensors (torch parameter/buffer paths or Keras variable paths) that became target
    tensors, through a named transform (``xlate.transforms``) with its parameters. Optimizer
    state ports through the same pairs."""

    torch: tuple[str, ...]
    keras: tuple[str, ...]
    transform: str
    params: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class CoverageItem:
    """One layer/op of a model before converting it (``xlate inspect``) and the row that converts it."""

    name: str  # the traced node, or the Keras layer/op name
    op: str  # the ATen op or module class (torch); the table key, e.g. "keras.layers.Conv2D" (Keras)
    where: str  # the torch module path, or the path in nested Keras models
    row_id: str | None  # the row that converts it; None when the direct path cannot
    reason: str = ""
    route: str = ""  # "table", "traced" (captured with torch.export) or "unsupported"; "" derives it from row_id

    def to_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "where": self.where, "row": self.row_id,
                "reason": self.reason or "", "route": self.route or ("table" if self.row_id else "unsupported")}


@dataclass
class ConversionRecord:
    direction: str  # "torch2keras" | "keras2torch"
    path: str  # "direct" | "onnx"
    io: IOSpec
    layers: list[LayerRecord] = field(default_factory=list)
    weights: list[WeightRecord] = field(default_factory=list)
    rows_used: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: per input axis: {"input", "axis", "size", "dynamic", "low", "high", "reason", ...} (torch -> Keras)
    dims: list[dict] = field(default_factory=list)


def attach(model, record: ConversionRecord) -> None:
    """Attach the record (and its I/O spec, which the parity checker reads) to a model object."""
    object.__setattr__(model, "_xlate_record", record)
    object.__setattr__(model, "_xlate_io", record.io)


def record_of(model) -> ConversionRecord | None:
    return getattr(model, "_xlate_record", None)
