"""The value the keras -> torch emitter and its converters pass around: ``Value``, a Keras tensor
as it exists in the generated forward (its variable, layout, Keras shape and dtype).

Owns only this plain type. It sits below ``emit`` and ``converters/*`` so both can import it; it
must not import either of them, the registry, torch or keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import plan


@dataclass
class Value:
    """A Keras tensor as it exists in the generated forward: a variable and its layout."""

    tid: int
    var: str
    perm: plan.Perm
    shape: tuple  # the Keras shape
    dtype: str
    # Set by a Flatten of a channels-first map left in torch order: the (C, *S) it flattened.
    flat_chw: tuple | None = None
    alts: dict = field(default_factory=dict)  # perm -> variable holding a permuted copy

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def torch_shape(self) -> tuple:
        return plan.torch_shape(self.perm, self.shape)

    def dim(self, axis: int) -> int:
        """The torch dim of Keras axis ``axis``."""
        return plan.torch_dim(self.perm, axis)
