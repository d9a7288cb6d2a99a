"""Detached containers watched by their monitor and managed by later pyrt processes:
run -d, ps, logs, exec, stop, kill, start, restart, wait; through the Python API and
the `pyrt` command. Stores on /dev/shm; every test removes its containers even when it
fails (the `store` fixture); waits are polls with generous deadlines, never timings."""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess

import pytest

from pyrt.errors import Conflict, InvalidArgument, SpawnError
from clitools import HEX64, PYRT, cgroup_dirs, error, ok
from helpers import DEADLINE, wait_for
from lifecycletools import ps, log_has, TRAP_TERM


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
