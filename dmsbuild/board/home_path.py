"""Run on the board: ``python3 -c <this file> PATH`` prints PATH with a leading ``~`` expanded to the
board user's home (a deploy root given as ``~/dms``). Standard library only."""
import os
import sys

if __name__ == "__main__":
    print(os.path.expanduser(sys.argv[1]))
