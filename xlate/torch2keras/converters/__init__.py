"""torch -> Keras converters, one module per family; importing them registers them."""

from . import (  # noqa: F401
    activation,
    attention,
    conv,
    creation,
    elementwise,
    linear,
    norm,
    plumbing,
    pool,
    recurrent,
    reduce,
    reparam,
    resize,
    scatter,
    shape,
    windows,
)
