#!/usr/bin/env python3
"""Fetch Ansible's own integration-test inventories for tests/test_ansible_conformance.py (run by scripts/setup.sh).

They are Ansible's test data (GPL-3.0-or-later), so they are never committed here: this script downloads the
pinned ansible-core sdist from PyPI with pip (the sdist, unlike the wheel, ships ``test/integration/targets/``),
checks its sha256 and extracts only the inventories chosen by the rule of
tests/fixtures/ansible_corpus/integration/README.md (plus the ``group_vars/``/``host_vars/`` folders beside
them) into ``.venv/share/dmsbuild/ansible-corpus/<version>/`` (git-ignored), keeping their paths relative to
``test/integration/targets/``. Idempotent: nothing is downloaded when that folder is complete.

    .venv/bin/python scripts/ansible_corpus.py            # fetch once; prints the folder
    .venv/bin/python scripts/ansible_corpus.py --list     # with each candidate file and why it is kept or not
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: the ansible-core that pyproject's dev extra resolves to on Python 3.11 (2.19 is the last series for 3.11)
VERSION = "2.19.15"
#: sha256 of ansible_core-2.19.15.tar.gz as PyPI serves it (checked on every download)
SHA256 = "05fa7f0730199b8e0dd9204f258075992143bd51dae71f68965b832a50d422fe"
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv" / "share" / "dmsbuild" / "ansible-corpus" / VERSION
#: written last: its presence means the folder is complete (lists the files, the sdist and its sha256)
MANIFEST = "corpus-manifest.json"
TARGETS = "test/integration/targets/"

# `-i FILE` / `--inventory FILE` / `--inventory=FILE` in a shell script or a task's command
_DASH_I = re.compile(r"""(?:^|\s)(?:-i|--inventory)(?:\s+|=)(["']?)(\{\{\s*role_path\s*\}\}/[^\s"']+|[^\s"';|&)]+)\1""")
_ROLE_PATH = re.compile(r"^\{\{\s*role_path\s*\}\}/")


def candidates(files: dict[str, bytes]) -> set[str]:
    """Every file (path under targets/) a user could hand us as an inventory: named ``inventory*``/``hosts*``,
    or passed to ``-i`` by a target's shell scripts or (``{{ role_path }}/...``) by its tasks."""
    found = {p for p in files if posixpath.basename(p).startswith(("inventory", "hosts"))}
    for path, data in files.items():
        target = path.split("/", 1)[0]
        in_tasks = path.startswith(f"{target}/tasks/") and path.endswith((".yml", ".yaml"))
        if not (path.endswith(".sh") or in_tasks):
            continue
        for m in _DASH_I.finditer(data.decode("utf-8", "replace")):
            arg = m.group(2)
            if in_tasks:
                if not _ROLE_PATH.match(arg):
                    continue
                bases = [target]
                arg = _ROLE_PATH.sub("", arg)
            else:  # a runme.sh runs in its target's folder; a helper script may be elsewhere in it
                bases = [target, posixpath.dirname(path)]
            for base in bases:
                p = posixpath.normpath(posixpath.join(base, arg))
                if p in files:
                    found.add(p)
    return found


def why_not(path: str, data: bytes, executable: bool) -> str | None:
    """Why a candidate is not a static INI/YAML inventory file (None: it is one, keep it)."""
    text = data.decode("utf-8", "replace")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if executable or text.startswith("#!"):
        return "inventory script (executable)"
    if path.endswith(".py"):
        return "Python source (a plugin's code)"
    if path.endswith(".json"):
        return "JSON"
    if path.endswith(".toml"):
        return "TOML"
    if text.startswith("$ANSIBLE_VAULT"):
        return "vault-encrypted"
    if re.match(r"^plugin\s*:", first):
        return "inventory plugin configuration (plugin:)"
    return None


def select(members: dict[str, tarfile.TarInfo], files: dict[str, bytes]) -> tuple[dict[str, str | None], set[str]]:
    """(candidate -> why not kept or None, the files to extract: kept inventories and their group_vars/host_vars)."""
    verdict = {p: why_not(p, files[p], bool(members[p].mode & 0o111)) for p in sorted(candidates(files))}
    keep = {p for p, why in verdict.items() if why is None}
    beside = {posixpath.join(posixpath.dirname(p), d) + "/" for p in keep for d in ("group_vars", "host_vars")}
    extra = {f for f in files if any(f.startswith(b) for b in beside)}
    return verdict, keep | extra


def read_targets(sdist: Path) -> tuple[dict[str, tarfile.TarInfo], dict[str, bytes]]:
    members: dict[str, tarfile.TarInfo] = {}
    files: dict[str, bytes] = {}
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            top, _, rest = m.name.partition("/")
            if not m.isfile() or not rest.startswith(TARGETS):
                continue
            rel = rest[len(TARGETS):]
            members[rel] = m
            files[rel] = tar.extractfile(m).read()
    return members, files


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           "--dest", str(into), f"ansible-core=={VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sdists = sorted(into.glob(f"ansible_core-{VERSION}.tar.gz")) + sorted(into.glob(f"ansible-core-{VERSION}.tar.gz"))
    if proc.returncode != 0 or not sdists:
        sys.exit(f"ansible_corpus: could not download the ansible-core {VERSION} sdist from PyPI "
                 f"({' '.join(cmd[2:])} exited {proc.returncode}): {proc.stderr.strip()[-500:]}")
    got = sha256(sdists[0])
    if got != SHA256:
        sys.exit(f"ansible_corpus: {sdists[0].name} has sha256 {got}, expected {SHA256}: refusing to use it")
    return sdists[0]


def fetch(dest: Path = CACHE, sdist: Path | None = None) -> Path:
    if (dest / MANIFEST).is_file():
        return dest
    with tempfile.TemporaryDirectory(prefix="ansible-corpus-") as tmp:
        if sdist is None:
            sdist = download(Path(tmp))
        elif sha256(sdist) != SHA256:
            sys.exit(f"ansible_corpus: {sdist} is not the pinned ansible-core {VERSION} sdist (sha256 {SHA256})")
        members, files = read_targets(sdist)
        verdict, extract = select(members, files)
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        work.chmod(0o755)  # mkdtemp makes it 0700; the folder is plain test data
        try:
            for rel in sorted(extract):
                out = work / rel
                if not out.resolve().is_relative_to(work.resolve()):  # no path may leave the folder
                    sys.exit(f"ansible_corpus: refusing {rel!r}: it points outside the corpus folder")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(files[rel])
            manifest = {"sdist": sdist.name, "sha256": SHA256, "version": VERSION,
                        "inventories": sorted(p for p, why in verdict.items() if why is None),
                        "not_kept": {p: why for p, why in verdict.items() if why is not None},
                        "files": sorted(extract)}
            (work / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
            if dest.exists():  # an incomplete earlier attempt
                shutil.rmtree(dest)
            os.replace(work, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print each candidate and why it is kept or not")
    ap.add_argument("--sdist", type=Path, help="use this already downloaded sdist (its sha256 is checked)")
    args = ap.parse_args()
    dest = fetch(sdist=args.sdist)
    manifest = json.loads((dest / MANIFEST).read_text())
    if args.list:
        for p in manifest["inventories"]:
            print(f"kept      {p}")
        for p, why in manifest["not_kept"].items():
            print(f"not kept  {p}: {why}")
    n_kept = len(manifest["inventories"])
    print(f"ansible_corpus: {n_kept} of {n_kept + len(manifest['not_kept'])} candidate inventories of "
          f"ansible-core {VERSION} in {dest}")


if __name__ == "__main__":
    main()
