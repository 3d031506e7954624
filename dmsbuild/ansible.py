"""Import an existing Ansible inventory (INI or YAML) as plain board records.

Many teams already describe their boards for Ansible; this reads that file so
they need not write it twice. Only what a deploy needs is taken: the host
name, ``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_ssh_private_key_file`` (and their older ``ansible_ssh_*`` spellings),
``ansible_python_interpreter`` (the board's Python), ``dmsbuild_root`` (its
deploy root) and the groups (children included). ``inventory.load_inventory``
turns the records into ``Board`` objects. Other variables are ignored and listed in
``AnsibleInventory.ignored_vars``; passwords are never read into a record.

Variable precedence follows Ansible's: the ``all`` group, then parent groups
before their children (deeper wins, ties by name), then host variables.
Templated values (``{{ ... }}``) cannot be evaluated here and are a user
error naming the field. Host ranges (``rpi5-[01:20]``, ``node-[a:f]``,
``x[0:10:2]``) are expanded like Ansible does.

Only the standard library is needed for INI; YAML needs PyYAML, imported when
a YAML inventory is read.
"""
from __future__ import annotations

import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import NAME_RE
from .errors import UserError
from .fleet import BoardRef

#: the variables dmsbuild understands, mapped to record fields (first spelling wins when both are set)
KNOWN_VARS = {
    "ansible_host": "host", "ansible_ssh_host": "host",
    "ansible_port": "port", "ansible_ssh_port": "port",
    "ansible_user": "user", "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity_file", "ansible_private_key_file": "identity_file",
    # the board's Python (release agent, facts, benchmark); "auto..." (Ansible's discovery) means the default
    "ansible_python_interpreter": "python",
    # dmsbuild's own per-board deploy root (like the TOML inventory's 'root'; "{target}" allowed)
    "dmsbuild_root": "root",
}
_HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:%-]*$")  # DNS name, IPv4, or IPv6 (with zone)
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_RANGE_RE = re.compile(r"\[([^\[\]]*)\]")
MAX_RANGE_HOSTS = 10_000


@dataclass(frozen=True)
class ImportedBoard(BoardRef):
    """One board from an Ansible inventory: what the fleet layer knows, plus the board's Python and deploy root."""

    python: str | None = None
    root: str | None = None


@dataclass
class AnsibleInventory:
    source: Path
    boards: dict[str, ImportedBoard]
    #: group -> board names, children's boards included, in inventory order
    groups: dict[str, list[str]]
    #: variables seen but not used (name -> number of boards), so a user can see what was dropped
    ignored_vars: dict[str, int] = field(default_factory=dict)

    def group(self, name: str) -> list[ImportedBoard]:
        """The boards of ``name`` (a dmsbuild target's group); a UserError listing the groups otherwise."""
        if name not in self.groups:
            raise UserError(
                f"{self.source}: no group '{name}'; groups: {', '.join(sorted(self.groups)) or 'none'}",
                hint="set deploy.group in the target profile to one of those",
            )
        return [self.boards[n] for n in self.groups[name]]


# --------------------------------------------------------------------------
# host ranges
# --------------------------------------------------------------------------
def expand_host_pattern(pattern: str, where: str = "host") -> list[str]:
    """``rpi5-[01:03]`` -> ``rpi5-01, rpi5-02, rpi5-03`` (Ansible's range syntax; several ranges multiply)."""
    m = _RANGE_RE.search(pattern)
    if not m:
        if "[" in pattern or "]" in pattern:
            raise UserError(f"{where}: {pattern!r} has an unbalanced '[' or ']'; a range looks like name-[01:20]")
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end():]
    parts = body.split(":")
    if len(parts) not in (2, 3):
        raise UserError(f"{where}: range [{body}] in {pattern!r} is malformed; expected [start:end] or [start:end:step]")
    start, end = parts[0], parts[1]
    step_s = parts[2] if len(parts) == 3 else "1"
    if not step_s.isdigit() or int(step_s) < 1:
        raise UserError(f"{where}: range [{body}] in {pattern!r} has step {step_s!r}; expected a positive integer")
    step = int(step_s)
    if start.isdigit() and end.isdigit():
        lo, hi = int(start), int(end)
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        if lo > hi:
            raise UserError(f"{where}: range [{body}] in {pattern!r} runs backwards; write [{end}:{start}]")
        if (hi - lo) // step + 1 > MAX_RANGE_HOSTS:
            raise UserError(f"{where}: range [{body}] in {pattern!r} names more than {MAX_RANGE_HOSTS} hosts")
        items = [str(i).zfill(width) for i in range(lo, hi + 1, step)]
    elif len(start) == 1 and len(end) == 1 and start in string.ascii_letters and end in string.ascii_letters:
        if start > end:
            raise UserError(f"{where}: range [{body}] in {pattern!r} runs backwards; write [{end}:{start}]")
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise UserError(f"{where}: range [{body}] in {pattern!r} is malformed; use numbers ([01:20]) or single letters ([a:f])")
    out: list[str] = []
    for item in items:
        for rest in expand_host_pattern(tail, where):
            out.append(head + item + rest)
            if len(out) > MAX_RANGE_HOSTS:
                raise UserError(f"{where}: {pattern!r} names more than {MAX_RANGE_HOSTS} hosts")
    return out


# --------------------------------------------------------------------------
# the common model both formats fill
# --------------------------------------------------------------------------
class _Builder:
    def __init__(self, source: Path) -> None:
        self.source = source
        self.host_order: list[str] = []
        self.host_vars: dict[str, dict[str, tuple[Any, str]]] = {}  # name -> var -> (value, where)
        self.group_hosts: dict[str, list[str]] = {"all": [], "ungrouped": []}
        self.group_vars: dict[str, dict[str, tuple[Any, str]]] = {}
        self.children: dict[str, list[str]] = {}
        self.ignored: dict[str, int] = {}

    def group(self, name: str, where: str) -> None:
        if not _GROUP_RE.match(name) or ".." in name:
            raise UserError(
                f"{where}: group name {name!r} is not allowed; use letters, digits, '_', '.', '-' (no spaces, '..' or shell characters)",
                hint=f"rename the group in {self.source}",
            )
        self.group_hosts.setdefault(name, [])

    def host(self, name: str, group: str, variables: dict[str, tuple[Any, str]], where: str) -> None:
        if not NAME_RE.match(name) or ".." in name:
            raise UserError(
                f"{where}: host name {name!r} is not allowed; use letters, digits, '.', '_' or '-' "
                "(no spaces, slashes, '..' or shell characters), at most 64 characters",
                hint=f"rename it in {self.source} and set ansible_host to its address",
            )
        if name not in self.host_vars:
            self.host_order.append(name)
            self.host_vars[name] = {}
        self.host_vars[name].update(variables)
        self.group(group, where)
        if name not in self.group_hosts[group]:
            self.group_hosts[group].append(name)

    def child(self, parent: str, child: str, where: str) -> None:
        self.group(parent, where)
        self.group(child, where)
        kids = self.children.setdefault(parent, [])
        if child not in kids:
            kids.append(child)

    def build(self) -> AnsibleInventory:
        # every group's depth below 'all' (cycles are an error, as in Ansible)
        parents: dict[str, set[str]] = {}
        for p, kids in self.children.items():
            for k in kids:
                parents.setdefault(k, set()).add(p)

        def depth(g: str, seen: tuple[str, ...] = ()) -> int:
            if g in seen:
                raise UserError(
                    f"{self.source}: group '{g}' is its own child ({' -> '.join(seen + (g,))})",
                    hint="remove one of those children entries",
                )
            ps = parents.get(g, set()) - {"all"}
            return 0 if g == "all" else 1 + max((depth(p, seen + (g,)) for p in ps), default=0)

        depths = {g: depth(g) for g in self.group_hosts}

        def members(g: str, seen: frozenset[str] = frozenset()) -> list[str]:
            out = list(self.group_hosts.get(g, []))
            for k in self.children.get(g, []):
                if k not in seen:
                    out += [h for h in members(k, seen | {g}) if h not in out]
            return out

        groups_of: dict[str, list[str]] = {h: [] for h in self.host_order}
        groups: dict[str, list[str]] = {}
        for g in self.group_hosts:
            mset = set(members(g))
            ms = [h for h in self.host_order if h in mset]
            if g == "all":
                ms = list(self.host_order)
            if g == "ungrouped":
                in_some = {h for gg in self.group_hosts if gg not in ("all", "ungrouped") for h in members(gg)}
                ms = [h for h in self.host_order if h not in in_some]
            groups[g] = ms
            for h in ms:
                if g not in ("all", "ungrouped"):
                    groups_of[h].append(g)

        boards: dict[str, ImportedBoard] = {}
        for h in self.host_order:
            merged: dict[str, tuple[Any, str]] = {}
            for g in sorted((g for g in groups if h in groups[g] or g == "all"), key=lambda g: (depths[g], g)):
                merged.update(self.group_vars.get(g, {}))
            merged.update(self.host_vars[h])
            boards[h] = self._record(h, merged, tuple(sorted(groups_of[h])))
        return AnsibleInventory(self.source, boards, groups, dict(sorted(self.ignored.items())))

    def _record(self, name: str, merged: dict[str, tuple[Any, str]], groups: tuple[str, ...]) -> ImportedBoard:
        fields: dict[str, Any] = {}
        for var, (value, where) in merged.items():
            target = KNOWN_VARS.get(var)
            if target is None:
                self.ignored[var] = self.ignored.get(var, 0) + 1
                continue
            fields[target] = self._check(var, value, where, name)
        return ImportedBoard(
            name=name,
            host=fields.get("host", name),
            port=fields.get("port", 22),
            user=fields.get("user"),
            identity_file=fields.get("identity_file"),
            groups=groups,
            python=fields.get("python"),
            root=fields.get("root"),
        )

    def _check(self, var: str, value: Any, where: str, host: str) -> Any:
        def bad(expected: str) -> UserError:
            return UserError(
                f"{where}: '{var}' of host '{host}' is {value!r}; expected {expected}",
                hint=f"fix it in {self.source}",
            )

        if isinstance(value, str) and ("{{" in value or "{%" in value):
            raise bad("a literal value (templated values are not evaluated by dmsbuild)")
        field_name = KNOWN_VARS[var]
        if field_name == "port":
            if isinstance(value, bool):
                raise bad("a port number 1-65535")
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise bad("a port number 1-65535")
            return value
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        if field_name == "host" and (not _HOST_RE.match(value) or ".." in value):
            raise bad("a host name or IP address (letters, digits, '.', '-', ':')")
        if field_name == "user" and not _USER_RE.match(value):
            raise bad("a user name (letters, digits, '_', '.', '-')")
        if field_name in ("identity_file", "python", "root") and ("\x00" in value or "\n" in value):
            raise bad("a file path")
        if field_name == "python" and value.startswith("auto"):
            return None  # Ansible's interpreter discovery: dmsbuild uses the board's python3
        return value


# --------------------------------------------------------------------------
# INI
# --------------------------------------------------------------------------
def _ini_value(raw: str) -> Any:
    """Ansible's INI values: numbers become numbers, quotes are stripped (shlex did it)."""
    if raw.isdigit():
        return int(raw)
    return raw


def parse_ini(text: str, source: Path) -> AnsibleInventory:
    b = _Builder(source)
    section, kind = "ungrouped", "hosts"
    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{lineno}"
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            m = re.match(r"^\[([^\[\]\s:]+)(?::(vars|children|hosts))?\]\s*(?:[#;].*)?$", line)
            if not m:
                raise UserError(
                    f"{where}: malformed section header {line!r}; expected [group], [group:vars] or [group:children]",
                    hint=f"fix line {lineno} of {source}",
                )
            section, kind = m.group(1), m.group(2) or "hosts"
            b.group(section, where)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UserError(f"{where}: cannot split {line!r}: {exc}", hint="check the quotes on that line") from None
        if not words:
            continue
        if kind == "vars":
            key, sep, value = line.partition("=")
            key = key.strip()
            if not sep or not re.match(r"^[A-Za-z_]\w*$", key):
                raise UserError(
                    f"{where}: expected 'name=value' in [{section}:vars], got {line!r}",
                    hint=f"fix line {lineno} of {source}",
                )
            try:
                vwords = shlex.split(value, comments=True)
            except ValueError as exc:
                raise UserError(f"{where}: cannot split the value of {key}: {exc}") from None
            b.group_vars.setdefault(section, {})[key] = (_ini_value(" ".join(vwords)), f"{where} [{section}:vars]")
            continue
        if kind == "children":
            if len(words) != 1:
                raise UserError(f"{where}: expected one group name per line in [{section}:children], got {line!r}")
            for child in expand_host_pattern(words[0], where):
                b.child(section, child, where)
            continue
        name, variables = words[0], {}
        host_part, port = name, None
        if _RANGE_RE.sub("", name).count(":") == 1:  # host:port (an IPv6 address has several colons)
            head, _, tail = name.rpartition(":")
            if not tail.isdigit():
                raise UserError(f"{where}: {name!r}: the part after ':' must be a port number", hint=f"fix line {lineno} of {source}")
            host_part, port = head, int(tail)
        for w in words[1:]:
            key, sep, value = w.partition("=")
            if not sep or not re.match(r"^[A-Za-z_]\w*$", key):
                raise UserError(
                    f"{where}: expected 'name=value' after the host name, got {w!r}",
                    hint=f"fix line {lineno} of {source}",
                )
            variables[key] = (_ini_value(value), where)
        if port is not None and "ansible_port" not in variables:
            variables["ansible_port"] = (port, where)
        for host in expand_host_pattern(host_part, where):
            b.host(host, section, dict(variables), where)
    return b.build()


# --------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------
def parse_yaml(text: str, source: Path) -> AnsibleInventory:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a declared dependency
        raise UserError(f"{source}: reading a YAML inventory needs PyYAML", hint="pip install pyyaml") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}{at}: malformed YAML: {problem}", hint="fix the syntax of that file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of group names at the top (e.g. 'all:'), got {type(data).__name__}")
    b = _Builder(source)

    def walk(group: str, body: Any, path: str) -> None:
        where = f"{source}: {path}"
        b.group(str(group), where)
        if body is None:
            return
        if not isinstance(body, dict):
            raise UserError(f"{where} is a {type(body).__name__}; expected a mapping with hosts, vars and children")
        unknown = sorted(set(map(str, body)) - {"hosts", "vars", "children"})
        if unknown:
            raise UserError(
                f"{where}.{unknown[0]}: unknown key; a group has only 'hosts', 'vars' and 'children'",
                hint=f"fix {path} in {source}",
            )
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise UserError(f"{where}.hosts is a {type(hosts).__name__}; expected a mapping of host names (host: or host: {{vars}})")
        for hname, hvars in hosts.items():
            hwhere = f"{where}.hosts.{hname}"
            hvars = hvars or {}
            if not isinstance(hvars, dict):
                raise UserError(f"{hwhere} is {hvars!r}; expected a mapping of variables or nothing")
            variables = {str(k): (v, f"{hwhere}.{k}") for k, v in hvars.items()}
            for host in expand_host_pattern(str(hname), hwhere):
                b.host(host, str(group), dict(variables), hwhere)
        gvars = body.get("vars") or {}
        if not isinstance(gvars, dict):
            raise UserError(f"{where}.vars is a {type(gvars).__name__}; expected a mapping of variables")
        b.group_vars.setdefault(str(group), {}).update({str(k): (v, f"{where}.vars.{k}") for k, v in gvars.items()})
        kids = body.get("children") or {}
        if not isinstance(kids, dict):
            raise UserError(f"{where}.children is a {type(kids).__name__}; expected a mapping of group names")
        for kname, kbody in kids.items():
            b.child(str(group), str(kname), f"{where}.children.{kname}")
            walk(str(kname), kbody, f"{path}.children.{kname}")

    for gname, body in data.items():
        walk(str(gname), body, str(gname))
    return b.build()


def load_ansible_inventory(path: Path | str) -> AnsibleInventory:
    """Read an Ansible inventory file; YAML for .yml/.yaml (or a ``key:`` first line), INI otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: Ansible inventory not found", hint="check deploy.ansible_inventory or the path given") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the Ansible inventory: {exc}") from None
    if path.suffix in (".yml", ".yaml"):
        return parse_yaml(text, path)
    if path.suffix in (".ini", ".cfg", ".hosts"):
        return parse_ini(text, path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("#", ";"))), "")
    if first.startswith("---") or re.match(r"^[\w.-]+:\s*$", first):
        return parse_yaml(text, path)
    return parse_ini(text, path)
