"""Inventory loading: validation at load, includes, which file is read."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.config import load_target
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import inventory_path, load_inventory

GOOD = '[[boards]]\nname = "rpi5-01"\ngroups = ["rpi5"]\nhost = "10.0.0.5"\n'
ORIN = '[[boards]]\nname = "orin-01"\ngroups = ["orin"]\nhost = "10.0.0.6"\n'


def _load(tmp_path: Path, text: str):
    p = tmp_path / "inv.toml"
    p.write_text(text)
    return load_inventory(p, tmp_path)


@pytest.mark.parametrize("field,value,expect", [
    ("name", "rpi5;reboot", "board name"),
    ("name", "a..b", "'..'"),
    ("name", "../etc", "board name"),
    ("host", "h$(reboot)", "field 'host'"),
    ("host", "a b", "field 'host'"),
    ("user", "root;id", "field 'user'"),
    ("root", "/opt/../etc", "without '..'"),
    ("root", "/opt/dms b", "paths may hold"),
    ("root", "/opt/$HOME", "paths may hold"),
    ("root", "relative/root", "absolute path"),
    ("known_hosts", "../../known_hosts", "without '..'"),
    ("identity_file", "~/.ssh/id;rm", "paths may hold"),
    ("python", "python3 -c evil", "paths may hold"),
    ("proxy_jump", "gw;reboot", "proxy_jump"),
    ("host_key", "ssh-ed25519 AAAA$(x)", "host_key"),
])
def test_bad_names_and_paths_refused_when_selected_warned_otherwise(tmp_path, field, value, expect):
    """Checked at load; a bad board stops only a deploy that selects it (its file and line first), and is one
    warning line for a deploy of another target, whose boards deploy."""
    text = ORIN + f'[[boards]]\nname = "b1"\ngroups = ["rpi5"]\n'.replace('name = "b1"', f'name = "{value}"' if field == "name" else 'name = "b1"')
    if field != "name":
        text += f'{field} = "{value}"\n'
    inv = _load(tmp_path, text)
    with pytest.raises(UserError) as exc:
        inv.choose("rpi5")
    first = str(exc.value).splitlines()[0]
    assert first.startswith(f"{tmp_path / 'inv.toml'}:5: ") and expect in first
    assert "is in group(s) rpi5 of" in exc.value.hint
    boards, lines = inv.choose("orin")
    assert [b.name for b in boards] == ["orin-01"]
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'inv.toml'}:5: ") and expect in lines[0]
    assert "is not in this deploy: skipped" in lines[0]


def test_unknown_field_and_duplicate_board(tmp_path):
    with pytest.raises(UserError, match="unknown field 'boards\\[0\\].password'"):
        _load(tmp_path, GOOD + 'password = "hunter2"\n').choose("rpi5")
    with pytest.raises(UserError, match="listed twice"):
        _load(tmp_path, GOOD + GOOD)


@pytest.mark.parametrize("field, value", [("source", '"elsewhere.toml"'), ("transport", '"local"'), ("prior_attempts", "3")])
def test_the_boards_internal_fields_cannot_be_set_by_an_inventory(tmp_path, field, value):
    """Where a board was defined, how it is reached (``local`` is only the embedded default target's) and the
    attempts already made are dmsbuild's to set: unknown fields to an inventory, and not offered in the message."""
    with pytest.raises(UserError) as exc:
        _load(tmp_path, GOOD + f"{field} = {value}\n").choose("rpi5")
    first = str(exc.value).splitlines()[0]
    assert f"unknown field 'boards[0].{field}'" in first, first
    allowed = first.split("allowed here: ", 1)[1].split(", ")
    assert "host" in allowed and not {"source", "transport", "prior_attempts"} & set(allowed), allowed


def test_defaults_include_and_root_template(tmp_path):
    (tmp_path / "gen.toml").write_text('[defaults]\ngroups = ["orin"]\nport = 2222\n\n[[boards]]\nname = "emu-01"\nroot = "/srv/emu-01/{target}"\n')
    inv = _load(tmp_path, 'include = ["gen.toml"]\n' + GOOD)
    assert sorted(inv.boards) == ["emu-01", "rpi5-01"]
    emu = inv.boards["emu-01"]
    assert emu.port == 2222 and emu.groups == ["orin"] and not emu.trust_on_first_use
    prof = load_target(Path(__file__).resolve().parent.parent, "orin")
    assert emu.deploy_root(prof) == "/srv/emu-01/orin"
    assert inv.boards["rpi5-01"].deploy_root(prof) == prof.deploy.root
    assert [b.name for b in inv.select("orin")] == ["emu-01"]
    with pytest.raises(UserError, match="not in group 'orin'"):
        inv.select("orin", ["rpi5-01"])


@pytest.mark.parametrize("order", ["broken-first", "good-first"])
def test_a_board_broken_in_one_include_and_fine_in_another_is_defined_twice(tmp_path, order):
    """A board whose entry is refused (a bad field: kept as a problem until a deploy selects it) still owns its
    name: the same name in another included file is an error naming both files, whichever comes first."""
    (tmp_path / "a.toml").write_text(GOOD.replace('"10.0.0.5"', '"h$(reboot)"'))
    (tmp_path / "b.toml").write_text(GOOD)
    incs = '["a.toml", "b.toml"]' if order == "broken-first" else '["b.toml", "a.toml"]'
    with pytest.raises(UserError) as exc:
        _load(tmp_path, f"include = {incs}\n")
    msg = str(exc.value).splitlines()[0]
    assert msg.startswith(f"{tmp_path / 'inv.toml'}: board 'rpi5-01' is defined "), msg
    assert str(tmp_path / "a.toml") in msg and (order == "good-first" or str(tmp_path / "b.toml") in msg), msg


def test_a_deploy_of_a_group_without_boards_is_one_line_naming_the_inventory(tmp_path):
    """Not an empty rollout that "succeeds" on no board: the inventory has no board of that group."""
    inv = _load(tmp_path, GOOD + ORIN)
    with pytest.raises(UserError) as exc:
        inv.choose("jetson")
    assert str(exc.value).splitlines()[0] == f"{tmp_path / 'inv.toml'}: no board is in group 'jetson'"
    assert [b.name for b in inv.choose("orin")[0]] == ["orin-01"]


def test_an_inventory_path_the_system_cannot_open_is_one_line_with_its_reason(tmp_path):
    path = tmp_path / ("x" * 300 + ".toml")  # longer than a file name may be (NAME_MAX 255)
    with pytest.raises(UserError) as exc:
        load_inventory(path, tmp_path)
    assert str(exc.value).splitlines()[0] == f"{path}: cannot open the inventory: File name too long"


def test_missing_include_says_how_to_create_it(tmp_path):
    with pytest.raises(UserError) as exc:
        _load(tmp_path, 'include = ["artifacts/boards/inventory.toml"]\n')
    assert "inventory file not found" in str(exc.value) and "dmsbuild.boards up" in str(exc.value)


def test_inventory_path_precedence(tmp_path, monkeypatch):
    prof = load_target(Path(__file__).resolve().parent.parent, "rpi5")
    assert inventory_path(tmp_path, prof) == tmp_path / "targets" / "inventory.toml"
    monkeypatch.setenv("DMSBUILD_INVENTORY", "/etc/dms/boards.toml")
    assert inventory_path(tmp_path, prof) == Path("/etc/dms/boards.toml")
    assert inventory_path(tmp_path, prof, "lab.toml") == tmp_path / "lab.toml"


# ---------------------------------------------------------------------------------------------------------
# Ansible inventories as boards
# ---------------------------------------------------------------------------------------------------------
ANSIBLE_INI = """\
[rpi5]
rpi5-[01:03] ansible_user=pi
rpi5-lab ansible_host=10.0.1.10 ansible_port=2200 dmsbuild_root=/srv/dms/{target} ansible_python_interpreter=/usr/bin/python3.11

[rpi5:vars]
ansible_ssh_private_key_file=keys/rpi5_ed25519
ansible_ssh_pass=secret
"""


def test_ansible_ini_inventory_loads_as_boards(tmp_path):
    p = tmp_path / "hosts.ini"
    p.write_text(ANSIBLE_INI)
    inv = load_inventory(p, tmp_path)
    assert list(inv.boards) == ["rpi5-01", "rpi5-02", "rpi5-03", "rpi5-lab"]
    b = inv.boards["rpi5-02"]
    assert (b.groups, b.host, b.port, b.user, b.python, b.root) == (["rpi5"], "rpi5-02", None, "pi", "python3", None)
    assert b.identity_file == str(tmp_path / "keys" / "rpi5_ed25519")
    assert b.known_hosts is None and b.trust_on_first_use is False  # strict: ~/.ssh/config, then ~/.ssh/known_hosts
    lab = inv.boards["rpi5-lab"]
    assert (lab.host, lab.port, lab.user, lab.python, lab.root) == ("10.0.1.10", 2200, None, "/usr/bin/python3.11",
                                                                    "/srv/dms/{target}")
    assert "secret" not in repr(inv.boards)
    assert [x.name for x in inv.select("rpi5")] == list(inv.boards)


def test_a_toml_inventory_including_an_ansible_one_lends_it_its_defaults(tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "hosts.yml").write_text(
        "all:\n  children:\n    orin:\n      hosts:\n        orin-a: {ansible_host: 10.0.2.1, ansible_python_interpreter: auto_silent}\n"
        "        orin-b: {ansible_host: 10.0.2.2, dmsbuild_root: /data/dms}\n")
    toml = tmp_path / "inv.toml"
    toml.write_text('include = ["lab/hosts.yml"]\n\n[defaults]\nknown_hosts = "lab/known_hosts"\nroot = "/opt/x"\n'
                    'connect_retries = 1\n\n' + GOOD)
    inv = load_inventory(toml, tmp_path)
    assert sorted(inv.boards) == ["orin-a", "orin-b", "rpi5-01"]
    a, b = inv.boards["orin-a"], inv.boards["orin-b"]
    assert a.known_hosts == b.known_hosts == str(tmp_path / "lab" / "known_hosts")
    assert (a.python, a.root, a.connect_retries) == ("python3", "/opt/x", 1)  # auto_silent: the default python
    assert b.root == "/data/dms"  # the Ansible variable wins over the including file's default
    assert a.groups == ["orin"]


def test_ansible_board_fields_are_validated_like_toml_ones(tmp_path):
    p = tmp_path / "hosts.ini"
    p.write_text("[rpi5]\nrpi5-01 dmsbuild_root=relative/root\n")
    with pytest.raises(UserError, match=r"hosts.ini: board 'rpi5-01': field 'root' is 'relative/root'; expected an absolute"):
        load_inventory(p, tmp_path).choose("rpi5")
    p.write_text("[rpi5]\nrpi5-01 ansible_python_interpreter='python3 -c evil'\n")
    with pytest.raises(UserError, match="paths may hold"):
        load_inventory(p, tmp_path).choose("rpi5")
    toml = tmp_path / "inv.toml"
    toml.write_text('include = ["missing.ini"]\n')
    with pytest.raises(UserError, match="included Ansible inventory .*missing.ini not found"):
        load_inventory(toml, tmp_path)


MIXED = """[rpi5]
rpi5-01 ansible_host=10.0.0.1
rpi5-02 ansible_host="{{ lab_net }}.2" ansible_python_interpreter="{{ ansible_playbook_python }}"

[tools]
localhost ansible_connection=local
gw ansible_user="{{ nobody_defined_this }}"

[all:vars]
lab_net=10.9.9
"""


def _ansible_available() -> bool:
    from dmsbuild.ship.ansible import ansible_program

    return ansible_program() is not None


def test_problems_outside_the_deploy_are_one_warning_each_with_file_and_line(tmp_path):
    p = tmp_path / "hosts.ini"
    p.write_text(MIXED)
    inv = load_inventory(p, tmp_path)
    boards, lines = inv.choose("rpi5", hosts="rpi5-01")
    assert [b.name for b in boards] == ["rpi5-01"]
    assert sorted(lines) == sorted([
        f"{p}:3: 'ansible_host' of host 'rpi5-02' is templated ('{{{{ lab_net }}}}.2'); Ansible evaluates it when a "
        "deploy selects this host (board 'rpi5-02' is not in this deploy: skipped)",
        f"{p}:6: host 'localhost' has ansible_connection=local; dmsbuild reaches boards over SSH only "
        "(board 'localhost' is not in this deploy: skipped)",
        f"{p}:7: 'ansible_user' of host 'gw' is templated ('{{{{ nobody_defined_this }}}}'); Ansible evaluates it when a "
        "deploy selects this host (board 'gw' is not in this deploy: skipped)"])


def test_a_selected_problem_stops_the_deploy_naming_file_line_and_groups(tmp_path):
    p = tmp_path / "hosts.ini"
    p.write_text(MIXED)
    inv = load_inventory(p, tmp_path)
    with pytest.raises(UserError) as exc:
        inv.choose("tools")
    assert str(exc.value).splitlines()[0].startswith(f"{p}:6: host 'localhost' has ansible_connection=local")
    assert f"board 'localhost' is in group(s) tools of {p}" in exc.value.hint
    with pytest.raises(UserError, match="not in group 'rpi5'"):
        inv.choose("rpi5", hosts="rpi5-01,localhost")


@pytest.mark.skipif(not _ansible_available(), reason="ansible-core is not installed (pip install ansible-core)")
def test_templated_values_of_selected_hosts_are_evaluated_by_ansible(tmp_path):
    import sys

    p = tmp_path / "hosts.ini"
    p.write_text(MIXED)
    boards, lines = load_inventory(p, tmp_path).choose("rpi5")
    by = {b.name: b for b in boards}
    assert list(by) == ["rpi5-01", "rpi5-02"]
    assert by["rpi5-02"].host == "10.9.9.2"
    assert by["rpi5-02"].python == sys.executable or Path(by["rpi5-02"].python).name.startswith("python")
    assert any("templated values of rpi5-02 evaluated by Ansible" in ln for ln in lines)
    # a template Ansible cannot evaluate is that host's error, named by Ansible
    with pytest.raises(UserError, match=r"hosts.ini:7: Ansible could not evaluate 'ansible_user' of host 'gw': .*nobody_defined_this"):
        load_inventory(p, tmp_path).choose("tools", hosts="gw")


def test_without_ansible_a_needed_template_refuses_that_host_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", "no")
    p = tmp_path / "hosts.ini"
    p.write_text(MIXED)
    inv = load_inventory(p, tmp_path)
    with pytest.raises(UserError) as exc:
        inv.choose("rpi5")
    first = str(exc.value).splitlines()[0]
    assert first.startswith(f"{p}:3: 'ansible_host' of host 'rpi5-02' is templated") and "ansible-core is not installed" in first
    assert [b.name for b in inv.choose("rpi5", hosts="rpi5-01")[0]] == ["rpi5-01"]


def test_a_templated_python_is_not_needed_when_defaults_give_the_boards_python(tmp_path, monkeypatch):
    """ansible_python_interpreter: "{{ ansible_playbook_python }}" (26 of Ansible's own test inventories) never
    blocks where the including TOML file's [defaults] python says what the board runs; no Ansible is asked."""
    monkeypatch.setenv("DMSBUILD_ANSIBLE_INVENTORY", "no")
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    pi-1:\n      ansible_host: 10.0.0.7\n"
                                        "  vars:\n    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n")
    toml = tmp_path / "inv.toml"
    toml.write_text('include = ["hosts.yml"]\n[defaults]\ngroups = ["rpi5"]\npython = "/usr/bin/python3"\n')
    inv = load_inventory(toml, tmp_path)
    assert inv.boards["pi-1"].python == "/usr/bin/python3" and not inv.problems
    assert any("templated ansible_python_interpreter of pi-1 not used" in n for n in inv.notes)
    toml.write_text('include = ["hosts.yml"]\n[defaults]\ngroups = ["rpi5"]\n')
    with pytest.raises(UserError, match="'ansible_python_interpreter' of host 'pi-1' is templated"):
        load_inventory(toml, tmp_path).choose("rpi5")


@pytest.mark.parametrize("option", ["LocalCommand=touch /tmp/x", "KnownHostsCommand=/bin/cat %H", "PermitLocalCommand=yes"])
def test_inventory_ssh_options_that_run_other_local_commands_are_refused(tmp_path, option):
    inv = _load(tmp_path, GOOD + f'ssh_args = ["-o", "{option}"]\n' + ORIN)
    with pytest.raises(UserError, match=r"inv.toml:1: board 'rpi5-01': field 'ssh_args': ssh option -o .* runs a command on this machine"):
        inv.choose("rpi5")
    assert [b.name for b in inv.choose("orin")[0]] == ["orin-01"]


def test_inventory_proxycommand_is_one_line_per_board_or_refused(tmp_path):
    inv = _load(tmp_path, GOOD + 'ssh_args = ["-o", "ProxyCommand=ssh -W %h:%p gw"]\n' + ORIN)
    boards, lines = inv.choose("rpi5")
    assert lines == [f"inventory {tmp_path / 'inv.toml'} runs a local command for board 'rpi5-01': ProxyCommand=ssh -W %h:%p gw"]
    with pytest.raises(UserError) as exc:
        inv.choose("rpi5", commands="refuse")
    assert str(exc.value).splitlines()[0].startswith(f"inventory {tmp_path / 'inv.toml'} runs a local command for board 'rpi5-01'")
    assert inv.choose("orin", commands="refuse")[1] == []  # a board the deploy does not select is not judged


def test_a_yaml_problem_host_is_named_with_file_and_line(tmp_path):
    p = tmp_path / "hosts.yml"
    p.write_text("all:\n  children:\n    tools:\n      hosts:\n        localhost:\n          ansible_connection: local\n"
                 "    rpi5:\n      hosts:\n        pi-1: {ansible_host: 10.0.0.9}\n")
    boards, lines = load_inventory(p, tmp_path).choose("rpi5")
    assert [b.name for b in boards] == ["pi-1"]
    assert lines == [f"{p}:6: all.children.tools.hosts.localhost.ansible_connection: host 'localhost' has "
                     "ansible_connection=local; dmsbuild reaches boards over SSH only (board 'localhost' is not in this "
                     "deploy: skipped)"]
