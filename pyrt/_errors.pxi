# The one conversion of a C failure (struct pyrt_error: errno, op, path) into a
# Python exception, used by every binding below.
import os as _err_os


cdef extern from "err.h":
    cdef struct pyrt_error:
        int err
        char op[32]
        char path[480]


cdef object _error_from_c(pyrt_error *err, object cls=None, object root=None, object root2=None):
    """The exception for a failed C call: a pyrt.errors.SyscallError (or `cls`, one
    of its subclasses such as SpawnError), which is also the errno's own OSError
    subclass (PermissionError, FileNotFoundError, ...), carrying `op` and `path`.
    With `root` (and `root2`), err.path is relative to that directory (those
    directories) and the error names the full path(s)."""
    from pyrt.errors import SyscallError
    if cls is None:
        cls = SyscallError
    op = err.op[:sizeof(err.op)].split(b"\0", 1)[0].decode(errors="replace")
    rel = err.path[:sizeof(err.path)].split(b"\0", 1)[0].decode(errors="surrogateescape")
    if root is None:
        return cls(err.err, op, rel)
    paths = []
    for r in (root, root2):
        if r is not None:
            p = _err_os.fsdecode(r)
            paths.append(_err_os.path.join(p, rel) if rel and rel != "." else p)
    if len(paths) == 2:
        return cls(err.err, op, paths[0], path2=paths[1])
    return cls(err.err, op, paths[0])


cdef object _errno_error(int e, str op, object path=None):
    """The SyscallError of errno `e` from `op` (a call made here, not in C)."""
    from pyrt.errors import SyscallError
    return SyscallError(e, op, _err_os.fsdecode(path) if path is not None else "")
