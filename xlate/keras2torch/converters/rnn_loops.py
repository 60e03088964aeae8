"""Recurrent layers torch's nn.LSTM / nn.GRU / nn.RNN cannot express, written out as small loops.

Three cases need a time loop in the generated file:

- a Keras mask (``Masking``, ``Embedding(mask_zero=True)``): Keras skips masked steps, carrying
  the state over and repeating the previous output (zeros with ``zero_output_for_mask``, which
  ``Bidirectional`` turns on when it returns sequences). ``masked_rnn`` steps any batch-first
  recurrent module one time step at a time and does exactly that.
- ``GRU(reset_after=False)`` (the Keras 2 / TF1 default): the reset gate scales the previous
  state before the recurrent matmul; torch's nn.GRU applies it after. ``KerasGRU``.
- activations torch fixes (nn.LSTM/GRU are tanh/sigmoid, nn.RNN tanh/relu): ``KerasLSTM``,
  ``KerasGRU``, ``KerasSimpleRNN`` take the activations as arguments.

The classes are called like their torch counterparts (``output, state = rnn(x, state)``, batch
first, states shaped (1, N, H)), so ``masked_rnn`` and the rest of the converter treat them alike.
Their weights keep Keras' gate order (LSTM i,f,c,o; GRU z,r,h) and Keras' single bias.
"""

from __future__ import annotations

from ..helpers import register_helper
from ..registry import NotConvertible
from ..source import Code

# Keras activation names -> a torch callable, for the activation= arguments of the loop classes
_CALLABLES = {
    "tanh": "torch.tanh", "sigmoid": "torch.sigmoid", "relu": "torch.relu", "linear": "nn.Identity()",
    "hard_sigmoid": "F.hardsigmoid", "silu": "F.silu", "swish": "F.silu", "gelu": "F.gelu", "elu": "F.elu",
    "selu": "F.selu", "softplus": "F.softplus", "softsign": "F.softsign", "relu6": "F.relu6",
    "hard_silu": "F.hardswish", "hard_swish": "F.hardswish", "mish": "F.mish", "log_sigmoid": "F.logsigmoid",
    "tanh_shrink": "F.tanhshrink",
}


def activation_callable(em, name) -> Code:
    """Source of a torch callable computing the Keras activation ``name`` elementwise."""
    if not isinstance(name, str):
        raise NotConvertible(f"activation {name!r} is not a built-in activation name")
    if name in _CALLABLES:
        return Code(_CALLABLES[name])
    from .activations import functional_activation

    return Code(f"lambda v: {functional_activation(em, f'activation:{name}', {}, 'v', (0, 1))}")


register_helper("masked_rnn", '''
def masked_rnn(rnn, x, mask, state, zero_output=False):
    """Run a batch-first recurrent module one time step at a time, the way Keras runs a masked
    sequence: where ``mask`` (N, T) is False the state is carried over unchanged and the output
    repeats the previous step's (zeros with ``zero_output``). Returns (outputs, final state)."""
    output = x.new_zeros(x.shape[0], 1, rnn.hidden_size)
    outputs = []
    for t in range(x.shape[1]):
        step, new_state = rnn(x[:, t:t + 1], state)
        keep = mask[:, t, None, None]
        output = torch.where(keep, step, torch.zeros_like(step) if zero_output else output)
        if isinstance(state, tuple):
            state = tuple(torch.where(keep.transpose(0, 1), n, s) for n, s in zip(new_state, state))
        else:
            state = torch.where(keep.transpose(0, 1), new_state, state)
        outputs.append(output)
    return torch.cat(outputs, 1), state
''')

register_helper("KerasLSTM", '''
class KerasLSTM(nn.Module):
    """Keras' LSTM with any activations (nn.LSTM fixes tanh and sigmoid). Gates i, f, c, o as in
    Keras and nn.LSTM; one bias. Called like nn.LSTM(batch_first=True): ``out, (h, c) = lstm(x, (h0, c0))``."""

    def __init__(self, input_size, hidden_size, bias=True, activation=torch.tanh,
                 recurrent_activation=torch.sigmoid):
        super().__init__()
        self.hidden_size = hidden_size
        self.activation, self.recurrent_activation = activation, recurrent_activation
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size)) if bias else None
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)

    def forward(self, x, state=None):
        if state is None:
            h = c = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            h, c = state[0][0], state[1][0]
        gates_x = F.linear(x, self.weight_ih, self.bias)
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (gates_x[:, t] + F.linear(h, self.weight_hh)).chunk(4, dim=-1)
            c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
            h = self.recurrent_activation(o) * self.activation(c)
            outputs.append(h)
        return torch.stack(outputs, 1), (h[None], c[None])
''')

register_helper("KerasGRU", '''
class KerasGRU(nn.Module):
    """Keras' GRU. With reset_after=False (the Keras 2 / TF1 default) the reset gate scales the
    previous state before the recurrent matmul, which nn.GRU cannot do; any activations. Gates z, r, h
    in Keras order; bias (3H,), or (2, 3H) = input and recurrent bias with reset_after=True.
    Called like nn.GRU(batch_first=True): ``out, h = gru(x, h0)``."""

    def __init__(self, input_size, hidden_size, bias=True, reset_after=False, activation=torch.tanh,
                 recurrent_activation=torch.sigmoid):
        super().__init__()
        self.hidden_size, self.reset_after = hidden_size, reset_after
        self.activation, self.recurrent_activation = activation, recurrent_activation
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        bias_shape = (2, 3 * hidden_size) if reset_after else (3 * hidden_size,)
        self.bias = nn.Parameter(torch.zeros(bias_shape)) if bias else None
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)

    def forward(self, x, h=None):
        h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h[0]
        bias_ih = bias_hh = None
        if self.bias is not None:
            bias_ih, bias_hh = (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, None)
        x_z, x_r, x_h = F.linear(x, self.weight_ih, bias_ih).chunk(3, dim=-1)
        w_zr, w_h = self.weight_hh.split([2 * self.hidden_size, self.hidden_size])
        outputs = []
        for t in range(x.shape[1]):
            if self.reset_after:
                h_z, h_r, h_h = F.linear(h, self.weight_hh, bias_hh).chunk(3, dim=-1)
            else:
                h_z, h_r = F.linear(h, w_zr).chunk(2, dim=-1)
            z = self.recurrent_activation(x_z[:, t] + h_z)
            r = self.recurrent_activation(x_r[:, t] + h_r)
            recurrent = r * h_h if self.reset_after else F.linear(r * h, w_h)
            h = z * h + (1 - z) * self.activation(x_h[:, t] + recurrent)
            outputs.append(h)
        return torch.stack(outputs, 1), h[None]
''')

register_helper("KerasSimpleRNN", '''
class KerasSimpleRNN(nn.Module):
    """Keras' SimpleRNN with any activation (nn.RNN has only tanh and relu).
    Called like nn.RNN(batch_first=True): ``out, h = rnn(x, h0)``."""

    def __init__(self, input_size, hidden_size, bias=True, activation=torch.tanh):
        super().__init__()
        self.hidden_size, self.activation = hidden_size, activation
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)

    def forward(self, x, h=None):
        h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h[0]
        x_h = F.linear(x, self.weight_ih, self.bias)
        outputs = []
        for t in range(x.shape[1]):
            h = self.activation(x_h[:, t] + F.linear(h, self.weight_hh))
            outputs.append(h)
        return torch.stack(outputs, 1), h[None]
''')
