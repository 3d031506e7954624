"""Convert (host), the build stage: the model -> FP32 / FP16 / INT8 ONNX, evaluated against the FP32 reference
(docs/architecture.md). Not named ``build/``: tools take that name for output (.gitignore, pytest, ruff)."""
