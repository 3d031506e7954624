"""Importing Ansible inventories (INI and YAML) into board records."""
from __future__ import annotations

import re

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dmsbuild.ship.ansible import expand_host_pattern, load_ansible_inventory, parse_ini, parse_yaml
from dmsbuild.errors import UserError

INI = """\
# boards of the lab
bastion ansible_host=10.0.0.1

[rpi5]
rpi5-[01:03] ansible_user=pi
rpi5-10:2200 ansible_host=10.0.1.10   # inline comment

[orin]
orin-a ansible_host=10.0.2.1 ansible_port=2222 ansible_ssh_private_key_file=~/.ssh/orin_ed25519

[orin:vars]
ansible_user = nvidia
ansible_port=22

[lab:children]
rpi5
orin

[lab:vars]
ansible_user=lab
ansible_ssh_pass=secret
"""

YAML = """\
all:
  vars:
    ansible_user: root
  hosts:
    bastion:
      ansible_host: 10.0.0.1
  children:
    lab:
      vars:
        ansible_user: lab
      children:
        rpi5:
          hosts:
            rpi5-[01:03]:
              ansible_user: pi
            rpi5-10:
              ansible_host: 10.0.1.10
              ansible_port: 2200
        orin:
          vars:
            ansible_user: nvidia
            ansible_port: 22
          hosts:
            orin-a:
              ansible_host: 10.0.2.1
              ansible_port: "2222"
              ansible_ssh_private_key_file: ~/.ssh/orin_ed25519
"""


def check_lab(inv, bastion_user) -> None:
    assert list(inv.boards) == ["bastion", "rpi5-01", "rpi5-02", "rpi5-03", "rpi5-10", "orin-a"]
    b = inv.boards
    # host var beats group vars; no ansible_port: the port stays unset (TOML defaults, then ~/.ssh/config decide)
    assert (b["rpi5-02"].host, b["rpi5-02"].port, b["rpi5-02"].user) == ("rpi5-02", None, "pi")
    assert (b["rpi5-10"].host, b["rpi5-10"].port, b["rpi5-10"].user) == ("10.0.1.10", 2200, "lab")
    orin = b["orin-a"]
    assert (orin.host, orin.port, orin.user, orin.identity_file) == ("10.0.2.1", 2222, "nvidia", "~/.ssh/orin_ed25519")
    assert orin.groups == ("lab", "orin")
    assert b["bastion"].groups == () and b["bastion"].user == bastion_user
    assert inv.groups["lab"] == ["rpi5-01", "rpi5-02", "rpi5-03", "rpi5-10", "orin-a"]
    assert [x.name for x in inv.group("rpi5")] == ["rpi5-01", "rpi5-02", "rpi5-03", "rpi5-10"]
    assert inv.groups["all"][0] == "bastion"


def test_ini_inventory(tmp_path: Path) -> None:
    p = tmp_path / "hosts.ini"
    p.write_text(INI)
    inv = load_ansible_inventory(p)
    check_lab(inv, bastion_user=None)
    assert inv.groups["ungrouped"] == ["bastion"]
    assert inv.ignored_vars == {"ansible_ssh_pass": 5}  # read, never copied into a record
    assert not any("secret" in repr(x) for x in inv.boards.values())


def test_yaml_inventory(tmp_path: Path) -> None:
    p = tmp_path / "hosts.yml"
    p.write_text(YAML)
    check_lab(load_ansible_inventory(p), bastion_user="root")


def test_format_sniffed_without_extension(tmp_path: Path) -> None:
    (tmp_path / "a").write_text(YAML)
    (tmp_path / "b").write_text(INI)
    assert load_ansible_inventory(tmp_path / "a").boards["orin-a"].port == 2222
    assert load_ansible_inventory(tmp_path / "b").boards["orin-a"].port == 2222


def test_host_ranges() -> None:
    assert expand_host_pattern("rpi5-[01:03]") == ["rpi5-01", "rpi5-02", "rpi5-03"]
    assert expand_host_pattern("n[8:10]") == ["n8", "n9", "n10"]
    assert expand_host_pattern("x[0:6:3]") == ["x0", "x3", "x6"]
    assert expand_host_pattern("db-[a:c]") == ["db-a", "db-b", "db-c"]
    assert expand_host_pattern("r[1:2]-c[a:b]") == ["r1-ca", "r1-cb", "r2-ca", "r2-cb"]
    assert len(expand_host_pattern("rpi5-[001:200]")) == 200
    for bad, msg in [("x[3:1]", "backwards"), ("x[1]", "malformed"), ("x[1:2", "unbalanced"),
                     ("x[a:10]", "malformed"), ("x[1:5:0]", "step"), ("x[0:99999]", "more than")]:
        with pytest.raises(UserError, match=msg):
            expand_host_pattern(bad)


@pytest.mark.parametrize("text, msg", [
    ("[rpi5\nhost1\n", r"hosts:1: malformed section header '\[rpi5'"),
    ("[rpi5]\nhost1 ansible_port=99999\n", r"hosts:2: 'ansible_port' of host 'host1' is 99999; expected a port number"),
    ("[rpi5]\nhost1 ansible_port=ssh\n", r"hosts:2: 'ansible_port' of host 'host1' is 'ssh'"),
    ("[rpi5]\nhost;rm ansible_host=x\n", r"hosts:2: host name 'host;rm' is not allowed"),
    ("[rpi5]\na..b\n", r"hosts:2: host name 'a..b' is not allowed"),
    ("[rpi5]\nh1 ansible_host='x; rm -rf /'\n", r"hosts:2: 'ansible_host' of host 'h1' is 'x; rm -rf /'"),
    ("[rpi5]\nh1 ansible_host=a..b\n", r"hosts:2: 'ansible_host'"),
    ("[rpi5]\nh1 ansible_user='$(id)'\n", r"'ansible_user' of host 'h1'"),
    ("[rpi5]\nh1 ansible_host=\"{{ lookup('env','X') }}\"\n", r"hosts:2: 'ansible_host' of host 'h1' is templated"),
    ("[rpi5]\nh1 oops\n", r"hosts:2: expected 'name=value' after the host name, got 'oops'"),
    ("[rpi5]\nh1 ansible_user='unterminated\n", r"hosts:2: cannot split"),
    ("[rpi5:vars]\njust words\n", r"hosts:2: expected 'name=value' in \[rpi5:vars\]"),
    ("[g:children]\na b\n", r"hosts:2: expected one group name per line"),
    ("[a:children]\nb\n[b:children]\na\n", r"group '.' is its own child"),
    ("[x y]\n", r"malformed section header"),
    ("[rpi5]\nh1:ssh\n", r"the part after ':' must be a port number"),
    ("[rpi5:vars]\nansible_port=0\n[rpi5]\nh1\n", r"hosts:2 \[rpi5:vars\]: 'ansible_port' of host 'h1' is 0"),
])
def test_ini_errors_name_file_and_line(text: str, msg: str) -> None:
    """A malformed file is refused whole; a bad host is that host's problem (judged when a deploy selects it)."""
    assert re.search(msg, _first_error(parse_ini, text, Path("hosts")))


def _first_error(parse, text: str, path: Path) -> str:
    """The file's refusal, or else its first problem host's error (one of the two must exist)."""
    try:
        inv = parse(text, path)
    except UserError as exc:
        return str(exc)
    assert inv.problems, "neither refused nor a problem host"
    assert not set(inv.problems) & set(inv.boards)
    return str(next(iter(inv.problems.values())).error)


@pytest.mark.parametrize("text, msg", [
    ("all:\n  hosts:\n    - a\n", r"hosts.yml: all.hosts is a list; expected a mapping of host names"),
    ("all:\n  hostz: {}\n", r"hosts.yml: all.hostz: unknown key"),
    ("all:\n  children:\n    g:\n      hosts:\n        h1:\n          ansible_port: [22]\n",
     r"hosts.yml:6: all.children.g.hosts.h1.ansible_port: 'ansible_port' of host 'h1' is \[22\]"),
    ("all:\n  hosts:\n    h1:\n      ansible_port: true\n", r"'ansible_port' of host 'h1' is True"),
    ("all:\n  hosts:\n    h1: [1]\n", r"all.hosts.h1 is \[1\]; expected a mapping"),
    ("all:\n  hosts:\n    'a b':\n", r"host name 'a b' is not allowed"),
    ("all:\n  children:\n    'g;x':\n", r"group name 'g;x' is not allowed"),
    ("all:\n  hosts: {h1: {ansible_host: 1}}\n", r"'ansible_host' of host 'h1' is 1; expected a non-empty string"),
    ("all:\n  hosts:\n    h1: {\n", r"hosts.yml:\d+: malformed YAML"),
    ("- a\n- b\n", r"hosts.yml: expected a mapping of group names"),
    ("all:\n  vars: [1]\n", r"all.vars is a list"),
])
def test_yaml_errors_name_file_and_field(text: str, msg: str) -> None:
    assert re.search(msg, _first_error(parse_yaml, text, Path("hosts.yml")))


def test_missing_file_and_unknown_group(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.ini: Ansible inventory not found"):
        load_ansible_inventory(tmp_path / "nope.ini")
    inv = parse_ini(INI, tmp_path / "hosts")
    with pytest.raises(UserError, match="no group 'jetson'; groups: all, lab, orin, rpi5, ungrouped"):
        inv.group("jetson")


def test_empty_inventories() -> None:
    assert parse_ini("", Path("h")).boards == {}
    assert parse_yaml("", Path("h.yml")).boards == {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("[]:=#;'\" \n\tabc01-.{}%$")), max_size=80))
def test_ini_parser_only_raises_user_errors(text: str) -> None:
    try:
        inv = parse_ini(text, Path("fuzz.ini"))
    except UserError as exc:
        assert str(exc).startswith("fuzz.ini")
    else:
        for b in inv.boards.values():
            assert (b.port is None or 1 <= b.port <= 65535) and ".." not in b.name and ";" not in b.host
        for prob in inv.problems.values():
            assert str(prob.error).startswith("fuzz.ini") and prob.name not in inv.boards


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("[]:-{}#'\" \n ab01_,")), max_size=80))
@example("0b_")  # found by this test (2026-12-08): PyYAML resolves it as an int and then raises ValueError
@example("x: 0x_")
def test_yaml_parser_only_raises_user_errors(text: str) -> None:
    try:
        parse_yaml(text, Path("fuzz.yml"))
    except UserError as exc:
        assert str(exc).startswith("fuzz.yml")


def _ansible_inventory() -> str | None:
    import shutil
    import sys

    found = shutil.which("ansible-inventory") or str(Path(sys.executable).parent / "ansible-inventory")
    return found if Path(found).is_file() else None


@pytest.mark.skipif(_ansible_inventory() is None, reason="ansible-core is not installed (pip install ansible-core)")
def test_through_ansible_inventory_a_script_is_read_and_its_failure_named(tmp_path, monkeypatch):
    """DMSBUILD_ANSIBLE_INVENTORY: a dynamic inventory script's hosts come back as boards; a script that fails is
    one line saying why Ansible could not read it (its parse failure, not the first line of stderr: Ansible's
    own Python warnings come first)."""
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", _ansible_inventory())
    good = tmp_path / "lab.py"
    good.write_text("#!/usr/bin/env python3\nimport json\nprint(json.dumps({'rpi5': {'hosts': ['pi-1']},"
                    " '_meta': {'hostvars': {'pi-1': {'ansible_host': '10.1.1.1'}}}}))\n")
    good.chmod(0o755)
    assert load_ansible_inventory(good).boards["pi-1"].host == "10.1.1.1"
    bad = tmp_path / "broken.sh"
    bad.write_text("#!/bin/sh\necho 'cannot reach the CMDB' >&2\nexit 3\n")
    bad.chmod(0o755)
    with pytest.raises(UserError) as exc:
        load_ansible_inventory(bad)
    first = str(exc.value).splitlines()[0]
    assert first.startswith(f"{bad}: ansible-inventory refused it: ") and "Failed to parse inventory" in first, first


def test_an_ansible_inventory_failure_names_its_error_line_not_the_noise_before_it(tmp_path, monkeypatch):
    """Any ``ansible-inventory`` (a stand-in here): the ``[ERROR]`` line is the reason, not a warning printed first."""
    program = tmp_path / "ansible-inventory"
    program.write_text("#!/bin/sh\necho '/usr/lib/python3/x.py:18: SomeDeprecationWarning: old' >&2\n"
                       "echo '[WARNING]: Unable to parse inv.yml as an inventory source' >&2\n"
                       "echo '[ERROR]: No inventory was parsed, please check your configuration and options.' >&2\nexit 1\n")
    program.chmod(0o755)
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", str(program))
    inv = tmp_path / "inv.yml"
    inv.write_text("all: {}\n")
    with pytest.raises(UserError) as exc:
        load_ansible_inventory(inv)
    assert str(exc.value).splitlines()[0] == (f"{inv}: ansible-inventory refused it: [ERROR]: No inventory was parsed, "
                                              "please check your configuration and options.")


def test_ansible_is_taken_from_beside_the_ansible_inventory_dmsbuild_is_told_to_use(tmp_path, monkeypatch):
    """DMSBUILD_ANSIBLE_INVENTORY names one installation (e.g. its own virtual environment): the ``ansible`` that
    evaluates templated values comes from the same bin/ folder, not whatever PATH finds first; ``no``: none."""
    from dmsbuild.ship.ansible import ansible_program

    bindir = tmp_path / "ansible-9" / "bin"
    bindir.mkdir(parents=True)
    for name in ("ansible-inventory", "ansible"):
        (bindir / name).write_text("#!/bin/sh\nexit 0\n")
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", str(bindir / "ansible-inventory"))
    assert ansible_program() == str(bindir / "ansible")
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", "no")
    assert ansible_program() is None
