"""The fast trace reads each ATen schema's arguments once (fx_aten.schema_args): binding a call
and deciding which arguments a recorded node keeps give what the schema itself says, and a bound
default is the caller's own copy, never the cached value."""

from __future__ import annotations

import torch

from xlate.torch2keras.fx_aten import bind, is_default, schema_args


def test_schema_args_match_the_schema_and_are_read_once():
    schema = torch.ops.aten.conv2d.default._schema
    args, positional, keyword_only, names = schema_args(schema)
    assert [a.name for a in args] == [a.name for a in schema.arguments]
    assert [a.real_type for a in args] == [str(a.real_type) for a in schema.arguments]
    assert not keyword_only and names == {a.name for a in schema.arguments}
    assert schema_args(schema)[0] is args  # cached
    stride = next(a for a in positional if a.name == "stride")
    assert stride.list_n == 2 and stride.default == [1, 1] and is_default(stride, [1, 1])
    assert not is_default(stride, [2, 2])


def test_a_bound_default_is_a_copy():
    schema = torch.ops.aten.conv2d.default._schema
    x, w = torch.ones(1, 1, 4, 4), torch.ones(1, 1, 1, 1)
    first = bind(schema, (x, w), {})
    first["padding"].append(7)  # a caller changing its bound list
    assert bind(schema, (x, w), {})["padding"] == [0, 0]
    assert bind(schema, (x, w, None, 2), {})["stride"] == [2, 2]  # one int for int[2], as Python expands it


def test_a_number_default_keeps_a_float_given_for_an_int_default():
    schema = torch.ops.aten.softplus.default._schema
    beta = next(a for a in schema_args(schema)[0] if a.name == "beta")
    assert beta.number and is_default(beta, 1) and not is_default(beta, 1.0)
