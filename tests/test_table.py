"""The mapping table's integrity: its size and spread, that every row's hook exists in each
direction it claims, samples for every convertible row, and coverage: every torch.nn module
and keras.layers class is either in a row or in the known-unsupported list (jax2tf-style)."""

import inspect

import pytest

from xlate.errors import TableError
from xlate.table import DIRECTIONS, FAMILIES, Table, known_unsupported, load_rows, table

MODEL_FAMILIES = ("layer", "activation", "op")


def test_at_least_80_rows_spanning_every_family():
    rows = table().rows
    assert len(rows) >= 80
    assert {r.family for r in rows} == set(FAMILIES)
    for family in FAMILIES:
        assert table().family(family), family


def test_every_model_row_has_its_converter_in_each_direction():
    import xlate.keras2torch.converters
    import xlate.torch2keras.converters  # noqa: F401
    from xlate.keras2torch import registry as k2t
    from xlate.torch2keras import registry as t2k

    registries = {"torch2keras": t2k.CONVERTERS, "keras2torch": k2t.CONVERTERS}
    missing = [(r.id, d, r.hook) for r in table() if r.family in MODEL_FAMILIES for d in r.directions
               if r.hook not in registries[d]]
    assert not missing


def test_every_training_row_has_its_hook():
    from xlate.training import losses, optimizers, schedules

    hooks = {"optimizer": set(optimizers.HOOKS), "loss": set(losses.HOOKS),
             "schedule": set(schedules._T2K) | set(schedules._K2T),
             "callback": set(schedules._T2K) | set(schedules._K2T)}
    missing = [(r.id, r.hook) for r in table() if r.family in hooks and r.hook not in hooks[r.family]]
    assert not missing


def test_every_model_row_has_a_sample_for_each_direction():
    lacking = []
    for r in table():
        if r.family not in MODEL_FAMILIES:
            continue
        if "torch2keras" in r.directions and not any(s.torch is not None for s in r.samples):
            lacking.append((r.id, "torch2keras"))
        # rows named after what keras.applications define need the application to exist
        if ("keras2torch" in r.directions and not any(s.keras is not None for s in r.samples)
                and r.id not in ("layer_scale", "input_layer")):
            lacking.append((r.id, "keras2torch"))
    assert not lacking


def test_rows_name_only_known_transforms_and_directions():
    for r in table():
        assert set(r.directions) <= set(DIRECTIONS)


def test_duplicate_ids_and_claims_are_rejected(tmp_path):
    row = '[[row]]\nid = "x"\nfamily = "op"\ntorch = "torch.x"\nkeras = "keras.ops.x"\n'
    (tmp_path / "a.toml").write_text(row)
    (tmp_path / "b.toml").write_text(row)
    with pytest.raises(TableError, match="duplicate row id"):
        Table(load_rows(tmp_path))
    (tmp_path / "b.toml").write_text(row.replace('"x"', '"y"', 1))
    with pytest.raises(TableError, match="claimed by rows"):
        Table(load_rows(tmp_path))


def test_a_row_naming_an_unknown_transform_is_rejected(tmp_path):
    (tmp_path / "a.toml").write_text('[[row]]\nid = "x"\nfamily = "layer"\ntorch = "t"\nkeras = "k"\n'
                                     'weights = [{ torch = "w", keras = "k", transform = "rotate" }]\n')
    with pytest.raises(TableError, match="unknown weight transform"):
        load_rows(tmp_path)


def _public_classes(module, base):
    return {f"{module.__name__.split('.')[0]}.{path}.{name}"
            for path, name, cls in _walk(module, base)}


def _walk(module, base):
    for name, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, base) and not name.startswith("_"):
            yield module.__name__.split(".", 1)[1], name, cls


def _named(t, side: str):
    """Class names that a row converts *from* that side (torch2keras rows for torch names...)."""
    direction = "torch2keras" if side == "torch" else "keras2torch"
    names = set()
    for r in t:
        if direction not in r.directions:
            continue
        for n in ((r.torch, *r.torch_aliases) if side == "torch" else (r.keras, *r.keras_aliases)):
            names.add(n.split("(")[0].strip())
    return names


# abstract bases, containers and wrappers that are not layers of their own
TORCH_STRUCTURAL = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                    "Container", "RNNBase", "RNNCellBase", "Transformer", "TransformerEncoder",
                    "TransformerDecoder", "TransformerEncoderLayer", "TransformerDecoderLayer"}
# Activation dispatches on its string to the activation rows; cells live inside their RNN layer
KERAS_STRUCTURAL = {"Layer", "InputSpec", "Input", "Wrapper", "Activation", "GRUCell", "LSTMCell", "StackedRNNCells",
                    "SimpleRNNCell"}


def test_every_torch_nn_module_is_mapped_or_listed_unsupported():
    from torch import nn

    mapped = _named(table(), "torch")
    unsupported = set(known_unsupported()["torch"])
    assert not mapped & unsupported, f"both converted and listed unsupported: {mapped & unsupported}"
    loss_like = {n for n, c in inspect.getmembers(nn, inspect.isclass) if issubclass(c, nn.modules.loss._Loss)}
    gaps = []
    for name, cls in inspect.getmembers(nn, inspect.isclass):
        if not issubclass(cls, nn.Module) or name.startswith("_") or name in TORCH_STRUCTURAL or name in loss_like:
            continue
        full = f"torch.nn.{name}"
        if full not in mapped and full not in unsupported:
            gaps.append(full)
    assert not gaps, f"torch.nn classes in no row and not listed in mappings/_unsupported.toml: {gaps}"


def test_every_keras_layer_is_mapped_or_listed_unsupported():
    import keras

    mapped = _named(table(), "keras")
    unsupported = set(known_unsupported()["keras"])
    assert not mapped & unsupported, f"both converted and listed unsupported: {mapped & unsupported}"
    gaps = []
    for name, cls in inspect.getmembers(keras.layers, inspect.isclass):
        if name in KERAS_STRUCTURAL or not issubclass(cls, keras.layers.Layer):
            continue
        canonical = f"keras.layers.{cls.__name__}"  # aliases (Convolution2D -> Conv2D) count once
        full = f"keras.layers.{name}"
        if not ({full, canonical} & (mapped | unsupported)):
            gaps.append(full)
    assert not gaps, f"keras.layers classes in no row and not listed in mappings/_unsupported.toml: {gaps}"
    stale = [n for n in unsupported if not isinstance(getattr(keras.layers, n.rsplit(".", 1)[-1], None), type)]
    assert not stale, f"listed unsupported but not a keras.layers class: {stale}"
    # the list only shrinks: 36 entries (plus 29 unlisted augmentation layers) before issue 13
    assert len(unsupported) <= KERAS_UNSUPPORTED_AT_MOST, sorted(unsupported)


KERAS_UNSUPPORTED_AT_MOST = 7


def test_every_keras_activation_converts_to_torch():
    import keras

    rows = table().by_keras
    names = [n for n in dir(keras.activations) if not n.startswith("_") and n not in ("get", "serialize", "deserialize")
             and callable(getattr(keras.activations, n))]
    missing = [n for n in names if not (rows.get(f"activation:{n}") and "keras2torch" in rows[f"activation:{n}"].directions)]
    assert not missing, f"keras.activations without a keras->torch row: {missing}"
