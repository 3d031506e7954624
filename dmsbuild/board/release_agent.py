"""The board side of a deploy: run ON the board as ``python3 -c <this file> OP``.

Standard library only (it runs with the board's Python). The request is JSON
on stdin, the answer JSON on stdout; a failure exits non-zero with one line on
stderr. Every path it touches is below the deploy root it is given::

    <root>/objects/<sha256>            content-addressed, read-only files
    <root>/objects/.tmp/<sha256>.part  uploads in progress (resumed by offset)
    <root>/releases/<id>/...           hardlinks into objects + manifest.json
    <root>/current -> releases/<id>    switched by one rename(2)
    <root>/history.json                release ids in deploy order (rollback pops)
    <root>/verdicts.json               release id -> "passed" | "failed": what the deploy's gate judged there
                                       (rollback never goes to a "failed" one; none judged: from before gates)
    <root>/.lock                       flock'ed by the deploy in progress; names its holder
    <root>/seal.json                   stat identity of the current release's objects (verified then)
    <root>/.dmsbuild-root              the marker: this folder is dmsbuild's (written at first deploy) and
                                       the release folders dmsbuild made here (the only ones gc removes)

Ops: ``prepare`` (create the layout, check it is writable, report what the
board has), ``lock`` (hold the board lock until stdin closes; also prepares
when the request lists objects; then runs the ``commit``/``rollback``
requests sent to it as JSON lines, so they run under the lock and finish
under it even when the connection drops; a ``receive`` request is followed by
an object's bytes, written to its upload and hashed as they arrive, so a deploy
needs no SFTP server on the board and no second read of each file), ``commit`` (verify, stage the
release, sync, switch, collect), ``rollback``, ``state``, ``fetch`` (under the
lock: objects from relay boards or a mirror over HTTP, verified by sha256
while they arrive, left as uploads for ``commit`` to verify again), ``verdict``
(under the lock: record what the gate judged of a release) and
``serve`` (a relay: ``objects/<sha256>`` over HTTP until stdin closes); under the lock also ``stage``
(a scratch release for `doit tune`: verified and staged, never switched to) and ``discard`` (remove
scratch releases). ``commit`` and
``rollback`` run on their own take the lock themselves.

Nothing is read, written or removed outside the root: the root's folders and
files must not be symlinks (refused); a symlink inside a release folder (at any
level) or in place of an object or an upload is removed or refused, never
followed: every path below the root is checked component by component with
``lstat`` and files are opened with ``O_NOFOLLOW``.

A deploy root is dmsbuild's only when dmsbuild made it: the first deploy into
a missing or empty folder writes the marker ``.dmsbuild-root``; a folder that
already holds other files and no marker is refused (a root an older dmsbuild
made, with its ``history.json`` and ``current``, is adopted); ``/``, the home
folder, its parents and system folders are refused as roots. Garbage
collection removes only release folders the marker lists and objects named
by a sha256.

Fault hooks (tests only): a request may carry ``"fault": {"point", "mode"}``;
at that named point the agent kills its SSH session (and itself, or the
board's sshd). The controller sends it only when ``DMSBUILD_FAULT_AT`` is set
in its environment, so production requests never carry one.
"""
import errno
import fcntl
import json
import os
import stat
import sys

# hashlib, shutil and signal are imported where they are used: every deploy starts this file in a fresh Python
# on the board, and the modules it does not need for the op at hand cost CPU on every board (docs/fleet-scale.md)

EXIT_USAGE, EXIT_LOCKED, EXIT_NOT_WRITABLE, EXIT_BAD = 2, 3, 4, 5
#: the faults hook (see fault_point); set from each request
FAULT = {}


class AgentFail(Exception):
    """A refusal with a one-line message: exit status ``code`` (or an ``err`` line under the lock)."""

    def __init__(self, code, msg):
        Exception.__init__(self, msg)
        self.code, self.msg = code, msg.replace("\n", " ")


def fail(code, msg):
    raise AgentFail(code, msg)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def fault_point(name):
    """Test hook, inert unless the request named this point: kill the SSH session here.

    mode ``kill``: the session and this process die (a crash at this point);
    ``drop``: only the session dies and the agent carries on (a lost
    connection); ``dropslow``: the same, then 2 s of work; ``sshd``: the
    board's sshd listener dies too."""
    if FAULT.get("point") != name:
        return
    mode = FAULT.get("mode", "kill")
    FAULT.clear()  # once
    chain, pid = [], os.getppid()
    while pid > 1 and len(chain) < 64:
        chain.append((pid, _cmdline(pid)))
        pid = _ppid(pid)
    sshds = [(p, c) for p, c in chain if c.startswith(b"sshd")]
    listener = next((p for p, c in sshds if b"[listener]" in c), sshds[-1][0] if sshds else None)
    victims = [p for p, _ in sshds if p != listener] + ([listener] if mode == "sshd" and listener else [])
    import signal

    for v in victims:
        try:
            os.kill(v, signal.SIGKILL)
        except OSError:
            pass
    if mode in ("kill", "sshd"):
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "dropslow":  # a lost connection while the board is busy (hashing a big object)
        import time
        time.sleep(2)


def _lexists_not(path, kind):
    """Refuse a symlink (or wrong kind) where the layout needs a real folder/file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        fail(EXIT_BAD, "cannot inspect %s: %s" % (path, exc.strerror or exc))
    if stat.S_ISLNK(st.st_mode):
        fail(EXIT_BAD, "refusing to deploy: %s is a symlink (to %s); the deploy root must hold real folders and files, "
             "remove it" % (path, os.readlink(path)))
    if kind == "dir" and not stat.S_ISDIR(st.st_mode) or kind == "file" and not stat.S_ISREG(st.st_mode):
        fail(EXIT_BAD, "refusing to deploy: %s is not a %s; remove it" % (path, "folder" if kind == "dir" else "file"))


def check_layout(root):
    """The root's own folders and files are real (never symlinks leading outside the root)."""
    for rel, kind in (("objects", "dir"), ("objects/.tmp", "dir"), ("releases", "dir"), (".lock", "file"), (MARKER, "file"),
                      ("history.json", "file"), ("seal.json", "file"), ("dms.service", "file"),
                      ("verdicts.json", "file")):
        _lexists_not(os.path.join(root, rel), kind)
    cur = os.path.join(root, "current")
    if os.path.lexists(cur):
        target = os.readlink(cur) if os.path.islink(cur) else None
        parts = (target or "").split("/")
        if target is None or len(parts) != 2 or parts[0] != "releases" or parts[1] in ("", ".", ".."):
            fail(EXIT_BAD, "refusing to deploy: %s is not a symlink to releases/<id> (%s); remove it" % (cur, target or "not a symlink"))


def real_parents(base, rel):
    """True when every folder between ``base`` and ``base/rel`` is a real folder (lstat: no symlink).

    A missing folder is fine (nothing below it exists either); a symlink or a
    file in the way is not: whatever lies below it is outside what we made."""
    path = base
    for part in [p for p in rel.split("/") if p][:-1]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True


def regular(base, rel):
    """True for a regular file at ``base/rel``; a symlink or other thing in its place is removed (never
    followed). Below a symlinked folder it is False and nothing is touched: that is not ours to remove."""
    if not real_parents(base, rel):
        return False
    path = inside(base, rel)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode):
        return True
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)
    return False


def safe_dirs(base, rel_dir):
    """mkdir -p ``base/rel_dir`` without following symlinks below ``base`` (they are replaced)."""
    path = base
    for part in [p for p in rel_dir.split("/") if p]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path)
            continue
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            os.mkdir(path)
    return path


def open_nofollow(path):
    """Open a file for reading without following a symlink in its place (ELOOP instead)."""
    return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")


def sha256_of(path, follow_symlinks=False):
    """The sha256 (hex) of a file's content: dmsbuild's one file hasher, on the board and on the host
    (host modules import it from here; board code cannot import theirs). On the board a symlink in the
    file's place is refused (``open_nofollow``); the host hashes its own files with ``follow_symlinks=True``."""
    import hashlib

    h = hashlib.sha256()
    with (open(path, "rb") if follow_symlinks else open_nofollow(path)) as fh:
        while True:
            b = fh.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def inside(root, rel):
    """``root/rel``, refusing anything that would leave the root."""
    if rel.startswith("/") or ".." in rel.split("/") or "\0" in rel:
        fail(EXIT_BAD, "refusing path outside the deploy root: %r" % rel)
    return os.path.join(root, rel)


def read_history(root):
    """The release ids in deploy order; none yet: []. One that cannot be read is corruption, refused:
    treated as empty it would drop every rollback target and let gc remove their folders."""
    path = os.path.join(root, "history.json")
    try:
        with open_nofollow(path) as fh:
            hist = json.load(fh)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        hist = exc
    if not isinstance(hist, list) or not all(isinstance(h, str) and h and "/" not in h and h != ".." for h in hist):
        why = hist.strerror if isinstance(hist, OSError) and hist.strerror else str(hist)[:80]
        fail(EXIT_BAD, "%s is corrupt (%s); refusing to deploy or roll back: repair it (a JSON list of release ids, "
                       "oldest first) or remove it (the next deploy starts a new history)" % (path, why))
    return hist


VERDICTS = ("passed", "failed")


def read_verdicts(root):
    """release id -> "passed" | "failed" (what the deploy's gate judged on this board); none yet: {}.
    One that cannot be read is corruption, refused: read as empty, a rollback could go to a failed release."""
    path = os.path.join(root, "verdicts.json")
    try:
        with open_nofollow(path) as fh:
            got = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        got = exc
    if not isinstance(got, dict) or not all(isinstance(k, str) and v in VERDICTS for k, v in got.items()):
        why = got.strerror if isinstance(got, OSError) and got.strerror else str(got)[:80]
        fail(EXIT_BAD, "%s is corrupt (%s); refusing to roll back: repair it (a JSON object release id -> "
                       "\"passed\" or \"failed\") or remove it (every kept release then counts as not judged)" % (path, why))
    return got


def write_verdicts(root, verdicts):
    write_atomic(os.path.join(root, "verdicts.json"), json.dumps(verdicts, sort_keys=True))


def verdict(req):
    """Record what the host's gate judged of a release on this board (a deploy's last step, under the lock)."""
    root, rid, said = req["root"], req["release_id"], req["verdict"]
    check_layout(root)
    if said not in VERDICTS:
        fail(EXIT_BAD, "verdict %r for %s: expected one of %s" % (said, rid, ", ".join(VERDICTS)))
    if rid not in read_history(root):
        fail(EXIT_BAD, "release %s is not in %s/history.json; no verdict recorded" % (rid, root))
    verdicts = read_verdicts(root)
    verdicts[rid] = said
    write_verdicts(root, verdicts)
    return {"release_id": rid, "verdict": said}


MARKER = ".dmsbuild-root"
#: folders that are never a deploy root (with "/", the home folder and every folder above it)
SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
                  "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
                  "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/sbin", "/usr/share", "/var", "/var/lib",
                  "/var/log", "/var/tmp")


def refuse_system_root(root):
    """``/``, the home folder (and its parents) and system folders are never a deploy root: a deploy
    writes objects/, releases/, current, history.json and .lock into its root, and gc removes there."""
    real = os.path.realpath(root)
    homes = set()
    for home in (os.path.expanduser("~"), os.environ.get("HOME")):
        if home and home.startswith("/"):
            homes.add(os.path.realpath(home))
    try:
        import pwd
        homes.add(os.path.realpath(pwd.getpwuid(os.geteuid()).pw_dir))
    except (ImportError, KeyError):
        pass
    above_home = any(h == real or h.startswith(real.rstrip("/") + "/") for h in homes)
    if real == "/" or real in SYSTEM_FOLDERS or above_home:
        what = "the home folder" if real in homes else "a folder above the home folder" if above_home else "a system folder"
        fail(EXIT_BAD, "refusing deploy root %s: it is %s%s; a deploy root must be a folder of its own "
                       "(e.g. /opt/dms or ~/dms), set 'root' in the inventory" % (
                           root, "/" if real == "/" else what, "" if real == root else " (%s)" % real))


def read_marker(root):
    """The marker's JSON ({} when absent or unreadable: then nothing is known to be ours)."""
    try:
        with open_nofollow(os.path.join(root, MARKER)) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("releases", []), list):
        return {}
    return data


def write_marker(root, releases):
    write_atomic(os.path.join(root, MARKER), json.dumps(
        {"made_by": "dmsbuild", "about": "this deploy root was made by dmsbuild; releases lists the release "
         "folders it made here (the only ones its garbage collection removes)",
         "releases": sorted(set(r for r in releases if isinstance(r, str)))}))


def note_made(root, rid):
    made = read_marker(root).get("releases") or []
    if rid not in made:
        write_marker(root, made + [rid])


def _ours_from_before(root):
    """A root an older dmsbuild (without the marker) made: a valid history and ``current`` -> releases/<id>."""
    try:
        target = os.readlink(os.path.join(root, "current"))
        hist = read_history(root)
    except (OSError, AgentFail):
        return None
    parts = target.split("/")
    if len(parts) != 2 or parts[0] != "releases" or not os.path.isdir(os.path.join(root, "objects")):
        return None
    return hist + [parts[1]]


def claim_root(root):
    """Make ``root`` dmsbuild's, or refuse it: missing or empty -> created with the marker; the marker
    there -> ours; a layout an older dmsbuild made -> adopted; anything else -> refused in one line."""
    refuse_system_root(root)
    try:
        makedirs_durable(root)
        entries = sorted(os.listdir(root))
    except OSError as exc:
        fail(EXIT_NOT_WRITABLE, not_writable(root, exc))
    _lexists_not(os.path.join(root, MARKER), "file")
    if MARKER in entries:
        return
    # before the first deploy dmsbuild may have left only its lock, an older `doit tune`'s scratch folder (tune/)
    # and the marker's own temporary file (a first deploy cut short while it wrote the marker)
    fresh = set(e for e in entries if not e.startswith(MARKER + ".tmp.")) <= {".lock", "tune"} and (
        "tune" not in entries or stat.S_ISDIR(os.lstat(os.path.join(root, "tune")).st_mode))
    made = [] if fresh else _ours_from_before(root)
    if made is not None:
        try:
            write_marker(root, made)
        except OSError as exc:
            fail(EXIT_NOT_WRITABLE, not_writable(root, exc))
        return
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    fail(EXIT_BAD, "refusing deploy root %s: it already holds files (%s) and no %s marker, so dmsbuild did not "
                   "make it; choose a new or empty folder as 'root' in the inventory" % (root, shown, MARKER))


def write_atomic(path, data):
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "w") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def current_id(root):
    try:
        target = os.readlink(os.path.join(root, "current"))
    except OSError:
        return None
    return os.path.basename(target.rstrip("/"))


def fsync_path(path):
    """Flush a file's data, or a directory's entries, to the disk (both open read-only on Linux)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path):
    """mkdir -p ``path``, each folder it creates fsync'ed into its parent (a first deploy's root, ``objects/``,
    ``releases/``): a new folder's name is durable only once its parent folder is, and nothing else fsyncs the
    root's parent; without it a power cut after a first deploy reported success could lose the whole root
    (tests/test_power_cut.py). Folders that exist cost nothing."""
    made, p = [], os.path.abspath(path)
    while not os.path.lexists(p) and p != os.path.dirname(p):
        made.append(p)
        p = os.path.dirname(p)
    os.makedirs(path, exist_ok=True)
    for p in reversed(made):
        fsync_path(os.path.dirname(p))


def op_prepare(req):
    return prepare(req)


def prepare(req):
    root = req["root"]
    claim_root(root)
    check_layout(root)
    try:
        for sub in ("objects/.tmp", "releases"):
            makedirs_durable(os.path.join(root, sub))
        # every folder a deploy writes: the root (current, history.json, .lock), objects/, objects/.tmp/, releases/
        for folder in (root, os.path.join(root, "objects"), os.path.join(root, "objects", ".tmp"), os.path.join(root, "releases")):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "Permission denied", folder)
        probe = os.path.join(root, "objects", ".tmp", ".probe.%d" % os.getpid())
        with open(probe, "w") as fh:
            fh.write("x")
        os.unlink(probe)
    except OSError as exc:
        fail(EXIT_NOT_WRITABLE, not_writable(root, exc))
    have, partial = [], {}
    for sha in req.get("objects", []):
        if regular(root, "objects/" + sha):
            have.append(sha)
        elif regular(root, "objects/.tmp/" + sha + ".part"):
            partial[sha] = os.path.getsize(inside(root, "objects/.tmp/" + sha + ".part"))
    st = os.statvfs(root)
    return {"have": have, "partial": partial, "current": current_id(root),
            "history": read_history(root), "free_bytes": st.f_bavail * st.f_frsize}


def open_lock(root):
    claim_root(root)
    try:
        _lexists_not(os.path.join(root, ".lock"), "file")
        return os.open(os.path.join(root, ".lock"), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        fail(EXIT_NOT_WRITABLE, not_writable(root, exc))


def not_writable(root, exc):
    """Name the folder that refused (the deepest one that exists), not just the deploy root."""
    folder = exc.filename or root
    while folder and folder != "/" and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        import pwd
        user = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        user = str(os.geteuid())
    return "deploy root %s is not writable: folder %s refused user %s (%s)" % (root, folder, user, exc.strerror or exc)


def try_lock(fd):
    """flock the lock file; None when taken, else the holder's JSON text."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "{}"
    return None


#: bytes of stdin read past the request line (the lock op reads stdin unbuffered)
STDIN_REST = [b""]


def read_line(fd=0):
    buf = STDIN_REST[0]
    while b"\n" not in buf:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    line, _, STDIN_REST[0] = buf.partition(b"\n")
    return line.decode()


class Stdin:
    """The lock process's stdin: request lines, and after a ``receive`` line that object's raw bytes.

    Both read from one buffer, so the bytes of an object are never taken for
    lines or the other way round. A read gives up at EOF or when nothing (not
    even a heartbeat) arrived for ``idle`` seconds (0: wait forever)."""

    def __init__(self, idle, fd=0):
        self.idle, self.fd, self.buf = idle, fd, STDIN_REST[0]

    def _more(self):
        import select

        ready, _, _ = select.select([self.fd], [], [], self.idle if self.idle > 0 else None)
        return os.read(self.fd, 1 << 20) if ready else b""

    def lines(self):
        """Lines until EOF (or silence for ``idle`` seconds)."""
        while True:
            while b"\n" in self.buf:
                line, _, self.buf = self.buf.partition(b"\n")
                yield line.decode()
            chunk = self._more()
            if not chunk:
                return
            self.buf += chunk

    def chunks(self, n):
        """The next ``n`` bytes, in pieces as they arrive; fewer when the connection ends (EOF, silence)."""
        if self.buf and n > 0:
            take, self.buf = self.buf[:n], self.buf[n:]
            n -= len(take)
            yield take
        while n > 0:
            chunk = self._more()
            if not chunk:
                return
            if len(chunk) > n:
                chunk, self.buf = chunk[:n], chunk[n:]
            n -= len(chunk)
            yield chunk

    def bigger_pipe(self):
        """Ask for a 1 MiB pipe (Linux; the default 64 KiB): sshd and this process then wake each other less often
        while an object streams in. Not a pipe, or not allowed: nothing changes."""
        try:
            fcntl.fcntl(self.fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass


#: sha256 -> ((size, mtime_ns, ctime_ns, inode) of the upload when it was received, its sha256 computed then):
#: what ``receive`` hashed as the bytes arrived in this process; ``commit`` uses it for an upload untouched since
RECEIVED = {}
EXIT_NO_SPACE = 6


def _identity(st):
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def receive(cmd, stdin):
    """Write the ``length`` bytes that follow the request on stdin to ``objects/.tmp/<sha256>.part`` from
    ``offset`` (a resume keeps what is there before it), hashing them as they arrive: the upload and its sha256
    in one pass, with no SFTP server on the board and no second read of the file. The bytes are always consumed,
    whatever happens to the file, so the stream stays in step.

    Returns the answer line, or None when the connection ended before the last byte (what arrived is kept in the
    part, for the next deploy to resume). ``commit`` still verifies the part (with the hash taken here when the
    part is unchanged since: same size, mtime, ctime and inode) before it is promoted."""
    import hashlib

    root, sha, offset, length = cmd["root"], cmd["sha256"], int(cmd["offset"]), int(cmd["length"])
    h, err, fd, got = hashlib.sha256(), None, None, 0
    try:
        if not _is_sha(sha) or offset < 0 or length < 0:
            fail(EXIT_BAD, "receive: not a sha256, offset and length: %r %r %r" % (sha, offset, length))
        rel = "objects/.tmp/" + sha + ".part"
        part = inside(root, rel)
        if not real_parents(root, rel):
            fail(EXIT_BAD, "refusing to write %s: a folder above it is not a real folder" % part)
        regular(root, rel)  # a symlink or folder in its place is removed, never followed
        fd = os.open(part, os.O_RDWR | os.O_CREAT | (0 if offset else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0), 0o644)
        if offset:  # a resume: what is there up to the offset counts (hashed first), anything after it does not
            os.ftruncate(fd, offset)
            done = 0
            while done < offset:
                b = os.pread(fd, min(1 << 20, offset - done), done)
                if not b:
                    break
                h.update(b)
                done += len(b)
            h.update(bytes(offset - done))  # a hole reads as zeros (a part shorter than the offset)
            os.lseek(fd, offset, os.SEEK_SET)
    except (AgentFail, OSError) as exc:
        err = exc
    stdin.bigger_pipe()
    for chunk in stdin.chunks(length):
        got += len(chunk)
        if err is not None:
            continue  # consumed, not written: the answer says why
        h.update(chunk)
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            err = exc
    if fd is not None:
        st = os.fstat(fd)
        os.close(fd)
    if got < length:
        return None  # the connection ended mid-object: the part keeps what arrived
    if isinstance(err, AgentFail):
        return "err %d %s" % (err.code, err.msg)
    if err is not None:
        if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            _drop(part)  # it would keep the disk full; the current release is untouched
            return "err %d no space left under %s while receiving %s; the partial upload was removed" % (
                EXIT_NO_SPACE, root, sha[:12])
        return "err %d receiving %s under %s failed: %s" % (EXIT_BAD, sha[:12], root, err.strerror or err)
    RECEIVED[sha] = (_identity(st), h.hexdigest())
    return "ok " + json.dumps({"sha256": sha, "received": length})


def received_sha256(part, sha):
    """The sha256 of an upload: the one ``receive`` computed as its bytes arrived, when the part is the file it
    wrote and unchanged since (a write changes the mtime and ctime); else read and hashed again."""
    rec = RECEIVED.pop(sha, None)
    if rec is not None:
        try:
            if _identity(os.lstat(part)) == rec[0]:
                return rec[1]
        except OSError:
            pass
    return sha256_of(part)


def say(line):
    """One answer line to the controller; False when the connection is gone."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return True
    except OSError:  # the session died (BrokenPipeError, EIO): the work itself was finished under the lock
        return False


def op_lock(req):
    root = req["root"]
    fd = open_lock(root)
    held = try_lock(fd)
    if held is not None:
        say("held " + held)
        sys.exit(EXIT_LOCKED)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(req["holder"]).encode(), 0)
    fault_point("lock.locked")
    # with "objects" in the request, the prepare answer rides along (one process less per deploy)
    state = prepare(req) if "objects" in req else {}
    if req.get("facts_script"):  # and the board's facts (one more process less per deploy)
        state["facts"] = run_facts(req["facts_script"], root)
    say("locked " + json.dumps(state))
    # held until the deploy closes stdin, its connection dies, or it stays silent longer than idle_timeout
    # (the controller sends an empty line as a heartbeat: a connection that died without a FIN must not
    # hold the board's lock forever); meanwhile it runs the ops sent to it, so a commit finishes under
    # the lock even when the connection drops half-way
    stdin = Stdin(float(req.get("idle_timeout") or 0))
    for line in stdin.lines():
        if not line.strip():
            continue
        cmd = json.loads(line)
        FAULT.clear()
        FAULT.update(cmd.get("fault") or {})
        if cmd["op"] == "receive":  # an object's bytes follow the line: written and hashed as they arrive
            answer = receive(cmd, stdin)
            if answer is None or not say(answer):
                break
            continue
        try:
            answer = "ok " + json.dumps(LOCKED_OPS[cmd["op"]](cmd))
        except AgentFail as exc:
            answer = "err %d %s" % (exc.code, exc.msg)
        except OSError as exc:  # the board's file system refused (ENOSPC, EROFS, EIO): say which file
            answer = "err %d %s failed under %s: %s%s" % (EXIT_BAD, cmd["op"], root, exc.strerror or exc,
                                                       " (%s)" % exc.filename if exc.filename else "")
        if not say(answer):
            break
    os.ftruncate(fd, 0)


def run_facts(script, root):
    """The facts script (dmsbuild/ship/facts.py, sent by the controller) run in this process; its JSON, or None if it failed.

    None makes the controller gather the facts the usual way, which reports
    the failure with its own message."""
    import contextlib
    import io

    buf, argv = io.StringIO(), sys.argv
    try:
        sys.argv = ["facts", root]
        with contextlib.redirect_stdout(buf):
            exec(compile(script, "<facts>", "exec"), {"__name__": "__facts__"})
        return json.loads(buf.getvalue().strip().splitlines()[-1])
    except Exception:
        return None
    finally:
        sys.argv = argv


def locked(fn):
    """Run ``fn`` standalone under the board lock (refused while another deploy holds it)."""
    def run(req):
        fd = open_lock(req["root"])
        held = try_lock(fd)
        if held is not None:
            fail(EXIT_LOCKED, "another deploy holds the lock %s: %s" % (os.path.join(req["root"], ".lock"), held))
        try:
            return fn(req)
        finally:
            os.close(fd)
    return run


def verify_objects(root, files):
    """Every object the release needs exists with its sha256 (uploads are promoted here).

    Returns what must be sent (again): missing objects, and corrupt ones or
    corrupt uploads, which are removed here (``problems`` says which)."""
    resend, problems, first = [], [], True
    for f in files:
        sha = f["sha256"]
        if sha in resend:
            continue
        obj = inside(root, "objects/" + sha)
        part = inside(root, "objects/.tmp/" + sha + ".part")
        if not regular(root, "objects/" + sha) and regular(root, "objects/.tmp/" + sha + ".part"):
            got = received_sha256(part, sha)
            if got != sha:
                os.unlink(part)  # a corrupt or overlong resume: sent again
                resend.append(sha)
                problems.append("upload of %s arrived corrupted (sha256 %s)" % (f["file"], got))
                continue
            os.chmod(part, 0o444)
            fsync_path(part)
            os.replace(part, obj)
        elif not regular(root, "objects/" + sha):
            resend.append(sha)
            problems.append("object %s (%s) is missing" % (sha[:12], f["file"]))
            continue
        elif os.path.getsize(obj) != f["size"] or sha256_of(obj) != sha:
            os.unlink(obj)  # releases that link the bad inode are re-linked to the good copy by stage()
            resend.append(sha)
            problems.append("object %s (%s) did not match its sha256" % (sha[:12], f["file"]))
            continue
        if first:
            first = False
            fault_point("commit.verify")
    return resend, problems


def release_ok(root, rid, files):
    """Every file of the release is a hardlink of its object (lstat: a symlink is never 'ok')."""
    rdir = os.path.join(root, "releases", rid)
    for f in files:
        if not real_parents(root, "releases/%s/%s" % (rid, f["file"])):
            return False
        try:
            a = os.lstat(inside(rdir, f["file"]))
            b = os.lstat(inside(root, "objects/" + f["sha256"]))
        except OSError:
            return False
        if (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev):
            return False
    return True


def link_into(root, rdir, f):
    """``rdir/<file>`` -> the object, replacing whatever is there by one rename (no symlink followed)."""
    rel = f["file"]
    inside(rdir, rel)
    parent = safe_dirs(rdir, os.path.dirname(rel))
    dst = os.path.join(parent, os.path.basename(rel))
    tmp = dst + ".dms-link.%d" % os.getpid()
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.link(inside(root, "objects/" + f["sha256"]), tmp, follow_symlinks=False)
    os.replace(tmp, dst)


def stage(root, rid, files):
    """releases/<id>: hardlinks into objects, built under a temporary name then renamed.

    An existing folder of that id (the current release being repaired, or a
    damaged leftover) is repaired in place, file by file, each by one rename:
    ``current`` may point to it, so it must never disappear, even for a moment."""
    rdir = inside(root, "releases/" + rid)
    note_made(root, rid)  # before the folder exists: a stage cut short still leaves it for gc
    try:
        st = os.lstat(rdir)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(rdir)  # a symlink (or file) in place of a release: never followed
    except FileNotFoundError:
        pass
    if os.path.isdir(rdir):
        for f in files:
            if not release_ok(root, rid, [f]):
                link_into(root, rdir, f)
        return
    tmp = os.path.join(root, "releases", ".tmp-%s-%d" % (rid, os.getpid()))
    if os.path.lexists(tmp):  # a stage cut short (shutil is imported only when there is one to remove)
        remove_tree(tmp)
    os.mkdir(tmp)
    for i, f in enumerate(files):
        link_into(root, tmp, f)
        if i == 0:
            fault_point("commit.stage")
    os.rename(tmp, rdir)


def sync(root, rid):
    """Make the release durable before the switch: fsync its folders and the objects folder.

    New objects were fsync'ed when promoted; this is a targeted ``sync`` (a
    global sync(2) waits for every other writer on the machine too)."""
    rdir = os.path.join(root, "releases", rid)
    for dirpath, _dirs, _files in os.walk(rdir):
        fsync_path(dirpath)
    fsync_path(os.path.join(root, "releases"))
    fsync_path(os.path.join(root, "objects"))


def switch(root, rid):
    """current -> releases/<id> by one rename(2)."""
    link = os.path.join(root, "current")
    tmp = os.path.join(root, ".current.tmp.%d" % os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", rid), tmp)
    fault_point("commit.switch")
    os.replace(tmp, link)
    fsync_path(root)
    fault_point("commit.switched")


def collect(root, keep):
    """Keep the last ``keep`` releases of the history (and current, and the last that passed its gate); drop the
    rest and unreferenced objects."""
    hist = read_history(root)
    verdicts = read_verdicts(root)
    passed = [h for h in hist if verdicts.get(h) == "passed"]
    # the last release that passed its gate is kept whatever came after it: it is what a rollback goes to
    kept = set(hist[-keep:]) | {current_id(root)} | set(passed[-1:])
    # history first: a collection cut short leaves folders nobody lists (removed next time),
    # never a history entry pointing to a half-removed release
    write_atomic(os.path.join(root, "history.json"), json.dumps([h for h in hist if h in kept]))
    if any(k not in kept for k in verdicts):
        write_verdicts(root, {k: v for k, v in verdicts.items() if k in kept})
    removed = []
    rel = os.path.join(root, "releases")
    made = read_marker(root).get("releases") or []
    for name in os.listdir(rel):
        if name not in kept and not name.startswith("."):
            if name not in made:  # not a release dmsbuild made here: never ours to remove
                continue
            remove_tree(os.path.join(rel, name))
            removed.append(name)
            if len(removed) == 1:
                fault_point("gc.releases")
        elif name.startswith((".tmp-", ".trash-")):
            remove_tree(os.path.join(rel, name))
    for name in os.listdir(root):  # leftovers of a switch or a write cut short
        if name.startswith(".current.tmp.") or name.startswith(("history.json.tmp.", "seal.json.tmp.", "dms.service.tmp.",
                                                                              "verdicts.json.tmp.", MARKER + ".tmp.")):
            os.unlink(os.path.join(root, name))
    objects = os.path.join(root, "objects")
    freed = 0
    for name in os.listdir(objects):
        p = os.path.join(objects, name)
        if not _is_sha(name):  # objects are named by their sha256; anything else is not ours
            continue
        st = os.lstat(p)
        if not stat.S_ISREG(st.st_mode):
            continue
        if st.st_nlink <= 1:  # no release links it any more
            os.unlink(p)
            freed += st.st_size
            fault_point("gc.objects")
    if removed:
        write_marker(root, [m for m in made if m not in removed])
    tmpdir = os.path.join(objects, ".tmp")
    for name in os.listdir(tmpdir):  # parts whose object arrived some other way
        if name.endswith(".part") and _is_sha(name[:-5]) and regular(objects, name[:-5]):
            os.unlink(os.path.join(tmpdir, name))
    return removed, freed


def remove_tree(path):
    """rm -r without following symlinks (a symlinked release is unlinked, not its target's contents)."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def heal_kept(root, rid, files):
    """Re-link the kept releases' files that share an object just verified but link another inode.

    A corrupt object is removed and re-sent; older kept releases still linked the
    corrupt inode, and a rollback would then refuse them: point them at the good copy."""
    shas = set(f["sha256"] for f in files)
    rel = os.path.join(root, "releases")
    made = read_marker(root).get("releases") or []
    for name in os.listdir(rel):
        rdir = os.path.join(rel, name)
        if name == rid or name not in made or os.path.islink(rdir) or not os.path.isdir(rdir):
            continue
        try:
            with open_nofollow(os.path.join(rdir, "manifest.json")) as fh:
                manifest = json.load(fh)
            entries = [e for e in manifest["artifacts"] + manifest["files"] if e["sha256"] in shas]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for e in entries:
            if not release_ok(root, name, [e]):
                link_into(root, rdir, e)


def seal_of(root, files):
    """Stat identity of the objects: any write to one (even same size) changes its ctime."""
    out = {}
    for f in files:
        st = os.lstat(inside(root, "objects/" + f["sha256"]))
        out[f["sha256"]] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    return out


def write_seal(root, rid, files):
    write_atomic(os.path.join(root, "seal.json"), json.dumps({"release_id": rid, "objects": seal_of(root, files)}))


def unchanged(root, rid, files):
    """The release is already current and intact: same inodes as its objects, untouched since verified.

    Its sha256 were verified when it became current; ``seal.json`` recorded
    each object's size, mtime, ctime and inode then. A write to an object
    changes its ctime, so a redeploy re-hashes (and repairs) it; with an
    intact seal it skips re-hashing (``full_verify`` forces it)."""
    if current_id(root) != rid or not release_ok(root, rid, files):
        return False
    try:
        with open_nofollow(os.path.join(root, "seal.json")) as fh:
            seal = json.load(fh)
        return seal.get("release_id") == rid and seal.get("objects") == seal_of(root, files)
    except (OSError, ValueError, AttributeError):
        return False


def commit(req):
    root, rid, files = req["root"], req["release_id"], req["files"]
    check_layout(root)
    if not req.get("full_verify") and unchanged(root, rid, files):
        for name, text in (req.get("board_files") or {}).items():
            write_atomic(inside(root, name), text)
        return {"previous": rid, "current": rid, "removed_releases": [], "freed_bytes": 0}
    resend, problems = verify_objects(root, files)
    if resend:
        return {"resend": resend, "problems": problems}
    stage(root, rid, files)
    previous = current_id(root)
    sync(root, rid)
    fault_point("commit.synced")
    switch(root, rid)
    write_seal(root, rid, files)
    hist = [h for h in read_history(root) if h != rid] + [rid]
    write_atomic(os.path.join(root, "history.json"), json.dumps(hist))
    verdicts = read_verdicts(root)
    if rid in verdicts:  # deployed again: its gate judges it again
        del verdicts[rid]
        write_verdicts(root, verdicts)
    fault_point("commit.history")
    for name, text in (req.get("board_files") or {}).items():
        write_atomic(inside(root, name), text)
    removed, freed = collect(root, max(1, int(req.get("keep", 3))))
    heal_kept(root, rid, files)
    return {"previous": previous, "current": rid, "removed_releases": removed, "freed_bytes": freed}


def rollback(req):
    """``current`` back to the last kept release that did not fail its gate on this board.

    ``failed`` in the request (the deploy's automatic rollback): the current
    release failed its gate; it is recorded so, and when no earlier release
    passed, ``current`` is removed: the board runs no release rather than a
    failing one (a board's first deploy)."""
    root = req["root"]
    check_layout(root)
    hist = read_history(root)
    cur = current_id(root)
    if cur is None:
        fail(EXIT_BAD, "no release is deployed under %s; nothing to roll back" % root)
    verdicts = read_verdicts(root)
    if req.get("failed"):
        verdicts[cur] = "failed"
        write_verdicts(root, verdicts)
    if hist and hist[-1] == cur:
        hist = hist[:-1]
    hist = [h for h in hist if os.path.lexists(os.path.join(root, "releases", h, "manifest.json"))]
    skipped = [h for h in hist if verdicts.get(h) == "failed"]
    while hist and verdicts.get(hist[-1]) == "failed":  # never back to a release that failed its checks
        hist = hist[:-1]
    if not hist:
        if req.get("failed"):
            return no_release(root, cur, skipped)
        fail(EXIT_BAD, "no previous release kept under %s (only %s%s); nothing to roll back to"
             % (root, cur, ", and %s, which failed its gate" % " ".join(skipped) if skipped else ""))
    prev = hist[-1]
    if not real_parents(root, "releases/%s/manifest.json" % prev) or os.path.islink(os.path.join(root, "releases", prev)):
        fail(EXIT_BAD, "previous release %s is damaged (its folder is a symlink); not switching" % prev)
    try:
        with open_nofollow(os.path.join(root, "releases", prev, "manifest.json")) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        fail(EXIT_BAD, "previous release %s is damaged (manifest.json: %s); not switching" % (prev, getattr(exc, "strerror", None) or exc))
    files = []
    for f in manifest["artifacts"] + manifest["files"]:
        rel = f["file"]
        p = inside(os.path.join(root, "releases", prev), rel)
        if not regular(root, "releases/%s/%s" % (prev, rel)) or sha256_of(p) != f["sha256"]:
            fail(EXIT_BAD, "previous release %s is damaged (%s); not switching" % (prev, rel))
        files.append({"file": rel, "sha256": f["sha256"]})
    sync(root, prev)
    switch(root, prev)
    write_seal(root, prev, [f for f in files if release_ok(root, prev, [f])])
    write_atomic(os.path.join(root, "history.json"), json.dumps(hist))
    fault_point("rollback.switched")
    return {"previous": cur, "current": prev, "skipped_failed": skipped}


def stage_scratch(req):
    """A scratch release (`doit tune`'s candidates): verified and staged as ``releases/<id>`` like a commit, but
    never switched to and never put in the history: ``discard`` removes it, and a leftover (a lost connection)
    is collected by the next deploy's ``collect`` like any release dmsbuild made and no longer keeps."""
    root, rid, files = req["root"], req["release_id"], req["files"]
    check_layout(root)
    resend, problems = verify_objects(root, files)
    if resend:  # the controller sends them again, as for a commit
        return {"resend": resend, "problems": problems}
    stage(root, rid, files)  # (the same id as a kept release: the same files, repaired in place if need be)
    kept = rid == current_id(root) or rid in read_history(root)
    return {"release_dir": os.path.join(root, "releases", rid), "scratch": not kept}


def discard(req):
    """Remove scratch releases, never the current one, one in the history or a folder dmsbuild did not make;
    then the objects no release links any more."""
    root = req["root"]
    check_layout(root)
    kept = set(read_history(root)) | {current_id(root)}
    made = read_marker(root).get("releases") or []
    removed = [rid for rid in req["release_ids"] if rid not in kept and rid in made]
    for rid in removed:
        remove_tree(inside(root, "releases/" + rid))
    if removed:
        write_marker(root, [m for m in made if m not in removed])
    freed = 0
    objects = os.path.join(root, "objects")
    for name in os.listdir(objects):
        st = os.lstat(os.path.join(objects, name))
        if _is_sha(name) and stat.S_ISREG(st.st_mode) and st.st_nlink <= 1:  # no release links it
            os.unlink(os.path.join(objects, name))
            freed += st.st_size
    return {"removed_releases": removed, "freed_bytes": freed}


def no_release(root, cur, skipped):
    """The failing release leaves ``current`` and nothing takes its place (no earlier release passed its gate).

    Its folder stays (kept, listed in the history, marked "failed") for inspection until gc collects it."""
    os.unlink(os.path.join(root, "current"))
    fsync_path(root)
    fault_point("rollback.switched")
    return {"previous": cur, "current": None, "skipped_failed": skipped}


def op_state(req):
    root = req["root"]
    return {"current": current_id(root), "history": read_history(root), "verdicts": read_verdicts(root)}


# -- relay and mirror: objects fetched from another board or a mirror, verified before use ----------------
def _is_sha(name):
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def fetch_one(root, sha, size, base, timeout):
    """Download ``base + sha`` to ``objects/.tmp/<sha>.part``, hashing as it arrives; None when it is the object.

    Anything else (unreachable, HTTP error, too long, too short, another sha256)
    is the reason, and the partial file is removed: the controller then tries
    the next source or sends the object itself. ``commit`` verifies the part
    again before it is promoted, like an upload."""
    import hashlib
    import urllib.request

    part = inside(root, "objects/.tmp/" + sha + ".part")
    _lexists_not(part, "file")
    h, got = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(base + sha, timeout=timeout) as resp:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as out:
                first = True
                while True:
                    b = resp.read(1 << 20)
                    if not b:
                        break
                    got += len(b)
                    if got > size:
                        raise ValueError("more than the %d bytes expected" % size)
                    h.update(b)
                    out.write(b)
                    if first:
                        first = False
                        fault_point("fetch.read")
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        _drop(part)
        return "%s: %s" % (base, getattr(exc, "reason", None) or exc)
    if got != size or h.hexdigest() != sha:
        _drop(part)
        return "%s: got %d bytes with sha256 %s, expected %d bytes with %s" % (base, got, h.hexdigest()[:12], size, sha[:12])
    return None


def _drop(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def fetch(req):
    """Fetch the listed objects from ``sources`` (base URLs, tried in order); what failed is sent by the controller."""
    root = req["root"]
    fetched, failed = [], {}
    for obj in req["objects"]:
        sha = obj["sha256"]
        if not _is_sha(sha):
            fail(EXIT_BAD, "fetch: not a sha256: %r" % sha)
        why = []
        for base in req["sources"]:
            reason = fetch_one(root, sha, int(obj["size"]), base, float(req.get("timeout") or 30))
            if reason is None:
                fetched.append(sha)
                break
            why.append(reason)
        else:
            failed[sha] = "; ".join(why)
    return {"fetched": fetched, "failed": failed}


def op_serve(req):
    """Serve ``<root>/objects/<sha256>`` (nothing else) over HTTP on ``bind`` until stdin closes or ``lifetime`` ends.

    A relay for the boards of later waves: read-only, content-addressed names
    only, no directory listing, symlinks refused; the fetching board checks
    every byte against the sha256 it was told by the controller, so a relay
    can make a fetch fail but never make a board use a wrong object."""
    import http.server
    import select
    import shutil
    import threading
    import time

    objects = os.path.join(req["root"], "objects")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.lstrip("/")
            try:
                if not _is_sha(name):
                    raise FileNotFoundError(name)
                fd = os.open(os.path.join(objects, name), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                self.send_error(404)
                return
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(st.st_size))
                self.end_headers()
                shutil.copyfileobj(fh, self.wfile, 1 << 20)

        def log_message(self, *args):
            pass  # stdout is the controller's channel

    class Server(http.server.ThreadingHTTPServer):
        address_family = __import__("socket").AF_INET6 if ":" in req["bind"] else __import__("socket").AF_INET
        daemon_threads = True

    try:
        server = Server((req["bind"], int(req.get("port") or 0)), Handler)
    except OSError as exc:
        fail(EXIT_BAD, "serve: cannot listen on %s: %s" % (req["bind"], exc.strerror or exc))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say("serving %d" % server.server_address[1])
    end = time.monotonic() + float(req.get("lifetime") or 600)
    while time.monotonic() < end:  # until the controller closes stdin (or its connection dies)
        ready, _, _ = select.select([0], [], [], max(0.0, min(5.0, end - time.monotonic())))
        if ready and not os.read(0, 65536):
            break
    server.shutdown()
    server.server_close()
    return {"served": True}


#: ops the lock process runs for its controller (already under the lock)
LOCKED_OPS = {"commit": commit, "rollback": rollback, "fetch": fetch, "verdict": verdict,
              "stage": stage_scratch, "discard": discard}
OPS = {"prepare": op_prepare, "commit": locked(commit), "rollback": locked(rollback), "state": op_state,
       "verdict": locked(verdict)}


def main(argv):
    if len(argv) != 2 or argv[1] not in OPS and argv[1] not in ("lock", "serve"):
        sys.stderr.write("usage: release_agent.py {%s} < request.json\n" % ",".join(list(OPS) + ["lock", "serve"]))
        return EXIT_USAGE
    line = read_line() if argv[1] in ("lock", "serve") else sys.stdin.read()
    req = json.loads(line)
    FAULT.update(req.get("fault") or {})
    try:
        if argv[1] == "lock":
            op_lock(req)
        elif argv[1] == "serve":
            op_serve(req)
        else:
            json.dump(OPS[argv[1]](req), sys.stdout)
    except AgentFail as exc:
        sys.stderr.write(exc.msg + "\n")
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
