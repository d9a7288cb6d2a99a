"""The host's cgroup layout (v1, v2 or hybrid: which hierarchy holds which
controller), read from /proc/self/mountinfo once per process."""
from __future__ import annotations

import _thread  # threading.Lock is _thread.allocate_lock (threading, re: measured, see _unescape)
import os

# The controllers pyrt sets limits with or reads accounting from.
KNOWN_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "io",
                     "devices", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc")


# -- the host's layout ---------------------------------------------------------------

def _unescape(field: str) -> str:
    if "\\" not in field:
        return field  # the usual: no re to import (`pyrt run --rootfs` needs it nowhere else)
    import re
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class Layout:
    """Where the cgroup hierarchies are: `unified` is the cgroup2 mount point (or
    None); `v1` maps each v1 controller to its hierarchy's mount point. `mode` is
    "v2", "v1", "hybrid" or "none"."""

    def __init__(self, unified=None, v1=None, v2_controllers=None):
        self.unified = unified
        self.v1 = dict(v1 or {})
        self._v2_controllers = None if v2_controllers is None else frozenset(v2_controllers)

    @property
    def mode(self) -> str:
        if self.unified and self.v1:
            return "hybrid"
        if self.unified:
            return "v2"
        return "v1" if self.v1 else "none"

    @property
    def v2_controllers(self) -> frozenset:
        """The controllers the cgroup2 hierarchy offers (its root's cgroup.controllers)."""
        if self._v2_controllers is None:
            ctrls = frozenset()
            if self.unified:
                try:
                    with open(os.path.join(self.unified, "cgroup.controllers")) as f:
                        ctrls = frozenset(f.read().split())
                except OSError:
                    pass
            self._v2_controllers = ctrls
        return self._v2_controllers

    def where(self, controller: str):
        """"v1", "v2" or None: where `controller` can be used."""
        if controller in self.v1:
            return "v1"
        if controller in self.v2_controllers:
            return "v2"
        return None

    def available(self) -> set:
        return set(self.v1) | set(self.v2_controllers)

    def v1_only(self) -> "Layout":
        """This layout without its cgroup2 part (as on a v1 host)."""
        return Layout(None, self.v1)

    def v2_only(self) -> "Layout":
        """This layout without its v1 hierarchies (as on a v2 host)."""
        return Layout(self.unified, None, self._v2_controllers)

    def describe(self) -> str:
        parts = []
        if self.v1:
            parts.append("cgroup v1: " + ", ".join(sorted(self.v1)))
        if self.unified:
            ctrls = ", ".join(sorted(self.v2_controllers)) or "none"
            parts.append(f"cgroup2 at {self.unified}: {ctrls}")
        return "; ".join(parts) or "no cgroup hierarchy is mounted"

    def __repr__(self):
        return f"<Layout {self.mode}: {self.describe()}>"


def parse_mountinfo(text: str, known=None) -> Layout:
    """A Layout from the text of /proc/self/mountinfo. `known`: the controller names
    (from /proc/cgroups); v1 super options naming other things are not controllers."""
    known = set(known) if known else set(KNOWN_CONTROLLERS)
    unified, v1 = None, {}
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        fstype, mountpoint, options = fields[sep + 1], _unescape(fields[4]), fields[sep + 3]
        if fstype == "cgroup2":
            # the first mount wins, except that one at /sys/fs/cgroup beats others
            if unified is None or mountpoint == "/sys/fs/cgroup":
                unified = mountpoint
        elif fstype == "cgroup":
            for opt in options.split(","):
                if opt in known and opt not in v1:
                    v1[opt] = mountpoint
    return Layout(unified, v1)


_LAYOUT = None
_layout_lock = _thread.allocate_lock()


def layout(refresh: bool = False) -> Layout:
    """This host's layout, detected once per process."""
    global _LAYOUT
    if _LAYOUT is None or refresh:
        with _layout_lock:
            if _LAYOUT is None or refresh:
                known = None
                try:
                    with open("/proc/cgroups") as f:
                        known = {ln.split()[0] for ln in f if ln.strip() and not ln.startswith("#")}
                except OSError:
                    pass
                with open("/proc/self/mountinfo") as f:
                    _LAYOUT = parse_mountinfo(f.read(), known)
    return _LAYOUT


def host_favors_dynmods(lay: Layout = None) -> bool:
    """Whether a cgroup hierarchy is mounted with `favordynmods`, which makes joining a
    v1 cgroup (writing cgroup.procs) cheap: the kernel then keeps its threadgroup
    lock in the mode where a migration needs no RCU grace period (the option is
    global in effect). Enable it with `mount -o remount,favordynmods <a cgroup mount>`."""
    lay = lay or layout()
    points = set(lay.v1.values()) | ({lay.unified} if lay.unified else set())
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-") if "-" in fields else -1
                if sep > 0 and _unescape(fields[4]) in points and \
                        "favordynmods" in fields[sep + 3].split(","):
                    return True
    except OSError:
        pass
    return False
