"""cgroups: resource limits, accounting, freezing and killing, on cgroup v1, v2 and
hybrid hosts.

    limits = Limits(memory="256m", cpus=1.5, cpuset_cpus="0", pids_limit=100)
    if not limits.empty():
        cg = Cgroup.create(container_id, limits)      # pyrt/<id> in every hierarchy it needs
    p = pyrt.spawn(argv, rootfs, cgroup=cg)           # joined during the spawn
    cg.stats(); cg.oom_killed(); cg.freeze(); cg.thaw(); cg.kill_all(); cg.remove()

Layouts (detected once per process from /proc/self/mountinfo):
- v2: one cgroup2 hierarchy; the container's controllers are enabled in the
  `cgroup.subtree_control` of every ancestor and the child is cloned straight
  into its cgroup (CLONE_INTO_CGROUP): joining costs nothing.
- v1: one hierarchy per controller (or group of co-mounted controllers); the
  parent writes the child's pid into each `cgroup.procs` before it goes on.
- hybrid: v1 controllers plus a cgroup2 mount (often /sys/fs/cgroup/unified)
  that holds no (or few) controllers. The cgroup2 part is always used (it is
  free to join and gives cpu usage, cgroup.kill and cgroup.freeze); a v1
  hierarchy is joined only for a controller a limit needs (or that `accounting=`
  asks for).

Joining a v1 cgroup (writing cgroup.procs) makes the kernel wait for an RCU grace
period (the cgroup_threadgroup_rwsem switches to its slow mode; 5-13 ms on an
idle machine) unless another migration happened a few ms before, or the cgroup
hierarchies are mounted with `favordynmods` (`host_favors_dynmods()` tells).
CLONE_INTO_CGROUP (v2) has no such cost. So no cgroup is made when no limit is
set (`Limits.empty()`: the caller decides), and on hybrid hosts only the v1
hierarchies the limits need are joined.

Every path is `<mount>/<parent>/<name>`, relative to the root of each hierarchy as
this process's mount namespace shows it (docker's cgroupfs driver does the same
with /docker/<id>). The state lives in the filesystem: `Cgroup.open(name)`
finds a cgroup another process created.

This module holds the cgroup handle; the limits and their parsing are in limits.py,
the host's layout in layout.py.
"""
from __future__ import annotations

import _thread
import errno as _errno
import os
import time

from pyrt import _core
from pyrt.cgroups.devices import DEFAULT_RULES, v1_lines
from pyrt.cgroups.layout import KNOWN_CONTROLLERS, Layout, host_favors_dynmods, layout
from pyrt.cgroups.limits import Limits, format_cpuset, parse_cpuset
from pyrt.errors import CgroupError, Conflict, ControllerUnavailable, InvalidArgument  # noqa: F401  (re-exported)
from pyrt.errors import SpawnError
# the rest of the cgroup API, whose home is limits.py
from pyrt.cgroups.limits import CPU_PERIOD, cpu_shares_to_weight, parse_bytes  # noqa: F401  (re-exported)

__all__ = [
    "Limits", "Cgroup", "Layout", "layout", "parse_bytes", "parse_cpuset", "format_cpuset",
    "CgroupError", "ControllerUnavailable", "cpu_shares_to_weight", "host_favors_dynmods",
    "prune",
]
__all__ += ["CPU_PERIOD"]  # pyrt.ocirt.spec imports it from here

_UNLIMITED_V1 = 1 << 62               # v1 memory/limit files say PAGE_COUNTER_MAX*PAGE_SIZE when unset

# re, signal and threading are imported where needed (or not at all): `pyrt run --rootfs`
# makes a cgroup without them, and importing them costs more than that run (measured).
_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_NAME_REST = _NAME_FIRST | frozenset(".:@-")

_host_layout = layout  # for functions whose `layout` argument hides the function


# -- file helpers --------------------------------------------------------------------

def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(e.errno, "open", path) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise CgroupError(e.errno, f"write {value!r} to", path) from None
    finally:
        os.close(fd)


def _read(path: str):
    """The file's text, or None when it does not exist."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _read_int(path: str):
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED_V1 else value


def _read_keyed(path: str) -> dict:
    """'key value' lines -> {key: int}; {} when the file does not exist."""
    text = _read(path)
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"invalid cgroup {what} {name!r}")
    for part in name.split("/"):
        if not (part and part[0] in _NAME_FIRST and _NAME_REST.issuperset(part)) or part in (".", ".."):
            raise InvalidArgument(f"invalid cgroup {what} {name!r}: use letters, digits and _ . - "
                                  "(and / between the levels of a parent)")


def _rmdir(path: str, deadline: float) -> None:
    """rmdir, retrying while the cgroup still empties (EBUSY)."""
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != _errno.EBUSY or time.monotonic() >= deadline:
                raise CgroupError(e.errno, "remove cgroup", path,
                                  "it still has processes" if e.errno == _errno.EBUSY else "") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# -- a cgroup ------------------------------------------------------------------------

STAT_KEYS = (
    "cpu_usage_ns", "cpu_user_ns", "cpu_system_ns",
    "cpu_nr_periods", "cpu_nr_throttled", "cpu_throttled_ns",
    "memory_usage", "memory_peak", "memory_limit", "memory_cache",
    "pids_current", "pids_limit", "oom_kill",
)


class Cgroup:
    """One container's cgroup: a directory per hierarchy it uses.

    `v2_dir`: its cgroup2 directory (or None); `v1_dirs`: {controller: directory}
    for the v1 hierarchies it joined (co-mounted controllers share a directory)."""

    def __init__(self, name, parent, lay, v2_dir, v1_dirs, limits=None):
        self.name, self.parent, self.layout = name, parent, lay
        self.path = f"{parent}/{name}"
        self.v2_dir = v2_dir
        self.v1_dirs = dict(v1_dirs)
        self.limits = limits
        self._lock = _thread.allocate_lock()  # threading.Lock
        self._fds = None
        self._fd_users = 0

    # -- making and finding ----------------------------------------------------------
    @classmethod
    def create(cls, name, limits=None, parent="pyrt", *, layout=None, accounting=(),
               devices="default") -> "Cgroup":
        """Create `<parent>/<name>` in every hierarchy the limits need (plus the
        cgroup2 one when there is one, and those named in `accounting`, e.g.
        ("memory",) for peak memory on a hybrid host) and write the limits. A leftover
        empty cgroup of that name is replaced; one with processes is a Conflict.
        Nothing is left behind on failure.

        devices: the device allow-list (see pyrt.cgroups.devices): "default" (docker's
        list, pyrt.cgroups.devices.DEFAULT_RULES), a list of rules, or None to leave
        devices alone. Where the cgroup has a cgroup2 directory (v2 and hybrid
        hosts) an eBPF program enforces it (free to join; on a hybrid host the v1
        devices controller is used instead only when the eBPF program cannot be
        loaded, or when "devices" is in `accounting`); on a v1 host the devices
        controller does."""
        _check_name(name, "name")
        if parent:  # "": at the root of each hierarchy
            _check_name(parent, "parent")
        if "/" in name:
            raise InvalidArgument(f"invalid cgroup name {name!r}: no '/' (nest with parent=)")
        limits = limits if limits is not None else Limits()
        lay = layout or _host_layout()
        if lay.mode == "none":
            if limits.controllers():
                raise ControllerUnavailable(sorted(limits.controllers())[0], "no cgroup hierarchy is mounted")
            raise CgroupError(_errno.ENODEV, "create cgroup", f"{parent}/{name}", "no cgroup hierarchy is mounted")
        for c in accounting:
            if c not in KNOWN_CONTROLLERS:
                raise InvalidArgument(f"unknown cgroup controller {c!r} in accounting")
        # Accounting is read where the host has it, never a reason to refuse: on
        # cgroup2 cpu.stat is in every cgroup, so "cpuacct" (a v1 name) needs nothing.
        need = set(limits.controllers()) | {c for c in accounting if lay.where(c) is not None}
        v1_ctrls, v2_ctrls = set(), set()
        for c in sorted(need):
            where = lay.where(c)
            if where is None and c == "blkio" and lay.where("io") == "v2":
                c, where = "io", "v2"  # the block I/O controller's cgroup2 name
            if where is None:
                raise ControllerUnavailable(c, lay.describe())
            (v1_ctrls if where == "v1" else v2_ctrls).add(c)
        if lay.unified:
            # joining v2 is free: account memory, pids and cpu there when it can
            v2_ctrls |= {"memory", "pids", "cpu"} & set(lay.v2_controllers)
            v2_ctrls -= set(lay.v1)
        else:
            # a v1 host: the join is paid anyway, so track with every useful hierarchy
            v1_ctrls |= {"cpuacct", "memory", "pids", "freezer"} & set(lay.v1)
        _check_cpuset(limits, lay, parent)
        if isinstance(devices, str):
            if devices != "default":
                raise InvalidArgument(f"invalid devices {devices!r}: 'default', a list of rules or None")
            rules = list(DEFAULT_RULES)
        else:
            rules = None if devices is None else list(devices)
        if rules is not None and not lay.unified and "devices" in lay.v1:
            v1_ctrls.add("devices")

        made = []  # directories created, for the rollback
        try:
            v2_dir = None
            if lay.unified:
                v2_dir = _make_v2(lay, parent, name, sorted(v2_ctrls), made)
            v1_dirs = {}
            by_mount = {}
            for c in sorted(v1_ctrls):
                by_mount.setdefault(lay.v1[c], []).append(c)
            for mount, ctrls in sorted(by_mount.items()):
                d = _make_v1(mount, parent, name, "cpuset" in ctrls, made)
                for c in ctrls:
                    v1_dirs[c] = d
            cg = cls(name, parent, lay, v2_dir, v1_dirs, limits)
            for ctrl, fname, value, optional in limits.v1_settings():
                if ctrl in v1_dirs:
                    cg._set(v1_dirs[ctrl], fname, value, optional)
            for ctrl, fname, value, optional in limits.v2_settings():
                if ctrl in v2_ctrls:
                    cg._set(v2_dir, fname, value, optional)
            if rules is not None:
                try:
                    cg.set_devices(rules)
                except CgroupError as e:
                    # no cgroup bpf (an old kernel, or bpf() refused): the v1 devices
                    # controller, when there is one
                    if "devices" in v1_dirs or "devices" not in lay.v1 or \
                            e.errno not in (_errno.EINVAL, _errno.ENOSYS, _errno.EOPNOTSUPP, _errno.EPERM):
                        if not e.hint:
                            e.hint = ("the device allow-list is an eBPF program on cgroup2; "
                                      "devices=None makes the cgroup without it")
                        raise
                    cg.v1_dirs["devices"] = v1_dirs["devices"] = _make_v1(lay.v1["devices"], parent, name,
                                                                        False, made)
                    cg.set_devices(rules)
        except BaseException:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise
        return cg

    @classmethod
    def open(cls, name, parent="pyrt", *, layout=None) -> "Cgroup":
        """The existing cgroup `<parent>/<name>` (made by any process)."""
        _check_name(name, "name")
        if parent:  # "": at the root of each hierarchy
            _check_name(parent, "parent")
        lay = layout or _host_layout()
        v2_dir = None
        if lay.unified:
            d = os.path.join(lay.unified, parent, name)
            if os.path.isdir(d):
                v2_dir = d
        v1_dirs = {}
        for c, mount in lay.v1.items():
            d = os.path.join(mount, parent, name)
            if os.path.isdir(d):
                v1_dirs[c] = d
        if v2_dir is None and not v1_dirs:
            raise CgroupError(_errno.ENOENT, "open cgroup", f"{parent}/{name}")
        return cls(name, parent, lay, v2_dir, v1_dirs)

    @classmethod
    def exists(cls, name, parent="pyrt", *, layout=None) -> bool:
        try:
            cls.open(name, parent, layout=layout)
            return True
        except CgroupError:
            return False

    def _set(self, d, fname, value, optional):
        path = os.path.join(d, fname)
        if optional and not os.path.exists(path):
            return
        _write(path, value)

    def set_devices(self, rules):
        """Enforce a device allow-list (rules as in pyrt.cgroups.devices) on this cgroup:
        through the v1 devices controller when it joined that hierarchy, else by
        an eBPF program attached to its cgroup2 directory (programs attached
        earlier stay: every one of them must allow). Returns "v1", "bpf", or None
        when neither is possible (no devices hierarchy and no cgroup2; or an
        unprivileged user, who may not load the program, but then the container
        is in a user namespace where device nodes cannot be made)."""
        if "devices" in self.v1_dirs:
            d = self.v1_dirs["devices"]
            for fname, line in v1_lines(rules):
                _write(os.path.join(d, fname), line)
            return "v1"
        if not self.v2_dir:
            return None
        try:
            fd = os.open(self.v2_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise CgroupError(e.errno, "open cgroup", self.v2_dir) from None
        try:
            _core.devices_attach(fd, self.v2_dir, [tuple(r) for r in rules])
        except SpawnError as e:
            if e.errno == _errno.EPERM and os.geteuid() != 0:
                return None
            raise CgroupError(e.errno, e.op, e.path) from None
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        finally:
            os.close(fd)
        return "bpf"

    # -- where things are ------------------------------------------------------------
    @property
    def dirs(self) -> list:
        """Every directory of this cgroup (cgroup2 first)."""
        out = [self.v2_dir] if self.v2_dir else []
        for d in self.v1_dirs.values():
            if d not in out:
                out.append(d)
        return out

    @property
    def _v1_unique(self) -> list:
        out = []
        for d in self.v1_dirs.values():
            if d not in out:
                out.append(d)
        return out

    def _v2_has(self, fname) -> bool:
        return self.v2_dir is not None and os.path.exists(os.path.join(self.v2_dir, fname))

    @property
    def oom_path(self):
        """The file that counts OOM kills in this cgroup (the `oom_kill N` line):
        v1 memory.oom_control or v2 memory.events; None without memory accounting."""
        if "memory" in self.v1_dirs:
            return os.path.join(self.v1_dirs["memory"], "memory.oom_control")
        if self._v2_has("memory.events"):
            return os.path.join(self.v2_dir, "memory.events")
        return None

    # -- joining ---------------------------------------------------------------------
    def spawn_fds(self):
        """(cgroup2 directory fd or -1, [v1 cgroup.procs fds]) for the spawn core,
        which clones the child into the cgroup2 directory (CLONE_INTO_CGROUP) and
        writes its pid into each v1 cgroup.procs. The fds belong to this object: each
        call must be paired with a close_fds() once the spawn is over (they are
        shared by concurrent spawns and closed when the last one is done; remove()
        closes them in any case)."""
        with self._lock:
            if self._fds is None:
                v2 = -1
                procs = []
                try:
                    if self.v2_dir:
                        v2 = os.open(self.v2_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    for d in self._v1_unique:
                        path = os.path.join(d, "cgroup.procs")
                        procs.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
                except OSError as e:
                    for fd in procs + ([v2] if v2 >= 0 else []):
                        os.close(fd)
                    raise CgroupError(e.errno, "open cgroup", e.filename or self.path) from None
                self._fds = (v2, procs)
            self._fd_users += 1
            return self._fds[0], list(self._fds[1])

    def close_fds(self, force: bool = False) -> None:
        """Release the fds of one spawn_fds() call (all of them with force=True)."""
        with self._lock:
            self._fd_users = 0 if force else max(0, self._fd_users - 1)
            if self._fd_users == 0 and self._fds is not None:
                v2, procs = self._fds
                self._fds = None
                for fd in procs + ([v2] if v2 >= 0 else []):
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def add(self, pid: int) -> None:
        """Move an existing process into this cgroup (every hierarchy)."""
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    # -- looking ---------------------------------------------------------------------
    def procs(self) -> list:
        """The pids in this cgroup (from its cgroup2 directory when it has one)."""
        seen = []
        for d in ([self.v2_dir] if self.v2_dir else self._v1_unique):
            text = _read(os.path.join(d, "cgroup.procs"))
            for line in (text or "").split():
                pid = int(line)
                if pid not in seen:
                    seen.append(pid)
        return seen

    def oom_kill_count(self):
        """How many processes the OOM killer ended in this cgroup (None without
        memory accounting)."""
        path = self.oom_path
        if path is None:
            return None
        return _read_keyed(path).get("oom_kill", 0)

    def oom_killed(self) -> bool:
        """Whether the OOM killer ended a process here since the cgroup was made."""
        return bool(self.oom_kill_count())

    def stats(self) -> dict:
        """Accounting, as a dict with the keys of STAT_KEYS (None where the host or
        this cgroup's hierarchies do not tell): cpu_usage_ns/user/system, cpu
        throttling (nr_periods, nr_throttled, throttled_ns), memory_usage, _peak,
        _limit (None = unlimited), _cache (inactive file pages, which docker
        subtracts from usage), pids_current, pids_limit, oom_kill."""
        s = dict.fromkeys(STAT_KEYS)
        v1 = self.v1_dirs
        # cpu usage: v2's cpu.stat needs no controller; else v1 cpuacct
        cpu2 = _read_keyed(os.path.join(self.v2_dir, "cpu.stat")) if self.v2_dir else {}
        if "usage_usec" in cpu2:
            s["cpu_usage_ns"] = cpu2["usage_usec"] * 1000
            s["cpu_user_ns"] = cpu2.get("user_usec", 0) * 1000
            s["cpu_system_ns"] = cpu2.get("system_usec", 0) * 1000
        elif "cpuacct" in v1:
            d = v1["cpuacct"]
            s["cpu_usage_ns"] = _read_int(os.path.join(d, "cpuacct.usage"))
            user = _read_int(os.path.join(d, "cpuacct.usage_user"))
            system = _read_int(os.path.join(d, "cpuacct.usage_sys"))
            if user is None:
                ticks = _read_keyed(os.path.join(d, "cpuacct.stat"))
                hz = os.sysconf("SC_CLK_TCK")
                if ticks:
                    user = ticks.get("user", 0) * 1_000_000_000 // hz
                    system = ticks.get("system", 0) * 1_000_000_000 // hz
            total = s["cpu_usage_ns"]
            if user is not None and system is not None and total is not None:
                # v1 splits by sampling at ticks: scale the split to the precise total, as
                # the kernel does for v2's cpu.stat and /proc/PID/stat (cputime_adjust)
                if user + system > 0:
                    user = total * user // (user + system)
                    system = total - user
                else:
                    user, system = total, 0
            s["cpu_user_ns"], s["cpu_system_ns"] = user, system
        # cpu throttling: where the cpu controller is
        if "cpu" in v1:
            st = _read_keyed(os.path.join(v1["cpu"], "cpu.stat"))
            if st:
                s["cpu_nr_periods"] = st.get("nr_periods")
                s["cpu_nr_throttled"] = st.get("nr_throttled")
                s["cpu_throttled_ns"] = st.get("throttled_time")
        elif "nr_throttled" in cpu2:
            s["cpu_nr_periods"] = cpu2.get("nr_periods")
            s["cpu_nr_throttled"] = cpu2.get("nr_throttled")
            s["cpu_throttled_ns"] = cpu2.get("throttled_usec", 0) * 1000
        # memory
        if "memory" in v1:
            d = v1["memory"]
            s["memory_usage"] = _read_int(os.path.join(d, "memory.usage_in_bytes"))
            s["memory_peak"] = _read_int(os.path.join(d, "memory.max_usage_in_bytes"))
            s["memory_limit"] = _read_int(os.path.join(d, "memory.limit_in_bytes"))
            st = _read_keyed(os.path.join(d, "memory.stat"))
            s["memory_cache"] = st.get("total_inactive_file", st.get("inactive_file"))
            s["oom_kill"] = _read_keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)
        elif self._v2_has("memory.current"):
            d = self.v2_dir
            s["memory_usage"] = _read_int(os.path.join(d, "memory.current"))
            s["memory_peak"] = _read_int(os.path.join(d, "memory.peak"))
            s["memory_limit"] = _read_int(os.path.join(d, "memory.max"))
            s["memory_cache"] = _read_keyed(os.path.join(d, "memory.stat")).get("inactive_file")
            s["oom_kill"] = _read_keyed(os.path.join(d, "memory.events")).get("oom_kill", 0)
        # pids
        d = v1.get("pids") or (self.v2_dir if self._v2_has("pids.current") else None)
        if d:
            s["pids_current"] = _read_int(os.path.join(d, "pids.current"))
            s["pids_limit"] = _read_int(os.path.join(d, "pids.max"))
        return s

    # -- freezing --------------------------------------------------------------------
    def _freezer(self):
        if self._v2_has("cgroup.freeze"):
            return "v2"
        if "freezer" in self.v1_dirs:
            return "v1"
        raise ControllerUnavailable("freezer", "this cgroup has no cgroup.freeze and no v1 freezer")

    def frozen(self) -> bool:
        if self._freezer() == "v2":
            return _read_keyed(os.path.join(self.v2_dir, "cgroup.events")).get("frozen") == 1
        return (_read(os.path.join(self.v1_dirs["freezer"], "freezer.state")) or "").strip() == "FROZEN"

    def freeze(self, timeout: float = 10.0) -> None:
        """Stop every process of the cgroup, and wait until they all are."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 10.0) -> None:
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        kind = self._freezer()
        if kind == "v2":
            path = os.path.join(self.v2_dir, "cgroup.freeze")
            _write(path, "1" if frozen else "0")
        else:
            path = os.path.join(self.v1_dirs["freezer"], "freezer.state")
            _write(path, "FROZEN" if frozen else "THAWED")
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while self.frozen() != frozen:
            if time.monotonic() >= deadline:
                raise CgroupError(_errno.ETIMEDOUT, "freeze" if frozen else "thaw", path)
            if kind == "v1" and frozen:  # v1 retries a freeze that met a busy task on write
                _write(path, "FROZEN")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # -- killing and removing --------------------------------------------------------
    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the cgroup and wait until it is empty (the
        caller still reaps its own children). Uses cgroup.kill when the kernel has
        it; else freezes (when it can), signals each pid through a pidfd, thaws, and
        repeats until none is left."""
        deadline = time.monotonic() + timeout
        if self._v2_has("cgroup.kill"):
            _write(os.path.join(self.v2_dir, "cgroup.kill"), "1")
        else:
            self._kill_v1(deadline)
        delay = 0.0005
        while self.procs():
            if time.monotonic() >= deadline:
                raise CgroupError(_errno.ETIMEDOUT, "kill the processes of", self.dirs[0],
                                  f"left: {self.procs()[:10]}")
            if not self._v2_has("cgroup.kill"):
                self._kill_v1(deadline)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _kill_v1(self, deadline) -> None:
        import signal
        can_freeze = "freezer" in self.v1_dirs or self._v2_has("cgroup.freeze")
        if can_freeze:
            try:
                self.freeze(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            except CgroupError:
                pass  # signal them anyway
        try:
            for _ in range(100):
                pids = self.procs()
                if not pids:
                    break
                hit = 0
                for pid in pids:
                    try:
                        pidfd = os.pidfd_open(pid)
                    except OSError:
                        continue  # gone already
                    try:
                        # still ours? (the pid may have been reused before pidfd_open)
                        if pid in self.procs():
                            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                            hit += 1
                    except OSError:
                        pass
                    finally:
                        os.close(pidfd)
                if not can_freeze or hit == 0:
                    break
                if set(self.procs()) <= set(pids):
                    break  # nothing new forked in; the rest die once thawed
        finally:
            if can_freeze:
                try:
                    self.thaw(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                except CgroupError:
                    pass

    def remove(self, timeout: float = 10.0) -> None:
        """Remove the cgroup from every hierarchy (killing what is still in it
        first). Removing a cgroup that is gone already is not an error."""
        self.close_fds(force=True)
        deadline = time.monotonic() + timeout
        if any(os.path.isdir(d) for d in self.dirs) and self.procs():
            self.kill_all(timeout)
        for d in self.dirs:
            _rmdir(d, deadline)
        from pyrt.cgroups import systemd as cgroup_systemd  # on use: it loads subprocess
        if cgroup_systemd.is_scope(self.parent):  # and the scope systemd made for it
            cid = self.parent.rsplit("/pyrt-", 1)[1][:-len(".scope")]
            cgroup_systemd.stop(cid, self.layout.unified)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def __del__(self):
        if getattr(self, "_fds", None) is not None:
            self.close_fds(force=True)

    def __repr__(self):
        return f"<Cgroup {self.parent}/{self.name} ({self.layout.mode}): {', '.join(self.dirs)}>"


# -- making directories --------------------------------------------------------------

def _mkdir_parents(mount: str, parent: str, made: list, on_new=None) -> str:
    """Create each level of `parent` under `mount` (kept afterwards: shared by every
    cgroup under it); returns its path."""
    d = mount
    for part in parent.split("/"):
        d = os.path.join(d, part)
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            pass
        except OSError as e:
            raise CgroupError(e.errno, "create cgroup", d) from None
        if on_new:
            on_new(d)
    return d


def _fresh_dir(path: str, made: list) -> None:
    """mkdir the container's cgroup; an empty leftover of the same name is replaced."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        procs = _read(os.path.join(path, "cgroup.procs")) or ""
        if procs.split():
            raise Conflict(f"cgroup {path} already exists and has processes") from None
        try:
            os.rmdir(path)
            os.mkdir(path, 0o755)
        except OSError as e:
            raise CgroupError(e.errno, "replace leftover cgroup", path) from None
    except OSError as e:
        raise CgroupError(e.errno, "create cgroup", path) from None
    made.append(path)


def _cpuset_fill(d: str) -> None:
    """A v1 cpuset cgroup starts with empty cpus and mems (and then takes no task):
    copy them from its parent when they are empty."""
    up = os.path.dirname(d)
    for fname in ("cpuset.cpus", "cpuset.mems"):
        path = os.path.join(d, fname)
        if not (_read(path) or "").strip():
            _write(path, (_read(os.path.join(up, fname)) or "").strip() or "\n")


def _make_v1(mount, parent, name, cpuset, made) -> str:
    up = _mkdir_parents(mount, parent, made, _cpuset_fill if cpuset else None)
    d = os.path.join(up, name)
    _fresh_dir(d, made)
    if cpuset:
        _cpuset_fill(d)
    return d


def _make_v2(lay, parent, name, ctrls, made) -> str:
    """Create the cgroup2 directory with `ctrls` enabled in every ancestor's
    cgroup.subtree_control."""
    d = lay.unified
    levels = [d]
    for part in parent.split("/"):
        d = os.path.join(d, part)
        levels.append(d)
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            pass
        except OSError as e:
            raise CgroupError(e.errno, "create cgroup", d) from None
    if ctrls:
        for level in levels:
            path = os.path.join(level, "cgroup.subtree_control")
            enabled = set((_read(path) or "").split())
            for c in ctrls:
                if c in enabled:
                    continue
                try:
                    _write(path, f"+{c}")
                except CgroupError as e:
                    if e.errno == _errno.EBUSY:
                        e.hint = (f"cannot enable the '{c}' controller below {level}: it has processes "
                                  "of its own (cgroup v2's no-internal-processes rule)")
                    elif e.errno == _errno.ENOENT or e.errno == _errno.EINVAL:
                        raise ControllerUnavailable(c, f"not offered to {level}") from None
                    raise
    path = os.path.join(d, name)
    _fresh_dir(path, made)
    return path


def _effective(lay: Layout, parent: str, ctrl_file_v1: str, ctrl_file_v2: str):
    """The parent's effective cpuset (cpus or mems) as a set, from the nearest
    existing level of `parent` in the hierarchy that holds cpuset."""
    where = lay.where("cpuset")
    if where == "v1":
        base, fnames = lay.v1["cpuset"], (ctrl_file_v1.replace("cpuset.", "cpuset.effective_"), ctrl_file_v1)
    elif where == "v2":
        base, fnames = lay.unified, (ctrl_file_v2 + ".effective",)
    else:
        return None
    parts = parent.split("/")
    for i in range(len(parts), -1, -1):
        d = os.path.join(base, *parts[:i])
        for fname in fnames:
            text = (_read(os.path.join(d, fname)) or "").strip()
            if text:
                return parse_cpuset(text)
    return None


def _check_cpuset(limits: Limits, lay: Layout, parent: str) -> None:
    for value, kind, f1, f2, label in (
            (limits.cpuset_cpus, "CPUs", "cpuset.cpus", "cpuset.cpus", "cpuset cpus"),
            (limits.cpuset_mems, "memory nodes", "cpuset.mems", "cpuset.mems", "cpuset mems")):
        if value is None:
            continue
        available = _effective(lay, parent, f1, f2)
        if available is None:
            continue
        wanted = parse_cpuset(value, label)
        if not wanted <= available:
            raise InvalidArgument(f"invalid {label} {value!r}: requested {kind} are not available - "
                                  f"requested {value}, available: {format_cpuset(available)}")


def prune(parent="pyrt", *, layout=None, remove_parent=False, timeout: float = 2.0) -> list:
    """Remove every cgroup under `parent` that has no process (leftovers of crashed
    runs), in every hierarchy; with remove_parent=True, the parent levels too
    when they end up empty. Returns the directories removed. Do not call it while
    another process may be between creating a cgroup and spawning into it."""
    _check_name(parent, "parent")
    lay = layout or _host_layout()
    mounts = sorted(set(lay.v1.values()) | ({lay.unified} if lay.unified else set()))
    removed = []
    deadline = time.monotonic() + timeout
    for mount in mounts:
        top = os.path.join(mount, parent)
        if not os.path.isdir(top):
            continue
        for root, dirs, _files in os.walk(top, topdown=False):
            for dname in dirs:
                d = os.path.join(root, dname)
                if (_read(os.path.join(d, "cgroup.procs")) or "").split():
                    continue
                try:
                    _rmdir(d, deadline)
                    removed.append(d)
                except CgroupError:
                    pass
        if remove_parent:
            parts = parent.split("/")
            for i in range(len(parts), 0, -1):
                d = os.path.join(mount, *parts[:i])
                try:
                    os.rmdir(d)
                    removed.append(d)
                except OSError:
                    break
    return removed
