"""Metering of pool runs: what one run cost (Usage), read from the accounting files
of its cgroup (Meter), and notes on what may have disturbed it (Noise)."""
from __future__ import annotations

import os


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


def open_fd(path, flags=os.O_RDONLY):
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError:
        return -1


def _pread(fd) -> bytes:
    try:
        return os.pread(fd, 4096, 0)
    except OSError:
        return b""


class Meter:
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
            self.cpu_fd = open_fd(os.path.join(cg.v2_dir, "cpu.stat"))
            self.cpu_kind = "v2"
        elif "cpuacct" in v1:
            self.cpu_fd = open_fd(os.path.join(v1["cpuacct"], "cpuacct.usage"))
            self.cpuacct_fd = open_fd(os.path.join(v1["cpuacct"], "cpuacct.stat"))
            self.cpu_kind = "v1"
        if "memory" in v1:
            self.mem_fd = open_fd(os.path.join(v1["memory"], "memory.max_usage_in_bytes"), os.O_RDWR)
            self.oom_fd = open_fd(os.path.join(v1["memory"], "memory.oom_control"))
            self.mem_kind = "v1"
        elif cg.v2_dir and os.path.exists(os.path.join(cg.v2_dir, "memory.peak")):
            # writable (a reset) from Linux 6.12 on; read-only before, where an ordinary user
            # cannot open it for writing: read-only then, and the peak includes the setup
            peak = os.path.join(cg.v2_dir, "memory.peak")
            self.mem_fd = open_fd(peak, os.O_RDWR)
            if self.mem_fd < 0:
                self.mem_fd = open_fd(peak)
            self.oom_fd = open_fd(os.path.join(cg.v2_dir, "memory.events"))
            self.mem_kind = "v2"
        if quota and "cpu" in v1:
            self.thr_fd = open_fd(os.path.join(v1["cpu"], "cpu.stat"))
        elif quota and self.cpu_kind == "v2":
            self.thr_fd = self.cpu_fd  # nr_throttled is in v2's cpu.stat when the cpu controller is on
        if pressure and cg.v2_dir:
            self.psi_fd = open_fd(os.path.join(cg.v2_dir, "cpu.pressure"))
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


class Noise:
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


def plain_notes(u: Usage) -> list:
    notes = []
    if u.throttled:
        notes.append(f"cpu throttled {u.throttled} times")
    if u.oom_killed:
        notes.append("oom killed")
    return notes
