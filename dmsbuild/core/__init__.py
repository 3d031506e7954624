"""Shared vocabulary low in the layer order (docs/architecture.md): standard library only."""
