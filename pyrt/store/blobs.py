"""Content-addressed blobs: `blobs/sha256/<hex>`, whose name is always the sha256 of
their bytes. A blob enters the store by being streamed into a temp file while its
digest and size are computed, checked against what was expected, fsync'd, then renamed
(`BlobStore.place`, done by the caller inside a write transaction)."""
from __future__ import annotations

import os

from pyrt.errors import ImageFormatError, SyscallError
from pyrt.oci.digest import digest_hex, validate_digest

CHUNK = 1 << 20


class StagedBlob:
    """A blob written to a temp file (`path`, until placed). A plain class, not a
    dataclass: importing dataclasses (inspect, ast, dis) costs every `pyrt` command
    that opens the store more than the rest of its imports (measured)."""
    __slots__ = ("digest", "size", "path")

    def __init__(self, digest: str, size: int, path: str):
        self.digest, self.size, self.path = digest, size, path

    def __eq__(self, other):
        return type(other) is StagedBlob and (self.digest, self.size, self.path) == (
            other.digest, other.size, other.path)

    __hash__ = None

    def __repr__(self):
        return f"StagedBlob(digest={self.digest!r}, size={self.size!r}, path={self.path!r})"


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: str):
        self.dir = os.path.join(root, "blobs", "sha256")

    def path(self, digest: str) -> str:
        return os.path.join(self.dir, digest_hex(digest))

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        return os.stat(self.path(digest)).st_size

    def open(self, digest: str):
        return open(self.path(digest), "rb")

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    # -- writing ----------------------------------------------------------------------

    def write(self, src, tmp_dir: str, *, expected_digest: str | None = None,
              expected_size: int | None = None, what: str = "blob") -> StagedBlob:
        """Streams `src` (bytes, a binary file object or a path) into a temp file under
        `tmp_dir`, checking its sha256 and size against the expected ones (when given);
        raises ImageFormatError on a mismatch, leaving nothing behind."""
        if expected_digest is not None:
            validate_digest(expected_digest, f"digest of {what}")
        fd_path = None
        fd = -1
        import hashlib  # here: only writing hashes (measured: importing it loads OpenSSL)
        import tempfile
        fd, fd_path = tempfile.mkstemp(prefix="blob-", dir=tmp_dir)
        ok = False
        try:
            h = hashlib.sha256()
            size = 0
            limit = None if expected_size is None else expected_size + 1
            if isinstance(src, (bytes, bytearray, memoryview)):
                data = bytes(src)
                h.update(data)
                size = len(data)
                _write_all(fd, data, what, self.dir)
            else:
                close = False
                if isinstance(src, (str, os.PathLike)):
                    src = open(src, "rb")
                    close = True
                try:
                    buf = bytearray(CHUNK)
                    view = memoryview(buf)
                    while True:
                        want = CHUNK if limit is None else min(CHUNK, limit - size)
                        if want <= 0:
                            break
                        n = _readinto(src, view[:want])
                        if not n:
                            break
                        h.update(view[:n])
                        _write_all(fd, view[:n], what, self.dir)
                        size += n
                finally:
                    if close:
                        src.close()
            digest = "sha256:" + h.hexdigest()
            if expected_size is not None and size != expected_size:
                more = " or more" if size > expected_size else ""
                raise ImageFormatError(f"wrong size for {what}: the descriptor says {expected_size} "
                                       f"bytes, got {size}{more}")
            if expected_digest is not None and digest != expected_digest:
                raise ImageFormatError(f"digest mismatch for {what}: expected {expected_digest}, "
                                       f"got {digest}")
            try:
                os.fsync(fd)
            except OSError as e:
                raise SyscallError(e.errno, f"write {what}", self.dir) from None
            ok = True
            return StagedBlob(digest, size, fd_path)
        finally:
            os.close(fd)
            if not ok:
                try:
                    os.unlink(fd_path)
                except OSError:
                    pass

    def place(self, staged: StagedBlob) -> bool:
        """Renames a staged blob to its name. Returns False (and drops the temp file) if
        the store already has it."""
        dest = self.path(staged.digest)
        if os.path.isfile(dest) and os.path.getsize(dest) == staged.size:
            os.unlink(staged.path)
            return False
        os.rename(staged.path, dest)
        return True

    def sync(self):
        _fsync_dir(self.dir)

    def remove(self, digest: str) -> int:
        """Deletes a blob; returns the bytes freed (0 if it was not there)."""
        p = self.path(digest)
        try:
            size = os.stat(p).st_size
            os.unlink(p)
            return size
        except FileNotFoundError:
            return 0

    def digests(self):
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return ["sha256:" + n for n in names if len(n) == 64]


def _readinto(f, view) -> int:
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        n = readinto(view)
        return n or 0
    data = f.read(len(view))
    view[:len(data)] = data
    return len(data)


def _write_all(fd, data, what="blob", path=""):
    """Writes all of data; a failure (a full disk, ...) is the SyscallError of
    writing `what` to `path`."""
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as e:
        raise SyscallError(e.errno, f"write {what}", path) from None
