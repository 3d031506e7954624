"""Shared body of the Jetson board-tool doubles (nvpmodel, jetson_clocks, tegrastats) for emulated orin boards.

Each prints the real tool's format (tests/fixtures/board_state/README.md gives public samples) with GENERATED
values, and a `DMSBUILD TEST DOUBLE` line, so dmsbuild labels the board state they report as generated.
Arguments are checked like the real tools': nvpmodel -q / -m N, jetson_clocks --show,
tegrastats --interval MS [--logfile FILE]. Nothing here reads a real board.

Environment: NVPMODEL_DOUBLE_MODE (default MAXN), TEGRASTATS_DOUBLE_VDD_IN_MW (default 5200).
"""
import os
import sys
import time

MARKER = "DMSBUILD TEST DOUBLE: generated, not read from a Jetson"


def nvpmodel(argv):
    if argv == ["-q"] or argv == ["-q", "--verbose"]:
        mode = os.environ.get("NVPMODEL_DOUBLE_MODE", "MAXN")
        print(f"NV Power Mode: {mode}\n{0 if mode == 'MAXN' else 1}\n{MARKER}")
        return 0
    print("NVPM ERROR: the double supports -q only", file=sys.stderr)
    return 1


def jetson_clocks(argv):
    if argv != ["--show"]:
        print("the double supports --show only (it changes nothing)", file=sys.stderr)
        return 1
    print("SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit\nOnline CPUs: 0-11")
    for i in range(12):
        print(f"cpu{i}: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=2201600 "
              "IdleStates: WFI=1 c7=1")
    print("GPU MinFreq=306000000 MaxFreq=1301000000 CurrentFreq=306000000\n"
          "EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=0")
    print(MARKER)
    return 0


def tegrastats(argv):
    interval, log = 1000, None
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag == "--interval" and args and args[0].isdigit():
            interval = int(args.pop(0))
        elif flag == "--logfile" and args:
            log = args.pop(0)
        else:
            print(f"tegrastats: unknown option {flag}", file=sys.stderr)
            return 1
    out = open(log, "a", buffering=1) if log else sys.stdout
    out.write(MARKER + "\n")
    vdd_in = int(os.environ.get("TEGRASTATS_DOUBLE_VDD_IN_MW", "5200"))
    i = 0
    while True:
        load = os.getloadavg()[0]
        stamp = time.strftime("%m-%d-%Y %H:%M:%S")
        out.write(f"{stamp} RAM 3124/30536MB (lfb 6x4MB) SWAP 0/15268MB (cached 0MB) CPU [{int(min(load, 1) * 100)}%@2201] "
                  f"EMC_FREQ 0%@3199 GR3D_FREQ 0%@[306,306] CPU@45.{i % 10}C tj@46.5C "
                  f"VDD_GPU_SOC 1988mW/1988mW VDD_CPU_CV 796mW/796mW VIN_SYS_5V0 3427mW/3427mW VDD_IN {vdd_in}mW/{vdd_in}mW\n")
        out.flush()
        i += 1
        time.sleep(interval / 1000)


def main(tool):
    return {"nvpmodel": nvpmodel, "jetson_clocks": jetson_clocks, "tegrastats": tegrastats}[tool](sys.argv[1:])
