"""dmsbuild: build, ship and measure DMS models on your own embedded boards.

Importing this package must stay cheap: no torch, onnxruntime, onnx,
tensorrt or paramiko at module level anywhere that ``dodo.py`` reaches.
"""
__version__ = "0.1.0"
