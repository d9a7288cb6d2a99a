"""The clean-up of a foreground container whose `pyrt` process died before it
could end it (see pyrt.launch.reaper): its reaper kills it, then runs
`python -m pyrt.containers.orphan ROOT ID`, which records its end (exit status
137: killed), removes its cgroup, and with --rm the container itself."""
from __future__ import annotations

import sys


def command(root: str, container_id: str) -> list[str]:
    """The clean-up command for the container `container_id` of the store `root`."""
    return [sys.executable, "-P", "-m", "pyrt.containers.orphan", root, container_id]


def clean_up(rt, container_id: str) -> None:
    from pyrt.containers import lifecycle
    from pyrt.containers.model import Container
    coll = rt.containers
    row = coll._row(container_id)  # by its full id only: a name or a prefix may be another container's
    if row is None:
        return  # removed meanwhile
    c = Container(coll, row)
    c._refresh_running()  # its init is gone: its end recorded and its cgroup removed
    if c.config.get("AutoRemove"):
        c.remove(force=True, v=True)
    elif c.status == "created":
        # its runner died after making its cgroup, before recording its start: the
        # cgroup goes (and what runs in it, should the reaper not have had its pidfd)
        mark = c._take_start_mark()
        try:
            c.reload()
            cg = c._open_cgroup() if c.status == "created" else None
            if cg is not None:
                cg.remove()
        finally:
            lifecycle.end_start_mark(c.dir, mark)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pyrt.containers.orphan ROOT CONTAINER_ID", file=sys.stderr)
        return 2
    from pyrt.runtime import Runtime
    rt = Runtime(args[0], quiet=True)
    try:
        clean_up(rt, args[1])
    finally:
        rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
