"""Snapshots: each layer unpacked once, read-only, into `snapshots/<chain-id hex>/`.
A snapshot is unpacked into a temp dir under snapshots/ (`new_temp`) and renamed to
its name only when complete (`place`, inside the write transaction that records it)."""
from __future__ import annotations

import errno
import os
import stat

from pyrt.oci.digest import digest_hex

TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def rmtree(path: str) -> None:
    """Removes a tree whatever its modes (read-only dirs of an image, overlay whiteouts).
    An ordinary user's tree may hold directories of its subordinate ids, which only
    its user namespace's root can empty: what is left is removed there."""
    _rmtree(path)
    if os.geteuid() != 0 and os.path.lexists(path):
        from pyrt.launch.userns import in_userns
        in_userns(_rmtree, path)


def _rmtree(path: str) -> None:
    def onerror(func, p, exc_info):
        try:
            parent = os.path.dirname(p)
            os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | 0o700)
            if not os.path.islink(p) and os.path.isdir(p):
                os.chmod(p, 0o700)
            if func in (os.rmdir, os.unlink, os.remove):
                func(p)  # (an os.open or scandir that failed: the second pass goes in)
        except FileNotFoundError:
            pass
        except OSError:
            pass
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    import shutil  # here: opening the store (every command) does not need it (measured)
    shutil.rmtree(path, onerror=onerror)
    if os.path.lexists(path):  # a second pass after the chmods
        shutil.rmtree(path, ignore_errors=True)


def tree_size(path: str, disk: bool = False) -> int:
    """Bytes of the regular files of a tree (hardlinks counted once): their sizes, or
    with `disk` the space their blocks take."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512 if disk else st.st_size
    return total


class SnapshotStore:
    def __init__(self, root: str):
        self.dir = os.path.join(root, "snapshots")

    def path(self, chain_id: str) -> str:
        return os.path.join(self.dir, digest_hex(chain_id, "chain id"))

    def exists(self, chain_id: str) -> bool:
        return os.path.isdir(self.path(chain_id))

    def new_temp(self) -> str:
        """A fresh empty directory to unpack a layer into (0700)."""
        import tempfile
        return tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=self.dir)

    def place(self, temp_dir: str, chain_id: str):
        """Renames a complete temp snapshot to its name. An existing directory of that
        name (left by a crash before its row was recorded: the caller checks) is moved
        aside first and its path returned, for removal after the commit."""
        dest = self.path(chain_id)
        aside = None
        if os.path.lexists(dest):
            import tempfile
            aside = tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{os.getpid()}-", dir=self.dir)
            os.rename(dest, os.path.join(aside, "old"))
        os.rename(temp_dir, dest)
        return aside

    def remove(self, chain_id: str) -> None:
        """Removes a snapshot: renamed aside first (atomic), then deleted."""
        self.remove_dir(self.path(chain_id))

    def remove_dir(self, path: str) -> None:
        if not os.path.lexists(path):
            return
        aside = os.path.join(self.dir, f"{TRASH_PREFIX}{os.getpid()}-{os.urandom(6).hex()}")
        try:
            os.rename(path, aside)
        except OSError:
            aside = path
        rmtree(aside)

    def names(self):
        try:
            return [n for n in os.listdir(self.dir) if len(n) == 64 and not n.startswith(".")]
        except FileNotFoundError:
            return []


def lstat_beneath(layer: str, rel: str):
    """lstat of `rel` in the layer directory with no symlink followed on the way: a
    layer's symlinked parent (which may point anywhere on the host) is not a
    directory of the image, so it raises NotADirectoryError as a file would."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:  # never above the layer
        raise FileNotFoundError(errno.ENOENT, "no such file in the layer", os.path.join(layer, rel))
    if not parts:
        return os.lstat(layer)
    fd = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                nxt = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                if e.errno == errno.ELOOP:  # a symlink where a directory should be
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", os.path.join(layer, rel)) from None
                raise
            os.close(fd)
            fd = nxt
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)
