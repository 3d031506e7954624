#!/usr/bin/env bash
# The installed path, as a user of dmsbuild takes it (issue 32): build the wheel, install it into a new venv
# outside the checkout, `dmsbuild new` a project in a temporary folder, bring a model (the reference model
# exported to ONNX) and images, `doit init`, build, deploy to emulated boards (real sshd on loopback), bench,
# report. Nothing here reads the checkout but the wheel, the model's checkpoint and the images.
# Run by scripts/test.sh (CI); alone: bash scripts/installed_check.sh (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmsbuild-installed.XXXXXX")
VENV=$WORK/venv
PROJ=$WORK/myproj
start=$(date +%s)
cleanup() {
  if [ -x "$VENV/bin/dmsbuild" ] && [ -d "$PROJ/artifacts/boards" ]; then
    (cd "$PROJ" && "$VENV/bin/dmsbuild" boards down) || true
  fi
  if [ "${KEEP_INSTALLED_CHECK:-}" = "" ]; then rm -rf "$WORK"; else echo "installed check: kept $WORK"; fi
}
trap cleanup EXIT
step() { printf '\n==> installed check (%ss): %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "wheel"
# from a copy of the tracked (and new, not ignored) files: no stale build/ of an earlier wheel gets in
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md CHANGELOG.md dmsbuild \
  | xargs -0 tar -cf - | tar -xf - -C "$WORK/src"
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
step "fresh venv outside the checkout: $VENV"
"$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$VENV"
# the CPU build of torch first (as scripts/setup.sh does), then the wheel and its dependencies (pip's cache)
# --no-compile: no .pyc for torch's thousands of files up front (Python compiles what it imports)
"$VENV/bin/python" -m pip install -q --no-compile "${DMSBUILD_TORCH:-torch==2.13.0}"
"$VENV/bin/python" -m pip install -q --no-compile "$WORK"/dist/dmsbuild-*.whl
export PATH="$VENV/bin:$PATH"
unset PYTHONPATH DMSBUILD_ROOT
cd "$WORK"
[ "$(dmsbuild --version)" = "$(python -m dmsbuild --version)" ]
step "dmsbuild new myproj"
dmsbuild new myproj
cd "$PROJ"
python -W ignore - "$REPO/models/dms_reference.pt" <<'EOF'
# the user's model: the reference DMS net, exported to ONNX by the user (not by dmsbuild)
import sys

import torch

from dmsbuild.model.dms_net import build_reference

model = build_reference()
model.load_state_dict({k: v.float() for k, v in torch.load(sys.argv[1], weights_only=True).items()})
heads = ["eye_state", "yawn", "activity", "head_pose"]
torch.onnx.export(model.eval(), (torch.zeros(1, 3, 128, 128),), "model.onnx", input_names=["image"], output_names=heads,
                  opset_version=17, dynamo=False, dynamic_axes={n: {0: "batch"} for n in ["image", *heads]})
EOF
mkdir -p images
cp -r "$REPO/data/calibration" "$REPO/data/validation" images/
step "doit init onnx=model.onnx data=images/"
doit init onnx=model.onnx data=images/
# a check the init output asks for: head_pose is a regression head, not classification logits
sed -i 's/^classification = .*/classification = ["eye_state", "yawn", "activity"]/' dmsbuild.toml
sed -i '/^\[outputs.kinds."head_pose"\]/,/^$/{s/^kind = .*/kind = "regression"/;/^axis = /d}' dmsbuild.toml
grep -A1 '^\[outputs.kinds."head_pose"\]' dmsbuild.toml | grep -q '^kind = "regression"'
grep -q '^onnx = "model.onnx"' dmsbuild.toml && grep -q '^calibration = "images/calibration"' dmsbuild.toml
step "doit build target=rpi5"
doit build target=rpi5
step "dmsbuild boards up --count 2 --groups rpi5"
dmsbuild boards up --count 2 --groups rpi5
step "doit deploy target=rpi5"
doit help deploy > "$WORK/help.txt"   # (not piped into grep -q: doit dies of the closed pipe)
grep -q -- '--hosts=ARG' "$WORK/help.txt"
if doit deploy target=rpi5 host=emu-01 2>"$WORK/host.err"; then echo "host= was not refused"; exit 1; fi
grep -q "unknown parameter host=emu-01" "$WORK/host.err"
doit deploy target=rpi5 2>&1 | tee "$WORK/deploy.log"
grep -Eq '^emu-01: done: fp32 [0-9.]+ ms \[emulated CPU\]' "$WORK/deploy.log"
step "doit bench target=rpi5"
doit bench target=rpi5
step "doit report"
doit report
grep -q "emulated" artifacts/report/report.md
python - <<'EOF'
# every path the build recorded lies inside the project folder
import json, pathlib
root = pathlib.Path.cwd().resolve()
build = json.loads((root / "artifacts/rpi5/build.json").read_text())
for a in build["artifacts"]:
    assert (root / a["path"]).resolve().is_relative_to(root), a["path"]
EOF
step "passed"
