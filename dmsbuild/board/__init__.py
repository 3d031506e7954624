"""Board side: copied into every release and run by the board's own Python (standard library, numpy,
onnxruntime only; tests/test_architecture.py checks it). Nothing here imports the host modules.

Scripts the host runs on a board before any release exists there (the release agent, the disk-room,
home and state probes) are files here too, sent as ``python3 -c <the file's source>`` (``source``):
no host module carries board code in a string (tests/test_architecture.py checks that as well)."""
from pathlib import Path


def source(name: str) -> str:
    """The text of the board script ``dmsbuild/board/<name>.py``, to send as ``python3 -c <text> ARGS``."""
    return (Path(__file__).parent / f"{name}.py").read_text()
