"""Where the shared build artifacts live (artifacts/common), and the file key of a static-quantization recipe.

Low in the layout: the build tasks, the tuner and the mixed-precision search
all find files through it, so none of them imports the task module."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ProjectConfig, TargetProfile, static_quant_for


@dataclass
class Paths:
    """Where the shared artifacts live."""

    common: Path

    @classmethod
    def of(cls, proj: ProjectConfig) -> Paths:
        return cls(proj.artifacts / "common")

    @property
    def fp32(self) -> Path:
        return self.common / "fp32.onnx"

    @property
    def fp32_info(self) -> Path:
        return self.common / "fp32.json"

    @property
    def fp16(self) -> Path:
        return self.common / "fp16.onnx"

    @property
    def dynamic(self) -> Path:
        return self.common / "int8-dynamic.onnx"

    def qdq(self, key: str) -> Path:
        return self.common / f"int8-qdq-{key}.onnx"

    @property
    def reference(self) -> Path:
        return self.common / "reference.npz"

    @property
    def validation(self) -> Path:
        return self.common / "validation.npz"

    def eval_json(self, onnx_file: Path) -> Path:
        return self.common / "eval" / f"{onnx_file.stem}.json"


def qdq_key(proj: ProjectConfig, prof: TargetProfile | None) -> str:
    from .quantize import settings_key

    cfg = static_quant_for(proj, prof) if prof is not None else proj.quantization.static
    return settings_key(cfg, proj.data.max_calibration_samples)
