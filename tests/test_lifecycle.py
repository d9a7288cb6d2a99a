"""Containers that live on: detached containers watched by their monitor and managed
by later pyrt processes (ps, logs, exec, stop, kill, start, restart, wait, pause,
stats, top, rm), --init, cgroup limits (memory, pids, cpus, cpuset), and what must
hold after many of them: no mounts, cgroups, processes, zombies or fds left, and a
store as it was. Through the Python API and the `pyrt` command (run as a subprocess).

Every store lives on /dev/shm. Every test removes its containers (rm -f) even when it
fails, and checks that their cgroups went with them (the `store` fixture). No timing
is asserted: waits are polls with generous deadlines, only there to never hang."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from pyrt.errors import Conflict, ContainerNotFound, InvalidArgument, SpawnError
import helpers
from clitools import HEX64, PYRT, cgroup_dirs, cgroup_mounts, error, ok, procs_holding
from helpers import DEADLINE, wait_for
from imagetools import check_store

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


# -- run -d, ps, logs ------------------------------------------------------------------------------

@pytest.fixture
def web(store, tmp_shm):
    """A detached container "web" (started with the CLI) that wrote out1, err1, out2,
    err2 (stdout, stderr, ...) and waits for FLAGS/go to write bye and exit 3.
    Returns (container, id, flags dir)."""
    flags = os.path.join(tmp_shm, "flags")
    os.mkdir(flags)
    # (the pauses let the monitor read each line before the next one, on the other pipe, is written)
    script = ("echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2; "
              "while [ ! -e /f/go ]; do sleep 0.05; done; echo bye; exit 3")
    cid = ok(store.cli("run", "-d", "--name", "web", "-v", f"{flags}:/f", "base:1", "sh", "-c", script)).strip()
    assert HEX64.fullmatch(cid)
    c = store.get("web")
    assert c.id == cid and store.get(cid[:12]).id == cid  # id prefixes are accepted
    wait_for(log_has(c, b"err2\n"), what="the first lines in the log")
    return c, cid, flags


def test_run_detached_and_ps(store, web):
    c, cid, flags = web
    running = ps(store, all=False)
    assert list(running) == ["web"]
    assert running["web"]["Status"].startswith("Up "), running
    assert running["web"]["ID"] == cid[:12] and running["web"]["Image"] == "base:1"
    table = ok(store.cli("ps"))
    assert table.splitlines()[0].split()[:2] == ["CONTAINER", "ID"] and "web" in table and "Up " in table
    st = c.attrs["State"]
    assert st["Status"] == "running" and st["Running"] and st["Pid"] > 0


def test_logs_of_a_running_container_api(web):
    c, cid, flags = web
    # the API: both streams, in the order they were written; one stream; tail; timestamps
    assert c.logs() == b"out1\nerr1\nout2\nerr2\n"
    assert c.logs(stderr=False) == b"out1\nout2\n"
    assert c.logs(stdout=False) == b"err1\nerr2\n"
    assert c.logs(tail=1) == b"err2\n" and c.logs(tail=3) == b"err1\nout2\nerr2\n"
    stamped = c.logs(timestamps=True).splitlines()
    assert [line.split(b" ", 1)[1] for line in stamped] == [b"out1", b"err1", b"out2", b"err2"]
    stamps = [line.split(b" ", 1)[0].decode() for line in stamped]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", t) for t in stamps), stamps
    assert stamps == sorted(stamps)


def test_logs_of_a_running_container_cli(store, web):
    # the CLI: each line on its stream, in order when both go to one pipe
    r = store.cli("logs", "web")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out1\nout2\n", b"err1\nerr2\n")
    merged = subprocess.run([PYRT, "--root", store.root, "logs", "web"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=60)
    assert merged.stdout == b"out1\nerr1\nout2\nerr2\n"
    r = store.cli("logs", "--tail", "2", "web")
    assert (r.stdout, r.stderr) == (b"out2\n", b"err2\n")
    r = store.cli("logs", "-t", "--tail", "1", "web")
    assert r.stdout == b"" and re.fullmatch(rb"\d{4}-\S+Z err2\n", r.stderr), r


def test_run_detached_exit_wait_inspect_rm(store, web):
    c, cid, flags = web
    open(os.path.join(flags, "go"), "w").close()
    assert ok(store.cli("wait", "web")).strip() == "3"
    assert ps(store, all=False) == {}
    exited = ps(store)["web"]
    assert re.fullmatch(r"Exited \(3\) .*ago", exited["Status"]), exited
    assert "Exited (3)" in ok(store.cli("ps", "-a"))
    assert c.reload().attrs["State"]["Status"] == "exited" and c.attrs["State"]["ExitCode"] == 3
    assert c.attrs["State"]["Pid"] == 0 and not c.attrs["State"]["OOMKilled"]
    assert c.logs().endswith(b"err2\nbye\n")
    inspected = json.loads(ok(store.cli("inspect", cid[:10])))[0]
    assert inspected["Id"] == cid and inspected["State"]["ExitCode"] == 3 and inspected["Name"] == "/web"
    assert cgroup_dirs(cid) == []  # the cgroup goes as soon as the exit is seen
    assert ok(store.cli("rm", "web")).split() == ["web"]
    assert not os.path.exists(c.dir) and store.db_rows() == []


def test_logs_follow_ends_when_the_container_stops(store, tmp_shm):
    flags = os.path.join(tmp_shm, "flags")
    os.mkdir(flags)
    script = "echo first; echo oops >&2; while [ ! -e /f/go ]; do sleep 0.05; done; echo last"
    c = store.rt.containers.run("base:1", ["sh", "-c", script], detach=True, name="talk",
                                volumes=[f"{flags}:/f"])
    wait_for(log_has(c, b"oops"), what="the first lines")
    p = store.popen("logs", "-f", "talk", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"first\n"  # printed while the container still runs
        assert p.poll() is None
        open(os.path.join(flags, "go"), "w").close()
        out, err = p.communicate(timeout=DEADLINE)  # ends by itself when the container stops
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0 and out == b"last\n" and err == b"oops\n"
    # the API's generator ends too, and sees everything
    assert b"".join(c.logs(follow=True)) == b"first\noops\nlast\n"
    assert b"".join(c.logs(stream=True, tail=1)) == b"last\n"


# -- exec ------------------------------------------------------------------------------------------

def test_exec(store):
    c = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="box",
                                environment={"IMG": "from-run"})
    code, out = c.exec_run(["sh", "-c", "exit 42"])
    assert code == 42 and out == b""
    code, out = c.exec_run("echo $IMG $FOO; pwd; id -un", environment={"FOO": "bar"}, workdir="/data/sub")
    assert (code, out) == (0, b"from-run bar\n/data/sub\nroot\n")
    code, out = c.exec_run(["id"], user="user")  # a name from the image's /etc/passwd
    assert code == 0 and out.startswith(b"uid=1000(user) gid=1000(user)"), out
    code, out = c.exec_run(["sh", "-c", "echo $HOME; whoami"], user="1000:1000", environment=["HOME=/home/user"])
    assert (code, out) == (0, b"/home/user\nuser\n")
    code, (out, err) = c.exec_run(["sh", "-c", "echo to-out; echo to-err >&2; exit 1"], demux=True)
    assert (code, out, err) == (1, b"to-out\n", b"to-err\n")
    with pytest.raises(SpawnError, match="/no/such/program") as e:
        c.exec_run(["/no/such/program"])
    assert e.value.errno == errno.ENOENT
    with pytest.raises(InvalidArgument, match="unable to find user nobody-here"):
        c.exec_run(["true"], user="nobody-here")
    # the exec'd process is in the container: same pid namespace (pid 1 is the command)
    code, out = c.exec_run(["ps", "-o", "pid,args"])
    assert code == 0 and re.search(rb"^\s*1 sleep 600$", out, re.M), out

    # the CLI
    r = store.cli("exec", "-e", "K=V", "-w", "/data", "-u", "user", "box", "sh", "-c", "echo $K; pwd; id -u; exit 7")
    assert (r.returncode, r.stdout) == (7, b"V\n/data\n1000\n"), r
    r = store.cli("exec", "-i", "box", "sh", "-c", "tr a-z A-Z", input=b"hello\n")
    assert (r.returncode, r.stdout) == (0, b"HELLO\n"), r
    error(store.cli("exec", "box", "/no/such/program"), status=127, match="/no/such/program")
    error(store.cli("exec", "box", "/etc/passwd"), status=126, match="Permission denied")
    r = store.cli("exec", "box", "cat")  # without -i: stdin is empty
    assert (r.returncode, r.stdout) == (0, b"")
    assert ok(store.cli("exec", c.id[:12], "hostname")).strip() == c.id[:12]

    # into a stopped container: a clear error, for both
    c.stop(timeout=0)
    with pytest.raises(Conflict, match="box is not running"):
        c.exec_run(["true"])
    error(store.cli("exec", "box", "true"), match="box is not running")
    error(store.cli("exec", "nothere", "true"), match="no such container: nothere")


# -- stop, kill, restart, wait ---------------------------------------------------------------------

def test_stop_sends_the_stop_signal(store, base_tar):
    c = store.rt.containers.run("base:1", ["sh", "-c", TRAP_TERM], detach=True, name="polite")
    wait_for(log_has(c, b"ready"), what="the trap")
    ok(store.cli("stop", "-t", "60", "polite"))  # the trap ends it long before the SIGKILL
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 0
    assert c.logs() == b"ready\ngot TERM\n"

    # an image's STOPSIGNAL is what stop sends; --stop-signal overrides it
    store.rt.images.import_image(base_tar, "usr1", "1", changes=["STOPSIGNAL SIGUSR1"])
    script = "trap 'echo got USR1; exit 0' USR1; trap 'echo got TERM; exit 1' TERM; echo ready; " \
             "while :; do sleep 0.05; done"
    u = store.rt.containers.run("usr1:1", ["sh", "-c", script], detach=True)
    wait_for(log_has(u, b"ready"), what="the traps")
    u.stop(timeout=60)
    assert u.attrs["State"]["ExitCode"] == 0 and u.logs() == b"ready\ngot USR1\n"
    t = store.get(ok(store.cli("run", "-d", "--stop-signal", "TERM", "usr1:1", "sh", "-c", script)).strip())
    wait_for(log_has(t, b"ready"), what="the traps")
    ok(store.cli("stop", t.id))
    assert t.reload().attrs["State"]["ExitCode"] == 1 and t.logs() == b"ready\ngot TERM\n"


def test_stop_kills_what_ignores_sigterm_after_the_timeout(store):
    script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    c = store.rt.containers.run("base:1", ["sh", "-c", script], detach=True, name="stubborn")
    wait_for(log_has(c, b"ready"), what="the trap")
    r = store.cli("stop", "-t", "1", "stubborn")
    assert r.returncode == 0 and r.stdout == b"stubborn\n", r
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
    assert "Exited (137)" in ps(store)["stubborn"]["Status"]
    assert cgroup_dirs(c.id) == []
    # stopping a stopped container is fine (docker too)
    assert store.cli("stop", "stubborn").returncode == 0


def test_kill_restart_start_wait(store):
    script = "trap 'echo usr1; exit 5' USR1; echo ready; while :; do sleep 0.05; done"
    c = store.rt.containers.run("base:1", ["sh", "-c", script], detach=True, name="k")
    wait_for(log_has(c, b"ready"), what="the trap")
    pid = c.attrs["State"]["Pid"]
    ok(store.cli("kill", "-s", "USR1", "k"))
    assert ok(store.cli("wait", "k")).strip() == "5"
    assert c.wait() == {"StatusCode": 5, "Error": None}

    ok(store.cli("start", "k"))  # a stopped container starts again: same container, new process
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] != pid
    wait_for(lambda: c.logs().count(b"ready") == 2, what="the second start")
    assert c.logs() == b"ready\nusr1\nready\n"  # the log goes on
    error(store.cli("start", "k"), match="already running")

    pid = c.reload().attrs["State"]["Pid"]
    ok(store.cli("restart", "-t", "1", "k"))  # TERM is ignored by this PID 1: killed after 1 s
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] not in (0, pid)
    wait_for(lambda: c.logs().count(b"ready") == 3, what="the restart")

    ok(store.cli("kill", "k"))  # SIGKILL by default
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
    error(store.cli("kill", "k"), match="k is not running")

    c.start()
    wait_for(lambda: c.logs().count(b"ready") == 4, what="the API start")
    c.kill("SIGUSR1")
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 5
    c.restart(timeout=1)
    assert c.reload().status == "running"
    c.kill(9)
    assert c.wait()["StatusCode"] == 137

    short = store.rt.containers.run("base:1", ["sh", "-c", "exit 9"], detach=True)
    assert short.wait(timeout=DEADLINE)["StatusCode"] == 9
    assert ok(store.cli("wait", short.id)).strip() == "9"  # again, once it has exited


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


# -- cgroups ---------------------------------------------------------------------------------------

HOG = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"


def test_memory_hog_is_oom_killed(store):
    c = store.rt.containers.run("base:1", ["sh", "-c", HOG], detach=True, name="hog", mem_limit="32m")
    assert c.wait(timeout=120)["StatusCode"] == 137
    st = c.attrs["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 137 and st["OOMKilled"] is True, st
    assert b"survived" not in c.logs()
    assert json.loads(ok(store.cli("inspect", "hog")))[0]["State"]["OOMKilled"] is True
    assert "Exited (137)" in ps(store)["hog"]["Status"]
    assert cgroup_dirs(c.id) == []
    # the same through the CLI, foreground: exit status 137
    r = store.cli("run", "--rm", "--memory", "32m", "base:1", "sh", "-c", HOG, timeout=120)
    assert r.returncode == 137 and b"survived" not in r.stdout, r
    # a container that stays below its limit is not OOMKilled
    fine = store.rt.containers.run("base:1", ["sh", "-c", "x=$(head -c 1000000 /dev/zero | tr '\\0' a)"],
                                   detach=True, mem_limit="32m")
    assert fine.wait(timeout=DEADLINE)["StatusCode"] == 0 and fine.attrs["State"]["OOMKilled"] is False


def test_fork_bomb_is_contained_by_the_pids_limit(store):
    bomb = "b() { b | b & }; b; sleep 600"
    c = store.rt.containers.run("base:1", ["sh", "-c", bomb], detach=True, name="bomb", pids_limit=50)
    try:
        def stopped_by_the_limit():
            s = c.stats()["pids_stats"]
            assert s["limit"] == 50 and s["current"] <= 50, s
            return _pids_limit_hits(c.id) > 0  # a fork refused by the limit (not just a slow bomb)
        wait_for(stopped_by_the_limit, what="the bomb to hit its pids limit")
        assert len(c.top()["Processes"]) <= 50
    finally:
        r = store.cli("rm", "-f", "bomb", timeout=120)  # bounded: the test does not hang on it
    assert r.returncode == 0, r
    assert cgroup_dirs(c.id) == []
    # the host is fine: it can start a container (and fork) as before
    assert store.rt.containers.run("base:1", ["sh", "-c", "echo $((6*7))"], remove=True) == b"42\n"
    assert ok(store.cli("run", "--rm", "--pids-limit", "50", "base:1", "echo", "still-fine")) == "still-fine\n"


def _pids_limit_hits(cid) -> int:
    """How many forks the pids controller refused (`max` of pids.events, v1 or v2)."""
    for d in cgroup_dirs(cid):
        try:
            with open(os.path.join(d, "pids.events")) as f:
                return int(dict(line.split() for line in f)["max"])
        except FileNotFoundError:
            continue
    return 0


@pytest.fixture
def lim(store):
    """A detached container "lim" with memory, pids, cpus and cpuset limits, running
    two sleeps."""
    c = store.rt.containers.run("base:1", ["sh", "-c", "sleep 600 & sleep 600"], detach=True, name="lim",
                                mem_limit="64m", pids_limit=50, cpus=0.5, cpuset_cpus="0")
    wait_for(lambda: len(c.top()["Processes"]) == 2, what="both processes")
    assert cgroup_dirs(c.id)
    return c


def _block_device() -> str:
    """A block device of this machine, for I/O throttles (the root's, else a loop device)."""
    import stat
    dev = os.stat("/").st_dev
    for path in (f"/dev/block/{os.major(dev)}:{os.minor(dev)}", "/dev/loop0", "/dev/vda", "/dev/sda"):
        try:
            if stat.S_ISBLK(os.stat(path).st_mode):
                return os.path.realpath(path)
        except OSError:
            pass
    pytest.skip("no block device on this machine")


def test_block_io_limits_in_the_cgroup_files(store):
    dev = _block_device()
    st = os.stat(dev)
    majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    cid = ok(store.cli("run", "-d", "--device-read-bps", f"{dev}:1mb", "--device-write-iops", f"{dev}:100",
                       "base:1", "sleep", "600")).strip()
    from pyrt.cgroups import cgroup as cgroups
    if "blkio" in cgroups.layout().v1:
        assert cgroup_file(cid, "blkio", "blkio.throttle.read_bps_device", "") == f"{majmin} 1048576"
        assert cgroup_file(cid, "blkio", "blkio.throttle.write_iops_device", "") == f"{majmin} 100"
    else:
        assert cgroup_file(cid, "io", "", "io.max") == f"{majmin} rbps=1048576 wbps=max riops=max wiops=100"
    # the limits are kept with the container: a restart applies them again
    ok(store.cli("restart", "-t", "0", cid))
    if "blkio" in cgroups.layout().v1:
        assert cgroup_file(cid, "blkio", "blkio.throttle.read_bps_device", "") == f"{majmin} 1048576"
    # bad input: one line, nothing made
    error(store.cli("run", "--device-read-bps", "/etc/passwd:1mb", "base:1", "true"), status=125,
          match="not a block device")
    error(store.cli("run", "--device-read-bps", f"{dev}:-5", "base:1", "true"), status=125, match="rate")
    error(store.cli("run", "--blkio-weight", "5", "base:1", "true"), status=125, match="10 to 1000")


def test_limits_in_the_cgroup_files(lim):
    c = lim
    assert cgroup_file(c.id, "memory", "memory.limit_in_bytes", "memory.max") == str(64 << 20)
    assert cgroup_file(c.id, "pids", "pids.max", "pids.max") == "50"
    quota = cgroup_file(c.id, "cpu", "cpu.cfs_quota_us", "cpu.max").split()[0]
    assert quota == "50000"
    from pyrt.cgroups import cgroup as cgroups
    if "cpu" in cgroups.layout().v1:
        assert cgroup_file(c.id, "cpu", "cpu.cfs_period_us", "") == "100000"
    else:
        assert cgroup_file(c.id, "cpu", "", "cpu.max") == "50000 100000"
    assert cgroup_file(c.id, "cpuset", "cpuset.cpus", "cpuset.cpus") == "0"
    code, out = c.exec_run(["grep", "Cpus_allowed_list", "/proc/self/status"])
    assert out.split() == [b"Cpus_allowed_list:", b"0"]


def test_stats_and_top(store, lim):
    c = lim
    s = c.stats()
    assert s["memory_stats"]["limit"] == 64 << 20 and 0 < s["memory_stats"]["usage"] < 64 << 20, s
    assert s["pids_stats"] == {"current": 2, "limit": 50}, s
    assert s["name"] == "/lim" and s["id"] == c.id
    rows = json.loads(ok(store.cli("stats", "--no-stream", "--format", "json", "lim")))
    assert len(rows) == 1 and rows[0]["Name"] == "lim" and rows[0]["PIDs"] == "2", rows
    usage, limit = rows[0]["MemUsage"].split(" / ")
    assert limit == "67.1MB" and re.fullmatch(r"[\d.]+[kM]?B", usage), rows  # 64 MiB, in docker's units
    assert rows[0]["MemPerc"].endswith("%") and rows[0]["CPUPerc"].endswith("%")
    table = ok(store.cli("stats", "--no-stream", "lim")).splitlines()
    assert "MEM USAGE / LIMIT" in table[0] and "PIDS" in table[0] and table[1].split()[1] == "lim"
    top = ok(store.cli("top", "lim")).splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "CMD"] and sum("sleep 600" in t for t in top) == 2

    # without --no-stream: a reading a second until ^C (plain tables in a pipe)
    p = store.popen("stats", "--format", "{{.Name}} {{.PIDs}}", "lim", stdout=subprocess.PIPE, text=True,
                    preexec_fn=helpers.default_sigint)
    try:
        assert [p.stdout.readline(), p.stdout.readline()] == ["lim 2\n", "lim 2\n"]
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=DEADLINE) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def test_stats_without_limits_and_cgroup_removal(store, lim):
    c = lim
    # a container without limits still gets a cgroup when detached (stats, pause, OOM)
    plain = store.rt.containers.run("base:1", ["sleep", "600"], detach=True)
    assert cgroup_dirs(plain.id)
    s = plain.stats()
    assert s["memory_stats"]["usage"] > 0 and s["memory_stats"]["limit"] == 0 and s["pids_stats"] == \
        {"current": 1, "limit": 0}, s  # 0: no limit
    assert "unlimited" in ok(store.cli("stats", "--no-stream", plain.id))
    ok(store.cli("rm", "-f", "lim", plain.id))
    assert cgroup_dirs(c.id) == [] and cgroup_dirs(plain.id) == []
    # and no pyrt/<id> dir in any hierarchy, v1 or cgroup2
    for m in cgroup_mounts():
        for cid in (c.id, plain.id):
            assert not os.path.exists(os.path.join(m, "pyrt", cid))


def frozen(cid) -> bool:
    """The container's cgroup is frozen (cgroup2's cgroup.freeze, else the v1 freezer)."""
    from pyrt.cgroups import cgroup as cgroups
    lay = cgroups.layout()
    events = os.path.join(lay.unified, "pyrt", cid, "cgroup.events") if lay.unified else None
    if events and os.path.exists(events):
        with open(events) as f:
            return "frozen 1" in f.read().splitlines()
    return cgroup_file(cid, "freezer", "freezer.state", "") == "FROZEN"


def test_pause_unpause(store):
    script = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done"
    c = store.rt.containers.run("base:1", ["sh", "-c", script], detach=True, name="p")
    wait_for(lambda: c.exec_run(["cat", "/tmp/n"])[1].strip().isdigit(), what="the counter")
    ok(store.cli("pause", "p"))
    c.reload()
    assert c.status == "paused" and c.attrs["State"]["Status"] == "paused"
    assert ps(store, all=False)["p"]["Status"].endswith("(Paused)")
    assert frozen(c.id)
    n = open(os.path.join(c._upper(), "tmp", "n")).read()
    # frozen: the counter does not move (checked on the file, from the host)
    for _ in range(5):
        time.sleep(0.05)
        assert open(os.path.join(c._upper(), "tmp", "n")).read() == n
    with pytest.raises(Conflict, match="paused"):
        c.exec_run(["true"])
    error(store.cli("exec", "p", "true"), match="paused")
    error(store.cli("pause", "p"), match="not running")
    ok(store.cli("unpause", "p"))
    assert c.reload().status == "running" and not frozen(c.id)
    wait_for(lambda: open(os.path.join(c._upper(), "tmp", "n")).read() != n, what="the counter to move again")
    error(store.cli("unpause", "p"), match="not paused")
    c.pause()
    c.stop(timeout=1)  # a paused container can be stopped
    assert c.reload().status == "exited"
    c.start()
    c.pause()
    ok(store.cli("rm", "-f", "p"))  # and removed
    assert cgroup_dirs(c.id) == []


# -- many cycles, two processes at once, bad input -------------------------------------------------

def test_200_cycles_leave_nothing_behind(store, leak_check):
    rt = store.rt
    rt.containers.run("base:1", ["true"], remove=True)  # warm up: lazily opened things stay open
    before = {
        "containers": os.listdir(os.path.join(store.root, "containers")),
        "volumes": sorted(os.listdir(os.path.join(store.root, "volumes"))),
        "images": [i.id for i in rt.images.list(all=True)],
    }
    leak_check.reset()
    ids = []
    for i in range(200):
        if i % 2:  # a short command, waited for
            c = rt.containers.create("base:1", ["true"], pids_limit=20 if i % 4 == 1 else None)
            c.start()
            assert c.wait(timeout=DEADLINE)["StatusCode"] == 0
        else:  # a long one, stopped (SIGTERM reaches sleep through the init)
            c = rt.containers.create("base:1", ["sleep", "60"], init=True, mem_limit="64m" if i % 4 == 0 else None)
            c.start()
            c.stop(timeout=10)
            assert c.attrs["State"]["Status"] == "exited" and c.attrs["State"]["ExitCode"] == 143
        ids.append(c.id)
        c.remove()
    assert len(set(ids)) == 200
    assert [cid for cid in ids if cgroup_dirs(cid)] == []
    wait_for(lambda: not procs_holding(store.root), what="the monitors to end")
    leak_check.assert_clean(fds=True)  # no mounts, children (zombies included) or fds
    assert store.db_rows() == []
    assert os.listdir(os.path.join(store.root, "containers")) == before["containers"] == []
    assert sorted(os.listdir(os.path.join(store.root, "volumes"))) == before["volumes"]
    assert os.listdir(os.path.join(store.root, "tmp")) == []
    assert [i.id for i in rt.images.list(all=True)] == before["images"]
    check_store(rt)


def test_rm_force_of_containers_ending_at_that_moment(store):
    """rm -f races with a container that ends by itself: whichever wins, the
    removal succeeds (it used to fail now and then with "is not running")."""
    for i in range(100):
        c = store.rt.containers.run("base:1", ["sh", "-c", "exit 3"], detach=True, pids_limit=10 if i % 2 else None)
        c.remove(force=True)
        assert cgroup_dirs(c.id) == []
    assert store.db_rows() == [] and os.listdir(os.path.join(store.root, "containers")) == []


def test_two_cli_processes_at_once(store):
    """Two streams of `pyrt` commands on one store at the same time, 50 containers
    each: one runs `run --rm` in the foreground (with a cgroup), the other `run -d`
    then `rm -f`. Every command succeeds."""
    results = {"a": [], "b": []}

    def worker_a():
        for i in range(50):
            r = store.cli("run", "--rm", "--pids-limit", "30", "base:1", "hostname")
            results["a"].append(r)

    def worker_b():
        for i in range(50):
            r = store.cli("run", "-d", "--name", f"b{i}", "base:1", "sleep", "600")
            results["b"].append(r)
            if r.returncode == 0:
                results["b"].append(store.cli("rm", "-f", r.stdout.decode().strip()))

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    failed = [(r.args[3:], r.returncode, r.stderr) for r in results["a"] + results["b"] if r.returncode != 0]
    assert failed == []
    assert len(results["a"]) == 50 and len(results["b"]) == 100
    hostnames = [r.stdout.decode().strip() for r in results["a"]]
    assert len(set(hostnames)) == 50 and all(re.fullmatch(r"[0-9a-f]{12}", h) for h in hostnames)
    store.prefixes.update(hostnames)  # the id starts with the hostname: the cleanup checks their cgroups
    assert store.db_rows() == [] and os.listdir(os.path.join(store.root, "containers")) == []
    check_store(store.rt)


@pytest.fixture
def taken(store):
    """A running container "taken" (with a memory limit) and a volume "keep";
    returns (the container, store.snapshot())."""
    c = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="taken", mem_limit="64m")
    store.rt.volumes.create("keep")
    return c, store.snapshot()


def test_bad_input_is_one_line_and_changes_nothing(store, taken):
    c, before = taken
    cases = [
        (("stop", "nosuch"), 1, "no such container: nosuch"),
        (("logs", "nosuch"), 1, "no such container"),
        (("rm", "-f", "nosuch"), 1, "no such container"),
        (("kill", "nosuch"), 1, "no such container"),
        (("wait", "nosuch"), 1, "no such container"),
        (("start", "nosuch"), 1, "no such container"),
        (("stats", "--no-stream", "nosuch"), 1, "no such container"),
        (("run", "-d", "--name", "taken", "base:1", "true"), 125, "name 'taken' is already in use"),
        (("create", "--name", "taken", "base:1", "true"), 1, "already in use"),
        (("run", "-d", "--memory", "12qb", "base:1", "true"), 125, "invalid size '12qb'"),
        (("run", "-d", "-v", "newvol:relative/dir", "base:1", "true"), 125, "must be an absolute path"),
        (("run", "-d", "-v", "/tmp:relative", "base:1", "true"), 125, "must be an absolute path"),
        (("run", "-d", "--mount", "type=volume,src=newvol,dst=rel", "base:1", "true"), 125, "absolute path"),
        (("run", "-d", "--cpus", str(os.cpu_count() + 1), "base:1", "true"), 125, "invalid cpus"),
        (("run", "-d", "--cpus", "0.5", "--cpuset-cpus", str(os.cpu_count() + 3), "base:1", "true"), 125,
         "cpuset"),
        (("run", "-d", "-v", "newvol:/data", "--memory", "12qb", "base:1", "true"), 125, "invalid size"),
        (("run", "-d", "-v", "newvol:/data", "--name", "taken", "base:1", "true"), 125, "already in use"),
        (("kill", "-s", "NOSUCHSIG", "taken"), 1, "invalid signal 'NOSUCHSIG'"),
        (("kill", "-s", "99", "taken"), 1, None),
        (("pause", "nosuch"), 1, "no such container"),
        (("unpause", "taken"), 1, "not paused"),
        (("run", "-d", "--volumes-from", "nosuch", "base:1", "true"), 125, "no such container"),
        (("run", "-d", "nosuch:image", "true"), 125, None),
    ]
    for argv, status, match in cases:
        error(store.cli(*argv), status=status, match=match)
        assert store.snapshot() == before, argv
    assert c.reload().status == "running"


def test_bad_input_to_the_api_raises_and_changes_nothing(store, taken):
    c, before = taken
    # the API raises, and changes nothing either
    for kwargs, exc in ((dict(name="taken"), Conflict), (dict(mem_limit="12qb"), InvalidArgument),
                        (dict(volumes=["newvol:rel"]), InvalidArgument),
                        (dict(cpus=os.cpu_count() + 1), InvalidArgument)):
        with pytest.raises(exc):
            store.rt.containers.run("base:1", ["true"], detach=True, **kwargs)
        assert store.snapshot() == before, kwargs
    with pytest.raises(InvalidArgument, match="invalid signal"):
        c.kill("SIGNOPE")
    with pytest.raises(ContainerNotFound):
        store.get("nosuch")
    assert c.reload().status == "running" and store.snapshot() == before


def test_detached_rm_flag_removes_it_when_it_exits(store):
    cid = ok(store.cli("run", "-d", "--rm", "--memory", "64m", "base:1", "sh", "-c", "exit 4")).strip()
    wait_for(lambda: store.db_rows() == [], what="the container to remove itself")
    wait_for(lambda: not os.path.exists(os.path.join(store.root, "containers", cid)), what="its directory")
    assert cgroup_dirs(cid) == []
    c = store.rt.containers.run("base:1", ["true"], detach=True, remove=True, mem_limit="64m")  # the API's
    wait_for(lambda: store.db_rows() == [] and not os.path.exists(c.dir), what="the container to remove itself")
    assert cgroup_dirs(c.id) == []
    # created then started, the docker way
    cid = ok(store.cli("create", "--name", "later", "base:1", "sh", "-c", "echo hi")).strip()
    assert ps(store)["later"]["Status"] == "Created"
    assert ok(store.cli("start", "later")).strip() == "later"
    assert ok(store.cli("wait", cid)).strip() == "0"
    assert ok(store.cli("logs", "later")) == "hi\n"
    error(store.cli("rm", "-f", "later", "nosuch"), match="no such container: nosuch")  # the others go on
    assert store.db_rows() == []


def test_logs_of_foreground_containers(store):
    """A foreground run prints as it runs and keeps its output in the log, as docker
    does: `logs` shows every container's output, whatever way it ran."""
    r = store.cli("run", "--name", "fg", "base:1", "sh", "-c", "echo out1; echo err1 >&2; printf partial; exit 4")
    assert r.returncode == 4 and r.stdout == b"out1\npartial" and r.stderr == b"err1\n"
    assert store.cli("logs", "fg").stdout == b"out1\npartial"
    assert store.cli("logs", "fg").stderr == b"err1\n"
    stamped = ok(store.cli("logs", "-t", "--tail", "1", "fg"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z partial", stamped), stamped
    ok(store.cli("run", "-t", "--name", "fgt", "base:1", "echo", "on a tty"))
    assert ok(store.cli("logs", "fgt")) == "on a tty\r\n"
    assert store.rt.containers.run("base:1", ["echo", "api"], name="fga") == b"api\n"
    assert store.get("fga").logs() == b"api\n"
    # output is relayed as it comes, not at the end
    p = store.popen("run", "--rm", "--init", "base:1", "sh", "-c", "echo first; sleep 600",
                    stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"first\n"
    finally:
        p.send_signal(signal.SIGTERM)  # passed on to the container (its init, then sh)
        assert p.wait(timeout=DEADLINE) == 128 + signal.SIGTERM
        p.stdout.close()


def test_log_rotation(store):
    """--log-opt max-size/max-file, as docker's json-file driver: the log rotates to
    LOG.1, LOG.2; the oldest goes; logs (and logs -f) read across the files."""
    ok(store.cli("run", "-d", "--name", "rot", "--log-opt", "max-size=64k", "--log-opt", "max-file=3", "base:1",
                 "sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done"))
    c = store.get("rot")
    follow = store.popen("logs", "-f", "rot", stdout=subprocess.PIPE)
    try:
        followed, _ = follow.communicate(timeout=DEADLINE)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    c.wait()
    files = sorted(n for n in os.listdir(c.dir) if n.startswith("ctr.log"))
    assert files == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    assert all(os.path.getsize(os.path.join(c.dir, n)) <= (64 + 32) * 1024 for n in files)  # 32 KiB: one write
    lines = store.cli("logs", "rot").stdout.decode().split()
    assert lines[-1] == "line-19999" and "line-0" not in lines  # the oldest records were dropped
    numbers = [int(x.split("-")[1]) for x in lines]
    assert numbers == list(range(numbers[0], 20000))  # in order, none missing from what is kept
    assert followed.decode().split()[-1] == "line-19999"
    assert c.attrs["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                  "Config": {"max-size": "65536", "max-file": "3"}}
    error(store.cli("run", "-d", "--log-opt", "max-file=2", "base:1", "true"), status=125, match="needs max-size")
    error(store.cli("run", "-d", "--log-opt", "compress=true", "base:1", "true"), status=125,
          match="unsupported log option")


def test_extra_hosts_and_dns(store):
    out = ok(store.cli("run", "--rm", "--add-host", "db:10.0.0.5", "--add-host", "v6:fd00::1", "--dns", "9.9.9.9",
                       "--dns-search", "corp.example", "base:1", "sh", "-c", "cat /etc/hosts /etc/resolv.conf"))
    lines = out.splitlines()
    assert "10.0.0.5\tdb" in lines and "fd00::1\tv6" in lines
    assert "nameserver 9.9.9.9" in lines and "search corp.example" in lines
    assert not any(ln.startswith("nameserver") and ln != "nameserver 9.9.9.9" for ln in lines)
    c = store.rt.containers.create("base:1", ["true"], extra_hosts={"api": "192.0.2.1"}, dns=["1.1.1.1"])
    with open(os.path.join(c.dir, "hosts")) as f:
        assert "192.0.2.1\tapi\n" in f.read()
    before = store.snapshot()
    error(store.cli("run", "--rm", "--add-host", "nohost", "base:1", "true"), status=125, match="--add-host")
    error(store.cli("run", "--rm", "--dns", "x.y", "base:1", "true"), status=125, match="--dns")
    assert store.snapshot() == before


def test_restart_policies(store):
    """--restart: the monitor starts the container again when it ends (on-failure
    up to N times, always), with docker's growing back-off; a stop or a kill by hand
    ends it for good, until `start`."""
    ok(store.cli("run", "-d", "--name", "fail", "--restart", "on-failure:2", "base:1", "sh", "-c",
                 "echo run; exit 3"))
    c = store.get("fail")
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 3
    assert store.cli("logs", "fail").stdout == b"run\n" * 3  # the first run and two restarts
    assert c.attrs["RestartCount"] == 2 and c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    ok(store.cli("run", "-d", "--name", "fine", "--restart", "on-failure", "base:1", "echo", "once"))
    assert store.get("fine").wait(timeout=DEADLINE)["StatusCode"] == 0  # a success is not restarted
    assert store.cli("logs", "fine").stdout == b"once\n"

    ok(store.cli("run", "-d", "--name", "loop", "--restart", "always", "base:1", "sh", "-c", "echo run; sleep 0.1"))
    wait_for(lambda: store.cli("logs", "loop").stdout.count(b"run") >= 3, what="two restarts")
    assert store.get("loop").status == "running"
    ok(store.cli("stop", "-t", "2", "loop"))
    loop = store.get("loop")
    assert loop.status == "exited" and loop.attrs["RestartCount"] >= 2
    runs = store.cli("logs", "loop").stdout.count(b"run")
    time.sleep(0.5)
    assert store.cli("logs", "loop").stdout.count(b"run") == runs  # stopped by hand: not restarted
    ok(store.cli("start", "loop"))
    assert store.get("loop").status == "running"
    ok(store.cli("rm", "-f", "loop"))

    before = store.snapshot()
    error(store.cli("run", "--restart", "always", "base:1", "true"), status=125, match="needs -d")
    error(store.cli("run", "-d", "--rm", "--restart", "always", "base:1", "true"), status=125, match="conflict")
    error(store.cli("run", "-d", "--restart", "sometimes", "base:1", "true"), status=125, match="restart policy")
    error(store.cli("run", "-d", "--restart", "always:3", "base:1", "true"), status=125, match="only with on-failure")
    assert store.snapshot() == before


def test_cgroup_manager_systemd_without_systemd_is_a_clear_error(store):
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs this machine: the guest suite covers the systemd manager")

    def placeholders():
        r = subprocess.run(["pgrep", "-x", "-f", "sleep infinity"], capture_output=True, text=True)
        return set(r.stdout.split())
    before = placeholders()
    err = error(store.cli("--cgroup-manager", "systemd", "run", "--rm", "base:1", "true"), status=125)
    assert "systemd" in err and "cgroupfs" in err, err
    err = error(store.cli("--cgroup-manager", "systemd", "run", "-d", "--memory", "64m", "base:1", "true"),
                status=125)
    assert "systemd" in err
    assert ok(store.cli("ps", "-aq")) == ""
    assert placeholders() <= before  # none left for a scope that never came to be


def test_foreground_output_without_newlines_is_relayed_and_logged_whole(store, tmp_shm):
    """Long output with no newline goes out in partial log records (as the monitor
    writes them): relayed and logged in linear time, and `logs` joins them back."""
    out = os.path.join(tmp_shm, "out")
    script = "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo second; printf tail"
    with open(out, "wb") as f:
        r = subprocess.run([PYRT, "--root", store.root, "run", "--name", "long", "base:1", "sh", "-c", script],
                           stdout=f, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, r.stderr
    want = b"a" * 3000000 + b"\nsecond\ntail"
    with open(out, "rb") as f:
        assert f.read() == want
    assert store.get("long").logs() == want
    from pyrt.containers.lifecycle import LOG_FILE
    with open(os.path.join(store.get("long").dir, LOG_FILE), "rb") as f:
        longest = max(len(line) for line in f)
    assert longest < 8192 + 100  # records of at most 8 KiB of text


def test_a_reader_that_goes_away_ends_the_run_as_in_a_pipe(store):
    """`pyrt run ... | head -n1`: pyrt stops relaying, the container's own write
    fails as it would in a shell pipe, and pyrt exits with the container's status
    (yes killed by SIGPIPE under --init: 141), removing a --rm container."""
    script = f"{PYRT} --root {store.root} run --rm --init base:1 yes | head -n1; echo status=${{PIPESTATUS[0]}}"
    r = subprocess.run(["bash", "-c", script], capture_output=True, timeout=120)
    assert r.stdout == b"y\nstatus=141\n", r
    assert b"Traceback" not in r.stderr and b"BrokenPipe" not in r.stderr, r.stderr
    assert ok(store.cli("ps", "-aq")) == ""
