"""Run on the board after an upload failed: is the deploy root's disk full?

``python3 -c <this file> ROOT PART`` prints ``full`` when less than 64 KiB is
left under ROOT, and then removes the partial upload PART (only a regular file
under ``ROOT/objects/.tmp/`` named ``*.part``): it would keep the disk full.
Otherwise it prints ``room`` and touches nothing (a lost connection keeps the
partial upload for the next deploy to resume). Standard library only."""
import os
import sys

#: below this many free bytes the disk counts as full
FULL_BELOW = 65536


def main(root: str, part: str) -> str:
    st = os.statvfs(root)
    if st.f_bavail * st.f_frsize >= FULL_BELOW:
        return "room"
    if part.startswith(root + "/objects/.tmp/") and part.endswith(".part") and os.path.islink(part) is False:
        try:
            os.unlink(part)
        except OSError:
            pass
    return "full"


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
