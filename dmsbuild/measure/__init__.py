"""Measure (host): benchmark results from the boards, their store, gates and the report (docs/architecture.md)."""
