"""Ship (host): render a release and put it on boards through the one rollout (docs/architecture.md)."""
