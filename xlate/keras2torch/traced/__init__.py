"""The traced route of Keras -> PyTorch: layers no table row converts (custom layers, keras-hub
blocks, subclassed models) are captured with ``torch.export`` and written back out as readable
``nn.Module`` classes.

Keras 3 layers on the torch backend are ``torch.nn.Module``s, so a child process with
``KERAS_BACKEND=torch`` (``child.py``) loads the model from a ``.keras`` file the parent saved,
exports each such layer (or the whole subclassed model) and sends the graph back as plain data
(``graph.py``). The parent splits the graph along the Keras layer calls it records
(``regions.py``), keeps sublayers that have a table row as native torch modules (``native.py``)
and writes one class per Keras layer type (``source.py``, spelling ATen calls as the torch calls
a person would write: ``spell.py``). ``bridge.py`` plugs the classes into the table route's
emitter; ``capture.py`` runs the child.
"""
