# Bindings of csrc/tarwrite.c and csrc/copy.c: layer tar writer and tree copy.
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
import os as _os


cdef extern from "tarwrite.h":
    cdef enum:
        PYRT_LAYER_USERXATTR
        PYRT_LAYER_RAW
        PYRT_LAYER_NO_TRAILER
        PYRT_ENTRY_PATH
        PYRT_ENTRY_WHITEOUT
        PYRT_ENTRY_OPAQUE

    cdef struct pyrt_layer_stats:
        uint64_t entries
        uint64_t whiteouts
        uint64_t bytes

    cdef struct pyrt_layer_entry:
        const char *path
        int kind

    int pyrt_write_layer(int upperfd, int outfd, unsigned flags, pyrt_layer_stats *stats,
                         pyrt_error *e) nogil
    int pyrt_write_entries(int rootfd, const pyrt_layer_entry *entries, size_t n, int outfd,
                           unsigned flags, pyrt_layer_stats *stats, pyrt_error *e) nogil


cdef extern from "copy.h":
    cdef enum:
        PYRT_COPY_WHITEOUTS
        PYRT_COPY_OVERLAY_XATTRS
        PYRT_COPY_NO_REFLINK
        PYRT_COPY_NO_XATTRS
        PYRT_COPY_NO_OWNERS
        PYRT_COPY_USERXATTR

    cdef struct pyrt_copy_stats:
        uint64_t files
        uint64_t reflinked
        uint64_t bytes
        uint64_t links
        uint64_t removed

    int pyrt_copy_tree(int srcfd, int dstfd, unsigned flags, pyrt_copy_stats *stats,
                       pyrt_error *e) nogil


ENTRY_PATH = PYRT_ENTRY_PATH
ENTRY_WHITEOUT = PYRT_ENTRY_WHITEOUT
ENTRY_OPAQUE = PYRT_ENTRY_OPAQUE
_ENTRY_KINDS = {"path": PYRT_ENTRY_PATH, "whiteout": PYRT_ENTRY_WHITEOUT,
                "opaque": PYRT_ENTRY_OPAQUE, PYRT_ENTRY_PATH: PYRT_ENTRY_PATH,
                PYRT_ENTRY_WHITEOUT: PYRT_ENTRY_WHITEOUT, PYRT_ENTRY_OPAQUE: PYRT_ENTRY_OPAQUE}


cdef int _open_dir(object path) except -1:
    return _os.open(path, _os.O_RDONLY | _os.O_DIRECTORY | _os.O_CLOEXEC)


def write_layer(upperdir, int fd, *, bint userxattr=False, bint raw=False,
                bint trailer=True):
    """Write the overlay upper dir `upperdir` as an OCI layer tar to fd (a pipe or a
    file). Whiteouts become `.wh.` entries, opaque dirs `.wh..wh..opq`; entries are
    sorted and metadata normalized (the same tree always gives the same bytes).
    Returns {"entries", "whiteouts", "bytes"}. The GIL is released while writing,
    so this can run in a thread while another reads the pipe."""
    cdef pyrt_error err
    cdef pyrt_layer_stats st
    cdef unsigned flags = 0
    cdef int rc, dfd
    if userxattr:
        flags |= PYRT_LAYER_USERXATTR
    if raw:
        flags |= PYRT_LAYER_RAW
    if not trailer:
        flags |= PYRT_LAYER_NO_TRAILER
    dfd = _open_dir(upperdir)
    try:
        with nogil:
            rc = pyrt_write_layer(dfd, fd, flags, &st, &err)
    finally:
        _os.close(dfd)
    if rc < 0:
        raise _error_from_c(&err, None, upperdir)
    return {"entries": st.entries, "whiteouts": st.whiteouts, "bytes": st.bytes}


def write_entries(rootdir, entries, int fd, *, bint trailer=True):
    """Write exactly the given entries of the tree at rootdir as a layer tar to fd,
    in the given order. `entries` is a sequence of (relative path, kind) with kind
    "path" (the entry itself; a dir without its children), "whiteout" (`.wh.NAME`
    for a deleted path) or "opaque" (`PATH/.wh..wh..opq`). Paths are resolved
    beneath rootdir without following symlinks. Returns the same stats as
    write_layer."""
    cdef pyrt_error err
    cdef pyrt_layer_stats st
    cdef pyrt_layer_entry *v
    cdef size_t i, n
    cdef int rc, dfd
    cdef unsigned flags = 0 if trailer else PYRT_LAYER_NO_TRAILER
    items = list(entries)
    n = len(items)
    keep = []
    v = <pyrt_layer_entry *>calloc(n + 1, sizeof(pyrt_layer_entry))
    if v == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            path, kind = items[i]
            b = _os.fsencode(path)
            if b"\0" in b:
                raise ValueError(f"embedded null byte in {path!r}")
            keep.append(b)
            v[i].path = b
            try:
                v[i].kind = _ENTRY_KINDS[kind]
            except KeyError:
                raise ValueError(f"unknown entry kind {kind!r}") from None
        dfd = _open_dir(rootdir)
        try:
            with nogil:
                rc = pyrt_write_entries(dfd, v, n, fd, flags, &st, &err)
        finally:
            _os.close(dfd)
    finally:
        free(v)
    if rc < 0:
        raise _error_from_c(&err, None, rootdir)
    return {"entries": st.entries, "whiteouts": st.whiteouts, "bytes": st.bytes}


cdef _check_not_inside(int sfd, object dst):
    """Refuse to copy a tree into itself (dst at or below src)."""
    s = _os.fstat(sfd)
    p = _os.path.realpath(dst)
    while True:
        try:
            st = _os.stat(p)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (s.st_dev, s.st_ino):
            raise ValueError(f"copy_tree: {dst!r} is inside the source tree")
        parent = _os.path.dirname(p)
        if parent == p:
            return
        p = parent


def copy_tree(src, dst, *, bint whiteouts=False, bint overlay_xattrs=False,
              bint reflink=True, bint xattrs=True, bint owners=True, bint userxattr=False):
    """Copy the tree at src into dst (created if missing), merging with what dst
    holds: reflinks where the filesystem can, else copy_file_range, sparse-aware;
    owners, modes (setuid kept), xattrs (trusted.overlay.* only with
    overlay_xattrs), times, hardlinks, symlinks, devices, fifos. With
    whiteouts=True, overlay whiteouts in src delete dst's paths and opaque dirs
    empty dst's dirs first: copying layers bottom-up materializes their union.
    Nothing outside dst is ever written (no symlink in dst is followed).
    Returns {"files", "reflinked", "bytes", "links", "removed"}."""
    cdef pyrt_error err
    cdef pyrt_copy_stats st
    cdef unsigned flags = 0
    cdef int rc, sfd, dfd
    if whiteouts:
        flags |= PYRT_COPY_WHITEOUTS
    if overlay_xattrs:
        flags |= PYRT_COPY_OVERLAY_XATTRS
    if not reflink:
        flags |= PYRT_COPY_NO_REFLINK
    if not xattrs:
        flags |= PYRT_COPY_NO_XATTRS
    if not owners:
        flags |= PYRT_COPY_NO_OWNERS
    if userxattr:
        flags |= PYRT_COPY_USERXATTR
    sfd = _open_dir(src)
    try:
        _check_not_inside(sfd, dst)
        try:
            _os.mkdir(dst, 0o700)
        except FileExistsError:
            pass
        dfd = _os.open(dst, _os.O_RDONLY | _os.O_DIRECTORY | _os.O_CLOEXEC | _os.O_NOFOLLOW)
        try:
            with nogil:
                rc = pyrt_copy_tree(sfd, dfd, flags, &st, &err)
        finally:
            _os.close(dfd)
    finally:
        _os.close(sfd)
    if rc < 0:
        raise _error_from_c(&err, None, src, dst)
    return {"files": st.files, "reflinked": st.reflinked, "bytes": st.bytes,
            "links": st.links, "removed": st.removed}
