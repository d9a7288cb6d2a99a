"""Running containers without a daemon: the mechanics behind Container.start,
stop, kill, wait, restart (state files, start marks, signals, the monitor); the log
is logs.py's, exec and top are processes.py's.

A detached container is watched by its own small C monitor (pyrt-monitor, see
csrc/monitor.c): it holds the container's stdout/stderr and writes them to
containers/<id>/ctr.log, reaps it and writes containers/<id>/exit.json. Any pyrt
process learns the true state from those files and the container's pid (checked
against its start time, so a reused pid is never taken for the container)."""
from __future__ import annotations

import os
import signal as _signal
import sys
import time

from pyrt import _core, sys as psys
from pyrt._core import read_exit_record
from pyrt.errors import Conflict, InvalidArgument

EXIT_FILE = "exit.json"
LOG_FILE = "ctr.log"
ATTACH_SOCKET = "attach.sock"  # a detached container's monitor listens there (csrc/monitor.h)
RUN_FILE = "run.json"          # with a restart policy: the monitor's record of the current run
STOP_FILE = "stopping"         # stopped by hand: the monitor does not restart it
START_MARK = "starting"


def start_time(pid: int) -> int:
    """The process's start time (clock ticks after boot), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    if fields[0] == b"Z":
        return 0
    return int(fields[19])


def alive(state: dict) -> bool:
    pid = state.get("Pid") or 0
    return pid > 0 and start_time(pid) == state.get("StartTime", -1)


def pidfd(state: dict) -> int | None:
    """A pidfd of the container's init, or None when it has exited."""
    pid = state.get("Pid") or 0
    if pid <= 0:
        return None
    try:
        fd = psys.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if start_time(pid) != state.get("StartTime", -1):  # the pid is someone else's now
        os.close(fd)
        return None
    return fd


def parse_signal(sig) -> int:
    if isinstance(sig, int):
        return sig
    text = str(sig).upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(getattr(_signal, name))
    except AttributeError:
        raise InvalidArgument(f"invalid signal {sig!r}") from None


def send_signal(state: dict, sig) -> bool:
    """Signal the container's init through a pidfd; False when it has exited."""
    fd = pidfd(state)
    if fd is None:
        return False
    try:
        psys.pidfd_send_signal(fd, parse_signal(sig))
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def wait_exit(state: dict, timeout: float | None) -> bool:
    """Wait until the container's init has exited; False on timeout."""
    return _wait_gone(pidfd(state), timeout)


def _wait_gone(fd: int | None, timeout: float | None) -> bool:
    """Wait until the process behind the pidfd (closed here) has exited; None: it has."""
    import select
    if fd is None:
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return bool(p.poll(None if timeout is None else max(0, timeout) * 1000))
    finally:
        os.close(fd)


def read_exit(cdir: str, wait: float = 0.0) -> dict | None:
    """The monitor's exit record; waits up to `wait` seconds for it to appear (the
    monitor writes it just after the container ends)."""
    path = os.path.join(cdir, EXIT_FILE)
    deadline = time.monotonic() + wait
    while True:
        rec = read_exit_record(path)
        if rec is not None or time.monotonic() >= deadline:
            return rec
        time.sleep(0.002)


def take_start_mark(cdir: str, wait: float = 0.0, what: str = "the container") -> tuple[int, bool]:
    """Lock the container's start mark, containers/<id>/starting: a file that exists,
    locked, while a pyrt process starts the container (or removes it), so that a
    starter killed midway leaves a trace later processes can resolve. Returns (fd,
    abandoned): `abandoned` when the mark was there already, unlocked: left by a
    process that died while starting the container. Waits up to `wait` s while
    another process holds it, then raises Conflict. end_start_mark releases it."""
    import fcntl
    path = os.path.join(cdir, START_MARK)
    deadline = time.monotonic() + wait
    while True:
        try:
            fd, existed = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW), True
        except FileNotFoundError:
            try:
                fd, existed = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                                      0o600), False
            except FileExistsError:
                continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise Conflict(f"{what} is being started or removed by another pyrt process") from None
            time.sleep(0.005)
            continue
        if _same_file(path, fd):  # not removed by its previous holder meanwhile
            return fd, existed
        os.close(fd)


def abandoned_start(cdir: str) -> int | None:
    """The start mark's fd, locked, when a pyrt process died while starting the
    container (the mark is there and nobody holds it); None otherwise."""
    import fcntl
    path = os.path.join(cdir, START_MARK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # being started right now
        os.close(fd)
        return None
    if not _same_file(path, fd):
        os.close(fd)
        return None
    return fd


def end_start_mark(cdir: str, fd: int | None) -> None:
    if fd is None:
        return
    try:
        os.unlink(os.path.join(cdir, START_MARK))
    except FileNotFoundError:
        pass
    os.close(fd)


def _same_file(path: str, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)


def find_init(pids) -> int | None:
    """The container's init among the pids of its cgroup: PID 1 of its pid namespace."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        if line.split()[-1] == "1" and len(line.split()) > 2:
                            return pid
                        break
        except OSError:
            continue
    return None


def started_at(pid: int) -> float | None:
    """When the process started (seconds since the epoch), from its start time."""
    ticks = start_time(pid)
    if not ticks:
        return None
    try:
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def parent_pid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def clear_exit(cdir: str) -> None:
    try:
        os.unlink(os.path.join(cdir, EXIT_FILE))
    except FileNotFoundError:
        pass


def start_detached(container, spec, cgroup) -> dict:
    """Start the container under its monitor; returns its new state."""
    cdir = container.dir
    clear_exit(cdir)
    exit_argv = None
    if container.config.get("AutoRemove"):
        exit_argv = [sys.executable, "-P", "-m", "pyrt.cli.main", "--root", container._c.store.root, "-q",
                     "rm", "-f", "-v", container.id]
    logs = container.config.get("LogConfig") or {}
    policy = container.config.get("RestartPolicy") or {}
    for name in (RUN_FILE, STOP_FILE):
        try:
            os.unlink(os.path.join(cdir, name))
        except FileNotFoundError:
            pass
    fds = cgroup.spawn_fds() if cgroup is not None else (-1, [])
    usernet = getattr(container, "_usernet", None)
    try:
        spec.cgroup_fd, spec.cgroup_procs_fds = fds
        cpid, mpid = _core.monitor_start(spec, os.path.join(cdir, LOG_FILE), os.path.join(cdir, EXIT_FILE),
                                         oom_path=cgroup.oom_path if cgroup is not None else None,
                                         exit_argv=exit_argv, tty=bool(container.config.get("Tty")),
                                         attach_path=os.path.join(cdir, ATTACH_SOCKET),
                                         ports=[(p["HostIp"], p["HostPort"], p["ContainerPort"])
                                                for p in container.config.get("Ports", [])
                                                # on a network the kernel forwards them (CNI portmap)
                                                if container.config.get("NetworkMode", "none") == "none"],
                                         log_max_size=logs.get("MaxSize", 0), log_max_files=logs.get("MaxFiles", 1),
                                         restart=(policy["Name"], policy.get("MaximumRetryCount", 0))
                                         if policy.get("Name", "no") != "no" else None,
                                         run_path=os.path.join(cdir, RUN_FILE), stop_path=os.path.join(cdir, STOP_FILE),
                                         # slirp4netns (pyrt.network.usermode) ends with the monitor
                                         hold_fd=usernet.exit_fd if usernet is not None else -1)
    finally:
        if cgroup is not None:
            cgroup.close_fds()
    return {"Status": "running", "Pid": cpid, "StartTime": start_time(cpid), "MonitorPid": mpid,
            "MonitorStartTime": start_time(mpid), "RestartCount": 0,
            "StartedAt": time.time(), "ExitCode": 0, "FinishedAt": None, "Detached": True,
            "Cgroup": cgroup is not None}


def exited_state(container) -> dict | None:
    """If the container (marked running or paused) has ended, its exited state."""
    st = container.state
    if st.get("Status") not in ("running", "paused"):
        return None
    rec = read_exit(container.dir) if st.get("Detached") else None
    if rec is None:
        if alive(st):
            return None
        restarted = current_run(container)
        if restarted is not None:
            return restarted
        rec = read_exit(container.dir, wait=0.5) if st.get("Detached") else None
    new = dict(st, Status="exited", Pid=0)
    run = _read_run(container)
    if run:
        new["RestartCount"] = run.get("RestartCount", 0)
    if rec is not None:
        new.update(ExitCode=rec.get("ExitCode", 0), OOMKilled=bool(rec.get("OOMKilled")),
                   FinishedAt=rec.get("FinishedAt") or time.time())
    else:  # its runner or monitor was killed: the status is unknown
        new.update(ExitCode=st.get("ExitCode") or 137, FinishedAt=time.time())
    return new


def monitor_alive(state: dict) -> bool:
    pid = state.get("MonitorPid") or 0
    return pid > 0 and start_time(pid) == state.get("MonitorStartTime", -1)


def current_run(container) -> dict | None:
    """For a container with a restart policy whose recorded init has ended while
    its monitor goes on: its state with the monitor's current run (a new init), or
    as it is while the monitor waits to restart it. None otherwise."""
    st = container.state
    policy = (container.config.get("RestartPolicy") or {}).get("Name", "no")
    if policy == "no" or not monitor_alive(st):
        return None
    run = _read_run(container)
    if run is None:
        return dict(st)
    new = {"Pid": run.get("Pid", 0), "StartTime": run.get("StartTime", 0)}
    if alive(new):
        return dict(st, **new, RestartCount=run.get("RestartCount", 0))
    return dict(st, RestartCount=run.get("RestartCount", 0))  # between two runs


def _read_run(container) -> dict | None:
    import json
    try:
        with open(os.path.join(container.dir, RUN_FILE)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def wait_monitor(state: dict, timeout: float | None) -> bool:
    """Wait until a detached container's monitor has ended (after its exit record);
    False on timeout."""
    if not monitor_alive(state):
        return True
    try:
        fd = psys.pidfd_open(state["MonitorPid"])
    except ProcessLookupError:
        return True
    return _wait_gone(fd, timeout)


def mark_stopped(container) -> None:
    """Stopped by hand: its monitor does not restart it."""
    if (container.config.get("RestartPolicy") or {}).get("Name", "no") != "no":
        with open(os.path.join(container.dir, STOP_FILE), "w"):
            pass
