"""doctor: host toolchain checks and board-facts checks, with fabricated facts and hooks."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.ship import doctor
from dmsbuild.config import load_target

ROOT = Path(__file__).resolve().parents[1]


def prof(name):
    return load_target(ROOT, name)


def versions(**have):
    table = {k.replace("_", "-"): v for k, v in have.items()}
    return lambda dist: table.get(dist)


def by_what(checks):
    return {(c.where, c.what): c for c in checks}


def host(profiles, *, env=None, free=10_000, which=None, **have):
    return by_what(doctor.check_host(profiles, ROOT / "artifacts", version_of=versions(**have),
                                     which=which or (lambda exe: None), environ=env or {},
                                     disk_free_mb=lambda p: free))


def test_host_all_present_for_qcs8255(tmp_path):
    sdk = tmp_path / "qairt"
    (sdk / "bin" / "x86_64-linux-clang").mkdir(parents=True)
    (sdk / "bin" / "x86_64-linux-clang" / "snpe-onnx-to-dlc").write_text("")
    c = host([prof("qcs8255")], env={"SNPE_ROOT": str(sdk)}, onnxruntime="1.32.0", onnxruntime_qnn="2.7.0")
    assert c[("host", "onnxruntime-qnn")].level == "ok"
    assert c[("host", "SNPE SDK")].level == "ok" and "SNPE_ROOT" in c[("host", "SNPE SDK")].found
    text, ok = doctor.report(list(c.values()))
    assert ok and "0 missing" in text


def test_host_missing_qnn_and_sdk_say_what_to_install():
    c = host([prof("qcs8255")], onnxruntime="1.32.0")
    qnn = c[("host", "onnxruntime-qnn")]
    assert qnn.level == "missing" and "pip install 'dmsbuild[qnn]'" in qnn.fix
    sdk = c[("host", "SNPE SDK")]
    assert sdk.level == "warning"  # QNN artifacts still build; only the DLC ones need the SDK
    assert "SNPE_ROOT" in sdk.fix and "qpm.qualcomm.com" in sdk.fix
    text, ok = doctor.report(list(c.values()))
    assert not ok
    assert "MISSING host: onnxruntime-qnn: not found (needed by qcs8255)" in text
    assert "-> pip install 'dmsbuild[qnn]'" in text


def test_host_old_onnxruntime_for_plugin_ep():
    c = host([prof("qcs8255")], onnxruntime="1.20.1", onnxruntime_qnn="2.7.0")
    assert c[("host", "onnxruntime for the QNN plugin EP")].level == "missing"


def test_host_tensorrt_optional_and_old_version():
    c = host([prof("orin")], onnxruntime="1.32.0")
    assert c[("host", "tensorrt (Python, optional)")].level == "warning"
    assert c[("host", "trtexec (optional)")].level == "warning"
    assert doctor.report(list(c.values()))[1] is True  # warnings only
    c = host([prof("orin")], onnxruntime="1.32.0", tensorrt="8.6.1", which=lambda e: "/usr/bin/trtexec")
    assert c[("host", "tensorrt >= 10")].level == "missing"
    assert c[("host", "trtexec (optional)")].found == "/usr/bin/trtexec"


def test_host_disk_and_no_onnxruntime():
    c = host([prof("rpi5")], free=100)
    assert c[("host", "onnxruntime")].level == "missing"
    disk = [v for k, v in c.items() if k[1].startswith("free disk")][0]
    assert disk.level == "missing" and disk.found == "100 MiB"
    assert ("host", "onnxruntime-qnn") not in c and ("host", "SNPE SDK") not in c


ORIN_OK = {"hostname": "orin-01", "arch": "aarch64", "os": "Ubuntu 22.04", "kernel": "5.15.148-tegra",
           "python": "3.10.12", "numpy": "1.26.4", "onnxruntime": None, "onnxruntime_providers": None,
           "onnxruntime_qnn": None, "tensorrt": "10.3.0", "trtexec": "/usr/src/tensorrt/bin/trtexec",
           "snpe": None, "disk_free_mb": 20480, "mem_total_mb": 15536}


def test_board_orin_complete():
    checks = doctor.check_board("orin-01", ORIN_OK, prof("orin"))
    assert all(c.level == "ok" for c in checks), [c.line() for c in checks if c.level != "ok"]


def test_board_orin_missing_trtexec_old_trt_and_wrong_arch():
    facts = dict(ORIN_OK, arch="x86_64", tensorrt="8.5.2", trtexec=None, disk_free_mb=100)
    c = by_what(doctor.check_board("orin-01", facts, prof("orin")))
    assert c[("orin-01", "arch")].level == "missing"  # engines are not portable
    assert c[("orin-01", "TensorRT >= 10")].level == "missing" and "JetPack" in c[("orin-01", "TensorRT >= 10")].fix
    assert c[("orin-01", "trtexec")].level == "missing" and "/usr/src/tensorrt/bin/trtexec" in c[("orin-01", "trtexec")].fix
    assert c[("orin-01", "free disk")].level == "missing"


def test_board_qcs8255_emulated():
    facts = dict(ORIN_OK, hostname="qcs-01", arch="x86_64", tensorrt=None, trtexec=None, onnxruntime="1.32.0",
                 onnxruntime_providers=["CPUExecutionProvider"], onnxruntime_qnn="2.7.0")
    c = by_what(doctor.check_board("qcs-01", facts, prof("qcs8255")))
    assert c[("qcs-01", "arch")].level == "warning"  # emulated board: portable artifacts still run
    assert c[("qcs-01", "QNN execution provider")].level == "ok"
    assert c[("qcs-01", "SNPE runtime (snpe-net-run)")].level == "warning"
    assert ("qcs-01", "trtexec") not in c
    no_qnn = by_what(doctor.check_board("qcs-01", dict(facts, onnxruntime_qnn=None), prof("qcs8255")))
    assert no_qnn[("qcs-01", "QNN execution provider")].level == "missing"


def test_board_missing_python_and_unknown_disk():
    c = by_what(doctor.check_board("rpi-1", {"arch": "aarch64"}, prof("rpi5")))
    assert c[("rpi-1", "python3")].level == "missing" and c[("rpi-1", "onnxruntime")].level == "missing"
    assert c[("rpi-1", "free disk")].level == "warning"


def test_run_with_board_facts():
    text, ok = doctor.run(ROOT, "orin", {"orin-01": ("orin", ORIN_OK), "orin-02": ("orin", dict(ORIN_OK, trtexec=None))})
    assert "MISSING orin-02: trtexec" in text and "orin-01: trtexec: /usr/src/tensorrt/bin/trtexec" in text
    assert not ok


def test_doctor_module_is_light():
    import subprocess
    import sys

    code = ("import sys; import dmsbuild.ship.doctor; "
            "print(sorted(m for m in ('torch','onnx','onnxruntime','tensorrt','paramiko','numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_doit_doctor_task(tmp_path):
    import os
    import subprocess
    import sys

    dodo = tmp_path / "dodo.py"
    dodo.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom dmsbuild.tasks.doctor import task_doctor\n")
    env = dict(os.environ, DMSBUILD_ROOT=str(ROOT))
    doit = [sys.executable, "-m", "doit", "-f", str(dodo), "--db-file", str(tmp_path / "db"), "doctor"]
    ok = subprocess.run(doit + ["target=rpi5"], capture_output=True, text=True, env=env)
    assert "host: onnxruntime:" in ok.stdout and "doctor:" in ok.stdout
    bad = subprocess.run(doit + ["target=nope"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "target 'nope': no profile" in bad.stdout + bad.stderr


@pytest.mark.parametrize("order", [("missing", "ok"), ("ok", "missing"), ("warning", "missing"), ("missing", "warning")])
def test_one_tool_checked_for_two_runtimes_is_one_line_at_the_worse_level(order):
    """QNN and SNPE both check the SNPE SDK: one line, at the worse of the two levels whichever comes first."""
    from dmsbuild.backends.base import Check

    first, second = (Check("host", "SNPE SDK", lvl, f"found {lvl}", rt, f"fix {lvl}") for lvl, rt in zip(order, ("qnn", "snpe")))
    [one] = doctor.merged([first, second])
    worse = "missing" if "missing" in order else "warning"
    assert (one.level, one.found, one.fix, one.needed_by) == (worse, f"found {worse}", f"fix {worse}", "qnn, snpe")


@pytest.mark.parametrize("free_mib, level", [(doctor.HOST_DISK_MB - 0.5, "missing"), (doctor.HOST_DISK_MB, "ok"),
                                            (doctor.HOST_DISK_MB * 4, "ok")])
def test_host_disk_is_measured_in_mib_without_a_hook(monkeypatch, free_mib, level):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2**40, 0, int(free_mib * 2**20)))
    checks = doctor.check_host([prof("rpi5")], ROOT / "artifacts", version_of=versions(onnxruntime="1.32.0"),
                               which=lambda exe: None, environ={})
    [disk] = [c for c in checks if c.what.startswith("free disk")]
    assert disk.level == level and disk.found == f"{free_mib:.0f} MiB"


@pytest.mark.parametrize("order", ["missing-first", "ok-first"])
def test_one_tool_checked_by_three_runtimes_merges_to_the_missing_check_with_its_fix(order):
    """The SNPE SDK checked for QNN's DLCs (missing there) and for SNPE (found): one line, MISSING, with the
    missing check's fix, needed by both (whichever runtime was checked first)."""
    from dmsbuild.backends.base import Check

    bad = Check("host", "SNPE SDK", "missing", None, "qnn", "install the SNPE SDK")
    good = Check("host", "SNPE SDK", "ok", "2.20", "snpe", "")
    warn = Check("host", "SNPE SDK", "warning", "2.10", "snpe-old", "upgrade it")
    checks = [bad, good, warn] if order == "missing-first" else [good, warn, bad]
    [one] = doctor.merged(checks)
    assert (one.level, one.found, one.fix) == ("missing", None, "install the SNPE SDK")
    assert set(one.needed_by.split(", ")) == {"qnn", "snpe", "snpe-old"}
