"""How dmsbuild reaches a board: an interface (``base.Transport``) with two
implementations, ``ssh`` (paramiko; the only module that imports it) and
``local`` (a folder on this machine, for the embedded default target)."""
