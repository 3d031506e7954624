"""Mirror rollouts (issue 17): objects published once to a real nginx on loopback (127.0.8.11), boards fetch them.

The boards (real sshd on 127.0.8.21-22) fetch ``<mirror>/<sha256>`` with their
Python's urllib and check the sha256 as the bytes arrive (and again at
commit); nginx's access log proves which objects came from the mirror. Faults:
a corrupted object on the mirror, the mirror down, a deploy killed during the
fetch; the board always ends on a complete, verified release.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dmsbuild.ship import fleet
from dmsbuild.boards import down, up
from dmsbuild.errors import UserError
from dmsbuild.config import DeployConfig
from dmsbuild.ship.release import FAULT_ENV
from tests.conftest import _free_port
from tests.test_relay import FILES, _check_current, _deployer, _ref, _release

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ADDR = "127.0.8.11"


@pytest.fixture(scope="module")
def mirror_boards(tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("mirror-boards")
    state = up(2, where, port=_free_port("127.0.8.21"), first=21, groups=("rpi5",), name_prefix="mirror", net="127.0.8")
    yield state
    down(where, quiet=True)


class Nginx:
    """nginx serving ``work/www/objects`` on ``addr`` (config, pid, logs, temp dirs all in ``work``), stopped by its pid.

    Also the mirror of bench/bench_uplink.py."""

    def __init__(self, work: Path, addr: str = ADDR) -> None:
        if not os.path.exists(NGINX):
            pytest.skip("nginx is not installed (scripts/setup.sh installs nginx-light)")
        self.addr = addr
        self.work, self.root, self.port = work, work / "www" / "objects", _free_port(addr)
        self.root.mkdir(parents=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (work / "nginx.conf").write_text(
            f"{user}daemon off;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'};\nworker_processes 1;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"  access_log {work / 'access.log'};\n"
            + "".join(f"  {k}_temp_path {work / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + f"  server {{ listen {addr}:{self.port}; root {work / 'www'}; autoindex off; }}\n}}\n")
        self.proc = subprocess.Popen([NGINX, "-p", str(work), "-c", str(work / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            try:
                socket.create_connection((addr, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.025)
        raise AssertionError(f"nginx did not listen: {(work / 'error.log').read_text()[-400:]}")

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/objects/"

    def gets(self) -> list[str]:
        """The object names fetched with status 200 (from the access log)."""
        log = (self.work / "access.log").read_text() if (self.work / "access.log").exists() else ""
        return [ln.split('"GET /objects/')[1].split()[0] for ln in log.splitlines() if '"GET /objects/' in ln and '" 200 ' in ln]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def nginx(tmp_path):
    n = Nginx(tmp_path / "nginx")
    yield n
    n.stop()


def test_boards_fetch_every_object_from_the_mirror(mirror_boards, nginx, tmp_path):
    release = _release(tmp_path, "m")
    fd = _deployer(mirror_boards, tmp_path, release, relay="off", mirror=nginx.url)
    assert fd.publish(nginx.root) == sum(FILES.values())
    assert fd.publish(nginx.root) == 0  # once: already there
    try:
        res = fleet.rollout(fd.refs(), release.release_id, fd.deploy_one, target="rpi5", parallel=2,
                            current_release=fd.current_release)
    finally:
        fd.close()
    assert res.exit_code == 0, res.table()
    for b in res.boards:
        assert b.bytes_sent == 0 and b.details["objects_fetched"] == len(FILES)
        _check_current(tmp_path, b.name, release)
    assert sorted(nginx.gets()) == sorted([f.sha256 for f in release.files] * 2)


def test_corrupt_object_on_the_mirror_is_refused(mirror_boards, nginx, tmp_path):
    release = _release(tmp_path, "c")
    fd = _deployer(mirror_boards, tmp_path, release, relay="off", mirror=nginx.url)
    fd.publish(nginx.root)
    small = min(release.files, key=lambda f: f.size)
    (nginx.root / small.sha256).write_bytes(b"x" * small.size)
    try:
        out = fd.deploy_one(_ref(fd, "mirror-01"), fleet._NullSink())
    finally:
        fd.close()
    assert out.ok, out.reason
    assert out.bytes_sent == small.size and out.details["objects_fetched"] == len(FILES) - 1
    _check_current(tmp_path, "mirror-01", release)


def test_mirror_down_falls_back_to_the_controller(mirror_boards, nginx, tmp_path):
    release = _release(tmp_path, "d")
    fd = _deployer(mirror_boards, tmp_path, release, relay="off", mirror=nginx.url)
    fd.publish(nginx.root)
    nginx.stop()
    try:
        out = fd.deploy_one(_ref(fd, "mirror-02"), fleet._NullSink())
    finally:
        fd.close()
    assert out.ok, out.reason
    assert out.bytes_sent == sum(FILES.values()) and "objects_fetched" not in out.details
    _check_current(tmp_path, "mirror-02", release)


def test_deploy_killed_during_mirror_fetch_keeps_the_old_release(mirror_boards, nginx, tmp_path, monkeypatch):
    old, new = _release(tmp_path, "o"), _release(tmp_path, "n")
    fd0 = _deployer(mirror_boards, tmp_path, old, relay="off")
    assert fd0.deploy_one(_ref(fd0, "mirror-01"), fleet._NullSink()).ok
    fd = _deployer(mirror_boards, tmp_path, new, relay="off", mirror=nginx.url)
    fd.publish(nginx.root)
    monkeypatch.setenv(FAULT_ENV, "fetch.read:kill")
    out = fd.deploy_one(_ref(fd, "mirror-01"), fleet._NullSink())
    assert not out.ok
    _check_current(tmp_path, "mirror-01", old)
    monkeypatch.delenv(FAULT_ENV)
    again = fd.deploy_one(_ref(fd, "mirror-01"), fleet._NullSink())
    fd.close()
    assert again.ok, again.reason
    _check_current(tmp_path, "mirror-01", new)


@pytest.mark.parametrize("url", ["ftp://m/objects/", "mirror.lab/objects", "http://"])
def test_mirror_url_must_be_http(url):
    with pytest.raises(UserError, match="mirror"):
        DeployConfig(mirror=url).validate("targets/rpi5.toml", "deploy")
