"""Detached containers and their monitor (csrc/monitor.c, pyrt-monitor), exec into a
running container (csrc/exec.c) and --init (csrc/init.c, pyrt-init), through the
bindings in pyrt._core. Every test waits for what it started: containers it spawned
(its children), exec'd processes (its children too) and monitors (not its
children: waited for through a pidfd)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

import pyrt
from pyrt import _core
from pyrt.errors import SpawnError
from pyrt.launch import caps
from pyrt.launch.mounts import Bind, Tmpfs
from pyrt.launch.spec import build_spec

LOG_RE = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$")
DEADLINE = 60.0  # seconds a test waits for something that must happen, before failing


def pidfd_open(pid):
    """A pidfd for pid, or None when it is gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def wait_pidfd(fd, what="process"):
    """Wait until the process behind fd (any process, not only a child) has exited."""
    ready, _, _ = select.select([fd], [], [], DEADLINE)
    assert ready, f"the {what} did not exit within {DEADLINE} s"


def wait_until(cond, what):
    """Poll cond() until it is true (fails after DEADLINE)."""
    end = time.monotonic() + DEADLINE
    while not cond():
        assert time.monotonic() < end, f"{what}: not within {DEADLINE} s"
        time.sleep(0.01)


def proc_stat(pid):
    """(state, ppid, start time) from /proc/PID/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def children_of(pid):
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found


class Monitored:
    """A detached container started by monitor_start."""

    def __init__(self, spec, tmp, **kwargs):
        self.log = os.path.join(tmp, "log")
        self.exit_path = os.path.join(tmp, "exit")
        self.cpid, self.mpid = _core.monitor_start(spec, self.log, self.exit_path, **kwargs)
        self.mfd = pidfd_open(self.mpid)
        # While the exit record does not exist, the container's pid is its own.
        self.cfd = pidfd_open(self.cpid)
        if self.cfd is not None and os.path.exists(self.exit_path):
            os.close(self.cfd)
            self.cfd = None

    def kill(self, sig=signal.SIGKILL):
        if self.cfd is not None:
            try:
                signal.pidfd_send_signal(self.cfd, sig)
            except ProcessLookupError:
                pass

    def wait(self):
        """Wait for the monitor to finish (and exit_argv, which it execs); the exit record."""
        if self.mfd is not None:
            wait_pidfd(self.mfd, "monitor")
            os.close(self.mfd)
            self.mfd = None
        if self.cfd is not None:
            os.close(self.cfd)
            self.cfd = None
        return _core.read_exit_record(self.exit_path)

    def raw(self):
        with open(self.log, "rb") as f:
            return f.read()

    def records(self):
        lines = self.raw().split(b"\n")
        assert lines[-1] == b"", "the log ends with a newline"
        out = []
        for line in lines[:-1]:
            m = LOG_RE.match(line)
            assert m, f"not a CRI log line: {line!r}"
            out.append((m.group(2).decode(), m.group(3).decode(), m.group(4)))
        return out

    def text(self, stream):
        return b"".join(t + (b"\n" if tag == "F" else b"") for s, tag, t in self.records() if s == stream)


@contextlib.contextmanager
def monitored(spec, tmp, **kwargs):
    m = Monitored(spec, tmp, **kwargs)
    try:
        yield m
    finally:
        m.kill()
        m.wait()


@contextlib.contextmanager
def spawned(*args, **kwargs):
    p = pyrt.spawn(*args, **kwargs)
    try:
        yield p
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()


def run_exec(spec, input=None):
    """exec_ with stdout+stderr (and stdin) on pipes: (exit code, output)."""
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe() if input is not None else (-1, -1)
    spec.stdio = (in_r, out_w, out_w)
    try:
        pid, pidfd = _core.exec_(spec)
    finally:
        os.close(out_w)
        if in_r >= 0:
            os.close(in_r)
    try:
        if input is not None:
            os.write(in_w, input)
            os.close(in_w)
            in_w = -1
        with open(out_r, "rb", closefd=False) as f:
            out = f.read()
        status, _ = _core.wait(pidfd)
    finally:
        os.close(pidfd)
        os.close(out_r)
        if in_w >= 0:
            os.close(in_w)
    return os.waitstatus_to_exitcode(status), out.decode()


# -- the monitor: logs -------------------------------------------------------------------

def test_log_lines_and_streams(rootfs, tmp_shm, leak_check):
    script = ("echo out1; echo err1 >&2; echo out2; printf err-partial >&2; "
              "printf '%20000s\\n' '' | tr ' ' x; printf 'no newline'")
    with monitored(build_spec(["sh", "-c", script], rootfs), tmp_shm) as m:
        record = m.wait()
    assert record["ExitCode"] == 0
    recs = m.records()
    out = [(tag, t) for s, tag, t in recs if s == "stdout"]
    err = [(tag, t) for s, tag, t in recs if s == "stderr"]
    assert err == [("F", b"err1"), ("P", b"err-partial")]
    assert out[:2] == [("F", b"out1"), ("F", b"out2")]
    assert out[-1] == ("P", b"no newline")
    # The 20000-character line: full-buffer partial records, then the rest as F.
    long = out[2:-1]
    assert [tag for tag, _ in long] == ["P"] * (len(long) - 1) + ["F"]
    assert len(long) >= 3 and all(len(t) <= 8192 for _, t in long)
    assert b"".join(t for _, t in long) == b"x" * 20000
    assert m.text("stdout") == b"out1\nout2\n" + b"x" * 20000 + b"\nno newline"
    parsed = _core.parse_log(m.raw())
    assert [(s, t) for _, s, t in parsed if s == "stderr"] == [("stderr", b"err1\n"), ("stderr", b"err-partial")]
    leak_check.assert_clean()


def test_log_appends_and_stdin_fd(rootfs, tmp_shm, leak_check):
    with open(os.path.join(tmp_shm, "log"), "wb") as f:
        f.write(b"2026-01-01T00:00:00.000000000Z stdout F earlier\n")
    r, w = os.pipe()
    try:
        m = Monitored(build_spec(["sh", "-c", "cat; echo eof"], rootfs), tmp_shm, stdin=r)
    finally:
        os.close(r)
    try:
        os.write(w, b"hello\nworld\n")
        os.close(w)
        w = -1
        record = m.wait()
    finally:
        if w >= 0:
            os.close(w)
        m.kill()
        m.wait()
    assert record["ExitCode"] == 0
    assert m.text("stdout") == b"earlier\nhello\nworld\neof\n"
    leak_check.assert_clean()


def test_container_and_monitor_fds(rootfs, tmp_shm, leak_check):
    keep = os.open(tmp_shm, os.O_RDONLY)  # an inheritable fd of the caller: must not leak
    os.set_inheritable(keep, True)
    try:
        spec = build_spec(["sh", "-c", "ls /proc/self/fd; echo ready; exec sleep 1000"], rootfs)
        with monitored(spec, tmp_shm) as m:
            wait_until(lambda: b"F ready" in m.raw(), "the container started")
            targets = sorted(os.readlink(f"/proc/{m.mpid}/fd/{fd}") for fd in os.listdir(f"/proc/{m.mpid}/fd"))
            with open(f"/proc/{m.mpid}/status") as f:
                status = f.read()
            assert proc_stat(m.mpid)[1] != os.getpid(), "the monitor is not the caller's child"
            m.kill()
    finally:
        os.close(keep)
    assert targets.count("/dev/null") == 3
    assert targets.count(m.log) == 1
    assert "anon_inode:[pidfd]" in targets
    assert len([t for t in targets if t.startswith("pipe:")]) == 2
    assert len(targets) == 7, targets
    # ls lists its own directory fd (3) too; nothing else is open in the container
    assert m.text("stdout").split() == [b"0", b"1", b"2", b"3", b"ready"]
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    assert rss < 4096, f"the monitor uses {rss} KiB"
    leak_check.assert_clean()


# -- the monitor: exit records -------------------------------------------------------------

@pytest.mark.parametrize("script,code,sig", [("exit 0", 0, 0), ("echo bye; exit 3", 3, 0),
                                              ("exec sleep 1000", 137, 9)])
def test_exit_record(rootfs, tmp_shm, leak_check, script, code, sig):
    before = time.time()
    with monitored(build_spec(["sh", "-c", script], rootfs), tmp_shm) as m:
        if sig:
            m.kill(sig)
        record = m.wait()
    assert record["ExitCode"] == code
    assert record["Signal"] == sig
    assert record["OOMKilled"] is False
    assert record["Pid"] == m.cpid
    assert before <= record["FinishedAt"] <= time.time()
    assert record["UserTime"] >= 0 and record["SystemTime"] >= 0 and record["MaxRSS"] > 0
    assert sorted(os.listdir(tmp_shm)) == ["exit", "log"]  # no temporary file left
    leak_check.assert_clean()


def test_spawn_error_through_the_monitor(rootfs, tmp_shm, leak_check):
    with pytest.raises(SpawnError) as info:
        _core.monitor_start(build_spec(["nosuch"], rootfs), os.path.join(tmp_shm, "log"),
                            os.path.join(tmp_shm, "exit"))
    assert info.value.errno == errno.ENOENT
    assert info.value.op == "exec" and info.value.path == "nosuch"
    assert not os.path.exists(os.path.join(tmp_shm, "exit"))
    with pytest.raises(SpawnError) as info:
        _core.monitor_start(build_spec(["true"], rootfs), os.path.join(tmp_shm, "no/such/dir/log"),
                            os.path.join(tmp_shm, "exit"))
    assert info.value.errno == errno.ENOENT and info.value.op == "open log"
    leak_check.assert_clean()


def test_exit_argv_runs_after_the_record(rootfs, tmp_shm, leak_check):
    exit_path, copy = os.path.join(tmp_shm, "exit"), os.path.join(tmp_shm, "copy")
    argv = ["/bin/sh", "-c", f'cat "{exit_path}" > "{copy}"; echo "$PYRT_TEST_VALUE" >> "{copy}"']
    os.environ["PYRT_TEST_VALUE"] = "from-the-caller"
    try:
        with monitored(build_spec(["sh", "-c", "exit 5"], rootfs), tmp_shm, exit_argv=argv) as m:
            record = m.wait()  # the monitor's pidfd follows it into exit_argv
    finally:
        del os.environ["PYRT_TEST_VALUE"]
    with open(copy) as f:
        first, env_line = f.read().splitlines()
    assert json.loads(first) == record and record["ExitCode"] == 5
    assert env_line == "from-the-caller"
    leak_check.assert_clean()


def test_oom_count_decides_oomkilled(rootfs, tmp_shm, leak_check):
    """OOMKilled compares the "oom_kill N" line at the start and at the end (here a
    stand-in file in the memory.oom_control format that the container bumps)."""
    counter = os.path.join(tmp_shm, "oom_control")
    with open(counter, "w") as f:
        f.write("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    os.chmod(counter, 0o666)
    bump = "printf 'oom_kill_disable 0\\nunder_oom 0\\noom_kill 5\\n' > /srv/oom_control"
    for script, oom in (("exit 0", False), (bump, True)):
        spec = build_spec(["sh", "-c", script], rootfs, mounts=[Bind(tmp_shm, "/srv")])
        with monitored(spec, tmp_shm, oom_path=counter) as m:
            record = m.wait()
        assert record["OOMKilled"] is oom, script
        os.unlink(m.exit_path)
    with monitored(build_spec(["true"], rootfs), tmp_shm, oom_path=counter, oom_start=2) as m:
        assert m.wait()["OOMKilled"] is True  # 5 now, 2 "at the start"
    leak_check.assert_clean()


def _memory_cgroup(name):
    """(directory, oom file, [v1 cgroup.procs fd], v2 dir fd) of a new memory cgroup
    limited to 32 MiB, or None when this host has no usable memory controller."""
    v1 = "/sys/fs/cgroup/memory"
    if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
        d = os.path.join(v1, name)
        os.mkdir(d)
        with open(os.path.join(d, "memory.limit_in_bytes"), "w") as f:
            f.write(str(32 << 20))
        if os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
            with open(os.path.join(d, "memory.memsw.limit_in_bytes"), "w") as f:
                f.write(str(32 << 20))
        return d, os.path.join(d, "memory.oom_control"), [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)], -1
    v2 = "/sys/fs/cgroup"
    try:
        with open(os.path.join(v2, "cgroup.subtree_control")) as f:
            enabled = f.read().split()
    except OSError:
        return None
    if "memory" not in enabled:
        return None
    d = os.path.join(v2, name)
    os.mkdir(d)
    with open(os.path.join(d, "memory.max"), "w") as f:
        f.write(str(32 << 20))
    with contextlib.suppress(OSError):
        with open(os.path.join(d, "memory.swap.max"), "w") as f:
            f.write("0")
    return d, os.path.join(d, "memory.events"), [], os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _rmdir_cgroup(d):
    end = time.monotonic() + DEADLINE
    while True:
        try:
            os.rmdir(d)
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > end:
                raise
            time.sleep(0.01)


def test_real_oom_kill(rootfs, tmp_shm, leak_check):
    cg = _memory_cgroup(f"pyrt-tests-oom-{os.getpid()}")
    if cg is None:
        pytest.skip("no memory cgroup controller")
    d, oom_file, procs, dirfd = cg
    try:
        # sh (pid 1) holds 100 MB in a variable: the OOM killer ends it
        spec = build_spec(["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived"], rootfs)
        spec.cgroup_procs_fds, spec.cgroup_fd = procs, dirfd
        with monitored(spec, tmp_shm, oom_path=oom_file) as m:
            record = m.wait()
    finally:
        for fd in procs + ([dirfd] if dirfd >= 0 else []):
            os.close(fd)
        _rmdir_cgroup(d)
    assert record["OOMKilled"] is True
    assert record["ExitCode"] == 137 and record["Signal"] == 9
    assert b"survived" not in m.text("stdout")
    leak_check.assert_clean()


# -- the monitor outlives its caller -------------------------------------------------------

STARTER = r"""
import os, sys
from pyrt import _core
from pyrt.launch.mounts import Bind
from pyrt.launch.spec import build_spec
rootfs, tmp = sys.argv[1], sys.argv[2]
spec = build_spec(["sh", "-c", "echo before; cat /srv/fifo; echo after; exit 3"], rootfs,
                  mounts=[Bind(tmp, "/srv")])
cpid, mpid = _core.monitor_start(spec, tmp + "/log", tmp + "/exit")
print(cpid, mpid, flush=True)
sys.stdin.read()  # until killed
"""


def test_monitor_survives_the_death_of_its_caller(rootfs, tmp_shm, leak_check):
    fifo = os.path.join(tmp_shm, "fifo")
    os.mkfifo(fifo)
    starter = subprocess.Popen([sys.executable, "-c", STARTER, rootfs, tmp_shm],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cfd = mfd = None
    try:
        cpid, mpid = map(int, starter.stdout.readline().split())
        cfd, mfd = pidfd_open(cpid), pidfd_open(mpid)
        assert cfd is not None and mfd is not None
        starter.kill()
        assert starter.wait() == -signal.SIGKILL
        # the container and its monitor go on, the monitor adopted by another process
        signal.pidfd_send_signal(cfd, 0)
        assert proc_stat(cpid)[0] != "Z" and proc_stat(mpid)[0] != "Z"
        assert proc_stat(mpid)[1] != starter.pid
        assert not os.path.exists(os.path.join(tmp_shm, "exit"))
        with open(fifo, "w") as f:  # the container reads it: it finishes now
            f.write("go on\n")
        wait_pidfd(mfd, "monitor")
    finally:
        if starter.returncode is None:
            starter.kill()
            starter.wait()
        starter.stdin.close()
        starter.stdout.close()
        if cfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(cfd, signal.SIGKILL)
            os.close(cfd)
        if mfd is not None:
            wait_pidfd(mfd, "monitor")
            os.close(mfd)
    record = _core.read_exit_record(os.path.join(tmp_shm, "exit"))
    assert record["ExitCode"] == 3 and record["Pid"] == cpid
    with open(os.path.join(tmp_shm, "log"), "rb") as f:
        log = f.read()
    assert [l.split(b" ", 3)[3] for l in log.splitlines()] == [b"before", b"go on", b"after"]
    leak_check.assert_clean()


def test_monitor_ignores_terminal_signals(rootfs, tmp_shm, leak_check):
    spec = build_spec(["sh", "-c", "echo ready; exec sleep 1000"], rootfs)
    with monitored(spec, tmp_shm) as m:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGUSR1):
            os.kill(m.mpid, sig)
        with open(f"/proc/{m.mpid}/status") as f:
            pending = int(re.search(r"^ShdPnd:\s*([0-9a-f]+)$", f.read(), re.M).group(1), 16)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGUSR1):
            assert pending & (1 << (sig - 1)), f"{sig.name} is blocked, pending"
        signal.pidfd_send_signal(m.cfd, 0)  # the container runs on
        m.kill(signal.SIGKILL)
        record = m.wait()
    assert record["ExitCode"] == 137
    leak_check.assert_clean()


# -- exec -----------------------------------------------------------------------------

def _exec_spec(pid, argv, **kwargs):
    """The C core's ExecSpec with the defaults build_exec_spec gives (root, docker's
    capabilities)."""
    kwargs.setdefault("env", {"PATH": "/bin:/usr/bin", "FOO": "bar"})
    kwargs.setdefault("user", (0, 0, []))
    kwargs.setdefault("caps", caps.resolve())
    env = kwargs.pop("env")
    return _core.ExecSpec(pid, argv, env, **kwargs)


def _started(c):
    """Wait until the container of _container has printed ready and exec'd sleep."""
    assert c.stdout.readline() == b"ready\n"
    wait_until(lambda: cmdline(c.pid) == b"sleep\x001000\x00", "the container exec'd sleep")


def _container(rootfs, **kwargs):
    script = "mkdir -p /tmp/work && echo marker > /tmp/work/file && echo ready && exec sleep 1000"
    return spawned(["sh", "-c", script], rootfs, hostname="box", mounts=[Tmpfs("/tmp")],
                   stdout=pyrt.PIPE, **kwargs)


def test_exec_runs_in_the_container(rootfs, leak_check):
    with _container(rootfs) as c:
        _started(c)
        script = ("hostname; pwd; id -u; id -g; echo $FOO; cat /tmp/work/file; cat /etc/hostname; "
                  "tr '\\0' ' ' < /proc/1/cmdline; echo; ps -o pid,user,args | grep -c .; exit 7")
        code, out = run_exec(_exec_spec(c.pid, ["sh", "-c", script], cwd="/tmp/work", user=(1000, 1000, [])))
        lines = out.splitlines()
        assert code == 7, out
        assert lines[:8] == ["box", "/tmp/work", "1000", "1000", "bar", "marker", "pyrt-test", "sleep 1000 "]
        # ps sees the container's processes only: pid 1, the exec'd sh, ps, grep (+ header)
        assert int(lines[8]) <= 6
        c.kill()
        c.wait()
    leak_check.assert_clean()


def test_exec_joins_the_namespaces(rootfs, leak_check):
    with _container(rootfs) as c:
        _started(c)
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe()
        spec = _exec_spec(c.pid, ["sh", "-c", "echo $$; read x"], stdio=(in_r, out_w, -1), pidfd=c._pidfd)
        pid, pidfd = _core.exec_(spec)
        os.close(in_r)
        os.close(out_w)
        try:
            with open(out_r, "rb", closefd=False) as f:
                inner_pid = int(f.readline())
            assert inner_pid > 1 and inner_pid != pid  # its pid in the container's namespace
            for ns in ("mnt", "uts", "ipc", "net", "pid", "cgroup", "user"):
                assert os.stat(f"/proc/{pid}/ns/{ns}").st_ino == os.stat(f"/proc/{c.pid}/ns/{ns}").st_ino, ns
            assert os.readlink(f"/proc/{pid}/root") == os.readlink(f"/proc/{c.pid}/root")
            assert proc_stat(pid)[1] == os.getpid()  # the caller's child
            os.write(in_w, b"\n")
            status, _ = _core.wait(pidfd)
            assert os.waitstatus_to_exitcode(status) == 0
        finally:
            os.close(pidfd)
            os.close(out_r)
            os.close(in_w)
    leak_check.assert_clean()


def test_exec_errors(rootfs, leak_check):
    with _container(rootfs) as c:
        _started(c)
        with pytest.raises(SpawnError) as info:
            _core.exec_(_exec_spec(c.pid, ["nosuch"]))
        assert (info.value.errno, info.value.op, info.value.path) == (errno.ENOENT, "exec", "nosuch")
        assert "nosuch" in str(info.value)
        with pytest.raises(SpawnError) as info:
            _core.exec_(_exec_spec(c.pid, ["true"], cwd="/no/such/dir"))
        assert (info.value.errno, info.value.op) == (errno.ENOENT, "chdir")
        start = proc_stat(c.pid)[2]
        with pytest.raises(SpawnError) as info:  # another process than the one meant
            _core.exec_(_exec_spec(c.pid, ["true"], start_time=start + 1))
        assert info.value.errno == errno.ESRCH
        code, out = run_exec(_exec_spec(c.pid, ["sh", "-c", "exit 4"], start_time=start))
        assert code == 4
        c.kill()
        c.wait()
        with pytest.raises(SpawnError) as info:  # exited (the pid may be reused: start time)
            _core.exec_(_exec_spec(c.pid, ["true"], start_time=start))
        assert info.value.errno == errno.ESRCH
    leak_check.assert_clean()


def test_exec_into_a_user_namespace(rootfs, leak_check):
    with _container(rootfs, uidmap=[(0, 100000, 65536)], gidmap=[(0, 100000, 65536)]) as c:
        _started(c)
        code, out = run_exec(_exec_spec(c.pid, ["sh", "-c", "id -u; cat /proc/self/uid_map; touch /tmp/x; stat -c %u /tmp/x"]))
        assert code == 0, out
        lines = out.split()
        assert lines == ["0", "0", "100000", "65536", "0"]
    leak_check.assert_clean()


def _cgroup_dirs(name):
    """[(kind, directory)] of new cgroups: in the cgroup2 hierarchy and in the v1
    pids hierarchy, those this host has."""
    made = []
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(base, "cgroup.controllers")):
            made.append(("v2", os.path.join(base, name)))
            break
    v1 = "/sys/fs/cgroup/pids"
    if os.path.exists(os.path.join(v1, "cgroup.procs")) and not os.path.exists(os.path.join(v1, "cgroup.controllers")):
        made.append(("v1", os.path.join(v1, name)))
    for _, d in made:
        os.mkdir(d)
    return made


class _Cgroups:
    def __init__(self, dirfd, procs):
        self.dirfd, self.procs = dirfd, procs

    def spawn_fds(self):
        return self.dirfd, self.procs

    def close_fds(self):
        pass  # the test closes them


def test_exec_joins_the_cgroups(rootfs, leak_check):
    made = _cgroup_dirs(f"pyrt-tests-exec-{os.getpid()}")
    if not made:
        pytest.skip("no cgroup hierarchy")
    fds = []
    try:
        dirfd, procs = -1, []
        for kind, d in made:
            if kind == "v2":
                dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                fds.append(dirfd)
            else:
                procs.append(os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC))
                fds.append(procs[-1])
        with _container(rootfs, cgroup=_Cgroups(dirfd, procs)) as c:
            _started(c)
            out_r, out_w = os.pipe()
            in_r, in_w = os.pipe()
            spec = _exec_spec(c.pid, ["sh", "-c", "cat /proc/self/cgroup; echo; cat /proc/1/cgroup; echo; read x"],
                              stdio=(in_r, out_w, -1), cgroup_fd=dirfd, cgroup_procs_fds=procs)
            pid, pidfd = _core.exec_(spec)
            os.close(in_r)
            os.close(out_w)
            try:
                with open(out_r, "rb", closefd=False) as f:
                    inside = [line.decode().strip() for line in iter(f.readline, b"\n")]
                    inside_pid1 = [line.decode().strip() for line in iter(f.readline, b"\n")]
                with open(f"/proc/{pid}/cgroup") as f:
                    outside = f.read().splitlines()
                with open(f"/proc/{c.pid}/cgroup") as f:
                    container = f.read().splitlines()
                os.write(in_w, b"\n")
                status, _ = _core.wait(pidfd)
            finally:
                os.close(pidfd)
                os.close(out_r)
                os.close(in_w)
            c.kill()
            c.wait()
        assert outside == container
        assert inside == inside_pid1  # the same cgroups, seen from the same cgroup namespace
        for kind, d in made:
            name = "/" + os.path.basename(d)
            if kind == "v2":
                assert "0::" + name in outside
            else:
                assert any(l.endswith(":pids:" + name) for l in outside)
    finally:
        for fd in fds:
            os.close(fd)
        errors = []
        for _, d in made:
            try:
                _rmdir_cgroup(d)
            except OSError as e:
                errors.append(e)
        if errors:
            raise errors[0]
    leak_check.assert_clean()


def test_exec_into_a_monitored_container(rootfs, tmp_shm, leak_check):
    spec = build_spec(["sh", "-c", "echo ready; exec sleep 1000"], rootfs, hostname="detached")
    with monitored(spec, tmp_shm) as m:
        # by its pidfd alone (pid 0: the pidfd's)
        code, out = run_exec(_exec_spec(0, ["sh", "-c", "hostname; echo in >&2"], pidfd=m.cfd))
        assert (code, out) == (0, "detached\nin\n")
        m.kill(signal.SIGKILL)
        assert m.wait()["ExitCode"] == 137
    leak_check.assert_clean()


# -- --init ---------------------------------------------------------------------------

def test_without_init_the_program_is_pid_1(rootfs, leak_check):
    r = pyrt.run(["sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo"], rootfs, capture_output=True,
                 text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "1"
    assert r.stdout.splitlines()[1].startswith("sh -c echo $$")
    leak_check.assert_clean()


def test_init_is_pid_1(rootfs, leak_check):
    r = pyrt.run(["sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/status"], rootfs,
                 capture_output=True, text=True, init=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "2"
    assert lines[1].split()[0] == "pyrt-init"
    # pyrt-init is small (statically linked C, no Python)
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", r.stdout).group(1))
    assert rss < 4096
    leak_check.assert_clean()


@pytest.mark.parametrize("init", [True, False])
def test_orphans_do_not_stay_zombies(rootfs, init, leak_check):
    """Three orphans (`sleep 999` whose parent subshell exited) are re-parented to
    pid 1; the test kills them. pyrt-init reaps them; without it, pid 1 is the
    program (`sleep 1000`), which never waits: they stay zombies."""
    script = "(sleep 999 &); (sleep 999 &); (sleep 999 &); echo ready; exec sleep 1000"
    with spawned(["sh", "-c", script], rootfs, stdout=pyrt.PIPE, init=init) as c:
        assert c.stdout.readline() == b"ready\n"
        # the subshells have exited, so their children are pid 1's already (and
        # exec sleep soon, if they have not yet)
        def sleepers():
            return {p for p in children_of(c.pid) if cmdline(p) == b"sleep\x00999\x00"}
        wait_until(lambda: len(sleepers()) == 3, "the orphans started")
        orphans = sleepers()
        if init:
            (program,) = children_of(c.pid) - orphans
        else:
            program = c.pid
        wait_until(lambda: cmdline(program) == b"sleep\x001000\x00", "the program exec'd")
        for p in orphans:
            os.kill(p, signal.SIGKILL)
        if init:
            wait_until(lambda: children_of(c.pid) == {program}, "the orphans reaped")
            assert proc_stat(program)[0] != "Z"
        else:
            wait_until(lambda: all(proc_stat(p)[0] == "Z" for p in orphans), "the orphans died")
            assert children_of(c.pid) == orphans  # zombies, not reaped
        c.kill()
        c.wait()
    leak_check.assert_clean()


def test_init_forwards_signals(rootfs, leak_check):
    script = 'trap "echo got TERM; exit 7" TERM; echo ready; sleep 1000 & wait'
    with spawned(["sh", "-c", script], rootfs, stdout=pyrt.PIPE, init=True) as c:
        assert c.stdout.readline() == b"ready\n"
        c.terminate()  # to pid 1, the init: forwarded to sh
        assert c.wait() == 7
        assert c.stdout.read() == b"got TERM\n"
    # without a trap, the program dies of it: 128 + 15
    with spawned(["sh", "-c", "echo ready; exec sleep 1000"], rootfs, stdout=pyrt.PIPE, init=True) as c:
        assert c.stdout.readline() == b"ready\n"
        c.terminate()
        assert c.wait() == 128 + signal.SIGTERM
    leak_check.assert_clean()


def test_init_exit_status(rootfs, leak_check):
    assert pyrt.run(["sh", "-c", "exit 42"], rootfs, init=True).returncode == 42
    assert pyrt.run(["sh", "-c", "kill -9 $$"], rootfs, init=True).returncode == 128 + 9
    with pytest.raises(SpawnError) as info:
        pyrt.run(["nosuch"], rootfs, init=True)
    assert (info.value.errno, info.value.op) == (errno.ENOENT, "exec")
    leak_check.assert_clean()


def test_init_in_a_user_namespace_and_a_monitored_container(rootfs, tmp_shm, leak_check):
    r = pyrt.run(["sh", "-c", "echo $$; id -u"], rootfs, capture_output=True, text=True, init=True,
                 uidmap=[(0, 100000, 65536)], gidmap=[(0, 100000, 65536)])
    assert (r.returncode, r.stdout.split()) == (0, ["2", "0"]), r.stderr
    spec = build_spec(["sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline; exit 3"], rootfs, init=True)
    with monitored(spec, tmp_shm) as m:
        assert m.wait()["ExitCode"] == 3
    assert m.text("stdout").split()[:2] == [b"2", b"pyrt-init"]
    leak_check.assert_clean()
