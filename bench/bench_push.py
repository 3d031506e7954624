"""Push a ~25 MB release to 1 and 8 emulated boards (real sshd) and compare with scp in the same run.

    .venv/bin/python bench/bench_push.py [--mb 25] [--repeat 3]

Goals (issue 3): first push within 1.5x of scp's wall time; a second push with
nothing changed under 0.3 s per board and zero artifact bytes; rollback time.
Each push goes to fresh deploy roots so everything is sent; the best of
--repeat runs is reported for both dmsbuild and scp.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import write_build  # noqa: E402  (fabricated build.json with random artifacts)
from dmsbuild import boards as boards_mod  # noqa: E402
from dmsbuild.config import load_project, load_target  # noqa: E402
from dmsbuild.ship.inventory import load_inventory  # noqa: E402
from dmsbuild.ship.manifest import make_release  # noqa: E402
from dmsbuild.pipeline.deploy import deploy_target, rollback_target  # noqa: E402


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def scp(state: dict, board: dict, files: list[Path], dest: str) -> None:
    base = ["-q", "-i", state["identity_file"], "-o", f"UserKnownHostsFile={state['known_hosts']}",
            "-o", "BatchMode=yes", "-P", str(board["port"])]
    subprocess.run(["ssh", "-i", state["identity_file"], "-o", f"UserKnownHostsFile={state['known_hosts']}", "-o", "BatchMode=yes",
                    "-p", str(board["port"]), f"{state['user']}@{board['host']}", "mkdir", "-p", dest], check=True)
    subprocess.run(["scp", *base, *map(str, files), f"{state['user']}@{board['host']}:{dest}/"], check=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=25.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_push_"))
    try:
        shutil.copy(REPO / "dmsbuild.toml", work)
        shutil.copytree(REPO / "targets", work / "targets")
        write_build(work, "rpi5", {"fp32": args.mb * 0.64, "fp16": args.mb * 0.24, "int8-qdq": args.mb * 0.12})
        project, prof = load_project(work), load_target(work, "rpi5")
        prof.arch = "any"
        release = make_release(project, prof)
        files = [f.local for f in release.files]
        mb = release.total_bytes / 1e6
        state = boards_mod.up(8, work / "boards", port=free_port("127.0.0.61"), first=61, groups=("rpi5",))
        inv = load_inventory(Path(state["inventory"]), work)
        all_boards = [inv.boards[b["name"]] for b in state["boards"]]
        rows = []
        for n in (1, 8):
            bs_state = state["boards"][:n]
            best_scp = best_push = float("inf")
            for r in range(args.repeat):
                t = time.perf_counter()
                with ThreadPoolExecutor(n) as pool:
                    list(pool.map(lambda b: scp(state, b, files, f"{work}/scp/{r}/{b['name']}"), bs_state))
                best_scp = min(best_scp, time.perf_counter() - t)
                bs = [replace(b, root=f"{work}/push/{n}/{r}/{b.name}") for b in all_boards[:n]]
                t = time.perf_counter()
                out = deploy_target(project, prof, bs, release=release)
                best_push = min(best_push, time.perf_counter() - t)
                if not all(o.ok and o.bytes_sent == release.total_bytes for o in out):
                    print([o.line() for o in out])
                    return 1
            second, sent_again = float("inf"), 0
            for _ in range(args.repeat):
                t = time.perf_counter()
                again = deploy_target(project, prof, bs, release=release)
                second = min(second, time.perf_counter() - t)
                sent_again += sum(o.bytes_sent for o in again)
                assert all(o.ok and o.action == "unchanged" for o in again), [o.line() for o in again]
            # a second release (one artifact changed) so there is something to roll back to
            rel2_files = list(release.files)
            write_build(work, "rpi5", {"fp32": args.mb * 0.64, "fp16": args.mb * 0.24, "int8-qdq": args.mb * 0.12 + 0.01})
            rel2 = make_release(load_project(work), prof)
            deploy_target(project, prof, bs, release=rel2)
            write_build(work, "rpi5", {"fp32": args.mb * 0.64, "fp16": args.mb * 0.24, "int8-qdq": args.mb * 0.12})
            del rel2_files
            t = time.perf_counter()
            back = rollback_target(prof, bs)
            rb = time.perf_counter() - t
            assert all(o.ok and o.release_id == release.release_id for o in back), [o.line() for o in back]
            rows.append((n, mb, best_scp, best_push, second, sent_again, rb))
        print(f"\nrelease: {len(files)} files, {mb:.1f} MB; best of {args.repeat}; one machine, 2 shared cores, loopback sshd\n")
        print("| boards | MB/board | scp s | scp MB/s | dmsbuild push s | push MB/s | push/scp | 2nd push s/board | 2nd push bytes | rollback s |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n, mb_, s_scp, s_push, s2, b2, rb in rows:
            print(f"| {n} | {mb_:.1f} | {s_scp:.2f} | {n * mb_ / s_scp:.0f} | {s_push:.2f} | {n * mb_ / s_push:.0f} | "
                  f"{s_push / s_scp:.2f}x | {s2 / n:.3f} | {b2} | {rb:.2f} |")
        print("\ngoals: push/scp <= 1.5x; 2nd push < 0.3 s/board with 0 bytes")
    finally:
        boards_mod.down(work / "boards", quiet=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
