"""Orchestration that crosses stages (the layer above convert, ship and measure; docs/architecture.md).

``deploy``: a release to a fleet with its health gate, fed by measure's one ``Verdict`` per board
(what ``doit deploy``, ``doit rollback`` and ``doit bench`` run). ``tune``: `doit tune`, split by job.
"""
