"""dmsbuild's Ansible import against `ansible-inventory --list` itself, over tests/fixtures/ansible_corpus.

The corpus: inventories written after Ansible's documentation, and (``integration/``) every static
inventory of Ansible's own integration tests that a user could hand us (``integration/README.md``
says how they were chosen; ``integration/expected.json`` is the expected outcome of each, the table
in docs/fleet.md). Those inventories are Ansible's files, never committed here: scripts/setup.sh runs
scripts/ansible_corpus.py, which extracts them from the pinned ansible-core sdist on PyPI into
``.venv/share/dmsbuild/ansible-corpus/<version>/``; without that folder their tests fail, saying so. For every inventory both read, the same hosts, the same groups (children
followed) and the same effective address, port and user (``ansible_ssh_*`` over ``ansible_*``, as
the ssh connection plugin takes them); a host dmsbuild cannot deploy to as written (e.g.
``ansible_connection=local``) is a problem of that host, never a reason to refuse the file. An
inventory Ansible refuses, dmsbuild refuses too. Needs ansible-core (a dev dependency); skipped
where ``ansible-inventory`` is not installed.
"""
from __future__ import annotations

import importlib.util
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
_spec = importlib.util.spec_from_file_location("ansible_corpus", CORPUS.parents[2] / "scripts" / "ansible_corpus.py")
ansible_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ansible_corpus)
#: Ansible's integration-test inventories, paths relative to ``test/integration/targets/`` (git-ignored, see above)
INTEGRATION = ansible_corpus.CACHE
EXPECTED = json.loads((CORPUS / "integration" / "expected.json").read_text())
#: the hand-written corpus (committed) and, as ``integration/NAME``, every integration inventory expected.json names
FILES = sorted([str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
                if p.is_file() and p.suffix not in (".md", ".json") and "integration" not in p.relative_to(CORPUS).parts
                and not {"group_vars", "host_vars"} & set(p.relative_to(CORPUS).parts)]
               + [f"integration/{n}" for n in EXPECTED])


def corpus_file(name: str) -> Path:
    """The file of a corpus name; an integration inventory missing from the cache fails the test, saying what to run."""
    if not name.startswith("integration/"):
        return CORPUS / name
    if not (INTEGRATION / ansible_corpus.MANIFEST).is_file():
        pytest.fail(f"Ansible's integration inventories are not in {INTEGRATION}: run scripts/setup.sh "
                    f"(it runs scripts/ansible_corpus.py, which fetches ansible-core {ansible_corpus.VERSION}'s sdist "
                    "from PyPI)", pytrace=False)
    return INTEGRATION / name.removeprefix("integration/")
#: hosts Ansible lists that dmsbuild keeps as problems (deployed to only after a fix): file -> reason in the error
PROBLEMS_BY_DESIGN = {"connection_local.ini": "ansible_connection=local"}
#: where `ansible-inventory -i FILE` is not what a user handing us FILE means
NOT_COMPARABLE = {"integration/path_with_comma_in_inventory/this,path,has,commas/hosts":
                  "ansible-inventory splits an -i argument at its commas"}
#: ``ansible_connection`` values that reach a host over SSH (Ansible's ssh and paramiko connection plugins)
SSH = (None, "ssh", "paramiko", "smart", "paramiko_ssh")
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
    _CONNECTIONS[str(path)] = {h: hostvars.get(h, {}).get("ansible_connection") for h in hosts}
    return view


_CONNECTIONS: dict[str, dict[str, str | None]] = {}


COMPARED = [n for n in FILES if n not in NOT_COMPARABLE]


@pytest.mark.skipif(not os.access(ANSIBLE_INVENTORY, os.X_OK), reason="ansible-core is not installed (pip install ansible-core)")
@pytest.mark.parametrize("name", COMPARED)
def test_same_boards_as_ansible_inventory(name: str) -> None:
    path = corpus_file(name)
    theirs = ansible_view(path)
    if theirs is None:
        with pytest.raises(UserError):
            load_ansible_inventory(path)
        return
    inv = load_ansible_inventory(path)
    ours = {b.name: (b.groups, b.host, b.port, b.user) for b in inv.boards.values()}
    assert set(ours) | set(inv.problems) == set(theirs) and not set(ours) & set(inv.problems)
    assert ours == {h: v for h, v in theirs.items() if h in ours}
    assert {n: p.groups for n, p in inv.problems.items()} == {h: theirs[h][0] for h in inv.problems}
    ssh_hosts = [h for h, c in _CONNECTIONS[str(path)].items() if c in SSH]
    # issue 27's promise: a file with an SSH host is never refused whole, and its SSH hosts are boards
    # (or need only a templated value evaluated) -- a problem host is one Ansible would not reach over SSH
    # (or have a name dmsbuild does not take: board names are ASCII letters, digits, '._-': they name files)
    for h in ssh_hosts:
        assert h in ours or inv.problems[h].templated or "is not allowed" in str(inv.problems[h].error), \
            (h, str(inv.problems[h].error))
    if name in PROBLEMS_BY_DESIGN:
        assert inv.problems and all(PROBLEMS_BY_DESIGN[name] in str(p.error) for p in inv.problems.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_integration_inventories_have_the_expected_outcome(name: str) -> None:
    """What a user handing us each of Ansible's own test inventories gets (docs/fleet.md's table): boards, or hosts
    left out unless fixed (with why), or a refusal where Ansible refuses the file too. No Ansible needed."""
    want = EXPECTED[name]
    path = corpus_file(f"integration/{name}")
    if want.get("dmsbuild") == "refuses":
        with pytest.raises(UserError):
            load_ansible_inventory(path)
        return
    inv = load_ansible_inventory(path)
    assert len(inv.boards) == want["boards"]
    assert _reasons(inv) == want["problem_hosts"]


def _reasons(inv) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in inv.problems.values():
        text = str(p.error)
        if p.templated:
            key = "templated " + next(iter(p.templated))
        elif "has ansible_connection=local;" in text:
            key = "ansible_connection=local"
        elif "has ansible_connection=" in text:
            key = "another ansible_connection"
        elif "host name " in text and "is not allowed" in text:
            key = "host name not allowed"
        else:
            key = "other"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def test_the_outcome_table_in_the_docs_is_the_expected_one() -> None:
    """docs/fleet.md lists every integration inventory with the outcome the test above holds."""
    doc = (Path(__file__).parent.parent / "docs" / "fleet.md").read_text()
    for name, want in EXPECTED.items():
        row = next((ln for ln in doc.splitlines() if ln.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/fleet.md has no row for {name}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        if want.get("dmsbuild") == "refuses":
            assert cells[2] == "refused (Ansible too)", row
        else:
            assert cells[2] == str(want["boards"]), row
            assert cells[3] == (", ".join(f"{n} x {k}" for k, n in want["problem_hosts"].items()) or "-"), row


def test_no_inventory_with_an_ssh_host_is_refused_whole() -> None:
    """Issue 27's done-when, read off the expected outcomes: every refused file is one Ansible refuses too."""
    refused = {n for n, w in EXPECTED.items() if w.get("dmsbuild") == "refuses"}
    assert all(EXPECTED[n]["ansible"] == "refuses" for n in refused)
    assert len(EXPECTED) - len(refused) >= 60


#: the through-ansible-inventory comparison runs on the hand-written corpus (each file costs one more Ansible start)
HANDWRITTEN = [n for n in FILES if not n.startswith("integration/")]


@pytest.mark.skipif(not os.access(ANSIBLE_INVENTORY, os.X_OK), reason="ansible-core is not installed (pip install ansible-core)")
@pytest.mark.parametrize("name", HANDWRITTEN)
def test_reading_through_ansible_inventory_gives_the_same_boards(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DMSBUILD_ANSIBLE_INVENTORY: Ansible reads the file, dmsbuild applies the same checks to its answer."""
    path = corpus_file(name)
    def view() -> tuple[dict, dict] | None:
        try:
            inv = load_ansible_inventory(path)
        except UserError:
            return None
        return ({b.name: (b.groups, b.host, b.port, b.user) for b in inv.boards.values()},
                {n: p.groups for n, p in inv.problems.items()})

    builtin = view()
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", ANSIBLE_INVENTORY)
    if builtin is None:
        with pytest.raises(UserError):
            load_ansible_inventory(path)
        return
    assert view() == builtin


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
    assert {"withvars/hosts", "priority.ini", "ssh_spelling.ini", "undefined_child.ini", "numeric_names.yml"} <= set(FILES)
    corpus_file("integration/")  # fails, saying what to run, when the cache is missing
    manifest = json.loads((INTEGRATION / ansible_corpus.MANIFEST).read_text())
    # the sdist's inventories chosen by integration/README.md's rule are exactly those expected.json holds
    assert (manifest["version"], manifest["sha256"]) == (ansible_corpus.VERSION, ansible_corpus.SHA256)
    assert sorted(EXPECTED) == manifest["inventories"]
    assert all((INTEGRATION / f).is_file() for f in manifest["files"])
    assert len(EXPECTED) == 67


def test_ansible_yaml_tags_are_read_as_ansible_reads_them(tmp_path: Path) -> None:
    """``!unsafe`` and ``!vault`` (ansible-inventory/with_untrusted.yml, files/valid_sample.yml of 2.19.15) do not
    make the file unreadable: an unsafe ``{{`` is literal text, a vault value is read by Ansible only (as a template)."""
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n"
                   "    pi-1: {ansible_host: !unsafe 10.0.0.1, ansible_user: pi}\n"
                   "    pi-4: {ansible_user: !unsafe '{{ lit }}'}\n"
                   "    pi-2:\n      ansible_host: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        3332\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "pi-1.yml").write_text("secret: !vault-encrypted |\n  $ANSIBLE_VAULT;1.1;AES256\n  3332\n")
    got = load_ansible_inventory(inv)
    assert (got.boards["pi-1"].host, got.boards["pi-1"].user) == ("10.0.0.1", "pi")
    # never templated: Ansible would use '{{ lit }}' itself as the user name, which is not one
    assert not got.problems["pi-4"].templated and "expected a user name" in str(got.problems["pi-4"].error)
    assert got.problems["pi-2"].templated and "ansible_host" in got.problems["pi-2"].templated
    assert "ANSIBLE_VAULT" not in str(got.problems["pi-2"].error)
    inv.write_text("all:\n  hosts:\n    pi-3: {ansible_host: !vault [1]}\n")
    with pytest.raises(UserError, match="!vault' tag requires a string"):
        load_ansible_inventory(inv)
