"""SNPE DLC artifacts for Qualcomm boards (Qualcomm AI Runtime / Neural Processing SDK).

Built on the host when the SDK is installed (``SNPE_ROOT``, or ``QAIRT_SDK_ROOT``
/ ``QNN_SDK_ROOT`` of a QAIRT SDK that ships the SNPE tools):

1. ``snpe-onnx-to-dlc``   FP32 ONNX -> DLC (input dims fixed);
2. ``snpe-dlc-quantize``  calibrated with an input list holding ONE UNIQUE raw file per
   calibration sample (the source article named them all ``calib_{len}.raw``, so each
   sample overwrote the last and the list pointed N times at one file);
3. ``snpe-dlc-graph-prepare`` offline HTP graph cache for the profile's SoC(s).

On the board ``snpe-net-run`` (outputs, for the output check; timing via
``snpe-diagview``) and ``snpe-throughput-net-run`` (throughput) run the DLC;
their outputs are parsed into the common result dict. Every command is an
argument list run by :func:`dmsbuild.backends.toolchain.run_tool`. Standard
library only at import time.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from ..errors import UserError
from .base import Backend, Check, HostEnv
from .toolchain import empty_result, run_tool

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

RUNTIME = "snpe"
SDK_ENV_VARS = ("SNPE_ROOT", "QAIRT_SDK_ROOT", "QNN_SDK_ROOT")
HOST_ARCH_DIR = "x86_64-linux-clang"
INSTALL_HINT = ("install the Qualcomm AI Runtime (QAIRT) SDK from https://qpm.qualcomm.com "
                "(Qualcomm Neural Processing SDK) and set SNPE_ROOT to its folder, e.g. "
                "export SNPE_ROOT=/opt/qcom/aistack/qairt/2.39.0.250926")


@dataclass
class SnpeOptions:
    """``[backend.snpe]`` of a Qualcomm target profile."""

    #: build DLC artifacts when the SDK is found (False: never)
    enabled: bool = True
    #: True: no SDK fails the DLC artifact's build (one line saying what to install); False: no SDK skips it
    required: bool = False
    #: SoC names for ``snpe-dlc-graph-prepare --htp_socs`` (empty: the tool's default)
    htp_socs: list[str] = field(default_factory=list)
    #: activation bit width for ``snpe-dlc-quantize --act_bitwidth``
    act_bitwidth: Literal[8, 16] = 8
    #: quantizer tool: ``snpe-dlc-quantize`` (classic) or ``snpe-dlc-quant`` (newer SDKs)
    quantizer: Literal["snpe-dlc-quantize", "snpe-dlc-quant"] = "snpe-dlc-quantize"
    #: runtime on the board
    runtime: Literal["dsp", "cpu", "gpu"] = "dsp"
    #: ``--perf_profile`` on the board
    perf_profile: Literal["burst", "high_performance", "balanced", "default", "power_saver",
                          "sustained_high_performance", "low_balanced"] = "burst"
    #: folder of snpe-net-run / snpe-diagview on the board (empty: PATH, then $SNPE_ROOT/bin/<arch> there)
    board_bin: str = ""
    #: seconds ``snpe-throughput-net-run`` runs
    throughput_seconds: int = 10

    def validate(self, source: str, prefix: str) -> None:
        where = f"{prefix}." if prefix else ""
        bad = [s for s in self.htp_socs if not re.fullmatch(r"[a-z]{2,4}\d{3,4}[a-z]?", s)]
        if bad:
            raise UserError(f"{source}: field '{where}htp_socs' has {bad}; expected SoC names like 'sm8550'",
                            hint=f"fix it in {source}")
        if self.throughput_seconds <= 0:
            raise UserError(f"{source}: field '{where}throughput_seconds' must be > 0", hint=f"fix it in {source}")


# --------------------------------------------------------------------------
# the SDK
# --------------------------------------------------------------------------
@dataclass
class SnpeSdk:
    root: Path
    bin_dir: Path
    lib_dir: Path
    env_var: str

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def env(self) -> dict[str, str]:
        """What the SDK's tools need in their environment (its libs and Python modules)."""
        return {
            "SNPE_ROOT": str(self.root),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": f"{self.lib_dir}{os.pathsep}{os.environ.get('LD_LIBRARY_PATH', '')}",
            "PYTHONPATH": f"{self.root / 'lib' / 'python'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }


def find_sdk(environ: Mapping[str, str] | None = None) -> SnpeSdk:
    """The SDK named by SNPE_ROOT / QAIRT_SDK_ROOT / QNN_SDK_ROOT, or one UserError line saying how to get one."""
    environ = os.environ if environ is None else environ
    for var in SDK_ENV_VARS:
        value = environ.get(var)
        if not value:
            continue
        root = Path(value).expanduser()
        bin_dir = root / "bin" / HOST_ARCH_DIR
        if not (bin_dir / "snpe-onnx-to-dlc").is_file():
            raise UserError(
                f"{var}={value}: no bin/{HOST_ARCH_DIR}/snpe-onnx-to-dlc there; SNPE DLC artifacts need the SNPE tools",
                hint=INSTALL_HINT,
            )
        return SnpeSdk(root, bin_dir, root / "lib" / HOST_ARCH_DIR, var)
    raise UserError(f"SNPE SDK not found (none of {', '.join(SDK_ENV_VARS)} is set): {INSTALL_HINT}")


# --------------------------------------------------------------------------
# calibration input list
# --------------------------------------------------------------------------
def write_input_list(samples: Sequence["np.ndarray"], folder: Path, input_name: str,
                     *, layout: Literal["NCHW", "NHWC"] = "NHWC") -> Path:
    """Write one raw float32 file per sample (unique names) and the input list naming each once.

    SNPE's DLC inputs are NHWC for image models converted from ONNX's NCHW, so
    NCHW samples are transposed unless ``layout`` says the DLC keeps NCHW.
    """
    import numpy as np

    if not samples:
        raise UserError("SNPE quantization: no calibration samples", hint="put images or .npy files in data.calibration")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("calib_*.raw"):
        stale.unlink()
    lines = []
    width = max(5, len(str(len(samples) - 1)))
    for i, x in enumerate(samples):
        # several inputs: one line per sample naming every input, ``name:=path`` separated by spaces
        by_name = x if isinstance(x, dict) else {input_name: x}
        words = []
        for k, (name, one) in enumerate(by_name.items()):
            a = np.asarray(one, dtype=np.float32)
            if a.ndim == 4 and a.shape[0] == 1:
                a = a[0]
            if layout == "NHWC" and a.ndim == 3:
                a = a.transpose(1, 2, 0)
            path = folder / (f"calib_{i:0{width}d}.raw" if k == 0 else f"calib_{i:0{width}d}_{k}.raw")
            np.ascontiguousarray(a).tofile(path)
            words.append(f"{name}:={path.resolve()}")
        lines.append(" ".join(words))
    lst = folder / "input_list.txt"
    lst.write_text("\n".join(lines) + "\n")
    return lst


# --------------------------------------------------------------------------
# command lines
# --------------------------------------------------------------------------
def convert_argv(sdk: SnpeSdk, onnx: Path, dlc: Path, input_name: str, shape: Sequence[int],
                 inputs: dict[str, Sequence[int]] | None = None) -> list[str]:
    """``--input_dim NAME DIMS``, once per input (``inputs``: every input's shape where the model has several)."""
    argv = [sdk.tool("snpe-onnx-to-dlc"), "--input_network", str(onnx), "--output_path", str(dlc)]
    for name, dims in (inputs or {input_name: shape}).items():
        argv += ["--input_dim", name, ",".join(str(d) for d in dims)]
    return argv


def quantize_argv(sdk: SnpeSdk, dlc: Path, input_list: Path, out: Path, options: SnpeOptions) -> list[str]:
    return [sdk.tool(options.quantizer), "--input_dlc", str(dlc), "--input_list", str(input_list),
            "--output_dlc", str(out), "--act_bitwidth", str(options.act_bitwidth)]


def graph_prepare_argv(sdk: SnpeSdk, dlc: Path, out: Path, options: SnpeOptions) -> list[str]:
    argv = [sdk.tool("snpe-dlc-graph-prepare"), "--input_dlc", str(dlc), "--output_dlc", str(out)]
    if options.htp_socs:
        argv += ["--htp_socs", ",".join(options.htp_socs)]
    return argv


def net_run_argv(dlc: str | PurePosixPath, input_list: str | PurePosixPath, output_dir: str | PurePosixPath,
                 options: SnpeOptions, *, tool: str = "snpe-net-run") -> list[str]:
    """Board command: run every input of the list, write Result_<i>/<output>.raw and SNPEDiag_0.log."""
    argv = [tool, "--container", str(dlc), "--input_list", str(input_list), "--output_dir", str(output_dir)]
    if options.runtime != "cpu":
        argv.append(f"--use_{options.runtime}")
    return argv + ["--perf_profile", options.perf_profile]


def throughput_argv(dlc: str | PurePosixPath, input_raw: str | PurePosixPath, options: SnpeOptions,
                    *, tool: str = "snpe-throughput-net-run") -> list[str]:
    """Board command: as many inferences as fit in ``throughput_seconds``; prints ``Total throughput``."""
    return [tool, "--container", str(dlc), "--duration", str(options.throughput_seconds),
            f"--use_{options.runtime}", "--input_raw", str(input_raw), "--perf_profile", options.perf_profile]


def diagview_argv(diag_log: str | PurePosixPath, csv_out: str | PurePosixPath, *, tool: str = "snpe-diagview") -> list[str]:
    return [tool, "--input_log", str(diag_log), "--output", str(csv_out)]


# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------
def build_dlc(fp32_onnx: Path, calibration: Sequence["np.ndarray"], out_dlc: Path, options: SnpeOptions, *,
              input_name: str, shape: Sequence[int], log_dir: Path, sdk: SnpeSdk | None = None,
              inputs: dict[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Convert, quantize (unique calibration files) and HTP-prepare a DLC; returns what ran.

    Intermediate files go to ``<out_dlc stem>.work/``; the final DLC is renamed into place.
    """
    sdk = sdk or find_sdk()
    work = out_dlc.with_name(out_dlc.stem + ".work")
    work.mkdir(parents=True, exist_ok=True)
    fp32_dlc, quant_dlc, prepared = work / "fp32.dlc", work / "quantized.dlc", work / "prepared.dlc"
    input_list = write_input_list(calibration, work / "calibration", input_name)
    env = sdk.env()
    steps = [("snpe-onnx-to-dlc", convert_argv(sdk, fp32_onnx, fp32_dlc, input_name, shape, inputs)),
             ("snpe-dlc-quantize", quantize_argv(sdk, fp32_dlc, input_list, quant_dlc, options)),
             ("snpe-dlc-graph-prepare", graph_prepare_argv(sdk, quant_dlc, prepared, options))]
    stem = out_dlc.stem
    for step, argv in steps:
        run_tool(argv, log_dir=log_dir, step=f"{stem}.{step}", env=env)
    for produced in (fp32_dlc, quant_dlc, prepared):
        if not produced.is_file():
            raise UserError(f"{produced}: the SNPE tool reported success but wrote no file",
                            hint=f"read the logs in {log_dir}")
    os.replace(prepared, out_dlc)
    return {"sdk": str(sdk.root), "calibration_samples": len(calibration), "input_list": str(input_list),
            "steps": [s for s, _ in steps]}


# --------------------------------------------------------------------------
# parsing board output
# --------------------------------------------------------------------------
def parse_throughput(stdout: str) -> float:
    """``Total throughput: 123.4 infs/sec`` from snpe-throughput-net-run."""
    m = re.search(r"Total throughput:\s*([\d.eE+-]+)\s*infs/sec", stdout)
    if not m:
        raise UserError("snpe-throughput-net-run printed no 'Total throughput' line",
                        hint="check that the DLC loads on the board's runtime (see the command's output)")
    return float(m.group(1))


def parse_diagview_csv(text: str) -> dict[str, float]:
    """Timings (ms) from ``snpe-diagview --output`` CSV: message name in column 2, value (µs) in column 4."""
    out: dict[str, float] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 4:
            continue
        name = row[1].strip().lower()
        try:
            value = float(row[3])
        except ValueError:
            continue
        if name not in out:
            out[name] = value / 1000.0
    return out


_DIAG_TEXT = re.compile(r"^\s*([A-Za-z][A-Za-z ()/_-]*?):\s*(\d+(?:\.\d+)?)\s*us\s*$", re.M)


def parse_diagview_text(text: str) -> dict[str, float]:
    """Timings (ms) from ``snpe-diagview``'s text output (no ``--output``): ``Init: 48856 us``,
    ``Total Inference Time: 26458 us`` (SNPE 2.x, tests/fixtures/snpe/diagview-text-*.txt); names lower-cased,
    the first of each kept (the averaged statistics come before per-layer lines, which have no ``name: N us``)."""
    out: dict[str, float] = {}
    for name, value in _DIAG_TEXT.findall(text or ""):
        out.setdefault(name.strip().lower(), float(value) / 1000.0)
    return out


def read_outputs(output_dir: Path, output_names: Sequence[str], shapes: Sequence[Sequence[int]]) -> list[list["np.ndarray"]]:
    """snpe-net-run outputs: ``Result_<i>/<name>.raw`` (float32), one folder per input line, in order."""
    import numpy as np

    results = sorted((p for p in output_dir.iterdir() if re.fullmatch(r"Result_\d+", p.name)),
                     key=lambda p: int(p.name.split("_")[1]))
    if not results:
        raise UserError(f"{output_dir}: snpe-net-run wrote no Result_<n> folders", hint="check the snpe-net-run output")
    samples = []
    for r in results:
        row = []
        for name, shape in zip(output_names, shapes):
            f = r / f"{name}.raw"
            if not f.is_file():
                f = r / f"{name}:0.raw"
            if not f.is_file():
                raise UserError(f"{r}: no output file for '{name}'", hint="check the DLC's output names (snpe-dlc-info)")
            row.append(np.fromfile(f, dtype=np.float32).reshape(shape))
        samples.append(row)
    return samples


def result_from_snpe(*, artifact: str, precision: str, sha256: str = "", throughput_stdout: str | None = None,
                     diag_csv: str | None = None, iterations: int | None = None) -> dict[str, Any]:
    """The common result dict from snpe-throughput-net-run and snpe-diagview.

    SNPE reports the average inference time, not per-inference samples: only
    ``latency_ms.mean`` is set (the other statistics stay null, never invented).
    """
    res = empty_result(artifact, precision, RUNTIME, "snpe", sha256)
    res["iterations"] = iterations
    if throughput_stdout is not None:
        res["throughput_ips"] = parse_throughput(throughput_stdout)
    if diag_csv is not None:
        t = {**parse_diagview_text(diag_csv), **parse_diagview_csv(diag_csv)}  # text output or --output CSV
        if "init" in t:
            res["load_ms"] = t["init"]
        avg = t.get("avg_total_inference_time", t.get("total inference time"))
        if avg is not None:
            res["latency_ms"] = {"min": None, "mean": avg, "median": None, "p90": None, "p95": None,
                                 "p99": None, "max": None, "std": None}
    if res["latency_ms"] is None and res["throughput_ips"] is None:
        res["error"] = "SNPE reported neither timings nor throughput"
    return res


def load_options(table: Mapping[str, Any], source: str) -> SnpeOptions:
    from ..config import load_dataclass

    return load_dataclass(SnpeOptions, dict(table), source, prefix="backend.snpe")


FIX = {
    "host-sdk": "install the Qualcomm AI Runtime (QAIRT) SDK from https://qpm.qualcomm.com and set SNPE_ROOT to its "
                "folder; without it the target's SNPE DLC artifacts are skipped with an error, its QNN artifacts still build",
    "board": "copy the QAIRT SDK's aarch64 runtime (bin/aarch64-oe-linux-gcc11.2: snpe-net-run, "
             "snpe-throughput-net-run; lib/: libSNPE.so, HTP skel libs) to the board and put it on PATH",
}


def sdk_check(profiles: Sequence[Any], env: HostEnv, *, required: bool) -> Check:
    """The host's SNPE SDK for ``profiles``' DLC artifacts (missing when ``required``, else a warning)."""
    try:
        sdk = find_sdk(env.environ)
        return Check("host", "SNPE SDK", "ok", f"{sdk.root} (from {sdk.env_var})")
    except UserError as exc:
        return Check("host", "SNPE SDK", "missing" if required else "warning", None,
                     ", ".join(p.name for p in profiles) + " (DLC artifacts)",
                     FIX["host-sdk"] if "not found" in str(exc) else str(exc).splitlines()[0])


def board_check(board: str, facts: Mapping[str, Any], need: str, *, required: bool) -> Check:
    """The board's snpe-net-run (from its facts)."""
    snpe = facts.get("snpe")
    return Check(board, "SNPE runtime (snpe-net-run)", "ok" if snpe else "missing" if required else "warning",
                 snpe, need, FIX["board"])


class SnpeBackend(Backend):
    """SNPE DLCs, run and timed on the board by the SNPE tools, driven by the host (snpe_board.py).

    DLCs are built beside a QNN target's context binaries (``[backend.snpe]`` of a ``runtime = "qnn"``
    profile, qnn.py); a profile of its own (``runtime = "snpe"``) is refused by ``plan`` until it has one."""

    name = RUNTIME
    board_driver = "dmsbuild.backends.snpe_board"

    def validate(self, profile: Any) -> SnpeOptions:
        return load_options(profile.backend.get("snpe") or {}, str(profile.source))

    def plan(self, project: Any, profile: Any, sources: dict[str, Path]) -> list[Any]:
        raise UserError(f"{profile.source}: field 'runtime' is {RUNTIME!r}, which builds no artifacts of its own yet: "
                        "SNPE DLCs are built beside a QNN target's context binaries",
                        hint=f"set runtime = \"qnn\" in {profile.source}; [backend.snpe] configures its DLCs")

    def host_checks(self, profiles: Sequence[Any], env: HostEnv) -> list[Check]:
        return [sdk_check(profiles, env, required=True)]

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: Any) -> list[Check]:
        return [board_check(board, facts, f"target {profile.name} ({profile.runtime})", required=True)]

    def facts_probe(self, transport: Any, python: str, backend_table: Mapping[str, Any]) -> dict[str, Any]:
        options = load_options(backend_table.get("snpe") or {}, "manifest.json runtime_settings")
        return self.driver().probe(transport, python, options)


BACKEND = SnpeBackend()
