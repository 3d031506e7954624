"""dmsbuild: build, ship and measure DMS models on your own embedded boards.

Importing this package must stay cheap: no torch, onnxruntime, onnx,
tensorrt or paramiko at module level anywhere that ``dodo.py`` reaches.
"""
__version__ = "0.2.0"  # the top entry of CHANGELOG.md (tests/test_package.py holds them equal)
