"""What a container's filesystem is made of: an overlay root, binds, tmpfs."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from pyrt import _core


def _path(p) -> bytes:
    return os.fsencode(os.fspath(p))


def _absolute(target, what: str) -> bytes:
    t = _path(target)
    if not t.startswith(b"/"):
        raise ValueError(f"{what} destination must be an absolute path: {os.fsdecode(t)!r}")
    return t


@dataclass(frozen=True)
class Overlay:
    """A root made of read-only layers (top-most first) and an optional writable
    upper dir with its work dir (same filesystem as the upper dir)."""

    lowerdirs: Sequence[str | os.PathLike]
    upperdir: str | os.PathLike | None = None
    workdir: str | os.PathLike | None = None
    options: Sequence[str] = field(default_factory=tuple)  # e.g. ("volatile",)

    def __post_init__(self):
        if not self.lowerdirs:
            raise ValueError("an overlay needs at least one lower dir")
        if (self.upperdir is None) != (self.workdir is None):
            raise ValueError("an overlay upperdir needs a workdir, and the reverse")


@dataclass(frozen=True)
class Bind:
    """Bind a host file or directory at `target` inside the container."""

    source: str | os.PathLike
    target: str | os.PathLike
    readonly: bool = False

    def to_c(self):
        src = os.path.abspath(os.fspath(self.source))
        if not os.path.exists(src):
            raise FileNotFoundError(2, "bind source does not exist", src)
        flags = _core.MNT_RDONLY if self.readonly else 0
        return (_core.MOUNT_BIND, flags, _path(src), _absolute(self.target, "bind"), None)


@dataclass(frozen=True)
class Tmpfs:
    """A fresh tmpfs at `target`. `size` in bytes or with a suffix ("64m");
    `mode` as an int (0o1777 by default)."""

    target: str | os.PathLike
    size: int | str | None = None
    mode: int | None = None
    readonly: bool = False
    options: Sequence[str] = field(default_factory=lambda: ("nosuid", "nodev"))

    def to_c(self):
        opts = [f"mode={self.mode if self.mode is not None else 0o1777:o}"]
        if self.size is not None:
            opts.append(f"size={self.size}")
        flags = _core.MNT_RDONLY if self.readonly else 0
        for o in self.options:
            bit = {"nosuid": _core.MNT_NOSUID, "nodev": _core.MNT_NODEV, "noexec": _core.MNT_NOEXEC,
                   "ro": _core.MNT_RDONLY}.get(o)
            if bit is None:
                opts.append(o)
            else:
                flags |= bit
        return (_core.MOUNT_TMPFS, flags, None, _absolute(self.target, "tmpfs"), ",".join(opts).encode())


def to_c(mounts) -> list:
    """C mount tuples, parents before children (sorted by destination depth)."""
    out = [m.to_c() for m in mounts]
    out.sort(key=lambda m: os.path.normpath(m[3]).count(b"/"))
    return out
