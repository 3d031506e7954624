"""The runtime registry: one line per runtime (docs/architecture.md, "Backends").

A runtime is a backend module (``dmsbuild/backends/<name>.py``, implementing
``backends.base.Backend``) plus, when the board needs one, its board driver.
Its line here is the only place that names it for the rest of dmsbuild:
config validates ``runtime = "..."`` against these names, and the few facts
that code below the backends layer needs without importing the backend
module (config, provenance, the stored results) are on the same line.

Standard library only, and imports nothing of dmsbuild: config (layer 4) and
the provenance labels (core) read it, while the backend modules (layer 8) are
imported lazily, by name, through ``dmsbuild.backends.get_backend``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    """What the layers below the backends know of a runtime, without importing its module."""

    #: the profile's ``runtime`` value, the build.json/manifest entries' ``runtime``
    name: str
    #: the module implementing ``backends.base.Backend`` (its ``BACKEND``), imported only when a task needs it
    module: str
    #: the tool that times its artifacts on a board: "runner" (runner/dms_bench.py, board-side) or the vendor
    #: tool the host drives over the transport ("trtexec", "snpe"); the figure's source is ``board-<tool>``
    #: (provenance.SOURCES), and a host-driven tool on an emulated board is a test double
    measured_by: str = "runner"
    #: its consumer parses QDQ graphs only (TensorRT explicit quantization, the QNN/SNPE converters)
    qdq_only: bool = False
    #: ``prune.round_to = 0``: the channel multiple its fast kernels want (docs/qat.md, "Channel alignment"):
    #: ONNX Runtime's NCHWc block (8 AVX2, 16 AVX-512 / ARM64 NEON), TensorRT's 32-channel INT8 vector
    #: formats, Qualcomm HTP's 32-deep activations
    channel_block: int = 16

    @property
    def host_driven(self) -> bool:
        """Its artifacts are timed by the host driving a vendor tool on the board, not by the release's runner."""
        return self.measured_by != "runner"


#: runtime name -> its registry line. Adding a runtime: one line here, its backend module, its board driver
#: (when dms_bench.py cannot run it), its tests and its docs page (docs/architecture.md, "A new runtime")
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("onnxruntime", "dmsbuild.backends.onnxruntime"),
    Runtime("tensorrt", "dmsbuild.backends.tensorrt", measured_by="trtexec", qdq_only=True, channel_block=32),
    Runtime("qnn", "dmsbuild.backends.qnn", qdq_only=True, channel_block=32),
    Runtime("snpe", "dmsbuild.backends.snpe", measured_by="snpe", qdq_only=True, channel_block=32),
    Runtime("ortformat", "dmsbuild.backends.ortformat"),
    # .tflite files (LiteRT/XNNPACK on the board's CPU) and Coral's edgetpu_compiler output (the Edge TPU delegate):
    # both run by the release's runner (runner/litert_runner.py beside dms_bench.py)
    Runtime("litert", "dmsbuild.backends.litert"),
    Runtime("edgetpu", "dmsbuild.backends.edgetpu"),
)}

#: runtimes whose artifacts the host drives on the board with the vendor's own tool (not runner/dms_bench.py)
HOST_DRIVEN: tuple[str, ...] = tuple(sorted(name for name, line in RUNTIMES.items() if line.host_driven))


def names() -> list[str]:
    """Every registered runtime name, sorted."""
    return sorted(RUNTIMES)


def runtime(name: str) -> Runtime | None:
    """The registry line of ``name``; None for a name no runtime has (callers say what to do about it)."""
    return RUNTIMES.get(name)
