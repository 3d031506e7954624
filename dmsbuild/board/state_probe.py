"""Run on the board before, during and after every benchmark: the board's state, as raw text.

``python3 -c <this file> snapshot [TOOLS]`` prints one JSON object: /proc/loadavg, cpu0's cpufreq
(current, max, governor), the thermal zones and the output of the vendor tools present (``nvpmodel -q``,
``jetson_clocks --show``, ``vcgencmd measure_temp`` / ``get_throttled``); TOOLS is a comma-separated
list of the tools to ask (``*``: every one present; empty: none), by board kind.
``start LOG INTERVAL_MS`` starts ``tegrastats`` logging to LOG in its own session and prints its pid
(``{"pid": null}`` without tegrastats); ``stop PID LOG`` stops it and prints the log's text.

Read-only (it only reads files and runs the tools' query modes), standard library only, every tool
optional. The host parses the texts (``dmsbuild.measure.board_state``)."""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

#: (name in the snapshot, the query's argv) of each vendor tool
TOOLS = (("nvpmodel", ["nvpmodel", "-q"]), ("jetson_clocks", ["jetson_clocks", "--show"]),
         ("measure_temp", ["vcgencmd", "measure_temp"]), ("get_throttled", ["vcgencmd", "get_throttled"]))
CPU = "/sys/devices/system/cpu/cpu0/cpufreq/"


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


def start(log, interval_ms):
    """tegrastats sampled during the run: our own process, stopped by pid."""
    if not shutil.which("tegrastats"):
        return {"pid": None}
    p = subprocess.Popen(["tegrastats", "--interval", interval_ms, "--logfile", log], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    return {"pid": p.pid, "log": log}


def stop(pid, log):
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
    return {"tegrastats": text[-200000:]}


def snapshot(allowed):
    """``allowed``: the vendor tools to ask (None: every one present)."""
    zones = {}
    for z in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        t, v = read(z + "/type"), read(z + "/temp")
        if t and v and v.lstrip("-").isdigit():
            zones[t] = int(v) / 1000.0
    out = {"loadavg": read("/proc/loadavg"), "cpu_cur_khz": read(CPU + "scaling_cur_freq"),
           "cpu_max_khz": read(CPU + "scaling_max_freq"), "governor": read(CPU + "scaling_governor"),
           "thermal": zones, "tools": {}}
    for name, argv in TOOLS:
        if allowed is not None and argv[0] not in allowed:
            continue
        text = tool(argv)
        if text is not None:
            out["tools"][name] = text
    return out


def main(argv):
    mode = argv[0] if argv else "snapshot"
    if mode == "start":
        return start(argv[1], argv[2])
    if mode == "stop":
        return stop(int(argv[1]), argv[2])
    # snapshot's argument: the vendor tools to ask ("*": every one present; "": none), by board kind
    allowed = None if mode != "snapshot" or len(argv) < 2 or argv[1] == "*" else set(argv[1].split(","))
    return snapshot(allowed)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
