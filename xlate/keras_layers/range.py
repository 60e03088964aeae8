import keras


@keras.saving.register_keras_serializable(package="xlate")
class Range(keras.layers.Layer):
    """``arange(start, start + n * step, step)`` where n is the anchor's size on ``anchor_axis``
    (a torch.arange over a dynamic size, such as the batch indices of a mask builder)."""

    def __init__(self, start=0, step=1, dtype_name="int64", anchor_axis=0, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.start, self.step = start, step
        self.dtype_name = dtype_name
        self.anchor_axis = int(anchor_axis)

    def call(self, anchor):
        n = keras.ops.shape(anchor)[self.anchor_axis]
        index = keras.ops.arange(n, dtype=self.dtype_name)
        return keras.ops.add(keras.ops.multiply(index, self.step), self.start)

    def compute_output_spec(self, anchor):
        return keras.KerasTensor((anchor.shape[self.anchor_axis],), dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "step": self.step, "dtype_name": self.dtype_name,
                "anchor_axis": self.anchor_axis}
