"""Orchestration that crosses stages (build, ship, measure): deploy with its gate, and `doit tune` (docs/architecture.md, layers)."""
