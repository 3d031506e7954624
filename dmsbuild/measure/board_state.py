"""The board's state with every benchmark: power mode, clocks, temperatures, throttling, load, power rails.

A latency means little without the conditions it was taken in: on a Jetson
``nvpmodel`` (15W vs MAXN) and ``jetson_clocks`` change latency 2-3x; a
throttled Raspberry Pi or a busy board does the same. So before and after
every benchmark the host runs ``STATE_SCRIPT`` on the board (standard
library only; it only reads), and samples ``tegrastats`` during the run where
the board has it. The raw texts come home and are parsed here with parsers
tolerant of the layouts of different Jetson generations (formats and their
public sources: tests/fixtures/board_state/README.md):

* ``nvpmodel -q``: ``NV Power Mode: MAXN`` then the mode id;
* ``jetson_clocks --show``: ``cpu0: ... MinFreq=... MaxFreq=... CurrentFreq=...``,
  ``GPU MinFreq=... MaxFreq=... CurrentFreq=...`` (clocks locked when min == max);
* ``tegrastats``: TX1 (``cpu [..]@MHz EMC 1%@408 GR3D 3%@76``), TX2/Xavier
  (``EMC_FREQ 0% GR3D_FREQ 0% ... VDD_IN 3140/3208``: mW without a unit),
  Orin (``EMC_FREQ 1%@2133 GR3D_FREQ 14%@[407,407] ... tj@77.281C
  VDD_GPU_SOC 3150mW/2971mW VIN_SYS_5V0 4968mW/5048mW``);
* ``vcgencmd measure_temp`` (``temp=48.3'C``) and ``get_throttled``
  (``throttled=0x50005``: bit 2 throttled now, bit 1 capped now, bit 0 under-voltage);
* every Linux board: /proc/loadavg, cpu0's cpufreq (current, max, governor), thermal zones.

The latency gate refuses to compare runs taken in different power modes, with
``jetson_clocks`` on vs off, or under throttling (``incomparable``), and says so.
Output of a test double carries ``DMSBUILD TEST DOUBLE``; such a state says
``generated`` for that tool.
"""
from __future__ import annotations

import json
import re
import statistics
from typing import TYPE_CHECKING, Any, Iterable

from .provenance import DOUBLE_MARKER

if TYPE_CHECKING:
    from ..ship.transport.base import Transport

#: runs on the board: read-only, standard library, every tool optional; prints one JSON object
STATE_SCRIPT = r'''
import glob, json, os, shutil, subprocess, sys, time
def read(p):
    try:
        with open(p) as fh:
            return fh.read().strip()
    except OSError:
        return None
def tool(argv, timeout=15):
    if not shutil.which(argv[0]):
        return None
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr)[-4000:]
    except (OSError, subprocess.SubprocessError) as e:
        return "error: %s" % e
mode = sys.argv[1] if len(sys.argv) > 1 else "snapshot"
# snapshot's second argument: the vendor tools to ask ("*": every one present; "": none), by board kind
allowed = None if mode != "snapshot" or len(sys.argv) < 3 or sys.argv[2] == "*" else set(sys.argv[2].split(","))
if mode == "start":  # tegrastats sampled during the run: our own process, stopped by pid
    if not shutil.which("tegrastats"):
        print(json.dumps({"pid": None})); sys.exit(0)
    log = sys.argv[2]
    p = subprocess.Popen(["tegrastats", "--interval", sys.argv[3], "--logfile", log], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    print(json.dumps({"pid": p.pid, "log": log})); sys.exit(0)
if mode == "stop":
    pid, log = int(sys.argv[2]), sys.argv[3]
    try:
        os.kill(pid, 15)
    except OSError:
        pass
    time.sleep(0.2)
    text = read(log) or ""
    try:
        os.unlink(log)
    except OSError:
        pass
    print(json.dumps({"tegrastats": text[-200000:]})); sys.exit(0)
zones = {}
for z in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
    t, v = read(z + "/type"), read(z + "/temp")
    if t and v and v.lstrip("-").isdigit():
        zones[t] = int(v) / 1000.0
cpu = "/sys/devices/system/cpu/cpu0/cpufreq/"
out = {"loadavg": read("/proc/loadavg"), "cpu_cur_khz": read(cpu + "scaling_cur_freq"),
       "cpu_max_khz": read(cpu + "scaling_max_freq"), "governor": read(cpu + "scaling_governor"),
       "thermal": zones, "tools": {}}
for name, argv in (("nvpmodel", ["nvpmodel", "-q"]), ("jetson_clocks", ["jetson_clocks", "--show"]),
                   ("measure_temp", ["vcgencmd", "measure_temp"]), ("get_throttled", ["vcgencmd", "get_throttled"])):
    if allowed is not None and argv[0] not in allowed:
        continue
    text = tool(argv)
    if text is not None:
        out["tools"][name] = text
print(json.dumps(out))
'''
#: tegrastats interval while a benchmark runs (ms)
TEGRASTATS_INTERVAL_MS = 500
#: the state tools of each board kind, the kind named by the runtime a release runs on it: TensorRT runs on a
#: Jetson (orin: nvpmodel, jetson_clocks, tegrastats), QNN/SNPE on a Qualcomm board (qcs8255: thermal zones
#: only; its SDK's profilers are the runtime's own), ONNX Runtime on CPU boards (rpi5: vcgencmd). A real board
#: is asked for every tool (it has only its own); an emulated board (an sshd on this machine whose PATH
#: carries the doubles of every kind) only for its kind's, so no rpi5 or qcs8255 row carries Jetson state.
STATE_TOOLS: dict[str, tuple[str, ...]] = {"tensorrt": ("nvpmodel", "jetson_clocks", "tegrastats"),
                                           "qnn": (), "snpe": (), "onnxruntime": ("vcgencmd",), "litert": (), "edgetpu": ()}


def state_tools(facts: dict | None, runtimes: "Iterable[str]") -> tuple[str, ...] | None:
    """The vendor state tools to ask on this board for a release of ``runtimes``: None (all present) on a
    real board; on an emulated one the tools of its kind (``STATE_TOOLS``), none for an unknown runtime."""
    if not (facts or {}).get("emulated"):
        return None
    return tuple(sorted({t for rt in runtimes for t in STATE_TOOLS.get(rt, ())}))


#: tegrastats temperatures that are not temperatures: -256 C is a powered-down sensor (Orin's GPU and CV
#: zones at idle: rbonghi/jetson_stats#350), and a TX2's PMIC@100C is a fixed placeholder (it reads 100
#: whatever the board's heat: tests/fixtures/board_state/tegrastats-tx2-2019.txt beside Tboard@40C)
SENSOR_OFF_C = -256.0
PLACEHOLDER_TEMPS = {"PMIC": 100.0}


def _sentinel(name: str, value: float) -> str | None:
    """Why a reading is no temperature (``sensor off`` / ``fixed placeholder``), else None."""
    if value <= SENSOR_OFF_C + 0.5:
        return "sensor off"
    if PLACEHOLDER_TEMPS.get(name) == value:
        return "fixed placeholder"
    return None


# --------------------------------------------------------------------------
# parsers (tolerant: a field that is absent is None, never an error)
# --------------------------------------------------------------------------
def parse_nvpmodel(text: str | None) -> str | None:
    """``NV Power Mode: MAXN`` -> ``MAXN`` (None when absent)."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text or "")
    return m.group(1) if m else None


def parse_jetson_clocks(text: str | None) -> dict[str, Any] | None:
    """CPU/GPU/EMC current clocks (MHz) and whether jetson_clocks locked them (min == max == current)."""
    if not text or "Freq" not in text:
        return None
    out: dict[str, Any] = {}
    locked = []
    for name, mn, mx, cur in re.findall(r"^\s*(cpu\d+|GPU|EMC)\b.*?MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)",
                                        text, re.M):
        hz = 1000 if name.startswith("cpu") else 1  # cpu lines are kHz, GPU/EMC lines Hz
        out[f"{name.lower()}_mhz"] = int(cur) * hz / 1e6
        if name != "EMC":  # jetson_clocks pins EMC by FreqOverride, leaving its MinFreq low
            locked.append(mn == mx == cur)
    if not locked:
        return None
    out["locked"] = all(locked)
    return out


_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b((?:VDD|VIN)[A-Z0-9]*_[A-Z0-9_]+)\s+(\d+)(?:mW)?/(\d+)(?:mW)?")


def parse_tegrastats_line(line: str) -> dict[str, Any] | None:
    """One tegrastats line of any Jetson generation -> loads, clocks, temperatures (C) and rails (mW now)."""
    if "RAM " not in line:
        return None
    temps = {k: float(v) for k, v in _TEMP.findall(line)}
    dropped = {k: f"{k}@{v:g}C ({_sentinel(k, v)})" for k, v in temps.items() if _sentinel(k, v)}
    out: dict[str, Any] = {"temps": {k: v for k, v in temps.items() if k not in dropped},
                           "rails_mw": {k: int(now) for k, now, _avg in _RAIL.findall(line)}}
    if dropped:
        out["dropped_temps"] = sorted(dropped.values())
    m = re.search(r"\bGR3D(?:_FREQ)?\s+(\d+)%(?:@\[?(\d+))?", line)
    if m:
        out["gpu_load_pct"] = int(m.group(1))
        out["gpu_mhz"] = int(m.group(2)) if m.group(2) else None
    m = re.search(r"\bEMC(?:_FREQ)?\s+(\d+)%(?:@(\d+))?", line)
    if m:
        out["emc_load_pct"] = int(m.group(1))
        out["emc_mhz"] = int(m.group(2)) if m.group(2) else None
    return out


def summarize_tegrastats(text: str | None) -> dict[str, Any] | None:
    """Means over a run's tegrastats samples; ``power_mw`` from VDD_IN, else the sum of the module's rails."""
    samples = [s for s in (parse_tegrastats_line(l) for l in (text or "").splitlines()) if s]
    if not samples:
        return None

    def mean(key: str) -> float | None:
        vals = [s[key] for s in samples if s.get(key) is not None]
        return statistics.fmean(vals) if vals else None

    rails = sorted({r for s in samples for r in s["rails_mw"]})
    out: dict[str, Any] = {"samples": len(samples), "gpu_load_pct": mean("gpu_load_pct"), "gpu_mhz": mean("gpu_mhz"),
                           "emc_load_pct": mean("emc_load_pct"), "emc_mhz": mean("emc_mhz"),
                           "max_temp_c": max((t for s in samples for t in s["temps"].values()), default=None),
                           "rails_mw": {r: statistics.fmean(s["rails_mw"][r] for s in samples if r in s["rails_mw"])
                                        for r in rails}}
    dropped = sorted({d for s in samples for d in s.get("dropped_temps", ())})
    if dropped:  # said, not silently lost: conditions() shows them
        out["dropped_temps"] = dropped
    if "VDD_IN" in out["rails_mw"]:
        out["power_mw"], out["power_rail"] = out["rails_mw"]["VDD_IN"], "VDD_IN"
    elif rails:  # Orin AGX: no VDD_IN line; the module's rails together
        out["power_mw"], out["power_rail"] = sum(out["rails_mw"].values()), "+".join(rails)
    return out


def parse_throttled(text: str | None) -> dict[str, Any] | None:
    """``throttled=0x50005`` -> flags now (bits 0-3) and since boot (bits 16-19)."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", text or "")
    if not m:
        return None
    v = int(m.group(1), 16)
    return {"raw": m.group(1), "under_voltage": bool(v & 0x1), "freq_capped": bool(v & 0x2),
            "throttled": bool(v & 0x4), "soft_temp_limit": bool(v & 0x8), "throttled_since_boot": bool(v & 0x40000)}


def parse_snapshot(raw: dict) -> dict[str, Any]:
    """The state script's raw JSON -> the stored snapshot (``generated``: tools whose output a double made)."""
    tools = raw.get("tools") or {}
    load = (raw.get("loadavg") or "").split()
    snap: dict[str, Any] = {
        "load1": float(load[0]) if load and re.fullmatch(r"[\d.]+", load[0]) else None,
        "cpu_mhz": int(raw["cpu_cur_khz"]) / 1000 if str(raw.get("cpu_cur_khz") or "").isdigit() else None,
        "cpu_max_mhz": int(raw["cpu_max_khz"]) / 1000 if str(raw.get("cpu_max_khz") or "").isdigit() else None,
        "governor": raw.get("governor"),
        "thermal_c": {k: v for k, v in (raw.get("thermal") or {}).items()
                      if isinstance(v, (int, float)) and not _sentinel(k, v)},
        "dropped_temps": sorted(f"{k}@{v:g}C ({_sentinel(k, v)})" for k, v in (raw.get("thermal") or {}).items()
                                if isinstance(v, (int, float)) and _sentinel(k, v)),
        "power_mode": parse_nvpmodel(tools.get("nvpmodel")),
        "jetson_clocks": parse_jetson_clocks(tools.get("jetson_clocks")),
        "throttled": parse_throttled(tools.get("get_throttled")),
    }
    m = re.search(r"temp=(-?[\d.]+)'C", tools.get("measure_temp") or "")
    snap["soc_temp_c"] = float(m.group(1)) if m else None
    snap["generated"] = sorted(k for k, v in tools.items() if DOUBLE_MARKER in (v or ""))
    return {k: v for k, v in snap.items() if v not in (None, {}, [])}


def throttled(state: dict | None) -> str | None:
    """Why a run's state says it was throttled (vcgencmd flags now), else None."""
    for when in ("before", "after"):
        t = ((state or {}).get(when) or {}).get("throttled") or {}
        flags = [k for k in ("throttled", "freq_capped", "under_voltage", "soft_temp_limit") if t.get(k)]
        if flags:
            return f"get_throttled {t.get('raw')} {when} the run ({', '.join(flags)})"
    return None


def incomparable(previous: dict | None, current: dict | None) -> str | None:
    """Why two runs' latencies must not be compared (power mode, jetson_clocks, throttling), else None."""
    why = throttled(current)
    if why:
        return f"this run was throttled: {why}"
    why = throttled(previous)
    if why:
        return f"the baseline run was throttled: {why}"
    old, new = (previous or {}).get("before") or {}, (current or {}).get("before") or {}
    if old.get("power_mode") and new.get("power_mode") and old["power_mode"] != new["power_mode"]:
        return (f"power mode changed: nvpmodel {old['power_mode']} (baseline) vs {new['power_mode']} (this run); "
                "a power-mode change is not a model regression")
    lo, ln = (old.get("jetson_clocks") or {}).get("locked"), (new.get("jetson_clocks") or {}).get("locked")
    if lo is not None and ln is not None and lo != ln:
        return (f"jetson_clocks {'on' if lo else 'off'} (baseline) vs {'on' if ln else 'off'} (this run): "
                "clocks differ, latencies are not comparable")
    return None


def conditions(state: dict | None) -> str:
    """One short line for the report: power mode, clocks, temperature, throttling, load, power."""
    if not state:
        return "–"
    b, run = state.get("before") or {}, state.get("during") or {}
    parts = []
    if b.get("power_mode"):
        parts.append(f"nvpmodel {b['power_mode']}")
    jc = b.get("jetson_clocks")
    if jc:
        parts.append("clocks locked" if jc.get("locked") else "clocks dynamic")
    if b.get("cpu_mhz"):
        parts.append(f"CPU {b['cpu_mhz']:.0f} MHz" + (f" {b['governor']}" if b.get("governor") else ""))
    temps = list((b.get("thermal_c") or {}).values()) + ([b["soc_temp_c"]] if b.get("soc_temp_c") else [])
    if run.get("max_temp_c") is not None:
        temps.append(run["max_temp_c"])
    if temps:
        parts.append(f"max {max(temps):.0f} °C")
    why = throttled(state)
    parts.append("THROTTLED" if why else ("not throttled" if b.get("throttled") else ""))
    if b.get("load1") is not None:
        parts.append(f"load {b['load1']:.2f}")
    if run.get("power_mw") is not None:
        parts.append(f"{run['power_mw'] / 1000:.1f} W ({run['power_rail']})")
    dropped = sorted(set(b.get("dropped_temps", [])) | set(run.get("dropped_temps", [])))
    if dropped:
        parts.append("not temperatures, dropped: " + ", ".join(dropped))
    gen = sorted(set(b.get("generated", [])) | set(run.get("generated", [])))
    if gen:
        parts.append(f"{', '.join(gen)} generated by test doubles")
    return ", ".join(p for p in parts if p)


def energy_mj(state: dict | None, mean_latency_ms: float | None) -> float | None:
    """Energy per inference (mJ): mean board power during the run x mean latency (whole board, not incremental)."""
    power = ((state or {}).get("during") or {}).get("power_mw")
    if power is None or not mean_latency_ms:
        return None
    return power * mean_latency_ms / 1000.0


# --------------------------------------------------------------------------
# collection over a transport
# --------------------------------------------------------------------------
def snapshot(transport: "Transport", python: str, tools: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    """The board's state now (None when the board's Python cannot run the script: the run goes on).

    ``tools``: the vendor tools to ask (``state_tools``); None asks every one the board has."""
    which = "*" if tools is None else ",".join(tools)
    res = transport.run([python, "-c", STATE_SCRIPT, "snapshot", which], timeout=120)
    if not res.ok:
        return None
    try:
        return parse_snapshot(json.loads(res.stdout.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError, AttributeError):
        return None


class Sampler:
    """tegrastats sampled during a benchmark (where the board has it): ``start()`` before, ``stop()`` after."""

    def __init__(self, transport: "Transport", python: str, log: str, tools: tuple[str, ...] | None = None) -> None:
        self.transport, self.python, self.log = transport, python, log
        self.pid: int | None = None
        self.enabled = tools is None or "tegrastats" in tools  # an emulated rpi5 runs no Jetson double

    def start(self) -> None:
        if not self.enabled:
            return
        res = self.transport.run([self.python, "-c", STATE_SCRIPT, "start", self.log, str(TEGRASTATS_INTERVAL_MS)],
                                 timeout=60)
        try:
            self.pid = json.loads(res.stdout.strip().splitlines()[-1]).get("pid") if res.ok else None
        except (json.JSONDecodeError, IndexError):
            self.pid = None

    def stop(self) -> dict[str, Any] | None:
        if not self.pid:
            return None
        res = self.transport.run([self.python, "-c", STATE_SCRIPT, "stop", str(self.pid), self.log], timeout=60)
        try:
            text = json.loads(res.stdout.strip().splitlines()[-1]).get("tegrastats") if res.ok else None
        except (json.JSONDecodeError, IndexError):
            return None
        summary = summarize_tegrastats(text)
        if summary is not None and DOUBLE_MARKER in (text or ""):
            summary["generated"] = ["tegrastats"]
        return summary


__all__ = ["STATE_SCRIPT", "Sampler", "conditions", "energy_mj", "incomparable", "parse_jetson_clocks",
           "parse_nvpmodel", "parse_snapshot", "parse_tegrastats_line", "parse_throttled", "snapshot",
           "state_tools", "summarize_tegrastats", "throttled"]
