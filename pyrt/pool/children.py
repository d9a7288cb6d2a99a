"""The pool's children: parked containers (Child), the cgroups they run in, reused
one container after another (Slot), and the pyrt-zygote processes that park them
(Zygote)."""
from __future__ import annotations

import os
import threading

from pyrt import _core
from pyrt.cgroups.cgroup import Cgroup, layout
from pyrt.errors import PyrtError


_DEVNULL = None
_devnull_lock = threading.Lock()


def devnull() -> int:
    """One /dev/null fd for the whole process: the parked children's stdio."""
    global _DEVNULL
    if _DEVNULL is None:
        with _devnull_lock:
            if _DEVNULL is None:
                _DEVNULL = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _DEVNULL


def shared_device_cgroup(parent):
    """For a pool whose children need no cgroup each (no limits, not measured): one
    cgroup they all start in, for docker's device allow-list (pyrt.cgroups.devices).
    Made only where it is free to join (a cgroup2 hierarchy: the children are
    cloned into it) and by root; else None, and the children have no device
    restriction (as before). Returns (Cgroup, its spawn fds)."""
    if os.geteuid() != 0:
        return None
    if not layout().unified:
        return None
    try:
        cg = Cgroup.create("shared", parent=parent)
    except (OSError, PyrtError):
        return None
    try:
        return cg, cg.spawn_fds()
    except BaseException:
        cg.remove()
        raise


class Slot:
    """A cgroup of the pool with its accounting files and spawn fds open, used by
    one container after another (emptied, pinned and measured afresh each time):
    no mkdir and rmdir per container."""

    __slots__ = ("cg", "meter", "fds", "killed")

    def __init__(self, cg, meter, fds):
        self.cg, self.meter, self.fds = cg, meter, fds
        self.killed = False  # after cgroup.kill, the kernel kills what is cloned into it

    def remove(self):
        if self.meter is not None:
            self.meter.close()
            self.meter = None
        try:
            self.cg.remove()  # closes the spawn fds too
        except Exception:
            pass


class Child:
    __slots__ = ("pid", "pidfd", "sock", "errfd", "mntns", "park_usage", "slot", "done")

    def __init__(self, pid, pidfd, sock, errfd, park_usage, slot, mntns=-1):
        self.pid, self.pidfd, self.sock, self.errfd, self.mntns = pid, pidfd, sock, errfd, mntns
        self.park_usage, self.slot = park_usage, slot
        self.done = False

    @property
    def cgroup(self):
        return self.slot.cg if self.slot is not None else None

    @property
    def meter(self):
        return self.slot.meter if self.slot is not None else None

    def close_fds(self):
        """Close what the run needed (the mount namespace is dropped later, by
        finish())."""
        for name in ("sock", "errfd", "pidfd"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)

    def finish(self, recycle=None):
        """Drop the container's last traces: its mount namespace (the unmounting
        happens here, in the caller), then its cgroup: recycle(slot) keeps it for
        the next container when it returns True, else it is removed."""
        self.close_fds()
        if self.mntns >= 0:
            try:
                os.close(self.mntns)
            except OSError:
                pass
            self.mntns = -1
        slot, self.slot = self.slot, None
        if slot is not None and not (recycle is not None and recycle(slot)):
            slot.remove()

    def kill(self):
        if self.pidfd >= 0 and not self.done:
            try:
                _sys_pidfd_kill(self.pidfd)
            except OSError:
                pass


    def kill_container(self) -> None:
        """SIGKILL the container's first process (with a pid namespace, that ends
        them all) and, where the kernel has cgroup.kill, every process of its cgroup."""
        self.kill()
        cg = self.cgroup
        if cg is not None and cg.v2_dir:
            self.slot.killed = True
            try:
                with open(os.path.join(cg.v2_dir, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass

    def discard(self) -> None:
        """Kill (if need be), reap and forget a child; its cgroup is removed."""
        self.kill()
        if self.pidfd >= 0 and not self.done:
            try:
                _core.wait(self.pidfd)
            except OSError:
                pass
            self.done = True
        self.finish()

    def raise_exec_error(self) -> None:
        """Once the child is gone: the SpawnError it reported, if it did not exec."""
        try:
            data = os.read(self.errfd, _core.STATUS_RECORD_SIZE)
        except OSError:
            return
        if data:
            raise _core.parse_status(data)


def _sys_pidfd_kill(pidfd):
    import signal
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)


class Zygote:
    """A pyrt-zygote process and its control socket (one request at a time)."""

    __slots__ = ("pid", "sock", "lock")

    def __init__(self, pid, sock):
        self.pid, self.sock, self.lock = pid, sock, threading.Lock()

    def stop(self):
        with self.lock:
            sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()  # it exits at EOF
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass

    @classmethod
    def start(cls, spec, affinity=None):
        """Start a pyrt-zygote (when installed) parking children of `spec`: a small
        process that parks the children, so that no clone copies this (maybe big)
        Python process. affinity: the CPUs it (and so their setup) runs on."""
        path = os.fsdecode(_core._helper_path("pyrt-zygote"))
        if not os.access(path, os.X_OK):
            return None
        import socket
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        userns = None
        try:
            actions = [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)]
            actions += [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
            argv = [path, "3"]
            if getattr(spec, "userns_fd", -1) >= 0:  # an ordinary user's: it joins the namespace
                import fcntl
                userns = fcntl.fcntl(spec.userns_fd, fcntl.F_DUPFD_CLOEXEC, 10)  # not where 3 and 4 go
                actions.append((os.POSIX_SPAWN_DUP2, userns, 4))
                argv.append("4")
            pid = os.posix_spawn(path, argv, {}, file_actions=actions)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
            if userns is not None:
                os.close(userns)
        z = cls(pid, mine)
        try:
            if affinity:
                try:
                    os.sched_setaffinity(pid, affinity)  # its children set up off the pinned CPUs
                except OSError:
                    pass
            _core.zygote_send_spec(mine.fileno(), spec)
        except BaseException:
            z.stop()
            raise
        return z
