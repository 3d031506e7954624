"""The boards inventory: which boards a target deploys to and how to reach them.

The inventory is a TOML file (``targets/inventory.toml`` by default)::

    # optional: more inventory files merged in (missing file = a clear error)
    include = ["artifacts/boards/inventory.toml"]

    [defaults]                 # applied to every board of THIS file
    user = "dms"
    known_hosts = "~/.ssh/known_hosts"

    [[boards]]
    name = "rpi5-01"           # NAME_RE: letters, digits, '._-'
    groups = ["rpi5"]          # targets (deploy.group) this board serves
    host = "rpi5-01.lab"       # an address or a ~/.ssh/config Host alias
    port = 22
    identity_file = "~/.ssh/id_ed25519"
    host_key = "ssh-ed25519 AAAA..."   # pinned key (or rely on known_hosts)
    trust_on_first_use = false
    root = "/opt/dmsbuild"     # overrides the profile's deploy.root
    python = "python3"

Which file is read (first hit wins): the doit variable ``inventory=FILE``, the
environment variable ``DMSBUILD_INVENTORY``, the profile's ``deploy.inventory``.

An **Ansible inventory** (a file ending ``.ini``, ``.yml`` or ``.yaml``) is read
with ``dmsbuild.ship.ansible``: as the inventory itself, or named in a TOML file's
``include``, in which case that TOML file's ``[defaults]`` apply to the imported
boards too (the way to give them ``known_hosts``, ``trust_on_first_use``,
``root`` or ``python``, which Ansible has no field for). Host keys stay strict:
without a ``known_hosts`` default, ``~/.ssh/config`` UserKnownHostsFile, then
``~/.ssh/known_hosts`` are checked, exactly as for TOML boards.
The committed ``targets/inventory.toml`` includes the file that
``python -m dmsbuild.boards up`` writes, so the targets rpi5, orin and qcs8255
deploy to the emulated boards unchanged.

A board the inventory describes but dmsbuild cannot deploy to as written (a
bad field, an Ansible host with ``ansible_connection=local`` or a templated
value) is a ``Problem``, not a refusal of the file: a deploy that does not
select it prints one warning line (file and line) and goes on; a deploy that
selects it stops with that board's error (``Inventory.choose``). Templated
values of the selected Ansible hosts are evaluated by Ansible itself when
ansible-core is installed (``ansible.resolve_templates``).

No password is ever read from here (there is no field for one): keys come
from ``identity_file``, ``~/.ssh/config`` IdentityFile, the default key files
and ssh-agent. This module is imported by doit task generators, so it uses the
standard library only; ``~/.ssh/config`` is applied in ``transport/ssh.py``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import NAME_RE, TargetProfile, load_dataclass, read_toml
from ..errors import UserError, first_line

ENV_VAR = "DMSBUILD_INVENTORY"
#: file endings read as Ansible inventories (INI or YAML)
ANSIBLE_SUFFIXES = (".ini", ".yml", ".yaml")
#: host names / ssh-config aliases / user names: no shell or path metacharacters
HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:%-]{0,252}$")
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
#: board-side and host-side paths: no shell metacharacters, no '..'
PATH_RE = re.compile(r"^[A-Za-z0-9_./~{}+-]+$")
#: a pinned host key: "<type> <base64>"
HOST_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|rsa-sha2-(256|512)) [A-Za-z0-9+/=]+$")
#: ProxyJump: [user@]host[:port][,[user@]host[:port]...]
JUMP_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*@)?[A-Za-z0-9_.%-]+(:\d{1,5})?(,([A-Za-z_][A-Za-z0-9_.-]*@)?[A-Za-z0-9_.%-]+(:\d{1,5})?)*$")


@dataclass
class BoardDefaults:
    """Fields every board of one inventory file inherits unless it sets them."""

    groups: list[str] | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    trust_on_first_use: bool | None = None
    root: str | None = None
    python: str | None = None
    proxy_jump: str | None = None
    ssh_args: list[str] | None = None
    connect_timeout: float | None = None
    connect_retries: int | None = None
    io_timeout: float | None = None


@dataclass
class Board:
    """One board. Unset SSH fields fall back to ~/.ssh/config, then OpenSSH defaults."""

    #: unique board name: letters, digits, '._-' (no shell characters, no '..')
    name: str
    #: groups (targets) the board serves; a target deploys to the boards of its ``deploy.group``
    groups: list[str] = field(default_factory=list)
    #: address or ~/.ssh/config alias; defaults to the board name
    host: str | None = None
    #: SSH port; unset: ~/.ssh/config, else 22
    port: int | None = None
    #: SSH user; unset: ~/.ssh/config, else your login name
    user: str | None = None
    #: private key file; unset: ~/.ssh/config IdentityFile, else OpenSSH's default keys (never a password)
    identity_file: str | None = None
    #: known_hosts file checked for the board's host key (default: ~/.ssh/config UserKnownHostsFile, then ~/.ssh/known_hosts)
    known_hosts: str | None = None
    #: pinned host key "ssh-ed25519 AAAA..." (checked in addition to known_hosts)
    host_key: str | None = None
    #: accept and record an unknown host key; a CHANGED key is always refused
    trust_on_first_use: bool = False
    #: deploy root on this board (overrides the profile's deploy.root); "{target}" is replaced by the target name
    root: str | None = None
    #: the board's Python (runs board facts, the release agent and the benchmark)
    python: str = "python3"
    #: jump hosts like ``ssh -J``: ``[user@]host[:port]``, comma-separated hops
    proxy_jump: str | None = None
    #: more ssh command-line options for ``ssh -G`` (``-o Key=Value``, ``-J``, ``-p``, ``-l``, ``-i``; see docs/ssh.md)
    ssh_args: list[str] = field(default_factory=list)
    #: seconds per connection attempt (TCP connect, then SSH banner); unset: ~/.ssh/config ConnectTimeout, else 10
    connect_timeout: float | None = None
    #: connection attempts, with backoff 0.5 s, 1 s, 2 s ... (not retried on authentication or host-key errors)
    connect_retries: int = 3
    #: seconds an open connection may make no progress (a dead link, a hung board) before the board fails
    io_timeout: float = 60.0
    #: "ssh" for inventory boards; "local" only for the embedded default target
    transport: str = field(default="ssh", init=False)
    source: str = field(default="", init=False)
    #: connection attempts this deploy already made to the board and found no server (its resume check's): they
    #: count in ``connect_retries`` and in the failure's message, so a frozen board costs connect_retries attempts
    prior_attempts: int = field(default=0, init=False)

    def validate(self, source: str, prefix: str) -> None:
        where = f"{prefix}.name" if prefix else "name"
        if not NAME_RE.match(self.name):
            raise UserError(
                f"{source}: board name {self.name!r} ({where}) is not allowed; use letters, digits, "
                "'.', '_' or '-' (no spaces, slashes, '..' or shell characters)",
                hint=f"rename the board in {source}",
            )
        if ".." in self.name:
            raise UserError(f"{source}: board name {self.name!r} contains '..'", hint=f"rename the board in {source}")
        label = f"board '{self.name}'"
        for g in self.groups:
            if not NAME_RE.match(g):
                raise UserError(f"{source}: {label}: group {g!r} is not a valid target name", hint=f"fix 'groups' in {source}")
        if self.host is not None and not HOST_RE.match(self.host):
            raise UserError(
                f"{source}: {label}: field 'host' is {self.host!r}; expected a host name, address or ~/.ssh/config alias "
                "without spaces or shell characters",
                hint=f"fix 'host' of {label} in {source}",
            )
        if self.user is not None and not USER_RE.match(self.user):
            raise UserError(f"{source}: {label}: field 'user' is {self.user!r}; expected a plain user name", hint=f"fix 'user' in {source}")
        if self.port is not None and not 0 < self.port < 65536:
            raise UserError(f"{source}: {label}: field 'port' is {self.port}; expected 1..65535")
        for fname in ("identity_file", "known_hosts", "root", "python"):
            value = getattr(self, fname)
            if value is not None:
                check_path(value, f"{label}: field '{fname}'", source)
        if self.root is not None and not self.root.startswith(("/", "~")):
            raise UserError(f"{source}: {label}: field 'root' is {self.root!r}; expected an absolute path", hint=f"fix 'root' in {source}")
        if self.host_key is not None and not HOST_KEY_RE.match(self.host_key.strip()):
            raise UserError(
                f"{source}: {label}: field 'host_key' is not '<type> <base64>' (e.g. the 2nd and 3rd words of a known_hosts line)",
                hint="copy it from `ssh-keyscan -t ed25519 HOST`",
            )
        if self.proxy_jump is not None and not JUMP_RE.match(self.proxy_jump):
            raise UserError(f"{source}: {label}: field 'proxy_jump' is {self.proxy_jump!r}; expected [user@]host[:port][,...]")
        if self.ssh_args:
            from ..transport.sshconfig import parse_ssh_args

            where = f"{source}: {label}: field 'ssh_args'"
            self.ssh_args, ignored = parse_ssh_args(self.ssh_args, where)
            if ignored:
                raise UserError(f"{where}: {ignored[0][0]} would be ignored ({ignored[0][1]})", hint=f"remove it from {source}")
        if self.connect_retries < 1 or (self.connect_timeout is not None and self.connect_timeout <= 0) or self.io_timeout <= 0:
            raise UserError(f"{source}: {label}: connect_retries must be >= 1, connect_timeout and io_timeout > 0",
                            hint=f"fix {label} in {source}")

    @property
    def address(self) -> str:
        return self.host or self.name

    def deploy_root(self, profile: TargetProfile) -> str:
        """The board's deploy root for ``profile`` (board override, else the profile's)."""
        root = (self.root or profile.deploy.root).replace("{target}", profile.name)
        check_path(root, f"board '{self.name}': deploy root", self.source or str(profile.source))
        return root


def check_path(value: str, where: str, source: str) -> None:
    """Reject paths a shell or a '..' could turn into something else."""
    if not PATH_RE.match(value) or ".." in Path(value).parts or value.startswith("-"):
        raise UserError(
            f"{source}: {where} is {value!r}; paths may hold letters, digits and '._-/~+' only, without '..'",
            hint=f"fix that path in {source}",
        )


@dataclass
class InventoryFile:
    #: more inventory files merged into this one (TOML, or Ansible ``.ini``/``.yml``/``.yaml``); board names must be unique
    include: list[str] = field(default_factory=list)
    #: fields every board of this file (and of the Ansible files it includes) inherits unless it sets them
    defaults: BoardDefaults = field(default_factory=BoardDefaults)
    #: the boards, one ``[[boards]]`` table each
    boards: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Problem:
    """A board of the inventory that cannot be deployed to as written: refused only when a deploy selects it."""

    name: str
    groups: tuple[str, ...]
    #: the error, its first line starting with the file (and line) to fix
    error: UserError
    source: str
    #: an Ansible host with templated values: (its AnsibleInventory, the including file's [defaults], project root)
    ansible: tuple[Any, dict[str, Any], Path] | None = None


@dataclass
class Inventory:
    path: Path
    boards: dict[str, Board]
    #: what was read but ignored, one line each with why (an Ansible inventory's variables): printed once per deploy
    notes: list[str] = field(default_factory=list)
    #: boards that cannot be deployed to as written (name -> problem): judged only when a deploy selects them
    problems: dict[str, Problem] = field(default_factory=dict)

    def choose(self, group: str, hosts: str | None = None, groups: str | None = None,
               commands: str = "warn") -> tuple[list[Board], list[str]]:
        """The boards a deploy of ``group`` narrowed by ``hosts=``/``groups=`` reaches, and one line for each board
        it leaves out that has a problem (or whose templates Ansible evaluated). A problem of a selected board
        stops the deploy with that board's error and where it is. A selected board whose inventory ssh options run
        a command here (ProxyCommand) is one line each (``commands="warn"``) or stops the deploy (``"refuse"``:
        the profile's ``deploy.inventory_commands``)."""
        from .fleet import BoardRef, select_boards
        from ..core.rollout_spec import split_hosts

        members = self.for_group(group)
        broken = [p for p in self.problems.values() if group in p.groups]
        for name in (h for h in split_hosts(hosts or "") if not any(c in h for c in "*?[]")):
            if name in self.problems and name not in self.boards:
                if group not in self.problems[name].groups:
                    raise UserError(f"board '{name}': not in group '{group}' (its groups: "
                                    f"{', '.join(self.problems[name].groups) or 'none'}) in {self.problems[name].source}",
                                    hint=f"add '{group}' to its groups or pick a board of that group")
            else:
                self.select(group, [name])  # a name that is not a board of the target: the inventory's own message
        if not members and not broken:
            self.select(group)
        refs = [BoardRef(b.name, b.address, b.port, b.user, None, tuple(b.groups)) for b in members]
        refs += [BoardRef(p.name, p.name, None, None, None, p.groups) for p in broken]
        chosen = {r.name for r in select_boards(refs, hosts, groups)}
        lines: list[str] = []
        fixed: dict[str, Board] = {}
        errors: dict[str, UserError] = {}
        pending: dict[int, tuple[Any, dict[str, Any], Path, str, list[str]]] = {}
        for p in broken:
            if p.name in chosen and p.ansible is not None:
                inv, defaults, root = p.ansible
                pending.setdefault(id(inv), (inv, defaults, root, p.source, []))[4].append(p.name)
        if pending:
            from .ansible import ansible_program, resolve_templates

            program = ansible_program()
            for inv, defaults, root, src, names in pending.values():
                if program is not None:
                    lines.append(f"{src}: templated values of {', '.join(names)} evaluated by Ansible "
                                 f"({program} -m debug: runs here, contacts no board)")
                for name, rec in resolve_templates(inv, names).items():
                    try:
                        if isinstance(rec, UserError):
                            raise rec
                        fixed[name] = imported_board(rec, defaults, src, root)
                    except UserError as exc:
                        errors[name] = exc
        for p in self.problems.values():
            if p.name not in chosen:
                lines.append(f"{first_line(p.error)} (board '{p.name}' is not in this deploy: skipped)")
            elif p.name not in fixed:
                err = errors.get(p.name, p.error)
                raise UserError(first_line(err), hint=f"board '{p.name}' is in group(s) {', '.join(p.groups)} of {p.source}; "
                                f"fix it there, or leave it out (hosts=, groups=)" + (f"; {err.hint}" if err.hint else ""))
        order = {n: i for i, n in enumerate([*self.boards, *self.problems])}
        boards = sorted([*(b for b in members if b.name in chosen), *fixed.values()], key=lambda b: order[b.name])
        from ..transport.sshconfig import local_commands

        for b in boards:
            for cmd in local_commands(b.ssh_args):
                if commands == "refuse":
                    raise UserError(f"inventory {b.source} runs a local command for board '{b.name}' ({cmd}); refused: "
                                    "the profile sets deploy.inventory_commands = \"refuse\"",
                                    hint=f"remove it from {b.source}, or allow it: deploy.inventory_commands = \"warn\"")
                lines.append(f"inventory {b.source} runs a local command for board '{b.name}': {cmd}")
        return boards, lines

    def for_group(self, group: str) -> list[Board]:
        return [b for b in self.boards.values() if group in b.groups]

    def select(self, group: str, hosts: list[str] | None = None) -> list[Board]:
        """The boards of ``group``, or the named ones (which must exist and be in the group)."""
        if not hosts:
            boards = self.for_group(group)
            if not boards:
                raise UserError(
                    f"{self.path}: no board is in group '{group}'",
                    hint="add a board with that group to the inventory, or start emulated boards: python -m dmsbuild.boards up",
                )
            return boards
        chosen = []
        for name in hosts:
            board = self.boards.get(name)
            if board is None and name in self.problems:  # named, so judged: its own error
                prob = self.problems[name]
                raise UserError(first_line(prob.error), hint=f"board '{name}' is in group(s) {', '.join(prob.groups)} of "
                                f"{prob.source}; fix it there" + (f"; {prob.error.hint}" if prob.error.hint else ""))
            if board is None:
                known = ", ".join(sorted(b.name for b in self.for_group(group))) or "none"
                raise UserError(
                    f"board '{name}': not in the inventory {self.path}; boards of group '{group}': {known}",
                    hint="check the hosts= list or add the board to the inventory",
                )
            if group not in board.groups:
                raise UserError(
                    f"board '{name}': not in group '{group}' (its groups: {', '.join(board.groups) or 'none'}) in {board.source}",
                    hint=f"add '{group}' to its groups or pick a board of that group",
                )
            chosen.append(board)
        return chosen


def resolve_path(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def load_inventory(path: Path, project_root: Path, _seen: tuple[Path, ...] = ()) -> Inventory:
    """Read an inventory file and the files it includes; board names must be unique."""
    try:
        path = path.resolve() if path.exists() else path
    except OSError as exc:  # e.g. a name too long, a loop of symlinks
        raise UserError(f"{path}: cannot open the inventory: {exc.strerror or exc}", hint="check the path (or 'include')") from None
    if path in _seen:
        raise UserError(f"{path}: included twice (include loop)", hint="remove the circular 'include'")
    if not _is_file(path):
        generated = "artifacts/boards/inventory.toml"
        raise UserError(
            f"{path}: inventory file not found",
            hint=(
                "start the emulated boards (python -m dmsbuild.boards up) if this is their generated inventory, "
                f"or write an inventory (see docs/boards.md, 'The inventory'); included files like {generated} are created by `boards up`"
            ),
        )
    src = str(path)
    from .ansible import looks_like_ansible

    if looks_like_ansible(path):
        notes: list[str] = []
        problems: dict[str, Problem] = {}
        return Inventory(path=path, boards=ansible_boards(path, project_root, notes=notes, problems=problems), notes=notes,
                         problems=problems)
    data = load_dataclass(InventoryFile, read_toml(path), src)
    boards: dict[str, Board] = {}
    notes = []
    problems = {}
    defaults = {k: v for k, v in vars(data.defaults).items() if v is not None}
    for inc in data.include:
        check_path(inc, "field 'include'", src)
        inc_path = resolve_path(inc, project_root)
        if inc_path.suffix.lower() in ANSIBLE_SUFFIXES or (_is_file(inc_path) and looks_like_ansible(inc_path)):
            if not inc_path.is_file():
                raise UserError(f"{src}: included Ansible inventory {inc_path} not found", hint=f"fix 'include' in {src}")
            _merge(boards, ansible_boards(inc_path.resolve(), project_root, defaults, notes, problems), src, problems)
            continue
        if not _is_file(inc_path):  # found by fuzzing: the error named only the missing file, not who included it
            raise UserError(f"{src}: field 'include' names {inc!r} ({inc_path}): inventory file not found",
                            hint=f"fix 'include' in {src}; included files like artifacts/boards/inventory.toml "
                                 "are created by `python -m dmsbuild.boards up`")
        sub = load_inventory(inc_path, project_root, (*_seen, path))
        notes += sub.notes
        for name, prob in sub.problems.items():
            if name in boards or name in problems:
                raise UserError(f"{src}: board '{name}' is defined twice (in {prob.source})",
                                hint="board names must be unique across the inventory and its includes")
            problems[name] = prob
        _merge(boards, sub.boards, src, problems)
    own: dict[str, Board] = {}
    lines = _board_lines(path)
    for i, raw in enumerate(data.boards):
        merged = {**defaults, **raw}
        try:
            board = load_dataclass(Board, merged, src, prefix=f"boards[{i}]")
        except UserError as exc:  # this board only, when it has a name and groups to judge it by
            name, grp = merged.get("name"), merged.get("groups", [])
            if not isinstance(name, str) or not isinstance(grp, list) or not all(isinstance(g, str) for g in grp):
                raise
            if name in own or name in problems:
                raise UserError(f"{src}: board '{name}' is listed twice", hint="give every board a unique name") from None
            at = f"{src}:{lines[i]}" if i < len(lines) else src
            text = first_line(exc)
            problems[name] = Problem(name, tuple(grp), UserError(f"{at}: {text.removeprefix(src + ': ')}", hint=exc.hint), src)
            continue
        board.source = src
        if board.identity_file:
            board.identity_file = str(resolve_path(board.identity_file, project_root))
        if board.known_hosts:
            board.known_hosts = str(resolve_path(board.known_hosts, project_root))
        if board.name in own or board.name in problems:
            raise UserError(f"{src}: board '{board.name}' is listed twice", hint="give every board a unique name")
        own[board.name] = board
    _merge(boards, own, src, problems)
    return Inventory(path=path, boards=boards, notes=notes, problems=problems)


def _board_lines(path: Path) -> list[int]:
    """The line of each ``[[boards]]`` header of a TOML inventory, in order (for messages)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return [i for i, line in enumerate(text.splitlines(), start=1) if re.match(r"^\s*\[\[\s*boards\s*\]\]", line)]


def ansible_boards(path: Path, project_root: Path, defaults: dict[str, Any] | None = None,
                   notes: list[str] | None = None, problems: dict[str, Problem] | None = None) -> dict[str, Board]:
    """Boards of an Ansible INI/YAML inventory, validated like TOML boards.

    Its groups, ``ansible_host``/``port``/``user``/``ssh_private_key_file``,
    ``ansible_python_interpreter`` and ``dmsbuild_root`` fill the board;
    ``defaults`` (the including TOML file's ``[defaults]``) fill the rest.
    A host that cannot be a board as written goes to ``problems``; a templated
    ``ansible_python_interpreter`` is not needed where ``defaults`` set ``python``.
    """
    from .ansible import load_ansible_inventory, without

    src = str(path)
    defaults = defaults or {}
    inv = load_ansible_inventory(path)
    if notes is not None:
        notes += [f"{src}: {n}" for n in inv.notes]
    if defaults.get("python"):
        unneeded = [n for n, p in inv.problems.items() if "ansible_python_interpreter" in p.templated]
        for name in unneeded:
            without(inv, name, "ansible_python_interpreter")
        if unneeded and notes is not None:
            notes.append(f"{src}: templated ansible_python_interpreter of {', '.join(unneeded)} not used: "
                         f"the board's Python is [defaults] python = {defaults['python']}")
    out: dict[str, Board] = {}
    sink: dict[str, Problem] = problems if problems is not None else {}
    for name, prob in inv.problems.items():  # an ungrouped host takes the default groups, as a board would
        groups = prob.groups or tuple(defaults.get("groups") or ())
        sink[name] = Problem(name, groups, prob.error, src, (inv, defaults, project_root) if prob.templated else None)
    for rec in inv.boards.values():
        try:
            out[rec.name] = imported_board(rec, defaults, src, project_root)
        except UserError as exc:
            sink[rec.name] = Problem(rec.name, tuple(rec.groups), exc, src)
    if problems is None and sink:  # a caller that cannot judge per board: the first problem refuses the file
        raise next(iter(sink.values())).error
    return out


def imported_board(rec: Any, defaults: dict[str, Any], src: str, project_root: Path) -> Board:
    """One Ansible host record as a Board (``defaults``: the including TOML file's [defaults])."""
    own = {"name": rec.name, "host": rec.host, "port": rec.port, "groups": list(rec.groups), "user": rec.user,
           "identity_file": rec.identity_file, "python": rec.python, "root": rec.root,
           "ssh_args": [*defaults.get("ssh_args", []), *rec.ssh_args] or None}
    merged = {**defaults, **{k: v for k, v in own.items() if v is not None}}
    if not rec.groups and defaults.get("groups"):
        merged["groups"] = list(defaults["groups"])  # an ungrouped Ansible host takes the default groups
    board = load_dataclass(Board, merged, src, prefix=f"host {rec.name}")
    board.source = src
    if board.identity_file:
        board.identity_file = str(resolve_path(board.identity_file, project_root))
    if board.known_hosts:
        board.known_hosts = str(resolve_path(board.known_hosts, project_root))
    return board


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _merge(into: dict[str, Board], new: dict[str, Board], src: str, problems: dict[str, Problem] | None = None) -> None:
    for name, board in new.items():
        if name in (problems or {}) and problems is not None and problems[name].source != board.source:
            raise UserError(f"{src}: board '{name}' is defined in both {problems[name].source} and {board.source}",
                            hint="board names must be unique across the inventory and its includes")
        if name in into:
            raise UserError(
                f"{src}: board '{name}' is defined in both {into[name].source} and {board.source}",
                hint="board names must be unique across the inventory and its includes",
            )
        into[name] = board


def inventory_path(project_root: Path, profile: TargetProfile, override: str | None = None) -> Path:
    """Which inventory a deploy reads: ``inventory=`` doit var, $DMSBUILD_INVENTORY, profile deploy.inventory."""
    value = override or os.environ.get(ENV_VAR) or profile.deploy.inventory
    return resolve_path(value, project_root)


def local_board(project_root: Path, profile: TargetProfile, python: str) -> Board:
    """The embedded default target's 'board': a folder on this machine."""
    root = resolve_path(profile.deploy.root.replace("{target}", profile.name), project_root)
    board = Board(name=profile.name, groups=[profile.name], root=str(root), python=python)
    board.transport = "local"
    board.source = str(profile.source)
    return board
