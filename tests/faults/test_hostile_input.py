"""Malformed and hostile input: property-based fuzzing of target profiles, inventories and Ansible
inventories. Every invalid input is a UserError naming the file; nothing else escapes, nothing is written."""
from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path
from typing import Iterable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dmsbuild.ship.ansible import load_ansible_inventory
from dmsbuild.config import load_target
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import load_inventory
from tests.conftest import REPO
from tests.faults import ledger

FUZZ = settings(max_examples=int(os.environ.get("FAULT_FUZZ_EXAMPLES", "120")) * int(os.environ.get("FAULT_ROUNDS", "1")),
                deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

NASTY = st.sampled_from(["", " ", "..", "../../etc", "/", "~", "a b", "$(touch /tmp/x)", "`id`", "x;rm -rf /", "-rf",
                         "\0", "\n", "é", "a" * 300, "{target}", "*", "'", '"', "\\", "%", "rpi5", "/opt/x", "22",
                         "ssh-ed25519 AAAA", "user@host:22"])
SCALAR = st.one_of(NASTY, st.text(max_size=40), st.integers(-2**70, 2**70), st.booleans(),
                   st.floats(allow_nan=False, allow_infinity=False))
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=4), st.dictionaries(NASTY, SCALAR, max_size=3))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "0.0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _outcome(kind: str, fn, path: Path | None = None, fields: Iterable[str] = ()) -> str:
    """'accepted' or 'refused'; a refusal's first line must name ``path`` and, for parseable input, a field.

    ``fields``: the names an error about this input may point at (every key of the parsed text, the
    keys a mutation removed, the file's known fields); malformed syntax must say so instead."""
    try:
        fn()
    except UserError as exc:
        first = str(exc).splitlines()[0]
        assert first.strip(), "a UserError without a message"
        if path is not None:
            assert path.name in first, f"{kind}: the error does not name the file {path.name}: {first!r}"
            names = set(fields)
            if names:
                assert any(n in first for n in names) or "malformed" in first or "cannot read" in first, (
                    f"{kind}: the error names no field of the input ({sorted(names)[:12]}...): {first!r}")
        return "refused"
    return "accepted"


def keys_of(text: str) -> set[str]:
    """Every key (and table name) of a TOML text; empty when it does not parse."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeError, ValueError):
        return set()
    out: set[str] = set()

    def walk(v) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                out.add(str(k))
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(data)
    return out


PROFILE = tomllib.loads((REPO / "targets" / "rpi5.toml").read_text())
#: every field and table name of the real profile (a mutation may remove one: the error names it)
PROFILE_KEYS = keys_of((REPO / "targets" / "rpi5.toml").read_text())
CHECKED = "only UserError; 1st line names file + a field (or malformed syntax); nothing written"


@st.composite
def mutated_profile(draw) -> str:
    """The real rpi5 profile with fields replaced, removed or added (in tables or at top level)."""
    data = json.loads(json.dumps(PROFILE))
    for _ in range(draw(st.integers(1, 4))):
        table = draw(st.sampled_from([None] + [k for k, v in data.items() if isinstance(v, dict)]))
        where = data if table is None else data[table]
        op = draw(st.sampled_from(["set", "del", "add"]))
        keys = [k for k, v in where.items() if not isinstance(v, dict)]
        if op == "del" and keys:
            del where[draw(st.sampled_from(keys))]
        elif op == "set" and keys:
            where[draw(st.sampled_from(keys))] = draw(VALUE)
        else:
            where[draw(st.sampled_from(["bogus", "arch", "root", "iterations", "name", "x y"]))] = draw(VALUE)
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=st.one_of(mutated_profile(), st.text(max_size=200)))
def test_fuzz_target_profiles(project_dir, text):
    with ledger.example("malformed-input", "target profile", CHECKED):
        path = project_dir / "targets" / "fuzz.toml"
        path.write_text(text)
        before = snapshot(project_dir)
        _outcome("profile", lambda: load_target(project_dir, "fuzz"), path, keys_of(text) | PROFILE_KEYS)
        assert snapshot(project_dir) == before  # loading never writes


@st.composite
def inventory_text(draw) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append(f"include = {toml_value(draw(st.lists(NASTY, max_size=2)))}")
    if draw(st.booleans()):
        lines.append("[defaults]")
        for k in draw(st.lists(st.sampled_from(["user", "port", "groups", "root", "python", "known_hosts", "bogus",
                                                 "io_timeout", "connect_retries", "trust_on_first_use"]), max_size=3, unique=True)):
            lines.append(f"{k} = {toml_value(draw(VALUE))}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[boards]]")
        fields = {"name": draw(st.one_of(st.just("b1"), NASTY)), "groups": draw(st.one_of(st.just(["rpi5"]), VALUE))}
        for k in draw(st.lists(st.sampled_from(["host", "port", "user", "identity_file", "host_key", "root", "python",
                                                 "proxy_jump", "connect_timeout", "io_timeout", "transport", "source",
                                                 "password"]), max_size=4, unique=True)):
            fields[k] = draw(VALUE)
        lines += [f"{k} = {toml_value(v)}" for k, v in fields.items()]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=30)))
    return "\n".join(lines) + "\n"


#: what an inventory error may point at: its sections and every board field
INVENTORY_FIELDS = {"include", "defaults", "boards", "name", "groups", "host", "port", "user", "identity_file", "host_key",
                    "root", "python", "proxy_jump", "connect_timeout", "io_timeout", "connect_retries", "known_hosts",
                    "trust_on_first_use", "transport", "source", "password", "bogus"}


@FUZZ
@given(text=inventory_text())
def test_fuzz_inventories(project_dir, text):
    with ledger.example("malformed-input", "inventory", CHECKED):
        path = project_dir / "targets" / "fuzz-inventory.toml"
        path.write_text(text)
        before = snapshot(project_dir)
        _outcome("inventory", lambda: load_inventory(path, project_dir), path, keys_of(text) | INVENTORY_FIELDS)
        assert snapshot(project_dir) == before


INI_LINE = st.one_of(
    st.sampled_from(["[rpi5]", "[rpi5:children]", "[rpi5:vars]", "[all:vars]", "[", "[]", "[a b]", "[x:y:z]",
                     "board-[01:03] ansible_host=10.0.0.1", "b[a:c]", "b[3:1]", "b[0:99999999]", "b[1:5:0]",
                     "h ansible_port=notanumber", "h ansible_port=70000", "h ansible_user='a b'", "h ansible_host='{{ x }}'",
                     "h ansible_ssh_pass=secret", "h =", "h ansible_host", "h ansible_ssh_private_key_file=../../k",
                     "rpi5", "orin", "ansible_user=root", "; comment", "# c", "h \"unterminated"]),
    st.text(max_size=40))
YAML_DOC = st.one_of(
    st.sampled_from(["all:\n  hosts:\n    h1:\n      ansible_host: 10.0.0.1\n", "all: [1, 2]\n", "all:\n  children: 3\n",
                     "rpi5:\n  hosts:\n    'b[01:02]':\n      ansible_port: x\n", "- a\n- b\n", "a: !!python/object:os.system x\n",
                     "all:\n  hosts:\n    h1: {ansible_host: '{{ lookup() }}'}\n", ": :\n", "x: &a [*a]\n", "all:\n  vars: []\n",
                     "all:\n  hosts:\n    h1:\n      ansible_port: 1e400\n", "all:\n  hosts: {null: {}}\n"]),
    st.text(max_size=80))


@FUZZ
@given(lines=st.lists(INI_LINE, max_size=8), yaml_doc=YAML_DOC, suffix=st.sampled_from([".ini", ".yml", ""]))
def test_fuzz_ansible_inventories(tmp_path, lines, yaml_doc, suffix):
    with ledger.example("malformed-input", "ansible inventory", "only UserError; 1st line names the file; nothing written"):
        path = tmp_path / f"hosts{suffix}"
        path.write_text(yaml_doc if suffix == ".yml" else "\n".join(lines) + "\n")
        before = snapshot(tmp_path)
        _outcome("ansible", lambda: load_ansible_inventory(path), path)
        assert snapshot(tmp_path) == before


def test_fuzzers_reach_both_outcomes(project_dir):
    """The generators are not all-invalid: the unmodified profile and a plain inventory are accepted."""
    assert _outcome("profile", lambda: load_target(project_dir, "rpi5")) == "accepted"
    inv = project_dir / "inv.toml"
    inv.write_text('[[boards]]\nname = "b1"\ngroups = ["rpi5"]\nhost = "10.0.0.1"\n')
    assert _outcome("inventory", lambda: load_inventory(inv, project_dir)) == "accepted"
    inv.write_text('[[boards]]\ngroups = ["rpi5"]\n')  # no name: refused whole (a bad board with a name is its own problem)
    assert _outcome("inventory", lambda: load_inventory(inv, project_dir)) == "refused"


def test_found_by_fuzzing_unreadable_files_are_user_errors(project_dir):
    """Regressions the fuzzer found: an include name too long for the OS and a non-UTF-8 TOML file were tracebacks."""
    inv = project_dir / "inv.toml"
    inv.write_text(f'include = ["{"a" * 300}"]\n')
    with pytest.raises(UserError):
        load_inventory(inv, project_dir)
    (project_dir / "targets" / "latin1.toml").write_bytes(b'description = "caf\xe9"\n')
    with pytest.raises(UserError) as exc:
        load_target(project_dir, "latin1")
    assert "latin1.toml: malformed TOML" in str(exc.value).splitlines()[0]


def test_found_by_fuzzing_a_missing_include_names_the_including_file(project_dir):
    """An include of a file that is not there named only the missing path, not the file and field to fix."""
    inv = project_dir / "inv.toml"
    for inc in ("/", "rpi5", "missing.toml"):
        inv.write_text(f'include = ["{inc}"]\n')
        with pytest.raises(UserError) as exc:
            load_inventory(inv, project_dir)
        first = str(exc.value).splitlines()[0]
        assert first.startswith(f"{inv}: field 'include' names {inc!r}") and "not found" in first, first


def test_found_by_fuzzing_a_host_name_never_reads_vars_files_outside_the_inventory(tmp_path):
    """'/usr/bin' as a host name read every file of /usr/bin as host vars (a binary: an error naming that file).

    Ansible's host_group_vars plugin skips names that start with '/' ("chroot" hosts); dmsbuild also skips '..' names,
    and refuses both hosts by its name rule, by name, while the other hosts load."""
    outside = tmp_path / "outside" / "x"
    outside.mkdir(parents=True)
    (outside / "blob").write_bytes(b"\xff\xfe not UTF-8")
    inv = tmp_path / "inv" / "hosts.ini"
    (inv.parent / "host_vars").mkdir(parents=True)
    for bad in (str(outside), "../../outside/x"):
        inv.write_text(f"[rpi5]\n{bad} ansible_host=10.0.0.1\nok1 ansible_host=10.0.0.2\n")
        got = load_ansible_inventory(inv)
        assert list(got.boards) == ["ok1"] and list(got.problems) == [bad], got
        assert "is not allowed" in str(got.problems[bad].error)
