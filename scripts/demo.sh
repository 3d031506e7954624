#!/usr/bin/env bash
# Set up (if needed), then the main job end to end on the embedded default and on emulated boards:
# build every artifact, deploy to this machine (target `local`) and to three emulated boards
# (real sshd on 127.0.0.x; targets rpi5, qcs8255, orin and coral), benchmark and verify on each, then write the report.
# The boards keep running afterwards so you can try more (`doit rollback target=rpi5`, ...);
# `.venv/bin/dmsbuild boards down` stops them. Their address block and port are chosen on the first run
# (127.0.0.11.. and 2222 when free) and remembered; DMSBUILD_BOARDS_NET / DMSBUILD_BOARDS_PORT set them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "doit deploy (target local: build, install into artifacts/boards/local, benchmark, verify)"
doit deploy
step "dmsbuild boards up --count 3 (emulated boards: real sshd on loopback)"
dmsbuild boards up --count "${DMSBUILD_DEMO_BOARDS:-3}"
step "doit deploy target=rpi5 (push to every rpi5 board over SSH, switch atomically, benchmark, verify)"
doit deploy target=rpi5
step "doit deploy target=rpi5 again (nothing changed: same release id, nothing sent)"
doit deploy target=rpi5 bench=no
step "doit deploy target=qcs8255 (QNN context binary built on the host; run on onnxruntime-qnn's HTP simulator)"
doit deploy target=qcs8255
step "doit deploy target=orin (engines built on the board by trtexec: a TEST DOUBLE on emulated boards, see README)"
doit deploy target=orin
if .venv/bin/python -c "import litert_torch, ai_edge_quantizer, ai_edge_litert" 2>/dev/null; then
  step "doit deploy target=coral (full-integer TFLite; edgetpu_compiler is a TEST DOUBLE here; emulated boards run LiteRT's CPU path)"
  EDGETPU_COMPILER="$PWD/dmsbuild/doubles/edgetpu_compiler" doit deploy target=coral
else
  step "target coral skipped: the litert extra is not installed (pip install '.[litert]')"
fi
step "doit report"
doit report
printf '\nReport: %s\n' "$PWD/artifacts/report/index.html"
printf 'Boards still running; stop them with: .venv/bin/dmsbuild boards down\n'
