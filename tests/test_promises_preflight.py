"""Promise class: every deploy pre-flight check of every runtime (issue 25, item 1).

docs/targets.md: "a board missing python3, numpy, onnxruntime or trtexec is refused before anything is sent,
with the install hint, and keeps its release". Generated: for every runtime a profile can name (the
``runtime`` field's allowed values, which include every registered backend) and every board fact, the fact is
taken away from a board that has everything; each check ``doctor.check_board`` then reports missing must be
refused by the deploy's pre-flight (``release._preflight``) when the docs list it, and must not be when they do
not (``DOCTOR_ONLY`` says why; a new check has to be put on one side or the other). The list is read from the
docs' own sentence, so the docs, ``doctor.PREFLIGHT`` and the code cannot drift apart unnoticed.

That the refusal comes before any byte is sent is shown on a real sshd board by
``tests/test_ssh_route.py::test_deploy_preflight_refuses_a_board_without_onnxruntime_before_sending``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dmsbuild.backends import REGISTRY
from dmsbuild.config import TargetProfile
from dmsbuild.core.runtimes import RUNTIMES as REGISTERED
from dmsbuild.errors import UserError
from dmsbuild.ship.doctor import check_board, preflight
from dmsbuild.ship.facts import FACT_KEYS
from dmsbuild.ship.inventory import Board
from dmsbuild.ship.release import _preflight

DOCS = Path(__file__).resolve().parents[1] / "docs" / "targets.md"
RUNTIMES = sorted(REGISTERED)  # every registered runtime (config accepts exactly these)
#: a board with everything every runtime needs
FULL = {"hostname": "b", "arch": "aarch64", "os": "Linux", "kernel": "6.1", "python": "3.11.2", "numpy": "1.26.4",
        "onnxruntime": "1.32.0", "onnxruntime_providers": ["QNNExecutionProvider", "CPUExecutionProvider"],
        "onnxruntime_qnn": "2.7.0", "tensorrt": "10.3.0", "trtexec": "TensorRT v100300", "snpe": "2.26.0",
        "disk_free_mb": 10_000, "mem_total_mb": 8000, "emulated": None, "litert": "ai-edge-litert 2.3.0",
        "edgetpu": {"library": "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1", "usb": ["18d1:9302"], "pcie": []}}
#: checks a board can miss that do not stop a deploy before sending (doctor reports them), and why
DOCTOR_ONLY = {
    "free disk": "a full disk fails the upload itself, which leaves the board's current release in place "
                 "(tests/faults: full disks)",
    "arch": "facts.check_arch judges the arch per artifact kind at deploy (portable ONNX: a warning)",
    "QNN execution provider": "not in the documented pre-flight: the release is sent and fails its on-board run",
    "SNPE runtime (snpe-net-run)": "not in the documented pre-flight: the release is sent and fails its on-board run",
    "TensorRT >= 10": "not in the documented pre-flight: trtexec (which is) builds and runs the engines",
    "LiteRT interpreter": "not in the documented pre-flight: the release is sent and its runner fails with the install line",
    "Edge TPU delegate (libedgetpu.so.1)": "not in the documented pre-flight: the runner fails that artifact with the "
                                           "install line (an emulated board runs the CPU path)",
    "Edge TPU device (USB or PCIe)": "not in the documented pre-flight: the delegate fails to open without one, "
                                     "in the runner, with the install line",
}


def documented_preflight() -> set[str]:
    """The tools the docs promise a refusal for, read from docs/targets.md's pre-flight sentence."""
    text = " ".join(DOCS.read_text().split())
    m = re.search(r"a board missing (.+?) is refused before anything is sent", text)
    assert m, "docs/targets.md lost its pre-flight sentence"
    return {t.strip() for t in re.split(r",| or ", m.group(1)) if t.strip()}


def test_the_documented_list_is_the_code_s_list():
    from dmsbuild.ship.doctor import PREFLIGHT

    assert documented_preflight() == set(PREFLIGHT)
    assert set(REGISTRY) <= set(RUNTIMES)


def _profile(runtime: str) -> TargetProfile:
    p = TargetProfile(name="t", runtime=runtime, arch="aarch64")
    p.source = Path("targets/t.toml")
    return p


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_board_with_everything_passes_the_pre_flight(runtime):
    prof = _profile(runtime)
    assert [c for c in check_board("b", FULL, prof) if c.level == "missing"] == []
    assert preflight("b", FULL, prof) == []
    _preflight(Board(name="b", host="h"), prof, dict(FULL))  # no refusal


CASES = [(rt, key) for rt in RUNTIMES for key in FACT_KEYS if FULL.get(key) is not None]


@pytest.mark.parametrize("runtime, fact", CASES, ids=[f"{rt}-without-{k}" for rt, k in CASES])
def test_a_board_missing_a_tool_is_refused_exactly_when_the_docs_say(runtime, fact):
    prof = _profile(runtime)
    facts = {**FULL, fact: None}
    missing = {c.what for c in check_board("b", facts, prof) if c.level == "missing"}
    unknown = missing - documented_preflight() - set(DOCTOR_ONLY)
    assert not unknown, f"checks {unknown} are neither in the documented pre-flight nor in DOCTOR_ONLY: classify them"
    must_refuse = missing & documented_preflight()
    refused = {c.what for c in preflight("b", facts, prof)}
    assert refused == must_refuse, (runtime, fact, missing)
    board = Board(name="pi-07", host="h", python="/opt/py/bin/python3")
    if must_refuse:
        with pytest.raises(UserError) as exc:
            _preflight(board, prof, facts)
        first = str(exc.value).splitlines()[0]
        assert first.startswith("board pi-07: pre-flight: ") and "nothing was sent" in first
        assert all(f"{what} not installed" in first for what in must_refuse), first
        assert "/opt/py/bin/python3" in first and exc.value.hint and "doit doctor target=t" in exc.value.hint
    else:
        _preflight(board, prof, facts)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_runtime_needs_python_and_numpy_and_its_own_runner(runtime):
    """What each runtime's board must have, from the checks themselves: the refusals are not vacuous."""
    needs = set()
    for key in FACT_KEYS:
        if FULL.get(key) is not None:
            needs |= {c.what for c in preflight("b", {**FULL, key: None}, _profile(runtime))}
    runner = {"onnxruntime": {"onnxruntime"}, "qnn": {"onnxruntime"}, "tensorrt": {"trtexec"}, "snpe": set(),
              "ortformat": {"onnxruntime"},
              "litert": set(), "edgetpu": set()}  # the LiteRT interpreter is checked by doctor, not pre-flight
    assert needs == {"python3", "numpy"} | runner[runtime], needs
