"""Shared body of the SNPE SDK test doubles (snpe-onnx-to-dlc, snpe-dlc-quantize, snpe-dlc-graph-prepare,
snpe-net-run, snpe-throughput-net-run, snpe-diagview).

Each double parses its flags strictly with argparse (as the SDK's Python tools do: an unknown flag is a
usage error, exit status 2), records its argv as a JSON line in $SNPE_DOUBLE_ARGV_LOG, checks its inputs
(the model file is a DLC written by the previous step; every input-list entry exists, is unique and has
the size of the DLC's input) and writes its outputs. Output formats follow what the real tools write
and what public parsers of them read (see tests/fixtures/snpe/README.md). Nothing is quantized or run:
every figure they print (diagview's times, the throughput) is a GENERATED constant, and snpe-net-run and
snpe-throughput-net-run print a `DMSBUILD TEST DOUBLE` line so dmsbuild labels those figures generated.
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

MAGIC = "SNPE-DOUBLE-DLC"


def _log(tool):
    path = os.environ.get("SNPE_DOUBLE_ARGV_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps([tool, *sys.argv[1:]]) + "\n")


def _read_dlc(path, parser):
    p = Path(path)
    if not p.is_file():
        parser.error(f"input DLC {path} does not exist")
    try:
        meta = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        parser.error(f"{path} is not a DLC")
    if meta.get("magic") != MAGIC:
        parser.error(f"{path} is not a DLC")
    return meta


def _write_dlc(path, meta):
    Path(path).write_text(json.dumps(dict(meta, magic=MAGIC), sort_keys=True))


def input_files(path):
    """The raw-file paths of an input list (``name:=path`` or bare paths; ``#``/``%`` lines skipped)."""
    files = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "%")):
            continue
        for word in line.split():
            files.append(word.split(":=", 1)[1] if ":=" in word else word)
    return files


def input_lines(path):
    """One ``{input name (None when bare): raw file}`` per inference line: several inputs name each one,
    ``name:=path`` separated by spaces, on one line."""
    lines = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "%")):
            continue
        lines.append({(w.split(":=", 1)[0] if ":=" in w else None): (w.split(":=", 1)[1] if ":=" in w else w)
                      for w in line.split()})
    return lines


def _check_lines(path, meta, parser):
    """Several inputs (the DLC's ``inputs``): every line names every input once with ``name:=path``, and each
    file holds that input's float32 tensor."""
    inputs = meta.get("inputs") or {}
    if len(inputs) < 2:
        return
    for k, line in enumerate(input_lines(path)):
        if None in line or set(line) != set(inputs):
            parser.error(f"input list line {k + 1} names {sorted(n or '<bare path>' for n in line)}; the DLC's inputs "
                         f"are {sorted(inputs)} (one name:=path per input per line)")
        for name, f in line.items():
            want = 4
            for d in inputs[name]:
                want *= d
            if not Path(f).is_file():
                parser.error(f"raw input {f} does not exist")
            if Path(f).stat().st_size != want:
                parser.error(f"raw input {f} for {name} has {Path(f).stat().st_size} bytes; the DLC input needs {want}")


def _check_inputs(files, meta, parser):
    if not files:
        parser.error("input list is empty")
    if len(meta.get("inputs") or {}) > 1:
        return  # checked per line and per input (_check_lines)
    if len(set(files)) != len(files):
        dup = sorted({f for f in files if files.count(f) > 1})
        parser.error(f"input list names the same raw file more than once: {dup}")
    want = 4
    for d in meta["input_dims"]:
        want *= d
    for f in files:
        if not Path(f).is_file():
            parser.error(f"raw input {f} does not exist")
        if Path(f).stat().st_size != want:
            parser.error(f"raw input {f} has {Path(f).stat().st_size} bytes; the DLC input needs {want}")


def onnx_to_dlc():
    ap = argparse.ArgumentParser(prog="snpe-onnx-to-dlc")
    ap.add_argument("-i", "--input_network", required=True)
    ap.add_argument("-o", "--output_path", required=True)
    ap.add_argument("-d", "--input_dim", nargs=2, action="append", metavar=("INPUT_NAME", "INPUT_DIM"))
    a = ap.parse_args()
    src = Path(a.input_network)
    if not src.is_file():
        ap.error(f"{src} does not exist")
    data = src.read_bytes()
    dims = {}
    for name, spec in a.input_dim or []:
        try:
            dims[name] = [int(x) for x in spec.split(",")]
        except ValueError:
            ap.error(f"invalid --input_dim {spec!r}")
    if not dims:
        ap.error("the double needs the input dims; pass --input_dim NAME N,C,H,W (once per input)")
    as_nhwc = {n: ([d[0], d[2], d[3], d[1]] if len(d) == 4 else d) for n, d in dims.items()}
    (name, nhwc) = next(iter(as_nhwc.items()))
    meta = {"onnx_sha256": hashlib.sha256(data).hexdigest(), "input_name": name, "input_dims": nhwc,
            "quantized": False, "htp_cache": []}
    if len(dims) > 1:
        meta["inputs"] = as_nhwc
    _write_dlc(a.output_path, meta)
    print("INFO - INFO_CONVERSION_SUCCESS: Conversion completed successfully")


def dlc_quantize(prog):
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--input_dlc", required=True)
    ap.add_argument("--input_list", required=True)
    ap.add_argument("--output_dlc", required=True)
    ap.add_argument("--act_bitwidth", type=int, choices=[8, 16], default=8)
    ap.add_argument("--weights_bitwidth", type=int, choices=[4, 8], default=8)
    ap.add_argument("--use_enhanced_quantizer", action="store_true")
    a = ap.parse_args()
    meta = _read_dlc(a.input_dlc, ap)
    files = input_files(a.input_list)
    _check_inputs(files, meta, ap)
    _check_lines(a.input_list, meta, ap)
    digest = hashlib.sha256()
    for f in files:
        digest.update(Path(f).read_bytes())
    _write_dlc(a.output_dlc, dict(meta, quantized=True, act_bitwidth=a.act_bitwidth, calibration_samples=len(input_lines(a.input_list)),
                                  calibration_sha256=digest.hexdigest()))
    print(f"[INFO] Writing quantized model to: {a.output_dlc}")


def graph_prepare():
    ap = argparse.ArgumentParser(prog="snpe-dlc-graph-prepare")
    ap.add_argument("--input_dlc", required=True)
    ap.add_argument("--output_dlc", required=True)
    ap.add_argument("--htp_socs", default="sm8550")
    ap.add_argument("--set_output_tensors")
    a = ap.parse_args()
    meta = _read_dlc(a.input_dlc, ap)
    socs = a.htp_socs.split(",")
    _write_dlc(a.output_dlc, dict(meta, htp_cache=socs))
    print(f"[INFO] Successfully compiled HTP graph cache for SoC(s): {', '.join(socs)}")


def net_run():
    ap = argparse.ArgumentParser(prog="snpe-net-run")
    ap.add_argument("--container", required=True)
    ap.add_argument("--input_list", required=True)
    ap.add_argument("--output_dir", default="output")
    for rt in ("dsp", "gpu", "aip", "cpu"):
        ap.add_argument(f"--use_{rt}", action="store_true")
    ap.add_argument("--perf_profile")
    ap.add_argument("--profiling_level")
    a = ap.parse_args()
    meta = _read_dlc(a.container, ap)
    files = input_files(a.input_list)
    _check_inputs(files, meta, ap)
    _check_lines(a.input_list, meta, ap)
    lines = input_lines(a.input_list)
    shapes = json.loads(os.environ.get("SNPE_DOUBLE_OUTPUTS", '{"out": [1, 2]}'))
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from array import array

    for i, line in enumerate(lines):  # one inference per line (several inputs: every file of the line)
        x = array("f", b"".join(Path(f).read_bytes() for f in line.values()))
        mean = sum(x) / len(x)
        r = out / f"Result_{i}"
        r.mkdir(exist_ok=True)
        for name, shape in shapes.items():
            n = 1
            for d in shape:
                n *= d
            # deterministic function of the input, so tests can check the order of the Result_<i> folders
            (r / f"{name}.raw").write_bytes(array("f", [mean] * n).tobytes())
    (out / "SNPEDiag_0.log").write_text(json.dumps({"magic": "SNPE-DOUBLE-DIAG", "inferences": len(lines)}))
    print("-------------------------------------------------------------------------------")
    print("Model String: N/A")
    print("SNPE vX.Y.Z (test double)")
    print("DMSBUILD TEST DOUBLE: nothing ran; outputs and the diag log's timings are generated")
    print("-------------------------------------------------------------------------------")
    print("Processing DNN input(s):")
    for f in files:
        print(f)
    print("Successfully executed!")


def diagview():
    ap = argparse.ArgumentParser(prog="snpe-diagview")
    ap.add_argument("--input_log", required=True)
    ap.add_argument("--output")
    a = ap.parse_args()
    try:
        info = json.loads(Path(a.input_log).read_text())
    except (OSError, json.JSONDecodeError):
        ap.error(f"cannot read diag log {a.input_log}")
    rows = [("0", "Init", "", "112233"), ("0", "Avg_Total_Inference_Time", "", "4321"),
            ("0", "Forward_Propagate", "", "4000")]
    if a.output:
        with open(a.output, "w") as fh:
            for r in rows:
                fh.write(",".join(r) + "\n")


def throughput():
    ap = argparse.ArgumentParser(prog="snpe-throughput-net-run")
    ap.add_argument("--container", action="append", required=True)
    ap.add_argument("--duration", type=int, required=True)
    ap.add_argument("--input_raw", required=True)
    for rt in ("dsp", "gpu", "aip", "cpu"):
        ap.add_argument(f"--use_{rt}", action="store_true")
    ap.add_argument("--perf_profile", action="append")
    a = ap.parse_args()
    for c in a.container:
        _read_dlc(c, ap)
    if not Path(a.input_raw).is_file():
        ap.error(f"raw input {a.input_raw} does not exist")
    print("DMSBUILD TEST DOUBLE: nothing ran; the throughput below is generated (SNPE_DOUBLE_THROUGHPUT)")
    print(f"Total throughput: {float(os.environ.get('SNPE_DOUBLE_THROUGHPUT', '231.5'))} infs/sec")


TOOLS = {"snpe-onnx-to-dlc": onnx_to_dlc, "snpe-dlc-quantize": lambda: dlc_quantize("snpe-dlc-quantize"),
         "snpe-dlc-quant": lambda: dlc_quantize("snpe-dlc-quant"), "snpe-dlc-graph-prepare": graph_prepare,
         "snpe-net-run": net_run, "snpe-diagview": diagview, "snpe-throughput-net-run": throughput}


def main(tool):
    _log(tool)
    TOOLS[tool]()
    return 0
