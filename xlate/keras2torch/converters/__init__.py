"""Keras -> PyTorch converters, one module per family (registered by hook name)."""
