"""Recurrent layers: LSTM, GRU, SimpleRNN, RNN over built-in cells, and the Bidirectional wrapper.

Each Keras cell becomes one batch-first torch module: nn.LSTM / nn.GRU / nn.RNN whenever they
compute the same thing (gate orders and biases move through the rows' transforms: GRU z,r,h ->
r,z,n and the two-bias split; LSTM's single Keras bias becomes bias_ih with a zero bias_hh), and
otherwise the small loop classes of ``rnn_loops`` (GRU reset_after=False, other activations).
A Keras mask reaching the layer makes the generated code step the module with ``masked_rnn``,
carrying state and output over masked steps exactly as Keras does. Keras' last-step output is
``output[:, -1]``; a bidirectional layer's backward half reads the sequence reversed, and its
final state belongs to time step 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import NotConvertible, converter
from ..source import call
from .rnn_loops import activation_callable

_TORCH_CLASS = {"LSTM": "nn.LSTM", "GRU": "nn.GRU", "SimpleRNN": "nn.RNN"}
_CELLS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}
_LOOP_ROWS = {"LSTM": "keras_lstm", "GRU": "keras_gru", "SimpleRNN": "keras_simple_rnn"}


@dataclass
class Cell:
    """One Keras recurrent cell and how the generated module computes it."""

    kind: str  # "LSTM", "GRU" or "SimpleRNN"
    layer: object  # the Keras cell (its weights)
    cfg: dict

    @property
    def units(self) -> int:
        return int(self.cfg["units"])

    @property
    def native(self) -> bool:
        """Does torch's own nn.LSTM / nn.GRU / nn.RNN compute this cell?"""
        cfg = self.cfg
        if self.kind == "SimpleRNN":
            return cfg["activation"] in ("tanh", "relu")
        if cfg["activation"] != "tanh" or cfg["recurrent_activation"] != "sigmoid":
            return False
        return self.kind == "LSTM" or bool(cfg.get("reset_after", True))

    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.kind == "LSTM" else ("h",)


def cells_of(layer) -> list[Cell]:
    """The cells a Keras recurrent layer runs, in stacking order."""
    cell = layer.cell
    inner = list(cell.cells) if type(cell).__name__ == "StackedRNNCells" else [cell]
    cells = []
    for c in inner:
        kind = _CELLS.get(type(c).__name__)
        if kind is None or type(c).__module__.split(".")[:2] != ["keras", "src"]:
            raise NotConvertible(f"recurrent cell {type(c).__name__} (only Keras' built-in cells are converted)")
        cells.append(Cell(kind, c, c.get_config()))
    return cells


def _check_layer(layer) -> None:
    cfg = layer.get_config()
    if cfg.get("stateful"):
        raise NotConvertible("stateful=True (state carried across batches)")


def _module(em, node, cell: Cell, in_features: int, suffix: str = "", *,
            bidirectional: bool = False) -> tuple[str, object]:
    """Declare the torch module for ``cell``; returns (attr, the row that ports its weights)."""
    cfg = cell.cfg
    if cell.native:
        kwargs = {"batch_first": True}
        if not cfg["use_bias"]:
            kwargs["bias"] = False
        if cell.kind == "SimpleRNN" and cfg["activation"] == "relu":
            kwargs["nonlinearity"] = "relu"
        if bidirectional:
            kwargs["bidirectional"] = True
        ctor = call(_TORCH_CLASS[cell.kind], in_features, cell.units, **kwargs)
        row = em.row(f"keras.layers.{cell.kind}")
    else:
        kwargs = {} if cfg["use_bias"] else {"bias": False}
        if cell.kind == "GRU" and cfg.get("reset_after", True):
            kwargs["reset_after"] = True
        if cfg["activation"] != "tanh":
            kwargs["activation"] = activation_callable(em, cfg["activation"])
        if cell.kind != "SimpleRNN" and cfg["recurrent_activation"] != "sigmoid":
            kwargs["recurrent_activation"] = activation_callable(em, cfg["recurrent_activation"])
        em.helpers.add(f"Keras{cell.kind}")
        ctor = call(f"Keras{cell.kind}", in_features, cell.units, **kwargs)
        row = em.row(_LOOP_ROWS[cell.kind])
    attr = em.module(node, ctor, suffix=suffix)
    if cfg.get("dropout") or cfg.get("recurrent_dropout"):
        em.notes.append(f"{node.name}: Keras input/recurrent dropout is not reproduced in torch training mode; "
                        "it only acts in training, so inference is exact")
    return attr, row


def _initial_state(em, node) -> list[str]:
    state = node.kwargs.get("initial_state")
    if state is None and len(node.args) > 1:
        state = node.args[1]
    if state is None:
        return []
    return [em.in_layout(s, "keras").var for s in (state if isinstance(state, (list, tuple)) else [state])]


def _mask(em, node) -> str | None:
    mask = node.kwargs.get("mask")
    if mask is None:
        return None
    if isinstance(mask, (list, tuple)):
        mask = mask[0]
        if mask is None:
            return None
    m = em.in_layout(mask, "keras")
    return m.var if m.dtype == "bool" else f"{m.var}.bool()"


def run_layer(em, node, layer, src: str, in_features: int, *, mask: str | None, states: list[str],
              suffix: str = "", zero_output: bool, want_states: bool) -> tuple[str, str, list[str]]:
    """Emit one Keras recurrent layer over the batch-first sequence variable ``src`` (already
    reversed for go_backwards, like ``mask``), every cell but the last. Returns (the last cell's
    call, the pattern of its assignment target with "{}" for the output sequence, the final-state
    variables of every cell when ``want_states``)."""
    cells = cells_of(layer)
    final: list[str] = []
    seq = src
    for i, cell in enumerate(cells):
        tail = suffix + (f"_cell{i}" if len(cells) > 1 else "")
        attr, row = _module(em, node, cell, in_features, tail)
        em.port(row, attr, em.keras_weights(cell.layer))
        em.use_row(row)
        n_states = len(cell.state_names())
        given, states = [f"{s}[None]" for s in states[:n_states]], states[n_states:]
        last = i == len(cells) - 1
        if want_states:
            names = [em.temp(f"{node.name}{tail}_{s}") for s in cell.state_names()]
            final += [f"{n}[0]" for n in names]
            pattern = "{}, (" + ", ".join(names) + ")" if cell.kind == "LSTM" else "{}, " + names[0]
        else:
            pattern = "{}, _"
        if mask is not None:
            if not given:
                zeros = em.temp(f"{node.name}{tail}_zeros")
                em.emit(f"{zeros} = {src}.new_zeros(1, {src}.shape[0], {cell.units})", "Keras starts from zero states")
                given = [zeros] * n_states
            state_arg = f"({given[0]}, {given[1]})" if cell.kind == "LSTM" else given[0]
            extra = ", zero_output=True" if zero_output and last else ""
            em.helpers.add("masked_rnn")
            expr = f"masked_rnn(self.{attr}, {seq}, {mask}, {state_arg}{extra})"
        else:
            state_arg = ""
            if given:
                state_arg = f", ({given[0]}, {given[1]})" if cell.kind == "LSTM" else f", {given[0]}"
            expr = f"self.{attr}({seq}{state_arg})"
        if last:
            return expr, pattern, final
        out = em.temp(f"{node.name}{tail}_seq")
        em.emit(f"{pattern.format(out)} = {expr}")
        seq, in_features = out, cell.units
    raise AssertionError("unreachable: a recurrent layer has at least one cell")


_MASKED = "Keras skips masked steps: state and output carried over"


@converter("lstm", "gru", "simple_rnn", "rnn_cells", "keras_lstm", "keras_gru", "keras_simple_rnn", masks=True)
def rnn(em, node, row):
    layer, cfg = node.op, node.config
    _check_layer(layer)
    x = em.input(node, 0, "keras")
    mask = _mask(em, node)
    states = _initial_state(em, node)
    cells = cells_of(layer)
    if len(cells) == 1 and cells[0].native and mask is None:
        return _packed(em, node, row, cells[0], x, states)
    src = x.var
    if cfg.get("go_backwards"):
        src, mask = _reversed(em, node, x.var, mask)
    want_states = bool(cfg.get("return_state"))
    expr, pattern, final = run_layer(em, node, layer, src, int(x.shape[-1]), mask=mask, states=states,
                                     zero_output=bool(getattr(layer, "zero_output_for_mask", False)),
                                     want_states=want_states)
    comment = _MASKED if mask is not None else ""
    if cfg["return_sequences"]:
        em.assign(node, expr, pattern=pattern, comment=comment)
    else:
        seq = em.pre(node, expr, comment, pattern=pattern)
        em.assign(node, f"{seq}[:, -1]", comment="the last time step")
    for i, s in enumerate(final, start=1):
        em.assign(node, s, index=i)


def _reversed(em, node, x: str, mask: str | None) -> tuple[str, str | None]:
    """The sequence (and mask) in reverse time order, for a layer with go_backwards=True."""
    rev = em.temp(f"{x}_reversed")
    em.emit(f"{rev} = {x}.flip(1)", "go_backwards: Keras reads the sequence from its end")
    if mask is None:
        return rev, None
    mask_rev = em.temp(f"{node.name}_mask_reversed")
    em.emit(f"{mask_rev} = {mask}.flip(1)")
    return rev, mask_rev


def _packed(em, node, row, cell: Cell, x, states: list[str]) -> None:
    """One nn.LSTM / nn.GRU / nn.RNN call over the whole sequence."""
    cfg = node.config
    attr, inner_row = _module(em, node, cell, int(x.shape[-1]))
    em.port(inner_row, attr, em.keras_weights(cell.layer))
    em.use_row(inner_row)
    src = f"{x.var}.flip(1)" if cfg.get("go_backwards") else x.var
    if states:
        packed = ", ".join(f"{s}.unsqueeze(0)" for s in states)
        src += f", ({packed})" if cell.kind == "LSTM" else f", {packed}"
    expr = f"self.{attr}({src})"
    if not cfg.get("return_state"):
        if cfg["return_sequences"]:
            em.assign(node, expr, module=attr, pattern="{}, _")
        else:
            seq = em.pre(node, expr, pattern="{}, _")
            em.assign(node, f"{seq}[:, -1]", module=attr, comment="the last time step")
        return
    seq = em.temp(f"{node.name}_seq")
    names = [em.temp(f"{node.name}_{s}") for s in cell.state_names()]
    target = f"{seq}, ({names[0]}, {names[1]})" if cell.kind == "LSTM" else f"{seq}, {names[0]}"
    em.emit(f"{target} = {expr}")
    em.assign(node, seq if cfg["return_sequences"] else f"{seq}[:, -1]", module=attr)
    for i, s in enumerate(names, start=1):
        em.assign(node, f"{s}[0]", index=i)


def _merge(em, node, mode, forward: str, backward: str, extra_outputs: list[str]) -> None:
    if mode is None:
        em.assign_many(node, ", ".join([forward, backward, *extra_outputs]), [None] * (2 + len(extra_outputs)))
        return
    exprs = {"concat": f"torch.cat([{forward}, {backward}], dim=-1)", "sum": f"{forward} + {backward}",
             "mul": f"{forward} * {backward}", "ave": f"({forward} + {backward}) / 2"}
    if mode not in exprs:
        raise NotConvertible(f"merge_mode={mode!r}")
    em.assign(node, exprs[mode])
    for i, s in enumerate(extra_outputs, start=1):
        em.assign(node, s, index=i)


@converter("bidirectional", masks=True)
def bidirectional(em, node, row):
    layer, cfg = node.op, node.config
    fwd, bwd = layer.forward_layer, layer.backward_layer
    for sub in (fwd, bwd):
        if type(sub).__name__ not in (*_TORCH_CLASS, "RNN"):
            raise NotConvertible(f"{type(sub).__name__} inside Bidirectional")
        _check_layer(sub)
    fcfg, bcfg = fwd.get_config(), bwd.get_config()
    mask, states = _mask(em, node), _initial_state(em, node)
    fcells, bcells = cells_of(fwd), cells_of(bwd)
    mirror = (len(fcells) == len(bcells) == 1 and type(fwd) is type(bwd) and fcells[0].native and bcells[0].native
              and all(fcells[0].cfg.get(k) == bcells[0].cfg.get(k) for k in ("units", "use_bias", "activation"))
              and not fcfg.get("go_backwards") and bcfg.get("go_backwards"))
    if mirror and mask is None and not states and not fcfg.get("return_state"):
        return _packed_bidirectional(em, node, fcells[0], bcells[0])
    x = em.input(node, 0, "keras")
    width = int(x.shape[-1])
    half = len(states) // 2
    seqs = fcfg["return_sequences"]
    outs, finals = [], []
    for sub, sub_cfg, suffix, sub_states in ((fwd, fcfg, "_forward", states[:half]),
                                             (bwd, bcfg, "_backward", states[half:])):
        back = bool(sub_cfg.get("go_backwards"))
        src, sub_mask = _reversed(em, node, x.var, mask) if back else (x.var, mask)
        expr, pattern, final = run_layer(em, node, sub, src, width, mask=sub_mask, states=sub_states, suffix=suffix,
                                         zero_output=seqs, want_states=bool(fcfg.get("return_state")))
        out = em.temp(f"{node.name}{suffix}_seq")
        em.emit(f"{pattern.format(out)} = {expr}", _MASKED if mask is not None else "")
        if not seqs:
            out = f"{out}[:, -1]"
        outs.append(f"{out}.flip(1)" if seqs and back else out)
        finals += final
    em.use_row(row)
    _merge(em, node, cfg.get("merge_mode"), outs[0], outs[1], finals if fcfg.get("return_state") else [])


def _packed_bidirectional(em, node, fcell: Cell, bcell: Cell) -> None:
    """torch's own bidirectional module: forward and ``_reverse`` weights in one nn.LSTM/GRU/RNN."""
    layer, cfg = node.op, node.config
    fcfg = layer.forward_layer.get_config()
    x = em.input(node, 0, "keras")
    attr, inner = _module(em, node, fcell, int(x.shape[-1]), bidirectional=True)
    em.port(inner, attr, em.keras_weights(fcell.layer))
    em.port(inner, attr, em.keras_weights(bcell.layer), suffix="_reverse")
    em.use_row(inner)
    units = fcell.units
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
        em.emit(f"_, ({state}, _) = {expr}" if fcell.kind == "LSTM" else f"_, {state} = {expr}",
                "final states: forward at the last step, backward at step 0")
        forward, backward = f"{state}[-2]", f"{state}[-1]"
    _merge(em, node, mode, forward, backward, [])
