"""The xlate commands, one module each. Each module defines one click command and imports
torch/TensorFlow/Keras only inside the command function."""
