"""The few custom Keras layers xlate emits, registered for deserialization under "xlate>".

Import this package before ``keras.saving.load_model`` on a model xlate wrote (the converters
and ``xlate.load`` do it for you). Every layer is built from ``keras.ops`` only, so it runs on
every Keras backend; ``get_config``/``from_config`` round-trips are tested for each.
"""

from .constant import Constant
from .dynamic import (
    DynamicBroadcast,
    DynamicPad,
    DynamicRange,
    DynamicReshape,
    DynamicResize,
    DynamicSize,
    DynamicSlice,
)
from .parameter import Parameter
from .range import Range

__all__ = ["Constant", "DynamicBroadcast", "DynamicPad", "DynamicRange", "DynamicReshape", "DynamicResize",
           "DynamicSize", "DynamicSlice", "Parameter", "Range"]
