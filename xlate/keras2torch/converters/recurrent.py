"""Recurrent layers: LSTM, GRU, SimpleRNN and the Bidirectional wrapper, as batch-first torch RNNs.

Gate orders and biases move through the rows' transforms (GRU z,r,h -> r,z,n and the two-bias
split; LSTM's single Keras bias becomes bias_ih with a zero bias_hh). Keras' last-step output
is ``output[:, -1]`` one way and ``cat(h_n[-2], h_n[-1])`` for a bidirectional layer, where the
backward direction's final state belongs to time step 0.
"""

from __future__ import annotations

from ..codegen import call
from ..registry import NotConvertible, converter

_TORCH_CLASS = {"LSTM": "nn.LSTM", "GRU": "nn.GRU", "SimpleRNN": "nn.RNN"}


def _check(layer, cfg) -> str:
    cls = type(layer).__name__
    if cls not in _TORCH_CLASS:
        raise NotConvertible(f"{cls} inside a recurrent wrapper")
    if cfg.get("stateful"):
        raise NotConvertible("stateful=True (state carried across batches)")
    if cls in ("LSTM", "GRU") and (cfg["activation"] != "tanh" or cfg["recurrent_activation"] != "sigmoid"):
        raise NotConvertible(f"activation={cfg['activation']!r}, recurrent_activation="
                                 f"{cfg['recurrent_activation']!r} (torch fixes tanh and sigmoid)")
    if cls == "GRU" and not cfg.get("reset_after", True):
        raise NotConvertible("reset_after=False applies the reset gate before the matmul; torch's GRU does not")
    if cls == "SimpleRNN" and cfg["activation"] not in ("tanh", "relu"):
        raise NotConvertible(f"SimpleRNN activation={cfg['activation']!r}")
    return cls


def _ctor(cls: str, cfg, in_features: int, bidirectional: bool = False) -> str:
    kwargs = {"batch_first": True}
    if not cfg["use_bias"]:
        kwargs["bias"] = False
    if cls == "SimpleRNN" and cfg["activation"] == "relu":
        kwargs["nonlinearity"] = "relu"
    if bidirectional:
        kwargs["bidirectional"] = True
    return call(_TORCH_CLASS[cls], in_features, int(cfg["units"]), **kwargs)


def _training_notes(em, node, cfg) -> None:
    if cfg.get("dropout") or cfg.get("recurrent_dropout"):
        em.notes.append(f"{node.name}: Keras input/recurrent dropout has no nn.{type(node.op).__name__} "
                        "counterpart; it only acts in training, so inference is exact")


def _initial_state(em, node) -> list:
    state = node.kwargs.get("initial_state")
    if state is None and len(node.args) > 1:
        state = node.args[1]
    if state is None:
        return []
    return [em.in_layout(s, "keras").var for s in (state if isinstance(state, (list, tuple)) else [state])]


@converter("lstm", "gru", "simple_rnn")
def rnn(em, node, row):
    layer, cfg = node.op, node.config
    cls = _check(layer, cfg)
    if node.kwargs.get("mask") is not None:
        raise NotConvertible("a Keras mask argument is not converted")
    x = em.input(node, 0, "keras")
    attr = em.module(node, _ctor(cls, cfg, int(x.shape[-1])))
    em.port(row, attr, em.keras_weights(layer))
    _training_notes(em, node, cfg)
    src = f"{x.var}.flip(1)" if cfg.get("go_backwards") else x.var
    state = _initial_state(em, node)
    if state:
        packed = ", ".join(f"{s}.unsqueeze(0)" for s in state)
        src += f", ({packed})" if cls == "LSTM" else f", {packed}"
    expr = f"self.{attr}({src})"
    if not cfg.get("return_state"):
        if cfg["return_sequences"]:
            em.assign(node, expr, module=attr, pattern="{}, _")
        else:
            seq = em.pre(node, expr, pattern="{}, _")
            em.assign(node, f"{seq}[:, -1]", module=attr, comment="the last time step")
        return
    seq = em.temp(f"{node.name}_seq")
    states = [em.temp(f"{node.name}_{s}") for s in (("h", "c") if cls == "LSTM" else ("h",))]
    target = f"{seq}, ({states[0]}, {states[1]})" if cls == "LSTM" else f"{seq}, {states[0]}"
    em.emit(f"{target} = {expr}")
    em.assign(node, seq if cfg["return_sequences"] else f"{seq}[:, -1]", module=attr)
    for i, s in enumerate(states, start=1):
        em.assign(node, f"{s}[0]", index=i)


@converter("bidirectional")
def bidirectional(em, node, row):
    layer, cfg = node.op, node.config
    fwd, bwd = layer.forward_layer, layer.backward_layer
    fcfg, bcfg = fwd.get_config(), bwd.get_config()
    cls = _check(fwd, fcfg)
    _check(bwd, bcfg)
    same = ("units", "use_bias", "activation", "return_sequences", "return_state")
    if type(bwd) is not type(fwd) or any(fcfg.get(k) != bcfg.get(k) for k in same) or fcfg.get("go_backwards") \
            or not bcfg.get("go_backwards"):
        raise NotConvertible("forward and backward layers that are not mirror images of each other")
    if fcfg.get("return_state"):
        raise NotConvertible("return_state=True inside Bidirectional")
    if node.kwargs.get("mask") is not None or node.kwargs.get("initial_state") is not None:
        raise NotConvertible("mask or initial_state arguments")
    inner = em.row(f"keras.layers.{cls}")
    x = em.input(node, 0, "keras")
    attr = em.module(node, _ctor(cls, fcfg, int(x.shape[-1]), bidirectional=True))
    em.port(inner, attr, em.keras_weights(fwd))
    em.port(inner, attr, em.keras_weights(bwd), suffix="_reverse")
    em.use_row(inner)
    _training_notes(em, node, fcfg)
    units = int(fcfg["units"])
    mode = cfg.get("merge_mode")
    expr = f"self.{attr}({x.var})"
    if fcfg["return_sequences"]:
        if mode == "concat":
            em.assign(node, expr, module=attr, pattern="{}, _")
            return
        seq = em.pre(node, expr, pattern="{}, _")
        forward, backward = f"{seq}[..., :{units}]", f"{seq}[..., {units}:]"
    else:
        state = em.temp(f"{node.name}_h")
        em.emit(f"_, ({state}, _) = {expr}" if cls == "LSTM" else f"_, {state} = {expr}",
                "final states: forward at the last step, backward at step 0")
        forward, backward = f"{state}[-2]", f"{state}[-1]"
    if mode == "concat":
        em.assign(node, f"torch.cat([{forward}, {backward}], dim=1)", module=attr)
    elif mode == "sum":
        em.assign(node, f"{forward} + {backward}", module=attr)
    elif mode == "mul":
        em.assign(node, f"{forward} * {backward}", module=attr)
    elif mode == "ave":
        em.assign(node, f"({forward} + {backward}) / 2", module=attr)
    elif mode is None:
        em.assign_many(node, f"{forward}, {backward}", [None, None])
    else:
        raise NotConvertible(f"merge_mode={mode!r}")
