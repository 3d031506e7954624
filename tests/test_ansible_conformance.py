"""dmsbuild's Ansible import against `ansible-inventory --list` itself, over tests/fixtures/ansible_corpus.

For every inventory both read, the same hosts, the same groups (children followed) and the same
effective address, port and user (``ansible_ssh_*`` over ``ansible_*``, as the ssh connection
plugin takes them). An inventory Ansible refuses, dmsbuild refuses too. Needs ansible-core
(a dev dependency); skipped where ``ansible-inventory`` is not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dmsbuild.ship.ansible import load_ansible_inventory
from dmsbuild.errors import UserError

CORPUS = Path(__file__).parent / "fixtures" / "ansible_corpus"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md" and "_vars" not in str(p.relative_to(CORPUS)))
#: accepted by Ansible, refused by dmsbuild on purpose (docs/ssh.md says why)
REFUSED_BY_DESIGN = {"connection_local.ini": "ansible_connection=local"}
ANSIBLE_INVENTORY = shutil.which("ansible-inventory") or str(Path(sys.executable).parent / "ansible-inventory")


def ansible_view(path: Path) -> dict | None:
    """Ansible's answer: host -> (groups, address, port, user), or None when Ansible refuses the file."""
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([ANSIBLE_INVENTORY, "-i", str(path), "--list"], capture_output=True, text=True, env=env,
                          cwd=path.parent, timeout=120)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def members(group: str) -> set[str]:
        g = data.get(group, {})
        out = set(g.get("hosts", []))
        for child in g.get("children", []):
            out |= members(child)
        return out

    groups = [g for g in data if g not in ("_meta", "all", "ungrouped")]
    hosts = members("all")
    view = {}
    for h in hosts:
        v = hostvars.get(h, {})
        port = v.get("ansible_ssh_port", v.get("ansible_port"))
        view[h] = (tuple(sorted(g for g in groups if h in members(g))),
                   v.get("ansible_ssh_host", v.get("ansible_host", h)),
                   None if port is None else int(port),
                   v.get("ansible_ssh_user", v.get("ansible_user")))
    return view


@pytest.mark.skipif(not os.access(ANSIBLE_INVENTORY, os.X_OK), reason="ansible-core is not installed (pip install ansible-core)")
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_same_boards_as_ansible_inventory(path: Path) -> None:
    theirs = ansible_view(path)
    name = str(path.relative_to(CORPUS))
    if theirs is None or name in REFUSED_BY_DESIGN:
        with pytest.raises(UserError, match=REFUSED_BY_DESIGN.get(name)):
            load_ansible_inventory(path)
        return
    ours = {b.name: (b.groups, b.host, b.port, b.user) for b in load_ansible_inventory(path).boards.values()}
    assert ours == theirs


@pytest.mark.skipif(not os.access(ANSIBLE_INVENTORY, os.X_OK), reason="ansible-core is not installed (pip install ansible-core)")
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_reading_through_ansible_inventory_gives_the_same_boards(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DMSBUILD_ANSIBLE_INVENTORY: Ansible reads the file, dmsbuild applies the same checks to its answer."""
    name = str(path.relative_to(CORPUS))
    try:
        builtin = {b.name: (b.groups, b.host, b.port, b.user) for b in load_ansible_inventory(path).boards.values()}
    except UserError:
        builtin = None
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", ANSIBLE_INVENTORY)
    if builtin is None:
        with pytest.raises(UserError, match=REFUSED_BY_DESIGN.get(name)):
            load_ansible_inventory(path)
        return
    via = {b.name: (b.groups, b.host, b.port, b.user) for b in load_ansible_inventory(path).boards.values()}
    assert via == builtin


@pytest.mark.skipif(not os.access(ANSIBLE_INVENTORY, os.X_OK), reason="ansible-core is not installed (pip install ansible-core)")
def test_a_dynamic_inventory_script_needs_and_uses_ansible_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "lab.py"
    script.write_text("#!/usr/bin/env python3\nimport json, sys\n"
                      "print(json.dumps({'rpi5': {'hosts': ['pi-1'], 'vars': {'ansible_user': 'pi'}},"
                      " '_meta': {'hostvars': {'pi-1': {'ansible_host': '10.1.1.1'}}}}))\n")
    script.chmod(0o755)
    with pytest.raises(UserError, match="dynamic inventory .*only ansible-inventory can read it"):
        load_ansible_inventory(script)
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", ANSIBLE_INVENTORY)
    b = load_ansible_inventory(script).boards["pi-1"]
    assert (b.groups, b.host, b.port, b.user) == (("rpi5",), "10.1.1.1", None, "pi")


def test_the_corpus_exercises_what_it_claims() -> None:
    names = {str(p.relative_to(CORPUS)) for p in FILES}
    assert {"withvars/hosts", "priority.ini", "ssh_spelling.ini", "undefined_child.ini", "numeric_names.yml"} <= names
