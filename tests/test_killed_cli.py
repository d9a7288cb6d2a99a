"""A foreground `pyrt run` killed with SIGKILL by `timeout -s KILL` (the way CI
bounds a step) while a slow reader holds its output back: its container ends with
it, and nothing is left behind: no container (with --rm), no cgroup, no mount, no
process, not even a background one that ignores every signal it can. See
pyrt.launch.reaper.

The kill is timeout's own: SIGALRM is what timeout's timer delivers to it when the
time is up; the test sends it once the slow reader's pipe is full, so that nothing
depends on how fast this machine is. No timing is asserted: waits are polls with
generous deadlines."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys

import pytest

import helpers
from clitools import PYRT, cgroup_dirs, cgroup_mounts, ok, procs_holding
from helpers import DEADLINE, wait_for

# Writes on after its reader is gone (SIGPIPE ignored), and first leaves a process
# behind in a session of its own that ignores every signal it can.
STREAM = ("(trap '' HUP INT TERM PIPE; while :; do sleep 1; done) & "
          "trap '' PIPE; while :; do echo streaming; done")


def _cmdlines_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _mounts_anywhere(path: str) -> list[str]:
    """Mount lines naming `path` in the mount namespace of any process on the host."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                found += [f"{pid}: {line.strip()}" for line in f if path in line]
        except OSError:
            pass
    return found


def _alive_as(pid: int, words: tuple[bytes, ...]) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return any(w in cmd for w in words)


def _nearly_full(fd: int) -> bool:
    """The pipe behind our read end `fd` holds all but two pages of what it can:
    its writer (pyrt relaying, or the container itself with --rootfs) is blocked
    on its slow reader, or about to be."""
    import fcntl
    import termios
    avail = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, avail)
    return int.from_bytes(avail, sys.byteorder) >= fcntl.fcntl(fd, 1032) - 8192  # F_GETPIPE_SZ


def killed_run(root: str, *argv: str, while_running=None) -> dict:
    """`timeout -s KILL 600 pyrt --root ROOT ARGV...` whose output this test reads
    slowly: one line, then nothing. Once the pipe is full, timeout's time is up
    (SIGALRM): it SIGKILLs pyrt and its own process group. Returns what was seen
    before: the first line, pyrt's pid, its reaper's pid, what `while_running()`
    returned; and timeout's exit status."""
    p = subprocess.Popen(["timeout", "-s", "KILL", "600", PYRT, "--root", root, *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env={**os.environ, "PYRT_ROOT": "/nonexistent-on-purpose"})
    try:
        seen = {"first": p.stdout.readline()}
        (cli,) = helpers.children(p.pid)
        seen["cli"] = cli
        seen["reapers"] = [c for c in helpers.children(cli) if _alive_as(c, (b"pyrt-reaper",))]
        seen["noted"] = while_running() if while_running else None
        wait_for(lambda: _nearly_full(p.stdout.fileno()), what="the output to fill the slow reader's pipe")
        os.kill(p.pid, signal.SIGALRM)
        seen["status"] = p.wait(timeout=DEADLINE)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
    return seen


def assert_nothing_left(root, seen, marker):
    """No process of the container (by its marker), no reaper or clean-up at work,
    no mount of the store in any mount namespace."""
    assert seen["status"] == -signal.SIGKILL  # timeout killed its whole group, itself and pyrt
    assert seen["first"] == b"streaming\n"
    assert len(seen["reapers"]) == 1
    wait_for(lambda: not _cmdlines_with(marker), what="the container's processes to end")
    wait_for(lambda: not _alive_as(seen["reapers"][0], (b"pyrt-reaper", b"pyrt.cli.orphan")),
             what="the reaper and its clean-up to end")
    assert procs_holding(root) == []
    assert _mounts_anywhere(root) == []


def test_killed_run_rm_leaves_nothing(store):
    marker = f"killed-{secrets.token_hex(4)}"
    seen = killed_run(store.root, "run", "--rm", "base:1", "sh", "-c", STREAM, marker,
                      while_running=store.db_rows)
    (row,) = seen["noted"]  # the container, while it streamed
    store.ids.add(row["id"])
    assert_nothing_left(store.root, seen, marker)
    assert cgroup_dirs(row["id"]) == []
    assert store.db_rows() == []
    assert os.listdir(os.path.join(store.root, "containers")) == []


def test_killed_run_without_rm_leaves_the_container_exited(store):
    """Without --rm the container stays, as any ended one: exited, status 137
    (killed), its cgroup gone, its log kept. Recorded by the reaper's clean-up
    (the rows are read raw here: no pyrt process looked at it since)."""
    marker = f"killed-{secrets.token_hex(4)}"
    seen = killed_run(store.root, "run", "--name", "kept", "base:1", "sh", "-c", STREAM, marker)
    assert_nothing_left(store.root, seen, marker)
    (row,) = store.db_rows()
    store.ids.add(row["id"])
    state = json.loads(row["state"])
    assert (row["name"], state["Status"], state["ExitCode"]) == ("kept", "exited", 137)
    assert cgroup_dirs(row["id"]) == []
    assert ok(store.cli("logs", "kept")).startswith("streaming\n")
    # started again in the foreground and killed again: the same
    seen = killed_run(store.root, "start", "-a", "kept")
    assert_nothing_left(store.root, seen, marker)
    (row,) = store.db_rows()
    assert json.loads(row["state"])["Status"] == "exited" and cgroup_dirs(row["id"]) == []


def test_killed_run_rootfs_leaves_nothing(store, rootfs):
    """`run --rootfs`: no container record, but its process and the device cgroup
    pyrt made for it (pyrt/run-<pid of pyrt>) go too."""
    marker = f"killed-{secrets.token_hex(4)}"
    seen = killed_run(store.root, "run", "--rootfs", rootfs, "--", "sh", "-c", STREAM, marker)
    assert_nothing_left(store.root, seen, marker)
    left = [os.path.join(m, "pyrt", f"run-{seen['cli']}") for m in cgroup_mounts()]
    assert [d for d in left if os.path.exists(d)] == []


def test_orphan_clean_up_names_the_container_by_its_full_id(store):
    """The clean-up of a container whose runner died names it by its full id: a
    container that took that id as its name (or an id prefix) is not touched."""
    gone = store.rt.containers.create("base:1", ["true"], auto_remove=True)
    gone_id = gone.id
    gone.remove()
    other = store.rt.containers.create("base:1", ["true"], name=gone_id, auto_remove=True)
    store.ids.add(other.id)
    r = subprocess.run([sys.executable, "-m", "pyrt.cli.orphan", store.root, gone_id],
                       capture_output=True, timeout=DEADLINE)
    assert r.returncode == 0, r.stderr
    assert [row["name"] for row in store.db_rows()] == [gone_id]
    assert store.get(other.id).status == "created"
