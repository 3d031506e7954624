#!/usr/bin/env bash
# Set up (if needed), then the main job end to end on the embedded default:
# build every artifact, deploy to this machine and to emulated boards, benchmark, report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
doit build target=local
