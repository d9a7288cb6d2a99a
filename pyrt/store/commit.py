"""Commit: a container's changes written as one OCI layer blob.

`write_layer_blob(upperdir, out_dir)` runs the C layer writer (csrc/tarwrite.c) in a
thread into a pipe, hashes the uncompressed tar (the layer's diff_id), compresses it,
hashes the compressed bytes (the blob's digest) and writes them to an fsync'd temp
file in out_dir, which the caller (the blob store) renames by digest.

Compression choice (gzip): one gzip stream at a fast level, from ISA-L (`isal`,
level 1) when installed, else zlib level 1. Compression, hashing of the tar and the
C writer each run in their own thread (all release the GIL), so on two cores the
work is pipelined rather than split in blocks like pigz: the cores are already busy,
and a single stream from one library keeps the same change giving the same digest
on every machine that has that library. `write_layer_blob_by_compare` does the same
for the `copy` storage driver, from a comparison of a rootfs with its image layers.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import tempfile
import threading

MEDIA_TYPE_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPES = {
    None: MEDIA_TYPE_TAR,
    "gzip": MEDIA_TYPE_TAR + "+gzip",
    "zstd": MEDIA_TYPE_TAR + "+zstd",
}
CHUNK = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

try:  # ISA-L: gzip at several hundred MB/s per core
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the host
    _isal_zlib = None


def gzip_backend() -> str:
    """The gzip implementation commit uses here: "isal" or "zlib"."""
    return "isal" if _isal_zlib is not None else "zlib"


def _gzip_compressor(level):
    if _isal_zlib is not None:
        lvl = 1 if level is None else max(0, min(int(level), 3))
        return _isal_zlib.compressobj(lvl, _isal_zlib.DEFLATED, 31)
    import zlib
    lvl = 1 if level is None else int(level)
    return zlib.compressobj(lvl, zlib.DEFLATED, 31)


class _Zstd:
    def __init__(self, level):
        try:
            import zstandard
        except ImportError as e:  # pragma: no cover - depends on the host
            raise RuntimeError("zstd compression needs the 'zstandard' package") from e
        self._c = zstandard.ZstdCompressor(level=3 if level is None else int(level),
                                           write_content_size=False).compressobj()
        self._finish = zstandard.COMPRESSOBJ_FLUSH_FINISH

    def compress(self, data):
        return self._c.compress(data)

    def flush(self):
        return self._c.flush(self._finish)


def _compressor(compression, level):
    if compression is None:
        return None
    if compression == "gzip":
        return _gzip_compressor(level)
    if compression == "zstd":
        return _Zstd(level)
    raise ValueError(f"unknown compression {compression!r} (gzip, zstd or None)")


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Worker(threading.Thread):
    """Runs fn(item) for every item put in its queue, in order; None ends it. The
    first exception is kept (and later items skipped) for the caller to raise."""

    def __init__(self, fn, depth=8):
        super().__init__(daemon=True)
        self.fn = fn
        self.q: queue.Queue = queue.Queue(depth)
        self.error: BaseException | None = None

    def run(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.fn(item)
                except BaseException as e:  # noqa: BLE001 - re-raised by the caller
                    self.error = e

    def put(self, item):
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def finish(self):
        """Ends the thread (after the queued items); the caller checks .error."""
        self.q.put(None)
        self.join()


def _run_writer(write, fd_holder: list, errors: list) -> None:
    """Thread body: the C writer into the pipe's write end, which it closes."""
    try:
        write(fd_holder[0])
    except BaseException as e:  # noqa: BLE001 - re-raised by the caller
        errors.append(e)
    finally:
        os.close(fd_holder[0])


def _stream_blob(write, out_dir, compression, level, progress):
    """Runs write(fd) (the C writer) in a thread into a pipe and turns its output
    into a blob temp file. Returns the result dict (see write_layer_blob)."""
    media_type = MEDIA_TYPES.get(compression)
    if media_type is None:
        raise ValueError(f"unknown compression {compression!r} (gzip, zstd or None)")
    comp = _compressor(compression, level)
    fd, path = tempfile.mkstemp(prefix=f"{os.getpid()}-commit-", suffix=".tmp", dir=out_dir)
    ok = False
    r = w = -1
    writer = None
    try:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:  # bigger pipe: fewer wake-ups between the writer and us
            fcntl.fcntl(w, _F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass
        errors: list = []
        holder = [w]
        writer = threading.Thread(target=_run_writer, args=(write, holder, errors),
                                  name="pyrt-commit-writer", daemon=True)
        writer.start()
        w = -1  # the writer thread owns it now

        diff_hash = hashlib.sha256()
        blob_hash = diff_hash if comp is None else hashlib.sha256()
        size = 0
        total = 0

        def out(data):
            nonlocal size
            if data:
                blob_hash.update(data)
                _write_all(fd, data)
                size += len(data)

        # The tar's hash in one thread, compression (+ its hash and the file
        # writes) in another, reading the pipe in this one.
        hasher = _Worker(diff_hash.update) if comp is not None else None
        sink = _Worker(lambda chunk: out(comp.compress(chunk))) if comp is not None else None
        for worker in (hasher, sink):
            if worker is not None:
                worker.start()
        pipe = open(r, "rb", buffering=0, closefd=False)
        try:
            while True:
                # Exactly CHUNK bytes a chunk (pipe reads return what is there):
                # compressors' output depends on how the input is cut.
                chunk = bytearray(CHUNK)
                view = memoryview(chunk)
                got = 0
                while got < CHUNK:
                    n = pipe.readinto(view[got:])
                    if not n:
                        break
                    got += n
                view.release()
                if not got:
                    break
                if got < CHUNK:
                    del chunk[got:]
                total += got
                if comp is None:
                    out(chunk)
                else:
                    hasher.put(chunk)
                    sink.put(chunk)
                if progress is not None:
                    progress(total)
        finally:
            os.close(r)  # a writer still writing gets EPIPE and stops
            r = -1
            writer.join()
            for worker in (hasher, sink):
                if worker is not None:
                    worker.finish()
        for worker in (hasher, sink):  # theirs first: the writer then only saw EPIPE
            if worker is not None and worker.error is not None:
                raise worker.error
        if errors:
            raise errors[0]
        if comp is not None:
            out(comp.flush())
        os.fsync(fd)
        ok = True
        return {
            "digest": "sha256:" + blob_hash.hexdigest(),
            "diff_id": "sha256:" + diff_hash.hexdigest(),
            "size": size,
            "uncompressed_size": total,
            "media_type": media_type,
            "path": path,
        }
    finally:
        if r >= 0:
            os.close(r)
        if w >= 0:
            os.close(w)
        os.close(fd)
        if not ok:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def write_layer_blob(upperdir, out_dir, *, compression="gzip", level=None, userxattr=False,
                     progress=None) -> dict:
    """Writes the overlay upper dir `upperdir` as an OCI layer blob in out_dir.

    compression: "gzip" (default), "zstd" or None; level: the compressor's level
    (gzip: isal 0-3 or zlib 1-9, default 1; zstd: default 3). progress, if given, is
    called with the number of uncompressed bytes written so far.

    Returns {"digest", "diff_id", "size", "uncompressed_size", "media_type", "path"}:
    `path` is an fsync'd temp file in out_dir holding the blob, for the caller to
    rename by digest (or remove)."""
    from pyrt._core import write_layer

    return _stream_blob(lambda fd: write_layer(upperdir, fd, userxattr=userxattr),
                        out_dir, compression, level, progress)


def write_entries_blob(rootdir, entries, out_dir, *, compression="gzip", level=None,
                       progress=None) -> dict:
    """Like write_layer_blob, for an explicit list of (path, kind) entries of the tree
    at rootdir (see pyrt._core.write_entries)."""
    from pyrt._core import write_entries

    entries = list(entries)
    return _stream_blob(lambda fd: write_entries(rootdir, entries, fd),
                        out_dir, compression, level, progress)


def write_layer_blob_by_compare(rootfs, lowerdirs, out_dir, *, compression="gzip",
                                level=None, content=True, progress=None) -> dict:
    """The `copy` storage driver's commit: the differences between the materialized
    rootfs and the image's layer dirs (lowerdirs, top-most first) as a layer blob.
    The comparison is done in Python (pyrt.store.changes.compare); the chosen
    entries are written by the C writer."""
    from .changes import compare_entries

    entries = compare_entries(rootfs, lowerdirs, content=content)
    return write_entries_blob(rootfs, entries, out_dir, compression=compression,
                              level=level, progress=progress)


__all__ = ["write_layer_blob", "write_entries_blob", "write_layer_blob_by_compare",
           "gzip_backend", "MEDIA_TYPES", "MEDIA_TYPE_TAR"]
