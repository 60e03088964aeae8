"""Keras -> PyTorch converters, one module per family (registered by hook name); importing this
package imports, and so registers, every family."""

from . import (  # noqa: F401 - importing a family registers its converters
    activations,
    attention,
    audio,
    augmentation,
    conv,
    conv_lstm,
    core,
    dot_attention,
    dynamic_layers,
    merging,
    norm,
    ops,
    pooling,
    preprocessing,
    recurrent,
    regularization,
    resize,
    shape_ops,
    wrappers,
    xlate_layers,
)
