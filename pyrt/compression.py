"""The compressions layers and image archives come in: which one a stream uses, from
its first bytes, and a reader that decompresses it as a stream.

gzip goes through ISA-L (python-isal, about 2.5x faster than zlib) when it is
installed; zstd needs the zstandard package. Both are imported on first use, not
with this module: the CLI starts without them, and a test can hide them.

(Compressing lives with the one code that writes layers: pyrt.store.commit.)"""
from __future__ import annotations

import io

from pyrt.errors import InvalidArgument

__all__ = ["HEAD_SIZE", "CHUNK", "sniff", "read_head", "Prefixed", "gzip_backend", "open_reader",
           "read_chunks"]

#: how many first bytes sniff() looks at
HEAD_SIZE = 6
#: the read size of the decompressors (and of read_chunks)
CHUNK = 1 << 20

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def sniff(head: bytes) -> str:
    """The compression of a stream from its first HEAD_SIZE bytes: "gzip", "zstd",
    "bzip2", "xz", or "" (none of them: a plain tar, or not an archive at all)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return ""


def read_head(f, n: int = HEAD_SIZE) -> bytes:
    """The first n bytes of a stream, fewer only at its end (a pipe may return less
    than asked): what sniff() looks at. Put them back in front with Prefixed."""
    head = b""
    while len(head) < n:
        data = f.read(n - len(head))
        if not data:
            break
        head += data
    return head


class Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already (to sniff it, from a pipe that
    cannot seek back): `head`, then the rest of `f`. Counts the bytes read and calls
    progress(count) with each read, when given."""

    def __init__(self, head, f, progress=None):
        self._f = f
        self._head = head
        self._progress = progress
        self.count = 0
        self._readinto = getattr(f, "readinto", None)

    def readable(self):
        return True

    def readinto(self, b):
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
        elif self._readinto is not None:
            n = self._readinto(b) or 0
        else:
            data = self._f.read(len(b))
            n = len(data)
            b[:n] = data
        if n:
            self.count += n
            if self._progress is not None:
                self._progress(self.count)
        return n


def gzip_backend() -> str:
    """The gzip decompressor open_reader uses here: "isal" or "zlib"."""
    try:
        import isal.igzip  # noqa: F401
        return "isal"
    except ImportError:
        return "zlib"


def open_reader(f, kind: str, read_size: int = CHUNK):
    """A binary file object reading the decompressed bytes of `f` (a binary file
    object; not closed with the reader). kind: a name sniff() returns; "" and "tar"
    give `f` itself. Multi-member gzip and multi-frame zstd streams are read to
    their end. Raises ImportError naming the package a zstd stream needs, and
    ValueError for an unknown kind."""
    if kind in ("", "tar"):
        return f
    if kind == "gzip":
        try:
            from isal import igzip
            return igzip.IGzipFile(fileobj=f, mode="rb")
        except ImportError:
            import gzip
            return gzip.GzipFile(fileobj=f, mode="rb")
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise ImportError("zstd needs the zstandard package (pip install zstandard)",
                              name="zstandard") from None
        return zstandard.ZstdDecompressor().stream_reader(f, read_size=read_size,
                                                          read_across_frames=True, closefd=False)
    if kind == "bzip2":
        import bz2
        return bz2.BZ2File(f)
    if kind == "xz":
        import lzma
        return lzma.LZMAFile(f)
    raise InvalidArgument(f"unsupported compression {kind!r}")


def read_chunks(f, kind: str, size: int = CHUNK):
    """Yields the decompressed bytes of `f` in chunks of at most `size` bytes."""
    reader = open_reader(f, kind, size)
    while True:
        chunk = reader.read(size)
        if not chunk:
            return
        yield chunk
