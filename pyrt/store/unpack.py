"""Unpack OCI layer blobs (tar, tar+gzip, tar+zstd) into snapshot directories.

The tar itself is parsed and written by the C core (``pyrt._core.Unpacker``,
csrc/unpack.c): every path is resolved inside the destination, hostile names are
rejected, whiteouts become overlayfs whiteouts. This module detects the
compression, decompresses as a stream, computes the diff_id (sha256 of the
uncompressed tar) on the way and checks it.

The destination should be a fresh, empty directory: the caller unpacks into a
temporary directory next to the snapshot's final place and renames it when
unpack_layer() returns, or removes it when it raises (a rejected or mismatching
layer leaves a partial tree behind; nothing outside the directory is written).

    diff_id, size = unpack_layer(blob_path, tmpdir, media_type=..., expected_diff_id=...)
"""
import hashlib
import os
import queue
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from pyrt import compression
from pyrt.compression import gzip_backend
from pyrt.errors import LayerError
from pyrt._core import Unpacker

__all__ = ["unpack_layer", "unpack_layers_parallel", "detect_compression", "gzip_backend",
           "DEFAULT_MAX_STREAM_BYTES"]

#: the uncompressed tar may be this long at most (a gzip or zstd bomb stops here)
DEFAULT_MAX_STREAM_BYTES = 64 << 30
#: bytes handed to the C unpacker at a time
CHUNK = 1 << 20
#: buffers in flight between the reading, unpacking and hashing threads
NBUFS = 6

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_PLAIN_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/x-tar",
)


def detect_compression(media_type=None, head=b""):
    """"gzip", "zstd" or "tar": from the media type's suffix when it has one, else
    from the first bytes of the blob."""
    if media_type:
        mt = media_type.lower()
        if mt.endswith(("+gzip", ".tar.gzip", "tar+gz")):
            return "gzip"
        if mt.endswith("+zstd"):
            return "zstd"
        if not mt.endswith(".tar") and mt not in _PLAIN_TYPES:
            raise LayerError(f"layer: unsupported media type {media_type!r}")
        # a plain tar type: docker archives sometimes hold compressed "layer.tar"
        # files, so the content decides
    kind = compression.sniff(head)
    return kind if kind in ("gzip", "zstd") else "tar"


def _decompressing_reader(kind, raw):
    try:
        return compression.open_reader(raw, kind, CHUNK)
    except ImportError as e:
        raise LayerError(f"layer: {e}") from None


class _Cancelled(Exception):
    pass


class _Known:
    """Stands for the sha256 of a plain blob whose digest was verified before."""

    def __init__(self, digest):
        self._hex = digest.split(":", 1)[1]

    def update(self, data):
        pass

    def hexdigest(self):
        return self._hex


def _read_chunk(reader, buf, kind):
    """readinto, with the decompressors' errors turned into LayerError."""
    try:
        return reader.readinto(buf)
    except LayerError:
        raise
    except EOFError as e:  # gzip: the stream ends before its end-of-stream marker
        raise LayerError(f"layer: truncated {kind} stream ({e})") from e
    except Exception as e:
        # gzip.BadGzipFile / isal errors are OSErrors, zlib.error, zstandard.ZstdError
        if kind == "tar" and isinstance(e, OSError) and not isinstance(e, LayerError):
            raise LayerError(f"layer: reading the blob: {e}") from e
        if isinstance(e, (OSError, ValueError)) or type(e).__name__ in ("error", "ZstdError",
                                                                         "IsalError"):
            raise LayerError(f"layer: invalid {kind} stream ({e})") from e
        raise


class _Pipeline:
    """Three stages on a ring of buffers: a thread reads (and decompresses) the
    blob, the caller unpacks each buffer, and a third thread hashes it at the same
    time (sha256 is sequential and about as slow as the other two: it gets a thread
    of its own). A buffer is reused once unpacked and hashed. Decompression,
    sha256 and the unpacker's writes all release the GIL."""

    def __init__(self, reader, kind, hasher, limit, cancel, nbufs, chunk):
        self.reader, self.kind, self.hasher, self.limit = reader, kind, hasher, limit
        self.cancel = cancel
        self.bufs = [bytearray(chunk) for _ in range(nbufs)]
        self.pending = [0] * nbufs
        self.lock = threading.Lock()
        self.free, self.full, self.todo = queue.SimpleQueue(), queue.SimpleQueue(), \
            queue.SimpleQueue()
        for i in range(nbufs):
            self.free.put(i)
        self.stop = False
        self.reading = threading.Thread(target=self._read, name="pyrt-unpack-read",
                                        daemon=True)
        self.hashing = threading.Thread(target=self._hash, name="pyrt-unpack-sha256",
                                        daemon=True)

    def _release(self, i):
        with self.lock:
            self.pending[i] -= 1
            if self.pending[i] == 0:
                self.free.put(i)

    def _read(self):
        total = 0
        try:
            while True:
                i = self.free.get()
                if i is None or self.stop:
                    return
                if self.cancel is not None and self.cancel.is_set():
                    raise _Cancelled()
                n = _read_chunk(self.reader, self.bufs[i], self.kind)
                if not n:
                    self.full.put(None)
                    return
                total += n
                if total > self.limit:
                    raise LayerError(f"layer: the uncompressed stream exceeds "
                                     f"max_stream_bytes ({self.limit} bytes)")
                self.pending[i] = 2  # unpacked and hashed
                self.full.put((i, n))
        except BaseException as e:  # handed to the caller
            self.full.put(e)

    def _hash(self):
        while True:
            item = self.todo.get()
            if item is None:
                return
            i, n = item
            self.hasher.update(memoryview(self.bufs[i])[:n])
            self._release(i)

    def chunks(self):
        self.reading.start()
        self.hashing.start()
        try:
            while True:
                item = self.full.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                i, n = item
                self.todo.put(item)
                yield memoryview(self.bufs[i])[:n]
                self._release(i)
        finally:
            self.stop = True
            self.free.put(None)  # wakes the reader if it waits for a buffer
            self.todo.put(None)  # the hasher ends after what is queued
            self.reading.join()
            self.hashing.join()


def _inline_chunks(reader, kind, hasher, limit, cancel, chunk, state):
    buf = bytearray(chunk)
    view = memoryview(buf)
    while True:
        if cancel is not None and cancel.is_set():
            raise _Cancelled()
        n = _read_chunk(reader, buf, kind)
        if not n:
            return
        state[0] += n
        if state[0] > limit:
            raise LayerError(f"layer: the uncompressed stream exceeds max_stream_bytes "
                             f"({limit} bytes)")
        hasher.update(view[:n])
        yield view[:n]


def unpack_layer(source, dest, *, media_type=None, expected_diff_id=None,
                 max_stream_bytes=DEFAULT_MAX_STREAM_BYTES, threads=True, progress=None,
                 stats=None, source_digest=None, _cancel=None, **limits):
    """Unpack one layer blob into the directory dest.

    source: a path or a binary file object (read from its current position).
    media_type: the descriptor's media type; its +gzip/+zstd suffix decides the
    compression, else the blob's magic bytes do (1f8b gzip, 28b52ffd zstd, or none).
    expected_diff_id: "sha256:<hex>" of the uncompressed tar, checked at the end.
    max_stream_bytes: bound on the uncompressed tar (a gzip bomb ends here).
    threads: decompress (or, for a plain tar, hash) in a second thread, overlapped
    with unpacking.
    source_digest: "sha256:<hex>" of the source's bytes, when the caller has
    already verified it (a blob of the store is named by its verified digest).
    For a plain tar the blob digest *is* the diff_id: it is then not hashed a
    second time (sha256 is the slowest step of unpacking a plain tar). Ignored
    for compressed blobs, whose diff_id is always computed.
    progress: called with the number of blob bytes read so far (from the reading
    thread). stats: a dict, filled with the unpacker's counters, "tar_size",
    "compression" and "gzip_backend".
    limits: the C unpacker's limits (max_bytes, max_entries, max_file_size, max_path,
    max_xattr_size, max_header_size, max_sparse_segments, max_meta_memory;
    None is unlimited), detect_holes, chown: see pyrt._core.Unpacker.

    Returns (diff_id, size): "sha256:<hex>" and the sum of the regular files'
    sizes (what docker reports as a layer's size). Raises LayerError for a broken,
    hostile, truncated, oversized or mismatching layer; dest is then left partly
    written: remove it.
    """

    if expected_diff_id is not None and not _DIGEST.match(expected_diff_id):
        raise LayerError(f"layer: invalid diff_id {expected_diff_id!r}")
    if max_stream_bytes is None:
        max_stream_bytes = float("inf")
    own = isinstance(source, (str, bytes, os.PathLike))
    f = open(source, "rb", buffering=0) if own else source
    try:
        head = compression.read_head(f)
        kind = detect_compression(media_type, head)
        raw = compression.Prefixed(head, f, progress)
        reader = _decompressing_reader(kind, raw)
        hasher = hashlib.sha256()
        if kind == "tar" and source_digest is not None:
            if not _DIGEST.match(source_digest):
                raise LayerError(f"layer: invalid source digest {source_digest!r}")
            if expected_diff_id is not None and source_digest != expected_diff_id:
                raise LayerError(f"layer: diff_id mismatch: expected {expected_diff_id}, "
                                 f"the uncompressed tar is {source_digest}")
            hasher = _Known(source_digest)
        rootless = _rootless_options(limits)
        unpacker = Unpacker(os.fspath(dest) if not isinstance(dest, int) else dest, **limits, **rootless)
        try:
            if threads:
                chunks = _Pipeline(reader, kind, hasher, max_stream_bytes, _cancel, NBUFS,
                                   CHUNK).chunks()
            else:
                state = [0]
                chunks = _inline_chunks(reader, kind, hasher, max_stream_bytes, _cancel, CHUNK,
                                        state)
            try:
                for chunk in chunks:
                    unpacker.feed(chunk)
                    if _cancel is not None and _cancel.is_set():
                        raise _Cancelled()
            finally:
                chunks.close()
            st = unpacker.finish()
        except LayerError as e:
            raise _rootless_error(e, rootless) from None
        finally:
            unpacker.close()
            if reader is not raw:
                try:
                    reader.close()
                except Exception:
                    pass
    finally:
        if own:
            f.close()
    diff_id = "sha256:" + hasher.hexdigest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise LayerError(f"layer: diff_id mismatch: expected {expected_diff_id}, "
                         f"the uncompressed tar is {diff_id}")
    if st.get("devices_skipped"):
        from pyrt.launch.userns import note
        n = st["devices_skipped"]
        note(f"layer {diff_id[:19]}: {n} device node{'s' if n > 1 else ''} skipped (an ordinary user cannot "
             "make them; a container gets the standard ones bound from the host)")
    if stats is not None:
        stats.update(st)
        stats["tar_size"] = st["stream"]
        stats["compression"] = kind
        stats["gzip_backend"] = gzip_backend() if kind == "gzip" else None
    return diff_id, st["apparent"]


def _rootless_options(limits) -> dict:
    """An ordinary user's store (unpacked as root of its user namespace, see
    pyrt.launch.userns.in_userns): opaque directories marked for overlay's
    userxattr, device nodes skipped."""
    from pyrt.launch.userns import rootless
    if not rootless():
        return {}
    return {k: v for k, v in (("userxattr", True), ("skip_devices", True)) if k not in limits}


def _rootless_error(e, rootless):
    """In a user namespace, an owner the namespace does not map fails chown with
    EINVAL: say so."""
    import errno as _errno
    if rootless and getattr(e, "errno", None) == _errno.EINVAL and getattr(e, "reason", "") in ("fchownat", "fchown"):
        from pyrt.launch.userns import maps_for_caller
        maps = maps_for_caller()
        more = f" ({maps.note})" if maps.note else \
            " (a larger range in /etc/subuid and /etc/subgid would hold it)"
        err = LayerError(f'layer entry "{e.entry}": its owner is outside the ids mapped for you: '
                         f"containers have uids and gids 0-{maps.size - 1}{more}")
        err.entry, err.errno, err.reason = e.entry, e.errno, e.reason
        return err
    return e


def unpack_layers_parallel(jobs, *, max_workers=None, threads=None):
    """Unpack several layers at once, each into its own directory (the layers of
    one image are independent until they are mounted).

    jobs: a sequence of dicts of unpack_layer()'s arguments ({"source": ..., "dest":
    ..., "media_type": ..., "expected_diff_id": ..., ...}).
    max_workers: layers unpacked at the same time (default: the number of CPUs, at
    least 2). threads: each layer's own decompression thread; by default on when
    fewer layers than CPUs run at once.
    Returns the (diff_id, size) of each job, in order. When one fails the others
    are stopped early and the first error raised is re-raised; the caller removes
    every job's dest.
    """
    jobs = [dict(j) for j in jobs]
    if not jobs:
        return []
    ncpu = os.cpu_count() or 2
    workers = max_workers or max(2, ncpu)
    workers = min(workers, len(jobs))
    if threads is None:
        threads = workers < ncpu
    cancel = threading.Event()
    lock = threading.Lock()
    first = []

    def run(job):
        job.setdefault("threads", threads)
        try:
            return unpack_layer(_cancel=cancel, **job)
        except _Cancelled:
            return None
        except BaseException as e:
            with lock:
                if not first:
                    first.append(e)
            cancel.set()
            raise

    if workers == 1:
        return [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyrt-unpack") as pool:
        futures = [pool.submit(run, j) for j in jobs]
        results = []
        for fut in futures:
            try:
                results.append(fut.result())
            except BaseException:
                results.append(None)
    if first:
        raise first[0]
    return results
