"""pyrt.Pool: warm pools of parked containers (csrc/park.c, zygote.c), measured runs, the
bench profile, `pyrt bench` and its pyperf output. Real containers on the test
rootfs (see conftest.py); no timing assertions."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import errno
import os
import signal
import subprocess
import sys
import threading

import pytest

import helpers
import pyrt
from pyrt import _core
from pyrt.cgroups.cgroup import layout
from pyrt.errors import SpawnError
from pyrt.pool.pool import Pool, Usage
from clitools import PYRT

# Burns 0.2 s of CPU in a child process (a forked subshell) of the container's
# shell: it loops until its own utime + stime (/proc/self/stat, in 1/100 s) is 20.
BURN = ("( while :; do read -r l < /proc/self/stat; set -- $l; "
        "[ $((${14} + ${15})) -ge 20 ] && break; done ); echo burnt")
# Allocates ~120 MB (the shell keeps the whole output of the pipe in a variable).
ALLOC = "x=$(head -c 120000000 /dev/zero | tr '\\0' a); echo ${#x}"


def cgroup_dirs(pool) -> list[str]:
    """The pool's cgroup directories that exist (in every hierarchy)."""
    lay = layout()
    mounts = set(lay.v1.values()) | ({lay.unified} if lay.unified else set())
    return [os.path.join(m, pool._cg_parent) for m in sorted(mounts)
            if os.path.isdir(os.path.join(m, pool._cg_parent))]


def descendants(pid=None) -> set[int]:
    """Every process below this one (children, their children, ...)."""
    todo, seen = [pid or os.getpid()], set()
    while todo:
        for c in helpers.children(todo.pop()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


@pytest.fixture(scope="module")
def image(shm_base, rootfs):
    """An image of the test rootfs in a store on /dev/shm, with Env and WorkingDir."""
    rt = pyrt.Runtime(os.path.join(shm_base, "pool-store"), quiet=True)
    img = rt.images.import_image(rootfs, "bench", "1", changes=["ENV GREETING=hello", "WORKDIR /srv"])
    yield rt, img
    rt.close()


# -- the spawn core's parking ---------------------------------------------------------

def test_parked_child_runs_the_command_it_is_handed(rootfs):
    """spawn_parked + unpark, at the level of pyrt._core: argv, env, cwd, PATH and
    the three stdio fds all come with the command; the setup was done before."""
    from pyrt.launch.spec import build_spec
    spec = build_spec(["/bin/false"], rootfs, hostname="parked", upper_tmpfs="size=16m")
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    spec.stdio = (devnull,) * 3
    pid, pidfd, sock, errfd, park_usage = _core.spawn_parked(spec)
    os.close(devnull)
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        assert len(park_usage) == 5
        _core.unpark(sock, errfd, [b"sh", b"-c", b"read x; echo $x $FOO $(pwd) $(hostname); echo e >&2"],
                     [b"FOO=bar"], b"/bin", b"/tmp", (in_r, out_w, err_w))
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        io = _core.CommandIO(pidfd, in_w, b"hi\n", out_r, err_r)
        assert io.run(60)
        assert io.status == 0
        assert io.stdout == b"hi bar /tmp parked\n"
        assert io.stderr == b"e\n"
        io.release()
    finally:
        for fd in (sock, errfd, pidfd):
            os.close(fd)


def test_parked_child_reports_exec_failure(rootfs):
    from pyrt.launch.spec import build_spec
    spec = build_spec(["/bin/true"], rootfs, upper_tmpfs=True)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    spec.stdio = (devnull,) * 3
    pid, pidfd, sock, errfd, _ = _core.spawn_parked(spec)
    os.close(devnull)
    try:
        with pytest.raises(SpawnError) as e:
            _core.unpark(sock, errfd, [b"/no/such/program"], [], None, None)
        assert e.value.op == "exec" and e.value.errno == 2
        status, _ = _core.wait(pidfd)
        assert os.waitstatus_to_exitcode(status) == 127
    finally:
        for fd in (sock, errfd, pidfd):
            os.close(fd)


def test_parked_child_large_and_too_large_commands(rootfs):
    """The command travels packed in one datagram: one past the stack buffer of the
    sender (8 KiB) arrives whole; one past the most a parked child takes is refused
    with E2BIG, and the child that waited for it is not left behind."""
    from pyrt.launch.spec import build_spec
    spec = build_spec(["/bin/true"], rootfs, upper_tmpfs=True)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    spec.stdio = (devnull,) * 3
    big = [b"V%d=%s" % (i, b"x" * 100) for i in range(200)]  # ~20 KiB
    r, w = os.pipe()
    pid, pidfd, sock, errfd, _ = _core.spawn_parked(spec)
    try:
        _core.unpark(sock, errfd, [b"/bin/sh", b"-c", b"echo $V199 | wc -c"], big, None, None,
                     (devnull, w, devnull))
        os.close(w)
        w = -1
        status, _ = _core.wait(pidfd)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.read(r, 100) == b"101\n"
    finally:
        for fd in (sock, errfd, pidfd, r) + ((w,) if w >= 0 else ()):
            os.close(fd)
    pid, pidfd, sock, errfd, _ = _core.spawn_parked(spec)
    os.close(devnull)
    try:
        with pytest.raises(SpawnError) as e:
            _core.unpark(sock, errfd, [b"/bin/true"], [b"X=" + b"y" * _core.PARK_MSG_MAX], None, None)
        assert e.value.errno == errno.E2BIG
    finally:
        os.close(sock)  # the child that waits ends when its socket closes
        status, _ = _core.wait(pidfd)
        assert os.waitstatus_to_exitcode(status) == 127
        for fd in (errfd, pidfd):
            os.close(fd)


def test_volatile_upper_is_a_private_tmpfs(rootfs, tmp_shm):
    """upper_tmpfs: writes go to a tmpfs of the container's own; the rootfs and the
    host see nothing of them."""
    before = helpers.tree_state(rootfs)
    r = pyrt.run(["sh", "-c", "echo x > /new; echo y > /etc/hostname; cat /new; grep ' / ' /proc/mounts"],
                 rootfs, upper_tmpfs="size=8m", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("x\n")
    assert "overlay" in r.stdout and "volatile" in r.stdout
    assert helpers.tree_state(rootfs) == before


# -- the pool -------------------------------------------------------------------------

def test_pool_of_4_serves_500_commands_from_8_threads(rootfs):
    """Each output is the right one, and each container is fresh: a file a command
    writes (in / and in /tmp) is never seen by another."""
    with Pool(rootfs=rootfs, size=4) as pool:
        def one(i):
            script = (f"for f in /marker /tmp/marker; do test -e $f && echo STALE $f; echo {i} > $f; done; "
                      f"echo out-{i * 3}; echo err-{i} >&2; exit {i % 7}")
            r = pool.run(["sh", "-c", script])
            return i, r

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(one, range(500)))
    assert len(results) == 500
    for i, r in results:
        assert r.stdout == f"out-{i * 3}\n".encode(), (i, r)
        assert r.stderr == f"err-{i}\n".encode(), (i, r)
        assert r.returncode == i % 7, (i, r)
        assert isinstance(r.usage, Usage) and r.usage.wall > 0


def test_pool_run_options(rootfs):
    with Pool(rootfs=rootfs, size=1, env={"BASE": "b"}, hostname="pooled", cwd="/tmp") as pool:
        r = pool.run(["sh", "-c", "echo $BASE $EXTRA $(pwd) $(hostname) $HOSTNAME"], env={"EXTRA": "e"})
        assert r.stdout == b"b e /tmp pooled pooled\n"
        r = pool.run(["sh", "-c", "pwd"], cwd="/etc", text=True)
        assert r.stdout == "/etc\n"
        r = pool.run(["wc", "-c"], input=b"x" * 300000)  # more than a pipe holds
        assert r.stdout.split() == [b"300000"]
        r = pool.run("true")
        assert r.returncode == 0 and r.stdout == b""
        with pytest.raises(subprocess.CalledProcessError):
            pool.run(["false"], check=True)
        with pytest.raises(SpawnError) as e:
            pool.run(["/no/such/program"])
        assert e.value.errno == 2
        results = pool.map(["sh", "-c", "cat; echo"], [b"a", b"b", b"c"])
        assert [r.stdout for r in results] == [b"a\n", b"b\n", b"c\n"]
        results = pool.map(lambda n: ["sh", "-c", f"echo {n}"], range(5))
        assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(5)]
        results = pool.map(lambda n: {"argv": ["sh", "-c", "echo $N"], "env": {"N": str(n)}}, [7, 8])
        assert [r.stdout for r in results] == [b"7\n", b"8\n"]


def test_pool_over_an_image(image):
    rt, img = image
    with Pool(image="bench:1", root=rt.root, size=2) as pool:
        r = pool.run(["sh", "-c", "echo $GREETING $(pwd); echo x > /f; ls /f"])
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"hello /srv\n/f\n"
        r = pool.run(["sh", "-c", "test -e /f && echo stale || echo fresh"])
        assert r.stdout == b"fresh\n"
    for layer in img.layers:
        assert not os.path.exists(os.path.join(layer.path, "f"))


def test_pool_without_zygote_and_size_0(rootfs):
    """The same results when the children are cloned by this process (no
    pyrt-zygote), and with no warm children at all (each run parks its own)."""
    for kw in ({"size": 2, "zygote": False}, {"size": 0}):
        with Pool(rootfs=rootfs, **kw) as pool:
            for i in range(3):
                r = pool.run(["sh", "-c", f"test -e /m && echo stale; echo {i} > /m; echo {i}"])
                assert r.stdout == f"{i}\n".encode()


def test_timeout_kills_the_container(rootfs):
    with Pool(rootfs=rootfs, size=2) as pool:
        with pytest.raises(subprocess.TimeoutExpired):
            pool.run(["sleep", "60"], timeout=0.3)
        # a background process holding the output pipe open dies with the container
        with pytest.raises(subprocess.TimeoutExpired) as e:
            pool.run(["sh", "-c", "echo started; sleep 60 & sleep 60"], timeout=0.5)
        assert e.value.output == b"started\n"
        assert pool.run(["echo", "still", "works"]).stdout == b"still works\n"
        # a command that crashes (a child killed by SIGSEGV) and one killed by a signal
        r = pool.run(["sh", "-c", "sh -c 'kill -SEGV $$'; echo $?"])
        assert r.stdout == b"139\n"
        r = pool.run(["sh", "-c", "kill -KILL $$"])  # pid 1 of its namespace: ignored from inside
        assert r.returncode == 0
    assert not descendants()


def test_close_leaves_nothing_behind(rootfs, leak_check):
    """Parked children, a running command, cgroups (limits and cpuset), the
    zygote: after close() no mount, cgroup, process or fd is left."""
    mountinfo_before = helpers.mountinfo()
    cpu = sorted(os.sched_getaffinity(0))[-1]
    pool = Pool(rootfs=rootfs, size=3, memory="64m", cpuset=str(cpu), pids_limit=50)
    try:
        assert pool.wait_ready(30)
        assert cgroup_dirs(pool)
        r = pool.run(["sh", "-c", "cat /proc/self/status | grep Cpus_allowed_list"])
        assert r.stdout.split()[-1] == str(cpu).encode()
        result = {}

        def hang():
            result["r"] = pool.run(["sleep", "60"])

        t = threading.Thread(target=hang)
        t.start()

        def sleeping():
            for child in list(pool._running):
                try:
                    with open(f"/proc/{child.pid}/comm") as f:
                        return f.read().strip() == "sleep"
                except OSError:
                    pass
            return False

        while not sleeping():
            threading.Event().wait(0.01)
    finally:
        pool.close()
    t.join(30)
    assert not t.is_alive()
    assert result["r"].returncode == -signal.SIGKILL
    assert not cgroup_dirs(pool)
    assert not descendants()
    assert helpers.mountinfo() == mountinfo_before
    leak_check.assert_clean()
    pool.close()  # idempotent
    with pytest.raises(RuntimeError):
        pool.run(["true"])


def test_usage_is_plausible(rootfs):
    with Pool(rootfs=rootfs, size=2) as pool:
        r = pool.run(["sh", "-c", BURN])
        assert r.stdout == b"burnt\n"
        u = r.usage
        assert u.source == "cgroup"
        assert 0.15 <= u.cpu <= 0.4, u
        assert u.wall >= u.cpu * 0.5, u
        assert u.oom_killed is False
        r = pool.run(["sh", "-c", ALLOC])
        assert r.stdout == b"120000000\n"
        assert r.usage.peak_memory >= 100 * 1024 * 1024, r.usage
        r = pool.run(["true"])
        assert r.usage.peak_memory < 100 * 1024 * 1024, r.usage  # a fresh peak for each run
        assert r.usage.cpu < 0.15, r.usage
    # without a cgroup: rusage, which counts the waited-for children too
    with Pool(rootfs=rootfs, size=1, measure=False) as pool:
        u = pool.run(["sh", "-c", BURN]).usage
        assert u.source == "rusage" and u.peak_memory is None
        assert 0.15 <= u.cpu <= 0.4, u


def test_oom_kill_is_reported(rootfs):
    with Pool(rootfs=rootfs, size=1, memory="32m", memory_swap="32m") as pool:
        r = pool.run(["sh", "-c", ALLOC])
        assert r.returncode != 0
        assert r.usage.oom_killed is True, r.usage


def test_bench_profile(rootfs):
    cpu = sorted(os.sched_getaffinity(0))[-1]
    with Pool(rootfs=rootfs, size=1, profile="bench", cpuset=str(cpu), env={"X": "1"}) as pool:
        r = pool.run(["sh", "-c", "hostname; echo $LC_ALL $TZ $X; grep Cpus_allowed_list /proc/self/status"])
        lines = r.stdout.decode().splitlines()
        assert lines[0] == "bench"
        assert lines[1] == "C.UTF-8 UTC 1"
        assert lines[2].split()[-1] == str(cpu)
        assert isinstance(r.usage.noise, list)
        assert r.usage.throttled == 0
    with pytest.raises(ValueError):
        Pool(rootfs=rootfs, profile="bench", cpus=1)
    r = pyrt.run(["cat", "/proc/self/personality"], rootfs, profile="bench", aslr=False, capture_output=True)
    assert r.returncode == 0
    assert int(r.stdout, 16) & 0x0040000  # ADDR_NO_RANDOMIZE
    assert isinstance(r.usage, Usage) and r.usage.peak_memory is not None


def test_cpu_quota_throttling_is_reported(rootfs):
    with Pool(rootfs=rootfs, size=1, cpus=0.1) as pool:
        r = pool.run(["sh", "-c", BURN])
        assert r.stdout == b"burnt\n"
        assert r.usage.throttled > 0 and r.usage.throttled_time > 0, r.usage


def test_pool_arun(rootfs):
    async def main(pool):
        results = await asyncio.gather(*(pool.arun(["sh", "-c", f"cat; echo {i}"], input=f"in{i}-".encode())
                                         for i in range(12)))
        with pytest.raises(subprocess.TimeoutExpired):
            await pool.arun(["sleep", "60"], timeout=0.3)
        with pytest.raises(SpawnError):
            await pool.arun(["/no/such/program"])
        return results

    with Pool(rootfs=rootfs, size=3) as pool:
        results = asyncio.run(main(pool))
    assert [r.stdout for r in results] == [f"in{i}-{i}\n".encode() for i in range(12)]
    assert all(r.returncode == 0 and r.usage.wall > 0 for r in results)


def test_pyrt_arun(rootfs):
    async def main():
        rs = await asyncio.gather(*(pyrt.arun(["sh", "-c", f"echo {i}; exit {i}"], rootfs, capture_output=True)
                                    for i in range(4)))
        r = await pyrt.arun(["cat"], rootfs, input=b"abc", capture_output=True, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            await pyrt.arun(["sleep", "60"], rootfs, timeout=0.3)
        return rs, r

    rs, r = asyncio.run(main())
    assert [(x.returncode, x.stdout) for x in rs] == [(i, f"{i}\n".encode()) for i in range(4)]
    assert r.stdout == "abc"


# -- pyrt bench -------------------------------------------------------------------------

def test_pyrt_bench_writes_pyperf_json(rootfs, tmp_shm):
    a, b = os.path.join(tmp_shm, "a.json"), os.path.join(tmp_shm, "b.json")
    for out, cmd in ((a, ["true"]), (b, ["sh", "-c", "echo"])):
        r = subprocess.run([PYRT, "bench", "--runs", "5", "--warmups", "1", "--pool", "2", "-o", out,
                            "--rootfs", rootfs, "--name", "cmd", "--", *cmd], capture_output=True, cwd="/")
        assert r.returncode == 0, r.stderr
        assert b"cmd: " in r.stdout
    r = subprocess.run([sys.executable, "-m", "pyperf", "stats", a], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Number of run with values: 5" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pyperf", "compare_to", a, b], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(a) as f:
        data = json.load(f)
    runs = data["benchmarks"][0]["runs"]
    assert len([r for r in runs if r.get("values")]) == 5
    md = runs[0]["metadata"]
    assert md["usage_cpu"] >= 0 and md["command_max_rss"] > 0 and "usage_nivcsw" in md


def test_pyrt_run_profile_bench(rootfs):
    r = subprocess.run([PYRT, "run", "--profile", "bench", "--rootfs", rootfs, "--", "sh", "-c", "echo hi; exit 3"],
                       capture_output=True, cwd="/")
    assert r.returncode == 3
    assert r.stdout == b"hi\n"
    assert r.stderr.startswith(b"pyrt: wall ") and b"peak memory" in r.stderr
