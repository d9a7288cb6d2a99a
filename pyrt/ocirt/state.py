"""The state directory of `pyrt-runtime` (--root, default /run/pyrt-runtime): one
directory per container, which outlives every pyrt-runtime process.

    <root>/<id>/state.json   the record (written whole, atomically)
    <root>/<id>/exec.fifo    while created: `start` writes one byte to it and the
                             container's process, waiting on it, execs its program

A container's status is derived, never trusted from the record alone: its init
process (pid + start time, so a reused pid is never taken for it) alive or not,
started or not, its cgroup frozen or not.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat

from pyrt.errors import Conflict, ContainerNotFound, InvalidArgument
from pyrt.containers.lifecycle import start_time  # noqa: F401  (re-exported: the runtime uses both from here)
from pyrt.oci.image import rfc3339  # noqa: F401

DEFAULT_ROOT = "/run/pyrt-runtime"
STATE_FILE = "state.json"
FIFO = "exec.fifo"
_ID_RE = re.compile(r"^[\w+\-.]+$")


def check_id(cid: str) -> str:
    if not cid or not _ID_RE.match(cid) or cid in (".", ".."):
        raise InvalidArgument(f"invalid container id {cid!r}: use letters, digits and _ + - .")
    return cid


class Container:
    """One container's directory and record."""

    def __init__(self, root: str, cid: str):
        self.root, self.id = root, check_id(cid)
        self.dir = os.path.join(root, cid)
        self.rec: dict = {}
        self._lockfd = -1

    # -- files ----------------------------------------------------------------
    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    def create_dir(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            raise Conflict(f"container {self.id!r} already exists (in {self.root})") from None

    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.dir, STATE_FILE))

    def load(self) -> "Container":
        # O_NONBLOCK and O_NOFOLLOW: a FIFO or a symlink planted as the record is
        # refused at once (as the native pyrt-runtime does), never waited on or followed
        try:
            fd = os.open(os.path.join(self.dir, STATE_FILE),
                         os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise ContainerNotFound(f"container {self.id!r} does not exist (in {self.root})") from None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise Conflict(f"container {self.id!r}: broken state file: a symlink") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Conflict(f"container {self.id!r}: broken state file: not a regular file")
        try:
            with os.fdopen(fd, "rb") as f:
                rec = json.loads(f.read())
        except ValueError as e:
            raise Conflict(f"container {self.id!r}: broken state file: {e}") from None
        if not isinstance(rec, dict):
            raise Conflict(f"container {self.id!r}: broken state file: not a JSON object")
        self.rec = rec
        return self

    def save(self) -> None:
        path = os.path.join(self.dir, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.rec, f)
        os.replace(tmp, path)

    def lock(self) -> "Container":
        """An exclusive lock on the container (held until unlock or exit)."""
        try:
            self._lockfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(f"container {self.id!r} does not exist (in {self.root})") from None
        fcntl.flock(self._lockfd, fcntl.LOCK_EX)
        return self

    def unlock(self) -> None:
        if self._lockfd >= 0:
            os.close(self._lockfd)
            self._lockfd = -1

    def remove(self) -> None:
        import shutil
        self.unlock()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- status ---------------------------------------------------------------
    def alive(self) -> bool:
        pid = self.rec.get("pid") or 0
        return pid > 0 and start_time(pid) == self.rec.get("start_time", -1)

    def cgroup(self):
        """The container's Cgroup, or None."""
        name, parent = self.rec.get("cgroup_name"), self.rec.get("cgroup_parent")
        if not name:
            return None
        from pyrt.cgroups.cgroup import Cgroup, CgroupError
        try:
            return Cgroup.open(name, parent)
        except CgroupError:
            return None

    def status(self) -> str:
        st = self.rec.get("status")
        if st == "creating":
            return "creating"
        if not self.alive():
            return "stopped"
        if not self.rec.get("started"):
            return "created"
        cg = self.cgroup()
        if cg is not None:
            try:
                if cg.frozen():
                    return "paused"
            except OSError:
                pass
        return "running"

    def oci_state(self) -> dict:
        """The state as the runtime spec (and runc) give it."""
        status = self.status()
        return {
            "ociVersion": self.rec.get("oci_version", "1.1.0"),
            "id": self.id,
            "pid": self.rec.get("pid", 0) if status != "stopped" else 0,
            "status": status,
            "bundle": self.rec.get("bundle", ""),
            "rootfs": self.rec.get("rootfs", ""),
            "created": self.rec.get("created", ""),
            "owner": self.rec.get("owner", ""),
            "annotations": self.rec.get("annotations") or {},
        }

    def pidfd(self):
        """A pidfd of the container's init, or None when it has exited."""
        pid = self.rec.get("pid") or 0
        if pid <= 0:
            return None
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if start_time(pid) != self.rec.get("start_time", -1):
            os.close(fd)
            return None
        return fd


def list_containers(root: str) -> list:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            c = Container(root, name)
        except InvalidArgument:
            continue
        if c.exists():
            try:
                out.append(c.load())
            except (ContainerNotFound, Conflict):
                continue
    return out


def wait_exit(fd: int, timeout: float) -> bool:
    """Wait until the process behind the pidfd has exited; False on timeout."""
    import select
    p = select.poll()
    p.register(fd, select.POLLIN)
    try:
        return bool(p.poll(max(0, timeout) * 1000))
    except InterruptedError:
        return False


def write_pid_file(path: str, pid: int) -> None:
    """As runc: the pid, no newline, written to a temporary file then renamed. The
    temporary file has a random name and is created new (O_EXCL, O_NOFOLLOW): a
    file or symlink planted in the directory is never written through."""
    import secrets
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(pid))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

