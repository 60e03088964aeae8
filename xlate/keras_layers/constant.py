import keras


@keras.saving.register_keras_serializable(package="xlate")
class Constant(keras.layers.Layer):
    """A constant tensor (a torch buffer or a folded constant), kept as a non-trainable weight
    so it is saved with the model's weights rather than inlined into its JSON config.

    Functional Keras graphs only record layers called on tensors, so the layer is called on an
    ``anchor`` input it otherwise ignores. With ``dynamic_axis`` set, the stored value has size 1
    on that axis and is broadcast at call time to the anchor's size on ``anchor_axis`` (a tensor
    whose shape follows the batch size, e.g. torch.zeros(batch, ...) or buffer.expand(batch, -1)).
    ``initializer`` (default zeros) makes the value; it is not part of the config: the value is a
    weight, saved with the weights.
    """

    trainable_value = False

    def __init__(self, shape, dtype_name="float32", dynamic_axis=None, anchor_axis=0, initializer="zeros", **kwargs):
        kwargs.setdefault("trainable", self.trainable_value)
        super().__init__(**kwargs)
        self.value_shape = tuple(int(d) for d in shape)
        self.dtype_name = dtype_name
        self.dynamic_axis = None if dynamic_axis is None else int(dynamic_axis)
        self.anchor_axis = int(anchor_axis)
        self.value = self.add_weight(name="value", shape=self.value_shape, dtype=dtype_name,
                                     initializer=initializer, trainable=self.trainable_value)

    def call(self, anchor):
        value = keras.ops.convert_to_tensor(self.value)
        if self.dynamic_axis is not None:
            shape = list(self.value_shape)
            shape[self.dynamic_axis] = keras.ops.shape(anchor)[self.anchor_axis]
            value = keras.ops.broadcast_to(value, shape)
        return value

    def compute_output_spec(self, anchor):
        shape = list(self.value_shape)
        if self.dynamic_axis is not None:
            shape[self.dynamic_axis] = anchor.shape[self.anchor_axis]
        return keras.KerasTensor(tuple(shape), dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.value_shape), "dtype_name": self.dtype_name,
                "dynamic_axis": self.dynamic_axis, "anchor_axis": self.anchor_axis}
