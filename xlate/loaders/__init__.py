"""One module per model file format, behind ``xlate.load``'s ``load_torch`` / ``load_keras`` dispatch.

=================  ==========================================================================
``inputs``         ``--input-shape`` / ``--input-dtype`` example tensors, ``--inputs`` arrays
``factory``        ``--model-class MODULE:CALLABLE`` with ``--model-args`` (classes, factories, timm)
``state_dict``     ``.pth``/``.pt``/``.safetensors`` state_dicts (and, with trust, whole pickles)
``pt2``            ``torch.export`` programs (``.pt2``)
``torchscript``    TorchScript archives
``torch_package``  folders written by ``xlate tf2torch`` / ``xlate onnx2torch``
``hf_folder``      Hugging Face ``save_pretrained`` folders (``config.json`` + weights)
``onnx``           ONNX files, as a torch module that runs the graph
``keras_file``     ``.keras`` / ``.h5`` files and SavedModel folders
``tflite``         ``.tflite`` flatbuffers, run by the TFLite interpreter
=================  ==========================================================================

Each imports its framework only inside the functions that need it.
"""
