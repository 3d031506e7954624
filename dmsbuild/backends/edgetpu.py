"""Google Coral (Edge TPU) backend: the full-integer INT8 .tflite compiled by ``edgetpu_compiler``.

The build (host, x86_64 only: Google ships the compiler for Debian x86-64):

1. ``compile:<target>.int8-qdq-tflite``: the full-integer INT8 ``int8.tflite`` of :mod:`.litert` (litert-torch
   + ai-edge-quantizer, int8 input and outputs), gated on the host like every artifact; it ships too, as the
   board CPU's baseline (LiteRT/XNNPACK);
2. ``compile:<target>.int8-edgetpu``: ``edgetpu_compiler -s -o <dir> [-m <runtime version>] int8.tflite`` ->
   ``int8_edgetpu.tflite``. Its report (``Number of operations that will run on Edge TPU: N``, the
   ``Operator / Count / Status`` table) is parsed into the op-placement table
   (``int8_edgetpu.placement.json``) and the placement gate: more than ``max_cpu_ops`` operations left on the
   CPU fails the build with the operators that fell back. Without the compiler this step stops in one line
   saying what to install, after step 1 was built.

The compiler is ``backend.compiler`` (default ``edgetpu_compiler`` on PATH); ``EDGETPU_COMPILER`` in the
environment overrides it (the demo and tests point it at the test double
``dmsbuild/doubles/edgetpu_compiler``, whose report is GENERATED and labelled so).

On the board (runner/litert_runner.py): the LiteRT interpreter with the Edge TPU delegate
(``libedgetpu.so.1``); an emulated board has no Edge TPU and runs the file on LiteRT's CPU path, saying so in
the result's provider. The compiled model cannot run on the host without an Edge TPU either, so its host
accuracy figure is the ``int8.tflite`` evaluation (the Edge TPU runs the same integer arithmetic; the board's
output check judges the compiled model itself).

Profile ``[backend]`` options: ``compiler``, ``min_runtime_version`` (``-m``; 0: the compiler's default),
``max_cpu_ops`` (placement gate), ``timeout_s`` (``-t``), ``delegate`` (library name on the board),
``threads``, ``calibration_samples`` (as :mod:`.litert`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError
from . import litert
from .base import ArtifactPlan, Backend, Check, HostEnv, profile_names

NAME = "edgetpu"
OPTIONS = {**litert.OPTIONS, "compiler": str, "min_runtime_version": int, "max_cpu_ops": int, "timeout_s": int,
           "delegate": str}
DEFAULTS = {"compiler": "edgetpu_compiler", "min_runtime_version": 0, "max_cpu_ops": 0, "timeout_s": 180,
            "delegate": "libedgetpu.so.1"}
COMPILER_ENV = "EDGETPU_COMPILER"
INSTALL_HINT = ("install the Edge TPU Compiler (Debian/Ubuntu x86-64): add the Coral apt repository "
                "(echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
                "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list) and sudo apt-get install edgetpu-compiler "
                "(https://coral.ai/docs/edgetpu/compiler/)")
DOUBLE_MARKER = "DMSBUILD TEST DOUBLE"


def load_options(backend: dict[str, Any], source: str) -> dict[str, Any]:
    litert.load_options(backend, source, NAME, OPTIONS)
    opts = {**DEFAULTS, "threads": 0, "calibration_samples": 0, **backend}
    if not 0 <= opts["min_runtime_version"] <= 99:
        raise UserError(f"{source}: field 'backend.min_runtime_version' is {opts['min_runtime_version']}; expected 0 "
                        "(the compiler's default) or an Edge TPU runtime version such as 13 or 14", hint=f"fix it in {source}")
    if opts["timeout_s"] <= 0:
        raise UserError(f"{source}: field 'backend.timeout_s' must be > 0", hint=f"fix it in {source}")
    return opts


def find_compiler(options: dict[str, Any], where: str = "") -> str:
    """The compiler to run, or one UserError line (naming ``where``: profile and artifact) saying what to install."""
    given = os.environ.get(COMPILER_ENV) or options["compiler"]
    path = shutil.which(given) or (given if os.path.isfile(given) and os.access(given, os.X_OK) else None)
    if path is None:
        src = f"{COMPILER_ENV}={given}" if os.environ.get(COMPILER_ENV) else f"backend.compiler {given!r}"
        raise UserError(f"{where + ': ' if where else ''}edgetpu_compiler not found ({src} is not on PATH): {INSTALL_HINT}")
    return path


def is_double(path: str) -> bool:
    """The compiler is dmsbuild's test double (dmsbuild/doubles/edgetpu_compiler), a Python script."""
    try:
        with open(path, "rb") as fh:
            return DOUBLE_MARKER.encode() in fh.read(1 << 16)
    except OSError:
        return False


def compile_argv(compiler: str, model: Path, out_dir: Path, options: dict[str, Any]) -> list[str]:
    """``edgetpu_compiler -s -o <dir> -t <s> [-m <version>] <model>`` (-s: print the operations table)."""
    argv = [compiler, "-s", "-o", str(out_dir), "-t", str(options["timeout_s"])]
    if options["min_runtime_version"]:
        argv += ["-m", str(options["min_runtime_version"])]
    return argv + [str(model)]


# --------------------------------------------------------------------------
# the compiler's report
# --------------------------------------------------------------------------
@dataclass
class EdgeTpuPlacement:
    """What ``edgetpu_compiler -s`` said about one model."""

    compiler_version: str | None = None
    edgetpu_ops: int | None = None
    cpu_ops: int | None = None
    total_ops: int | None = None
    subgraphs: int | None = None
    #: (operator, count, status) rows of the ``Operator Count Status`` table
    table: list[tuple[str, int, str]] = field(default_factory=list)
    memory: dict[str, str] = field(default_factory=dict)
    #: the output came from dmsbuild's test double (its table is generated, not the compiler's decision)
    double: bool = False

    @property
    def fallback(self) -> list[tuple[str, int, str]]:
        return [row for row in self.table if row[2] != "Mapped to Edge TPU"]

    def to_dict(self) -> dict[str, Any]:
        return {"compiler_version": self.compiler_version, "edgetpu_ops": self.edgetpu_ops, "cpu_ops": self.cpu_ops,
                "total_ops": self.total_ops, "subgraphs": self.subgraphs, "memory": self.memory,
                "table": [{"operator": o, "count": c, "status": s} for o, c, s in self.table],
                "source": "test double (generated)" if self.double else "edgetpu_compiler"}

    def summary(self) -> str:
        label = " [test double: generated]" if self.double else ""
        return (f"{self.edgetpu_ops} of {self.total_ops} operations on the Edge TPU, {self.cpu_ops} on the CPU, "
                f"{self.subgraphs} Edge TPU subgraph(s){label}")


_INT_LINES = {"edgetpu_ops": r"Number of operations that will run on Edge TPU:\s*(\d+)",
              "cpu_ops": r"Number of operations that will run on CPU:\s*(\d+)",
              "total_ops": r"Total number of operations:\s*(\d+)",
              "subgraphs": r"Number of Edge TPU subgraphs:\s*(\d+)"}
_MEMORY = ("On-chip memory used for caching model parameters", "On-chip memory remaining for caching model parameters",
           "Off-chip memory used for streaming uncached model parameters")


def parse_report(text: str) -> EdgeTpuPlacement:
    """Parse ``edgetpu_compiler -s`` output (versions 2.x-16.x: summary lines, then the operations table).

    When every operation maps, the compiler prints no ``Number of operations ...`` lines: the counts then
    come from the table (all on the Edge TPU)."""
    rep = EdgeTpuPlacement(double=DOUBLE_MARKER in text)
    m = re.search(r"Edge TPU Compiler version\s+(\S+)", text)
    rep.compiler_version = m.group(1) if m else None
    for key, pattern in _INT_LINES.items():
        m = re.search(pattern, text)
        if m:
            setattr(rep, key, int(m.group(1)))
    for label in _MEMORY:
        m = re.search(re.escape(label) + r":\s*(\S+)", text)
        if m:
            rep.memory[label] = m.group(1)
    in_table = False
    for line in text.splitlines():
        if re.match(r"\s*Operator\s+Count\s+Status\s*$", line):
            in_table = True
            continue
        if in_table:
            m = re.match(r"\s*([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$", line)
            if m:
                rep.table.append((m.group(1), int(m.group(2)), m.group(3)))
            elif line.strip() and rep.table:
                break
    if rep.table:
        mapped = sum(c for _, c, s in rep.table if s == "Mapped to Edge TPU")
        rest = sum(c for _, c, s in rep.table if s != "Mapped to Edge TPU")
        rep.edgetpu_ops = mapped if rep.edgetpu_ops is None else rep.edgetpu_ops
        rep.cpu_ops = rest if rep.cpu_ops is None else rep.cpu_ops
        rep.total_ops = mapped + rest if rep.total_ops is None else rep.total_ops
    if rep.compiler_version is None or rep.edgetpu_ops is None:
        raise UserError("edgetpu_compiler: its output has no 'Edge TPU Compiler version' line or no operations "
                        "table; is it the Edge TPU Compiler? (run with -s)")
    return rep


def check_placement(rep: EdgeTpuPlacement, max_cpu_ops: int, where: str) -> None:
    """The placement gate: more than ``max_cpu_ops`` operations on the CPU fails the build, naming them."""
    if (rep.cpu_ops or 0) <= max_cpu_ops:
        return
    rows = ", ".join(f"{o} x{c} ({s})" for o, c, s in rep.fallback)
    label = " [test double: generated]" if rep.double else ""
    raise UserError(f"{where}: {rep.cpu_ops} operations run on the CPU, not the Edge TPU (max_cpu_ops = {max_cpu_ops})"
                    f"{label}: {rows}",
                    hint="rewrite the model with Edge TPU operations (coral.ai/docs/edgetpu/models-intro), or raise "
                         "backend.max_cpu_ops if that CPU share is acceptable")


def format_table(rep: EdgeTpuPlacement) -> str:
    label = "  (test double: generated, not the compiler's decision)" if rep.double else ""
    lines = [f"  edgetpu: {rep.summary()}{label}", f"    {'operator':<28} {'count':>5}  status"]
    lines += [f"    {o:<28} {c:>5}  {s}" for o, c, s in rep.table]
    return "\n".join(lines)


def placement_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.placement.json")


def compile_edgetpu(project: Any, int8_tflite: Path, out: Path, options: dict[str, Any], where: str) -> EdgeTpuPlacement:
    """doit action: compile, parse the report, write the placement table, gate it; ``out`` last."""
    from .toolchain import run_tool

    compiler = find_compiler(options, where)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgetpu-", dir=out.parent) as tmp:
        argv = compile_argv(compiler, int8_tflite, Path(tmp), options)
        if is_double(compiler):  # dmsbuild's double reads the model with this Python's LiteRT
            argv = [sys.executable, *argv]
        res = run_tool(argv, log_dir=out.parent / "logs",
                       step="edgetpu_compiler", timeout=options["timeout_s"] + 60)
        text = res.stdout + "\n" + res.stderr
        rep = parse_report(text)
        produced = Path(tmp) / f"{int8_tflite.stem}_edgetpu.tflite"
        if not produced.is_file():
            raise UserError(f"{where}: edgetpu_compiler wrote no {produced.name} (see {out.parent / 'logs'})")
        placement_path(out).write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
        print(format_table(rep), flush=True)
        check_placement(rep, options["max_cpu_ops"], where)
        os.replace(produced, out)
    return rep


def plan(project: Any, profile: Any, sources: dict[str, Path]) -> list[Any]:
    """The Edge TPU compilation and the full-integer .tflite it is compiled from (shipped: the board CPU's baseline)."""
    litert.check_precisions(profile, NAME, ("int8-qdq",))
    options = load_options(profile.backend, str(profile.source))
    cpu_profile = _LiteProfile(profile, {k: v for k, v in profile.backend.items() if k in litert.OPTIONS}, ["int8-qdq"])
    cpu = litert.plan(project, cpu_profile, sources)[0]  # int8-qdq-tflite: int8.tflite
    out = cpu.path.with_name(f"{cpu.path.stem}_edgetpu.tflite")
    where = f"{profile.source}: artifact int8-edgetpu"
    tpu = ArtifactPlan(
        name="int8-edgetpu", precision="int8-qdq", kind="edgetpu-tflite", path=out, source=sources["int8-qdq"],
        runtime=NAME, providers=["EdgeTPU"], provider_options=[{"delegate": options["delegate"]}], portable=False,
        build=lambda: compile_edgetpu(project, cpu.path, out, options, where),
        settings={"backend": dict(profile.backend), "runtime": NAME}, file_dep=[cpu.path],
        # the host cannot run the compiled model: its accuracy proxy is the full-integer model it was compiled from
        eval_json=cpu.eval_json)
    return [tpu, cpu]


class _LiteProfile:
    """The target profile as :func:`litert.plan` sees it (only its own options and the int8 precision)."""

    def __init__(self, profile: Any, backend: dict[str, Any], precisions: list[str]) -> None:
        self.name, self.source, self.backend, self.precisions = profile.name, profile.source, backend, precisions


def compiler_check(profiles: Sequence[Any], env: HostEnv) -> Check:
    """The host's edgetpu_compiler (``EDGETPU_COMPILER`` or PATH); the test double is named as such."""
    given = env.environ.get(COMPILER_ENV) or DEFAULTS["compiler"]
    found = env.which(given) or (given if os.path.isfile(given) else None)
    shown = f"{found} (test double)" if found and is_double(found) else found
    return Check("host", "edgetpu_compiler", "ok" if found else "missing", shown, profile_names(profiles), INSTALL_HINT)


def device_checks(board: str, facts: Mapping[str, Any], need: str) -> list[Check]:
    """The Edge TPU delegate and device (the board probe's ``edgetpu`` fact); warnings on an emulated board, whose
    runner runs the compiled model on LiteRT's CPU path and says so per result."""
    tpu = facts.get("edgetpu") or {}
    lib, devices = tpu.get("library"), [*(tpu.get("pcie") or []), *(tpu.get("usb") or [])]
    emulated = bool(facts.get("emulated"))
    level = "ok" if lib else "warning" if emulated else "missing"
    checks = [Check(board, "Edge TPU delegate (libedgetpu.so.1)", level, lib, need,
                    "emulated board: the Edge TPU model runs on LiteRT's CPU path" if emulated and not lib else
                    "apt-get install libedgetpu1-std (Coral apt repository coral-edgetpu-stable)")]
    level = "ok" if devices else "warning" if emulated else "missing"
    checks.append(Check(board, "Edge TPU device (USB or PCIe)", level, ", ".join(devices) or None, need,
                        "emulated board: no Edge TPU" if emulated and not devices else
                        "plug in the USB Accelerator (lsusb: 1a6e:089a / 18d1:9302) or install the PCIe driver "
                        "(gasket-dkms: /dev/apex_0)"))
    return checks


class EdgeTpuBackend(Backend):
    """Coral: edgetpu_compiler's output run with the Edge TPU delegate, beside the full-integer .tflite it was
    compiled from, both by the release's runner (runner/litert_runner.py). Not tuned yet (as :mod:`.litert`)."""

    name = NAME

    def validate(self, profile: Any) -> dict[str, Any]:
        litert.check_precisions(profile, NAME, ("int8-qdq",))
        return load_options(profile.backend, str(profile.source))

    def plan(self, project: Any, profile: Any, sources: dict[str, Path]) -> list[ArtifactPlan]:
        return plan(project, profile, sources)

    def host_checks(self, profiles: Sequence[Any], env: HostEnv) -> list[Check]:
        return [*litert.converter_checks(profiles, env), compiler_check(profiles, env)]

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: Any) -> list[Check]:
        need = f"target {profile.name} ({profile.runtime})"
        return [litert.interpreter_check(board, facts, need), *device_checks(board, facts, need)]


BACKEND = EdgeTpuBackend()
