"""Run an ONNX graph as a torch ``nn.Module``: the last step of Keras -> ONNX -> PyTorch.

A small interpreter rather than a code generator: float initializers become ``nn.Parameter``s
(so the module is trainable and its ``state_dict`` saves), integer initializers and constants
become buffers, and ``forward`` executes the graph's nodes in their (topological) order with
torch ops. Only the ONNX ops listed in ``OPS`` are handled; ``unsupported_ops(model)`` names the
others, all at once, before anything runs. onnx2torch would be the library to reach for, but it
imports torchvision, whose builds here do not match torch 2.13, so the op set xlate needs (what
tf2onnx emits for Keras layers) is implemented by xlate, each op to the ONNX spec.

Owns the interpreter: attributes, the op table ``OPS`` (assembled from ``xlate.onnx_tensor_ops``,
``xlate.onnx_nn_ops`` and ``xlate.onnx_ops``, which must not import this module), the check
for unsupported ops and the ``nn.Module`` classes.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from .onnx_nn_ops import NN_OPS, unsupported_variant
from .onnx_ops import MORE_OPS
from .onnx_tensor_ops import TENSOR_OPS


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif hasattr(v, "dims") and hasattr(v, "data_type"):  # TensorProto
            from onnx import numpy_helper

            v = numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


OPS = TENSOR_OPS | NN_OPS | MORE_OPS


def unsupported_ops(model) -> list[tuple[str, str]]:
    """(op, node name) for every node this interpreter cannot run, in graph order.

    An op type with no implementation is named as such; a supported type with an attribute
    combination it cannot reproduce is named with those attributes.
    """
    out = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        where = node.name or node.output[0]
        if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
            out.append((f"{node.domain + '.' if node.domain else ''}{node.op_type}", where))
        elif (variant := unsupported_variant(node.op_type, _attrs(node))) is not None:
            out.append((variant, where))
    return out


def _safe_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name).strip("_") or "t"
    if base[0].isdigit():
        base = "t_" + base
    candidate, i = base, 1
    while candidate in taken:
        candidate, i = f"{base}_{i}", i + 1
    taken.add(candidate)
    return candidate


class OnnxGraphModule(nn.Module):
    """An ONNX graph as a torch module. Float initializers are trainable parameters (except
    BatchNormalization running statistics, which are buffers); everything else is a buffer."""

    def __init__(self, model):
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        init_names = {t.name for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in init_names]
        self.output_names = [o.name for o in graph.output]
        stats = {n.input[i] for n in graph.node if n.op_type == "BatchNormalization"
                 for i in (3, 4) if len(n.input) > i}
        taken: set[str] = set()
        self._tensor_attr: dict[str, str] = {}  # ONNX value name -> attribute name on self
        # Exporters number their constants with global counters, so ONNX names change from one
        # export to the next; name each tensor by where it is first used, which does not.
        first_use: dict[str, str] = {}
        for i, node in enumerate(graph.node):
            for slot, name in enumerate(node.input):
                first_use.setdefault(name, f"n{i:04d}_{node.op_type}_in{slot}")
        self.params = nn.ParameterDict()
        for t in graph.initializer:
            array = numpy_helper.to_array(t).copy()
            attr = _safe_name(first_use.get(t.name, t.name), taken)
            value = torch.from_numpy(array) if array.dtype != np.uint64 else torch.from_numpy(array.astype(np.int64))
            if value.is_floating_point() and t.name not in stats:
                self.params[attr] = nn.Parameter(value)
                self._tensor_attr[t.name] = "params." + attr
            else:
                self.register_buffer("c_" + attr, value)
                self._tensor_attr[t.name] = "c_" + attr
        self.nodes: list[tuple[str, list[str], list[str], dict]] = []
        for node in graph.node:
            attrs = _attrs(node)
            if node.op_type == "Constant":
                value = next(iter(attrs.values()))
                array = np.asarray(value)
                attr = _safe_name("const_" + first_use.get(node.output[0], node.output[0]), taken)
                self.register_buffer(attr, torch.from_numpy(array.copy()))
                self._tensor_attr[node.output[0]] = attr
                continue
            attrs["_n_outputs"] = len(node.output)
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))

    def _get(self, name: str):
        attr = self._tensor_attr[name]
        if attr.startswith("params."):
            return self.params[attr[len("params."):]]
        return getattr(self, attr)

    def forward(self, *inputs):
        env = dict(zip(self.input_names, inputs))
        for op, ins, outs, attrs in self.nodes:
            args = [None if n == "" else (env[n] if n in env else self._get(n)) for n in ins]
            while args and args[-1] is None:
                args.pop()
            result = OPS[op](attrs, *args)
            if not isinstance(result, tuple):
                result = (result,)
            for name, value in zip(outs, result):
                if name:
                    env[name] = value
        outputs = [env[n] if n in env else self._get(n) for n in self.output_names]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class PermutedIO(nn.Module):
    """Wrap a module so its inputs and outputs are permuted at the boundary (layout change)."""

    def __init__(self, inner: nn.Module, input_perms, output_perms):
        super().__init__()
        self.inner = inner
        self.input_perms = [tuple(p) if p else None for p in input_perms]
        self.output_perms = [tuple(p) if p else None for p in output_perms]

    def forward(self, *inputs):
        inputs = [x.permute(p) if p else x for x, p in zip(inputs, self.input_perms)]
        out = self.inner(*inputs)
        many = isinstance(out, tuple)
        outs = [o.permute(p) if p else o for o, p in zip(out if many else (out,), self.output_perms)]
        return tuple(outs) if many else outs[0]
