"""A warm pool of parked containers, and measured runs.

    with pyrt.Pool(image="bench:1", size=8, memory="256m", cpuset="1") as pool:
        r = pool.run(["python3", "-c", "print(42)"])      # r.returncode, r.stdout, r.usage
        results = pool.map(["wc", "-c"], [b"a", b"bb"])   # each input as stdin
    pyrt.Pool(rootfs="/srv/rootfs", size=4)              # a plain rootfs directory works too

A pool keeps `size` children parked in C (csrc/pool.c): each is cloned into its
namespaces, with its overlay mounted over a fresh volatile tmpfs upper, /proc, /sys,
/dev, pivot_root, hostname, lo, rlimits and cgroups done, waiting on a socket. `run`
hands one its argv, env, cwd and stdio and it execs; every child serves exactly one
command and is then torn down (its tmpfs upper, mounts and namespaces die with it),
and a background thread parks the next one. No Python runs in any child.

Every completed run reports `usage` (a Usage): wall time from the hand-over to the
exit seen here, user and system CPU time (from the container's cgroup, so its
children count; else from rusage), peak memory (the cgroup's memory peak), context
switches, CPU throttling, OOM kills. The "bench" profile (`profile="bench"`) pins to
a cpuset with no CPU quota, sets a memory limit with no swap, no network, a fixed
hostname and environment, and adds a noise note to each run.
"""
from __future__ import annotations

import collections
import itertools
import os
import secrets
import threading
import time

from pyrt import _core
from pyrt.errors import InvalidArgument, PoolClosed, SpawnError
from pyrt.launch.process import DEFAULT_PATH

__all__ = ["Pool", "Usage", "arun", "run", "PROFILES"]

_DEVNULL = None
_devnull_lock = threading.Lock()


def _devnull() -> int:
    """One /dev/null fd for the whole process: the parked children's stdio."""
    global _DEVNULL
    if _DEVNULL is None:
        with _devnull_lock:
            if _DEVNULL is None:
                _DEVNULL = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _DEVNULL


# -- profiles ------------------------------------------------------------------------

BENCH_ENV = {
    "PATH": DEFAULT_PATH,
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "PYTHONHASHSEED": "0",
}

# What a profile sets (the caller's explicit arguments win, except where noted).
PROFILES = {
    "bench": {
        "network": "none",
        "hostname": "bench",
        "memory": "1g",            # with memory_swap = memory: no swap
        "measure": True,
        "noise": True,
        "env": BENCH_ENV,          # fixed: the caller's env= adds to it
    },
}


def _default_bench_cpuset() -> str:
    """The last CPU this process may use (the first is where the system tends to
    put its own work)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except OSError:
        cpus = list(range(os.cpu_count() or 1))
    return str(cpus[-1])


# -- usage ---------------------------------------------------------------------------

class Usage:
    """What one run cost. Times in seconds, memory in bytes; None where the host
    (or the pool's settings) cannot tell.

    wall            hand-over of the command to its exit seen by the caller
    user, system    CPU time of the command and all its children (the split is
                    sampled at clock ticks, as the kernel does: for runs of a few
                    ms it may all land on one side; the sum is exact)
    cpu             user + system
    peak_memory     the container's memory peak (its cgroup's)
    nvcsw, nivcsw   voluntary and involuntary context switches (of the waited-for
                    processes, from rusage)
    throttled       CPU throttling events (periods a CPU quota stopped it); 0
                    without a quota
    throttled_time  time stopped by the quota
    cpu_wait        time the container's tasks were runnable but waited for a CPU
                    (its cgroup's cpu.pressure; read with noise notes, i.e. in the
                    bench profile), where the kernel tells
    oom_killed      whether the OOM killer ended a process of the container
    source          "cgroup" or "rusage": where the CPU times come from
    noise           notes on what may have disturbed the run (profile "bench"),
                    an empty list when nothing was seen
    """

    __slots__ = ("wall", "user", "system", "peak_memory", "nvcsw", "nivcsw", "throttled", "throttled_time",
                 "cpu_wait", "oom_killed", "source", "noise")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def cpu(self):
        if self.user is None or self.system is None:
            return None
        return self.user + self.system

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["cpu"] = self.cpu
        return d

    def __repr__(self):
        parts = []
        for k in ("wall", "user", "system"):
            v = getattr(self, k)
            if v is not None:
                parts.append(f"{k}={v * 1e3:.2f}ms")
        if self.peak_memory is not None:
            parts.append(f"peak_memory={self.peak_memory / 1048576:.1f}MiB")
        for k in ("nivcsw", "throttled", "oom_killed"):
            parts.append(f"{k}={getattr(self, k)}")
        if self.noise:
            parts.append(f"noise={self.noise!r}")
        return "Usage(" + ", ".join(parts) + ")"


def _keyed(data: bytes) -> dict:
    out = {}
    for line in data.split(b"\n"):
        k, _, v = line.partition(b" ")
        if v:
            try:
                out[k] = int(v)
            except ValueError:
                pass
    return out


def _pressure_total(data: bytes):
    """`total=` of the "some" line of a cpu.pressure file (microseconds)."""
    for line in data.split(b"\n"):
        if line.startswith(b"some "):
            for field in line.split():
                if field.startswith(b"total="):
                    return int(field[6:])
    return None


def _open(path, flags=os.O_RDONLY):
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError:
        return -1


def _pread(fd) -> bytes:
    try:
        return os.pread(fd, 4096, 0)
    except OSError:
        return b""


class _Meter:
    """The accounting files of one container's cgroup, opened once (while the
    child parks, off the run path) and read with pread after its exit. Baselines
    taken once the child parked leave its own setup out."""

    __slots__ = ("cpu_fd", "cpu_kind", "cpuacct_fd", "mem_fd", "mem_kind", "oom_fd", "thr_fd", "psi_fd",
                 "cpu0", "thr0", "oom0", "psi0")

    def __init__(self, cg, quota=True, pressure=True):
        """quota: a CPU quota is set (throttling is read); pressure: read the
        time spent waiting for a CPU (cpu.pressure)."""
        self.cpu_fd = self.cpuacct_fd = self.mem_fd = self.oom_fd = self.thr_fd = self.psi_fd = -1
        self.cpu_kind = self.mem_kind = None
        v1 = cg.v1_dirs
        if cg.v2_dir and os.path.exists(os.path.join(cg.v2_dir, "cpu.stat")):
            self.cpu_fd = _open(os.path.join(cg.v2_dir, "cpu.stat"))
            self.cpu_kind = "v2"
        elif "cpuacct" in v1:
            self.cpu_fd = _open(os.path.join(v1["cpuacct"], "cpuacct.usage"))
            self.cpuacct_fd = _open(os.path.join(v1["cpuacct"], "cpuacct.stat"))
            self.cpu_kind = "v1"
        if "memory" in v1:
            self.mem_fd = _open(os.path.join(v1["memory"], "memory.max_usage_in_bytes"), os.O_RDWR)
            self.oom_fd = _open(os.path.join(v1["memory"], "memory.oom_control"))
            self.mem_kind = "v1"
        elif cg.v2_dir and os.path.exists(os.path.join(cg.v2_dir, "memory.peak")):
            self.mem_fd = _open(os.path.join(cg.v2_dir, "memory.peak"), os.O_RDWR)
            self.oom_fd = _open(os.path.join(cg.v2_dir, "memory.events"))
            self.mem_kind = "v2"
        if quota and "cpu" in v1:
            self.thr_fd = _open(os.path.join(v1["cpu"], "cpu.stat"))
        elif quota and self.cpu_kind == "v2":
            self.thr_fd = self.cpu_fd  # nr_throttled is in v2's cpu.stat when the cpu controller is on
        if pressure and cg.v2_dir:
            self.psi_fd = _open(os.path.join(cg.v2_dir, "cpu.pressure"))
        self.cpu0 = self.thr0 = self.oom0 = self.psi0 = None

    def _cpu(self, st):
        """(user, system) in seconds since the cgroup was made (st: v2 cpu.stat)."""
        if self.cpu_kind == "v2":
            if b"usage_usec" in st:
                return st.get(b"user_usec", 0) / 1e6, st.get(b"system_usec", 0) / 1e6
        elif self.cpu_kind == "v1":
            try:
                total = int(_pread(self.cpu_fd).strip()) / 1e9
            except ValueError:
                return None
            ticks = _keyed(_pread(self.cpuacct_fd))
            u, s = ticks.get(b"user", 0), ticks.get(b"system", 0)
            if u + s == 0:
                return total, 0.0
            return total * u / (u + s), total * s / (u + s)  # scaled as the kernel does for v2
        return None

    def _throttle(self, st):
        if self.thr_fd < 0:
            return None
        if self.thr_fd != self.cpu_fd:
            st = _keyed(_pread(self.thr_fd))
        if b"nr_throttled" not in st:
            return None
        t = st.get(b"throttled_time")
        if t is None:
            t = st.get(b"throttled_usec", 0) * 1000
        return st[b"nr_throttled"], t / 1e9

    def _oom(self):
        return _keyed(_pread(self.oom_fd)).get(b"oom_kill", 0) if self.oom_fd >= 0 else None

    def _psi(self):
        return _pressure_total(_pread(self.psi_fd)) if self.psi_fd >= 0 else None

    def baseline(self):
        """Once the child parked: what its setup used, and a fresh memory peak."""
        st = _keyed(_pread(self.cpu_fd)) if self.cpu_kind == "v2" else {}
        self.cpu0 = self._cpu(st)
        self.thr0 = self._throttle(st)
        self.oom0 = self._oom()
        self.psi0 = self._psi()
        if self.mem_fd >= 0:
            try:
                os.pwrite(self.mem_fd, b"0" if self.mem_kind == "v1" else b"reset\n", 0)
            except OSError:
                pass  # a kernel that cannot reset the peak: it then includes the setup

    def read(self, u: Usage) -> None:
        st = _keyed(_pread(self.cpu_fd)) if self.cpu_kind == "v2" else {}
        cpu = self._cpu(st)
        if cpu is not None:
            c0 = self.cpu0 or (0.0, 0.0)
            u.user, u.system = max(0.0, cpu[0] - c0[0]), max(0.0, cpu[1] - c0[1])
            u.source = "cgroup"
        if self.mem_fd >= 0:
            try:
                u.peak_memory = int(_pread(self.mem_fd).split()[0])
            except (ValueError, IndexError):
                pass
        thr = self._throttle(st)
        if thr is not None:
            t0 = self.thr0 or (0, 0.0)
            u.throttled, u.throttled_time = thr[0] - t0[0], thr[1] - t0[1]
        oom = self._oom()
        if oom is not None:
            u.oom_killed = oom > (self.oom0 or 0)
        psi = self._psi()
        if psi is not None and self.psi0 is not None:
            u.cpu_wait = (psi - self.psi0) / 1e6

    def close(self):
        for fd in {self.cpu_fd, self.cpuacct_fd, self.mem_fd, self.oom_fd, self.thr_fd, self.psi_fd}:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.cpu_fd = self.cpuacct_fd = self.mem_fd = self.oom_fd = self.thr_fd = self.psi_fd = -1


def _shared_device_cgroup(parent):
    """For a pool whose children need no cgroup each (no limits, not measured): one
    cgroup they all start in, for docker's device allow-list (pyrt.cgroups.devices).
    Made only where it is free to join (a cgroup2 hierarchy: the children are
    cloned into it) and by root; else None, and the children have no device
    restriction (as before). Returns (Cgroup, its spawn fds)."""
    if os.geteuid() != 0:
        return None
    from pyrt.cgroups.cgroup import Cgroup, layout
    from pyrt.errors import PyrtError
    if not layout().unified:
        return None
    try:
        cg = Cgroup.create("shared", parent=parent)
    except (OSError, PyrtError):
        return None
    try:
        return cg, cg.spawn_fds()
    except BaseException:
        cg.remove()
        raise


# -- noise ---------------------------------------------------------------------------

def _cpu_busy(cpus) -> tuple:
    """(busy, steal) jiffies of the given CPUs, from /proc/stat."""
    busy = steal = 0
    want = {f"cpu{c}".encode() for c in cpus}
    try:
        with open("/proc/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    for line in data.split(b"\n"):
        fields = line.split()
        if fields and fields[0] in want:
            v = [int(x) for x in fields[1:]]
            # user nice system idle iowait irq softirq steal
            busy += v[0] + v[1] + v[2] + v[5] + v[6]
            steal += v[7] if len(v) > 7 else 0
    return busy, steal


def _governors(cpus) -> dict:
    out = {}
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor") as f:
                out[c] = f.read().strip()
        except OSError:
            pass
    return out


class _Noise:
    """What may disturb runs on the pinned CPUs: other tasks running there, CPU
    steal, throttling, waiting for a CPU, a frequency governor that is not
    "performance"."""

    def __init__(self, cpus):
        self.cpus = sorted(cpus)
        self.hz = os.sysconf("SC_CLK_TCK")
        gov = _governors(self.cpus)
        self.governor_note = None
        bad = {c: g for c, g in gov.items() if g != "performance"}
        if bad:
            self.governor_note = "cpu frequency governor " + ", ".join(
                f"cpu{c}: {g}" for c, g in sorted(bad.items())) + " (not performance)"

    def start(self):
        return _cpu_busy(self.cpus)

    def notes(self, before, u: Usage) -> list:
        notes = []
        after = _cpu_busy(self.cpus)
        if before is not None and after is not None and u.cpu is not None:
            busy = (after[0] - before[0]) / self.hz
            others = busy - u.cpu
            tick = 1.0 / self.hz
            if others > 2 * tick:  # /proc/stat counts in ticks
                notes.append(f"other tasks used ~{others * 1e3:.0f} ms of cpu {','.join(map(str, self.cpus))}")
            steal = (after[1] - before[1]) / self.hz
            if steal > 0:
                notes.append(f"cpu steal {steal * 1e3:.0f} ms (hypervisor)")
        if u.throttled:
            notes.append(f"cpu throttled {u.throttled} times ({(u.throttled_time or 0) * 1e3:.1f} ms)")
        if u.cpu_wait and u.wall and u.cpu_wait > max(0.001, 0.01 * u.wall):
            notes.append(f"waited {u.cpu_wait * 1e3:.1f} ms for a cpu (runnable, not running)")
        if u.oom_killed:
            notes.append("oom killed")
        if self.governor_note:
            notes.append(self.governor_note)
        return notes


# -- the pool ------------------------------------------------------------------------

class _Slot:
    """A cgroup of the pool with its accounting files and spawn fds open, used by
    one container after another (emptied, pinned and measured afresh each time):
    no mkdir and rmdir per container."""

    __slots__ = ("cg", "meter", "fds", "killed")

    def __init__(self, cg, meter, fds):
        self.cg, self.meter, self.fds = cg, meter, fds
        self.killed = False  # after cgroup.kill, the kernel kills what is cloned into it

    def remove(self):
        if self.meter is not None:
            self.meter.close()
            self.meter = None
        try:
            self.cg.remove()  # closes the spawn fds too
        except Exception:
            pass


class _Child:
    __slots__ = ("pid", "pidfd", "sock", "errfd", "mntns", "park_usage", "slot", "done")

    def __init__(self, pid, pidfd, sock, errfd, park_usage, slot, mntns=-1):
        self.pid, self.pidfd, self.sock, self.errfd, self.mntns = pid, pidfd, sock, errfd, mntns
        self.park_usage, self.slot = park_usage, slot
        self.done = False

    @property
    def cgroup(self):
        return self.slot.cg if self.slot is not None else None

    @property
    def meter(self):
        return self.slot.meter if self.slot is not None else None

    def close_fds(self):
        """Close what the run needed (the mount namespace is dropped later, by
        finish())."""
        for name in ("sock", "errfd", "pidfd"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)

    def finish(self, recycle=None):
        """Drop the container's last traces: its mount namespace (the unmounting
        happens here, in the caller), then its cgroup: recycle(slot) keeps it for
        the next container when it returns True, else it is removed."""
        self.close_fds()
        if self.mntns >= 0:
            try:
                os.close(self.mntns)
            except OSError:
                pass
            self.mntns = -1
        slot, self.slot = self.slot, None
        if slot is not None and not (recycle is not None and recycle(slot)):
            slot.remove()

    def kill(self):
        if self.pidfd >= 0 and not self.done:
            try:
                _sys_pidfd_kill(self.pidfd)
            except OSError:
                pass


def _sys_pidfd_kill(pidfd):
    import signal
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)


class _Zygote:
    """A pyrt-zygote process and its control socket (one request at a time)."""

    __slots__ = ("pid", "sock", "lock")

    def __init__(self, pid, sock):
        self.pid, self.sock, self.lock = pid, sock, threading.Lock()

    def stop(self):
        with self.lock:
            sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()  # it exits at EOF
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


_pool_ids = itertools.count(1)


class Pool:
    """`size` parked containers of `image` (a reference in the store at `root`)
    or of a `rootfs` directory, each serving exactly one command.

    image / rootfs  what the containers run (an image's Env, WorkingDir and User
                    are the defaults; argv is run as given, without the image's
                    entrypoint)
    size            children kept parked (0: none; each run then starts its own)
    network         "none" (own namespace with lo) or "host"
    memory, memory_swap, cpuset, cpus, pids_limit
                    cgroup limits, docker's meanings (cpuset: "1", "0-3")
    profile         "bench": see PROFILES and the module's docstring
    measure         give each container its own cgroup for its usage (CPU time
                    including children, memory peak); on by default. Without it
                    (and without limits) no cgroup is made and usage comes from
                    rusage (no memory peak)
    upper_size      size of each container's tmpfs upper ("256m"; default: the
                    memory limit, else the kernel's default)
    noise           add noise notes to each run's usage (on in the bench profile)
    zygote          park through pyrt-zygote processes (default; see below)
    parallel        how many children are parked at once (default: one per CPU,
                    at most 4 and at most size)
    env, cwd, hostname, user, aslr, mounts, read_only, cap_add, cap_drop, seccomp, ...
                    as for pyrt.run (the spawn options of pyrt.launch.process.build_spec;
                    containers run under pyrt's default seccomp profile unless
                    seccomp=None)

    Children are cloned by small pyrt-zygote helper processes (one per parallel
    refill), not by this process: a clone copies the page tables of its parent,
    which for a Python process with a big heap costs more than the container's
    own setup, and makes this process's pages copy-on-write. This process is
    still each container's parent (CLONE_PARENT): it waits for them and gets
    their rusage. Each container's cgroup (when there is one) is reused by the
    next container once emptied, its accounting taken afresh; its mount
    namespace is held until the run is over, so that the unmounting happens in
    the refill thread rather than in the container's exit.

    Thread-safe: many threads may call run() at once. close() (or leaving the
    `with` block) kills what is parked or still running and removes every cgroup,
    mount and process the pool made.
    """

    def __init__(self, image=None, *, rootfs=None, size=8, network="none", memory=None, memory_swap=None,
                 cpuset=None, cpus=None, pids_limit=None, root=None, profile=None, measure=True,
                 upper_size=None, env=None, cwd=None, hostname=None, user=None, noise=None, zygote=True,
                 parallel=None, **spawn_options):
        if (image is None) == (rootfs is None):
            raise InvalidArgument("a Pool needs an image or a rootfs (one of them)")
        if size < 0:
            raise InvalidArgument(f"invalid pool size {size}")
        if profile is not None:
            if profile not in PROFILES:
                raise InvalidArgument(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
            prof = PROFILES[profile]
            if cpus is not None:
                raise InvalidArgument("the bench profile runs without a CPU quota (it distorts timings): "
                                      "pin with cpuset= instead of cpus=")
            network = prof["network"] if network in (None, "none") else network
            hostname = hostname or prof["hostname"]
            memory = memory if memory is not None else prof["memory"]
            memory_swap = memory if memory_swap is None else memory_swap
            measure = True
            noise = prof["noise"] if noise is None else noise
            env = dict(prof["env"], **(env or {}))
            if cpuset is None:
                cpuset = _default_bench_cpuset()
        self.size = size
        self.profile = profile
        self._id = f"{os.getpid()}-{next(_pool_ids)}-{secrets.token_hex(2)}"
        self._lock = threading.Condition(threading.Lock())
        self._ready = collections.deque()
        self._running = set()
        self._retired = []
        self._spawning = 0
        self._closed = False
        self._error = None
        self._counter = itertools.count()
        self._threads = []       # the refill threads, one per zygote (or one)
        self._zygotes = []       # _Zygote: the pyrt-zygote processes parking for us
        self._free_slots = []    # cgroups ready for the next child
        self._all_cpus = None    # cpuset.cpus of the pool's cgroup parent
        self._use_cgroup = False
        self._shared = None      # (Cgroup, spawn fds): the device cgroup of children without one of their own
        self._devices = "default"
        self._runtime = None
        self._cg_parent = f"pyrt/pool-{self._id}"
        try:
            self._setup(image, rootfs, network, memory, memory_swap, cpuset, cpus, pids_limit, root, measure,
                        upper_size, env, cwd, hostname, user, noise, zygote, parallel, spawn_options)
        except BaseException:
            self.close()
            raise

    def _setup(self, image, rootfs, network, memory, memory_swap, cpuset, cpus, pids_limit, root, measure,
               upper_size, env, cwd, hostname, user, noise, zygote, parallel, spawn_options):
        size = self.size
        from pyrt.cgroups.cgroup import Limits, format_cpuset, parse_cpuset
        from pyrt.launch.mounts import Overlay
        from pyrt.launch.process import build_spec
        self._pinned = parse_cpuset(cpuset) if cpuset is not None else None
        if self._pinned:
            from pyrt.cgroups.cgroup import _check_cpuset, layout
            _check_cpuset(Limits(cpuset_cpus=cpuset), layout(), "pyrt")
        self._limits = Limits(memory=memory, memory_swap=memory_swap, cpus=cpus, pids_limit=pids_limit)
        self._cpuset = format_cpuset(self._pinned) if self._pinned else None
        self.measure = bool(measure)
        self._use_cgroup = self.measure or not self._limits.empty() or self._cpuset is not None
        if self._use_cgroup and os.geteuid() != 0:
            from pyrt.cgroups import delegation
            if not delegation.usable():  # an ordinary user without a delegated subtree
                if not self._limits.empty() or self._cpuset is not None:
                    delegation.require("pool limits")
                self.measure = self._use_cgroup = False  # usage from rusage
        self._devices = None if spawn_options.get("privileged") else "default"
        if not self._use_cgroup and self._devices is not None:
            self._shared = _shared_device_cgroup(self._cg_parent)
        self._noise = _Noise(self._pinned) if noise and self._pinned else None
        self._noise_on = bool(noise)

        base_env = {}
        if image is not None:
            from pyrt.runtime import Runtime
            self._runtime = Runtime(root)
            img = self._runtime.images.get(image) if isinstance(image, str) else image
            from pyrt.containers.model import _check_platform
            _check_platform(img)
            icfg = (img.config or {}).get("config") or {}
            for item in icfg.get("Env") or ():
                k, _, v = item.partition("=")
                base_env[k] = v
            lowers = [layer.path for layer in reversed(img.layers)]
            if user is None and icfg.get("User"):
                from pyrt.launch.userdb import resolve_user
                uid, gid, groups = resolve_user(icfg["User"], lowers)
                user = (uid, gid, *groups)
            if cwd is None and icfg.get("WorkingDir"):
                cwd = icfg["WorkingDir"]
            root_arg = Overlay(lowers)
            self.image = img
        elif isinstance(rootfs, Overlay):
            if rootfs.upperdir is not None:
                raise InvalidArgument("a pool gives each container its own tmpfs upper: pass an Overlay "
                                      "without upperdir (or a directory)")
            self._runtime = None
            self.image = None
            root_arg = rootfs
        else:
            self._runtime = None
            self.image = None
            root_arg = os.path.abspath(os.fspath(rootfs))
        if env is not None:
            base_env.update({k: str(v) for k, v in env.items()})
        base_env.setdefault("PATH", DEFAULT_PATH)
        if upper_size is None and self._limits.memory is not None:
            upper_size = self._limits.memory
        upper = "mode=0755" + (f",size={upper_size}" if upper_size is not None else "")
        self._spec = build_spec(["/bin/true"], root_arg, env=base_env, cwd=None, hostname=hostname, user=user,
                                network=network, upper_tmpfs=upper, **spawn_options)
        self._env = dict(base_env)
        if hostname and "HOSTNAME" not in self._env:
            self._env["HOSTNAME"] = hostname
        self._env_bytes = [os.fsencode(f"{k}={v}") for k, v in self._env.items()]
        self._path = os.fsencode(self._env["PATH"])
        self._cwd = os.fsencode(cwd) if cwd else None
        self._spec.stdio = (_devnull(),) * 3
        self._refill_affinity = None
        if self._pinned:
            try:
                mine = os.sched_getaffinity(0)
                rest = set(mine) - set(self._pinned)
                if rest:
                    self._refill_affinity = rest
            except OSError:
                pass

        if size > 0:
            if parallel is None:
                ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
                parallel = max(1, min(size, ncpu or 1, 4))
            if zygote:
                for _ in range(max(1, int(parallel))):
                    z = self._start_zygote()
                    if z is None:
                        break
                    self._zygotes.append(z)
            # the first child now: a bad rootfs, image or limit fails here
            child = self._new_child(self._zygotes[0] if self._zygotes else None)
            with self._lock:
                self._ready.append(child)
            for z in self._zygotes or [None]:
                t = threading.Thread(target=self._refill, args=(z,), name=f"pyrt-pool-{self._id}", daemon=True)
                self._threads.append(t)
                t.start()

    # -- children ---------------------------------------------------------------
    def _start_zygote(self):
        """Start a pyrt-zygote (when installed): a small process that parks the
        children, so that no clone copies this (maybe big) Python process."""
        path = os.fsdecode(_core._helper_path("pyrt-zygote"))
        if not os.access(path, os.X_OK):
            return None
        import socket
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)]
            actions += [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
            pid = os.posix_spawn(path, [path, "3"], {}, file_actions=actions)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        z = _Zygote(pid, mine)
        try:
            if self._refill_affinity:
                try:
                    os.sched_setaffinity(pid, self._refill_affinity)  # its children set up off the pinned CPUs
                except OSError:
                    pass
            _core.zygote_send_spec(mine.fileno(), self._spec)
        except BaseException:
            z.stop()
            raise
        return z

    def _spawn(self, spec, cgroup_fd, procs_fds, zygote):
        if zygote is not None:
            with zygote.lock:
                if zygote.sock is not None:
                    return _core.zygote_spawn(zygote.sock.fileno(), cgroup_fd, procs_fds)
        spec.cgroup_fd, spec.cgroup_procs_fds = cgroup_fd, procs_fds
        pid, pidfd, sock, errfd, usage = _core.spawn_parked(spec)
        # held until the run is over: the unmounting is then not part of its exit
        mntns = _open(f"/proc/{pid}/ns/mnt")
        return pid, pidfd, sock, errfd, usage, mntns

    def _take_slot(self) -> _Slot:
        """A free cgroup of the pool, or a new one."""
        with self._lock:
            if self._free_slots:
                return self._free_slots.pop()
        from pyrt.cgroups.cgroup import Cgroup
        accounting = ("memory",) if self.measure else ()
        if self._cpuset is not None:
            accounting += ("cpuset",)  # joined with every CPU; pinned once the child parked
        cg = Cgroup.create(f"c{next(self._counter)}", self._limits, parent=self._cg_parent, accounting=accounting,
                           devices=self._devices)
        try:
            fds = cg.spawn_fds()  # kept open while the slot lives
            meter = _Meter(cg, quota=self._limits.cpus is not None, pressure=self._noise_on) \
                if self.measure else None
        except BaseException:
            cg.remove()
            raise
        if self._cpuset is not None and self._all_cpus is None:
            d = cg.v1_dirs.get("cpuset") or cg.v2_dir
            with open(os.path.join(os.path.dirname(d), "cpuset.cpus")) as f:
                self._all_cpus = f.read().strip()
        return _Slot(cg, meter, fds)

    def _recycle(self, slot: _Slot) -> bool:
        """Keep an emptied cgroup for the next container (True), unless the pool is
        closing or something of the last container is still in it."""
        if self._closed or slot.killed or slot.cg.procs():
            return False
        if self._cpuset is not None:
            from pyrt.cgroups.cgroup import _write
            d = slot.cg.v1_dirs.get("cpuset") or slot.cg.v2_dir
            try:  # the next child's setup runs off the pinned CPUs again
                _write(os.path.join(d, "cpuset.cpus"), self._all_cpus)
            except OSError:
                return False
        with self._lock:
            if self._closed:
                return False
            self._free_slots.append(slot)
        return True

    def _new_child(self, zygote=None) -> _Child:
        """zygote: the _Zygote to park it (None: cloned by this process)."""
        """Spawn and park one child (in its own cgroup when needed)."""
        spec = self._spec
        slot = self._take_slot() if self._use_cgroup else None
        cgroup_fd, procs_fds = slot.fds if slot is not None else self._shared[1] if self._shared else (-1, [])
        if slot is not None or self._shared is not None:
            import copy
            spec = copy.copy(self._spec)  # an in-process spawn sets the cgroup fds on it
        try:
            pid, pidfd, sock, errfd, park_usage, mntns = self._spawn(spec, cgroup_fd, procs_fds, zygote)
        except BaseException:
            if slot is not None:
                slot.remove()
            raise
        child = _Child(pid, pidfd, sock, errfd, park_usage, slot, mntns)
        if slot is not None:
            try:
                if self._cpuset is not None:
                    # the setup ran on the refill thread's CPUs; the command runs on the pinned ones
                    from pyrt.cgroups.cgroup import _write
                    d = slot.cg.v1_dirs.get("cpuset") or slot.cg.v2_dir
                    _write(os.path.join(d, "cpuset.cpus"), self._cpuset)
                if slot.meter is not None:
                    slot.meter.baseline()
            except BaseException:
                self._discard(child)
                raise
        return child

    @staticmethod
    def _kill_container(child: _Child) -> None:
        """SIGKILL the container's first process (with a pid namespace, that ends
        them all) and, where the kernel has cgroup.kill, every process of its cgroup."""
        child.kill()
        cg = child.cgroup
        if cg is not None and cg.v2_dir:
            child.slot.killed = True
            try:
                with open(os.path.join(cg.v2_dir, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass

    def _discard(self, child: _Child) -> None:
        """Kill (if need be), reap and forget a child; its cgroup is removed."""
        child.kill()
        if child.pidfd >= 0 and not child.done:
            try:
                _core.wait(child.pidfd)
            except OSError:
                pass
            child.done = True
        child.finish()

    def _refill(self, zygote):
        if self._refill_affinity:
            try:
                os.sched_setaffinity(0, self._refill_affinity)  # this thread only
            except OSError:
                pass
        delay = 0.05
        while True:
            with self._lock:
                while not self._closed and not self._retired and len(self._ready) + self._spawning >= self.size:
                    self._lock.wait()
                if self._closed:
                    return
                retired, self._retired = self._retired, []
                spawn = len(self._ready) + self._spawning < self.size
                if spawn:
                    self._spawning += 1
            for child in retired:  # off the run path
                child.finish(self._recycle)
            if not spawn:
                continue
            try:
                child = self._new_child(zygote)
            except BaseException as e:
                with self._lock:
                    self._spawning -= 1
                    self._error = e
                    self._lock.notify_all()
                time.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            delay = 0.05
            with self._lock:
                self._spawning -= 1
                self._error = None
                if not self._closed:
                    self._ready.append(child)
                    self._lock.notify_all()
                    continue
            self._discard(child)
            return

    def _acquire(self) -> _Child:
        """A parked child: a ready one; else, with a zygote, the next one it
        parks; else one started now in this thread."""
        with self._lock:
            while True:
                if self._closed:
                    raise PoolClosed("the pool is closed")
                if self._ready:
                    child = self._ready.popleft()
                    self._running.add(child)
                    self._lock.notify_all()  # the refill thread parks the next one
                    return child
                if not self._zygotes or not self._threads:
                    break
                if self._error is not None and not self._spawning:
                    raise self._error
                self._lock.wait()
        child = self._new_child(None)
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._running.add(child)
        if closed:
            self._discard(child)
            raise PoolClosed("the pool is closed")
        return child

    def _release(self, child: _Child) -> None:
        child.close_fds()
        with self._lock:
            self._running.discard(child)
            later = bool(self._threads) and not self._closed
            if later:
                self._retired.append(child)  # the refill thread finishes it
            self._lock.notify_all()
        if not later:  # no refill thread (size 0), or closing: now
            child.finish(self._recycle)

    # -- running ----------------------------------------------------------------
    def _command(self, argv, env, cwd):
        if isinstance(argv, (str, bytes, os.PathLike)):
            argv = [argv]
        argv_b = [os.fsencode(a) for a in argv]
        if not argv_b:
            raise InvalidArgument("no command given")
        if env is None:
            return argv_b, self._env_bytes, self._path, os.fsencode(cwd) if cwd else self._cwd
        merged = dict(self._env)
        merged.update({k: str(v) for k, v in env.items()})
        env_b = [os.fsencode(f"{k}={v}") for k, v in merged.items()]
        return argv_b, env_b, os.fsencode(merged.get("PATH", "")), os.fsencode(cwd) if cwd else self._cwd

    def run(self, argv, input=None, env=None, cwd=None, timeout=None, capture_output=True, check=False,
            text=False, stdin=None, stdout=None, stderr=None):
        """Run argv in a fresh container of the pool; like subprocess.run with
        capture_output=True by default. Returns a CompletedProcess with `usage`.
        env adds to (and overrides) the pool's environment. timeout: the
        container is killed and TimeoutExpired raised. stdin/stdout/stderr: fds or
        files (stdout/stderr only when not capturing; they default to this
        process's own, as with subprocess). stdin is /dev/null unless input or
        stdin is given (as `docker run` without -i)."""
        argv_b, env_b, path, cwd_b = self._command(argv, env, cwd)
        if input is not None and stdin is not None:
            raise InvalidArgument("stdin and input arguments may not both be used")
        if capture_output and (stdout is not None or stderr is not None):
            raise InvalidArgument("stdout and stderr arguments may not be used with capture_output")
        if text and isinstance(input, str):
            input = input.encode()
        to_close = []
        in_w = out_r = err_r = -1
        fds = [-1, -1, -1]
        try:
            if input is not None:
                r, in_w = os.pipe2(os.O_CLOEXEC)
                fds[0] = r
                to_close.append(r)
            elif stdin is not None:
                fds[0] = stdin if isinstance(stdin, int) else stdin.fileno()
            if capture_output:
                out_r, w = os.pipe2(os.O_CLOEXEC)
                fds[1] = w
                to_close.append(w)
                err_r, w = os.pipe2(os.O_CLOEXEC)
                fds[2] = w
                to_close.append(w)
            else:  # like subprocess: the caller's own stdout and stderr unless given
                for i, f in ((1, stdout), (2, stderr)):
                    f = i if f is None else f
                    fds[i] = f if isinstance(f, int) else f.fileno()
            child = self._acquire()
        except BaseException:
            for fd in to_close + [fd for fd in (in_w, out_r, err_r) if fd >= 0]:
                os.close(fd)
            raise
        io = None
        try:
            before = self._noise.start() if self._noise else None
            t0 = time.perf_counter()
            try:
                # not waiting for the exec here (one wake-up less): the error pipe is
                # read once the process is gone (EOF: it exec'd; a record: it failed)
                _core.unpark(child.sock, child.errfd, argv_b, env_b, path, cwd_b, tuple(fds), wait=False)
            except SpawnError as e:
                if self._closed:
                    raise PoolClosed("the pool was closed before the command was handed over") from e
                raise
            finally:
                for fd in to_close:
                    os.close(fd)
            io = _core.CommandIO(child.pidfd, in_w, input, out_r, err_r)
            in_w = out_r = err_r = -1
            if not io.run(timeout):
                self._kill_container(child)
                if not io.run(10.0):
                    io.release()  # something outside the container holds the pipes
                    _core.wait(child.pidfd)
                child.done = True
                self._raise_exec_error(child)
                from subprocess import TimeoutExpired
                raise TimeoutExpired(argv, timeout, output=io.stdout, stderr=io.stderr)
            wall = time.perf_counter() - t0
            child.done = True
            self._raise_exec_error(child)
            status = io.status
            usage = self._usage(child, io.usage, wall, before)
            out, err = (io.stdout, io.stderr) if capture_output else (None, None)
        except BaseException:
            if not child.done:
                self._kill_container(child)
                if io is not None:
                    try:
                        if not io.run(10.0):
                            io.release()
                            _core.wait(child.pidfd)
                        child.done = True
                    except OSError:
                        pass
                else:
                    try:
                        _core.wait(child.pidfd)
                        child.done = True
                    except OSError:
                        pass
            raise
        finally:
            for fd in (in_w, out_r, err_r):
                if fd >= 0:
                    os.close(fd)
            if io is not None:
                io.release()
            self._release(child)
        if text:
            out = out.decode() if out is not None else None
            err = err.decode() if err is not None else None
        from pyrt.launch.process import _completed_process_class
        result = _completed_process_class()(argv, os.waitstatus_to_exitcode(status), out, err)
        result.usage = usage
        if check:
            result.check_returncode()
        return result

    @staticmethod
    def _raise_exec_error(child: _Child) -> None:
        """Once the child is gone: the SpawnError it reported, if it did not exec."""
        try:
            data = os.read(child.errfd, _core.STATUS_RECORD_SIZE)
        except OSError:
            return
        if data:
            raise _core.parse_status(data)

    def _usage(self, child, ru, wall, before) -> Usage:
        """ru: (utime, stime, maxrss, nvcsw, nivcsw) of the reaped child."""
        pu = child.park_usage
        u = Usage(wall=wall, user=max(0.0, ru[0] - pu[0]), system=max(0.0, ru[1] - pu[1]),
                  nvcsw=ru[3] - pu[3], nivcsw=ru[4] - pu[4], throttled=0, throttled_time=0.0,
                  source="rusage", noise=[])
        if child.meter is not None:
            child.meter.read(u)
        if self._noise is not None:
            u.noise = self._noise.notes(before, u)
        elif self._noise_on:
            u.noise = _plain_notes(u)
        return u

    def map(self, argv_or_fn, inputs, *, threads=None, **run_kwargs) -> list:
        """Run one command per input, in order of the inputs, with up to `threads`
        (default: the pool size) at once. argv_or_fn: an argv (each input is
        then its stdin), or a function of the input returning an argv or a dict
        of run() keyword arguments (with "argv")."""
        from concurrent.futures import ThreadPoolExecutor
        items = list(inputs)

        def one(x):
            if callable(argv_or_fn):
                what = argv_or_fn(x)
                if isinstance(what, dict):
                    kw = dict(run_kwargs, **what)
                    return self.run(kw.pop("argv"), **kw)
                return self.run(what, **run_kwargs)
            return self.run(argv_or_fn, input=x, **run_kwargs)

        n = threads or max(1, self.size)
        if n == 1 or len(items) <= 1:
            return [one(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(n, len(items))) as ex:
            return list(ex.map(one, items))

    async def arun(self, argv, input=None, env=None, cwd=None, timeout=None, capture_output=True,
                   check=False, text=False):
        """run() for asyncio: the wait is on the child's pidfd and pipes through
        the event loop (no thread per container)."""
        import asyncio
        loop = asyncio.get_running_loop()
        argv_b, env_b, path, cwd_b = self._command(argv, env, cwd)
        with self._lock:
            child = self._ready.popleft() if self._ready and not self._closed else None
            if child is not None:
                self._running.add(child)
                self._lock.notify_all()
        if child is None:  # none parked: start one without blocking the loop
            child = await loop.run_in_executor(None, self._acquire)
        if text and isinstance(input, str):
            input = input.encode()
        ends = []
        try:
            fds = [-1, -1, -1]
            in_w = out_r = err_r = -1
            if input is not None:
                fds[0], in_w = os.pipe2(os.O_CLOEXEC)
                ends.append(in_w)
            if capture_output:
                out_r, fds[1] = os.pipe2(os.O_CLOEXEC)
                ends.append(out_r)
                err_r, fds[2] = os.pipe2(os.O_CLOEXEC)
                ends.append(err_r)
            before = self._noise.start() if self._noise else None
            t0 = time.perf_counter()
            try:
                _core.unpark(child.sock, child.errfd, argv_b, env_b, path, cwd_b, tuple(fds), wait=False)
            finally:
                for fd in fds:
                    if fd >= 0:
                        os.close(fd)
            status, ru, out, err = await _aio_command(loop, child.pidfd, in_w, input, out_r, err_r, timeout,
                                                      argv, ends)
            child.done = True
            wall = time.perf_counter() - t0
            self._raise_exec_error(child)  # EOF on the error pipe: it exec'd
            usage = self._usage(child, ru, wall, before)
        except BaseException as e:
            if getattr(e, "pyrt_reaped", None):
                child.done = True
            if not child.done:
                self._kill_container(child)
                try:
                    _core.wait(child.pidfd)
                except OSError:
                    pass
                child.done = True
            raise
        finally:
            for fd in ends:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._release(child)
        if not capture_output:
            out = err = None
        elif text:
            out, err = out.decode(), err.decode()
        from pyrt.launch.process import _completed_process_class
        result = _completed_process_class()(argv, os.waitstatus_to_exitcode(status), out, err)
        result.usage = usage
        if check:
            result.check_returncode()
        return result

    # -- state and teardown -------------------------------------------------------
    @property
    def parked(self) -> int:
        """How many children are parked right now."""
        with self._lock:
            return len(self._ready)

    def wait_ready(self, timeout=None) -> bool:
        """Wait until `size` children are parked (True), or timeout (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while len(self._ready) < self.size and not self._closed:
                if self._error is not None and not self._ready:
                    raise self._error
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left if left is None else min(left, 0.1))
            return len(self._ready) >= self.size

    def close(self, timeout: float = 10.0) -> None:
        """Kill every parked and running child, reap them, remove every cgroup.
        Running commands end with -SIGKILL (their run() returns). Idempotent."""
        with self._lock:
            if self._closed and not self._ready and not self._running and not self._threads:
                return
            self._closed = True
            ready, self._ready = list(self._ready), collections.deque()
            running = list(self._running)
            self._lock.notify_all()
        for child in running:
            child.kill()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)
        self._threads = []
        for child in ready:
            self._discard(child)
        zygotes, self._zygotes = self._zygotes, []
        for z in zygotes:
            z.stop()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._running and time.monotonic() < deadline:
                self._lock.wait(0.05)
            retired, self._retired = self._retired, []
            free, self._free_slots = self._free_slots, []
        for child in retired:
            child.finish()
        for slot in free:
            slot.remove()
        shared, self._shared = self._shared, None
        if shared is not None:
            shared[0].close_fds(force=True)
            try:
                shared[0].remove(timeout)
            except OSError:
                pass  # left for prune
        self._remove_cgroup_parent(shared is not None)
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def _remove_cgroup_parent(self, had_shared=False):
        if not self._use_cgroup and not had_shared:
            return
        from pyrt.cgroups.cgroup import prune
        try:
            prune(self._cg_parent)
        except Exception:
            pass
        from pyrt.cgroups.cgroup import layout
        lay = layout()
        for mount in set(lay.v1.values()) | ({lay.unified} if lay.unified else set()):
            try:
                os.rmdir(os.path.join(mount, self._cg_parent))
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __repr__(self):
        what = f"image={self.image.short_id}" if self.image is not None else "rootfs"
        return f"<pyrt.Pool {what} size={self.size} parked={len(self._ready)} running={len(self._running)}>"


def _plain_notes(u: Usage) -> list:
    notes = []
    if u.throttled:
        notes.append(f"cpu throttled {u.throttled} times")
    if u.oom_killed:
        notes.append("oom killed")
    return notes


# -- asyncio -------------------------------------------------------------------------

async def _aio_command(loop, pidfd, in_w, input, out_r, err_r, timeout, args, ends):
    """Feed input, read the outputs to their end and wait for the exit, all
    through the event loop. Returns (status, rusage tuple, stdout, stderr).
    On timeout the process is killed (and reaped) and TimeoutExpired raised."""
    import asyncio
    import signal
    outs = {out_r: [], err_r: []}
    open_fds = set()
    done = loop.create_future()
    state = {"exited": False, "view": memoryview(input) if input is not None else None}

    def check():
        if state["exited"] and not open_fds and not done.done():
            done.set_result(None)

    def finish_fd(fd):
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        open_fds.discard(fd)
        try:
            os.close(fd)
        except OSError:
            pass
        if fd in ends:
            ends.remove(fd)
        check()

    def on_read(fd):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            outs[fd].append(chunk)
        else:
            finish_fd(fd)

    def on_write():
        view = state["view"]
        try:
            n = os.write(in_w, view[:65536])
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            n = len(view)
        state["view"] = view = view[n:]
        if not view:
            finish_fd(in_w)

    def on_exit():
        loop.remove_reader(pidfd)
        state["exited"] = True
        check()

    for fd in (out_r, err_r):
        if fd >= 0:
            os.set_blocking(fd, False)
            open_fds.add(fd)
            loop.add_reader(fd, on_read, fd)
    if in_w >= 0:
        os.set_blocking(in_w, False)
        open_fds.add(in_w)
        if input:
            loop.add_writer(in_w, on_write)
        else:
            finish_fd(in_w)
    loop.add_reader(pidfd, on_exit)
    try:
        finished, _ = await asyncio.wait({done}, timeout=timeout)
        if not finished:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            for fd in list(open_fds):
                finish_fd(fd)
            if not state["exited"]:
                await done
            reaped = _core.wait(pidfd, 0) or _core.wait(pidfd)
            from subprocess import TimeoutExpired
            e = TimeoutExpired(args, timeout, output=b"".join(outs.get(out_r, [])),
                               stderr=b"".join(outs.get(err_r, [])))
            e.pyrt_reaped = reaped  # (status, rusage): the process is gone and reaped
            raise e
    finally:
        loop.remove_reader(pidfd)
        for fd in list(open_fds):
            finish_fd(fd)
    result = _core.wait(pidfd, 0)
    if result is None:  # readable pidfd: the exit is there
        result = _core.wait(pidfd)
    status, ru = result
    return status, ru, b"".join(outs[out_r]) if out_r >= 0 else None, \
        b"".join(outs[err_r]) if err_r >= 0 else None


async def arun(args, rootfs=None, *, input=None, capture_output=False, timeout=None, check=False,
               text=False, **kwargs):
    """pyrt.run for asyncio: starts `args` in a new container (the start itself
    takes the few ms of a spawn) and waits for it through the event loop, on its
    pidfd and pipes (no thread per container). Returns a CompletedProcess with
    `usage` (the rusage tuple of pyrt.run)."""
    import asyncio
    from pyrt.launch.process import DEVNULL, PIPE, Process, _completed_process_class
    loop = asyncio.get_running_loop()
    if input is not None:
        kwargs["stdin"] = PIPE
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    kwargs.setdefault("stdin", DEVNULL if input is None else PIPE)
    if text and isinstance(input, str):
        input = input.encode()
    p = Process(args, rootfs, **kwargs)
    ends = []
    try:
        in_w = os.dup(p.stdin.fileno()) if p.stdin else -1
        out_r = os.dup(p.stdout.fileno()) if p.stdout else -1
        err_r = os.dup(p.stderr.fileno()) if p.stderr else -1
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()
        ends = [fd for fd in (in_w, out_r, err_r) if fd >= 0]
        status, ru, out, err = await _aio_command(loop, p._pidfd, in_w, input, out_r, err_r, timeout, args, ends)
        p._finish((status, ru))
    except BaseException as e:
        if p.returncode is None and getattr(e, "pyrt_reaped", None):
            p._finish(e.pyrt_reaped)
        if p.returncode is None:
            p.kill()
            p.wait()
        raise
    finally:
        for fd in ends:
            try:
                os.close(fd)
            except OSError:
                pass
    if text:
        out = out.decode() if out is not None else None
        err = err.decode() if err is not None else None
    result = _completed_process_class()(args, p.returncode, out, err)
    result.usage = p.usage
    if check:
        result.check_returncode()
    return result


def run(args, rootfs=None, *, image=None, profile=None, root=None, input=None, capture_output=False,
        timeout=None, check=False, text=False, env=None, cwd=None, **kwargs):
    """One measured run in a fresh container (pyrt.run(profile=...) comes here):
    the pool's machinery without a warm pool. Returns a CompletedProcess whose
    `usage` is a Usage."""
    stdio = {k: kwargs.pop(k) for k in ("stdin", "stdout", "stderr") if k in kwargs}
    with Pool(image, rootfs=rootfs, size=0, profile=profile, root=root, **kwargs) as pool:
        return pool.run(args, input=input, env=env, cwd=cwd, timeout=timeout, capture_output=capture_output,
                        check=check, text=text, **stdio)
