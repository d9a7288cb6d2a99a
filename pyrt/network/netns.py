"""Network namespaces of containers on a network: made before the container (so
that the CNI plugins can wire it first), held by an fd the spawn joins."""
from __future__ import annotations

import os
import threading

from pyrt import sys as psys


def new_netns() -> int:
    """A new, empty network namespace: an O_RDONLY fd of it (close-on-exec). Made
    by a short-lived thread (namespaces belong to threads), so the caller's own
    network namespace never changes."""
    out: dict = {}

    def make():
        try:
            psys.unshare(psys.CLONE_NEWNET)
            out["fd"] = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException as e:  # re-raised in the caller
            out["error"] = e

    t = threading.Thread(target=make, name="pyrt-netns")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["fd"]


def same_netns(fd: int, path: str) -> bool:
    """Is the namespace behind fd the one at path (/proc/PID/ns/net)?"""
    try:
        st = os.stat(path)
    except OSError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)
