"""Backends: one module per runtime that knows which artifacts a target ships and how they are built.

The registry maps a profile's ``runtime`` to a module path, imported only
when a task needs it, so ``doit list`` stays light. Adding a runtime is one
line here plus its module; nothing else changes.

A backend module provides one function::

    def plan(project: ProjectConfig, profile: TargetProfile, sources: dict[str, Path]) -> list[ArtifactPlan]

``sources`` maps each precision the profile asks for to the host-built ONNX
file of that precision (``fp32``, ``fp16``, ``int8-dynamic``, ``int8-qdq``;
the last quantized with the target's own static settings). The backend returns
what the target ships. An ``ArtifactPlan`` whose ``path`` is not its source
ONNX carries a ``build`` callable (run as a doit action, after the source
exists) that writes ``path`` and ``extra_files``; the plan must stay cheap to
compute (no SDK imports), because task generators call it on every doit run.
Module bodies must not import heavy SDKs at import time either.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import UserError

#: runtime name -> module implementing it (imported lazily)
REGISTRY: dict[str, str] = {
    "onnxruntime": "dmsbuild.backends.onnxruntime",
    "qnn": "dmsbuild.backends.qnn",  # QNN context binaries (+ SNPE DLC when the SDK is installed)
    "tensorrt": "dmsbuild.backends.tensorrt",
    "litert": "dmsbuild.backends.litert",  # .tflite (FP32, full-integer INT8) run by LiteRT/XNNPACK
    "edgetpu": "dmsbuild.backends.edgetpu",  # Coral: full-integer .tflite compiled by edgetpu_compiler
}


@dataclass
class ArtifactPlan:
    """One artifact a target ships (becomes an entry of build.json, docs/CONTRACTS.md §1)."""

    name: str
    precision: str
    kind: str  # onnx | qnn-context | trt-onnx | trt-engine | dlc | tflite | edgetpu-tflite
    path: Path
    source: Path  # the host-built ONNX it derives from (evaluated on the host as its accuracy proxy)
    runtime: str
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    provider_options: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    portable: bool = True
    extra_files: list[Path] = field(default_factory=list)
    #: writes ``path`` (and ``extra_files``) from ``source``; None: the artifact is a copy of ``source``
    build: Callable[[], None] | None = None
    #: settings whose change must rebuild it (JSON-able; fed to doit's config_changed)
    settings: dict[str, Any] = field(default_factory=dict)
    #: more input files of ``build`` (besides ``source``)
    file_dep: list[Path] = field(default_factory=list)
    #: ONNX Runtime session settings the board runs it with (manifest ``session``; chosen by `doit tune`)
    session: dict[str, Any] = field(default_factory=dict)
    #: the host evaluation of the artifact itself, written by ``build`` (None: ``source``'s, the accuracy proxy)
    eval_json: Path | None = None


def get_backend(name: str, source: str = "target profile") -> ModuleType:
    """The backend module for a runtime name; a UserError names the profile field when unknown."""
    path = REGISTRY.get(name)
    if path is None:
        raise UserError(
            f"{source}: field 'runtime' is {name!r}, which has no backend in this dmsbuild; "
            f"available: {', '.join(sorted(REGISTRY))}",
            hint="pick an available runtime or add its backend module to dmsbuild/backends/",
        )
    return importlib.import_module(path)
