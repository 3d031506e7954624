"""Inventory loading: validation at load, includes, which file is read."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.config import load_target
from dmsbuild.errors import UserError
from dmsbuild.inventory import inventory_path, load_inventory

GOOD = '[[boards]]\nname = "rpi5-01"\ngroups = ["rpi5"]\nhost = "10.0.0.5"\n'


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
def test_bad_names_and_paths_rejected_at_load(tmp_path, field, value, expect):
    text = f'[[boards]]\nname = "b1"\ngroups = ["rpi5"]\n'.replace('name = "b1"', f'name = "{value}"' if field == "name" else 'name = "b1"')
    if field != "name":
        text += f'{field} = "{value}"\n'
    with pytest.raises(UserError) as exc:
        _load(tmp_path, text)
    first = str(exc.value).splitlines()[0]
    assert first.startswith(str(tmp_path / "inv.toml")) and expect in first


def test_unknown_field_and_duplicate_board(tmp_path):
    with pytest.raises(UserError, match="unknown field 'boards\\[0\\].password'"):
        _load(tmp_path, GOOD + 'password = "hunter2"\n')
    with pytest.raises(UserError, match="listed twice"):
        _load(tmp_path, GOOD + GOOD)


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
