"""The low-level API: thin, faithful wrappers of the Linux calls pyrt is built on.

Paths may be str, bytes or os.PathLike; flags are ints built from the constants of
this module (CLONE_*, MS_*, MNT_*, RESOLVE_*, FSCONFIG_*, MOUNT_ATTR_*, ...), whose
values come from the C headers. Calls return what the kernel returns (file
descriptors as ints, not made close-on-exec unless the flags ask for it). A failure
raises OSError, so the errno picks its subclass (FileNotFoundError, PermissionError,
...), with the path(s) involved as its filename and filename2. The GIL is released
during every call.
"""
from __future__ import annotations

import os

from pyrt._sys import ffi, lib

__all__ = [
    "unshare", "setns", "mount", "umount2", "umount", "pivot_root", "sethostname", "set_pdeathsig",
    "close_range", "openat2", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
]

# Every constant the cffi module read from the headers: CLONE_NEWNS, MS_BIND, ...
for _name in dir(lib):
    if _name.isupper():
        globals()[_name] = getattr(lib, _name)
        __all__.append(_name)
del _name


def _cstr(value, binary=False):
    """str/bytes/PathLike (or None) as the bytes a C string argument takes."""
    if value is None:
        return ffi.NULL
    data = os.fsencode(value)
    if not binary and b"\0" in data:
        raise ValueError("embedded null byte")
    return data


def _raise(err, *paths, message=None):
    """Raise OSError(errno, strerror, path, path2), naming the paths that are given."""
    names = [p for p in paths if p is not None and p != "" and p != b""]
    strerror = os.strerror(err) if message is None else f"{os.strerror(err)} ({message})"
    if len(names) >= 2:
        raise OSError(err, strerror, names[0], None, names[1])
    raise OSError(err, strerror, *names)


def _check(rc, *paths):
    if rc < 0:
        _raise(ffi.errno, *paths)
    return rc


def _fs_context_log(fd):
    """Drain the messages the kernel logged on an fs context fd ("e tmpfs: ...")."""
    try:
        if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[fscontext]":
            return None
    except OSError:
        return None
    lines = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # ENODATA: the log is empty
            break
        if not data:
            break
        line = data.decode(errors="replace").strip()
        lines.append(line[2:] if line[1:2] == " " else line)
    return "; ".join(lines) or None


def _check_fc(rc, fd, *paths):
    if rc < 0:
        err = ffi.errno
        _raise(err, *paths, message=_fs_context_log(fd))
    return rc


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (CLONE_NEW*) or unshare CLONE_FILES/FS."""
    _check(lib.unshare(flags))


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace (or, for a pidfd, the namespaces) that fd refers to."""
    _check(lib.setns(fd, nstype))


def mount(source, target, fstype=None, flags: int = 0, data=None) -> None:
    """mount(2). An error names the target, and the source too for MS_BIND and MS_MOVE."""
    rc = lib.mount(_cstr(source), _cstr(target), _cstr(fstype), flags, _cstr(data))
    if rc < 0:
        if flags & (lib.MS_BIND | lib.MS_MOVE):
            _raise(ffi.errno, source, target)
        _raise(ffi.errno, target)


def umount2(target, flags: int = 0) -> None:
    """umount2(2): unmount target, with MNT_DETACH, MNT_FORCE, MNT_EXPIRE, UMOUNT_NOFOLLOW."""
    _check(lib.umount2(_cstr(target), flags), target)


umount = umount2


def pivot_root(new_root, put_old) -> None:
    """pivot_root(2): make new_root the root and move the old root to put_old."""
    _check(lib.pyrt_pivot_root(_cstr(new_root), _cstr(put_old)), new_root, put_old)


def sethostname(name) -> None:
    """sethostname(2), for the UTS namespace of the caller."""
    data = _cstr(name)
    _check(lib.sethostname(data, len(data)))


def set_pdeathsig(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG): the caller gets sig when its parent thread ends."""
    _check(lib.prctl(lib.PR_SET_PDEATHSIG, ffi.cast("unsigned long", sig)))


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2): close (or, with CLOSE_RANGE_CLOEXEC, mark) fds first..last (2**32-1 = all)."""
    _check(lib.pyrt_close_range(first, last, flags))


def openat2(dirfd: int, path, flags: int = 0, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open path relative to dirfd under the RESOLVE_* rules; returns an fd."""
    how = ffi.new("struct pyrt_open_how *", {"flags": flags, "mode": mode, "resolve": resolve})
    return _check(lib.pyrt_openat2(dirfd, _cstr(path), how, ffi.sizeof(how[0])), path)


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2): an fd (close-on-exec) that refers to process pid."""
    return _check(lib.pyrt_pidfd_open(pid, flags))


def pidfd_send_signal(pidfd: int, sig: int, flags: int = 0) -> None:
    """pidfd_send_signal(2): send sig to the process pidfd refers to."""
    _check(lib.pyrt_pidfd_send_signal(pidfd, sig, ffi.NULL, flags))


def pidfd_getfd(pidfd: int, targetfd: int, flags: int = 0) -> int:
    """pidfd_getfd(2): a duplicate (close-on-exec) of fd targetfd of another process."""
    return _check(lib.pyrt_pidfd_getfd(pidfd, targetfd, flags))


def fsopen(fsname, flags: int = lib.FSOPEN_CLOEXEC) -> int:
    """fsopen(2): a filesystem context fd for fsname ("tmpfs", "overlay", ...)."""
    return _check(lib.pyrt_fsopen(_cstr(fsname), flags), fsname)


def fsconfig(fd: int, cmd: int, key=None, value=None, aux: int = 0) -> None:
    """fsconfig(2): set a parameter (FSCONFIG_SET_*) or create/reconfigure (FSCONFIG_CMD_*).

    value is a str/bytes/PathLike for SET_STRING and SET_PATH*, bytes for SET_BINARY
    (aux defaults to its length), None for SET_FLAG, SET_FD (aux is the fd) and the
    commands. An error names the value (else the key) and carries the kernel's log
    of the context in its strerror."""
    binary = cmd == lib.FSCONFIG_SET_BINARY
    cvalue = _cstr(value, binary=binary)
    if binary and value is not None and not aux:
        aux = len(cvalue)
    rc = lib.pyrt_fsconfig(fd, cmd, _cstr(key), cvalue, aux)
    _check_fc(rc, fd, key if binary or value is None else value)


def fsmount(fd: int, flags: int = lib.FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    """fsmount(2): a detached mount fd of the created context fd, with MOUNT_ATTR_* attr_flags."""
    return _check_fc(lib.pyrt_fsmount(fd, flags, attr_flags), fd)


def fspick(dirfd: int, path, flags: int) -> int:
    """fspick(2): a context fd (FSPICK_*) to reconfigure the superblock mounted at path."""
    return _check(lib.pyrt_fspick(dirfd, _cstr(path), flags), path)


def move_mount(from_dirfd: int, from_path, to_dirfd: int, to_path, flags: int = 0) -> None:
    """move_mount(2): attach or move a mount (MOVE_MOUNT_F_EMPTY_PATH for a mount fd)."""
    rc = lib.pyrt_move_mount(from_dirfd, _cstr(from_path), to_dirfd, _cstr(to_path), flags)
    _check(rc, from_path, to_path)


def open_tree(dirfd: int, path, flags: int) -> int:
    """open_tree(2): an O_PATH fd of path, or of a detached copy with OPEN_TREE_CLONE."""
    return _check(lib.pyrt_open_tree(dirfd, _cstr(path), flags), path)


def mount_setattr(dirfd: int, path, flags: int = 0, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    """mount_setattr(2): change MOUNT_ATTR_* and propagation (MS_*) of a mount (AT_RECURSIVE)."""
    attr = ffi.new("struct pyrt_mount_attr *", {
        "attr_set": attr_set, "attr_clr": attr_clr,
        "propagation": propagation, "userns_fd": userns_fd})
    rc = lib.pyrt_mount_setattr(dirfd, _cstr(path), flags, attr, ffi.sizeof(attr[0]))
    _check(rc, path)
