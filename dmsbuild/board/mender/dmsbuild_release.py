#!/usr/bin/env python3
"""dmsbuild-release: a Mender Update Module (protocol v3) that installs a dmsbuild release on this board.

Installed on the board as ``/usr/share/mender/modules/v3/dmsbuild-release`` (the Mender 3.x client
looks for modules there only; the name is the artifact's payload type). ``doit bundle target=X
format=mender`` writes the artifact it installs and a copy of this file. Standard library only.

It hands the payload to the same board agent a ``doit deploy`` uses (``release_agent.py``, shipped
in the payload): the objects are staged as uploads, the agent's ``commit`` verifies every sha256,
stages ``releases/<id>`` and switches ``current`` with one rename; then the release's own runner
(``runner/dms_bench.py``) runs the output check and the accuracy gate judges it with the shared
judge (``judge.py``) and the target's floors. A failed check fails ``ArtifactInstall``; Mender
then calls ``ArtifactRollback``, which has the agent switch back to the previous release.

States (https://github.com/mendersoftware/mender/blob/3.4.0/Documentation/update-modules-v3-file-api.md):

- ``SupportsRollback``: Yes. ``NeedsArtifactReboot``: No.
- ``Download``: nothing (Mender stores the files itself).
- ``ArtifactInstall``: an install Mender no longer tracks (its client was killed) is undone first; lineage check, stage, verify, switch, output check and gates, results left on the board.
- ``ArtifactCommit``: succeeds only if the checked release is the one running.
- ``ArtifactRollback``: back to the release that ran before (none before: ``current`` removed).
- anything else: nothing, exit 0 (the protocol's rule for states it may add).

The board's settings come from ``<mender data dir>/dmsbuild-release.json`` (found from the File API
path Mender passes, ``<data>/modules/v3/payloads/<n>/tree``), else ``/etc/dmsbuild/mender-release.json``:
``{"root": "/opt/dmsbuild/rpi5", "python": "/usr/bin/python3"}`` (the deploy root of the target and the
Python that has numpy and onnxruntime).

What it leaves under ``<root>/mender/``: ``pending.json`` (the install in progress: release id and the
release it replaced), ``results/<time>-<release id>.json`` (the output check's results document and
verdict; ``doit ota_pull`` collects them into results.sqlite) and ``events.jsonl`` (installed, check
failed, rolled back, committed, recovered), one JSON line each.
"""
import json
import os
import shutil
import subprocess
import sys
import time

PLAN = "dmsbuild-release.json"
CONF = "dmsbuild-release.json"
ETC_CONF = "/etc/dmsbuild/mender-release.json"
#: tests only: the module writes ``<root>/mender/paused-<point>`` and sleeps at that point, so a test can
#: kill the client there (points: staged, switched, checking). Unset in production.
PAUSE_ENV = "DMSBUILD_MENDER_PAUSE"
#: seconds the output check may run (the board conf's "check_timeout" wins)
CHECK_TIMEOUT_S = 1800


class Fail(Exception):
    """A refusal: one line on stderr (Mender logs it with the deployment) and exit status 1."""


def say(msg):
    sys.stderr.write("dmsbuild-release: %s\n" % msg)
    sys.stderr.flush()


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise Fail("%s is unreadable (%s)" % (path, exc))


def write_json(path, data):
    """Atomically (temporary name, fsync, rename): a crash leaves the old file or the new one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def board_conf(tree):
    """This board's settings: beside Mender's data dir (found from the File API path), else /etc."""
    parts = os.path.abspath(tree).split(os.sep)
    candidates = []
    if len(parts) > 5 and parts[-5:-2] == ["modules", "v3", "payloads"] and parts[-1] == "tree":
        candidates.append(os.path.join(os.sep.join(parts[:-5]) or os.sep, CONF))
    candidates.append(ETC_CONF)
    for path in candidates:
        conf = read_json(path)
        if conf is None:
            continue
        root, python = conf.get("root"), conf.get("python", "python3")
        if not isinstance(root, str) or not root.startswith("/") or not isinstance(python, str) or not python:
            raise Fail('%s: expected {"root": "<absolute deploy root>", "python": "<board python>"}, got %r' % (path, conf))
        conf["root"] = root.rstrip("/") or "/"
        conf["python"] = python
        conf["source"] = path
        return conf
    raise Fail('no board settings: write %s with {"root": "<deploy root of the target>", "python": "<python with '
               'onnxruntime>"}' % " or ".join(candidates))


def load_plan(tree):
    plan = read_json(os.path.join(tree, "files", PLAN))
    if not isinstance(plan, dict) or plan.get("schema") != 1 or not isinstance(plan.get("files"), list):
        raise Fail("%s is missing or not a dmsbuild release plan (schema 1); was this artifact written by "
                   "`doit bundle format=mender`?" % os.path.join(tree, "files", PLAN))
    rid = plan.get("release_id")
    if not isinstance(rid, str) or not rid or not all(c in "0123456789abcdef" for c in rid):
        raise Fail("%s: release_id %r is not a release id" % (PLAN, rid))
    for f in plan["files"]:  # objects are named by their sha256: nothing else may name a payload file
        sha = f.get("sha256") if isinstance(f, dict) else None
        if not isinstance(sha, str) or len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
            raise Fail("%s: file entry %r has no sha256" % (PLAN, f))
    return plan


def state_dir(conf):
    return os.path.join(conf["root"], "mender")


def current_id(root):
    try:
        return os.path.basename(os.readlink(os.path.join(root, "current")).rstrip("/"))
    except OSError:
        return None


def event(conf, kind, release_id, **detail):
    """One line in ``<root>/mender/events.jsonl``: what happened, to which release, when (UTC)."""
    os.makedirs(state_dir(conf), exist_ok=True)
    line = dict(detail, event=kind, release_id=release_id, time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with open(os.path.join(state_dir(conf), "events.jsonl"), "a") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def pause(conf, point):
    """Test hook (inert unless PAUSE_ENV names this point): mark the point reached, then wait (60 s at most)
    to be killed, or for ``resume-<point>`` to appear."""
    if os.environ.get(PAUSE_ENV) != point:
        return
    os.makedirs(state_dir(conf), exist_ok=True)
    with open(os.path.join(state_dir(conf), "paused-" + point), "w") as fh:
        fh.write(str(os.getpid()))
    end = time.monotonic() + 60
    while time.monotonic() < end and not os.path.exists(os.path.join(state_dir(conf), "resume-" + point)):
        time.sleep(0.05)


def agent(conf, tree, op, request):
    """Run the board agent shipped in this payload (the one ``doit deploy`` sends) with one JSON request."""
    script = os.path.join(tree, "files", "release_agent.py")
    res = subprocess.run([conf["python"], script, op], input=json.dumps(request), capture_output=True, text=True)
    if res.returncode != 0:
        raise Fail("board agent %s failed (exit %d): %s" % (op, res.returncode, (res.stderr.strip() or res.stdout.strip())[-400:]))
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise Fail("board agent %s answered no JSON: %r" % (op, res.stdout[-200:]))


def pending_path(conf):
    return os.path.join(state_dir(conf), "pending.json")


def undo(conf, tree, pending):
    """Put the board back on the release that ran before ``pending`` (only if ``pending`` was switched in)."""
    root, rid, previous = conf["root"], pending["release_id"], pending.get("previous")
    cur = current_id(root)
    if cur != rid or rid == previous:
        return cur  # never switched in (failed before the switch), or already back
    if previous:
        answer = agent(conf, tree, "rollback", {"root": root})
        if answer.get("current") != previous:
            raise Fail("rolled back to %s, expected %s (the release before %s)" % (answer.get("current"), previous, rid))
        return previous
    link = os.path.join(root, "current")  # the board had no release before this one: it has none again
    os.unlink(link)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return None


def recover(conf, tree):
    """An install Mender no longer tracks (its client was killed mid-install) is undone before a new one starts.

    Mender starts a new update only when none is in progress, so a ``pending.json`` seen here belongs to an
    install whose client died: the board goes back to what it ran before, which is what Mender reports."""
    pending = read_json(pending_path(conf))
    if pending is None:
        return
    back = undo(conf, tree, pending)
    os.unlink(pending_path(conf))
    event(conf, "recovered", pending["release_id"], current=back,
          why="an earlier install of this release was interrupted; the board is back on the release before it")
    say("an interrupted install of release %s was undone; the board runs %s" % (pending["release_id"], back))


def check_lineage(conf, plan):
    """A board takes releases of its own project and target only (Mender's device type checks the board kind)."""
    cur = current_id(conf["root"])
    if cur is None:
        return
    manifest = read_json(os.path.join(conf["root"], "releases", cur, "manifest.json"), {}) or {}
    have = (manifest.get("project"), manifest.get("target"))
    want = (plan.get("project"), plan.get("target"))
    if have != want:
        raise Fail("this board runs release %s of project %r target %r; the artifact is project %r target %r: refused "
                   "(deploy a bundle of the board's own target, or clear %s/current on purpose)" % (cur, have[0], have[1],
                                                                                                   want[0], want[1], conf["root"]))


def stage_objects(conf, tree, plan):
    """Copy the payload's objects the board lacks to ``objects/.tmp/<sha256>.part``: the agent's commit
    verifies each one before it becomes an object (as for an upload)."""
    root = conf["root"]
    shas = sorted(set(f["sha256"] for f in plan["files"]))
    have = set(agent(conf, tree, "prepare", {"root": root, "objects": shas})["have"])
    for sha in shas:
        if sha in have:
            continue
        src = os.path.join(tree, "files", sha)
        if not os.path.isfile(src):
            raise Fail("payload lacks object %s named by its plan" % sha)
        part = os.path.join(root, "objects", ".tmp", sha + ".part")
        if os.path.lexists(part):
            os.unlink(part)
        with open(src, "rb") as i, open(part, "wb") as o:
            shutil.copyfileobj(i, o, 1 << 20)
            o.flush()
            os.fsync(o.fileno())


class _Floor(object):
    def __init__(self, value, source):
        self.value, self.source = float(value), source


class _HeadFloors(object):
    def __init__(self, d):
        for metric in ("max_accuracy_drop", "min_cosine", "min_sqnr_db"):
            self.__dict__[metric] = _Floor(*d[metric])
        for metric, value in d.items():  # the kinds' floors (min_recall, min_mask_iou, ...): the judge defaults the rest
            self.__dict__.setdefault(metric, _Floor(*value))


class _Floors(object):
    """The bundle's floors ({"default": {metric: [value, source]}, "heads": {head: ...}}) as the judge reads them."""

    def __init__(self, d):
        self.default = _HeadFloors(d["default"])
        self.heads = dict((h, _HeadFloors(v)) for h, v in (d.get("heads") or {}).items())

    def for_head(self, head):
        return self.heads.get(head, self.default)


def judge(tree, plan, doc):
    """The gates the board can judge alone: every artifact ran, every head meets its floor (the shared judge)."""
    import importlib.util

    # the payload's judge.py is dmsbuild/board/runner/judge.py: the host gates' own judge, loaded by path
    spec = importlib.util.spec_from_file_location("dmsbuild_judge", os.path.join(tree, "files", "judge.py"))
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)

    floors = _Floors(plan["floors"])
    failures = []
    for r in doc.get("results") or []:
        if r.get("error") is not None:
            failures.append("artifact %s did not run: %s" % (r.get("artifact"), r["error"]))
            continue
        verify = r.get("verify")
        if not verify:
            continue
        for line in shared.failures(verify["heads"], floors, verify["samples"]):
            failures.append("artifact %s (%s) fails the accuracy gate on the board's output check: %s"
                            % (r.get("artifact"), r.get("precision"), line))
    if not doc.get("results"):
        failures.append("the output check returned no results")
    return failures


def output_check(conf, tree, plan):
    """Run the release's runner on the new ``current``; leave the results and the verdict on the board."""
    root, rid = conf["root"], plan["release_id"]
    rdir = os.path.join(root, "releases", rid)
    runner = os.path.join(rdir, "runner", "dms_bench.py")
    pause(conf, "checking")
    doc, error = None, None
    if not os.path.isfile(runner):
        error = "the release has no runner/dms_bench.py: nothing to check it with"
    else:
        try:
            res = subprocess.run([conf["python"], runner, "--release", rdir], capture_output=True, text=True,
                                 timeout=float(conf.get("check_timeout") or CHECK_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            res = None
            error = "the output check did not finish within %s s" % (conf.get("check_timeout") or CHECK_TIMEOUT_S)
        if res is not None:
            if res.returncode in (0, 5):  # 5: every artifact failed (each result says why)
                try:
                    doc = json.loads(res.stdout)
                except ValueError:
                    error = "the runner printed no results document"
            else:
                error = "the runner failed (exit %d): %s" % (res.returncode, res.stderr.strip()[-400:])
    failures = [error] if error else judge(tree, plan, doc)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {"schema": 1, "route": "mender", "release_id": rid, "artifact_name": plan.get("artifact_name"),
              "project": plan.get("project"), "target": plan.get("target"), "checked_at": stamp,
              "verdict": {"ok": not failures, "failures": failures}, "document": doc}
    write_json(os.path.join(state_dir(conf), "results", "%s-%s-%d.json" % (stamp, rid, os.getpid())), record)
    return failures


def artifact_install(tree):
    conf, plan = board_conf(tree), load_plan(tree)
    root, rid = conf["root"], plan["release_id"]
    recover(conf, tree)
    check_lineage(conf, plan)
    stage_objects(conf, tree, plan)
    pause(conf, "staged")
    previous = current_id(root)
    write_json(pending_path(conf), {"release_id": rid, "previous": previous, "artifact_name": plan.get("artifact_name"),
                                    "state": "installing"})
    # keep at least 2: the release being replaced must survive the collection, or there is nothing to roll back to
    answer = agent(conf, tree, "commit", {"root": root, "release_id": rid, "files": plan["files"],
                                          "keep": max(2, int(plan.get("keep") or 3)), "board_files": {}})
    if "resend" in answer:
        raise Fail("objects failed their sha256 check after Mender's own: %s" % "; ".join(answer.get("problems") or []))
    pause(conf, "switched")
    write_json(pending_path(conf), {"release_id": rid, "previous": previous, "artifact_name": plan.get("artifact_name"),
                                    "state": "checking"})
    failures = output_check(conf, tree, plan)
    if failures:
        event(conf, "check_failed", rid, failures=failures)
        raise Fail("release %s failed its output check; Mender rolls it back: %s" % (rid, " | ".join(failures)))
    write_json(pending_path(conf), {"release_id": rid, "previous": previous, "artifact_name": plan.get("artifact_name"),
                                    "state": "installed"})
    event(conf, "installed", rid, previous=previous)
    say("release %s installed and checked (was %s); commit to keep it" % (rid, previous))


def artifact_commit(tree):
    conf, plan = board_conf(tree), load_plan(tree)
    rid = plan["release_id"]
    pending = read_json(pending_path(conf))
    cur = current_id(conf["root"])
    if pending is None or pending.get("release_id") != rid or pending.get("state") != "installed" or cur != rid:
        raise Fail("release %s is not installed and checked here (running: %s, install record: %s); not committing"
                   % (rid, cur, pending))
    event(conf, "committed", rid, previous=pending.get("previous"))
    os.unlink(pending_path(conf))


def artifact_rollback(tree):
    conf, plan = board_conf(tree), load_plan(tree)
    pending = read_json(pending_path(conf))
    if pending is None or pending.get("release_id") != plan["release_id"]:
        say("nothing of release %s to roll back (it was never switched in)" % plan["release_id"])
        return
    back = undo(conf, tree, pending)
    os.unlink(pending_path(conf))
    event(conf, "rolled_back", plan["release_id"], current=back)
    say("release %s rolled back; the board runs %s" % (plan["release_id"], back))


def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: dmsbuild-release STATE FILE-API-DIR (called by the Mender client)\n")
        return 2
    state = argv[1]
    if state == "SupportsRollback":
        print("Yes")
        return 0
    if state == "NeedsArtifactReboot":
        print("No")
        return 0
    # Download: nothing (Mender stores the files itself; the files tree, and the agent in it, exists from
    # ArtifactInstall on, which is where an interrupted earlier install is undone first)
    steps = {"ArtifactInstall": artifact_install, "ArtifactCommit": artifact_commit,
             "ArtifactRollback": artifact_rollback}
    if state not in steps:
        return 0  # ArtifactFailure, Cleanup and states a later protocol adds: nothing to do
    if len(argv) < 3:
        sys.stderr.write("dmsbuild-release %s: the File API directory is missing\n" % state)
        return 2
    try:
        steps[state](argv[2])
    except Fail as exc:
        say(str(exc))
        return 1
    except OSError as exc:  # the board's file system refused (ENOSPC, EROFS, EACCES): say which file
        say("%s failed: %s%s" % (state, exc.strerror or exc, " (%s)" % exc.filename if exc.filename else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
