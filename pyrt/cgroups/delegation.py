"""Cgroups for an ordinary user (rootless pyrt).

Root may make cgroups anywhere. An ordinary user may only make them in a subtree
that systemd delegated to it: on a pure cgroup v2 host, `user@UID.service` (the
user's systemd instance, running while the user is logged in or has linger on)
delegates the cpu, memory and pids controllers by default. Without such a
subtree a container runs without a cgroup of its own (nothing limited, usage
from rusage), and a limit asked for fails with one line that says how to get
one."""
from __future__ import annotations

import os

from pyrt.errors import CgroupError

HOW_TO = ("cgroups for an ordinary user need cgroup v2 with a subtree systemd delegates to you: "
          "run as root: loginctl enable-linger {user} (then log in again); "
          "for controllers beyond cpu, memory and pids, a Delegate= drop-in for user@.service")


def usable() -> bool:
    """Whether this process may make cgroups for its containers: root where a
    hierarchy is mounted; an ordinary user never yet (no delegated subtree is
    looked for)."""
    if os.geteuid() == 0:
        return True
    return False


def require(what: str) -> None:
    """Raise the one-line CgroupError for `what` (a limit, stats, pause...) that
    an ordinary user without a delegated subtree cannot have."""
    if usable():
        return
    import errno
    import pwd
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = str(os.getuid())
    raise CgroupError(errno.EPERM, what, "", hint=HOW_TO.format(user=name))
