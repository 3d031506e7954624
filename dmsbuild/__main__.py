"""``python -m dmsbuild``: the same as the ``dmsbuild`` command (dmsbuild/cli.py)."""
import sys

from .cli import main

sys.exit(main())
