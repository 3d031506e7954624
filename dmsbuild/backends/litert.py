"""LiteRT (TensorFlow Lite) backend: FP32 and full-integer INT8 ``.tflite`` artifacts, built on the host.

Converters (the optional extra ``dmsbuild[litert]``; docs/targets.md says why these and what they cost):

- ``litert-torch`` (Google's PyTorch -> LiteRT converter, formerly ai-edge-torch) converts the project's
  PyTorch model (``model.factory`` + checkpoint) to an FP32 ``.tflite``; a brought ONNX model
  (``model.onnx``) is first turned back into a ``torch.nn.Module`` by ``onnx2torch`` (no TensorFlow needed);
- ``ai-edge-quantizer`` quantizes that FP32 model to full integer (int8 weights and activations, int8
  input and outputs: recipe ``static_wi8_ai8``), calibrated on the project's calibration set
  (``data.calibration``, the first ``data.max_calibration_samples``);
- ``ai-edge-litert`` is the interpreter: the host gate runs every ``.tflite`` artifact itself on the
  validation set, with the same metrics and floors as every ONNX artifact (``dmsbuild.convert.evaluate``),
  through ``dmsbuild/board/runner/litert_runner.py``, the code the board runs.

Precisions: ``fp32`` -> ``fp32.tflite``; ``fp16`` -> ``fp16.tflite`` (float16 weights, float compute: TFLite's
"float16 quantization", ai-edge-quantizer's FLOAT_CASTING); ``int8-qdq`` (the profile's static INT8) -> ``int8.tflite``, full
integer (the TFLite name for what the ONNX targets ship as a QDQ model). Profile ``[backend]`` options:

- ``threads``: interpreter threads on the board (0: the runner's ``bench.threads``)
- ``calibration_samples``: calibration samples (0: ``data.max_calibration_samples``)

Nothing here imports the converters at module import time (``doit list`` stays light).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError
from .base import ArtifactPlan, Backend, Check, HostEnv, TunePart, profile_names

NAME = "litert"
OPTIONS = {"threads": int, "calibration_samples": int}
#: the .tflite each precision ships as
FILES = {"fp32": "fp32.tflite", "fp16": "fp16.tflite", "int8-qdq": "int8.tflite"}
#: the precisions `doit tune` searches as LiteRT candidates (beside an onnxruntime target's own): fp16 is left out,
#: its float16 weights are dequantized to float32 and computed as fp32 on LiteRT's CPU path
TUNE_PRECISIONS = ("fp32", "int8-qdq")
INSTALL_HINT = "pip install 'dmsbuild[litert]' (litert-torch, ai-edge-quantizer, ai-edge-litert; about 1.1 GB)"
ONNX2TORCH_HINT = "pip install onnx2torch torchvision (converts a brought ONNX model for litert-torch)"
SIGNATURE = "serving_default"


def load_options(backend: dict[str, Any], source: str, runtime: str = NAME, allowed: dict | None = None) -> dict[str, Any]:
    allowed = dict(OPTIONS if allowed is None else allowed)
    for key, value in backend.items():
        if key not in allowed:
            raise UserError(f"{source}: unknown field 'backend.{key}' for runtime '{runtime}'; allowed: {', '.join(allowed)}",
                            hint=f"remove 'backend.{key}' from {source}")
        want = allowed[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise UserError(f"{source}: field 'backend.{key}' must be {want.__name__}, not {type(value).__name__}",
                            hint=f"fix it in {source}")
        if want is int and value < 0:
            raise UserError(f"{source}: field 'backend.{key}' must be >= 0", hint=f"fix it in {source}")
    return {"threads": 0, "calibration_samples": 0, **{k: v for k, v in backend.items() if k in OPTIONS}}


def check_precisions(profile: Any, runtime: str = NAME, allowed: tuple[str, ...] = tuple(FILES)) -> None:
    wrong = [p for p in profile.precisions if p not in allowed]
    if wrong:
        raise UserError(f"{profile.source}: field 'precisions' has {wrong}; runtime '{runtime}' ships {list(allowed)} "
                        "(int8-qdq: full-integer INT8 .tflite)",
                        hint=f"set precisions to a subset of {list(allowed)} in {profile.source}")


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------
def _require(module: str, hint: str, what: str) -> Any:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs the Python package {module!r}, which is not installed: {hint}") from None
    _absl_to_real_stderr()
    return mod


def _absl_to_real_stderr() -> None:
    """absl (imported by the LiteRT stack) logs to the sys.stderr of its import time; under doit that is a
    capture object without close(), and absl's atexit close() then prints a traceback after every build."""
    import sys

    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    handler = absl_logging.get_absl_handler()
    for h in (handler, getattr(handler, "python_handler", None)):
        if h is not None and hasattr(h, "stream") and not hasattr(h.stream, "close"):
            h.stream = sys.__stderr__


def _torch_module(project: Any) -> Any:
    """The float model as a torch.nn.Module: the factory's, or a brought ONNX model through onnx2torch."""
    if project.model.onnx is None:
        from ..convert.export import load_torch_model

        return load_torch_model(project)
    onnx2torch = _require("onnx2torch", ONNX2TORCH_HINT, f"{project.source}: model.onnx -> TFLite")
    from ..convert.paths import Paths

    return onnx2torch.convert(str(Paths.of(project).fp32)).float().eval()


def fp32_cache(project: Any) -> Path:
    """The FP32 .tflite of the current FP32 ONNX (keyed by its sha256: one conversion for every target)."""
    from ..convert.paths import Paths

    fp32 = Paths.of(project).fp32
    digest = hashlib.sha256(fp32.read_bytes()).hexdigest()[:16]
    return project.artifacts / "common" / "tflite" / f"fp32-{digest}.tflite"


def convert_fp32(project: Any) -> Path:
    """FP32 .tflite of the project's model (cached by the FP32 ONNX it matches); litert-torch converts it."""
    out = fp32_cache(project)
    if out.is_file():
        return out
    import torch

    litert_torch = _require("litert_torch", INSTALL_HINT, f"{project.source}: TFLite artifacts")
    model = _torch_module(project)
    example = torch.zeros(project.input.shape, dtype={"float32": torch.float32, "uint8": torch.uint8}.get(
        project.input.dtype, torch.float32))
    started = time.perf_counter()
    try:
        edge = litert_torch.convert(model, (example,))
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; one line names the step
        raise UserError(f"{project.source}: litert-torch cannot convert the model to TFLite: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                        hint="see docs/targets.md (LiteRT): unsupported ops must be rewritten in the model") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob("fp32-*.tflite"):
        stale.unlink()
    tmp = out.with_name(out.name + ".tmp")
    edge.export(str(tmp))
    os.replace(tmp, out)
    print(f"  litert-torch: {out.name} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)",
          flush=True)
    return out


def output_order(path: Path) -> list[str]:
    """The model's output tensor names in the order of the project's heads (litert_runner.ordered_outputs)."""
    from ..board.runner.litert_runner import import_interpreter, ordered_outputs

    Interpreter, _, _ = import_interpreter()
    return [d["name"] for d in ordered_outputs(Interpreter(model_path=str(path)))]


def calibration_inputs(project: Any, limit: int) -> list[Any]:
    import numpy as np

    from ..convert.data import iter_samples, list_samples

    files = list_samples(project, "calibration")
    return [np.asarray(a, dtype=np.float32)[None] for _, a in iter_samples(files, project, limit, "calibration")]


def cast_fp16(fp32_tflite: Path, out: Path) -> dict[str, Any]:
    """FP16 weights (float compute, float I/O): ai-edge-quantizer's FLOAT_CASTING weight-only recipe."""
    _require("ai_edge_quantizer", INSTALL_HINT, "FP16 TFLite")
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              granularity=qtyping.QuantGranularity.TENSORWISE,
                              algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    qt = quantizer.Quantizer(str(fp32_tflite))
    qt.load_quantization_recipe(rm.get_quantization_recipe())
    tmp = out.with_name(out.name + ".tmp")
    qt.quantize().export_model(str(tmp), overwrite=True)
    os.replace(tmp, out)
    return {"format": "tflite-float16-weights", "tool": "ai-edge-quantizer FLOAT_CASTING (weights fp16)"}


def quantize_int8(project: Any, fp32_tflite: Path, out: Path, samples: int) -> dict[str, Any]:
    """Full-integer INT8 .tflite (int8 weights, activations, input and outputs) calibrated on the project's
    calibration set with ai-edge-quantizer's static_wi8_ai8 recipe; returns what was done."""
    aeq = _require("ai_edge_quantizer", INSTALL_HINT, f"{project.source}: INT8 TFLite")
    from ai_edge_quantizer import recipe

    from ..board.runner.litert_runner import import_interpreter

    limit = samples or project.data.max_calibration_samples
    data = calibration_inputs(project, limit)
    Interpreter, _, _ = import_interpreter()
    sig_inputs = Interpreter(model_path=str(fp32_tflite)).get_signature_list()[SIGNATURE]["inputs"]
    started = time.perf_counter()
    qt = aeq.quantizer.Quantizer(str(fp32_tflite))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    result = qt.calibrate({SIGNATURE: [{sig_inputs[0]: x} for x in data]}, num_threads=1)
    quantized = qt.quantize(result)
    tmp = out.with_name(out.name + ".tmp")
    quantized.export_model(str(tmp), overwrite=True)
    os.replace(tmp, out)
    print(f"  ai-edge-quantizer: {out.name} full-integer INT8 on {len(data)} calibration samples "
          f"({time.perf_counter() - started:.1f} s)", flush=True)
    return {"format": "tflite-full-integer", "tool": "ai-edge-quantizer static_wi8_ai8",
            "calibration_samples": len(data)}


# --------------------------------------------------------------------------
# host accuracy gate on the .tflite itself
# --------------------------------------------------------------------------
def eval_path(out: Path) -> Path:
    """Where the host evaluation of a .tflite artifact lies (read by write_build through ArtifactPlan.eval_json)."""
    return out.parent / "eval" / f"{out.stem}.json"


def run_tflite(path: Path, outputs: list[str]):
    """A ``run_onnx``-like function for ``evaluate_artifact``: float outputs per head of the project."""
    from ..board.runner.litert_runner import TfliteModel

    def run(_path: Path, _input_name: str, inputs: Any, names: list[str], threads: int = 0) -> dict[str, Any]:
        model = TfliteModel(str(path), outputs=outputs)
        if len(model.outputs) != len(names):
            raise UserError(f"{path.name}: {len(model.outputs)} outputs, the project names {len(names)} heads")
        return dict(zip(names, model.run_many(inputs)))

    return run


def evaluate(project: Any, artifact: Path, outputs: list[str]) -> dict[str, Any]:
    from ..convert.evaluate import evaluate_artifact
    from ..convert.paths import Paths

    return evaluate_artifact(project, artifact, Paths.of(project).validation, eval_path(artifact),
                             run=run_tflite(artifact, outputs))


def build_tflite(project: Any, precision: str, out: Path, options: dict[str, Any]) -> None:
    """compile:<target>.<precision>-tflite: convert (and quantize), evaluate on the host, then put the file in place."""
    _require("ai_edge_litert", INSTALL_HINT, f"{project.source}: TFLite artifacts")
    fp32 = convert_fp32(project)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(out.stem + ".staged.tflite")
    if precision == "fp32":
        shutil.copyfile(fp32, staged)
        info: dict[str, Any] = {"format": "tflite-float32", "tool": "litert-torch"}
    elif precision == "fp16":
        info = cast_fp16(fp32, staged)
    else:
        info = quantize_int8(project, fp32, staged, options["calibration_samples"])
    outputs = output_order(staged)
    info["outputs"] = outputs
    evaluate(project, staged, outputs)
    # the evaluation names the staged file: it is the shipped file's evaluation
    ev = eval_path(staged)
    data = json.loads(ev.read_text())
    data["artifact"] = str(out.relative_to(project.root)) if out.is_relative_to(project.root) else str(out)
    data["litert"] = info
    final = eval_path(out)
    final.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    gate_npz = ev.with_name(ev.stem + ".gate.npz")
    if gate_npz.is_file():
        os.replace(gate_npz, final.with_name(final.stem + ".gate.npz"))
        data["gate_outputs"] = str(final.with_name(final.stem + ".gate.npz").relative_to(project.root))
        final.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    ev.unlink(missing_ok=True)
    os.replace(staged, out)  # last: the artifact exists only with its evaluation beside it


def _calibration_files(project: Any) -> list[Path]:
    """The calibration samples (a dependency of the INT8 model); none listed when the folder is unusable:
    the INT8 build then stops on the same UserError line when it reads them."""
    from ..convert.data import list_samples

    try:
        return list_samples(project, "calibration")
    except UserError:
        return []


def plan(project: Any, profile: Any, sources: dict[str, Path]) -> list[Any]:
    """One .tflite per precision of the profile (fp32, int8-qdq -> full integer)."""
    from ..convert.paths import Paths

    check_precisions(profile)
    if project.several_inputs:  # ai-edge-torch's signature and the board's litert_runner.py feed one input
        raise UserError(f"{profile.source}: target '{profile.name}' (runtime {profile.runtime}) cannot take a model with "
                        f"{len(project.all_inputs)} inputs yet: its LiteRT conversion and the board's litert_runner.py "
                        "feed one input", hint="build this model for an ONNX Runtime, QNN or TensorRT target")
    options = load_options(profile.backend, str(profile.source))
    out_dir = project.artifacts / profile.name
    plans = []
    for precision in profile.precisions:
        out = out_dir / FILES[precision]
        plans.append(ArtifactPlan(
            name=f"{precision}-tflite", precision=precision, kind="tflite", path=out, source=sources[precision],
            runtime=NAME, providers=["XNNPACK"], provider_options=[{"threads": options["threads"]}], portable=True,
            build=lambda precision=precision, out=out: build_tflite(project, precision, out, options),
            settings={"backend": dict(profile.backend), "runtime": NAME, "precision": precision},
            file_dep=[Paths.of(project).fp32, Paths.of(project).validation,
                      *(_calibration_files(project) if precision == "int8-qdq" else [])],
            eval_json=eval_path(out)))
    return plans


#: the host's converters and interpreter (the ``litert`` extra)
CONVERTERS = ("litert-torch", "ai-edge-quantizer", "ai-edge-litert")
#: their import names (``missing_extra`` looks for them without importing them: `doit list` stays light)
EXTRA_MODULES = ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")


def missing_extra() -> list[str]:
    """The modules of the litert extra this Python cannot import (found by name, nothing imported)."""
    import importlib.util

    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]


def tune_candidate_path(project: Any, recipe: Any, model_sha: str) -> Path:
    """``artifacts/common/tune-<key>.tflite``: a LiteRT candidate of `doit tune` (the key has the recipe's runtime,
    so it never names an ONNX candidate's file); its host evaluation is ``artifacts/common/eval/tune-<key>.json``."""
    return project.artifacts / "common" / f"tune-{recipe.key(model_sha, project.data.max_calibration_samples)}.tflite"


def build_tune_candidate(project: Any, recipe: Any, model_sha: str) -> Path:
    """A LiteRT candidate built once, exactly as the target's own .tflite artifacts are (``build_tflite``:
    litert-torch, ai-edge-quantizer's full integer, the host evaluation with the LiteRT interpreter)."""
    out = tune_candidate_path(project, recipe, model_sha)
    if not out.is_file():
        build_tflite(project, recipe.precision, out, load_options({}, str(project.source)))
    return out
BOARD_HINT = "pip install ai-edge-litert (Coral: apt-get install python3-tflite-runtime)"


def converter_checks(profiles: Sequence[Any], env: HostEnv) -> list[Check]:
    """The host's .tflite converters and interpreter (dmsbuild[litert]), for ``profiles`` (targets shipping .tflite)."""
    need = profile_names(profiles)
    return [Check("host", dist, "ok" if env.version_of(dist) else "missing", env.version_of(dist), need,
                  "pip install 'dmsbuild[litert]'") for dist in CONVERTERS]


def interpreter_check(board: str, facts: Mapping[str, Any], need: str) -> Check:
    """The board's LiteRT interpreter (ai-edge-litert or Coral's tflite-runtime; runner/litert_runner.py runs with it)."""
    lite = facts.get("litert")
    return Check(board, "LiteRT interpreter", "ok" if lite else "missing", lite, need, BOARD_HINT)


class LiteRtBackend(Backend):
    """.tflite files built on the host (litert-torch, ai-edge-quantizer), run and timed on the board by the
    release's runner with the LiteRT interpreter (runner/litert_runner.py beside dms_bench.py).

    A part of an ``onnxruntime`` target's `doit tune` space when the target ships ``[backend] tflite`` (the runtime
    dimension: ``tune_part``, ``tune_build``, ``tune_entry``, ``tune_plan``; docs/tune.md, "LiteRT candidates").
    A ``litert`` target itself is not tuned: ``tune_space`` is empty and ``tune_measured`` False, so `doit tune`
    refuses it in one line."""

    name = NAME

    def validate(self, profile: Any) -> dict[str, Any]:
        check_precisions(profile)
        return load_options(profile.backend, str(profile.source))

    def plan(self, project: Any, profile: Any, sources: dict[str, Path]) -> list[ArtifactPlan]:
        return plan(project, profile, sources)

    def host_checks(self, profiles: Sequence[Any], env: HostEnv) -> list[Check]:
        return converter_checks(profiles, env)

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: Any) -> list[Check]:
        # no onnxruntime: runner/litert_runner.py runs .tflite files with numpy and the interpreter only
        return [interpreter_check(board, facts, f"target {profile.name} ({profile.runtime})")]

    # ------------------------------------------------------------------ a part of another runtime's tune space
    def tune_part(self, profile: Any, enable: str) -> TunePart:
        """Its part of the tune space of ``profile`` (a target whose boards run LiteRT: it ships .tflite files):
        LiteRT's ``TUNE_PRECISIONS`` that [tune] precision names, as this backend builds them (fp32, full-integer
        INT8), whichever .tflite the target itself ships, each at 1..cores interpreter threads; ``missing`` when
        they are not searched here."""
        searched = [p for p in TUNE_PRECISIONS if p in profile.tune.precision]
        lacking = missing_extra()
        missing = None
        if lacking:
            missing = (f"LiteRT candidates skipped: the litert extra is missing here (no {', '.join(lacking)}); "
                       f"{INSTALL_HINT}")
        elif not searched:
            missing = f"LiteRT candidates skipped: none of LiteRT's {', '.join(TUNE_PRECISIONS)} is in [tune] precision"
        # the board fact "litert" (runner/probe.py: the interpreter wheel and version) makes a board kind too
        return TunePart(NAME, tuple(searched or TUNE_PRECISIONS), missing, enable, kind_facts=(NAME,))

    def tune_build(self, project: Any, profile: Any, recipe: Any, model_sha: str) -> Path:
        return build_tune_candidate(project, recipe, model_sha)

    def tune_path(self, project: Any, recipe: Any, model_sha: str) -> Path:
        return tune_candidate_path(project, recipe, model_sha)

    def tune_entry(self) -> dict[str, Any]:
        # threads 0: the candidate's tuned session.intra_op_threads decides (runner/litert_runner.py open_entry)
        return {"kind": "tflite", "providers": ["XNNPACK"], "provider_options": [{"threads": 0}]}

    def tune_plan(self, name: str, recipe: Any, source: Path, out: Path, session: dict[str, Any]) -> ArtifactPlan:
        """The chosen LiteRT candidate shipped as ``name`` (``tuned.tflite``): a copy of the tuned file, with its own
        host evaluation (the gate judged the .tflite itself) and its thread count as the session."""
        quant = ({"quantization": {"format": "tflite-full-integer", "tool": "ai-edge-quantizer static_wi8_ai8"}}
                 if recipe.precision == "int8-qdq" else {})
        entry = self.tune_entry()
        return ArtifactPlan(name=name, precision=recipe.precision, kind=entry["kind"], path=out.with_suffix(".tflite"),
                            source=source, runtime=NAME, providers=entry["providers"],
                            provider_options=entry["provider_options"], portable=True,
                            session={"intra_op_threads": int(session["intra_op_threads"])}, settings=quant,
                            eval_json=source.parent / "eval" / f"{source.stem}.json")


BACKEND = LiteRtBackend()
