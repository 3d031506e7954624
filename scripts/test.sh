#!/usr/bin/env bash
# Set up (if needed), check the installed path (the wheel in a fresh venv outside the checkout: dmsbuild new,
# init, build, deploy to emulated boards, bench, report; scripts/installed_check.sh, a few minutes), then run
# the whole test suite. Extra arguments go to pytest. DMSBUILD_SKIP_INSTALLED_CHECK=1 skips the installed path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${DMSBUILD_SKIP_INSTALLED_CHECK:-}" != 1 ]; then
  bash scripts/installed_check.sh
fi
exec .venv/bin/python -m pytest "$@"
