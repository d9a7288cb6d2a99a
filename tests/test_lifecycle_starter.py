"""A container outlives the pyrt process that started it (killed right after start, or
between the spawn and recording its state), and --init: PID 1 reaps orphans and
forwards signals."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time


from clitools import HEX64, cgroup_dirs, ok
from helpers import DEADLINE, wait_for
from lifecycletools import proc_state, ps, log_has, TRAP_TERM


# -- the starter dies, the container lives on -----------------------------------------------------

def test_kill_9_of_the_cli_right_after_start(store, tmp_shm):
    flags = os.path.join(tmp_shm, "flags")
    os.mkdir(flags)
    script = "while [ ! -e /f/go ]; do sleep 0.05; done; exit 7"
    p = store.popen("run", "-d", "--name", "orphan", "-v", f"{flags}:/f", "--memory", "64m", "base:1",
                    "sh", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline()
    p.kill()  # kill -9, right after it printed the id
    p.communicate()
    cid = line.decode().strip()
    assert HEX64.fullmatch(cid), line
    store.ids.add(cid)

    rows = ps(store, all=False)
    assert rows["orphan"]["Status"].startswith("Up"), rows
    c = store.get("orphan")
    pid = c.attrs["State"]["Pid"]
    assert proc_state(pid) in ("S", "R")
    assert c.exec_run(["true"])[0] == 0  # it is really running
    open(os.path.join(flags, "go"), "w").close()
    wait_for(lambda: proc_state(pid) in (None, "Z"), what="the container to end")
    assert re.match(r"Exited \(7\)", ps(store)["orphan"]["Status"])  # a new process sees the truth
    assert ok(store.cli("wait", "orphan")).strip() == "7"
    # and it stays right: the monitor's record is read once and kept
    for _ in range(3):
        st = store.get("orphan").attrs["State"]
        assert (st["Status"], st["ExitCode"], st["Pid"]) == ("exited", 7, 0)
    assert cgroup_dirs(cid) == []


CHILD_START = """
import sys, pyrt
rt = pyrt.Runtime(sys.argv[1], quiet=True)
c = rt.containers.get(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
c.start()
print("started", flush=True)
"""


def test_starter_killed_between_spawn_and_recording_the_state(store, tmp_shm):
    """A pyrt process killed after the container started but before it recorded
    that (here: while it waits for the store's database, which the test holds):
    later pyrt processes still see the container as it is."""
    flags = os.path.join(tmp_shm, "flags")
    os.mkdir(flags)
    script = "touch /f/up; while [ ! -e /f/go ]; do sleep 0.05; done; exit 7"
    c = store.rt.containers.create("base:1", ["sh", "-c", script], name="limbo", volumes=[f"{flags}:/f"],
                                   pids_limit=20)
    child = subprocess.Popen([sys.executable, "-c", CHILD_START, store.root, "limbo"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, cwd="/")
    db = sqlite3.connect(os.path.join(store.root, "pyrt.db"), isolation_level=None, timeout=60)
    try:
        assert child.stdout.readline() == b"ready\n"
        db.execute("BEGIN IMMEDIATE")  # every writer of the store waits for us now
        child.stdin.write(b"go\n")
        child.stdin.flush()
        wait_for(lambda: os.path.exists(os.path.join(flags, "up")) or child.poll() is not None,
                 what="the container to start")
        child.kill()
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()
    assert os.path.exists(os.path.join(flags, "up")), "the container did not start"
    assert ps(store, all=False)["limbo"]["Status"].startswith("Up")
    c.reload()
    assert c.status == "running" and proc_state(c.attrs["State"]["Pid"]) in ("S", "R")
    assert c.exec_run(["cat", "/proc/1/cmdline"]) == (0, b"sh\0-c\0" + script.encode() + b"\0")
    assert c.stats()["pids_stats"]["limit"] == 20
    open(os.path.join(flags, "go"), "w").close()
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 7
    assert re.match(r"Exited \(7\)", ps(store)["limbo"]["Status"])
    assert cgroup_dirs(c.id) == []
    os.unlink(os.path.join(flags, "up"))
    c.start()  # and it can be started again (it ends at once: /f/go is there)
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 7 and os.path.exists(os.path.join(flags, "up"))
    c.remove(force=True)
    assert cgroup_dirs(c.id) == []


def test_start_abandoned_before_the_container_ran(store):
    """What a pyrt process killed while starting, before the container ran, leaves:
    its start mark (unlocked, as the dead leave it) and an empty cgroup. The
    container is not shown running; the next pyrt process to look clears both, and
    it starts and is removed as any other."""
    from pyrt.containers import lifecycle
    from pyrt.cgroups.cgroup import Cgroup
    c = store.rt.containers.create("base:1", ["sleep", "600"], name="never")
    open(os.path.join(c.dir, lifecycle.START_MARK), "w").close()
    Cgroup.create(c.id, accounting=("memory", "pids"))
    assert cgroup_dirs(c.id)
    assert ps(store)["never"]["Status"] == "Created"
    assert not os.path.exists(os.path.join(c.dir, lifecycle.START_MARK)) and cgroup_dirs(c.id) == []
    ok(store.cli("start", "never"))
    assert c.reload().status == "running" and not os.path.exists(os.path.join(c.dir, lifecycle.START_MARK))
    # a start mark held by a live process: others wait for it, then go on
    fd, abandoned = lifecycle.take_start_mark(c.dir)
    assert not abandoned
    p = store.popen("rm", "-f", "never", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        assert p.poll() is None and c.reload().status == "running"  # rm waits for the mark
    finally:
        lifecycle.end_start_mark(c.dir, fd)
    out, err = p.communicate(timeout=DEADLINE)
    assert p.returncode == 0, err
    assert store.db_rows() == [] and cgroup_dirs(c.id) == []


# -- --init, PID 1 ---------------------------------------------------------------------------------

ORPHANS = "(sleep 0.2 &) ; (sleep 0.2 &) ; (sleep 0.3 &) ; sleep 600"


def _ps_lines(c):
    code, out = c.exec_run(["ps", "-o", "pid,stat,args"])
    assert code == 0
    return [line for line in out.decode().splitlines()[1:] if not line.endswith(" ps -o pid,stat,args")]


def _zombies(lines):
    return [line for line in lines if line.split()[1].startswith("Z")]


def _orphans_gone(c, zombies_ok):
    """ps inside the container once the orphans have ended (a zombie shows as [sleep])."""
    def settled():
        lines = _ps_lines(c)
        if any("sleep 0." in line for line in lines) or (not zombies_ok and _zombies(lines)):
            return None
        return lines
    return wait_for(settled, what="the orphans to end" + ("" if zombies_ok else " and be reaped"))


def test_init_reaps_orphans_and_forwards_signals(store):
    c = store.rt.containers.run("base:1", ["sh", "-c", ORPHANS], detach=True, init=True)
    lines = _orphans_gone(c, zombies_ok=False)  # fails (after a long wait) if they stay zombies
    assert len(lines) == 2, lines
    assert re.match(r"\s*1\s+S\S*\s+\S*init", lines[0]), lines  # the init is PID 1, the command below it
    top = c.top()
    assert top["Titles"] == ["UID", "PID", "PPID", "CMD"]
    assert any(p[3] == "sleep 600" for p in top["Processes"]), top
    c.stop(timeout=60)  # SIGTERM reaches sleep through the init: 143, no SIGKILL needed
    assert c.attrs["State"]["ExitCode"] == 143

    # SIGTERM to a program with a trap under --init: the program handles it
    t = store.get(ok(store.cli("run", "-d", "--init", "base:1", "sh", "-c", TRAP_TERM)).strip())
    wait_for(log_has(t, b"ready"), what="the trap")
    ok(store.cli("stop", t.id))
    assert t.reload().attrs["State"]["ExitCode"] == 0 and t.logs() == b"ready\ngot TERM\n"
    ok(store.cli("rm", t.id))


def test_without_init_the_command_is_pid_1(store):
    c = store.rt.containers.run("base:1", ["sh", "-c", ORPHANS], detach=True)
    lines = _orphans_gone(c, zombies_ok=True)
    zombies = _zombies(lines)
    # sh exec'd sleep as PID 1, which reaps nobody: the orphans stay zombies (what --init is for)
    assert re.match(r"\s*1\s+S\S*\s+sleep 600$", lines[0]), lines
    assert len(zombies) == 3, lines
    code, out = c.exec_run(["cat", "/proc/1/cmdline"])
    assert out == b"sleep\x00600\x00"
    c.remove(force=True)
