"""Shared vocabulary low in the layer order (docs/architecture.md, "Layers"): standard library only."""
