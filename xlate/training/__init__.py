"""Training-setup translation: optimizers, losses, LR schedules, callbacks and optimizer state.

Everything here is driven by the mapping-table rows of family optimizer / loss / schedule /
callback (``mappings/{optimizers,losses,schedules}.toml``). Where the two frameworks' formulas
differ, xlate emits an exact emulation of the source's formula in the target framework (Keras
classes ``xlate>TorchX``, torch classes ``xlate.training.torch_*.KerasX``) and says so in the
object's translation record (``translation_of(obj)``); it never approximates silently.

Importing this package is light: torch and Keras are imported by the submodules that need them.
"""

from __future__ import annotations

from .record import Translation, translation_of

__all__ = ["Translation", "translation_of"]
