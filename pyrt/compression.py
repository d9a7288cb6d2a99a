"""The compressions layers and image archives come in: which one a stream uses, from
its first bytes, and a reader that decompresses it as a stream.

gzip goes through ISA-L (python-isal, about 2.5x faster than zlib) when it is
installed; zstd needs the zstandard package. Both are imported on first use, not
with this module: the CLI starts without them, and a test can hide them.

(Compressing lives with the one code that writes layers: pyrt.store.commit.)"""
from __future__ import annotations

__all__ = ["HEAD_SIZE", "CHUNK", "sniff", "gzip_backend", "open_reader", "read_chunks"]

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
    raise ValueError(f"unsupported compression {kind!r}")


def read_chunks(f, kind: str, size: int = CHUNK):
    """Yields the decompressed bytes of `f` in chunks of at most `size` bytes."""
    reader = open_reader(f, kind, size)
    while True:
        chunk = reader.read(size)
        if not chunk:
            return
        yield chunk
