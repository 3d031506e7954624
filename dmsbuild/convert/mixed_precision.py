"""Accuracy-aware mixed precision: find the few nodes whose quantization costs most accuracy and keep them in float.

How an INT8 artifact that fails the accuracy gate becomes one that passes (issue 16, item 3;
docs/mixed-precision.md):

1. **Rank** (cheap, one pass): ONNX Runtime's QDQ debugging tools
   (``onnxruntime.quantization.qdq_loss_debug``) run the pre-processed FP32 graph and the QDQ artifact on
   the validation inputs (the data the gate judges) with every intermediate tensor saved; per quantized
   node we get the SQNR of its output vs FP32 (error accumulated so far), how much SQNR the node itself
   loses (output vs its inputs: the error it adds) and the SQNR of its quantized weight. Nodes are ranked by
   the SQNR they lose. These are *simulated* figures: the tools run the QDQ graph unfused (optimisations off),
   while the board runs ONNX Runtime's fused integer kernels, which can lose more (measured on the corpus
   ViT: 21.5 dB simulated, 9.0 dB fused). So:
2. **Measure** (costly, one build per node): for the top ``measure`` nodes, the real artifact is built with
   the node's group kept in float (ORT ``quantize_static(nodes_to_exclude=...)``, the project's own
   calibration) and scored by the project's own evaluation and accuracy gate (``evaluate.py``,
   ``accuracy.py``); the ranking is re-ordered by that measured effect (fewest gate failures, then the
   highest worst-head SQNR).
3. **Candidates**: the union of the groups of the top 1, 2, 4, 8 ranked nodes; ``find_passing`` builds and
   gates them smallest first and returns the smallest set that passes.

A node's *group* is the node plus the producers of its quantized activation inputs: in a QDQ graph a tensor
stays quantized while its producer quantizes its output, so keeping a node alone in float would still feed
it the quantized tensor.

Public API (``dmsbuild tune`` calls these)::

    rank_nodes(project, profile, fp32_path, qdq_path, calibration, samples=32) -> list[NodeScore]
    measure_nodes(project, profile, fp32_path, ranked, calibration, work_dir, count=8) -> list[NodeScore]
    fallback_candidates(ranked, sizes=(1, 2, 4, 8)) -> list[list[str]]
    build_candidate(project, profile, fp32_path, nodes, calibration, out) -> Candidate
    find_passing(project, profile, fp32_path, candidates, calibration, work_dir) -> SearchResult

``calibration`` is the list of calibration files (``data.list_samples(project, "calibration", ...)``); the
validation set is read from ``artifacts/common/validation.npz`` (``doit evaluate:reference``).

Run alone::

    python -m dmsbuild.convert.mixed_precision target=rpi5 [measure=8|all|0] [sizes=1,2,4,8] [samples=32]

prints the table (node, op type, SQNRs, measured effect on the gate), tries the candidates and prints the
``nodes_to_exclude`` line to paste into the target profile.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ProjectConfig, StaticQuantConfig, TargetProfile, static_quant_for
from ..errors import UserError
from ..board.runner.metrics import _db as sqnr_from_powers

#: op types that only move or reshape data: quantizing them adds no error of their own, keeping them float gains nothing
_DATA_MOVEMENT = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Gather", "Slice", "Split", "Concat",
                  "Expand", "Identity", "Shape", "Cast", "Resize", "MaxPool", "Pad", "DepthToSpace", "SpaceToDepth"}


#: ORT's name for a graph output's tensor before its QuantizeLinear (quant_utils.QUANT_INPUT_SUFFIX)
_QUANT_INPUT = "_QuantizeLinear_Input"
#: ORT's suffix of a quantized initializer (quant_utils.TENSOR_NAME_QUANT_SUFFIX), as create_weight_matching strips it
_QUANTIZED = "_quantized"
#: the SQNR given to a tensor equal to FP32 (the graph input), so a node fed by it has a finite loss
_IDENTICAL_DB = 200.0


@dataclass
class GateEffect:
    """A real candidate's host evaluation against the target's gate."""

    failures: list[str]
    #: worst head's SQNR vs FP32, dB (None: identical); worst head's mean cosine; worst top-1 agreement
    min_sqnr_db: float | None
    min_cosine: float | None
    min_top1_agreement: float | None

    @property
    def passed(self) -> bool:
        return not self.failures

    def order(self) -> tuple[int, float]:
        """Sort key, best first: fewer gate failures, then a higher worst-head SQNR."""
        sqnr = math.inf if self.min_sqnr_db is None else self.min_sqnr_db
        return (len(self.failures), -sqnr)

    def describe(self) -> str:
        verdict = "pass" if self.passed else f"{len(self.failures)} failure(s)"
        return f"{verdict}, SQNR {_db(self.min_sqnr_db)}, cosine {_num(self.min_cosine, '.4f')}"


@dataclass
class NodeScore:
    """One quantized node of the pre-processed graph and what its quantization costs."""

    node: str
    op_type: str
    #: SQNR of the node's output in the QDQ artifact vs the FP32 graph (simulated, unfused), dB
    sqnr_db: float | None
    #: SQNR the node loses: its worst activation input's SQNR minus its output's (simulated), dB
    loss_db: float | None
    #: SQNR of its quantized weight vs the float weight, dB (None: no weight)
    weight_sqnr_db: float | None
    #: the nodes to keep in float so that this node and its inputs are float (the node first)
    group: list[str] = field(default_factory=list)
    #: the measured effect of keeping ``group`` in float (``measure_nodes``), None when not measured
    effect: GateEffect | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Candidate:
    """A built mixed-precision artifact and its verdict."""

    nodes: list[str]
    path: Path
    effect: GateEffect
    size: int
    seconds: float


@dataclass
class SearchResult:
    """``find_passing``'s answer: the smallest passing candidate, or None and one line saying why."""

    passing: Candidate | None
    tried: list[Candidate]
    message: str


def _db(v: float | None) -> str:
    return "identical" if v is None else f"{v:.1f} dB"


def _num(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _sqnr_db(ref: Any, got: Any) -> float | None:
    """SQNR in dB of ``got`` vs ``ref`` (lists of arrays or arrays, scalars too); None when identical."""
    import numpy as np

    r = np.concatenate([np.atleast_1d(np.asarray(a, dtype=np.float64)).ravel() for a in (ref if isinstance(ref, list) else [ref])])
    g = np.concatenate([np.atleast_1d(np.asarray(a, dtype=np.float64)).ravel() for a in (got if isinstance(got, list) else [got])])
    if r.shape != g.shape:
        return None
    return sqnr_from_powers(float(np.sum(r ** 2)), float(np.sum((r - g) ** 2)))  # the gate's own definition


def _validation_inputs(project: ProjectConfig, samples: int) -> Any:
    from .paths import Paths

    import numpy as np

    path = Paths.of(project).validation
    if not path.is_file():
        raise UserError(f"{path}: the FP32 reference on the validation set is missing",
                        hint="run `doit evaluate:reference` (or `doit build target=<name>`) first")
    from ..board.runner.dms_bench import reference_inputs

    with np.load(path, allow_pickle=False) as z:
        by_name = reference_inputs(z)  # {None: inputs} for one input
        inputs = {n: (v[:samples] if samples else v) for n, v in by_name.items()}
    return inputs[None] if None in inputs else inputs


def rank_nodes(project: ProjectConfig, profile: TargetProfile, fp32_path: Path, qdq_path: Path,
               calibration: list[Path] | None = None, samples: int = 32) -> list[NodeScore]:
    """Quantized nodes of ``qdq_path`` ranked by the SQNR they lose (simulated with ORT's qdq_loss_debug), worst first.

    ``calibration`` is accepted for API symmetry and unused: the ranking runs on the first ``samples``
    validation inputs, the data the gate judges, because ranges calibrated on a few images can clip other
    inputs (the error the gate sees)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as qdb

    from .quantize import pre_process

    cfg = static_quant_for(project, profile)
    if cfg.quant_format != "QDQ":
        raise UserError(f"{qdq_path}: the mixed-precision ranking reads QDQ graphs; this target's quant_format is "
                        f"{cfg.quant_format!r}", hint="rank with quant_format = \"QDQ\"; the excluded nodes apply to QOperator too")
    inputs = _validation_inputs(project, samples)
    from .evaluate import feed_of, sample_count

    feeds = [feed_of(project.input.name, inputs, i) for i in range(sample_count(inputs))]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dmsbuild-mp-") as tmp:
        folder = Path(tmp)
        pre = pre_process(project, fp32_path, cfg, folder)
        print(f"  mixed precision: saving every intermediate tensor of {fp32_path.name} and {qdq_path.name} "
              f"on {len(feeds)} validation samples", flush=True)
        qdb.modify_model_output_intermediate_tensors(str(pre), str(folder / "float.aug.onnx"))
        qdb.modify_model_output_intermediate_tensors(str(qdq_path), str(folder / "qdq.aug.onnx"))
        float_acts = qdb.collect_activations(str(folder / "float.aug.onnx"), feeds)
        qdq_acts = qdb.collect_activations(str(folder / "qdq.aug.onnx"), feeds)
        matching = qdb.create_activation_matching(qdq_acts, float_acts)
        logging.disable(logging.ERROR)  # the tool logs an error per bias it cannot pair (ORT names them <bias>0, <bias>1 ...)
        try:
            weights = qdb.compute_weight_error(qdb.create_weight_matching(str(pre), str(qdq_path)), err_func=_weight_sqnr)
        except (RuntimeError, ValueError):  # a DequantizeLinear layout the tool does not know: rank without weights
            weights = {}
        finally:
            logging.disable(logging.NOTSET)
    qdq_graph = onnx.load(str(qdq_path), load_external_data=False).graph
    # SQNR of each float tensor in the QDQ run vs the FP32 run, as its consumers see it (after its Q/DQ pair,
    # ORT's "xmodel" error): before the pair is no float value when the quantizer fused an activation into it
    acc: dict[str, float | None] = {}
    for name, values in float_acts.items():
        got = matching.get(name, {}).get("post_qdq", qdq_acts.get(name))
        if got is not None and len(got) == len(values):
            acc[name] = _sqnr_db(list(values), list(got))
    scores = _score_nodes(qdq_graph, acc, weights)
    print(f"  mixed precision: ranked {len(scores)} quantized nodes ({time.perf_counter() - started:.1f} s)", flush=True)
    return scores


def _weight_sqnr(a: Any, b: Any) -> float:
    v = _sqnr_db(a, b)
    return math.inf if v is None else v


def _score_nodes(qdq_graph: Any, acc: dict[str, float | None], weights: dict[str, float]) -> list[NodeScore]:
    """One NodeScore per node the QDQ graph quantized (an input fed by a DequantizeLinear), worst first.

    Walks the QDQ graph itself: the quantizer may fuse nodes of the float graph (Conv+Relu: the Relu goes, the
    QuantizeLinear clamps), and ``nodes_to_exclude`` takes the names of the nodes that remain."""
    producer = {o: n for n in qdq_graph.node for o in n.output}
    inits = {i.name for i in qdq_graph.initializer}

    def float_name(tensor: str) -> str:
        """The float tensor a QDQ-graph tensor stands for (through DequantizeLinear <- QuantizeLinear)."""
        node = producer.get(tensor)
        if node is not None and node.op_type == "DequantizeLinear":
            q = producer.get(node.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                return float_name(q.input[0])
            if node.input[0] in inits and node.input[0].endswith(_QUANTIZED):  # a weight: <name>_quantized
                return node.input[0][:-len(_QUANTIZED)]
        return tensor[:-len(_QUANT_INPUT)] if tensor.endswith(_QUANT_INPUT) else tensor

    def source(tensor: str) -> Any:
        """The original node computing a tensor (skipping its Q/DQ pair)."""
        node = producer.get(tensor)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node = producer.get(node.input[0])
        return node

    dq_outputs = {n.output[0] for n in qdq_graph.node if n.op_type == "DequantizeLinear"}
    out = []
    for node in qdq_graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.op_type in _DATA_MOVEMENT:
            continue
        fed = [i for i in node.input if i in dq_outputs]
        if not fed:
            continue  # not quantized (already float)
        activations = [i for i in fed if producer[i].input[0] not in inits]
        in_sqnr = [acc.get(float_name(i)) for i in activations]
        out_sqnr = [acc.get(float_name(o)) for o in node.output]
        sqnr = min((v for v in out_sqnr if v is not None), default=None)
        worst_in = min((v for v in in_sqnr if v is not None), default=_IDENTICAL_DB)
        loss = None if sqnr is None else worst_in - sqnr
        wts = [weights[float_name(i)] for i in fed if float_name(i) in weights and math.isfinite(weights[float_name(i)])]
        group = [node.name]
        for i in activations:
            p = source(i)
            if p is not None and p.name and p.name not in group:
                group.append(p.name)
        out.append(NodeScore(node.name, node.op_type, sqnr, loss, min(wts) if wts else None, group))
    out.sort(key=lambda s: -(s.loss_db if s.loss_db is not None else -math.inf))
    return out


def effect_of(project: ProjectConfig, profile: TargetProfile, result: dict[str, Any]) -> GateEffect:
    """A host evaluation (``evaluate.evaluate_artifact``'s dict) judged by the target's accuracy gate."""
    from .evaluate import gate_failures

    heads = result["heads"].values()
    sqnrs = [h["sqnr_db"] for h in heads if h.get("sqnr_db") is not None]
    cosines = [h["cosine"] for h in heads if h.get("cosine") is not None]
    return GateEffect(gate_failures(project, profile, result), min(sqnrs) if sqnrs else None,
                      min(cosines) if cosines else None, result.get("min_top1_agreement"))


def build_candidate(project: ProjectConfig, profile: TargetProfile, fp32_path: Path, nodes: list[str],
                    calibration: list[Path], out: Path) -> Candidate:
    """The real artifact with ``nodes`` kept in float (the target's own static settings), evaluated and gated."""
    from .evaluate import evaluate_artifact
    from .quantize import quantize_static_qdq
    from .paths import Paths

    started = time.perf_counter()
    cfg = dataclasses.replace(static_quant_for(project, profile), nodes_to_exclude=sorted(set(nodes)))
    quantize_static_qdq(project, fp32_path, out, cfg, calibration)
    result = evaluate_artifact(project, out, Paths.of(project).validation, out.with_suffix(".eval.json"))
    return Candidate(list(nodes), out, effect_of(project, profile, result), out.stat().st_size,
                     time.perf_counter() - started)


def measure_nodes(project: ProjectConfig, profile: TargetProfile, fp32_path: Path, ranked: list[NodeScore],
                  calibration: list[Path], work_dir: Path, count: int = 8) -> list[NodeScore]:
    """Build and gate one artifact per top-``count`` node (its group in float); re-rank by the measured effect.

    The measured nodes come first, best effect first; the others keep their simulated order after them.
    ``count`` 0: every ranked node."""
    top, rest = (ranked[:count], ranked[count:]) if count > 0 else (list(ranked), [])
    started = time.perf_counter()
    for k, score in enumerate(top, 1):
        cand = build_candidate(project, profile, fp32_path, score.group, calibration, work_dir / f"node-{k}.onnx")
        score.effect = cand.effect
        left = (time.perf_counter() - started) / k * (len(top) - k)
        print(f"  mixed precision: measured {k}/{len(top)}: {score.node} in float: {cand.effect.describe()} "
              f"({cand.seconds:.1f} s, ~{left:.0f} s left)", flush=True)
    top.sort(key=lambda s: s.effect.order() if s.effect else (math.inf, 0.0))
    return top + rest


def collapsed_head_candidates(fp32_path: Path, failures: list[str]) -> list[tuple[str, str, list[str]]]:
    """For each output whose gate failure is a collapsed slice (docs/accuracy.md "Outputs by kind"): (output,
    slice, [the node producing that output]). A YOLO-style ``Concat`` of boxes (0..640) and class scores (0..1)
    quantized with one scale loses the scores; kept in float, each input keeps its own scale. No ranking by
    SQNR finds it (the boxes dominate every whole-tensor figure), so these are tried first (issue 24 item 7)."""
    import re

    import onnx

    heads: dict[str, str] = {}
    for line in failures:
        m = re.match(r"^head '(.+?)': slice '(\w+)' .* collapsed", line)
        if m:
            heads.setdefault(m.group(1), m.group(2))
    if not heads:
        return []
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    producer = {o: n.name for n in graph.node for o in n.output if n.name}
    return [(head, slc, [producer[head]]) for head, slc in heads.items() if head in producer]


def fallback_candidates(ranked: list[NodeScore], sizes: tuple[int, ...] = (1, 2, 4, 8)) -> list[list[str]]:
    """Node sets to keep in float: the union of the groups of the top ``k`` ranked nodes, for each ``k`` in ``sizes``.

    Duplicates (a larger ``k`` adding nothing new) are dropped; sets grow with ``k``."""
    out: list[list[str]] = []
    for k in sorted(set(sizes)):
        if k < 1:
            continue
        nodes: list[str] = []
        for score in ranked[:k]:
            nodes.extend(n for n in score.group if n not in nodes)
        if nodes and nodes not in out:
            out.append(nodes)
    return out


def find_passing(project: ProjectConfig, profile: TargetProfile, fp32_path: Path, candidates: list[list[str]],
                 calibration: list[Path], work_dir: Path) -> SearchResult:
    """Build and gate the candidates smallest first; the first that passes is the smallest exclusion set found."""
    tried: list[Candidate] = []
    for k, nodes in enumerate(sorted(candidates, key=len), 1):
        cand = build_candidate(project, profile, fp32_path, nodes, calibration, work_dir / f"candidate-{k}.onnx")
        tried.append(cand)
        print(f"  mixed precision: candidate {k}/{len(candidates)}: {len(nodes)} node(s) in float: "
              f"{cand.effect.describe()} ({cand.seconds:.1f} s)", flush=True)
        if cand.effect.passed:
            return SearchResult(cand, tried, f"target '{profile.name}': {len(nodes)} node(s) kept in float pass the "
                                             f"accuracy gate ({cand.effect.describe()})")
    biggest = max((len(c) for c in candidates), default=0)
    return SearchResult(None, tried, f"target '{profile.name}': no candidate passes the accuracy gate (tried "
                                     f"{len(tried)}, up to {biggest} node(s) in float); keep more nodes in float "
                                     "(larger sizes=), calibrate with more data, or drop int8-qdq for this target")


# --------------------------------------------------------------------------- command line
def format_table(ranked: list[NodeScore], shown: int = 15) -> str:
    """The ranking as a Markdown table (worst first)."""
    lines = ["| # | node | op type | output SQNR (sim.) | SQNR lost here (sim.) | weight SQNR | in float with it | effect on gate (measured) |",
             "|---:|---|---|---:|---:|---:|---:|---|"]
    for k, s in enumerate(ranked[:shown], 1):
        lines.append(f"| {k} | {s.node} | {s.op_type} | {_db(s.sqnr_db)} | {_num(s.loss_db, '.1f')} | "
                     f"{_num(s.weight_sqnr_db, '.1f')} | {len(s.group)} | {s.effect.describe() if s.effect else 'not measured'} |")
    return "\n".join(lines) + "\n"


def exclude_line(nodes: list[str]) -> str:
    """The TOML line to paste into the target profile's [quantization] table."""
    return "nodes_to_exclude = " + json.dumps(sorted(set(nodes)))


def _parse(argv: list[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    for a in argv:
        key, sep, value = a.partition("=")
        if not sep or key not in ("target", "measure", "sizes", "samples"):
            raise UserError(f"argument {a!r}: expected target=NAME [measure=N|all] [sizes=1,2,4,8] [samples=N]",
                            hint="python -m dmsbuild.convert.mixed_precision target=rpi5")
        args[key] = value
    if "target" not in args:
        raise UserError("missing target=NAME", hint="python -m dmsbuild.convert.mixed_precision target=rpi5")
    return args


def main(argv: list[str] | None = None) -> int:
    """Rank, measure, search and print; 0 when a passing set was found (or the artifact passes already), 1 otherwise."""
    from ..config import load_project, load_target
    from .data import list_samples
    from .paths import Paths, qdq_key as _qdq_key

    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        measure = 0 if args.get("measure") == "all" else int(args.get("measure", "8"))
        samples = int(args.get("samples", "32"))
        sizes = tuple(int(v) for v in args.get("sizes", "1,2,4,8").split(","))
    except ValueError:
        raise UserError("measure=, samples= and sizes= take whole numbers (sizes comma-separated)",
                        hint="e.g. measure=8 sizes=1,2,4,8") from None
    project = load_project()
    profile = load_target(project.root, args["target"])
    if "int8-qdq" not in profile.precisions:
        raise UserError(f"{profile.source}: field 'precisions' has no int8-qdq; nothing to keep in float",
                        hint="add \"int8-qdq\" to the target's precisions")
    own_table = profile.quantization is not None
    base_cfg = static_quant_for(project, profile)
    if base_cfg.nodes_to_exclude:  # rank the fully quantized artifact, not one already mixed
        profile = copy.copy(profile)
        profile.quantization = dataclasses.replace(base_cfg, nodes_to_exclude=[])
    paths = Paths.of(project)
    qdq = paths.qdq(_qdq_key(project, profile))
    for needed in (paths.fp32, qdq, paths.validation):
        if not needed.is_file():
            raise UserError(f"{needed}: not built yet", hint=f"run `doit build target={profile.name}` first "
                                                              "(it may stop at the accuracy gate; the files stay)")
    calibration = list_samples(project, "calibration", project.data.max_calibration_samples)
    with tempfile.TemporaryDirectory(prefix="dmsbuild-mp-") as tmp:
        work = Path(tmp)
        from .evaluate import evaluate_artifact

        base = effect_of(project, profile, evaluate_artifact(project, qdq, paths.validation, work / "all-int8.json"))
        print(f"\nfully quantized ({qdq.name}): {base.describe()}")
        for line in base.failures:
            print(f"  - {line}")
        ranked = rank_nodes(project, profile, paths.fp32, qdq, calibration, samples)
        if args.get("measure") != "0":
            ranked = measure_nodes(project, profile, paths.fp32, ranked, calibration, work, measure)
        print("\n" + format_table(ranked))
        if base.passed:
            print(f"target '{profile.name}': the fully quantized artifact passes the accuracy gate; nothing to keep in float")
            return 0
        heads = collapsed_head_candidates(paths.fp32, base.failures)
        for head, slc, nodes in heads:
            print(f"output '{head}': slice '{slc}' collapsed; trying its final node {nodes[0]!r} in float first")
        candidates = [nodes for _, _, nodes in heads]
        candidates += [c for c in fallback_candidates(ranked, sizes) if c not in candidates]
        result = find_passing(project, profile, paths.fp32, candidates, calibration, work)
        print("\n" + result.message)
        if result.passing is None:
            return 1
        fp32_size = paths.fp32.stat().st_size
        print(f"size {result.passing.size / 1e6:.2f} MB (fully quantized {qdq.stat().st_size / 1e6:.2f} MB, "
              f"FP32 {fp32_size / 1e6:.2f} MB)")
        where = (f"{profile.source} under [quantization]" if own_table else
                 f"{project.source} under [quantization.static] (every target without its own [quantization] table gets it)")
        print(f"\npaste into {where}:\n{exclude_line(result.passing.nodes)}")
        return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        sys.exit(2)
