"""The `init` doit task: `doit init onnx=PATH [data=DIR]` or
`doit init factory=module:callable checkpoint=PATH shape=1,3,H,W [data=DIR]`.

Writes dmsbuild.toml from the model's signature (dmsbuild.convert.scaffold) into the
project folder: the one holding dmsbuild.toml from doit's working directory up (doit
runs in the dodo.py's folder), else that folder itself. onnx= and data= are relative
to the working directory; the file records them relative to the project folder.
Nothing heavy is imported until the action runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import params


def _init(**kwargs: str | None) -> Any:
    from doit.exceptions import TaskFailed

    from ..errors import UserError
    from ..convert.scaffold import init_project

    from ..config import find_root

    try:
        try:
            root = find_root()
        except UserError:  # no dmsbuild.toml yet: this folder becomes the project
            root = Path.cwd()
        init_project(root, onnx_path=kwargs["onnx"], factory=kwargs["factory"], checkpoint=kwargs["checkpoint"],
                     shape=kwargs["shape"], data=kwargs["data"])
    except UserError as exc:
        return TaskFailed(str(exc))
    return True


@params("onnx", "factory", "checkpoint", "shape", "data")
def task_init() -> dict[str, Any]:
    """Write dmsbuild.toml from your model's signature (onnx=FILE, or factory= checkpoint= shape=) and data=."""
    from . import doit_var

    names = ("onnx", "factory", "checkpoint", "shape", "data")
    return {
        "actions": [(_init, [], {n: doit_var(n) for n in names})],
        "uptodate": [False],
        "verbosity": 2,
    }
