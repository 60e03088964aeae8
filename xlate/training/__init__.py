"""Training-setup translation: optimizers, losses, LR schedules, callbacks and optimizer state.

Everything here is driven by the mapping-table rows of family optimizer / loss / schedule /
callback / training (``mappings/{optimizers,losses,schedules,training}.toml``). Where the two
frameworks' formulas differ, xlate emits an exact emulation of the source's formula in the target
framework (Keras classes ``xlate>TorchX``, torch classes ``KerasX``; ``emulations.py`` finds
them) and says so in the object's translation record (``translation_of(obj)``); it never
approximates silently. ``setup.translate_training`` translates a whole recipe (the training
loop's clipping, EMA, accumulation and loss scaling included) and ``parity`` replays it.

Importing this package is light: torch and Keras are imported by the submodules that need them.
"""

from __future__ import annotations

from .record import Translation, translation_of

__all__ = ["Translation", "translation_of"]
