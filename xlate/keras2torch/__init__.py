"""Keras 3 -> PyTorch: rebuild a Keras model as readable torch source plus weights."""
