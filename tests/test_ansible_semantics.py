"""Ansible inventories read as Ansible reads them (issue 15): precedence, undefined groups, names, vars folders."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.ship.ansible import load_ansible_inventory, parse_ini, parse_yaml
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import load_inventory


def test_undefined_group_in_children_or_vars_is_refused():
    with pytest.raises(UserError, match=r"x\.ini:2: \[lab:children\]: group 'rpi55' is not defined"):
        parse_ini("[lab:children]\nrpi55\n[rpi5]\nboard-1\n", Path("x.ini"))
    with pytest.raises(UserError, match=r"\[orn:vars\]: group 'orn' is not defined"):
        parse_ini("[orin]\nb1\n[orn:vars]\nansible_user=x\n", Path("x.ini"))
    # defined later in the file, or as a [g:children] header: fine
    inv = parse_ini("[lab:children]\nrpi5\n[rpi5:vars]\nansible_user=pi\n[rpi5]\nb1\n", Path("x.ini"))
    assert inv.boards["b1"].user == "pi" and inv.boards["b1"].groups == ("lab", "rpi5")


def test_ansible_ssh_spelling_wins_whatever_the_merge_order():
    inv = parse_ini("[g]\nb1 ansible_ssh_host=10.0.0.9 ansible_ssh_user=root\n[g:vars]\nansible_host=10.0.0.1\n"
                    "ansible_user=pi\nansible_ssh_port=2201\n", Path("x.ini"))
    b = inv.boards["b1"]
    assert (b.host, b.user, b.port) == ("10.0.0.9", "root", 2201)
    inv = parse_ini("[g]\nb1 ansible_host=10.0.0.1 ansible_port=22\n[g:vars]\nansible_ssh_host=10.0.0.9\n", Path("x.ini"))
    assert inv.boards["b1"].host == "10.0.0.9"  # a group's ansible_ssh_host beats the host's ansible_host, as in Ansible


def test_group_priority_and_depth():
    text = ("[a]\nb1\n[z]\nb1\n[a:vars]\nansible_user=from_a\nansible_group_priority=10\n"
            "[z:vars]\nansible_user=from_z\n")
    assert parse_ini(text, Path("x.ini")).boards["b1"].user == "from_a"  # same depth: priority 10 beats 1
    assert parse_ini(text.replace("ansible_group_priority=10", ""), Path("x.ini")).boards["b1"].user == "from_z"  # by name


def test_numeric_yaml_host_names_are_refused_not_renamed():
    with pytest.raises(UserError, match="must be a string"):
        parse_yaml("all:\n  hosts:\n    010:\n", Path("x.yml"))
    assert list(parse_yaml("all:\n  hosts:\n    '010':\n", Path("x.yml")).boards) == ["010"]


def test_ipv6_host_is_a_clear_error_not_a_section_header():
    with pytest.raises(UserError, match=r"(?s)IPv6 address .*ansible_host=2001:db8::1 ansible_port=2222"):
        parse_ini("[g]\n[2001:db8::1]:2222\n", Path("x.ini"))
    assert parse_ini("[g]\nb1 ansible_host=2001:db8::1\n", Path("x.ini")).boards["b1"].host == "2001:db8::1"


def test_connection_local_is_a_problem_of_that_host_only():
    inv = parse_ini("[g]\nlocalhost ansible_connection=local\nb0\n", Path("x.ini"))
    assert "x.ini:2: host 'localhost' has ansible_connection=local; dmsbuild reaches boards over SSH only" in \
        str(inv.problems["localhost"].error)
    assert list(inv.boards) == ["b0"] and inv.problems["localhost"].groups == ("g",)
    assert parse_ini("[g]\nb1 ansible_connection=ssh\n", Path("x.ini")).boards["b1"].name == "b1"


def test_ssh_args_route_options_kept_and_the_rest_reported():
    inv = parse_ini("[g]\nb1\n[g:vars]\nansible_ssh_common_args='-o ProxyJump=gw -o StrictHostKeyChecking=no'\n"
                    "ansible_become=true\n", Path("x.ini"))
    assert inv.boards["b1"].ssh_args == ("-o", "ProxyJump=gw")
    assert any("StrictHostKeyChecking=no ignored: host keys stay strict" in n for n in inv.notes)
    assert any(n.startswith("ansible_become ignored (dmsbuild never escalates") for n in inv.notes)


def test_inventory_recognised_by_content_and_vars_folders_read(tmp_path):
    (tmp_path / "hosts").write_text("[rpi5]\nb1\nb2 ansible_port=2200\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "rpi5.yml").write_text("ansible_user: pi\nansible_ssh_common_args: -J gw\n")
    (tmp_path / "host_vars" / "b2").mkdir(parents=True)
    (tmp_path / "host_vars" / "b2" / "main.yml").write_text("ansible_user: root\n")
    inv = load_inventory(tmp_path / "hosts", tmp_path)
    b1, b2 = inv.boards["b1"], inv.boards["b2"]
    assert (b1.user, b1.port, b1.ssh_args, b2.user, b2.port) == ("pi", None, ["-J", "gw"], "root", 2200)
    (tmp_path / "inventory").write_text("all:\n  hosts:\n    b3:\n")
    assert list(load_ansible_inventory(tmp_path / "inventory").boards) == ["b3"]
    assert list(load_inventory(tmp_path / "inventory", tmp_path).boards) == ["b3"]
