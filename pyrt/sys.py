"""The low-level API: thin, faithful wrappers of the Linux calls pyrt is built on.
Failures raise OSError (the errno's subclass) naming the path."""
from __future__ import annotations

import os

from pyrt._sys import ffi, lib


def _check(rc, *paths):
    if rc < 0:
        err = ffi.errno
        names = [os.fsdecode(p) for p in paths if p is not None]
        raise OSError(err, os.strerror(err), *names[:2])
    return rc


def pidfd_send_signal(pidfd: int, sig: int, flags: int = 0) -> None:
    _check(lib.pyrt_pidfd_send_signal(pidfd, sig, ffi.NULL, flags))
