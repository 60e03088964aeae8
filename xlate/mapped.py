"""Loading a state_dict into a module without copying it: memory-mapped weights stay mapped.

``safetensors.torch.load_file`` maps the file (private, copy-on-write): its tensors are views of
the page cache, read on first touch. ``module.load_state_dict(state)`` would copy every one of
them into the module's own (randomly initialized) parameters, a second full copy of the model
in anonymous memory. ``load_into`` hands the module the tensors themselves (``assign=True``), so
the loaded model's weights are the file's pages, and the constructor's random ones are freed.

What ``assign`` would change is kept as a copy would keep it: a tensor whose dtype differs from
the module's is cast to the module's dtype first (only that one is copied), ``requires_grad``
stays the module's, and a module with tied parameters or buffers (one tensor under two names,
which ``assign`` would split into two) is loaded by copying, as before.
"""

from __future__ import annotations


def _has_tied(module) -> bool:
    seen = set()
    named = list(module.named_parameters(remove_duplicate=False)) + list(module.named_buffers(remove_duplicate=False))
    for _, t in named:
        if id(t) in seen:
            return True
        seen.add(id(t))
    return False


def load_into(module, state) -> None:
    """``module.load_state_dict(state)`` (strict), taking the state's tensors instead of copying them.

    Raises what ``load_state_dict`` raises (RuntimeError for missing/unexpected keys or shapes)."""
    if _has_tied(module):
        module.load_state_dict(state)
        return
    own = module.state_dict(keep_vars=True)
    taken = {}
    for name, tensor in state.items():
        mine = own.get(name)
        if mine is not None and (tensor.dtype != mine.dtype or tensor.device != mine.device):
            tensor = tensor.to(device=mine.device, dtype=mine.dtype)
        taken[name] = tensor
    module.load_state_dict(taken, assign=True)
