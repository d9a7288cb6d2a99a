"""Cgroup limits: docker's forms parsed (memory sizes, cpusets, cpu shares) and the
Limits of a container, checked, with the files and values that set them on cgroup
v1 and v2."""
from __future__ import annotations

import math
import os

from pyrt.errors import InvalidArgument

MIN_MEMORY = 6 * 1024 * 1024          # docker's linuxMinMemory ("6MB")
CPU_PERIOD = 100000                   # us, docker's default period for --cpus
MIN_SHARES, MAX_SHARES = 2, 262144


# -- parsing -------------------------------------------------------------------------

# re is imported in the parsers: `pyrt run --rootfs` loads this module and parses nothing
# (measured: importing re costs more than that run).
_BYTES_RE = r"^(\d+(?:\.\d+)?) ?([kmgtp])?(i)?(b)?$"  # re.IGNORECASE
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(value) -> int:
    """A size as docker takes it ("256m", "1g", "1.5GiB", "512k", "100b", "4096",
    an int): bytes, with binary multiples (k = 1024)."""
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise InvalidArgument(f"invalid size {value}: must not be negative")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"invalid size {value!r}: must not be negative")
        return int(value)
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid size {value!r}: expected a string like '256m' or a number of bytes")
    text = value.strip()
    if text.startswith("-"):
        raise InvalidArgument(f"invalid size {value!r}: must not be negative")
    import re
    m = re.match(_BYTES_RE, text, re.IGNORECASE)
    if not m or (m.group(3) and not m.group(2)):
        raise InvalidArgument(f"invalid size {value!r}: use a number with an optional unit "
                              "b, k, m, g, t or p (e.g. 256m, 1.5g)")
    unit = (m.group(2) or "b").lower()
    return int(float(m.group(1)) * _UNITS[unit]) if "." in m.group(1) else int(m.group(1)) * _UNITS[unit]


def parse_cpuset(value, what="cpuset cpus") -> frozenset:
    """'0-3,5' -> {0, 1, 2, 3, 5}; an int or a list of ints are taken too."""
    if isinstance(value, int) and not isinstance(value, bool):
        items = [str(value)]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = [str(v) for v in value]
    elif isinstance(value, str):
        items = value.replace(" ", "").split(",")
    else:
        raise InvalidArgument(f"invalid value {value!r} for {what}")
    import re
    out = set()
    for item in items:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not m:
            raise InvalidArgument(f"invalid value {value!r} for {what}: use a list like 0-3,5")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo or hi > 65535:
            raise InvalidArgument(f"invalid value {value!r} for {what}: bad range {item!r}")
        out.update(range(lo, hi + 1))
    if not out:
        raise InvalidArgument(f"invalid value {value!r} for {what}: empty")
    return frozenset(out)


def format_cpuset(cpus) -> str:
    """{0, 1, 2, 3, 5} -> '0-3,5' (the kernel's own format)."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def cpu_shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares -> v2 cpu.weight, as runc >= 1.3.2 (and crun >= 1.23)
    convert it: 2 -> 1, 1024 -> 100 (both defaults), 262144 -> 10000."""
    if shares <= 0:
        return 0
    if shares <= MIN_SHARES:
        return 1
    if shares >= MAX_SHARES:
        return 10000
    lg = math.log2(shares)
    return int(math.ceil(round(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0), 9)))


def _host_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _fmt_size(n: int) -> str:
    for unit, mult in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


# -- limits --------------------------------------------------------------------------

class Limits:
    """Resource limits with docker's names and meanings, validated on construction.

    memory              bytes or "256m" (at least 6 MiB, like docker)
    memory_swap         memory + swap in total; -1 = unlimited swap; equal to memory =
                        no swap; unset with `memory` set = twice `memory` (docker's default)
    memory_reservation  soft limit (v1 memory.soft_limit_in_bytes, v2 memory.low)
    cpus                CPUs of time per period (1.5 -> quota 150000 / period 100000)
    cpu_shares          relative weight (v1 cpu.shares; v2 cpu.weight converted as runc
                        does); clamped to 2..262144 like docker
    cpuset_cpus/mems    "0-3,5": CPUs / memory nodes allowed
    pids_limit          most tasks at once; 0 or -1 = unlimited
    blkio_weight        relative block I/O weight, 10..1000 (v1 blkio.weight, v2 io.weight
                        converted as runc does); 0 = unset
    device_read_bps, device_write_bps, device_read_iops, device_write_iops
                        per-device throttles: "PATH:RATE" (docker's flags; bytes like "1mb"
                        for bps), the SDK's {"Path": ..., "Rate": ...}, or ["MAJ:MIN", rate]
                        as stored; the path must be a block device (v1 blkio.throttle.*,
                        v2 io.max)
    """

    __slots__ = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
                 "cpuset_cpus", "cpuset_mems", "pids_limit", "blkio_weight", "device_read_bps",
                 "device_write_bps", "device_read_iops", "device_write_iops")

    def __init__(self, memory=None, memory_swap=None, memory_reservation=None, cpus=None,
                 cpu_shares=None, cpuset_cpus=None, cpuset_mems=None, pids_limit=None, blkio_weight=None,
                 device_read_bps=None, device_write_bps=None, device_read_iops=None, device_write_iops=None):
        # memory
        self.memory = None
        if memory is not None and memory != "":
            self.memory = parse_bytes(memory)
            if self.memory == 0:
                raise InvalidArgument(f"invalid memory limit {memory!r}: must be positive")
            if self.memory < MIN_MEMORY:
                raise InvalidArgument(f"invalid memory limit {memory!r}: minimum memory limit allowed is 6MB")
        self.memory_swap = None
        if memory_swap is not None and memory_swap != "":
            if memory_swap in (-1, "-1"):
                self.memory_swap = -1
            else:
                self.memory_swap = parse_bytes(memory_swap)
                if self.memory_swap == 0:  # docker: 0 means unset
                    self.memory_swap = None
        if self.memory_swap is not None and self.memory is None:
            raise InvalidArgument("a memory_swap limit needs a memory limit too (docker: "
                                  "you should always set the memory limit when using memoryswap limit)")
        if self.memory_swap is not None and self.memory_swap != -1 and self.memory_swap < self.memory:
            raise InvalidArgument(f"invalid memory_swap {memory_swap!r}: memory+swap must be at least "
                                  f"the memory limit ({_fmt_size(self.memory)})")
        self.memory_reservation = None
        if memory_reservation is not None and memory_reservation != "":
            self.memory_reservation = parse_bytes(memory_reservation)
            if self.memory_reservation == 0:
                self.memory_reservation = None
            elif self.memory_reservation < MIN_MEMORY:
                raise InvalidArgument(f"invalid memory_reservation {memory_reservation!r}: minimum memory "
                                      "reservation allowed is 6MB")
            elif self.memory is not None and self.memory_reservation > self.memory:
                raise InvalidArgument(f"invalid memory_reservation {memory_reservation!r}: it must not be "
                                      f"above the memory limit ({_fmt_size(self.memory)})")
        # cpu
        self.cpus = None
        if cpus is not None and cpus != "":
            try:
                value = float(cpus)
            except (TypeError, ValueError):
                raise InvalidArgument(f"invalid cpus {cpus!r}: use a number like 1.5") from None
            n = _host_cpus()
            if not math.isfinite(value) or value < 0.01 or value > n:
                raise InvalidArgument(f"invalid cpus {cpus!r}: range of CPUs is from 0.01 to {n}.00, "
                                      f"as there {'is' if n == 1 else 'are'} only {n} "
                                      f"CPU{'' if n == 1 else 's'} available")
            self.cpus = value
        self.cpu_shares = None
        if cpu_shares is not None and cpu_shares != "":
            try:
                shares = int(cpu_shares)
            except (TypeError, ValueError):
                raise InvalidArgument(f"invalid cpu_shares {cpu_shares!r}: use an integer") from None
            if shares < 0:
                raise InvalidArgument(f"invalid cpu_shares {cpu_shares!r}: must not be negative")
            if shares:
                self.cpu_shares = min(MAX_SHARES, max(MIN_SHARES, shares))
        self.cpuset_cpus = None
        if cpuset_cpus is not None and cpuset_cpus != "":
            self.cpuset_cpus = format_cpuset(parse_cpuset(cpuset_cpus, "cpuset cpus"))
        self.cpuset_mems = None
        if cpuset_mems is not None and cpuset_mems != "":
            self.cpuset_mems = format_cpuset(parse_cpuset(cpuset_mems, "cpuset mems"))
        # pids
        self.pids_limit = None
        if pids_limit is not None and pids_limit != "":
            try:
                pids = int(pids_limit)
            except (TypeError, ValueError):
                raise InvalidArgument(f"invalid pids_limit {pids_limit!r}: use an integer (-1 for unlimited)") \
                    from None
            if pids < -1:
                raise InvalidArgument(f"invalid pids_limit {pids_limit!r}: use a positive number, or -1 "
                                      "for unlimited")
            self.pids_limit = pids if pids > 0 else None
        # block I/O
        self.blkio_weight = None
        if blkio_weight not in (None, "", 0, "0"):
            try:
                w = int(blkio_weight)
            except (TypeError, ValueError):
                raise InvalidArgument(f"invalid blkio_weight {blkio_weight!r}: use an integer") from None
            if not 10 <= w <= 1000:
                raise InvalidArgument(f"invalid blkio_weight {blkio_weight!r}: range is 10 to 1000")
            self.blkio_weight = w
        for key, value in (("device_read_bps", device_read_bps), ("device_write_bps", device_write_bps),
                           ("device_read_iops", device_read_iops), ("device_write_iops", device_write_iops)):
            setattr(self, key, _throttles(key, value) or None)

    @classmethod
    def from_docker(cls, mem_limit=None, memswap_limit=None, mem_reservation=None, nano_cpus=None,
                    cpu_shares=None, cpuset_cpus=None, cpuset_mems=None, pids_limit=None, blkio_weight=None,
                    device_read_bps=None, device_write_bps=None, device_read_iops=None,
                    device_write_iops=None) -> "Limits":
        """Limits from the docker SDK's keyword names (nano_cpus in 1e-9 CPUs)."""
        cpus = None if not nano_cpus else int(nano_cpus) / 1e9
        return cls(memory=mem_limit, memory_swap=memswap_limit, memory_reservation=mem_reservation,
                   cpus=cpus, cpu_shares=cpu_shares, cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems,
                   pids_limit=pids_limit, blkio_weight=blkio_weight, device_read_bps=device_read_bps,
                   device_write_bps=device_write_bps, device_read_iops=device_read_iops,
                   device_write_iops=device_write_iops)

    def empty(self) -> bool:
        """True when no limit is set: then no cgroup is needed."""
        return all(getattr(self, k) is None for k in self.__slots__)

    def controllers(self) -> set:
        """The controllers these limits need."""
        need = set()
        if self.memory is not None or self.memory_reservation is not None:
            need.add("memory")
        if self.cpus is not None or self.cpu_shares is not None:
            need.add("cpu")
        if self.cpuset_cpus is not None or self.cpuset_mems is not None:
            need.add("cpuset")
        if self.pids_limit is not None:
            need.add("pids")
        if self.blkio_weight is not None or self._throttled():
            need.add("blkio")
        return need

    def _throttled(self) -> list:
        """[(kind, "MAJ:MIN", rate)] of the per-device throttles."""
        out = []
        for key in ("device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops"):
            for dev, rate in getattr(self, key) or ():
                out.append((key[len("device_"):], dev, rate))
        return out

    @property
    def cpu_quota(self):
        """cfs quota in us for `cpus` (period CPU_PERIOD), or None."""
        return None if self.cpus is None else max(1000, int(round(self.cpus * CPU_PERIOD)))

    @property
    def effective_swap(self):
        """memory + swap as applied: docker's default (twice memory) when unset."""
        if self.memory is None:
            return None
        return self.memory * 2 if self.memory_swap is None else self.memory_swap

    def v1_settings(self) -> list:
        """[(controller, file, value, optional)] for cgroup v1, in the order they are
        written. `optional` files are skipped when the host lacks them (swap accounting)."""
        out = []
        if self.cpuset_cpus is not None:
            out.append(("cpuset", "cpuset.cpus", self.cpuset_cpus, False))
        if self.cpuset_mems is not None:
            out.append(("cpuset", "cpuset.mems", self.cpuset_mems, False))
        if self.memory is not None:
            out.append(("memory", "memory.limit_in_bytes", str(self.memory), False))
            out.append(("memory", "memory.memsw.limit_in_bytes", str(self.effective_swap), True))
        if self.memory_reservation is not None:
            out.append(("memory", "memory.soft_limit_in_bytes", str(self.memory_reservation), False))
        if self.cpus is not None:
            out.append(("cpu", "cpu.cfs_period_us", str(CPU_PERIOD), False))
            out.append(("cpu", "cpu.cfs_quota_us", str(self.cpu_quota), False))
        if self.cpu_shares is not None:
            out.append(("cpu", "cpu.shares", str(self.cpu_shares), False))
        if self.pids_limit is not None:
            out.append(("pids", "pids.max", str(self.pids_limit), False))
        if self.blkio_weight is not None:  # only with a scheduler that weighs (BFQ, CFQ)
            out.append(("blkio", "blkio.weight", str(self.blkio_weight), True))
        for kind, dev, rate in self._throttled():
            out.append(("blkio", f"blkio.throttle.{kind}_device", f"{dev} {rate}", False))
        return out

    def v2_settings(self) -> list:
        """[(controller, file, value, optional)] for cgroup v2 (runc's conversions)."""
        out = []
        if self.cpuset_cpus is not None:
            out.append(("cpuset", "cpuset.cpus", self.cpuset_cpus, False))
        if self.cpuset_mems is not None:
            out.append(("cpuset", "cpuset.mems", self.cpuset_mems, False))
        if self.memory is not None:
            out.append(("memory", "memory.max", str(self.memory), False))
            swap = self.effective_swap
            out.append(("memory", "memory.swap.max", "max" if swap == -1 else str(swap - self.memory), True))
        if self.memory_reservation is not None:
            out.append(("memory", "memory.low", str(self.memory_reservation), False))
        if self.cpus is not None:
            out.append(("cpu", "cpu.max", f"{self.cpu_quota} {CPU_PERIOD}", False))
        if self.cpu_shares is not None:
            out.append(("cpu", "cpu.weight", str(cpu_shares_to_weight(self.cpu_shares)), False))
        if self.pids_limit is not None:
            out.append(("pids", "pids.max", str(self.pids_limit), False))
        if self.blkio_weight is not None:  # 10..1000 -> 1..10000, as runc; only where io.weight is
            out.append(("io", "io.weight", f"default {io_weight(self.blkio_weight)}", True))
        names = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}
        for kind, dev, rate in self._throttled():
            out.append(("io", "io.max", f"{dev} {names[kind]}={rate}", False))
        return out

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}

    def __eq__(self, other):
        return isinstance(other, Limits) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "Limits(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


def io_weight(blkio_weight: int) -> int:
    """A v1 block I/O weight (10..1000) as cgroup2's io.weight (1..10000), as runc."""
    return 1 + (blkio_weight - 10) * 9999 // 990


def _throttles(key: str, value) -> list:
    """A per-device throttle list in its stored form: [["MAJ:MIN", rate], ...]."""
    import stat as _stat
    out = []
    for item in value or ():
        if isinstance(item, dict):
            path, rate = item.get("Path"), item.get("Rate")
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            path, rate = item
        else:
            path, _, rate = str(item).rpartition(":")
        if not path or rate in (None, ""):
            raise InvalidArgument(f"invalid {key} {item!r}: use PATH:RATE")
        try:
            rate = parse_bytes(rate) if key.endswith("bps") else int(rate)
        except (InvalidArgument, TypeError, ValueError):
            raise InvalidArgument(f"invalid {key} {item!r}: bad rate {rate!r}") from None
        if rate <= 0:
            raise InvalidArgument(f"invalid {key} {item!r}: the rate must be positive")
        path = str(path)
        if path[:1] != "/" and ":" in path:  # stored as MAJ:MIN already
            dev = path
        else:
            try:
                st = os.stat(path)
            except OSError as e:
                raise InvalidArgument(f"invalid {key} {item!r}: {path}: {e.strerror}") from None
            if not _stat.S_ISBLK(st.st_mode):
                raise InvalidArgument(f"invalid {key} {item!r}: {path} is not a block device")
            dev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        out.append([dev, rate])
    return out
