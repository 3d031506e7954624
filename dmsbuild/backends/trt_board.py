"""TensorRT on the board: build the engine with trtexec (or install it from the host cache), benchmark, verify.

Driven from the host over the board's transport (argument lists only), for
the ``trt-onnx`` artifacts of a release (runtime ``tensorrt``):

1. one probe (the board's Python): where trtexec is (``backend.trtexec``, else
   on PATH), its TensorRT version (the ``[TensorRT vNNNNNN]`` tag trtexec prints
   first), the GPU compute capability (``nvidia-smi --query-gpu=compute_cap``,
   else the Jetson SoC in ``/proc/device-tree/compatible``) and whether the
   board's Python has ``tensorrt``;
2. per artifact the engine key (ONNX sha256, precision, TensorRT version,
   compute capability). The board keeps its engines in ``<root>/engines/``
   (outside the releases, so a redeploy of the same ONNX reuses them). An
   engine missing there is installed from the board's own folder of the host
   cache (``<engine_cache>/<board>/``) when the key matches, otherwise built
   by ``trtexec --onnx … --saveEngine`` on the board and copied back there.
   **An engine never crosses boards** (docs/targets.md, "Which engines a board
   trusts"): a TensorRT engine is opaque code for the GPU, and the key's
   TensorRT version and compute capability are the board's own word, so one
   board's engine is installed only on that board. Its sha256 is recorded
   when it comes home and checked twice on the way back: on the host before
   sending and with ``sha256sum`` on the board after installing;
3. ``trtexec --loadEngine … --exportTimes`` benchmarks it; the log and the
   exported JSON become the common result (:class:`TrtexecResultParser`);
4. the output check runs ``runner/trt_runner.py`` (TensorRT 10 Python API)
   when the board's Python has ``tensorrt``; otherwise ``verify`` stays null
   and the result's ``verify_note`` says why (never a made-up comparison).
"""
from __future__ import annotations

import importlib.util
import json
import posixpath
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..names import is_safe
from ..core.provenance import DOUBLE_MARKER
from ..core.results import ResultParser, tool_result
from ..transport.base import Transport
from . import tensorrt as trt
from . import trt_shapes

#: the board-side probe (dmsbuild/board/probe_tensorrt.py), sent as source with ``python3 -c``
PROBE_SCRIPT = Path(importlib.util.find_spec("dmsbuild.board.probe_tensorrt").origin).read_text(encoding="utf-8")

#: one trtexec build or benchmark may take this long on a board (s)
TRTEXEC_TIMEOUT = 3600.0


class TrtexecResultParser(ResultParser):
    """trtexec log + ``--exportTimes`` JSON -> the CONTRACTS §3 result (GPU compute and H2D/D2H included).

    ``output`` is a JSON object ``{"stdout": <trtexec log>, "times": <exportTimes text or null>,
    "warmup_ms": <--warmUp>}``.
    """

    runtime = trt.RUNTIME

    def parse_impl(self, output: str, *, board: str, artifact: dict, warmup: int, iterations: int) -> dict:
        data = json.loads(output)
        raw = trt.result_from_trtexec(data["stdout"], data.get("times"), artifact=artifact["name"],
                                      precision=artifact.get("precision", ""), warmup_ms=data.get("warmup_ms"),
                                      iterations=iterations)
        res = tool_result(artifact, "trtexec", warmup=warmup, iterations=iterations)
        if DOUBLE_MARKER in data["stdout"]:  # the trtexec test double says its per-query times are generated
            res["source"] = "double"
        if raw["error"] is not None:
            res["error"] = raw["error"]
            return res
        samples = raw.get("samples_ms")
        if not samples:
            res["error"] = "trtexec wrote no per-inference times (--exportTimes)"
            return res
        from ..core.results import fill_latency

        fill_latency(res, samples)
        res["iterations"] = len(samples)
        res["warmup"] = raw["warmup"] if isinstance(raw.get("warmup"), int) else warmup
        res["gpu"] = raw["gpu"]
        # trtexec's own view, kept: its throughput, its stability warnings, the per-layer profile
        info = raw.get("trtexec") or {}
        profile = {"tool": "trtexec", "throughput_qps": raw.get("throughput_ips"),
                   "warnings": [str(w)[:300] for w in (info.get("warnings") or [])][:20],
                   "layers": parse_export_profile(data.get("profile"))}
        problem = export_profile_problem(data.get("profile"))
        if problem:  # one line in the profile table instead of a silent null
            profile["note"] = problem
        res["profile"] = profile
        return res


def parse_export_profile(text: str | None, top: int = 10) -> list[dict] | None:
    """``--exportProfile`` JSON (``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}...]``,
    the layout of exportJSONProfile in TensorRT's samples/common/sampleReporting.cpp) -> the ``top`` layers by time."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    layers = [d for d in data if isinstance(d, dict) and "name" in d] if isinstance(data, list) else []
    layers.sort(key=lambda d: -float(d.get("averageMs") or d.get("timeMs") or 0))
    return [{"name": str(d["name"])[:200], "average_ms": float(d.get("averageMs") or 0.0),
             "percentage": float(d.get("percentage") or 0.0)} for d in layers[:top]]


def export_profile_problem(text: str | None) -> str | None:
    """One line saying why ``--exportProfile`` JSON gave no layers (truncated, malformed, no layer), else None.
    No profile at all (``export_profile`` off) is no problem."""
    if text is None:
        return None
    if not text.strip():
        return "trtexec --exportProfile wrote an empty file: no per-layer times"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        stripped = text.strip()
        cut = exc.pos >= len(stripped) - 1 or "Unterminated" in exc.msg or not stripped.endswith("]")
        what = f"truncated after {len(stripped)} characters" if cut else f"malformed at line {exc.lineno} ({exc.msg})"
        return f"trtexec --exportProfile JSON is {what}: per-layer times dropped (rerun the benchmark)"
    if not isinstance(data, list) or not any(isinstance(d, dict) and "name" in d for d in data):
        return "trtexec --exportProfile JSON holds no layer: no per-layer times"
    return None


def engines_dir(release_dir: str) -> str:
    """``<root>/engines`` for ``<root>/releases/<id>`` (or ``<root>/current``)."""
    parent = posixpath.dirname(release_dir.rstrip("/"))
    root = posixpath.dirname(parent) if posixpath.basename(parent) == "releases" else parent
    return posixpath.join(root, "engines")


def probe(transport: Transport, python: str, options: trt.TensorRTOptions) -> dict[str, Any]:
    res = transport.run([python, "-c", PROBE_SCRIPT, options.trtexec], timeout=300)
    if not res.ok:
        raise UserError(f"board {transport.name}: probing TensorRT with {python} failed (exit {res.exit_status}): "
                        f"{res.stderr_tail(3)}", hint="the board needs Python 3")
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise UserError(f"board {transport.name}: TensorRT probe printed no JSON: {res.stdout[-200:]!r}") from None


def _exists(transport: Transport, path: str) -> bool:
    return transport.run(["test", "-s", path], timeout=60).ok


def _read(transport: Transport, path: str) -> str | None:
    res = transport.run(["cat", path], timeout=120)
    return res.stdout if res.ok else None


def _fail(entry: dict, plan: dict, message: str) -> dict:
    return tool_result(entry, "trtexec", warmup=plan["warmup"], iterations=plan["iterations"], error=message)


def bench_artifacts(transport: Transport, release_dir: str, manifest: dict, entries: list[dict], *, python: str,
                    plan: dict, cache_root: Path, progress: Callable[[str], None] = print) -> list[dict]:
    """Build-or-install, benchmark and verify each TensorRT artifact on one board; one result per entry."""
    board = transport.name
    backend = (manifest.get("runtime_settings") or {}).get("backend") or {}
    # engine_cache is a host folder: the host decides it (bench.host_cache_root), never the board's copy of the manifest
    options = trt.load_options({k: v for k, v in backend.items() if k != "engine_cache"}, f"{release_dir}/manifest.json")
    info = probe(transport, python, options)
    if not info.get("trtexec") or not info.get("tag"):
        msg = (f"trtexec not found on the board (not at {options.trtexec}, not on PATH)" if not info.get("trtexec")
               else f"{info['trtexec']} printed no [TensorRT vNNNN] tag")
        return [_fail(e, plan, msg + "; install TensorRT (JetPack: sudo apt install libnvinfer-bin)") for e in entries]
    if not info.get("compute_capability"):
        return [_fail(e, plan, "GPU compute capability unknown (no nvidia-smi, no Jetson device tree); "
                               "the engine cannot be keyed") for e in entries]
    version = trt.trt_version_from_tag(info["tag"])
    if not is_safe(board):  # the inventory's name: checked again, it names a host folder
        return [_fail(e, plan, f"board name {board!r} cannot name a cache folder") for e in entries]
    cache = trt.EngineCache(cache_root / board)  # this board's engines only: they never cross boards
    engines = engines_dir(release_dir)
    if transport.run(["test", "-L", engines], timeout=60).ok:
        return [_fail(e, plan, f"refusing: {engines} is a symlink; the engines folder must be a real folder inside "
                               "the deploy root, remove it") for e in entries]
    transport.run(["mkdir", "-p", engines], timeout=60)
    tool = info["trtexec"]
    exe = trt.TensorRTOptions(**{**options.__dict__, "trtexec": tool})
    classification = list((manifest.get("outputs") or {}).get("classification") or [])
    results = []
    for entry in entries:
        name = entry["name"]
        try:  # the dynamic inputs' optimization profile the host decided (trt_shapes), shipped beside the ONNX
            shapes = trt_shapes.parse_sidecar(_shapes_text(transport, release_dir, entry), f"{board}: artifact '{name}'")
        except UserError as exc:
            results.append(_fail(entry, plan, exc.message))
            continue
        key = trt.EngineKey(entry["sha256"], entry["precision"], version, info["compute_capability"],
                            trt_shapes.key(shapes))
        engine = posixpath.join(engines, f"{key.digest}.engine")
        how = "on board"
        if _exists(transport, engine):
            how = "already on the board"
        else:
            cached = cache.get(key)
            if cached is not None and cache.built_by(key) != board:
                cached = None  # not this board's engine (a cache from before the rule, or a copied file)
            if cached is not None:
                tmp = f"{engine}.part"
                transport.put(cached, tmp)
                want = cache.recorded_sha256(key)
                got = transport.run(["sha256sum", tmp], timeout=300).stdout.split()[:1]
                if got != [want]:
                    transport.run(["rm", "-f", tmp], timeout=60)
                    results.append(_fail(entry, plan, f"engine from the host cache arrived as sha256 {(got or ['?'])[0][:12]}, "
                                                      f"recorded {str(want)[:12]} when it was built; not installed"))
                    continue
                transport.run(["mv", "-f", tmp, engine], timeout=60)
                how = "installed from this board's host cache"
            else:
                onnx = posixpath.join(release_dir, entry["file"])
                argv = trt.build_argv(onnx, f"{engine}.part", entry["precision"], exe,
                                      timing_cache=posixpath.join(engines, "timing.cache"), shapes=shapes)
                progress(f"  [trt] {board}: building {name} engine with trtexec (TensorRT {version}, sm {key.compute_capability})")
                res = transport.run(argv, timeout=TRTEXEC_TIMEOUT)
                built = trt.parse_trtexec_output(res.stdout)
                if not res.ok or built["passed"] is False:
                    tail = [l for l in res.stdout.splitlines() if "[E]" in l][-1:] or [res.stderr_tail(1)]
                    results.append(_fail(entry, plan, f"trtexec engine build failed (exit {res.exit_status}): {tail[0]}"))
                    continue
                transport.run(["mv", "-f", f"{engine}.part", engine], timeout=60)
                with tempfile.TemporaryDirectory() as td:
                    local = Path(td) / "engine"
                    transport.get(engine, local)
                    cache.put(key, local, board=board, built_by="trtexec")
                how = "built on the board, stored in its host cache"
        progress(f"  [trt] {board}: {name}: engine {how}")
        times = posixpath.join(engines, f"{key.digest}.times.json")
        prof = posixpath.join(engines, f"{key.digest}.profile.json")
        argv = trt.bench_argv(engine, exe, iterations=plan["iterations"], times_json=times, profile_json=prof,
                              shapes=shapes)
        res = transport.run(argv, timeout=TRTEXEC_TIMEOUT)
        if not res.ok:
            tail = [l for l in res.stdout.splitlines() if "[E]" in l][-1:] or [res.stderr_tail(1)]
            results.append(_fail(entry, plan, f"trtexec benchmark failed (exit {res.exit_status}): {tail[0]}"))
            continue
        output = json.dumps({"stdout": res.stdout, "times": _read(transport, times), "warmup_ms": options.warmup_ms,
                             "profile": _read(transport, prof) if options.export_profile else None})
        result = TrtexecResultParser().parse(output, board=board, artifact=entry, warmup=plan["warmup"],
                                             iterations=plan["iterations"])
        result["verify"], note = _verify(transport, release_dir, engine, python, info, plan, classification,
                                         (manifest.get("outputs") or {}).get("keys"), manifest=manifest, options=exe,
                                         work=posixpath.join(engines, f"{key.digest}.verify"), shapes=shapes)
        result["engine"] = {"key": key.digest, "source": how, "trt_version": version,
                            "compute_capability": key.compute_capability}
        if note:
            result["verify_note"] = note
        results.append(result)
    return results


def _shapes_text(transport: Transport, release_dir: str, entry: dict) -> str | None:
    """The artifact's shipped ``*.shapes.json`` (None: none shipped, a release from before it: a static profile)."""
    for extra in entry.get("extra_files") or []:
        if str(extra).endswith(trt_shapes.SIDECAR_SUFFIX):
            text = _read(transport, posixpath.join(release_dir, extra))
            if text is None:
                raise UserError(f"{extra} is listed in the manifest but missing on the board")
            return text
    return None


def _verify_trtexec(transport: Transport, release_dir: str, engine: str, plan: dict, classification: list[str], *,
                    manifest: dict, options: trt.TensorRTOptions, work: str,
                    keys: dict[str, str] | None = None, shapes: dict | None = None) -> tuple[dict | None, str | None]:
    """The output check without Python TensorRT: each verification input through the engine with
    ``trtexec --loadInputs … --exportOutput …``, compared with the host FP32 reference by the runner's own
    ``verify_outputs`` (one implementation of the metrics on host and board)."""
    import numpy as np

    from ..board.runner.dms_bench import reference_inputs, verify_outputs

    remote_ref = posixpath.join(release_dir, "verify", "reference.npz")
    inp = manifest.get("input") or {}
    configured = manifest.get("inputs") or [inp]  # several inputs: every one, in the model's order
    name, shape = str(inp.get("name") or "image"), list(inp.get("shape") or [1])
    dtypes = {str(i.get("name") or "image"): {"float32": "float32", "float16": "float16", "uint8": "uint8"}.get(
        str(i.get("dtype")), "float32") for i in configured}
    dtype = dtypes[name]
    batch = int(shape[0]) if shape and int(shape[0]) > 0 else 1
    with tempfile.TemporaryDirectory(prefix="dmsbuild-trt-verify-") as td:
        local = Path(td)
        if not transport.run(["test", "-f", remote_ref], timeout=60).ok:
            return None, f"output check not available: {remote_ref} is missing"
        transport.get(remote_ref, local / "reference.npz")
        with np.load(local / "reference.npz", allow_pickle=False) as z:
            ref = {k: z[k] for k in z.files}
        if "inputs" not in ref or len(ref["inputs"]) == 0:
            return None, "output check not available: the reference holds no inputs"
        try:
            by_name = {(name if k is None else k): v for k, v in reference_inputs(ref).items()}
        except RuntimeError as exc:
            return None, f"output check not available: {exc}"
        n = min(int(plan.get("verify_samples", 0)), len(ref["inputs"]))
        transport.run(["rm", "-rf", work], timeout=60)
        transport.run(["mkdir", "-p", work], timeout=60)
        outputs: list[dict] = []
        generated = False
        for i in range(n):
            loads = {}
            for k, (in_name, arr) in enumerate(by_name.items()):  # one raw file per input (--loadInputs per input)
                x = np.repeat(arr[i:i + 1], batch, axis=0).astype(dtypes.get(in_name, "float32"))
                raw = local / (f"in_{i}.raw" if k == 0 else f"in_{i}_{k}.raw")
                raw.write_bytes(np.ascontiguousarray(x).tobytes())
                loads[in_name] = posixpath.join(work, raw.name)
                transport.put(raw, loads[in_name])
            remote_out = posixpath.join(work, f"out_{i}.json")
            res = transport.run(trt.output_argv(engine, options, inputs=loads, output_json=remote_out,
                                                shapes=shapes),
                                timeout=TRTEXEC_TIMEOUT)
            text = _read(transport, remote_out) if res.ok else None
            if text is None:
                tail = [l for l in res.stdout.splitlines() if "[E]" in l][-1:] or [res.stderr_tail(1)]
                return None, f"output check failed: trtexec --loadInputs/--exportOutput (exit {res.exit_status}): {tail[0]}"[:500]
            generated = generated or DOUBLE_MARKER in res.stdout
            try:
                outputs.append(trt.parse_export_output(text))
            except (ValueError, KeyError, TypeError) as exc:
                return None, f"output check failed: trtexec's --exportOutput JSON is unreadable ({exc})"[:500]
    names = [h for h in (manifest.get("outputs") or {}).get("names") or outputs[0].keys()]
    it = iter(outputs)

    def run(output_names: list[str], feed: dict) -> list:  # the engine's outputs, sample by sample
        got = next(it)
        return [got[o][:1] for o in output_names]

    verify = verify_outputs(np, run, name, dtypes if len(dtypes) > 1 else dtype, [o for o in names if o in outputs[0]],
                            ref, n, 1, classification,
                            keys, (manifest.get("outputs") or {}).get("kinds"))
    note = "output check: trtexec --loadInputs/--exportOutput on the board (no Python TensorRT)"
    if generated:
        note += "; its outputs were generated by the trtexec test double (onnxruntime on the ONNX), not by TensorRT"
    verify["method"] = note  # stored with the check (results.sqlite verify_json), not only printed
    return verify, note


def _verify(transport: Transport, release_dir: str, engine: str, python: str, info: dict, plan: dict,
            classification: list[str], keys: dict[str, str] | None = None, *, manifest: dict | None = None,
            options: trt.TensorRTOptions | None = None, work: str | None = None,
            shapes: dict | None = None) -> tuple[dict | None, str | None]:
    """The output check with the TensorRT Python API on the board; without it, with trtexec's
    --loadInputs/--exportOutput; (None, why not) when neither can run (``keys``: tensor name -> safe id)."""
    n = plan.get("verify_samples", 0)
    if n <= 0:
        return None, None
    if not info.get("tensorrt_python"):
        if manifest is not None and options is not None and work is not None:
            return _verify_trtexec(transport, release_dir, engine, plan, classification, manifest=manifest,
                                   options=options, work=work, keys=keys, shapes=shapes)
        return None, "output check not available: the board's Python has no tensorrt package (TensorRT 10 + cuda-python)"
    script = posixpath.join(release_dir, "runner", "trt_runner.py")
    ref = posixpath.join(release_dir, "verify", "reference.npz")
    kinds = ((manifest or {}).get("outputs") or {}).get("kinds")
    res = transport.run(trt.runner_argv(python, script, engine, ref, samples=n, classification=classification, keys=keys,
                                        kinds=kinds),
                        timeout=TRTEXEC_TIMEOUT)
    if not res.ok:
        return None, f"output check failed (exit {res.exit_status}): {res.stderr_tail(1)}"[:500]
    try:
        verify = json.loads(res.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return None, "output check printed no JSON"
    return verify, None
