"""Board side of the Mender route: the Update Module (``dmsbuild_release.py``, installed as ``dmsbuild-release``)."""
