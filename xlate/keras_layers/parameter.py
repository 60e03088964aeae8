import keras
import numpy as np


@keras.saving.register_keras_serializable(package="xlate")
class Parameter(keras.layers.Layer):
    """A free-standing trainable tensor (a torch ``nn.Parameter`` used directly in forward,
    e.g. a ViT class token or a layer-scale vector).

    Functional Keras graphs only record layers called on tensors, so the layer takes an
    ``anchor`` input it ignores and returns its variable.
    """

    def __init__(self, shape, dtype_name="float32", trainable=True, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.value_shape = tuple(int(d) for d in shape)
        self.dtype_name = dtype_name
        self.value = self.add_weight(name="value", shape=self.value_shape, dtype=dtype_name,
                                     initializer="zeros", trainable=trainable)

    def call(self, anchor):
        return keras.ops.convert_to_tensor(self.value)

    def compute_output_spec(self, anchor):
        return keras.KerasTensor(self.value_shape, dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.value_shape), "dtype_name": self.dtype_name}

    def set_value(self, array: np.ndarray) -> None:
        self.value.assign(np.asarray(array, dtype=self.dtype_name))
