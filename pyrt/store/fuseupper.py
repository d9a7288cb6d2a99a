"""A fuse-overlayfs container's upper dir in the form the kernel's overlay gives
it, so that its diff, commit, save and push are the layer the `overlay` driver
would have made of the same changes.

fuse-overlayfs (in a user namespace) writes whiteouts as the kernel does (0:0
character devices) but marks a directory opaque three ways at once: the xattr
`user.fuseoverlayfs.opaque=y`, a regular file `.wh..wh..opq` and a 0:0 device
`.wh..opq` in it; and it marks every directory it makes, where the kernel marks
only one made over something of the image's (a whiteout). `normalize` removes
the three markers, and sets `user.overlay.opaque=y` (what the kernel sets for an
ordinary user, and what fuse-overlayfs reads back) where the image's union has
something at the directory's path; a whiteout over nothing of the image's is
dropped (the kernel makes none). The directories keep their times.

`snapshot` is for a running container: a copy of its upper dir whose files are
hard links (its directories are made anew, so normalizing them leaves the
container's untouched), walked by directory fds so that a container that swaps a
directory for a symlink meanwhile cannot lead the walk out of its upper dir.

Both run as root of the user's user namespace (pyrt.launch.userns.in_userns):
the files belong to its subordinate ids."""
from __future__ import annotations

import os
import stat

from pyrt.store.changes import _union

OPAQUE_XATTR = "user.fuseoverlayfs.opaque"
OPAQUE_FILE = ".wh..wh..opq"
OPAQUE_DEVICE = ".wh..opq"
KERNEL_OPAQUE = "user.overlay.opaque"
MARKS = (OPAQUE_FILE, OPAQUE_DEVICE)


def _xattr(path, name):
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _marked(path, names) -> bool:
    """Has fuse-overlayfs marked the directory opaque?"""
    if _xattr(path, OPAQUE_XATTR) == b"y":
        return True
    for name, st in names.items():
        if name == OPAQUE_FILE and stat.S_ISREG(st.st_mode):
            return True
        if name == OPAQUE_DEVICE and _is_whiteout(st):
            return True
    return False


def _entries(path) -> dict:
    out = {}
    with os.scandir(path) as it:
        for e in it:
            try:
                out[e.name] = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                pass
    return out


def normalize(upper: str, lowers) -> int:
    """Rewrite fuse-overlayfs's opaque markers of `upper` (over `lowers`, top-most
    first) in the kernel's form, in place; returns how many entries it changed."""
    changed = 0

    def walk(path, stack):
        nonlocal changed
        names = _entries(path)
        below = _union(stack, True) if stack else {}
        dir_st = os.lstat(path)
        touched = False
        for mark in MARKS:
            st = names.pop(mark, None)
            if st is not None and (stat.S_ISREG(st.st_mode) or _is_whiteout(st)):
                os.unlink(os.path.join(path, mark))
                touched = True
                changed += 1
        for name, st in names.items():
            child = os.path.join(path, name)
            low = below.get(name)
            if _is_whiteout(st):
                if low is None:  # a whiteout of nothing: the kernel makes none
                    os.unlink(child)
                    touched = True
                    changed += 1
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            sub = _entries(child)
            if _marked(child, sub):
                try:
                    os.removexattr(child, OPAQUE_XATTR, follow_symlinks=False)
                except OSError:
                    pass
                if low is not None:  # made over something of the image's: opaque, as the kernel's
                    os.setxattr(child, KERNEL_OPAQUE, b"y", follow_symlinks=False)
                changed += 1
            opaque = _xattr(child, KERNEL_OPAQUE) == b"y"
            walk(child, [] if opaque or low is None or not low.is_dir else low.stack)
        if touched:
            os.utime(path, ns=(dir_st.st_atime_ns, dir_st.st_mtime_ns), follow_symlinks=False)

    root_entries = _entries(upper)
    if _marked(upper, root_entries):  # the root itself: never opaque in the kernel's form
        try:
            os.removexattr(upper, OPAQUE_XATTR, follow_symlinks=False)
        except OSError:
            pass
    walk(upper, [os.fspath(p) for p in lowers])
    return changed


def snapshot(upper: str, dest: str) -> None:
    """`dest` (not there yet): the tree of `upper`, directories made anew (owner,
    mode, xattrs and times kept), everything else hard-linked."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    src = os.open(upper, flags)
    try:
        _copy_dir(src, None, dest, os.fstat(src))
    finally:
        os.close(src)


def _copy_dir(src_fd, parent_fd, name, st):
    """Make `name` (in parent_fd, or a path when parent_fd is None) as the dir src_fd."""
    os.mkdir(name, 0o700, dir_fd=parent_fd)
    dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        with os.scandir(src_fd) as it:
            entries = list(it)
        for e in entries:
            try:
                est = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(est.st_mode):
                try:
                    sfd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=src_fd)
                except (FileNotFoundError, NotADirectoryError, OSError):
                    continue  # gone or swapped meanwhile
                try:
                    _copy_dir(sfd, dfd, e.name, os.fstat(sfd))
                finally:
                    os.close(sfd)
            else:
                try:
                    os.link(e.name, e.name, src_dir_fd=src_fd, dst_dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
        for key in os.listxattr(src_fd):
            try:
                os.setxattr(dfd, key, os.getxattr(src_fd, key))
            except OSError:
                pass
        os.chown(dfd, st.st_uid, st.st_gid)
        os.chmod(dfd, stat.S_IMODE(st.st_mode))
        os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(dfd)


def in_kernel_form(fn, upper, lowers, scratch, live, *args, **kwargs):
    """fn(the upper dir in the kernel's form, *args, **kwargs): `upper` normalized
    in place (a stopped container's), or a normalized snapshot of it made in
    `scratch` (`live`: a running container's)."""
    path = upper
    if live:
        path = os.path.join(scratch, "upper")
        snapshot(upper, path)
    normalize(path, lowers)
    return fn(path, *args, **kwargs)
