"""Backends: one module per runtime, each defining ``BACKEND`` (a ``base.Backend``), found through the registry.

The registry (``dmsbuild/core/runtimes.py``, one line per runtime) maps a
profile's ``runtime`` to its module, imported only when a task needs it, so
``doit list`` stays light. ``get_backend(name)`` returns the module's
``BACKEND``; ``base.py`` says what each of its methods means. Adding a
runtime: its registry line, its module, its board driver, its tests and its
docs page (docs/architecture.md, "A new runtime").

A backend's ``plan``::

    def plan(self, project: ProjectConfig, profile: TargetProfile, sources: dict[str, Path]) -> list[ArtifactPlan]

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

from ..core.runtimes import RUNTIMES
from ..errors import UserError
from .base import ArtifactPlan, Backend, check_registered

__all__ = ["REGISTRY", "ArtifactPlan", Backend, "backends", "get_backend"]

#: runtime name -> module implementing it (imported lazily); derived from the registry, core/runtimes.py
REGISTRY: dict[str, str] = {name: line.module for name, line in RUNTIMES.items()}


def get_backend(name: str, source: str = "target profile") -> Backend:
    """The backend of a runtime name (its module's ``BACKEND``); a UserError names the profile field when unknown."""
    path = REGISTRY.get(name)
    if path is None:
        raise UserError(
            f"{source}: field 'runtime' is {name!r}, which has no backend in this dmsbuild; "
            f"available: {', '.join(sorted(REGISTRY))}",
            hint="pick an available runtime or add its backend module to dmsbuild/backends/ and its line to "
                 "dmsbuild/core/runtimes.py",
        )
    module = importlib.import_module(path)
    backend = getattr(module, "BACKEND", None)
    if backend is None:
        raise UserError(f"{path}: defines no BACKEND; a runtime's module defines BACKEND = <its Backend>()",
                        hint="see dmsbuild/backends/base.py")
    return check_registered(backend, name, path, REGISTRY)


def backends() -> list[Backend]:
    """Every registered runtime's backend (imports every backend module: doctor and tests, not task generators)."""
    return [get_backend(name) for name in sorted(REGISTRY)]
