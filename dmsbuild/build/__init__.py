"""Build (host): the model -> FP32 / FP16 / INT8 ONNX, evaluated against the FP32 reference (docs/architecture.md)."""
