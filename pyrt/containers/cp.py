"""Copying files in and out of containers: `pyrt cp`, and the docker SDK's
`get_archive` and `put_archive`.

A container's files are reached through its root: /proc/PID/root while it runs
(what its processes see, volumes included), else a private mount of its overlay
that is attached nowhere (fsmount: in no mount namespace, gone with its fd), or
the root directory of the copy driver. Every path inside is resolved in that root
(openat2 RESOLVE_IN_ROOT: a symlink to /etc means the container's /etc), and trees
are walked with directory fds, never by path, so a container that swaps a
directory for a symlink meanwhile cannot lead a copy onto the host's files.
Archives are plain tars (no whiteouts); what comes in is unpacked by the C
unpacker, confined to the destination directory. Device nodes are not copied
out of a container."""
from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import threading

from pyrt import _core, sys as psys
from pyrt.containers import lifecycle
from pyrt.errors import Conflict, InvalidArgument
from pyrt.launch.mounts import mount_overlay
from pyrt.oci.image import rfc3339

CHUNK = 1 << 20
SPOOL = 16 << 20  # a get_archive tar kept in memory up to this size


# -- the root of a container ------------------------------------------------------------

@contextlib.contextmanager
def container_root(container):
    """An O_PATH fd of the container's root directory, for the copy's duration."""
    if isinstance(container, _Held):
        with _open_root(container.held) as fd:
            yield fd
        return
    with _held_root(container) as held:
        with _open_root(held) as fd:
            yield fd


@contextlib.contextmanager
def _held_root(container):
    """What the copy's root is, held for its duration: ("fd", an fd of the running
    container's /proc/PID/root, a pidfd of its init for a fuse-overlayfs one), or the container's root when it does not run
    ("dir", path), ("overlay", Overlay, a scratch dir) or ("fuse", the keeper of a
    fuse-overlayfs union of its own), its start mark taken."""
    st = container.reload().state
    if st.get("Status") in ("running", "paused") and lifecycle.alive(st):
        fd = os.open(f"/proc/{st['Pid']}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        pidfd = None
        try:
            # a fuse-overlayfs root answers only its own user namespace: the container's
            pidfd = lifecycle.pidfd(st) if container._fuse() else None
            if lifecycle.start_time(st["Pid"]) != st.get("StartTime") or (container._fuse() and pidfd is None):
                raise Conflict(f"container {container.name} stopped during the copy")  # the pid was reused
            yield ("fd", fd, pidfd)
        finally:
            os.close(fd)
            if pidfd is not None:
                os.close(pidfd)
        return
    mark = container._take_start_mark()  # it must not start on a root we have mounted
    try:
        root = container._rootfs()
        if container._fuse():  # its union, by a keeper of the copy's own (pyrt.launch.fuse)
            from pyrt.launch.fuse import wait_released
            wait_released(container.dir, what=f"container {container.name}")
            keeper = container._start_keeper()
            try:
                yield ("fuse", keeper)
            finally:
                keeper.close()
        elif isinstance(root, str):
            yield ("dir", root)
        else:
            scratch = container._c.store.mkdtemp("cp-")
            try:
                yield ("overlay", root, scratch)
            finally:
                os.rmdir(scratch)
    finally:
        lifecycle.end_start_mark(container.dir, mark)


@contextlib.contextmanager
def _open_root(held):
    """An O_PATH fd of a held root (the overlay mounted nowhere: closing the fd
    unmounts it)."""
    if held[0] == "fd":
        yield held[1]
        return
    if held[0] == "dir":
        fd = os.open(held[1], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    elif held[0] == "fuse":  # (in an in_userns child) the keeper's mount namespace
        held[1].enter()
        fd = os.open(held[1].merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        root, scratch = held[1], held[2]
        fd = mount_overlay(root.lowerdirs, root.upperdir, root.workdir, root.options, scratch=scratch)
    try:
        yield fd
    finally:
        os.close(fd)


def _as_root_of_userns(fn):
    """For an ordinary user: fn(container, ...) runs as root of its user namespace
    (pyrt.launch.userns.in_userns), on the root held here (a running container's
    /proc/PID/root is opened before: the child may not reach it), so that what it
    reads and writes keeps the container's owners."""
    import functools

    @functools.wraps(fn)
    def wrapper(container, *args, **kwargs):
        if os.geteuid() == 0:
            return fn(container, *args, **kwargs)
        from pyrt.launch.userns import in_userns, in_userns_of
        with _held_root(container) as held:
            if held[0] == "fd" and held[2] is not None:
                return in_userns_of(held[2], fn, _Held(held), *args, **kwargs)
            return in_userns(fn, _Held(held), *args, **kwargs)
    return wrapper


class _Held:
    """Stands for a container whose root is already held (in an in_userns child)."""

    def __init__(self, held):
        self.held = held


def resolve(rootfd: int, path: str, follow: bool = True, flags: int = os.O_PATH) -> int:
    """An fd of `path` inside the root (symlinks resolved in it; the last one only
    when `follow`)."""
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        return psys.openat2(rootfd, path or "/", flags | os.O_CLOEXEC, 0,
                            psys.RESOLVE_IN_ROOT | psys.RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        raise FileNotFoundError(2, "no such file or directory in the container", path) from None


# -- tars of trees, walked by fd ----------------------------------------------------------

SETID = stat.S_ISUID | stat.S_ISGID


def write_tree(out, fd: int, arcname: str, *, devices: bool = True, setid: bool = True) -> None:
    """A tar of the entry behind the O_PATH fd (and what is below it, for a
    directory) named `arcname` (`.`: its children at the top) into the binary
    file `out`. Owners, modes, times, symlinks and hard links kept;
    `setid=False` clears the setuid and setgid bits (for a copy whose owner
    changes on the way, as cp does: a setuid file of uid 1000 must not become
    a setuid file of root)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, fd, arcname, {}, devices, 0 if setid else SETID)


def _reopen(fd: int, flags: int) -> int:
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


def _add(tar, fd, arcname, hardlinks, devices, clear=0):
    st = os.fstat(fd)
    ti = tarfile.TarInfo(arcname)
    ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime
    ti.mode &= ~clear
    ti.uname = ti.gname = ""
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
        tar.addfile(ti)
        dfd = _reopen(fd, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in sorted(os.listdir(dfd)):
                child = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    _add(tar, child, name if arcname == "." else f"{arcname}/{name}", hardlinks, devices,
                         clear)
                finally:
                    os.close(child)
        finally:
            os.close(dfd)
    elif kind == stat.S_IFREG:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in hardlinks:
            ti.type, ti.linkname = tarfile.LNKTYPE, hardlinks[key]
            tar.addfile(ti)
            return
        hardlinks[key] = arcname
        with os.fdopen(_reopen(fd, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            ti.size = os.fstat(f.fileno()).st_size
            tar.addfile(ti, f)
    elif kind == stat.S_IFLNK:
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=fd)
        tar.addfile(ti)
    elif kind == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
        tar.addfile(ti)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK) and devices:
        ti.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(ti)
    # sockets (and devices, when not wanted) have no place in a copy


def unpack_into(dirfd: int, source, *, owners: bool = True) -> None:
    """Unpacks a plain tar (bytes or a binary file object) into the directory fd,
    confined to it; `owners=False` makes everything the caller's."""
    u = _core.Unpacker(dirfd, whiteouts=False, chown=owners, detect_holes=False)
    if isinstance(source, (bytes, bytearray, memoryview)):
        u.feed(source)
    else:
        while True:
            chunk = source.read(CHUNK)
            if not chunk:
                break
            u.feed(chunk)
    u.finish()


def _piped(write) -> "os.PathLike":
    """Runs write(out) in a thread into a pipe; returns the reading end (a file)."""
    r, w = os.pipe()
    failure = []

    def run():
        try:
            with os.fdopen(w, "wb") as out:
                write(out)
        except BaseException as e:  # the reader sees a short tar, then this
            failure.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    reader = os.fdopen(r, "rb")
    reader.writer_failure, reader.writer_thread = failure, t
    return reader


def _finish_pipe(reader) -> None:
    reader.close()
    reader.writer_thread.join()
    if reader.writer_failure:
        raise reader.writer_failure[0]


# -- what the SDK and the CLI call --------------------------------------------------------

def stat_of(fd: int, name: str) -> dict:
    """docker's path stat: name, size, mode (Go's FileMode bits), mtime, linkTarget."""
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        mode |= 1 << 31
    elif stat.S_ISLNK(st.st_mode):
        mode |= 1 << 27
    link = os.readlink("", dir_fd=fd) if stat.S_ISLNK(st.st_mode) else ""
    return {"name": name, "size": st.st_size, "mode": mode, "mtime": rfc3339(st.st_mtime), "linkTarget": link}


def get_archive(container, path: str, follow: bool = False):
    """A tar of `path` in the container (named by its last component), as a binary
    file positioned at its start (in memory up to SPOOL bytes, then in a temp file:
    the container's root is held only while it is written), and its stat. (An
    ordinary user's is written by a child: always to a temp file.)"""
    import tempfile
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL) if os.geteuid() == 0 else tempfile.TemporaryFile()
    try:
        info = _write_archive(container, path, follow, out)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, info


@_as_root_of_userns
def _write_archive(container, path, follow, out):
    name = os.path.basename(path.rstrip("/")) or "/"
    with container_root(container) as root:
        fd = resolve(root, path, follow=follow)
        try:
            info = stat_of(fd, name)
            write_tree(out, fd, name if name != "/" else ".", devices=False)
        finally:
            os.close(fd)
    out.flush()
    return info


@_as_root_of_userns
def put_archive(container, path: str, data) -> bool:
    """Unpacks a tar into the directory `path` of the container (which must exist)."""
    with container_root(container) as root:
        fd = resolve(root, path, flags=os.O_RDONLY | os.O_DIRECTORY)
        try:
            unpack_into(fd, data)
        finally:
            os.close(fd)
    return True


def _target(parent_exists_dir, dest_is_dir, dest_exists, src_is_dir, src_contents, src_name, dest):
    """docker cp's naming: (directory to unpack into, name of the copy in it)."""
    base = os.path.basename(dest.rstrip("/"))
    if dest_exists and dest_is_dir:
        return dest, "." if src_contents else src_name
    if dest_exists and src_is_dir:
        raise InvalidArgument(f"cannot copy a directory to a file: {dest}")
    if not dest_exists and dest.endswith("/") and not src_is_dir:
        raise InvalidArgument(f"the destination directory {dest} must exist")
    if not parent_exists_dir:
        raise FileNotFoundError(2, "no such directory", os.path.dirname(dest.rstrip("/")) or "/")
    return os.path.dirname(dest.rstrip("/")) or "/", base


def _source_name(path: str) -> tuple[bool, str]:
    """(whether `path` means a directory's contents ("DIR/."), the copy's name)."""
    contents = path.endswith("/.") or path == "."
    base = path[:-2] if path.endswith("/.") else path
    return contents, os.path.basename(os.path.normpath(base)) if base.strip("/") else "root"


@_as_root_of_userns
def copy_out(container, src: str, dest: str, *, follow: bool = False, archive: bool = False) -> None:
    """`pyrt cp CONTAINER:SRC DEST` (DEST "-": a tar on stdout). Paths in the
    container are from its root."""
    import sys
    src_contents, src_name = _source_name(src)
    if dest != "-":
        dest = os.path.abspath(dest) + ("/" if dest.endswith("/") else "")
    with container_root(container) as root:
        fd = resolve(root, src, follow=follow)
        try:
            if dest == "-":
                write_tree(sys.stdout.buffer, fd, "." if src_contents else src_name, devices=False)
                return
            src_is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            dest_is_dir, dest_exists = os.path.isdir(dest), os.path.lexists(dest)
            parent = os.path.dirname(os.path.abspath(dest.rstrip("/"))) or "/"
            into, name = _target(os.path.isdir(parent), dest_is_dir, dest_exists, src_is_dir, src_contents,
                                 src_name, dest)
            _transfer(fd, name, os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
                      owners=archive, devices=False)
        finally:
            os.close(fd)


@_as_root_of_userns
def copy_in(container, src: str, dest: str, *, archive: bool = False) -> None:
    """`pyrt cp SRC CONTAINER:DEST` (SRC "-": a tar on stdin, unpacked into DEST)."""
    import sys
    with container_root(container) as root:
        if src == "-":
            dfd = resolve(root, dest, flags=os.O_RDONLY | os.O_DIRECTORY)
            try:
                unpack_into(dfd, sys.stdin.buffer)
            finally:
                os.close(dfd)
            return
        src_contents, src_name = _source_name(os.path.abspath(src) + ("/." if src.endswith("/.") else ""))
        sfd = os.open(src, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            src_is_dir = stat.S_ISDIR(os.fstat(sfd).st_mode)
            dest_st = _lstat_in(root, dest)
            parent_st = _lstat_in(root, os.path.dirname(dest.rstrip("/")) or "/")
            into, name = _target(parent_st is not None and stat.S_ISDIR(parent_st.st_mode),
                                 dest_st is not None and stat.S_ISDIR(dest_st.st_mode), dest_st is not None,
                                 src_is_dir, src_contents, src_name, dest)
            _transfer(sfd, name, resolve(root, into, flags=os.O_RDONLY | os.O_DIRECTORY), owners=archive)
        finally:
            os.close(sfd)


def _transfer(src_fd: int, name: str, dest_dir_fd: int, *, owners: bool, devices: bool = True) -> None:
    """The tree behind src_fd, named `name`, unpacked into the directory fd (which
    this closes): a tar written in a thread, unpacked as it comes. Without
    `owners` the copy is the caller's, and loses its setuid and setgid bits."""
    try:
        reader = _piped(lambda out: write_tree(out, src_fd, name, devices=devices, setid=owners))
        try:
            unpack_into(dest_dir_fd, reader, owners=owners)
        finally:
            _finish_pipe(reader)
    finally:
        os.close(dest_dir_fd)


def _lstat_in(root: int, path: str):
    """The stat of `path` in the root (its symlinks followed in the root), or None."""
    try:
        fd = resolve(root, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)
