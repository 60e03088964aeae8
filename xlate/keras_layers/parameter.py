import keras

from .constant import Constant


@keras.saving.register_keras_serializable(package="xlate")
class Parameter(Constant):
    """A free-standing trainable tensor: a torch ``nn.Parameter`` used directly in forward (a ViT
    class token, position embeddings, a layer-scale vector). Like Constant, but trained."""

    trainable_value = True
