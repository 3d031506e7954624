"""Open an ONNX Runtime session on the QNN EP, as the board-side runner must (standalone: onnxruntime only).

The release's runner (runner/dms_bench.py) can import or vendor this file: it
uses nothing from dmsbuild. onnxruntime-qnn 2.x is a plugin EP that
``providers=[...]`` does not see; it is registered once per process with
``register_execution_provider_library`` and selected with
``SessionOptions.add_provider_for_devices``. Builds of ONNX Runtime with the
QNN EP compiled in (onnxruntime-qnn 1.x) take the classic ``providers=`` path.
"""
from __future__ import annotations

from typing import Any, Mapping

EP_NAME = "QNNExecutionProvider"


def open_qnn_session(model_path: str, provider_options: Mapping[str, str], *, allow_cpu_fallback: bool = True) -> Any:
    """An InferenceSession running ``model_path`` (an EPContext model) on the QNN HTP."""
    import onnxruntime as ort

    opts = {k: str(v) for k, v in provider_options.items()}
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "0" if allow_cpu_fallback else "1")
    if EP_NAME in ort.get_available_providers() and not _plugin_devices(ort):
        # QNN EP compiled into this onnxruntime build (onnxruntime-qnn 1.x)
        return ort.InferenceSession(model_path, sess_options=so, providers=[(EP_NAME, opts), "CPUExecutionProvider"])
    devices = _plugin_devices(ort)
    if not devices:
        try:
            import onnxruntime_qnn
        except ImportError:
            raise RuntimeError("QNN EP not available: install onnxruntime-qnn (pip install onnxruntime-qnn)") from None
        ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
        devices = _plugin_devices(ort)
    if not devices:
        raise RuntimeError("QNN EP registered but it reports no device")
    so.add_provider_for_devices(devices, opts)
    return ort.InferenceSession(model_path, sess_options=so)


def _plugin_devices(ort: Any) -> list[Any]:
    get = getattr(ort, "get_ep_devices", None)
    return [d for d in get() if d.ep_name == EP_NAME] if get else []
