"""SNPE DLC artifacts on the board: run them with snpe-net-run, time them with snpe-diagview, check outputs.

Driven from the host over the board's transport (argument lists only), for
the ``dlc`` artifacts of a release (runtime ``snpe``):

1. one probe (the board's Python): where ``snpe-net-run`` and ``snpe-diagview``
   are (``backend.snpe.board_bin``, else PATH, else ``$SNPE_ROOT/bin/<arch>``);
   no snpe-net-run fails each DLC artifact with one line saying what to install
   (the release's other artifacts run as usual);
2. per artifact a work folder ``<deploy root>/snpe/<artifact>/`` (outside the
   releases, emptied first): ``iterations`` raw float32 inputs, ONE UNIQUE
   FILE PER INPUT-LIST LINE (sample ``i % n`` of ``verify/reference.npz``,
   NHWC as the DLC expects), and the input list naming each once;
3. ``snpe-net-run`` runs every line once on the profile's runtime; ``snpe-diagview``
   turns its ``SNPEDiag_0.log`` into CSV. SNPE reports the *average* inference
   time and the init time, not per-inference times, so the result holds
   ``latency_ms.mean`` only, ``samples_ms`` is empty and ``stats_source`` says
   where the number came from (CONTRACTS §3) - no statistic is invented;
4. the output check reads ``Result_<i>/<head>.raw`` (float32) of the first
   ``verify_samples`` lines back and compares them with the FP32 reference,
   the same metrics as the board runner; unreadable outputs leave ``verify``
   null with a ``verify_note``.
"""
from __future__ import annotations

import importlib.util
import json
import posixpath
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..core.provenance import DOUBLE_MARKER
from ..names import is_safe
from ..untrusted import shown
from ..core.results import tool_result
from ..transport.base import Transport
from . import snpe
from .trt_board import engines_dir

#: the board-side probe (dmsbuild/board/probe_snpe.py), sent as source with ``python3 -c``
PROBE_SCRIPT = Path(importlib.util.find_spec("dmsbuild.board.probe_snpe").origin).read_text(encoding="utf-8")

#: one snpe-net-run over the input list may take this long on a board (s)
NET_RUN_TIMEOUT = 3600.0
BOARD_HINT = ("install the Qualcomm AI Runtime (SNPE) for the board's arch and put its bin/<arch> folder on the "
              "board's PATH, or set SNPE_ROOT there, or set backend.snpe.board_bin in the target profile")


def work_dir(release_dir: str, artifact: str) -> str:
    """``<root>/snpe/<artifact>`` for ``<root>/releases/<id>`` (or ``<root>/current``): never inside a release."""
    return posixpath.join(posixpath.dirname(engines_dir(release_dir)), "snpe", artifact)


def probe(transport: Transport, python: str, options: snpe.SnpeOptions) -> dict[str, Any]:
    res = transport.run([python, "-c", PROBE_SCRIPT, options.board_bin], timeout=120)
    try:
        info = json.loads(res.stdout.strip().splitlines()[-1]) if res.ok else None
    except (json.JSONDecodeError, IndexError):
        info = None
    if not isinstance(info, dict):
        return {"error": f"probing for snpe-net-run with {python} failed (exit {res.exit_status}): {res.stderr_tail(1)}"}
    return info


def _fail(entry: dict, plan: dict, message: str) -> dict:
    return tool_result(entry, "snpe-net-run", warmup=0, iterations=plan["iterations"], error=message)


def bench_artifacts(transport: Transport, release_dir: str, manifest: dict, entries: list[dict], *, python: str,
                    plan: dict, cache_root: Path, progress: Callable[[str], None] = print) -> list[dict]:
    """Benchmark and verify each DLC artifact on one board with snpe-net-run; one result per entry."""
    import numpy as np

    board = transport.name
    backend = (manifest.get("runtime_settings") or {}).get("backend") or {}
    options = snpe.load_options(backend.get("snpe") or {}, f"{release_dir}/manifest.json")
    info = probe(transport, python, options)
    if info.get("error"):
        return [_fail(e, plan, info["error"]) for e in entries]
    if not info.get("snpe_net_run"):
        where = f"not in {options.board_bin}" if options.board_bin else "not on PATH, not under $SNPE_ROOT/bin"
        return [_fail(e, plan, f"snpe-net-run not found on the board ({where}); {BOARD_HINT}") for e in entries]
    if not info.get("snpe_diagview"):
        return [_fail(e, plan, f"snpe-diagview not found next to {info['snpe_net_run']} nor on PATH; "
                               "it reads snpe-net-run's timings: " + BOARD_HINT) for e in entries]
    input_name = str((manifest.get("input") or {}).get("name") or "image")
    keys = dict((manifest.get("outputs") or {}).get("keys") or {})
    classification = [keys.get(c, c) for c in (manifest.get("outputs") or {}).get("classification") or []]
    tensor_of = {k: name for name, k in keys.items()}  # safe id -> tensor name (snpe-net-run's file names)
    kinds = {keys.get(n, n): ({**k, "scores_output": keys.get(k["scores_output"], k["scores_output"])}
                              if (k or {}).get("scores_output") else k)
             for n, k in ((manifest.get("outputs") or {}).get("kinds") or {}).items()}  # heads by safe id here
    with tempfile.TemporaryDirectory(prefix="dmsbuild-snpe-") as td:
        ref_path = Path(td) / "reference.npz"
        remote_ref = posixpath.join(release_dir, "verify", "reference.npz")
        if not transport.run(["test", "-f", remote_ref], timeout=60).ok:
            return [_fail(e, plan, f"{remote_ref} is missing: no inputs to feed snpe-net-run; redeploy the release")
                    for e in entries]
        transport.get(remote_ref, ref_path)
        with np.load(ref_path, allow_pickle=False) as z:
            ref = {k: z[k] for k in z.files}
        results = []
        for entry in entries:
            progress(f"  [snpe] {board}: {entry['name']}: snpe-net-run, {plan['iterations']} inferences "
                     f"({options.runtime}, {options.perf_profile})")
            results.append(_bench_one(transport, release_dir, entry, plan, options, info, ref, input_name,
                                      classification, Path(td) / entry["name"], tensor_of, kinds))
    return results


def _write_inputs(ref: dict, iterations: int, local: Path, remote: str, input_name: str) -> tuple[Path, list[str]]:
    """``iterations`` raw files (sample i % n, NHWC) and the input list naming each remote file once; several
    inputs: one line per inference naming every input, ``name:=path`` separated by spaces."""
    import numpy as np

    from ..board.runner.dms_bench import reference_inputs

    xs = {(input_name if k is None else k): np.asarray(v, dtype=np.float32) for k, v in reference_inputs(ref).items()}
    count = min(len(v) for v in xs.values())
    (local / "inputs").mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(iterations - 1)))
    names, lines = [], []
    for i in range(iterations):
        words = []
        for k, (in_name, x) in enumerate(xs.items()):
            a = x[i % count]
            if a.ndim == 3:  # CHW -> HWC: SNPE's image inputs are NHWC
                a = a.transpose(1, 2, 0)
            name = f"input_{i:0{width}d}.raw" if k == 0 else f"input_{i:0{width}d}_{k}.raw"
            np.ascontiguousarray(a).tofile(local / "inputs" / name)
            names.append(name)
            words.append(f"{in_name}:={posixpath.join(remote, 'inputs', name)}")
        lines.append(" ".join(words))
    (local / "input_list.txt").write_text("\n".join(lines) + "\n")
    return local / "input_list.txt", names


def _bench_one(transport: Transport, release_dir: str, entry: dict, plan: dict, options: snpe.SnpeOptions,
               info: dict, ref: dict, input_name: str, classification: list[str], local: Path,
               tensor_of: dict[str, str] | None = None, kinds: dict | None = None) -> dict:
    iterations = int(plan["iterations"])
    if "inputs" not in ref or len(ref["inputs"]) == 0:
        return _fail(entry, plan, "verify/reference.npz holds no inputs to feed snpe-net-run")
    work = work_dir(release_dir, entry["name"])
    out = posixpath.join(work, "output")
    transport.run(["rm", "-rf", work], timeout=120)
    made = transport.run(["mkdir", "-p", posixpath.join(work, "inputs")], timeout=60)
    if not made.ok:
        return _fail(entry, plan, f"cannot create {work} on the board: {made.stderr_tail(1)}")
    input_list, names = _write_inputs(ref, iterations, local, work, input_name)
    for name in names:
        transport.put(local / "inputs" / name, posixpath.join(work, "inputs", name))
    remote_list = posixpath.join(work, "input_list.txt")
    transport.put(input_list, remote_list)
    dlc = posixpath.join(release_dir, entry["file"])
    res = transport.run(snpe.net_run_argv(dlc, remote_list, out, options, tool=info["snpe_net_run"]),
                        timeout=NET_RUN_TIMEOUT)
    if not res.ok:
        return _fail(entry, plan, f"snpe-net-run failed (exit {res.exit_status}): {res.stderr_tail(1) or res.stdout[-200:]}")
    csv_path = posixpath.join(out, "SNPEDiag_0.csv")
    diag = transport.run(snpe.diagview_argv(posixpath.join(out, "SNPEDiag_0.log"), csv_path,
                                            tool=info["snpe_diagview"]), timeout=600)
    csv_text = transport.run(["cat", csv_path], timeout=60) if diag.ok else diag
    if not diag.ok:
        return _fail(entry, plan, f"snpe-diagview failed (exit {diag.exit_status}): {diag.stderr_tail(1)}")
    # the --output CSV where this SDK wrote one, else (or also) the text diagview printed: both carry timings
    raw = snpe.result_from_snpe(artifact=entry["name"], precision=entry.get("precision", ""),
                                diag_csv=(csv_text.stdout if csv_text.ok else "") + "\n" + diag.stdout,
                                iterations=iterations)
    result = tool_result(entry, "snpe-net-run", warmup=0, iterations=iterations)
    if DOUBLE_MARKER in res.stdout:  # the SNPE test double says its figures are generated
        result["source"] = "double"
    if raw["error"] is not None or raw["latency_ms"] is None:
        result["error"] = raw["error"] or "snpe-diagview reported no Avg_Total_Inference_Time"
        return result
    mean = raw["latency_ms"]["mean"]
    result["latency_ms"] = raw["latency_ms"]
    result["samples_ms"] = []
    result["stats_source"] = (f"snpe-diagview Avg_Total_Inference_Time over {iterations} inferences "
                              "(SNPE reports no per-inference times)")
    result["load_ms"] = raw["load_ms"]
    result["throughput_ips"] = 1000.0 / mean if mean > 0 else None
    # SNPE's own throughput tool: 1000 / diagview's mean understates it (1.15x-5.25x on public samples)
    tool = posixpath.join(posixpath.dirname(info["snpe_net_run"]), "snpe-throughput-net-run")
    profile: dict = {"tool": "snpe-diagview", "note": "per-layer times of DSP/HTP runtimes are in cycles, not us"}
    several = "input_names" in ref
    tp = None if several else transport.run(snpe.throughput_argv(dlc, posixpath.join(work, "inputs", names[0]), options,
                                                                tool=tool), timeout=options.throughput_seconds * 3 + 120)
    if tp is None:  # its --input_raw takes one raw file: a model with several inputs gets the diagview figure
        profile["throughput_note"] = ("snpe-throughput-net-run not run: the model has several inputs and its "
                                      "--input_raw names one file; throughput is 1000 / the diagview mean")
    elif tp.ok and "Total throughput" in tp.stdout:
        result["throughput_ips"] = snpe.parse_throughput(tp.stdout)
        profile.update(throughput_tool="snpe-throughput-net-run", throughput_ips=result["throughput_ips"],
                       throughput_seconds=options.throughput_seconds)
        if DOUBLE_MARKER in tp.stdout:
            result["source"] = "double"
    else:
        profile["throughput_note"] = (f"snpe-throughput-net-run did not run (exit {tp.exit_status}): "
                                      f"{tp.stderr_tail(1)}; throughput is 1000 / the diagview mean")[:300]
    result["profile"] = profile
    result["verify"], note = _verify(transport, out, ref, plan, classification, local / "outputs", tensor_of or {}, kinds)
    if note:
        result["verify_note"] = note
    return result


def _verify(transport: Transport, out: str, ref: dict, plan: dict, classification: list[str],
            local: Path, tensor_of: dict[str, str] | None = None,
            kinds: dict | None = None) -> tuple[dict | None, str | None]:
    """snpe-net-run's float32 outputs of the first samples vs the FP32 reference, or (None, why not)."""
    import numpy as np

    from ..board.runner.dms_bench import verify_outputs

    n = min(int(plan.get("verify_samples", 0)), len(ref["inputs"]), int(plan["iterations"]))
    if n <= 0:
        return None, None
    heads = [k for k in sorted(ref) if k != "inputs" and k != "input_names" and not k.startswith("inputs:")]
    unsafe = [h for h in heads if not is_safe(h)]
    if unsafe:  # the board's reference.npz names local scratch files: a name like '../x' is refused
        return None, f"output check refused: the board's reference.npz names a head {shown(repr(unsafe[0]), 60)}"
    outputs: list[list[np.ndarray]] = []
    for i in range(n):
        row = []
        for head in heads:
            got = None
            tensor = (tensor_of or {}).get(head, head)
            for fname in (f"{tensor}.raw", f"{tensor}:0.raw"):
                remote = posixpath.join(out, f"Result_{i}", fname)
                if transport.run(["test", "-f", remote], timeout=60).ok:
                    dest = local / f"{i}" / f"{head}.raw"  # a local file name: the safe id
                    transport.get(remote, dest)
                    got = np.fromfile(dest, dtype=np.float32)
                    break
            want = ref[head][i:i + 1]
            if got is None:
                return None, f"output check not available: snpe-net-run wrote no Result_{i}/{head}.raw"
            if got.size != want.size:
                return None, f"output check not available: Result_{i}/{head}.raw has {got.size} floats, the reference {want.size}"
            row.append(got.reshape(want.shape))
        outputs.append(row)
    feed = iter(outputs)
    verify = verify_outputs(np, lambda names, _feed: next(feed), "input", np.float32, heads, ref, n, 1, classification,
                            kinds=kinds)
    return verify, None
