"""Users and groups of an image: `--user NAME[:GROUP]` resolved from the image's
/etc/passwd and /etc/group, read inside the image's layers (never following a
symlink out of a layer) with the union's rules: the top-most layer wins, a whiteout
or an opaque /etc hides the layers below."""
from __future__ import annotations

import os
import stat

from pyrt.errors import InvalidArgument
from pyrt import sys as psys

RESOLVE_IN_ROOT = 0x10
RESOLVE_NO_MAGICLINKS = 0x02
_MAX = 1 << 20  # passwd/group files larger than this are not believed


def _read_in_root(root: str, path: str) -> bytes | None:
    """The file at `path` inside `root`, or None if absent; symlinks stay inside."""
    try:
        rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:  # O_PATH first: a whiteout (a 0:0 device of mode 0) is not opened
        fd = psys.openat2(rootfd, path, os.O_PATH, resolve=RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(rootfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return os.read(rfd, _MAX)
        finally:
            os.close(rfd)
    finally:
        os.close(fd)


def _layer_hides(layer: str, path: str) -> bool:
    """Does this layer hide `path` in the layers below it: a whiteout, something
    that is not a directory in place of a parent, or an opaque parent?"""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        p = os.path.join(layer, *parts[:i])
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if i == len(parts) or not stat.S_ISDIR(st.st_mode):
            return True
        for name in ("trusted.overlay.opaque", "user.overlay.opaque"):  # root's store, a user's
            try:
                if os.getxattr(p, name, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                pass
    return False


def read_file(layers: list[str], path: str) -> bytes | None:
    """`path` as the union of `layers` (top-most first) shows it."""
    for layer in layers:
        data = _read_in_root(layer, path)
        if data is not None:
            return data
        if _layer_hides(layer, path):
            return None
    return None


def _table(data: bytes | None) -> list[list[str]]:
    if not data:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(user: str, layers: list[str]) -> tuple[int, int, list[int]]:
    """'name', 'uid', 'name:group', 'uid:gid' -> (uid, gid, supplementary gids)."""
    name, _, group = user.partition(":")
    passwd = _table(read_file(layers, "/etc/passwd"))
    groups = _table(read_file(layers, "/etc/group"))
    uid = gid = None
    username = None
    if name.isdigit():
        uid = int(name)
        for row in passwd:
            if len(row) >= 4 and row[2] == name:
                username, gid = row[0], int(row[3])
                break
    else:
        for row in passwd:
            if len(row) >= 4 and row[0] == name:
                username, uid, gid = name, int(row[2]), int(row[3])
                break
        else:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in the image's /etc/passwd")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for row in groups:
                if len(row) >= 3 and row[0] == group:
                    gid = int(row[2])
                    break
            else:
                raise InvalidArgument(f"unable to find group {group}: no matching entries in the image's /etc/group")
    if gid is None:
        gid = 0
    extra = []
    if username:
        for row in groups:
            if len(row) >= 4 and username in row[3].split(",") and row[2].isdigit():
                g = int(row[2])
                if g != gid:
                    extra.append(g)
    return uid, gid, extra


def home_of(uid: int, layers: list[str]) -> str:
    for row in _table(read_file(layers, "/etc/passwd")):
        if len(row) >= 6 and row[2] == str(uid):
            return row[5] or "/"
    return "/root" if uid == 0 else "/"
