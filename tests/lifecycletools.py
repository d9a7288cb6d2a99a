"""Helpers shared by the test_lifecycle_* modules: a container's cgroup files, a
process's state, `pyrt ps` by name, log polls, a shell that traps TERM."""
from __future__ import annotations
import json
import os
from clitools import ok


# -- helpers shared with test_volumes.py -----------------------------------------------------------

def cgroup_file(cid: str, controller: str, v1_name: str, v2_name: str) -> str:
    """A container's control file: `v1_name` in the v1 hierarchy of `controller`
    when the host has one, else `v2_name` in its cgroup2 directory."""
    from pyrt.cgroups import cgroup as cgroups
    lay = cgroups.layout()
    path = os.path.join(lay.v1[controller], "pyrt", cid, v1_name) if controller in lay.v1 else \
        os.path.join(lay.unified, "pyrt", cid, v2_name)
    with open(path) as f:
        return f.read().strip()


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def ps(store, all=True) -> dict:
    """`pyrt ps [-a] --format json` by name."""
    rows = json.loads(ok(store.cli("ps", *(["-a"] if all else []), "--format", "json")))
    return {r["Names"]: r for r in rows}


def log_has(c, text: bytes):
    return lambda: text in c.logs()


# A shell that says it is ready once its traps are set (a signal sent before that
# would be lost: PID 1 ignores signals it has no handler for).
TRAP_TERM = "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
