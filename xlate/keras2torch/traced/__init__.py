"""The traced route of Keras -> PyTorch: layers no table row converts (custom layers, keras-hub
blocks, a Lambda) and subclassed models are captured with ``torch.export`` and written back out
as readable ``nn.Module`` classes.

Keras 3 layers on the torch backend are ``torch.nn.Module``s, so a child process with
``KERAS_BACKEND=torch`` (``child.py``, exporting with ``exporting.py``) rebuilds those layers (or
loads the model the parent saved), exports each layer call, or the whole subclassed model, and
sends the graph back as plain data (``graph.py``); ``capture.py`` runs it. The parent splits the
graph along the Keras layer calls it records (``regions.py``), keeps sublayers that have a table
row as native torch modules (``native.py``), writes one class per Keras layer (``source.py``,
ATen calls spelled as a person would write them by ``spell.py``, variables named by
``statements.py``) and merges classes of one Keras type whose code differs only in numbers
into one with constructor arguments (``classes.py``). ``bridge.py`` plugs the classes into the
table route's emitter.
"""
