"""The mapping table: one row per PyTorch <-> Keras equivalence, read in both directions.

Rows are data, kept in ``mappings/*.toml`` (shipped inside the wheel as ``xlate/mappings``).
A row names both sides, the argument correspondence with every default difference written out,
the weight transforms by name (``xlate.transforms``), the converter hook that does what data
cannot say, notes, limitations and samples from which per-row parity tests are generated.

This module only loads and validates rows; it imports neither torch nor TensorFlow.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from .errors import TableError
from .transforms import get_transform

FAMILIES = ("layer", "activation", "op", "optimizer", "loss", "schedule", "callback", "training")
DIRECTIONS = ("torch2keras", "keras2torch")
# How a limitation is dealt with: matched exactly by an emulation, approximated with a stated bound,
# refused with an error, or not applicable to inference (e.g. training-only dynamics).
HANDLING = ("emulated", "bounded", "error", "training-only", "documented")

# Named, invertible conversions of argument values (torch value <-> keras value).
VALUE_CONVERSIONS = {
    "same": (lambda v: v, lambda v: v),
    "one_minus": (lambda v: None if v is None else round(1.0 - v, 12), lambda v: round(1.0 - v, 12)),
    "not": (lambda v: not v, lambda v: not v),
    "tuple": (lambda v: tuple(v) if isinstance(v, (list, tuple)) else v, lambda v: v),
    # GELU: torch approximate="none"|"tanh" <-> keras approximate=False|True
    "tanh_flag": (lambda v: v == "tanh", lambda v: "tanh" if v else "none"),
}


@dataclass(frozen=True)
class ArgMap:
    """One argument's correspondence. ``torch``/``keras`` is None where only one side has it."""

    torch: str | None
    keras: str | None
    convert: str = "same"
    torch_default: Any = None
    keras_default: Any = None
    note: str = ""

    @property
    def defaults_differ(self) -> bool:
        return self.torch is not None and self.keras is not None and self.torch_default != self.keras_default


@dataclass(frozen=True)
class WeightMap:
    """Which torch tensors become which Keras variables, through which named transform."""

    torch: tuple[str, ...]
    keras: tuple[str, ...]
    transform: str = "identity"
    note: str = ""


@dataclass(frozen=True)
class Limitation:
    text: str
    direction: str = "both"
    handling: str = "documented"


@dataclass(frozen=True)
class Sample:
    """A parity-test case. ``torch``/``keras`` are constructor kwargs or a source expression;
    ``inputs`` are shapes in the torch layout (``int_high`` makes them integer in [0, high))."""

    torch: Any = None
    keras: Any = None
    inputs: tuple[tuple[int, ...], ...] = ()
    int_high: int | None = None
    keras_inputs: tuple[tuple[int, ...], ...] | None = None
    torch_cls: str = ""  # construct this torch.nn class instead of the row's own (an alias)
    call: str = ""  # how the torch test model calls the module, e.g. "m(x0, x0, x0)"; default m(*inputs)
    tol: float | None = None
    train: bool = False
    model: str = ""  # training rows: the test model when not the default MLP (e.g. "mlp-nobias")
    keras_cls: str = ""  # construct this Keras class instead of the row's own (an alias, e.g. xlate.TorchX)
    id: str = ""


@dataclass(frozen=True)
class Row:
    id: str
    family: str
    torch: str
    keras: str
    summary: str = ""
    hook: str | None = None
    keras_op: str = ""  # keras.ops function a generic hook calls
    torch_fn: str = ""  # torch function a generic hook calls / generated code writes
    aten: tuple[str, ...] = ()
    # rows that convert it instead, where torch.export decomposes the torch op (softsign -> abs/add/div)
    traced_as: tuple[str, ...] = ()
    torch_aliases: tuple[str, ...] = ()
    keras_aliases: tuple[str, ...] = ()
    directions: tuple[str, ...] = DIRECTIONS
    args: tuple[ArgMap, ...] = ()
    weights: tuple[WeightMap, ...] = ()
    notes: tuple[str, ...] = ()
    limitations: tuple[Limitation, ...] = ()
    samples: tuple[Sample, ...] = ()
    source: str = ""  # the file the row came from, for error messages

    def arg(self, *, torch: str | None = None, keras: str | None = None) -> ArgMap:
        for a in self.args:
            if (torch is not None and a.torch == torch) or (keras is not None and a.keras == keras):
                return a
        raise KeyError(f"row {self.id} has no argument {torch or keras!r}")

    def to_keras_value(self, torch_arg: str, value):
        a = self.arg(torch=torch_arg)
        return VALUE_CONVERSIONS[a.convert][0](value)

    def to_torch_value(self, keras_arg: str, value):
        a = self.arg(keras=keras_arg)
        return VALUE_CONVERSIONS[a.convert][1](value)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d


def _tuple(v) -> tuple:
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        return tuple(v)
    return (v,)


def _build_row(raw: dict, source: str) -> Row:
    raw = dict(raw)
    try:
        args = tuple(ArgMap(**a) for a in raw.pop("args", ()))
        weights = tuple(
            WeightMap(torch=_tuple(w["torch"]), keras=_tuple(w["keras"]), transform=w.get("transform", "identity"),
                      note=w.get("note", ""))
            for w in raw.pop("weights", ())
        )
        limitations = tuple(
            Limitation(text=x) if isinstance(x, str) else Limitation(**x) for x in raw.pop("limitations", ())
        )
        samples = tuple(
            Sample(**{**s, "inputs": tuple(tuple(i) for i in s.get("inputs", ())),
                      "keras_inputs": tuple(tuple(i) for i in s["keras_inputs"]) if "keras_inputs" in s else None})
            for s in raw.pop("samples", ())
        )
        for key in ("aten", "traced_as", "torch_aliases", "keras_aliases", "directions", "notes"):
            if key in raw:
                raw[key] = _tuple(raw[key])
        return Row(**raw, args=args, weights=weights, limitations=limitations, samples=samples, source=source)
    except TypeError as e:
        raise TableError(f"{source}: malformed row {raw.get('id', '?')!r}: {e}") from None


def _validate(row: Row) -> None:
    where = f"{row.source}: row {row.id!r}"
    if row.family not in FAMILIES:
        raise TableError(f"{where}: unknown family {row.family!r}")
    for d in row.directions:
        if d not in DIRECTIONS:
            raise TableError(f"{where}: unknown direction {d!r}")
    for a in row.args:
        if a.convert not in VALUE_CONVERSIONS:
            raise TableError(f"{where}: unknown value conversion {a.convert!r}")
    for w in row.weights:
        t = get_transform(w.transform)
        if (len(w.torch), len(w.keras)) != (t.torch_arity, t.keras_arity):
            raise TableError(f"{where}: transform {t.name} maps {t.torch_arity}->{t.keras_arity} tensors, "
                             f"the row binds {len(w.torch)}->{len(w.keras)}")
    for lim in row.limitations:
        if lim.handling not in HANDLING or lim.direction not in (*DIRECTIONS, "both"):
            raise TableError(f"{where}: bad limitation {lim}")


def mappings_dir() -> Path:
    """Where the table files are: inside the installed package, or at the top of a source checkout."""
    packaged = resources.files("xlate") / "mappings"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "mappings"
    if checkout.is_dir():
        return checkout
    raise TableError("the mapping table is missing: neither xlate/mappings nor ./mappings exists")


class Table:
    """All rows, indexed for the converters' look-ups."""

    def __init__(self, rows: list[Row]):
        self.rows = rows
        self.by_id: dict[str, Row] = {}
        self.by_torch: dict[str, Row] = {}
        self.by_keras: dict[str, Row] = {}
        self.by_aten: dict[str, Row] = {}
        for row in rows:
            if row.id in self.by_id:
                raise TableError(f"{row.source}: duplicate row id {row.id!r} (also in {self.by_id[row.id].source})")
            self.by_id[row.id] = row
            self._index(self.by_torch, (row.torch, *row.torch_aliases), row, "torch")
            self._index(self.by_keras, (row.keras, *row.keras_aliases), row, "keras")
            self._index(self.by_aten, row.aten, row, "aten")

    @staticmethod
    def _index(index: dict, names, row: Row, side: str) -> None:
        for name in names:
            # "-" marks a side with no single counterpart; "Conv2d(groups=C)" describes a variant of
            # a class another row owns: neither is a look-up key.
            if not name or name == "-" or "(" in name:
                continue
            other = index.get(name)
            if other is not None and other.id != row.id:
                raise TableError(f"{row.source}: {side} name {name!r} claimed by rows {other.id!r} and {row.id!r}")
            index[name] = row

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def family(self, family: str) -> list[Row]:
        return [r for r in self.rows if r.family == family]

    def row(self, row_id: str) -> Row:
        try:
            return self.by_id[row_id]
        except KeyError:
            raise TableError(f"no table row {row_id!r}") from None


def load_rows(directory: Path | None = None) -> list[Row]:
    directory = directory or mappings_dir()
    rows = []
    for path in sorted(Path(directory).glob("*.toml")):
        if path.name.startswith("_"):
            continue
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise TableError(f"{path.name}: {e}") from None
        for raw in data.get("row", []):
            row = _build_row(raw, path.name)
            _validate(row)
            rows.append(row)
    return rows


@functools.cache
def table() -> Table:
    """The table shipped with xlate (loaded once)."""
    return Table(load_rows())


def known_unsupported() -> dict[str, dict[str, str]]:
    """Names xlate knows it does not convert, with the reason: ``{"torch": {...}, "keras": {...}, "aten": {...}}``."""
    path = mappings_dir() / "_unsupported.toml"
    with open(path, "rb") as f:
        return tomllib.load(f)
