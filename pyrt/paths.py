"""Where pyrt keeps things, for root and for an ordinary user.

                    root                an ordinary user
    the store       /var/lib/pyrt       $XDG_DATA_HOME/pyrt (~/.local/share/pyrt)
    runtime state   /run/pyrt           $XDG_RUNTIME_DIR/pyrt, else /tmp/pyrt-UID

($PYRT_ROOT or --root name another store.) An ordinary user's directories are
its own and private (0700): pyrt refuses one that another user owns or could
replace, wherever a symlink on the way leads (its layers hold files of the
user's subordinate ids, setuid ones too, that nobody else may reach)."""
from __future__ import annotations

import os
import stat

from pyrt.errors import UnsafeDirectory

ROOT_STORE = "/var/lib/pyrt"
ROOT_RUNTIME = "/run/pyrt"


def default_store_root() -> str:
    """$PYRT_ROOT, else /var/lib/pyrt for root, $XDG_DATA_HOME/pyrt (default
    ~/.local/share/pyrt) for an ordinary user."""
    if os.environ.get("PYRT_ROOT"):
        return os.environ["PYRT_ROOT"]
    if os.geteuid() == 0:
        return ROOT_STORE
    data = os.environ.get("XDG_DATA_HOME")
    if not data or not os.path.isabs(data):
        data = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "pyrt")


def _who(uid: int) -> str:
    try:
        import pwd
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def in_user_namespace() -> bool:
    """In a user namespace other than the host's (which maps every id to itself)?"""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def host_uid() -> int:
    """This process's effective uid as the host sees it (through every user
    namespace it is in, read from /proc/self/uid_map)."""
    uid = os.geteuid()
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, outside, count = map(int, line.split())
                if inside <= uid < inside + count:
                    return outside + uid - inside
    except (OSError, ValueError):
        pass
    return uid


def ordinary_user() -> bool:
    """Does this process have an ordinary user's powers over the host (cgroups,
    devices)? An ordinary user, or root of a user namespace (rootless podman and
    containerd run the OCI runtime so)."""
    return os.geteuid() != 0 or in_user_namespace()


def _overflow_uid() -> int:
    """The uid that ids without a mapping show as (65534 unless changed)."""
    try:
        with open("/proc/sys/kernel/overflowuid") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65534


def check_private_dir(path: str, what: str = "directory", create: bool = True) -> str:
    """For an ordinary user: `path` (made 0700 when missing) resolved, checked to
    be a directory it owns, whose every ancestor only it or root can change
    (or is sticky, as /tmp; in a user namespace the host's root shows as the
    overflow uid); made 0700 if it was more open. Returns the real path.
    Raises UnsafeDirectory naming the directory and its owner."""
    uid = os.geteuid()
    if create:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    real = os.path.realpath(path)
    shown = path if real == os.path.abspath(path) else f"{real} (from {path})"
    st = os.stat(real)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{what} {shown} is not a directory")
    if st.st_uid != uid:
        raise UnsafeDirectory(f"{what} {shown} is owned by {_who(st.st_uid)}, not by you ({_who(uid)}): "
                              "use a directory of your own (--root, PYRT_ROOT)")
    # in a user namespace the host's root is unmapped: its directories (/run,
    # /run/user) show as the overflow uid, which then counts as root
    trusted = (0, uid, _overflow_uid()) if in_user_namespace() else (0, uid)
    d = os.path.dirname(real)
    while True:
        a = os.stat(d)
        if a.st_uid not in trusted:
            raise UnsafeDirectory(f"{what} {shown} is inside {d}, owned by {_who(a.st_uid)}, who could "
                                  "replace it: use a directory of your own (--root, PYRT_ROOT)")
        if a.st_mode & 0o022 and not a.st_mode & stat.S_ISVTX:
            raise UnsafeDirectory(f"{what} {shown} is inside {d}, which others may write to (mode "
                                  f"{stat.S_IMODE(a.st_mode):o}): use a directory of your own")
        if d == "/":
            break
        d = os.path.dirname(d)
    if st.st_mode & 0o077:
        os.chmod(real, 0o700)
    return real


def runtime_dir() -> str:
    """The directory of runtime state (mount anchors, ...), made when missing:
    /run/pyrt for root; an ordinary user's $XDG_RUNTIME_DIR/pyrt, else
    /tmp/pyrt-UID, checked to be its own (check_private_dir)."""
    if os.geteuid() == 0:
        os.makedirs(ROOT_RUNTIME, mode=0o700, exist_ok=True)
        return ROOT_RUNTIME
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and os.path.isdir(base):
        try:
            return check_private_dir(os.path.join(base, "pyrt"), "runtime directory")
        except (OSError, UnsafeDirectory):
            pass  # an unusable $XDG_RUNTIME_DIR: the private one in /tmp
    # in /tmp anyone may have made the name first: a symlink there (to some
    # directory of the user's, which the ownership checks would accept) is refused
    tmp = os.path.join("/tmp", f"pyrt-{os.geteuid()}")
    try:
        os.mkdir(tmp, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(tmp)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"runtime directory {tmp} is not a directory (a symlink of {_who(st.st_uid)}?): "
                              "remove it, or set XDG_RUNTIME_DIR to a directory of your own")
    return check_private_dir(tmp, "runtime directory")
