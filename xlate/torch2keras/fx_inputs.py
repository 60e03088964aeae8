"""The fast trace's inputs: binding the example to forward's argument names, the traced root
module, and the input sets each varied run uses (the example with one size cut or repeated)."""

from __future__ import annotations

import keyword

from .fx_common import FastTraceUnsupported

SMALL_INPUT = 1 << 16  # elements per sample
SMALL_MODEL = 10_000_000  # parameters


def bind_inputs(module, args, kwargs):
    """Input names (as torch.export names them), tensors, and how the root forward is called."""
    import inspect

    import torch

    values = list(args) if args else list(kwargs.values())
    if not values or not all(isinstance(v, torch.Tensor) for v in values):
        raise FastTraceUnsupported("example inputs that are not all tensors")
    if kwargs:
        names = list(kwargs)
        keys = tuple(names)

        def call(*vals):
            return module.forward(**dict(zip(keys, vals)))
    else:
        params = list(inspect.signature(module.forward).parameters.values())
        names = []
        for p in params:
            if len(names) == len(values):
                break
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append(p.name)
            elif p.kind == p.VAR_POSITIONAL:
                names += [f"{p.name}_{i}" for i in range(len(values) - len(names))]
        if len(names) != len(values):
            raise FastTraceUnsupported("more example inputs than forward() takes positionally")

        def call(*vals):
            return module.forward(*vals)
    if len(set(names)) != len(names) or not all(n.isidentifier() and not keyword.iskeyword(n) and n != "self"
                                                 for n in names):
        raise FastTraceUnsupported(f"input names {names} are not plain identifiers")
    return names, values, call


def is_small(module, values) -> bool:
    per_sample = sum(v[0].numel() if v.dim() else 1 for v in values)
    return per_sample < SMALL_INPUT and sum(p.numel() for p in module.parameters()) < SMALL_MODEL


def copies(values) -> list:
    return [v.clone() for v in values]


def resized(values, sym, size: int) -> list:
    """The examples with symbol ``sym``'s axes cut or repeated cyclically to ``size`` (token ids and
    masks stay valid)."""
    import torch

    out = list(values)
    for index, axis in sym.members:
        v = out[index]
        out[index] = v.index_select(axis, torch.arange(size) % v.shape[axis])
    return [v.clone() for v in out]


def refuse_hooks(module):
    import torch.nn.modules.module as mm

    if mm._global_forward_hooks or mm._global_forward_pre_hooks:
        raise FastTraceUnsupported("global forward hooks")
    for m in module.modules():
        if m._forward_hooks or m._forward_pre_hooks:
            raise FastTraceUnsupported(f"forward hooks on {type(m).__name__}")


def traceable_root(module, names, call):
    """A module whose forward takes exactly the example inputs, by name, and calls ``module``.

    It shares the module's children, parameters and buffers, so fx sees the same module paths. The
    forward is compiled from source because fx reads the argument names from its code object
    (``*args`` forwards cannot be traced with a known number of inputs)."""
    import torch

    arglist = ", ".join(names)
    namespace = {"_call": call}
    exec(f"def forward(self, {arglist}):\n    return _call({arglist})\n", namespace)  # noqa: S102 - names checked
    root = type("XlateTraceRoot", (torch.nn.Module,), {"forward": namespace["forward"]})()
    object.__setattr__(root, "_modules", module._modules)
    object.__setattr__(root, "_parameters", module._parameters)
    object.__setattr__(root, "_buffers", module._buffers)
    return root
