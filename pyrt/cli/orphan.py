"""`python -m pyrt.cli.orphan ROOT ID`: what a foreground container's reaper runs
once it has killed the container of a `pyrt` process that died (see
pyrt.launch.reaper and pyrt.containers.orphan)."""
from __future__ import annotations

import sys


def command(root: str, container_id: str) -> list[str]:
    """The clean-up command for the container `container_id` of the store `root`."""
    return [sys.executable, "-P", "-m", "pyrt.cli.orphan", root, container_id]


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pyrt.cli.orphan ROOT CONTAINER_ID", file=sys.stderr)
        return 2
    # lazy: cli.containers imports this module for command(); these cost `pyrt images` 1.2 ms (measured)
    from pyrt.containers.orphan import clean_up
    from pyrt.runtime import Runtime
    rt = Runtime(args[0], quiet=True)
    try:
        clean_up(rt.containers, args[1])
    finally:
        rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
