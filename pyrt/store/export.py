"""A container's whole filesystem as one tar (`pyrt export`): the union of its
layers, as the container sees it."""
from __future__ import annotations

import os

from pyrt import _core, sys as psys
from pyrt.errors import PyrtError
from pyrt.launch.mounts import mount_overlay


def export_rootfs(fileobj, *, rootfs=None, lowers=None, upper=None, scratch=None):
    """Write a tar of `rootfs` (a plain directory), or of the overlay union of
    `upper` over `lowers` (top-most first), to the binary file `fileobj`. The
    overlay is mounted read-only at `scratch` in a private mount namespace of a
    short-lived child process, so nothing is mounted on the host."""
    fileobj.flush()
    fd = fileobj.fileno()
    if rootfs is not None:
        _core.write_layer(rootfs, fd, raw=True)
        return
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only system calls and the C writer
        try:
            os.close(r)
            psys.unshare(psys.CLONE_NEWNS)
            psys.mount(None, "/", None, psys.MS_REC | psys.MS_PRIVATE)
            mfd = mount_overlay([upper] + list(lowers), attrs=psys.MOUNT_ATTR_RDONLY, scratch=scratch)
            psys.move_mount(mfd, "", psys.AT_FDCWD, scratch, psys.MOVE_MOUNT_F_EMPTY_PATH)
            _core.write_layer(scratch, fd, raw=True)
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            try:
                os.write(w, f"export: {e}".encode(errors="replace")[:4000])
            finally:
                os._exit(1)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            message = f.read()
    finally:
        _, status = os.waitpid(pid, 0)
        os.rmdir(scratch)
    if status != 0:
        raise PyrtError(message.decode(errors="replace") or f"export failed (status {status})")


def export_merged(fileobj, keeper):
    """In a process that is root of the user's user namespace (an in_userns child):
    write a tar of the union a fuse-overlayfs keeper (pyrt.launch.fuse) holds."""
    fileobj.flush()
    keeper.enter()
    _core.write_layer(keeper.merged, fileobj.fileno(), raw=True)
