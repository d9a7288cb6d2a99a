# Bindings of csrc/unpack.c: the streaming OCI layer tar unpacker.
from libc.stdint cimport uint64_t as _u64
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.string cimport strerror
import errno as _errno_mod
from os import PathLike as _os_pathlike


cdef extern from "unpack.h":
    cdef struct pyrt_unpack_limits:
        _u64 max_bytes
        _u64 max_entries
        _u64 max_file_size
        _u64 max_path
        _u64 max_xattr_size
        _u64 max_header_size
        _u64 max_sparse_segments
        _u64 max_meta_memory
        unsigned int flags

    cdef struct pyrt_unpack_stats:
        _u64 entries
        _u64 bytes
        _u64 apparent
        _u64 files
        _u64 dirs
        _u64 symlinks
        _u64 hardlinks
        _u64 devices
        _u64 whiteouts
        _u64 opaques
        _u64 skipped
        _u64 stream
        _u64 devices_skipped

    cdef struct pyrt_unpacker:
        pass

    int PYRT_UNPACK_DETECT_HOLES, PYRT_UNPACK_NO_CHOWN, PYRT_UNPACK_PLAIN
    int PYRT_UNPACK_USERXATTR, PYRT_UNPACK_SKIP_DEVICES

    void pyrt_unpack_limits_init(pyrt_unpack_limits *lim)
    pyrt_unpacker *pyrt_unpacker_new(int destfd, const pyrt_unpack_limits *lim,
                                     pyrt_error *e) nogil
    int pyrt_unpacker_feed(pyrt_unpacker *u, const void *buf, size_t len, pyrt_error *e) nogil
    int pyrt_unpacker_finish(pyrt_unpacker *u, pyrt_error *e) nogil
    void pyrt_unpacker_stats(const pyrt_unpacker *u, pyrt_unpack_stats *st)
    const char *pyrt_unpacker_detail(const pyrt_unpacker *u)
    void pyrt_unpacker_free(pyrt_unpacker *u) nogil


cdef pyrt_unpack_limits _default_limits():
    cdef pyrt_unpack_limits lim
    pyrt_unpack_limits_init(&lim)
    return lim


def unpack_limit_defaults():
    """The C core's default limits, as a dict of keyword arguments of Unpacker."""
    cdef pyrt_unpack_limits lim = _default_limits()
    return {
        "max_bytes": lim.max_bytes, "max_entries": lim.max_entries,
        "max_file_size": lim.max_file_size, "max_path": lim.max_path,
        "max_xattr_size": lim.max_xattr_size, "max_header_size": lim.max_header_size,
        "max_sparse_segments": lim.max_sparse_segments,
        "max_meta_memory": lim.max_meta_memory,
    }


cdef _u64 _limit(object value, _u64 default) except? 0:
    if value is None:
        return <_u64>0xffffffffffffffff  # unlimited
    if value < 0:
        raise ValueError(f"a limit cannot be negative: {value}")
    return <_u64>value


# errnos that say the host ran out of something (space, memory, fds) or its disk
# failed: a SyscallError, never a rejected layer
_HOST_ERRNOS = frozenset((_errno_mod.ENOSPC, _errno_mod.EDQUOT, _errno_mod.ENOMEM, _errno_mod.EIO,
                          _errno_mod.EROFS, _errno_mod.EMFILE, _errno_mod.ENFILE))


cdef object _layer_error(pyrt_error *err, const char *detail, object dest=None):
    """LayerError for a layer the unpacker rejected; for a failure of the host (a
    full disk, ...) the SyscallError of that errno (naming the path under dest)."""
    from pyrt.errors import LayerError
    if err.err in _HOST_ERRNOS:
        return _error_from_c(err, None, dest if isinstance(dest, (str, bytes, _os_pathlike)) else None)
    path = err.path.decode(errors="surrogateescape")
    op = err.op.decode(errors="replace")
    if err.err:
        why = f"{op}: {strerror(err.err).decode(errors='replace')}"
    else:
        why = op
        d = detail.decode(errors="replace") if detail != NULL else ""
        if d:
            why = f"{op} ({d})"
    msg = f'layer entry "{path}": {why}' if path else f"layer: {why}"
    e = LayerError(msg)
    e.entry = path
    e.errno = err.err or None
    e.reason = op
    return e


cdef class Unpacker:
    """A streaming layer tar unpacker into the directory dest (best a fresh, empty
    one: on a LayerError, remove it). Feed the *decompressed* tar bytes with
    feed(), in any chunk sizes; finish() checks the end of the archive, applies the
    directories' modes and times and returns the stats.

    Limits (None means unlimited): max_bytes (file data, all files), max_entries,
    max_file_size (one file's real data; a sparse file's holes do not count),
    max_path, max_xattr_size, max_header_size (one PAX header or GNU long name),
    max_sparse_segments, max_meta_memory (kept for the directories' metadata).
    detect_holes writes aligned 4 KiB zero runs as holes; chown=False keeps the
    caller as owner of everything; whiteouts=False reads a plain tar (`.wh.` names
    are ordinary files). For an ordinary user's store (unpacked in its user
    namespace, pyrt.launch.userns): userxattr=True marks opaque directories with
    user.overlay.opaque, skip_devices=True skips device nodes (counted in
    "devices_skipped")."""
    cdef pyrt_unpacker *u
    cdef bint busy
    cdef readonly object dest

    def __init__(self, dest, *, max_bytes=64 << 30, max_entries=1000000,
                 max_file_size=16 << 30, max_path=4096, max_xattr_size=65536,
                 max_header_size=1 << 20, max_sparse_segments=1 << 20,
                 max_meta_memory=64 << 20, detect_holes=True, chown=True, whiteouts=True,
                 userxattr=False, skip_devices=False):
        cdef pyrt_unpack_limits lim = _default_limits()
        cdef pyrt_error err
        cdef int fd
        import os
        if self.u != NULL:
            raise RuntimeError("Unpacker already initialized")
        lim.max_bytes = _limit(max_bytes, lim.max_bytes)
        lim.max_entries = _limit(max_entries, lim.max_entries)
        lim.max_file_size = _limit(max_file_size, lim.max_file_size)
        lim.max_path = _limit(max_path, lim.max_path)
        lim.max_xattr_size = _limit(max_xattr_size, lim.max_xattr_size)
        lim.max_header_size = _limit(max_header_size, lim.max_header_size)
        lim.max_sparse_segments = _limit(max_sparse_segments, lim.max_sparse_segments)
        lim.max_meta_memory = _limit(max_meta_memory, lim.max_meta_memory)
        lim.flags = 0
        if detect_holes:
            lim.flags |= PYRT_UNPACK_DETECT_HOLES
        if not chown:
            lim.flags |= PYRT_UNPACK_NO_CHOWN
        if not whiteouts:
            lim.flags |= PYRT_UNPACK_PLAIN
        if userxattr:
            lim.flags |= PYRT_UNPACK_USERXATTR
        if skip_devices:
            lim.flags |= PYRT_UNPACK_SKIP_DEVICES
        self.dest = dest
        if isinstance(dest, int):
            fd = os.dup(dest)
        else:
            fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with nogil:
                self.u = pyrt_unpacker_new(fd, &lim, &err)
        finally:
            os.close(fd)
        if self.u == NULL:
            raise _error_from_c(&err, None, dest if not isinstance(dest, int) else None)

    cdef pyrt_unpacker *_take(self) except NULL:
        if self.u == NULL:
            raise ValueError("Unpacker is closed")
        if self.busy:
            raise RuntimeError("Unpacker used by two threads at once")
        self.busy = True
        return self.u

    def feed(self, data):
        """Unpack the next bytes of the tar stream (bytes, bytearray, memoryview, or
        any contiguous buffer)."""
        cdef Py_buffer view
        cdef pyrt_error err
        cdef int rc
        cdef pyrt_unpacker *u
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            u = self._take()
            try:
                with nogil:
                    rc = pyrt_unpacker_feed(u, view.buf, <size_t>view.len, &err)
            finally:
                self.busy = False
        finally:
            PyBuffer_Release(&view)
        if rc < 0:
            raise _layer_error(&err, pyrt_unpacker_detail(self.u), self.dest)

    def finish(self):
        """The stream has ended: check it was complete and apply the directories'
        metadata. Returns the stats (entries, bytes written, ...)."""
        cdef pyrt_error err
        cdef int rc
        cdef pyrt_unpack_stats st
        cdef pyrt_unpacker *u = self._take()
        try:
            with nogil:
                rc = pyrt_unpacker_finish(u, &err)
        finally:
            self.busy = False
        if rc < 0:
            raise _layer_error(&err, pyrt_unpacker_detail(self.u), self.dest)
        return self.stats()

    def stats(self):
        cdef pyrt_unpack_stats st
        if self.u == NULL:
            raise ValueError("Unpacker is closed")
        pyrt_unpacker_stats(self.u, &st)
        return {
            "entries": st.entries, "bytes": st.bytes, "apparent": st.apparent,
            "files": st.files, "dirs": st.dirs, "symlinks": st.symlinks,
            "hardlinks": st.hardlinks, "devices": st.devices, "whiteouts": st.whiteouts,
            "opaques": st.opaques, "skipped": st.skipped, "stream": st.stream,
            "devices_skipped": st.devices_skipped,
        }

    def close(self):
        """Free the unpacker (closes its fds); idempotent."""
        if self.busy:
            raise RuntimeError("Unpacker is in use by another thread")
        if self.u != NULL:
            pyrt_unpacker_free(self.u)
            self.u = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.u != NULL:
            pyrt_unpacker_free(self.u)
            self.u = NULL
