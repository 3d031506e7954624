"""`doit tune`: find, per board kind, the fastest artifact that passes the accuracy gate, and ship it.

Which recipe, precision and runtime settings are fastest depends on the model,
the runtime and the board (issue 16: per-tensor QDQ 1.21x, QOperator 1.17x,
u8u8 0.83x of FP32 on one model; dynamic INT8 7-10x slower), so it is measured
on the user's own boards:

1. candidates = recipes (precision, per-channel, types, calibration, mixed
   precision) x runtime settings (intra-op threads, graph optimisation level,
   execution mode), each dimension named in the profile's ``[tune]``;
2. every recipe is built on the host and checked by the host accuracy gate
   first (cheap); a recipe that fails is never measured;
3. survivors are timed on one board of each kind INTERLEAVED with the default
   artifact (``runner/dms_bench.py --interleave --baseline``: alternating
   blocks, rotated order, both sessions loaded), and the ratio's bootstrap CI
   comes from ``regression.bootstrap_ratio``; back-to-back timing favours
   whichever session ran last, so it is never used;
4. the choice per board kind: the fastest candidate whose CI says it is faster
   than the default and that passes the gate; then the board's own output
   check on the chosen one. None faster: the default stays, and it says so;
5. the choice goes to ``targets/<target>.tuned.toml`` (reviewable,
   committable); ``doit build``/``deploy`` ship it as the release's default
   artifact with its session settings, refusing a file tuned for another model.

Candidates are named by hash(model content, recipe, runtime settings);
measurements are cached per (candidate, default artifact, board kind) under
``artifacts/tune/<target>/``, each written atomically, so a second tune
measures only what is new and an interrupted one resumes.

The modules, one job each:

- ``space``: the candidates (recipe x runtime settings) and each runtime's tune space (``space_for``);
- ``recipe``: build a recipe's ONNX file on the host and gate it on accuracy (and ``tuned:<target>``);
- ``board``: a board's kind, its scratch releases (placed by ``ship.release`` like a deploy, never
  switched to) and the interleaved timing of a candidate against the default;
- ``choice``: which candidate may be chosen, the sentence, the choice file;
- ``report``: report.md, the Pareto plots, tune.json;
- ``run``: the search per board kind within the budget (``run_tune``, ``tune_kind``).

The choice file's format, and what the build needs of it, is ``dmsbuild.convert.tuned``.
"""
