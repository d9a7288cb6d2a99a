"""What a container changed, in `docker diff` format.

- `changes(upperdir, lowerdirs)`: overlay containers. The upper dir is walked:
  whiteouts (0:0 char devices, or files with the trusted.overlay.whiteout xattr)
  read back as deletions ("D"); an opaque dir hides everything its lower layers had
  below it, so what they had and the upper dir does not is deleted; anything else in
  the upper dir is "C" when the image had that path, else "A". Directories that
  only hold changes are "C" (they are in the upper dir because of them).
- `changes_by_compare(rootfs, lowerdirs)`: the `copy` storage driver. The
  materialized rootfs is compared with the union of the image's layer dirs: a path is
  "A" when the image has none, "D" when the rootfs lost it, "C" when its type, mode,
  owner, size, mtime, content, xattrs, device number or link target differ, or (for
  a directory) when something below it changed.

`lowerdirs` are the image's unpacked layer dirs in overlay format (whiteouts as
0:0 char devices, opaque dirs by xattr), top-most first, as overlayfs takes them.
Results are lists of (kind, "/path") sorted by path. `compare_entries` gives the
same comparison as the entry list the C layer writer takes (tar walk order).
"""
from __future__ import annotations

import os
import stat

_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
_WHITEOUT = ("trusted.overlay.whiteout", "user.overlay.whiteout")


def _xattr(path, name):
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _is_opaque(path, userxattr=False) -> bool:
    for name in _OPAQUE[: 2 if userxattr else 1]:
        if _xattr(path, name) == b"y":
            return True
    return False


def _is_whiteout(entry: os.DirEntry, st: os.stat_result, userxattr=False) -> bool:
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return any(_xattr(entry.path, n) is not None for n in _WHITEOUT[: 2 if userxattr else 1])
    return False


def _key(name: str) -> bytes:
    return os.fsencode(name)


def _scandir(path):
    """{name: (DirEntry, lstat)} of a directory; {} when it is not there."""
    out = {}
    try:
        it = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return out
    with it:
        for e in it:
            try:
                out[e.name] = (e, e.stat(follow_symlinks=False))
            except FileNotFoundError:
                pass
    return out


class _Lower:
    """One visible entry of the image's union: its top-most instance (entry, stat),
    and for a directory the stack of layer dirs merged into it (top-most first)."""

    __slots__ = ("entry", "st", "stack", "closed")

    def __init__(self, entry, st, stack, closed):
        self.entry = entry
        self.st = st
        self.stack = stack
        self.closed = closed

    @property
    def is_dir(self):
        return self.stack is not None


_UNSEEN = object()


def _union(stack, userxattr=False):
    """The visible children of a directory of the image's union, given the layer
    dirs merged into it (top-most first): {name: _Lower}."""
    decided: dict = {}
    for layer_dir in stack:
        for name, (e, st) in _scandir(layer_dir).items():
            d = decided.get(name, _UNSEEN)
            if d is None:
                continue  # deleted in a layer above
            if d is _UNSEEN:
                if _is_whiteout(e, st, userxattr):
                    decided[name] = None  # deleted from this layer down
                elif stat.S_ISDIR(st.st_mode):
                    decided[name] = _Lower(e, st, [e.path], _is_opaque(e.path, userxattr))
                else:
                    decided[name] = _Lower(e, st, None, True)
            elif d.stack is not None and not d.closed:
                if stat.S_ISDIR(st.st_mode) and not _is_whiteout(e, st, userxattr):
                    d.stack.append(e.path)
                    d.closed = _is_opaque(e.path, userxattr)
                else:  # a whiteout or a non-dir below a dir ends the merge there
                    d.closed = True
    return {n: d for n, d in decided.items() if d is not None}


def _lower_list(lowerdirs):
    if isinstance(lowerdirs, (str, bytes, os.PathLike)):
        return [os.fspath(lowerdirs)]
    return [os.fspath(p) for p in lowerdirs]


# --------------------------------------------------------------------- overlay

def changes(upperdir, lowerdirs=(), *, userxattr=False) -> list[tuple[str, str]]:
    """Changes of an overlay container, from its upper dir and the image's layer
    dirs (top-most first): a sorted list of ("A"|"C"|"D", "/path")."""
    out: list[tuple[str, str]] = []

    def walk(upper, rel, stack, hidden):
        lower = _union(stack, userxattr) if stack else {}
        names = _scandir(upper)
        for name, (e, st) in names.items():
            path = f"{rel}/{name}"
            if _is_whiteout(e, st, userxattr):
                out.append(("D", path))
                continue
            low = lower.get(name)
            out.append(("C" if low is not None else "A", path))
            if stat.S_ISDIR(st.st_mode):
                opaque = _is_opaque(e.path, userxattr)
                child_stack = low.stack if (low is not None and low.is_dir) else None
                walk(e.path, path, child_stack or [], hidden or opaque)
        if hidden:
            # Under an opaque dir nothing of the lower layers shows: what they had
            # and the upper dir does not have is gone.
            for name in lower:
                if name not in names:
                    out.append(("D", f"{rel}/{name}"))

    walk(os.fspath(upperdir), "", _lower_list(lowerdirs), False)
    out.sort(key=lambda kp: _key(kp[1]))
    return out


# --------------------------------------------------------------------- compare

def _xattrs(path) -> dict:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        if n.startswith("trusted.overlay.") or n.startswith("user.overlay."):
            continue
        v = _xattr(path, n)
        if v is not None:
            out[n] = v
    return out


def _same_content(a, b, size) -> bool:
    if size == 0:
        return True
    try:
        fa = os.open(a, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fb = os.open(b, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        os.close(fa)
        return False
    try:
        chunk = 1 << 20
        while True:
            x = os.read(fa, chunk)
            y = os.read(fb, chunk)
            if x != y:
                return False
            if not x:
                return True
    finally:
        os.close(fa)
        os.close(fb)


def _differs(r_entry, r_st, low: _Lower, content: bool) -> bool:
    a, b = r_st, low.st
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return True
    if (stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode) or a.st_uid != b.st_uid
            or a.st_gid != b.st_gid or a.st_mtime_ns != b.st_mtime_ns):
        return True
    if stat.S_ISREG(a.st_mode):
        if a.st_size != b.st_size:
            return True
    elif stat.S_ISLNK(a.st_mode):
        if os.readlink(r_entry.path) != os.readlink(low.entry.path):
            return True
    elif stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        if a.st_rdev != b.st_rdev:
            return True
    if _xattrs(r_entry.path) != _xattrs(low.entry.path):
        return True
    if content and stat.S_ISREG(a.st_mode):
        if not _same_content(r_entry.path, low.entry.path, a.st_size):
            return True
    return False


def _compare(rootfs, lowerdirs, content=True):
    """Walks the rootfs and the image's union together. Returns entries in tar walk
    order (each dir's names sorted bytewise, a dir before what is below it):
    (kind, relpath, is_dir) with kind "A", "C" or "D"."""
    out: list = []

    def added(path, rel):
        for name, (e, st) in sorted(_scandir(path).items(), key=lambda kv: _key(kv[0])):
            crel = f"{rel}/{name}" if rel else name
            is_dir = stat.S_ISDIR(st.st_mode)
            out.append(("A", crel, is_dir))
            if is_dir:
                added(e.path, crel)

    def walk(path, rel, stack) -> bool:
        """Appends the changes below `path`; True if there were any."""
        mine = _scandir(path)
        lower = _union(stack) if stack else {}
        changed = False
        for name in sorted(set(mine) | set(lower), key=_key):
            crel = f"{rel}/{name}" if rel else name
            m = mine.get(name)
            low = lower.get(name)
            if m is None:
                out.append(("D", crel, low.is_dir))
                changed = True
                continue
            e, st = m
            is_dir = stat.S_ISDIR(st.st_mode)
            if low is None:
                out.append(("A", crel, is_dir))
                if is_dir:
                    added(e.path, crel)
                changed = True
                continue
            differs = _differs(e, st, low, content)
            if is_dir and low.is_dir:
                mark = len(out)
                out.append(None)  # the dir's own entry, decided after its children
                below = walk(e.path, crel, low.stack)
                if differs or below:
                    out[mark] = ("C", crel, True)
                    changed = True
                else:
                    del out[mark]
            elif differs:
                out.append(("C", crel, is_dir))
                if is_dir:  # was not a dir in the image: everything below is new
                    added(e.path, crel)
                changed = True
        return changed

    walk(os.fspath(rootfs), "", _lower_list(lowerdirs))
    return out


def changes_by_compare(rootfs, lowerdirs, *, content=True) -> list[tuple[str, str]]:
    """Changes of a `copy`-driver container: its materialized rootfs compared with
    the image's layer dirs (top-most first). A sorted list of ("A"|"C"|"D", "/path").
    content=False skips comparing the bytes of files whose metadata is unchanged."""
    out = [(kind, "/" + rel) for kind, rel, _ in _compare(rootfs, lowerdirs, content)]
    out.sort(key=lambda kp: _key(kp[1]))
    return out


def compare_entries(rootfs, lowerdirs, *, content=True) -> list[tuple[str, str]]:
    """The comparison as entries for pyrt._core.write_entries: (relpath, "path") for
    what was added or changed, (relpath, "whiteout") for what was deleted, in tar
    walk order."""
    return [(rel, "whiteout" if kind == "D" else "path")
            for kind, rel, _ in _compare(rootfs, lowerdirs, content)]


__all__ = ["changes", "changes_by_compare", "compare_entries"]
