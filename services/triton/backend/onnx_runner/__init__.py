"""The ``onnx_runner`` Triton backend folder: Triton runs ``model.py`` (see its docstring)."""
