"""The clean-up of a foreground container whose `pyrt` process died before it
could end it (see pyrt.launch.reaper): its reaper kills it, then runs
`python -m pyrt.cli.orphan ROOT ID`, which calls clean_up: the container's end
recorded (exit status 137: killed), its cgroup removed, and with --rm the
container itself."""
from __future__ import annotations

from pyrt.containers import lifecycle
from pyrt.containers.model import Container


def clean_up(containers, container_id: str) -> None:
    """`containers`: the store's ContainerCollection (Runtime(root).containers)."""
    row = containers._row(container_id)  # by its full id only: a name or a prefix may be another container's
    if row is None:
        return  # removed meanwhile
    c = Container(containers, row)
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
