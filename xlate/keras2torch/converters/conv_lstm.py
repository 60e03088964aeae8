"""ConvLSTM1D / ConvLSTM2D / ConvLSTM3D as a small ``ConvLSTM`` class in the generated file.

The class takes two ordinary torch convolutions: the input convolution (the layer's strides,
padding and dilation) computes the four gates i, f, c, o of every time step at once, and the
recurrent convolution (stride 1, TensorFlow 'same' padding) runs once per step on the state.
Weights are plain ``nn.ConvNd`` weights (``conv_kernel`` transform); gate order is Keras' and
torch's LSTM order alike. Feature maps are channels-first inside: (N, T, C, *spatial).
"""

from __future__ import annotations

from .. import plan
from ..helpers import register_helper
from ..registry import NotConvertible, converter
from ..source import Code, call, compact
from .conv import conv_pads
from .rnn_loops import activation_callable

register_helper("ConvLSTM", '''
class ConvLSTM(nn.Module):
    """Keras' ConvLSTM1D/2D/3D over a (N, T, C, *spatial) sequence. ``input_conv`` computes the
    gates i, f, c, o of every step at once (after ``input_pad``, TensorFlow's asymmetric 'same'
    padding where it applies); ``recurrent_conv`` runs on the state each step (after
    ``recurrent_pad``). Called like nn.LSTM: ``out, (h, c) = conv_lstm(x, (h0, c0))``, with out
    (N, T, filters, *spatial_out) and h, c (N, filters, *spatial_out)."""

    def __init__(self, input_conv, recurrent_conv, input_pad=(), recurrent_pad=(), activation=torch.tanh,
                 recurrent_activation=torch.sigmoid):
        super().__init__()
        self.input_conv, self.recurrent_conv = input_conv, recurrent_conv
        self.input_pad, self.recurrent_pad = tuple(input_pad), tuple(recurrent_pad)
        self.activation, self.recurrent_activation = activation, recurrent_activation

    def forward(self, x, state=None):
        n, t = x.shape[:2]
        steps = x.flatten(0, 1)
        if self.input_pad:
            steps = F.pad(steps, self.input_pad)
        gates_x = self.input_conv(steps).unflatten(0, (n, t))
        if state is None:
            h = c = gates_x.new_zeros(n, self.recurrent_conv.in_channels, *gates_x.shape[3:])
        else:
            h, c = state
        outputs = []
        for i in range(t):
            h_in = F.pad(h, self.recurrent_pad) if self.recurrent_pad else h
            g_i, g_f, g_c, g_o = (gates_x[:, i] + self.recurrent_conv(h_in)).chunk(4, dim=1)
            c = self.recurrent_activation(g_f) * c + self.recurrent_activation(g_i) * self.activation(g_c)
            h = self.recurrent_activation(g_o) * self.activation(c)
            outputs.append(h)
        return torch.stack(outputs, 1), (h, c)
''')


def _conv(rank: int, cin: int, cout: int, kernel, strides, pads, dilation, bias: bool) -> tuple[str, tuple]:
    """(an nn.ConvNd constructor, the F.pad argument it needs first: () when symmetric)."""
    symmetric = all(left == right for left, right in pads)
    kwargs = {"kernel_size": compact(kernel), "stride": compact(strides),
              "padding": compact(tuple(left for left, _ in pads)) if symmetric else 0}
    if any(d != 1 for d in dilation):
        kwargs["dilation"] = compact(dilation)
    if not bias:
        kwargs["bias"] = False
    return call(f"nn.Conv{rank}d", cin, cout, **kwargs), (() if symmetric else plan.torch_pad_arg(pads))


@converter("conv_lstm")
def conv_lstm(em, node, row):
    layer, cfg = node.op, node.config
    if cfg.get("stateful"):
        raise NotConvertible("stateful=True (state carried across batches)")
    rank = len(cfg["kernel_size"])
    channels_last = cfg.get("data_format", "channels_last") != "channels_first"
    seq_perm = (0, 1, rank + 2, *range(2, rank + 2)) if channels_last else plan.identity(rank + 3)
    state_perm = plan.channels_first(rank + 2) if channels_last else plan.identity(rank + 2)
    x = em.input(node, 0, seq_perm)
    kernel, strides, dilation = (tuple(cfg[k]) for k in ("kernel_size", "strides", "dilation_rate"))
    spatial = tuple(x.shape[2:-1] if channels_last else x.shape[3:])
    pads = conv_pads(cfg["padding"], spatial, kernel, strides, dilation)
    if pads is None:
        raise NotConvertible("'same' padding on spatial sizes known only at run time")
    filters, cin = int(cfg["filters"]), int(x.shape[-1] if channels_last else x.shape[2])
    in_conv, in_pad = _conv(rank, cin, 4 * filters, kernel, strides, pads, dilation, bool(cfg["use_bias"]))
    rec_pads = [plan.same_padding(None, k, 1, 1) for k in kernel]
    rec_conv, rec_pad = _conv(rank, filters, 4 * filters, kernel, (1,) * rank, rec_pads, (1,) * rank, False)
    kwargs = {}
    if in_pad:
        kwargs["input_pad"] = in_pad
    if rec_pad:
        kwargs["recurrent_pad"] = rec_pad
    if cfg["activation"] != "tanh":
        kwargs["activation"] = activation_callable(em, cfg["activation"])
    if cfg["recurrent_activation"] != "sigmoid":
        kwargs["recurrent_activation"] = activation_callable(em, cfg["recurrent_activation"])
    em.helpers.add("ConvLSTM")
    attr = em.module(node, call("ConvLSTM", Code(in_conv), Code(rec_conv), **kwargs))
    em.port(row, attr, em.keras_weights(layer))
    if cfg.get("dropout") or cfg.get("recurrent_dropout"):
        em.notes.append(f"{node.name}: Keras input/recurrent dropout is not reproduced in torch training mode")
    src = f"{x.var}.flip(1)" if cfg.get("go_backwards") else x.var
    states = node.kwargs.get("initial_state")
    if states is not None:
        h0, c0 = (em.in_layout(s, state_perm).var for s in states)
        src += f", ({h0}, {c0})"
    expr = f"self.{attr}({src})"
    pattern = "{}, _"
    if cfg.get("return_state"):
        h, c = em.temp(f"{node.name}_h"), em.temp(f"{node.name}_c")
        pattern = "{}, (" + f"{h}, {c})"
    if cfg["return_sequences"]:
        em.assign(node, expr, seq_perm, pattern=pattern, module=attr)
    else:
        seq = em.pre(node, expr, pattern=pattern)
        em.assign(node, f"{seq}[:, -1]", state_perm, comment="the last time step")
    if cfg.get("return_state"):
        em.assign(node, h, state_perm, index=1)
        em.assign(node, c, state_perm, index=2)
