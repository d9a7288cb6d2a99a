"""What a container's filesystem is made of: an overlay root, binds, tmpfs."""
from __future__ import annotations

import os
from pyrt import _core, sys as psys
from pyrt.errors import InvalidArgument, SyscallError


def _path(p) -> bytes:
    return os.fsencode(os.fspath(p))


def _absolute(target, what: str) -> bytes:
    t = _path(target)
    if not t.startswith(b"/"):
        raise InvalidArgument(f"{what} destination must be an absolute path: {os.fsdecode(t)!r}")
    return t


class _Value:
    """Equality and repr from the constructor's fields (plain classes keep
    `import pyrt` and the CLI quick to start)."""

    __slots__ = ()

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __hash__(self):
        return hash(tuple(str(getattr(self, f)) for f in self.__slots__))

    def __repr__(self):
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Overlay(_Value):
    """A root made of read-only layers (top-most first) and an optional writable
    upper dir with its work dir (same filesystem as the upper dir); `options` are
    extra overlay mount options, e.g. ("volatile",)."""

    __slots__ = ("lowerdirs", "upperdir", "workdir", "options")

    def __init__(self, lowerdirs, upperdir=None, workdir=None, options=()):
        self.lowerdirs = list(lowerdirs)
        self.upperdir, self.workdir, self.options = upperdir, workdir, tuple(options)
        if not self.lowerdirs:
            raise InvalidArgument("an overlay needs at least one lower dir")
        if (self.upperdir is None) != (self.workdir is None):
            raise InvalidArgument("an overlay upperdir needs a workdir, and the reverse")


class Bind(_Value):
    """Bind a host file or directory at `target` inside the container."""

    __slots__ = ("source", "target", "readonly")

    def __init__(self, source, target, readonly=False):
        self.source, self.target, self.readonly = source, target, readonly

    def to_c(self):
        src = os.path.abspath(os.fspath(self.source))
        if not os.path.exists(src):
            raise FileNotFoundError(2, "bind source does not exist", src)
        flags = _core.MNT_RDONLY if self.readonly else 0
        return (_core.MOUNT_BIND, flags, _path(src), _absolute(self.target, "bind"), None)


class Tmpfs(_Value):
    """A fresh tmpfs at `target`. `size` in bytes or with a suffix ("64m");
    `mode` as an int (0o1777 by default); `options` flags like nosuid, nodev,
    noexec, ro, or other tmpfs options."""

    __slots__ = ("target", "size", "mode", "readonly", "options")

    def __init__(self, target, size=None, mode=None, readonly=False, options=("nosuid", "nodev")):
        self.target, self.size, self.mode, self.readonly, self.options = target, size, mode, readonly, tuple(options)

    def to_c(self):
        opts = [f"mode={self.mode if self.mode is not None else 0o1777:o}"]
        if self.size is not None:
            opts.append(f"size={self.size}")
        flags = _core.MNT_RDONLY if self.readonly else 0
        for o in self.options:
            bit = {"nosuid": _core.MNT_NOSUID, "nodev": _core.MNT_NODEV, "noexec": _core.MNT_NOEXEC,
                   "ro": _core.MNT_RDONLY}.get(o)
            if bit is None:
                opts.append(o)
            else:
                flags |= bit
        return (_core.MOUNT_TMPFS, flags, None, _absolute(self.target, "tmpfs"), ",".join(opts).encode())


def to_c(mounts) -> list:
    """C mount tuples, parents before children (sorted by destination depth)."""
    out = [m.to_c() for m in mounts]
    out.sort(key=lambda m: os.path.normpath(m[3]).count(b"/"))
    return out


def mount_overlay(lowerdirs, upperdir=None, workdir=None, options=(), attrs=0, *, scratch) -> int:
    """An overlay mounted nowhere: a mount fd (move_mount attaches it; closing an
    unattached one unmounts it). Layers top-most first; without an upper dir the
    union is read-only and needs two layers at least. From 6.8 on, one "lowerdir+"
    per layer. Before, a value given to fsconfig holds 256 bytes at most, so the
    overlay is mounted with mount(2) on `scratch` (an empty directory of the
    caller's), each layer named by a short /proc/self/fd path so that about 200 fit
    in its one-page option limit, then cloned and unmounted again."""
    from pyrt.launch.userns import overlay_options, rootless
    if rootless():  # an ordinary user's store, in its user namespace
        options = overlay_options(list(options))
    if _has_lowerdir_plus():
        return _overlay_fsmount([("lowerdir+", os.fspath(d)) for d in lowerdirs], upperdir, workdir,
                                options, attrs)
    fds = []
    try:
        for d in lowerdirs:
            fds.append(os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        data = "lowerdir=" + ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        if upperdir is not None:
            data += f",upperdir={os.fspath(upperdir)},workdir={os.fspath(workdir)}"
        data += "".join("," + o for o in options)
        if len(data) >= 4096:
            raise SyscallError(7, f"mount overlay ({len(fds)} layers: more than this kernel's "
                                  "one-page mount options hold)", os.fspath(scratch))
        flags = psys.MS_RDONLY if attrs & psys.MOUNT_ATTR_RDONLY else 0
        psys.mount("overlay", scratch, "overlay", flags, data)
        try:
            return psys.open_tree(psys.AT_FDCWD, scratch, psys.OPEN_TREE_CLONE | psys.OPEN_TREE_CLOEXEC)
        finally:
            psys.umount2(scratch, psys.MNT_DETACH)
    finally:
        for fd in fds:
            os.close(fd)


def _has_lowerdir_plus() -> bool:
    """By the version, as csrc/mounts.c decides it (a refused try logs a kernel line)."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (6, 8)


def _overlay_fsmount(lower, upperdir, workdir, options, attrs) -> int:
    fs = psys.fsopen("overlay")
    try:
        # kernels before 6.5 (the generic mount context) refuse a mount with no source
        psys.fsconfig(fs, psys.FSCONFIG_SET_STRING, "source", "overlay")
        for key, value in lower:
            psys.fsconfig(fs, psys.FSCONFIG_SET_STRING, key, value)
        if upperdir is not None:
            psys.fsconfig(fs, psys.FSCONFIG_SET_STRING, "upperdir", os.fspath(upperdir))
            psys.fsconfig(fs, psys.FSCONFIG_SET_STRING, "workdir", os.fspath(workdir))
        for opt in options:
            key, eq, value = opt.partition("=")
            if eq:
                psys.fsconfig(fs, psys.FSCONFIG_SET_STRING, key, value)
            else:  # a flag (userxattr, volatile)
                psys.fsconfig(fs, psys.FSCONFIG_SET_FLAG, key)
        psys.fsconfig(fs, psys.FSCONFIG_CMD_CREATE)
        return psys.fsmount(fs, psys.FSMOUNT_CLOEXEC, attrs)
    finally:
        os.close(fs)
