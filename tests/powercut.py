"""A power-cut model for the board's release agent (issue 25, item 3): what a deploy leaves after a crash at any step.

The real agent (``dmsbuild/board/release_agent.py``) runs in-process on a real folder; its module globals
``os``, ``shutil`` and ``open`` are replaced by recording stand-ins that do the real call and log, in order,
what it changes: a directory entry set or removed (create, mkdir, link, symlink, rename, unlink, rmdir, and
``shutil.rmtree`` spelled out entry by entry), a file written (open for writing, write, ftruncate, pwrite) and
an fsync (of a file: its content then; of a folder). The log is kept per inode, resolved against a live model
of the tree as each call happens, so replaying any subset of it is well defined.

The durability model (strict POSIX, weaker than ext4's ``data=ordered``):

- **file content** survives a crash only as it was at the file's last fsync; a file written after its last
  fsync (or never fsynced since it was created) comes back *torn* (content matching no sha256);
- **a directory entry change** (a new name, a removed name, a rename within one folder as one atomic unit)
  is durable once the folder holding it was fsynced after it; a rename across folders is two changes, each
  durable with its own folder's fsync;
- a change not yet durable **may or may not survive**: for a crash after operation ``k`` the model builds the
  disk for none surviving, every prefix of them in the order they were made (an ordered journal: none ...
  all), and, among the changes that can decide what ``current`` shows (the ``current`` entry, ``releases/``
  and everything below it), every subset (when there are at most ``EXHAUSTIVE`` of them; past that the
  prefixes, each one alone, all but each one, and ``SAMPLES`` seeded random subsets);
- what was on disk when recording started is durable (the board was synced since its last deploy); an inode's
  metadata (a symlink's target, a folder's existence) is durable with the entry that names it.

What it does not model: a disk's volatile write cache or firmware that ignores flushes, torn sectors inside an
fsynced file, a file system that loses fsynced data, a crash *inside* one system call (each call is atomic here),
and the host side beyond its upload (written and closed, never fsynced, like sftp's).
"""
from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
import stat
from dataclasses import dataclass, field
from typing import Any, Iterator

from dmsbuild.board import release_agent as agent

#: content of a file written after its last fsync, after a crash (matches no sha256)
TORN = "torn"
TORN_BYTES = b"\0torn by a power cut\0"
#: every subset of the pending changes that decide ``current`` is checked up to this many of them
EXHAUSTIVE = 12
#: past that, this many seeded random subsets (plus prefixes, singles and all-but-one)
SAMPLES = 256

_real_open = open


@dataclass
class Unit:
    """One atomic directory change: ``changes`` ((name, inode or None), ...) in folder ``dir`` made by operation ``op``."""
    op: int
    seq: int  # its place in the log (one operation may make two units)
    dir: int
    changes: tuple[tuple[str, int | None], ...]
    what: str


@dataclass
class Recorder:
    """Records what the agent changes below ``anchor`` (the deploy root's parent), operation by operation."""
    anchor: str
    kinds: dict[int, str] = field(default_factory=dict)  # inode -> "dir" | "file" | "link"
    targets: dict[int, str] = field(default_factory=dict)  # symlink inode -> its target
    initial: dict[int, dict[str, int]] = field(default_factory=dict)  # folder inode -> entries, when recording began
    initial_content: dict[int, str] = field(default_factory=dict)  # file inode -> sha256 when recording began
    live: dict[int, dict[str, int]] = field(default_factory=dict)  # folder inode -> entries now
    ops: list[str] = field(default_factory=list)  # operation i, in words
    units: list[Unit] = field(default_factory=list)
    dir_syncs: dict[int, list[int]] = field(default_factory=dict)  # folder inode -> ops that fsynced it
    content: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # file inode -> [(op, sha256 | TORN)]
    blobs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes (for materialising an image)
    relevant_dirs: set[int] = field(default_factory=set)  # releases/ and every folder ever below it
    fds: dict[int, str] = field(default_factory=dict)
    top: int = 0
    _next: int = 0

    # ------------------------------------------------------------ the live model
    def new(self, kind: str) -> int:
        self._next += 1
        self.kinds[self._next] = kind
        if kind == "dir":
            self.live[self._next] = {}
        return self._next

    def snapshot(self) -> None:
        """Everything below ``anchor`` now is durable: the starting point of every crash image."""
        seen: dict[tuple[int, int], int] = {}

        def walk(path: str) -> int:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                ino = self.new("dir")
                for name in sorted(os.listdir(path)):
                    self.live[ino][name] = walk(os.path.join(path, name))
                return ino
            if stat.S_ISLNK(st.st_mode):
                ino = self.new("link")
                self.targets[ino] = os.readlink(path)
                return ino
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen[key] = self.new("file")
                with _real_open(path, "rb") as fh:
                    self.initial_content[seen[key]] = self.blob(fh.read())
            return seen[key]

        self.top = walk(self.anchor)
        self.initial = {d: dict(e) for d, e in self.live.items()}
        self.relevant_dirs = set()
        rel = self.lookup(os.path.join(self.anchor, ROOT_NAME, "releases"))
        if rel is not None:
            self.mark_relevant(rel)

    def mark_relevant(self, ino: int) -> None:
        if self.kinds.get(ino) == "dir":
            self.relevant_dirs.add(ino)
            for child in self.live[ino].values():
                self.mark_relevant(child)

    def blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def split(self, path: str) -> tuple[int, str]:
        """(folder inode, name) of ``path`` in the live model; a path outside ``anchor`` is a bug in the test."""
        rel = os.path.relpath(os.path.abspath(path), self.anchor)
        if rel == "." or rel.startswith(".."):
            raise AssertionError(f"power-cut model: the agent changed {path}, outside {self.anchor}")
        parts = rel.split(os.sep)
        d = self.top
        for p in parts[:-1]:
            d = self.live[d][p]
            if self.kinds[d] != "dir":
                raise AssertionError(f"power-cut model: {path} goes through a non-folder")
        return d, parts[-1]

    def lookup(self, path: str) -> int | None:
        if os.path.abspath(path) == self.anchor:
            return self.top
        try:
            d, name = self.split(path)
        except (KeyError, AssertionError):
            return None
        return self.live[d].get(name)

    def op(self, what: str) -> int:
        self.ops.append(what)
        return len(self.ops) - 1

    def change(self, i: int, d: int, changes: tuple[tuple[str, int | None], ...], what: str) -> None:
        for name, ino in changes:
            if ino is None:
                self.live[d].pop(name, None)
            else:
                self.live[d][name] = ino
                if d in self.relevant_dirs or (d == self.root_id() and name == "releases"):
                    self.mark_relevant(ino)
        self.units.append(Unit(i, len(self.units), d, changes, what))

    def root_id(self) -> int | None:
        return self.live[self.top].get(ROOT_NAME)

    def dirty(self, ino: int, i: int) -> None:
        self.content.setdefault(ino, []).append((i, TORN))

    # ------------------------------------------------------------ what the agent calls
    def created(self, path: str, what: str) -> int:
        """A file opened for writing: created if missing, then dirty."""
        d, name = self.split(path)
        ino = self.live[d].get(name)
        if ino is None:
            ino = self.new("file")
            i = self.op(f"create {self.rel(path)}")
            self.change(i, d, ((name, ino),), f"create {self.rel(path)}")
        self.dirty(ino, self.op(f"{what} {self.rel(path)}"))
        return ino

    def rel(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.anchor)

    def fsync(self, path: str) -> None:
        ino = self.lookup(path)
        if ino is None:
            raise AssertionError(f"power-cut model: fsync of {path}, which the model does not know")
        i = self.op(f"fsync {self.rel(path)}")
        if self.kinds[ino] == "dir":
            self.dir_syncs.setdefault(ino, []).append(i)
        else:
            with _real_open(path, "rb") as fh:
                self.content.setdefault(ino, []).append((i, self.blob(fh.read())))


ROOT_NAME = "dms"


class _File:
    """A file object whose writes mark its inode dirty (everything else is the real file's: flush too, so
    not an ``io.IOBase``, whose own flush would do nothing)."""

    def __init__(self, rec: Recorder, fh: Any, path: str) -> None:
        self._rec, self._fh, self._path = rec, fh, path

    def write(self, data: Any) -> int:
        n = self._fh.write(data)
        self._rec.created(self._path, "write")
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "_File":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._fh.close()

    def __iter__(self) -> Any:
        return iter(self._fh)


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class RecordingOS:
    """``os`` for the agent: the real calls, with what they change recorded in ``rec``."""

    def __init__(self, rec: Recorder) -> None:
        self._rec = rec

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @property
    def path(self) -> Any:
        return os.path

    def open(self, path: str, flags: int, mode: int = 0o777, **kw: Any) -> int:
        fd = os.open(path, flags, mode, **kw)
        self._rec.fds[fd] = path
        if flags & WRITE_FLAGS:
            self._rec.created(path, "open for writing")
        return fd

    def fdopen(self, fd: int, mode: str = "r", *a: Any, **kw: Any) -> Any:
        fh = os.fdopen(fd, mode, *a, **kw)
        return _File(self._rec, fh, self._rec.fds[fd]) if any(c in mode for c in "wax+") else fh

    def close(self, fd: int) -> None:
        self._rec.fds.pop(fd, None)
        os.close(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)
        self._rec.fsync(self._rec.fds[fd])

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)
        self._rec.created(self._rec.fds[fd], "ftruncate")

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        n = os.pwrite(fd, data, offset)
        self._rec.created(self._rec.fds[fd], "pwrite")
        return n

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        os.mkdir(path, mode)
        rec = self._rec
        d, name = rec.split(path)
        ino = rec.new("dir")
        rec.change(rec.op(f"mkdir {rec.rel(path)}"), d, ((name, ino),), f"mkdir {rec.rel(path)}")

    def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        """mkdir -p, one recorded mkdir per folder (the real makedirs would bypass the recording)."""
        path = os.path.abspath(path)
        if os.path.isdir(path):
            if not exist_ok:
                raise FileExistsError(17, "File exists", path)
            return
        parent = os.path.dirname(path)
        if parent != path and not os.path.exists(parent):
            self.makedirs(parent, mode, exist_ok=True)
        self.mkdir(path, mode)

    def link(self, src: str, dst: str, **kw: Any) -> None:
        os.link(src, dst, **kw)
        rec = self._rec
        d, name = rec.split(dst)
        rec.change(rec.op(f"link {rec.rel(dst)}"), d, ((name, rec.lookup(src)),), f"link {rec.rel(dst)}")

    def symlink(self, target: str, path: str, *a: Any, **kw: Any) -> None:
        os.symlink(target, path, *a, **kw)
        rec = self._rec
        d, name = rec.split(path)
        ino = rec.new("link")
        rec.targets[ino] = target
        rec.change(rec.op(f"symlink {rec.rel(path)} -> {target}"), d, ((name, ino),), f"symlink {rec.rel(path)}")

    def unlink(self, path: str, **kw: Any) -> None:
        os.unlink(path, **kw)
        rec = self._rec
        d, name = rec.split(path)
        rec.change(rec.op(f"unlink {rec.rel(path)}"), d, ((name, None),), f"unlink {rec.rel(path)}")

    remove = unlink

    def rmdir(self, path: str, **kw: Any) -> None:
        os.rmdir(path, **kw)
        rec = self._rec
        d, name = rec.split(path)
        rec.change(rec.op(f"rmdir {rec.rel(path)}"), d, ((name, None),), f"rmdir {rec.rel(path)}")

    def rename(self, src: str, dst: str) -> None:
        rec = self._rec
        sd, sname = rec.split(src)
        ino = rec.live[sd][sname]
        os.rename(src, dst)
        dd, dname = rec.split(dst)
        what = f"rename {rec.rel(src)} -> {rec.rel(dst)}"
        i = rec.op(what)
        if sd == dd:  # one folder: one atomic change
            rec.change(i, sd, ((sname, None), (dname, ino)), what)
        else:  # two folders: each change durable with its own folder's fsync
            rec.change(i, dd, ((dname, ino),), what + " (new name)")
            rec.change(i, sd, ((sname, None),), what + " (old name gone)")

    replace = rename


class RecordingShutil:
    """``shutil`` for the agent: rmtree spelled out as recorded unlinks and rmdirs."""

    def __init__(self, ros: RecordingOS) -> None:
        self._os = ros

    def __getattr__(self, name: str) -> Any:
        return getattr(shutil, name)

    def rmtree(self, path: str, ignore_errors: bool = False, **kw: Any) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if ignore_errors:
                return
            raise
        if not stat.S_ISDIR(st.st_mode):
            if ignore_errors:
                return
            raise NotADirectoryError(20, "Not a directory", path)
        for dirpath, dirs, files in os.walk(path, topdown=False):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
                self._os.unlink(os.path.join(dirpath, name))
            for name in dirs:
                if not os.path.islink(os.path.join(dirpath, name)):
                    self._os.rmdir(os.path.join(dirpath, name))
        self._os.rmdir(path)


class recording:
    """``with recording(anchor) as rec:`` the agent's file system calls below ``anchor`` are recorded."""

    def __init__(self, anchor: str) -> None:
        self.rec = Recorder(os.path.abspath(anchor))

    def __enter__(self) -> Recorder:
        rec = self.rec
        rec.snapshot()
        ros = RecordingOS(rec)

        def rec_open(path: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
            fh = _real_open(path, mode, *a, **kw)
            if isinstance(path, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
                rec.fds[fh.fileno()] = os.fsdecode(path)
                rec.created(os.fsdecode(path), "open for writing")
                return _File(rec, fh, os.fsdecode(path))
            return fh

        self._saved = {k: agent.__dict__.get(k) for k in ("os", "shutil", "open")}
        agent.os, agent.shutil, agent.open = ros, RecordingShutil(ros), rec_open
        return rec

    def __exit__(self, *exc: Any) -> None:
        for k, v in self._saved.items():
            if v is None:
                agent.__dict__.pop(k, None)
            else:
                setattr(agent, k, v)


# ---------------------------------------------------------------- crash images
@dataclass
class Image:
    """The disk after a reboot: folder inode -> entries, and what each file inode holds."""
    rec: Recorder
    dirs: dict[int, dict[str, int]]
    k: int  # operations that happened before the cut
    variant: str

    def content(self, ino: int) -> str:
        last = [c for i, c in self.rec.content.get(ino, []) if i < self.k]
        if last:
            return last[-1]
        return self.rec.initial_content.get(ino, TORN)

    def lookup(self, d: int, rel: str) -> int | None:
        for part in rel.split("/"):
            if self.rec.kinds.get(d) != "dir" or d not in self.dirs:
                return None
            d = self.dirs[d].get(part)
            if d is None:
                return None
        return d


def pinned(rec: Recorder, u: Unit, k: int) -> bool:
    """Durable by a crash after ``k`` operations: its folder was fsynced after it."""
    return any(u.op < j < k for j in rec.dir_syncs.get(u.dir, ()))


def decides_current(rec: Recorder, u: Unit) -> bool:
    """A change that can alter what ``current`` shows: ``current`` itself, the deploy root, ``releases/`` or below."""
    if u.dir in rec.relevant_dirs:
        return True
    names = {n for n, _ in u.changes}
    return (u.dir == rec.top and ROOT_NAME in names) or (u.dir == rec.root_id() and bool(names & {"current", "releases"}))


def images(rec: Recorder, k: int, seed: int = 25) -> Iterator[Image]:
    """The crash images for a cut after ``k`` operations (see the module's docstring for which)."""
    done = [u for u in rec.units if u.op < k]
    base = {d: dict(e) for d, e in rec.initial.items()}
    for d in rec.live:
        base.setdefault(d, {})
    pending = []
    for u in done:
        if pinned(rec, u, k):
            _apply(base, u)
        else:
            pending.append(u)

    def build(keep: list[Unit], variant: str) -> Image:
        dirs = dict(base)
        for u in sorted(keep, key=lambda u: u.seq):
            dirs[u.dir] = dict(dirs[u.dir])
            _apply(dirs, u)
        return Image(rec, dirs, k, variant)

    seen: set[tuple[int, ...]] = set()

    def once(keep: list[Unit], variant: str) -> Iterator[Image]:
        key = tuple(sorted(u.seq for u in keep))
        if key not in seen:
            seen.add(key)
            yield build(keep, variant)

    for j in range(len(pending) + 1):  # an ordered journal: the first j pending changes made it
        yield from once(pending[:j], f"first {j} of {len(pending)} pending changes survive")
    deciding = [u for u in pending if decides_current(rec, u)]
    others = [u for u in pending if not decides_current(rec, u)]
    if len(deciding) <= EXHAUSTIVE:
        subsets = itertools.chain.from_iterable(itertools.combinations(deciding, n) for n in range(len(deciding) + 1))
        for s in subsets:
            yield from once(list(s), "only " + ("; ".join(u.what for u in s) or "nothing pending") + " survive")
            yield from once(list(s) + others, "all but " + ("; ".join(u.what for u in deciding if u not in s) or "nothing") + " survive")
    else:
        rnd = random.Random(seed * 100003 + k)
        for u in deciding:
            yield from once([u], f"only {u.what} survives")
            yield from once([v for v in pending if v is not u], f"all but {u.what} survive")
        for _ in range(SAMPLES):
            s = [u for u in deciding if rnd.random() < 0.5]
            yield from once(s, "a random subset survives: " + "; ".join(u.what for u in s))


def _apply(dirs: dict[int, dict[str, int]], u: Unit) -> None:
    entries = dirs.setdefault(u.dir, {})
    for name, ino in u.changes:
        if ino is None:
            entries.pop(name, None)
        else:
            entries[name] = ino


# ---------------------------------------------------------------- what the board shows after the reboot
def shown(img: Image, releases: dict[str, list[dict[str, Any]]]) -> tuple[str | None, str]:
    """(release id, "") when ``current`` resolves to that complete release; (None, "") when the board has no
    ``current``; (None, why) for a half release, a dangling or foreign link, or a torn state file."""
    rec = img.rec
    root = img.dirs[rec.top].get(ROOT_NAME)
    if root is None or rec.kinds[root] != "dir":
        return None, ""
    for name in ("history.json", "verdicts.json"):  # read_history / read_verdicts refuse a torn one
        ino = img.dirs[root].get(name)
        if ino is not None and img.content(ino) == TORN:
            return None, f"{name} is torn (written but not fsynced before it was renamed into place)"
    cur = img.dirs[root].get("current")
    if cur is None:
        return None, ""
    if rec.kinds[cur] != "link":
        return None, "current is not a symlink"
    target = rec.targets[cur]
    parts = target.split("/")
    if len(parts) != 2 or parts[0] != "releases":
        return None, f"current -> {target}, not releases/<id>"
    rid = parts[1]
    rdir = img.lookup(root, target)
    if rdir is None:
        return None, f"current -> {target}, which is missing (a dangling link)"
    if rid not in releases:
        return None, f"current -> {target}, a release this deploy never made"
    for f in releases[rid]:
        ino = img.lookup(rdir, f["file"])
        if ino is None:
            return None, f"current -> {target}, but its {f['file']} is missing (a half release)"
        if rec.kinds[ino] != "file":
            return None, f"current -> {target}, but its {f['file']} is a {rec.kinds[ino]}"
        got = img.content(ino)
        if got != f["sha256"]:
            return None, f"current -> {target}, but its {f['file']} is {'torn' if got == TORN else 'other bytes'} (a half release)"
    return rid, ""


def materialise(img: Image, dest: str) -> str:
    """Write the image as a real folder tree at ``dest`` (torn files get bytes matching no sha256); the root's path."""
    rec = img.rec
    made: dict[int, str] = {}

    def put(ino: int, path: str) -> None:
        kind = rec.kinds[ino]
        if kind == "dir":
            os.mkdir(path)
            for name, child in sorted(img.dirs.get(ino, {}).items()):
                put(child, os.path.join(path, name))
        elif kind == "link":
            os.symlink(rec.targets[ino], path)
        elif ino in made:
            os.link(made[ino], path)
        else:
            got = img.content(ino)
            with _real_open(path, "wb") as fh:
                fh.write(TORN_BYTES if got == TORN else rec.blobs[got])
            made[ino] = path

    os.makedirs(dest)
    for name, child in sorted(img.dirs[rec.top].items()):
        put(child, os.path.join(dest, name))
    return os.path.join(dest, ROOT_NAME)
