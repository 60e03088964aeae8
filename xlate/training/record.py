"""What a training-setup translation did, attached to the object it returns.

Plain data: the table row that drove it, the source and target classes, whether the target is an
exact emulation of the source's formula (and which class), and notes a user must know.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields


@dataclass
class Translation:
    """One translated optimizer, loss, schedule or callback.

    row: the table row id; source/target: class names ("torch.optim.Adam", "xlate.TorchAdam");
    emulated: the target implements the source's formula in the other framework (True) or is the
    target's native class, exact for these arguments (False).
    """

    row: str
    direction: str  # "torch2keras" | "keras2torch"
    source: str
    target: str
    emulated: bool
    notes: list[str] = field(default_factory=list)
    rows_used: Counter | None = None  # default: the one row that drove it, Counter({row: 1})
    stepping: str | None = None  # schedules: "epoch" | "batch"

    def __post_init__(self):
        if self.rows_used is None:
            self.rows_used = Counter({self.row: 1})

    def to_dict(self) -> dict:
        # dataclasses.asdict would rebuild the Counter from (key, value) pairs, counting the pairs
        return {f.name: (dict(getattr(self, f.name)) if f.name == "rows_used" else getattr(self, f.name))
                for f in fields(self)}

    def describe(self) -> str:
        kind = "exact emulation" if self.emulated else "native, exact for these arguments"
        return f"{self.source} -> {self.target} ({kind}; row {self.row})"


def attach_translation(obj, translation: Translation):
    """Attach ``translation`` to ``obj`` (returned for chaining)."""
    object.__setattr__(obj, "_xlate_translation", translation)
    return obj


def translation_of(obj) -> Translation | None:
    """The translation record of an object returned by a translate_* function, if any."""
    return getattr(obj, "_xlate_translation", None)
