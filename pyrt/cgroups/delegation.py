"""Cgroups for an ordinary user (rootless pyrt).

Root may make cgroups anywhere. An ordinary user may only make them in a subtree
that systemd delegated to it: on a pure cgroup v2 host, `user@UID.service` (the
user's systemd instance, running while the user is logged in or has linger on)
delegates the cpu, memory and pids controllers by default. pyrt uses it as
podman does: a process of the user running inside that subtree (a desktop
session, `systemd-run --user`, a service of the user's own) gets each container a
transient scope of the user's systemd instance (pyrt.cgroups.systemd, on the
user's bus). Elsewhere (cgroup v1 or hybrid, no systemd, a process outside its
user's subtree such as one started by `su` or `runuser`) a container runs without
a cgroup of its own (nothing limited, usage from rusage), and a limit asked for
fails with one line that says how to get one."""
from __future__ import annotations

import os

from pyrt.errors import CgroupError

HOW_TO = ("cgroups for an ordinary user need cgroup v2 and a subtree systemd delegates to you, with pyrt run "
          "inside it: run as root: loginctl enable-linger {user}, then run pyrt in your session or with "
          "systemd-run --user --scope; for controllers beyond cpu, memory and pids, a Delegate= drop-in for "
          "user@.service")


def _own_cgroup() -> str | None:
    """This process's cgroup2 path (from /proc/self/cgroup), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def delegated_root() -> str | None:
    """The top of the cgroup2 subtree delegated to this (ordinary) user that this
    process is in (user.slice/user-UID.slice/user@UID.service), relative to the
    cgroup2 mount; None when there is none (or on a v1 or hybrid host)."""
    from pyrt.cgroups.layout import layout
    lay = layout()
    own = _own_cgroup()
    if lay.mode != "v2" or not lay.unified or not own or own == "/":
        return None
    from pyrt.paths import host_uid
    uid, top = os.geteuid(), None
    d = os.path.join(lay.unified, own.lstrip("/"))
    while os.path.normpath(d) != os.path.normpath(lay.unified):
        try:
            if os.stat(os.path.join(d, "cgroup.procs")).st_uid != uid:
                break
        except OSError:
            break
        top = d
        d = os.path.dirname(d)
    # (in a user namespace the files show as ours, the unit has the host's uid)
    if top is None or not top.endswith(f"user@{host_uid()}.service"):
        return None  # only systemd's delegation (its user instance makes the scopes)
    return os.path.relpath(top, lay.unified)


def usable() -> bool:
    """Whether this process may have cgroups made for its containers: root; an
    ordinary user (or root of a user namespace) inside its delegated subtree
    (delegated_root)."""
    from pyrt.paths import ordinary_user
    if not ordinary_user():
        return True
    return delegated_root() is not None


def require(what: str) -> None:
    """Raise the one-line CgroupError for `what` (a limit, stats, pause...) that
    an ordinary user without a delegated subtree cannot have."""
    if usable():
        return
    import errno
    import pwd

    from pyrt.paths import host_uid
    uid = host_uid()  # in a user namespace too: the user the host knows
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    raise CgroupError(errno.EPERM, what, "", hint=HOW_TO.format(user=name))

