import keras
import numpy as np


@keras.saving.register_keras_serializable(package="xlate")
class Constant(keras.layers.Layer):
    """A constant tensor (a torch buffer or a folded constant), kept as a non-trainable weight
    so it is saved with the model's weights rather than inlined into its JSON config.

    With ``batch_axis=True`` the stored value has a leading axis of 1 that is broadcast to the
    anchor's batch size at call time (constants whose shape depends on the batch).
    """

    def __init__(self, shape, dtype_name="float32", batch_axis=False, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.value_shape = tuple(int(d) for d in shape)
        self.dtype_name = dtype_name
        self.batch_axis = bool(batch_axis)
        self.value = self.add_weight(name="value", shape=self.value_shape, dtype=dtype_name,
                                     initializer="zeros", trainable=False)

    def call(self, anchor):
        value = keras.ops.convert_to_tensor(self.value)
        if self.batch_axis:
            batch = keras.ops.shape(anchor)[0]
            value = keras.ops.broadcast_to(value, (batch, *self.value_shape[1:]))
        return value

    def compute_output_spec(self, anchor):
        shape = self.value_shape
        if self.batch_axis:
            shape = (anchor.shape[0], *shape[1:])
        return keras.KerasTensor(shape, dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.value_shape), "dtype_name": self.dtype_name,
                "batch_axis": self.batch_axis}

    def set_value(self, array: np.ndarray) -> None:
        self.value.assign(np.asarray(array, dtype=self.dtype_name))
