"""Recurrent layers: LSTM, GRU and RNN, stacked and bidirectional, batch- or time-major.

torch packs every layer and direction into one aten op; Keras gets one (Bidirectional) layer
per torch layer, with the gate order handled by the rows' named transforms.
"""

from __future__ import annotations

from ..registry import converter
from ..values import Const, Value
from ._common import layers, ops
from .linear import port

KERAS_RNN = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}
ROW_OF = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "simple_rnn", "rnn_relu": "simple_rnn"}


def _is_zero_state(ctx, ref) -> bool:
    v = ctx.value(ref)
    if isinstance(v, Const):
        return not v.array.any()
    node = ctx.graph.node(ref.name) if hasattr(ref, "name") else None
    return node is not None and node.target in (
        "aten.zeros.default", "aten.zeros_like.default", "aten.new_zeros.default")


def _state(ctx, ref, index):
    """Initial state slice index of a (layers*dirs, N, H) tensor as a Keras (N, H) tensor."""
    v = ctx.value(ref)
    t = ctx.keras_tensor(ctx.materialize(v), (0, 1, 2)) if isinstance(v, Value) else ctx.const_tensor(v)
    return t[index]


@converter("lstm", "gru", "simple_rnn")
def recurrent(ctx, node, row):
    kind = node.target.split(".")[1]  # lstm | gru | rnn_tanh | rnn_relu
    a = node.args
    has_bias, num_layers = bool(a["has_biases"]), int(a["num_layers"])
    dropout, bidirectional, batch_first = float(a["dropout"]), bool(a["bidirectional"]), bool(a["batch_first"])
    params = ctx.value(a["params"])
    x = ctx.materialize(ctx.arg("input"))
    if any(not isinstance(p, Const) for p in params):
        raise ctx.unsupported(f"{kind} with computed weights")
    dirs = 2 if bidirectional else 1
    per = 4 if has_bias else 2
    if kind == "lstm" and params[0].array.shape[0] != 4 * params[1].array.shape[1]:
        raise ctx.unsupported("LSTM with proj_size > 0")
    hidden = params[1].array.shape[1]
    hx = a["hx"] if kind == "lstm" else [a["hx"]]
    zero_state = all(_is_zero_state(ctx, h) for h in hx)
    # Keras recurrent layers are batch-major: (N, L, F)
    seq = ctx.keras_tensor(x, (0, 1, 2) if batch_first else (1, 0, 2))
    keras_cls = getattr(layers(), KERAS_RNN[ROW_OF[kind]])
    finals = []
    for layer_index in range(num_layers):
        options = {"return_sequences": True, "return_state": True, "use_bias": has_bias}
        if kind != "lstm" and kind != "gru":
            options["activation"] = "relu" if kind == "rnn_relu" else "tanh"
        if kind == "gru":
            options["reset_after"] = True
        name = ctx.layer_name(f"l{layer_index}" if num_layers > 1 else "")
        initial = None
        if not zero_state:
            initial = []
            for d in range(dirs):
                initial += [_state(ctx, h, layer_index * dirs + d) for h in hx]
        if bidirectional:
            layer = layers().Bidirectional(keras_cls(hidden, **options), merge_mode="concat", name=name)
            result = layer(seq, initial_state=initial) if initial else layer(seq)
            seq, states = result[0], result[1:]
            cells = [layer.forward_layer, layer.backward_layer]
            per_dir = len(states) // 2
            finals.append([states[:per_dir], states[per_dir:]])
        else:
            layer = keras_cls(hidden, name=name, **options)
            result = layer(seq, initial_state=initial) if initial else layer(seq)
            seq, states = result[0], result[1:]
            cells = [layer]
            finals.append([states])
        for d, cell in enumerate(cells):
            base = (layer_index * dirs + d) * per
            group = params[base:base + per]
            tensors = {"weight_ih_l0": group[0], "weight_hh_l0": group[1],
                       "bias_ih_l0": group[2] if has_bias else None, "bias_hh_l0": group[3] if has_bias else None}
            port(ctx, row, cell, tensors)
        if dropout > 0 and layer_index < num_layers - 1:
            seq = layers().Dropout(dropout, name=ctx.layer_name(f"dropout{layer_index}"))(seq)
    out_perm = (0, 1, 2) if batch_first else (1, 0, 2)
    output = ctx.new_value(seq, out_perm, meta=node.meta[0])
    n_states = 2 if kind == "lstm" else 1
    results = [output]
    for s in range(n_states):
        stacked = ops().stack([f[d][s] for f in finals for d in range(dirs)], axis=0)
        results.append(ctx.new_value(stacked, (0, 1, 2), meta=node.meta[1 + s]))
    return tuple(results)

