"""SNPE DLC artifacts (Qualcomm Neural Processing SDK). Placeholder: filled in below."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SnpeOptions:
    """``[backend.snpe]`` of a Qualcomm target profile."""

    #: build DLC artifacts when the SDK is found
    enabled: bool = True
    #: SoC names for snpe-dlc-graph-prepare --htp_socs
    htp_socs: list[str] = None  # type: ignore[assignment]
