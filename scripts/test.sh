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
# two pytest-xdist workers, each test file whole on one of them (--dist loadfile: a file's module fixtures and
# its order stay as written); the suite waits on sshd, subprocesses and disks about half the time, so two
# workers on two cores roughly halve its wall time. DMSBUILD_TEST_WORKERS=0 runs it in one process.
exec .venv/bin/python -m pytest -n "${DMSBUILD_TEST_WORKERS:-2}" --dist loadfile "$@"
