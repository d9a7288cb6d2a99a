"""Detached containers' cgroups: memory (OOM kill), pids, block I/O, cpu and cpuset
limits in the cgroup files, stats and top, pause and unpause."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from pyrt.errors import Conflict
import helpers
from clitools import cgroup_dirs, cgroup_mounts, error, ok
from helpers import DEADLINE, wait_for
from lifecycletools import cgroup_file, ps


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
