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
A host dmsbuild cannot deploy to as written (``ansible_connection=local``, a
bad value, a templated ``{{ ... }}`` value) does not make the file unusable: it
becomes a ``HostProblem``, refused only when a deploy selects that host
(``inventory.Inventory.choose``). Templated values are evaluated by Ansible
itself (``resolve_templates``: ``ansible HOSTS -m debug``, which connects to
nothing; ``ansible-inventory --list`` prints templates unevaluated), and only
for the hosts a deploy selects. Host ranges (``rpi5-[01:20]``, ``node-[a:f]``,
``x[0:10:2]``) are expanded like Ansible does.

Only the standard library is needed for INI; YAML needs PyYAML, imported when
a YAML inventory is read.
"""
from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import NAME_RE
from ..errors import UserError
from .fleet import BoardRef
from ..core.rollout_spec import MAX_RANGE_HOSTS, _RANGE_RE, expand_host_pattern  # noqa: F401 (re-exported: the inventory's ranges)

#: the variables dmsbuild understands, mapped to record fields; where both spellings are set the
#: ``ansible_ssh_*`` one wins, as in Ansible's ssh connection plugin (its later-listed variable wins)
KNOWN_VARS = {
    "ansible_host": "host", "ansible_ssh_host": "host",
    "ansible_port": "port", "ansible_ssh_port": "port",
    "ansible_user": "user", "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity_file", "ansible_private_key_file": "identity_file",
    # the board's Python (release agent, facts, benchmark); "auto..." (Ansible's discovery) means the default
    "ansible_python_interpreter": "python",
    # dmsbuild's own per-board deploy root (like the TOML inventory's 'root'; "{target}" allowed)
    "dmsbuild_root": "root",
    # ssh options: those that decide the route reach `ssh -G` (docs/ssh.md); the others are reported as ignored
    "ansible_ssh_common_args": "ssh_args", "ansible_ssh_extra_args": "ssh_extra_args",
    "ansible_connection": "connection",
}
#: ansible_ssh_* spellings that win over the plain one (Ansible's ssh plugin lists them later)
_SSH_SPELLING = {"ansible_ssh_host": "ansible_host", "ansible_ssh_port": "ansible_port", "ansible_ssh_user": "ansible_user",
                 "ansible_ssh_private_key_file": "ansible_private_key_file"}
#: why a variable dmsbuild reads no value from is ignored (printed once per deploy)
IGNORED_WHY = {
    "ansible_become": "dmsbuild never escalates: the board user must own the deploy root",
    "ansible_password": "dmsbuild never uses passwords (keys and ssh-agent only)",
    "ansible_ssh_pass": "dmsbuild never uses passwords (keys and ssh-agent only)",
    "ansible_group_priority": "",  # used for precedence, not a board setting
}
#: ansible_connection values that mean "over SSH"
SSH_CONNECTIONS = ("ssh", "paramiko", "smart", "paramiko_ssh")
_HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:%-]*$")  # DNS name, IPv4, or IPv6 (with zone)
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_IPV6_RE = re.compile(r"^\[([0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%\w+)?)\](?::(\d+))?$")


@dataclass(frozen=True)
class ImportedBoard(BoardRef):
    """One board from an Ansible inventory: what the fleet layer knows, plus the board's Python and deploy root."""

    python: str | None = None
    root: str | None = None
    #: route options from ansible_ssh_common_args / ansible_ssh_extra_args, for ssh -G
    ssh_args: tuple[str, ...] = ()


class TemplatedValue(UserError):
    """A host's variables hold templates (``{{ }}``) that only Ansible can evaluate; ``templated``: var -> where."""

    def __init__(self, message: str, templated: dict[str, str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.templated = templated


@dataclass
class HostProblem:
    """A host of the inventory that cannot be deployed to as written: refused only when a deploy selects it."""

    name: str
    groups: tuple[str, ...]
    error: UserError
    #: the host's variables after Ansible's precedence (var -> (value, where)): to record it again once resolved
    merged: dict[str, tuple[Any, str]] = field(default_factory=dict, repr=False)

    @property
    def templated(self) -> dict[str, str]:
        """The templated variables the deploy needs (var -> where); empty when the problem is something else."""
        return self.error.templated if isinstance(self.error, TemplatedValue) else {}


@dataclass
class AnsibleInventory:
    source: Path
    boards: dict[str, ImportedBoard]
    #: group -> board names, children's boards included, in inventory order
    groups: dict[str, list[str]]
    #: variables seen but not used (name -> number of boards), so a user can see what was dropped
    ignored_vars: dict[str, int] = field(default_factory=dict)
    #: one line per ignored variable or ssh option, saying why (printed once per deploy)
    notes: list[str] = field(default_factory=list)
    #: hosts that cannot be deployed to as written (name -> problem); they are in ``groups`` but not in ``boards``
    problems: dict[str, HostProblem] = field(default_factory=dict)

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
        self.ignored_opts: dict[str, str] = {}
        #: INI groups named in [x:children] / [x:vars] that must be defined somewhere (Ansible refuses them otherwise)
        self.pending: dict[str, str] = {}
        self.defined: set[str] = {"all", "ungrouped"}
        #: False when the variables came merged from ansible-inventory (which read group_vars/ itself)
        self.read_vars_folders = True
        #: hosts whose name cannot be a board name (name -> the error): problems, not a refusal of the file
        self.bad_names: dict[str, UserError] = {}

    def group(self, name: str, where: str) -> None:
        if not _GROUP_RE.match(name) or ".." in name:
            raise UserError(
                f"{where}: group name {name!r} is not allowed; use letters, digits, '_', '.', '-' (no spaces, '..' or shell characters)",
                hint=f"rename the group in {self.source}",
            )
        self.group_hosts.setdefault(name, [])

    def host(self, name: str, group: str, variables: dict[str, tuple[Any, str]], where: str) -> None:
        if (not NAME_RE.match(name) or ".." in name) and name not in self.bad_names:
            self.bad_names[name] = UserError(
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
        for g, where in self.pending.items():
            if g not in self.defined:
                raise UserError(f"{where}: group '{g}' is not defined (no [{g}] section); Ansible refuses this inventory",
                                hint=f"define [{g}] or fix the group name's spelling in {self.source}")
        if self.read_vars_folders:
            self._vars_folders()
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
        problems: dict[str, HostProblem] = {}
        for h in self.host_order:
            merged: dict[str, tuple[Any, str]] = {}
            mine = (g for g in groups if h in groups[g] or g == "all")
            for g in sorted(mine, key=lambda g: (depths[g], self._priority(g), g)):  # Ansible's sort_groups
                merged.update(self.group_vars.get(g, {}))
            merged.update(self.host_vars[h])
            host_groups = tuple(sorted(groups_of[h]))
            try:
                if h in self.bad_names:
                    raise self.bad_names[h]
                boards[h] = self._record(h, merged, host_groups)
            except UserError as exc:  # this host only: judged when a deploy selects it
                problems[h] = HostProblem(h, host_groups, exc, merged)
        notes = [f"{var} ignored ({IGNORED_WHY.get(var) or 'not used by dmsbuild'}) on {n} host(s)"
                 for var, n in sorted(self.ignored.items()) if IGNORED_WHY.get(var, "x")]
        notes += [f"ssh option {opt} ignored: {why}" for opt, why in sorted(self.ignored_opts.items())]
        return AnsibleInventory(self.source, boards, groups, dict(sorted(self.ignored.items())), notes, problems)

    def _priority(self, group: str) -> int:
        value = self.group_vars.get(group, {}).get("ansible_group_priority", (1, ""))[0]
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UserError(f"{self.source}: ansible_group_priority of group '{group}' is {value!r}; expected an integer") from None

    def _vars_folders(self) -> None:
        """group_vars/ and host_vars/ beside the inventory: they win over the inventory file's own vars (Ansible's order)."""
        base = self.source.parent
        for kind, table, names in (("group_vars", self.group_vars, list(self.group_hosts)),
                                   ("host_vars", self.host_vars, list(self.host_order))):
            for name in names:
                if name.startswith("/") or ".." in Path(name).parts:
                    # never read outside the vars folder; Ansible's host_group_vars plugin skips '/' names too
                    # ("avoid 'chroot' type inventory hostnames"); such a host is refused by the name rule, by name
                    continue
                for f in _vars_files(base / kind, name):
                    data = _read_vars_file(f)
                    table.setdefault(name, {}).update({str(k): (v, f"{f}: {k}") for k, v in data.items()})
    def _record(self, name: str, merged: dict[str, tuple[Any, str]], groups: tuple[str, ...]) -> ImportedBoard:
        fields: dict[str, Any] = {}
        templated: dict[str, str] = {}
        for var, (value, where) in merged.items():
            target = KNOWN_VARS.get(var)
            if target is None:
                self.ignored[var] = self.ignored.get(var, 0) + 1
                continue
            if _SSH_SPELLING.get(var) is None and var in _SSH_SPELLING.values() and \
                    any(merged.get(k) for k, v in _SSH_SPELLING.items() if v == var):
                continue  # the ansible_ssh_* spelling of this variable is set: it wins
            if isinstance(value, _Vaulted) or (isinstance(value, str) and not isinstance(value, _Unsafe)
                                               and ("{{" in value or "{%" in value)):
                templated[var] = where  # only Ansible reads it (a vault value: with the user's vault password)
                continue
            fields[target] = self._check(var, value, where, name)
        conn = fields.get("connection")
        if conn is not None and conn not in SSH_CONNECTIONS:
            where = merged["ansible_connection"][1]
            raise UserError(f"{where}: host '{name}' has ansible_connection={conn}; dmsbuild reaches boards over SSH only",
                            hint="remove that host from the group deploy uses (target=local deploys to this machine)")
        if templated:
            var, where = next(iter(templated.items()))
            raise TemplatedValue(
                f"{where}: '{var}' of host '{name}' is templated ({merged[var][0]!r}); Ansible evaluates it when a deploy "
                "selects this host", templated, hint=f"install ansible-core, or write the value in {self.source}")
        ssh_args: list[str] = []
        for key in ("ssh_args", "ssh_extra_args"):
            if fields.get(key):
                from ..transport.sshconfig import parse_ssh_args

                var = {"ssh_args": "ansible_ssh_common_args", "ssh_extra_args": "ansible_ssh_extra_args"}[key]
                kept, ignored = parse_ssh_args(fields[key], f"{merged[var][1]}: '{var}' of host '{name}'")
                ssh_args += kept
                self.ignored_opts.update(dict(ignored))
        return ImportedBoard(
            name=name,
            host=fields.get("host", name),
            port=fields.get("port"),
            ssh_args=tuple(ssh_args),
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
        if field_name in ("identity_file", "python", "root", "ssh_args", "ssh_extra_args") and ("\x00" in value or "\n" in value):
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
        if line.startswith("[") and not _IPV6_RE.match(line.split()[0]):
            m = re.match(r"^\[([^\[\]\s:]+)(?::(vars|children|hosts))?\]\s*(?:[#;].*)?$", line)
            if not m:
                raise UserError(
                    f"{where}: malformed section header {line!r}; expected [group], [group:vars] or [group:children]",
                    hint=f"fix line {lineno} of {source}",
                )
            section, kind = m.group(1), m.group(2) or "hosts"
            b.group(section, where)
            if kind in ("hosts", "children"):
                b.defined.add(section)
            else:
                b.pending.setdefault(section, f"{where}: [{section}:vars]")
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
                b.pending.setdefault(child, f"{where}: [{section}:children]")
            continue
        name, variables = words[0], {}
        host_part, port = name, None
        v6 = _IPV6_RE.match(name)
        if v6:  # [2001:db8::1]:2222, as Ansible's parse_address reads it
            raise UserError(f"{where}: host {v6.group(1)}: an IPv6 address cannot be a dmsbuild board name (':' is not allowed)",
                            hint=f"name the host and give the address: NAME ansible_host={v6.group(1)}"
                                 + (f" ansible_port={v6.group(2)}" if v6.group(2) else ""))
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
class _Unsafe(str):
    """A ``!unsafe`` string: Ansible never templates it, so a ``{{`` in it is literal text."""


class _Vaulted(str):
    """A ``!vault`` value: ciphertext that only Ansible, given the user's vault password, decrypts."""

    def __repr__(self) -> str:
        return "!vault <encrypted>"


def _safe_load(yaml: Any, text: str) -> Any:
    """``yaml.safe_load`` plus Ansible's own tags (``!unsafe``, ``!vault``, ``!vault-encrypted``), read as Ansible's
    YAML constructor does (ansible/_internal/_yaml/_constructor.py, ansible-core 2.19): the tagged node is built as if
    untagged; a vault value must be a string."""
    class Loader(yaml.SafeLoader):
        pass

    def untagged(loader: Any, node: Any) -> Any:
        copied = copy.copy(node)
        copied.tag = loader.resolve(type(node), node.value, (True, False))
        return loader.construct_object(copied, deep=True)

    def unsafe(loader: Any, node: Any) -> Any:
        value = untagged(loader, node)
        return _Unsafe(value) if isinstance(value, str) else value

    def vault(loader: Any, node: Any) -> _Vaulted:
        value = untagged(loader, node)
        if not isinstance(value, str):
            raise yaml.constructor.ConstructorError(None, None, f"the {node.tag!r} tag requires a string value",
                                                    node.start_mark)
        return _Vaulted(value)

    Loader.add_constructor("!unsafe", unsafe)
    Loader.add_constructor("!vault", vault)
    Loader.add_constructor("!vault-encrypted", vault)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def parse_yaml(text: str, source: Path) -> AnsibleInventory:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a declared dependency
        raise UserError(f"{source}: reading a YAML inventory needs PyYAML", hint="pip install pyyaml") from None
    try:
        data = _safe_load(yaml, text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}{at}: malformed YAML: {problem}", hint="fix the syntax of that file") from None
    except (ValueError, OverflowError) as exc:  # a scalar its resolver took for a number it cannot convert ("0b_")
        raise UserError(f"{source}: malformed YAML: a value YAML reads as a number but cannot convert ({exc})",
                        hint="quote that value, or fix it") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of group names at the top (e.g. 'all:'), got {type(data).__name__}")
    b = _Builder(source)
    lines = _key_lines(yaml, text)

    def at(*keys: Any) -> str:
        """``FILE:LINE`` of the mapping key at ``keys`` (FILE alone where YAML's own reading renamed the key)."""
        line = lines.get(tuple(str(k) for k in keys))
        return f"{source}:{line}" if line else str(source)

    def walk(group: str, body: Any, path: str, keys: tuple[str, ...]) -> None:
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
            hwhere = f"{at(*keys, 'hosts', hname)}: {path}.hosts.{hname}"
            if not isinstance(hname, str):  # `010:` is the integer 8 to YAML; Ansible refuses it rather than rename it
                raise UserError(f"{hwhere}: host pattern {hname!r} must be a string (YAML read it as a {type(hname).__name__})",
                                hint="enclose numeric host names in quotation marks, as Ansible requires")
            hvars = hvars or {}
            if not isinstance(hvars, dict):
                raise UserError(f"{hwhere} is {hvars!r}; expected a mapping of variables or nothing")
            variables = {str(k): (v, f"{at(*keys, 'hosts', hname, k)}: {path}.hosts.{hname}.{k}") for k, v in hvars.items()}
            for host in expand_host_pattern(str(hname), hwhere):
                b.host(host, str(group), dict(variables), hwhere)
        gvars = body.get("vars") or {}
        if not isinstance(gvars, dict):
            raise UserError(f"{where}.vars is a {type(gvars).__name__}; expected a mapping of variables")
        b.group_vars.setdefault(str(group), {}).update(
            {str(k): (v, f"{at(*keys, 'vars', k)}: {path}.vars.{k}") for k, v in gvars.items()})
        kids = body.get("children") or {}
        if not isinstance(kids, dict):
            raise UserError(f"{where}.children is a {type(kids).__name__}; expected a mapping of group names")
        for kname, kbody in kids.items():
            b.child(str(group), str(kname), f"{where}.children.{kname}")
            walk(str(kname), kbody, f"{path}.children.{kname}", (*keys, "children", str(kname)))

    for gname, body in data.items():
        walk(str(gname), body, str(gname), (str(gname),))
    return b.build()


def _key_lines(yaml: Any, text: str) -> dict[tuple[str, ...], int]:
    """The line of every mapping key of a YAML document, by its path of keys (for messages: FILE:LINE)."""
    out: dict[tuple[str, ...], int] = {}

    def visit(node: Any, keys: tuple[str, ...], depth: int) -> None:
        if depth > 64 or not isinstance(node, yaml.MappingNode):
            return
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                here = (*keys, str(k.value))
                out.setdefault(here, k.start_mark.line + 1)
                visit(v, here, depth + 1)

    try:
        visit(yaml.compose(text, Loader=yaml.SafeLoader), (), 0)
    except yaml.YAMLError:
        pass  # safe_load read it; lines are only for messages
    return out


_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")


def _vars_files(folder: Path, name: str) -> list[Path]:
    """Ansible's vars files for a group or host: NAME, NAME.yml/.yaml/.json, or every file in the folder NAME/."""
    out = [folder / (name + sfx) for sfx in _VARS_SUFFIXES if (folder / (name + sfx)).is_file()]
    d = folder / name
    if d.is_dir():
        out += sorted(f for f in d.rglob("*") if f.is_file() and f.suffix in _VARS_SUFFIXES and not f.name.startswith("."))
    return out


def _read_vars_file(path: Path) -> dict[str, Any]:
    try:
        import yaml

        data = _safe_load(yaml, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the vars file: {exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}", hint="fix the syntax of that file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of variables, got {type(data).__name__}")
    return data


def looks_like_ansible(path: Path) -> bool:
    """An inventory file is Ansible's when its content says so (Ansible's names `hosts`, `inventory` have no suffix):
    ``.ini/.yml/.yaml`` always, ``.toml`` never, anything else when it is not TOML with dmsbuild's keys."""
    suffix = path.suffix.lower()
    if suffix in (".ini", ".yml", ".yaml", ".cfg", ".hosts"):
        return True
    if suffix == ".toml":
        return False
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return True
    return not (set(data) & {"boards", "include", "defaults"})


#: ENV: read Ansible inventories through this ``ansible-inventory`` program (exact semantics: dynamic inventory
#: scripts and plugins, vaulted files); ``auto``: the one on PATH, when there is one; ``no``: never run Ansible
#: (not even to evaluate a selected host's templated values: such a host is then refused)
ANSIBLE_INVENTORY_ENV = "DMSBUILD_ANSIBLE_INVENTORY"


def ansible_inventory_program() -> str | None:
    """The ``ansible-inventory`` to use, or None (the built-in parser, which gives the same boards on static files)."""
    import os
    import shutil

    value = os.environ.get(ANSIBLE_INVENTORY_ENV, "")
    if value in ("", "no", "0"):
        return None
    if value == "auto":
        return shutil.which("ansible-inventory")
    return value


def from_ansible_inventory(path: Path, program: str) -> AnsibleInventory:
    """``ansible-inventory -i PATH --list``: Ansible's own reading, turned into the same records and checks."""
    import json
    import os
    import subprocess

    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "ANSIBLE_NOCOLOR": "1"}
    try:
        proc = subprocess.run([program, "-i", str(path), "--list"], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{path}: cannot run {program}: {exc}", hint=f"install ansible-core, or unset {ANSIBLE_INVENTORY_ENV}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and "caused by" not in ln]
        why = next((ln for ln in lines if "Failed to parse" in ln or ln.startswith(("ERROR", "[ERROR]"))), lines[0] if lines else "")
        raise UserError(f"{path}: ansible-inventory refused it: {why[:300]}", hint="fix the inventory (ansible-inventory -i FILE --list)")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise UserError(f"{path}: ansible-inventory printed no JSON") from None
    b = _Builder(path)
    b.read_vars_folders = False
    where = f"{path} (ansible-inventory)"
    hostvars = data.get("_meta", {}).get("hostvars", {})
    for group, body in data.items():
        if group == "_meta" or not isinstance(body, dict):
            continue
        b.group(group, where)
        b.defined.add(group)
        for host in body.get("hosts", []):
            b.host(str(host), group, {}, f"{where}: {group}.hosts.{host}")
        for child in body.get("children", []):
            b.child(group, child, where)
    for host, hvars in hostvars.items():
        if host in b.host_vars:
            b.host_vars[host].update({str(k): (v, f"{where}: hostvars.{host}.{k}") for k, v in hvars.items()})
    return b.build()


def _dynamic(path: Path, text: str) -> bool:
    """An inventory script (executable) or an inventory plugin's config (YAML with a top-level 'plugin:')."""
    import os

    return os.access(path, os.X_OK) or re.search(r"^plugin:\s*\S", text, re.M) is not None


def load_ansible_inventory(path: Path | str) -> AnsibleInventory:
    """Read an Ansible inventory file; YAML for .yml/.yaml (or a ``key:`` first line), INI otherwise.

    With ``$DMSBUILD_ANSIBLE_INVENTORY`` set, ``ansible-inventory`` reads it (see ``from_ansible_inventory``)."""
    path = Path(path)
    program = ansible_inventory_program()
    if program is not None and path.exists():
        return from_ansible_inventory(path, program)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: Ansible inventory not found", hint="check deploy.ansible_inventory or the path given") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the Ansible inventory: {exc}") from None
    if _dynamic(path, text):
        raise UserError(f"{path}: a dynamic inventory (script or plugin); only ansible-inventory can read it",
                        hint=f"install ansible-core and set {ANSIBLE_INVENTORY_ENV}=auto")
    if path.suffix in (".yml", ".yaml"):
        return parse_yaml(text, path)
    if path.suffix in (".ini", ".cfg", ".hosts"):
        return parse_ini(text, path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("#", ";"))), "")
    if first.startswith("---") or re.match(r"^[\w.-]+:\s*$", first):
        return parse_yaml(text, path)
    return parse_ini(text, path)


def ansible_program(name: str = "ansible") -> str | None:
    """Ansible's ``name`` command: beside the program $DMSBUILD_ANSIBLE_INVENTORY names, else on PATH, else beside
    this Python (a virtual environment's bin/); None where ansible-core is not installed or
    $DMSBUILD_ANSIBLE_INVENTORY is ``no``."""
    import os
    import shutil
    import sys

    value = os.environ.get(ANSIBLE_INVENTORY_ENV, "")
    if value in ("no", "0"):
        return None
    if value not in ("", "auto"):
        beside = Path(value).parent / name
        if os.access(beside, os.X_OK):
            return str(beside)
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if os.access(beside, os.X_OK) else None


#: what Ansible's `minimal` callback prints first for each host of an ad-hoc run
_ADHOC_RESULT_RE = re.compile(r"^(\S+) \| (SUCCESS|FAILED!|UNREACHABLE!|SKIPPED)(?: => )?", re.M)


def resolve_templates(inv: AnsibleInventory, names: list[str]) -> dict[str, "ImportedBoard | UserError"]:
    """The hosts ``names`` (each a problem with templated variables) with their templates evaluated by Ansible.

    ``ansible-inventory --list`` prints templated variables as written (checked with ansible-core 2.19: an
    ``ansible_host="{{ addr }}"`` stays ``{{ addr }}``), so Ansible's own templating is asked instead:
    ``ansible -i FILE HOSTS -m ansible.builtin.debug``, an action that runs on this machine and connects to no
    host, printing each needed variable through ``lookup('vars', ...)``. The values then go through the same
    checks as literal ones. A host Ansible cannot evaluate (an undefined variable) is that host's error."""
    import json
    import os
    import subprocess

    problems = [inv.problems[n] for n in names]
    program = ansible_program()
    if program is None or not problems:
        return {p.name: UserError(
            f"{str(p.error).splitlines()[0].split('; Ansible evaluates')[0]}; only Ansible evaluates templates, and "
            f"ansible-core is not installed (or ${ANSIBLE_INVENTORY_ENV}=no)",
            hint=f"pip install ansible-core, or write the value of {next(iter(p.templated))} in {inv.source}")
            for p in problems}
    wanted = sorted({v for p in problems for v in p.templated})
    expr = "{{ {" + ", ".join(f"{v!r}: lookup('vars', {v!r}, default='')" for v in wanted) + "} }}"
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "minimal", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_DEPRECATION_WARNINGS": "0", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "PYTHONWARNINGS": "ignore"}
    argv = [program, "-i", str(inv.source), ":".join(names), "-m", "ansible.builtin.debug", "-a", f"msg={expr}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300,
                              cwd=inv.source.parent)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {p.name: UserError(f"{inv.source}: cannot run {program} to evaluate templated values: {exc}",
                                  hint="check the ansible-core installation") for p in problems}
    results: dict[str, tuple[str, Any]] = {}
    decoder = json.JSONDecoder()
    for m in _ADHOC_RESULT_RE.finditer(proc.stdout):
        try:
            body, _ = decoder.raw_decode(proc.stdout, m.end())
        except json.JSONDecodeError:
            body = {}
        results[m.group(1)] = (m.group(2), body)
    out: dict[str, ImportedBoard | UserError] = {}
    for p in problems:
        var, where = next(iter(p.templated.items()))
        status, body = results.get(p.name, ("", {}))
        msg = body.get("msg") if isinstance(body, dict) else None
        if status != "SUCCESS" or not isinstance(msg, dict):
            why = msg if isinstance(msg, str) else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            out[p.name] = UserError(f"{where}: Ansible could not evaluate '{var}' of host '{p.name}': {str(why)[:300]}",
                                    hint=f"fix the template in {inv.source} (check: {program} -i {inv.source} {p.name} "
                                    f"-m debug -a var={var})")
            continue
        merged = dict(p.merged)
        for v in p.templated:
            merged[v] = (msg.get(v), f"{merged[v][1]} (evaluated by Ansible)")
            if merged[v][0] in ("", None):  # Ansible's value is empty: as if the variable were not set
                del merged[v]
        try:
            out[p.name] = _Builder(inv.source)._record(p.name, merged, p.groups)
        except UserError as exc:
            out[p.name] = exc
    return out


def without(inv: AnsibleInventory, name: str, var: str) -> "ImportedBoard | HostProblem":
    """Problem host ``name`` recorded again without variable ``var`` (one the deploy does not need); it stays a
    problem (``inv.problems`` updated) when something else is wrong or still templated."""
    prob = inv.problems[name]
    merged = {k: v for k, v in prob.merged.items() if k != var}
    try:
        rec = _Builder(inv.source)._record(name, merged, prob.groups)
    except UserError as exc:
        inv.problems[name] = HostProblem(name, prob.groups, exc, merged)
        return inv.problems[name]
    del inv.problems[name]
    inv.boards[name] = rec
    return rec
