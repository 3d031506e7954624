"""scripts/rewrite_imports.py: what the lead runs over other branches' files after the layout change."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "rewrite_imports.py"


def _module():
    spec = importlib.util.spec_from_file_location("rewrite_imports", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["rewrite_imports"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_mapping_names_real_modules_on_both_sides() -> None:
    rw = _module()
    mapping = rw.load_mapping()
    assert len(mapping) >= 6
    for old, new in mapping.items():
        assert importlib.util.find_spec(new) is not None, new
        # the old name is gone (no shim module left behind that would make a second way in)
        old_path = ROOT / (old.replace(".", "/") + ".py")
        assert not old_path.exists() and not (ROOT / old.replace(".", "/")).is_dir(), old


def test_an_old_layout_file_is_rewritten(tmp_path: Path) -> None:
    rw = _module()
    mapping = rw.load_mapping()
    new_file = ROOT / "dmsbuild" / "pipeline" / "deploy.py"  # where another branch adds a module (not written: text only)
    text = ("from ..measure.results import ResultStore  # store\n"
            "from ..measure import results, gates\n"
            "from ..ship.transport.base import Transport\n"
            "from ..build.paths import Paths\n"
            "def f():\n"
            "    from ..ship.rollout_spec import STATES\n"
            "    return ('dmsbuild.build.evaluate:write_reference', 'dmsbuild/ship/transport/ssh.py', "
            "'python -m dmsbuild.measure.results', 'see measure/provenance.py and build/qat.py', 'build/ is output')\n")
    assert rw.rewrite(text, new_file, mapping) == (
        "from ..core.results import ResultStore  # store\n"
        "from ..core import results\n"
        "from ..measure import gates\n"
        "from ..transport.base import Transport\n"
        "from ..convert.paths import Paths\n"
        "def f():\n"
        "    from ..core.rollout_spec import STATES\n"
        "    return ('dmsbuild.convert.evaluate:write_reference', 'dmsbuild/transport/ssh.py', "
        "'python -m dmsbuild.core.results', 'see core/provenance.py and convert/qat.py', 'build/ is output')\n")
    task = ROOT / "dmsbuild" / "tasks" / "tune.py"
    assert rw.rewrite("from ..build.quantize import x\nfrom dmsbuild.measure import accuracy, report\n", task, mapping) == (
        "from ..convert.quantize import x\nfrom dmsbuild.core import accuracy\nfrom dmsbuild.measure import report\n")
    # files git's rename detection moved, with their old relative imports (a branch's edit merged into them)
    moved = ROOT / "dmsbuild" / "transport" / "ssh.py"
    assert rw.rewrite("from ...errors import E\nfrom .base import T\nfrom ...measure.results import R\n", moved, mapping) == (
        "from ..errors import E\nfrom .base import T\nfrom ..core.results import R\n")
    moved = ROOT / "dmsbuild" / "core" / "results.py"
    assert rw.rewrite("from ..errors import E\nfrom .provenance import P\nfrom .gates import G\n", moved, mapping) == (
        "from ..errors import E\nfrom .provenance import P\nfrom ..measure.gates import G\n")


def test_the_tree_is_already_rewritten() -> None:
    """Running it again over the repository changes nothing (it is idempotent, and nothing was missed)."""
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.sh", "*.toml"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    # architecture.md names an old module on purpose (it explains the mapping)
    skip = {"scripts/rewrite_imports.py", "tests/test_architecture.py", "tests/test_rewrite_imports.py",
            "docs/architecture.md", "CHANGELOG.md"}
    res = subprocess.run([sys.executable, str(SCRIPT), "--check", *[f for f in files if f not in skip]], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
