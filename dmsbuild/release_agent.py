"""The board side of a deploy: run ON the board as ``python3 -c <this file> OP``.

Standard library only (it runs with the board's Python). The request is JSON
on stdin, the answer JSON on stdout; a failure exits non-zero with one line on
stderr. Every path it touches is below the deploy root it is given::

    <root>/objects/<sha256>            content-addressed, read-only files
    <root>/objects/.tmp/<sha256>.part  uploads in progress (resumed by offset)
    <root>/releases/<id>/...           hardlinks into objects + manifest.json
    <root>/current -> releases/<id>    switched by one rename(2)
    <root>/history.json                release ids in deploy order (rollback pops)
    <root>/.lock                       flock'ed by the deploy in progress; names its holder

Ops: ``prepare`` (create the layout, check it is writable, report what the
board has), ``lock`` (hold the board lock until stdin closes; also prepares
when the request lists objects), ``commit``
(verify, stage the release, sync, switch, collect), ``rollback``, ``state``.
"""
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys

EXIT_USAGE, EXIT_LOCKED, EXIT_NOT_WRITABLE, EXIT_BAD = 2, 3, 4, 5


def fail(code, msg):
    sys.stderr.write(msg.replace("\n", " ") + "\n")
    sys.exit(code)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
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
    try:
        with open(os.path.join(root, "history.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return []


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


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def op_prepare(req):
    json.dump(prepare(req), sys.stdout)


def prepare(req):
    root = req["root"]
    try:
        for sub in ("objects/.tmp", "releases"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        probe = os.path.join(root, "objects", ".tmp", ".probe.%d" % os.getpid())
        with open(probe, "w") as fh:
            fh.write("x")
        os.unlink(probe)
    except OSError as exc:
        fail(EXIT_NOT_WRITABLE, "deploy root %s is not writable: %s" % (root, exc.strerror or exc))
    have, partial = [], {}
    for sha in req.get("objects", []):
        if os.path.isfile(inside(root, "objects/" + sha)):
            have.append(sha)
        else:
            try:
                partial[sha] = os.path.getsize(inside(root, "objects/.tmp/" + sha + ".part"))
            except OSError:
                pass
    st = os.statvfs(root)
    return {"have": have, "partial": partial, "current": current_id(root),
            "history": read_history(root), "free_bytes": st.f_bavail * st.f_frsize}


def op_lock(req):
    root = req["root"]
    try:
        os.makedirs(root, exist_ok=True)
        fd = os.open(os.path.join(root, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        fail(EXIT_NOT_WRITABLE, "deploy root %s is not writable: %s" % (root, exc.strerror or exc))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "{}"
        sys.stdout.write("held " + holder + "\n")
        sys.stdout.flush()
        sys.exit(EXIT_LOCKED)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(req["holder"]).encode(), 0)
    # with "objects" in the request, the prepare answer rides along (one process less per deploy)
    state = prepare(req) if "objects" in req else {}
    sys.stdout.write("locked " + json.dumps(state) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # held until the deploy closes stdin or its connection dies
    os.ftruncate(fd, 0)


def verify_objects(root, files):
    """Every object the release needs exists with its sha256 (uploads are promoted here)."""
    for f in files:
        sha = f["sha256"]
        obj = inside(root, "objects/" + sha)
        part = inside(root, "objects/.tmp/" + sha + ".part")
        if not os.path.isfile(obj) and os.path.isfile(part):
            got = sha256_of(part)
            if got != sha:
                os.unlink(part)  # a corrupt or overlong resume: the next deploy sends it again
                fail(EXIT_BAD, "upload of %s arrived corrupted (sha256 %s); it was removed, deploy again" % (f["file"], got))
            os.chmod(part, 0o444)
            fsync_file(part)
            os.replace(part, obj)
            continue
        if not os.path.isfile(obj):
            fail(EXIT_BAD, "object %s (%s) is missing on the board" % (sha, f["file"]))
        if os.path.getsize(obj) != f["size"] or sha256_of(obj) != sha:
            os.unlink(obj)
            fail(EXIT_BAD, "object %s (%s) on the board does not match its sha256; removed, deploy again" % (sha, f["file"]))


def release_ok(root, rid, files):
    rdir = os.path.join(root, "releases", rid)
    for f in files:
        try:
            a = os.stat(inside(rdir, f["file"]))
            b = os.stat(inside(root, "objects/" + f["sha256"]))
        except OSError:
            return False
        if (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev):
            return False
    return True


def stage(root, rid, files):
    """releases/<id>: hardlinks into objects, built under a temporary name then renamed."""
    rdir = os.path.join(root, "releases", rid)
    if os.path.isdir(rdir) and release_ok(root, rid, files):
        return
    tmp = os.path.join(root, "releases", ".tmp-%s-%d" % (rid, os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        dst = inside(tmp, f["file"])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.link(inside(root, "objects/" + f["sha256"]), dst)
        if f.get("mode"):
            pass  # objects are 0444; executables are run via their interpreter
    if os.path.isdir(rdir):
        trash = os.path.join(root, "releases", ".trash-%s-%d" % (rid, os.getpid()))
        os.rename(rdir, trash)
        os.rename(tmp, rdir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, rdir)


def sync(root, rid):
    """Make the release durable before the switch: fsync its folders and the objects folder.

    New objects were fsync'ed when promoted; this is a targeted ``sync`` (a
    global sync(2) waits for every other writer on the machine too)."""
    rdir = os.path.join(root, "releases", rid)
    for dirpath, _dirs, _files in os.walk(rdir):
        fsync_dir(dirpath)
    fsync_dir(os.path.join(root, "releases"))
    fsync_dir(os.path.join(root, "objects"))


def switch(root, rid):
    """current -> releases/<id> by one rename(2)."""
    link = os.path.join(root, "current")
    tmp = os.path.join(root, ".current.tmp.%d" % os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", rid), tmp)
    os.replace(tmp, link)
    fsync_dir(root)


def collect(root, keep):
    """Keep the last ``keep`` releases of the history (and current); drop the rest and unreferenced objects."""
    hist = read_history(root)
    kept = set(hist[-keep:]) | {current_id(root)}
    removed = []
    rel = os.path.join(root, "releases")
    for name in os.listdir(rel):
        if name not in kept and not name.startswith("."):
            shutil.rmtree(os.path.join(rel, name), ignore_errors=True)
            removed.append(name)
        elif name.startswith((".tmp-", ".trash-")):
            shutil.rmtree(os.path.join(rel, name), ignore_errors=True)
    write_atomic(os.path.join(root, "history.json"), json.dumps([h for h in hist if h in kept]))
    objects = os.path.join(root, "objects")
    freed = 0
    for name in os.listdir(objects):
        p = os.path.join(objects, name)
        if name.startswith(".") or not os.path.isfile(p):
            continue
        st = os.stat(p)
        if st.st_nlink <= 1:  # no release links it any more
            os.unlink(p)
            freed += st.st_size
    tmpdir = os.path.join(objects, ".tmp")
    for name in os.listdir(tmpdir):  # parts whose object arrived some other way
        if name.endswith(".part") and os.path.isfile(os.path.join(objects, name[:-5])):
            os.unlink(os.path.join(tmpdir, name))
    return removed, freed


def unchanged(root, rid, files):
    """The release is already current and intact (same inodes and sizes as its objects).

    Its sha256 were verified when it became current and objects are read-only,
    so an unchanged redeploy skips re-hashing (``full_verify`` forces it)."""
    if current_id(root) != rid or not release_ok(root, rid, files):
        return False
    return all(os.path.getsize(inside(root, "objects/" + f["sha256"])) == f["size"] for f in files)


def op_commit(req):
    root, rid, files = req["root"], req["release_id"], req["files"]
    if not req.get("full_verify") and unchanged(root, rid, files):
        for name, text in (req.get("board_files") or {}).items():
            write_atomic(inside(root, name), text)
        json.dump({"previous": rid, "current": rid, "removed_releases": [], "freed_bytes": 0}, sys.stdout)
        return
    verify_objects(root, files)
    stage(root, rid, files)
    previous = current_id(root)
    sync(root, rid)
    switch(root, rid)
    hist = [h for h in read_history(root) if h != rid] + [rid]
    write_atomic(os.path.join(root, "history.json"), json.dumps(hist))
    for name, text in (req.get("board_files") or {}).items():
        write_atomic(inside(root, name), text)
    removed, freed = collect(root, max(1, int(req.get("keep", 3))))
    json.dump({"previous": previous, "current": rid, "removed_releases": removed, "freed_bytes": freed}, sys.stdout)


def op_rollback(req):
    root = req["root"]
    hist = read_history(root)
    cur = current_id(root)
    if cur is None:
        fail(EXIT_BAD, "no release is deployed under %s; nothing to roll back" % root)
    if hist and hist[-1] == cur:
        hist = hist[:-1]
    hist = [h for h in hist if os.path.isfile(os.path.join(root, "releases", h, "manifest.json"))]
    if not hist:
        fail(EXIT_BAD, "no previous release kept under %s (only %s); nothing to roll back to" % (root, cur))
    prev = hist[-1]
    with open(os.path.join(root, "releases", prev, "manifest.json")) as fh:
        manifest = json.load(fh)
    for f in manifest["artifacts"] + manifest["files"]:
        for rel in [f["file"]]:
            p = inside(os.path.join(root, "releases", prev), rel)
            if not os.path.isfile(p) or sha256_of(p) != f["sha256"]:
                fail(EXIT_BAD, "previous release %s is damaged (%s); not switching" % (prev, rel))
    sync(root, prev)
    switch(root, prev)
    write_atomic(os.path.join(root, "history.json"), json.dumps(hist))
    json.dump({"previous": cur, "current": prev}, sys.stdout)


def op_state(req):
    root = req["root"]
    json.dump({"current": current_id(root), "history": read_history(root)}, sys.stdout)


OPS = {"prepare": op_prepare, "lock": op_lock, "commit": op_commit, "rollback": op_rollback, "state": op_state}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in OPS:
        fail(EXIT_USAGE, "usage: release_agent.py {%s} < request.json" % ",".join(OPS))
    line = sys.stdin.readline() if sys.argv[1] == "lock" else sys.stdin.read()
    OPS[sys.argv[1]](json.loads(line))
