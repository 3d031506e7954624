"""Core (host and board alike): the vocabulary every stage shares, below all of them: the runtime registry
(``runtimes``), the rollout's spec (board states, waves, max_fail, host ranges), the results schema with its
parsers and store, the accuracy judge's floors, the provenance labels (docs/architecture.md "Layers"). Imports
only errors, untrusted, names and board/ (the judge and statistics the board runs too); config imports it,
never the other way."""
