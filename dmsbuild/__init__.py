"""dmsbuild: build, ship and measure DMS models on your own embedded boards.

Importing this package must stay cheap: no torch, onnxruntime, onnx,
tensorrt or paramiko at module level anywhere that ``dodo.py`` reaches.
"""
__version__ = "0.2.0"  # the top entry of CHANGELOG.md (tests/test_package.py holds them equal)

PROJECT_FILE = "dmsbuild.toml"


def locate_root(start: "str | None" = None) -> "Path | None":
    """The project folder: ``DMSBUILD_ROOT`` when set, else the nearest folder from ``start`` (the working
    directory) upwards holding dmsbuild.toml; None when there is none (``config.find_root`` raises instead)."""
    import os
    from pathlib import Path

    env = os.environ.get("DMSBUILD_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / PROJECT_FILE).is_file():
            return p
    return None
