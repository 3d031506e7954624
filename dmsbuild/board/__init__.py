"""Board side: copied into every release and run by the board's own Python (standard library, numpy,
onnxruntime only; tests/test_architecture.py checks it). Nothing here imports the host modules."""
