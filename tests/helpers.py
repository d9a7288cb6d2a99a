"""Helpers shared by pyrt's tests: building a test rootfs, looking at the state of
the test process (mounts, children, fds) and at directory trees.

Imported by tests/conftest.py and by test modules as `import helpers` (pytest puts
tests/ on sys.path for the conftest)."""
from __future__ import annotations

import gc
import hashlib
import os
import re
import shutil
import stat
import subprocess
import time

BUSYBOX = "/usr/bin/busybox"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
user:x:1000:
nogroup:x:65534:
"""

# Used by the tests; copied from the host when there is no busybox.
HOST_TOOLS = [
    "sh", "cat", "ls", "echo", "id", "touch", "sleep", "mkdir", "rm", "mv", "chmod", "chown", "ln", "hostname",
    "env", "pwd", "head", "wc", "grep", "stat", "ps", "kill", "true", "false", "tr", "sort",
]


# -- building a rootfs --------------------------------------------------------------

def _skeleton(root: str) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root",
              "home/user", "var", "srv", "opt"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.chmod(tmp, 0o1777)
    os.chown(os.path.join(root, "home/user"), 1000, 1000)
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write(GROUP)
    with open(os.path.join(root, "etc/hostname"), "w") as f:
        f.write("pyrt-test\n")


def _copy_libraries(root: str, binary: str) -> None:
    for lib in _libraries(binary):
        dest = os.path.join(root, lib.lstrip("/"))
        if not os.path.exists(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(os.path.realpath(lib), dest)


def _busybox_rootfs(root: str, busybox: str) -> None:
    shutil.copy2(busybox, os.path.join(root, "bin/busybox"))
    _copy_libraries(root, busybox)  # none for busybox-static
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for name in applets:
        if name == "busybox":  # the list names busybox itself: keep the binary
            continue
        link = os.path.join(root, "bin", name)
        if not os.path.lexists(link):
            os.symlink("busybox", link)


def _libraries(binary: str) -> list[str]:
    """Shared libraries of a binary (and its loader), from ldd."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if r.returncode != 0:  # static, or not a dynamic executable
        return []
    libs = []
    for line in r.stdout.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def _host_rootfs(root: str) -> None:
    for tool in HOST_TOOLS:
        path = shutil.which(tool)
        if path is None:
            continue
        shutil.copy2(os.path.realpath(path), os.path.join(root, "bin", tool))
        _copy_libraries(root, path)


def build_rootfs(root: str, use_busybox: bool = True) -> str:
    """A small rootfs at `root`: busybox-static when installed (and use_busybox),
    otherwise the host's /bin/sh and a few tools with their shared libraries.
    Returns "busybox" or "host"."""
    os.makedirs(root, exist_ok=True)
    _skeleton(root)
    if use_busybox and os.path.exists(BUSYBOX):
        _busybox_rootfs(root, BUSYBOX)
        return "busybox"
    _host_rootfs(root)
    return "host"


def copy_tree(src: str, dst: str) -> str:
    """Copy a tree keeping symlinks, modes and owners."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames + ["."]:
            s = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(s)
            d = os.path.join(dst, os.path.relpath(s, src))
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
    return dst


# -- the state of the test process ----------------------------------------------------

def mountinfo(pid="self") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return f.read().splitlines()


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points(lines) -> list[str]:
    """The mount points (5th field) of mountinfo lines."""
    return [_unescape(line.split()[4]) for line in lines]


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path` in this process's mount namespace."""
    path = os.path.realpath(path)
    return [m for m in mount_points(mountinfo()) if m == path or m.startswith(path.rstrip("/") + "/")]


def children(pid: int | None = None) -> set[int]:
    """Pids whose parent is `pid` (this process by default), zombies included."""
    pid = os.getpid() if pid is None else pid
    found = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    found.update(int(p) for p in f.read().split())
            except FileNotFoundError:
                pass  # thread exited
        return found
    except OSError:
        pass
    for entry in os.listdir("/proc"):  # no CONFIG_PROC_CHILDREN: scan
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


def open_fds() -> dict[int, str]:
    """This process's open fds and what they point to."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd of the listing itself, closed meanwhile
    return fds


class ProcessState:
    """A snapshot of the test process: mountinfo lines, children, open fds. Compare
    two with `leaks_since()` (or use the `leak_check` fixture)."""

    def __init__(self):
        gc.collect()  # unreferenced file objects close their fds
        self.mounts = mountinfo()
        self.children = children()
        self.fds = open_fds()

    def leaks_since(self, before: "ProcessState", fds: bool = True) -> dict:
        out = {}
        new_mounts = sorted(set(self.mounts) - set(before.mounts))
        if new_mounts:
            out["mounts"] = new_mounts
        new_children = sorted(self.children - before.children)
        if new_children:
            out["children"] = new_children
        if fds:
            new_fds = {fd: t for fd, t in self.fds.items() if before.fds.get(fd) != t}
            if new_fds:
                out["fds"] = new_fds
        return out


def reap(pids) -> None:
    """SIGKILL and reap leftover children (all started by this process)."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def detach_mounts_under(path: str) -> list[str]:
    """Lazily unmount everything at or below `path`, deepest first; returns them."""
    from pyrt._sys import lib
    found = mounts_under(path)
    for m in sorted(found, key=lambda p: p.count("/"), reverse=True):
        lib.umount2(os.fsencode(m), 2)  # MNT_DETACH
    return found


# -- directory trees ------------------------------------------------------------------

def tree_state(root: str) -> dict[str, tuple]:
    """Every entry below `root` (root included): type and mode, owner, and the
    sha256 of a file, the target of a symlink, the device number of a node, and
    the extended attributes."""
    out = {}

    def entry(path):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                payload = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            payload = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            payload = (os.major(st.st_rdev), os.minor(st.st_rdev))
        else:
            payload = None
        try:
            xattrs = tuple(sorted((k, os.getxattr(path, k, follow_symlinks=False))
                                  for k in os.listxattr(path, follow_symlinks=False)))
        except OSError:
            xattrs = ()
        return (st.st_mode, st.st_uid, st.st_gid, payload, xattrs)

    out["."] = entry(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = entry(p)
    return out


def is_whiteout(path: str) -> bool:
    """An overlayfs whiteout: a 0:0 character device."""
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def caps_of(status_text: str, field: str) -> int:
    """A capability mask (CapEff, CapPrm, ...) from /proc/PID/status text."""
    m = re.search(rf"^{field}:\s*([0-9a-f]+)$", status_text, re.M)
    assert m, f"no {field} in status"
    return int(m.group(1), 16)


class LeakCheck:
    """What the test process gained since `reset()` (or creation): new mountinfo
    lines, children (zombies included) and, optionally, fds."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.before = ProcessState()

    def leaks(self, fds: bool = True) -> dict:
        return ProcessState().leaks_since(self.before, fds=fds)

    def assert_clean(self, fds: bool = True) -> None:
        leaks = self.leaks(fds)
        assert not leaks, f"leaked since the snapshot: {leaks}"


def default_sigint() -> None:
    """preexec_fn for a child the test sends ^C (SIGINT) to: a test run started in the
    background inherits SIGINT ignored, which Python (and so pyrt) would keep."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- waiting ------------------------------------------------------------------------------------------

DEADLINE = 30.0  # seconds: never hang, never assert on time


def wait_for(pred, timeout=DEADLINE, what="a condition", interval=0.02, max_interval=None):
    """Poll `pred` until it returns something true (and return that); fail the test
    after `timeout` s (a bound, not a measurement). With `max_interval`, the interval
    doubles after each poll up to that."""
    import pytest
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)
        if max_interval is not None:
            interval = min(interval * 2, max_interval)
