"""The OCI runtime spec's linux.resources written into a container's cgroup, as
pyrt-runtime applies them: each setting to whichever hierarchy holds its
controller on this host (v1 files or cgroup2 files), devices by the v1 devices
controller or by the eBPF program on cgroup2. `resources` is the validated form
pyrt.ocirt makes of a config:

    {"memory": {"limit", "reservation", "swap", "swappiness", "disableOOMKiller"},
     "cpu": {"shares", "quota", "period", "cpus", "mems"}, "pids": N,
     "devices": [(type, major, minor, access, allow)], "unified": {file: value},
     "blockIO": {"weight", "leafWeight", "weightDevice", "leafWeightDevice",
                 "read_bps", "write_bps", "read_iops", "write_iops"}}

blockIO goes through pyrt's own block I/O limits (pyrt.cgroups.limits.Limits:
blkio_weight and the per-device throttles, v1 blkio.* or v2 io.weight/io.max);
what Limits has no field for (per-device weights, leaf weights) is written here.
A weight is written to the file of the scheduler that weighs (blkio.weight, else
BFQ's blkio.bfq.weight; on cgroup2 io.bfq.weight, else io.weight): a host with
neither makes it an error, never a setting silently dropped.
"""
from __future__ import annotations

import errno
import os

from pyrt.cgroups.cgroup import CPU_PERIOD, _write, cpu_shares_to_weight
from pyrt.cgroups.limits import Limits, io_weight
from pyrt.errors import CgroupError


def resource_controllers(resources) -> list:
    """The cgroup controllers the resources need."""
    need = []
    if "memory" in resources:
        need.append("memory")
    cpu = resources.get("cpu") or {}
    if "shares" in cpu or "quota" in cpu or "period" in cpu:
        need.append("cpu")
    if "cpus" in cpu or "mems" in cpu:
        need.append("cpuset")
    if "pids" in resources:
        need.append("pids")
    if "devices" in resources:
        need.append("devices")
    if "blockIO" in resources:
        need += ["blkio", "io"]  # v1's name and cgroup2's: each counts where the host has it
    return need


def apply_resources(cg, resources) -> None:
    """Write the resources into the container's cgroup (v1 or v2 files, whichever
    hierarchy holds each controller)."""
    def where(ctrl):
        if ctrl in cg.v1_dirs:
            return "v1", cg.v1_dirs[ctrl]
        return "v2", cg.v2_dir

    def put(d, name, value, optional=False):
        path = os.path.join(d, name)
        if optional and not os.path.exists(path):
            return
        _write(path, value)

    cpu = resources.get("cpu") or {}
    for key in ("cpus", "mems"):
        if key in cpu:
            kind, d = where("cpuset")
            put(d, f"cpuset.{key}", cpu[key])
    mem = resources.get("memory") or {}
    if mem:
        kind, d = where("memory")
        if kind == "v1":
            if "limit" in mem:
                put(d, "memory.limit_in_bytes", str(mem["limit"]))
            if "swap" in mem:
                put(d, "memory.memsw.limit_in_bytes", str(mem["swap"]), optional=True)
            if "reservation" in mem:
                put(d, "memory.soft_limit_in_bytes", str(mem["reservation"]))
            if "swappiness" in mem:
                put(d, "memory.swappiness", str(mem["swappiness"]), optional=True)
            if mem.get("disableOOMKiller"):
                put(d, "memory.oom_control", "1")
        else:
            if "limit" in mem:
                put(d, "memory.max", str(mem["limit"]))
            if "swap" in mem:
                swap = "max" if mem["swap"] == -1 else str(max(0, mem["swap"] - mem.get("limit", 0)))
                put(d, "memory.swap.max", swap, optional=True)
            if "reservation" in mem:
                put(d, "memory.low", str(mem["reservation"]))
    if "shares" in cpu or "quota" in cpu or "period" in cpu:
        kind, d = where("cpu")
        period = cpu.get("period", CPU_PERIOD)
        if kind == "v1":
            if "shares" in cpu:
                put(d, "cpu.shares", str(cpu["shares"]))
            if "period" in cpu or "quota" in cpu:
                put(d, "cpu.cfs_period_us", str(period))
            if "quota" in cpu:
                put(d, "cpu.cfs_quota_us", str(cpu["quota"]))
        else:
            if "shares" in cpu:
                put(d, "cpu.weight", str(cpu_shares_to_weight(cpu["shares"])))
            if "period" in cpu or "quota" in cpu:
                q = cpu.get("quota", -1)
                put(d, "cpu.max", f"{'max' if q < 0 else q} {period}")
    if "pids" in resources:
        kind, d = where("pids")
        limit = resources["pids"]
        put(d, "pids.max", "max" if limit < 0 else str(limit))
    if "devices" in resources:
        rules = resources["devices"]
        if "devices" in cg.v1_dirs:
            from pyrt.cgroups.devices import format_rule
            d = cg.v1_dirs["devices"]
            for rule in rules:
                put(d, "devices.allow" if rule[4] else "devices.deny", format_rule(rule))
        elif cg.v2_dir:
            # cgroup2: an eBPF program. A new v1 devices cgroup starts allowing
            # everything, then takes the rules in order: the same here.
            cg.set_devices([("a", -1, -1, "rwm", True)] + list(rules))
        else:
            raise CgroupError(19, "linux.resources.devices needs the devices controller or cgroup2",
                              cg.path)
    if "blockIO" in resources:
        kind, d = where("blkio")
        _apply_block_io(kind, d, resources["blockIO"])
    for k, v in (resources.get("unified") or {}).items():
        if not cg.v2_dir:
            raise CgroupError(2, "linux.resources.unified needs cgroup v2", k)
        put(cg.v2_dir, k, v)


def _first(d, names):
    """The first of the files `names` the cgroup directory has, or None."""
    return next((n for n in names if os.path.exists(os.path.join(d, n))), None)


def _apply_block_io(kind, d, bio) -> None:
    lim = Limits(blkio_weight=bio.get("weight"), device_read_bps=bio.get("read_bps"),
                 device_write_bps=bio.get("write_bps"), device_read_iops=bio.get("read_iops"),
                 device_write_iops=bio.get("write_iops"))

    def missing(what, files):
        if not files:
            return CgroupError(errno.EOPNOTSUPP, f"linux.resources.blockIO.{what}: cgroup2 has no leaf weights", d)
        return CgroupError(errno.ENOENT, f"linux.resources.blockIO.{what}: this host's block I/O controller "
                           f"has no {' nor '.join(files)} (no scheduler that weighs, such as BFQ)", d)

    def put(what, name, value):  # an error names the config's field
        try:
            _write(os.path.join(d, name), value)
        except CgroupError as e:
            raise CgroupError(e.errno, f"linux.resources.blockIO.{what}: write {value!r} to",
                              os.path.join(d, name)) from None

    def weights(what, v1_files, v2_files, values):
        """Write weights ("default" or a device) to the first file that exists."""
        files = v1_files if kind == "v1" else v2_files
        name = _first(d, files)
        if name is None:
            raise missing(what, files)
        for dev, w in values:
            if kind == "v2" and name == "io.weight":
                w = io_weight(w)
            put(what, name, f"{dev} {w}" if dev else (str(w) if kind == "v1" else f"default {w}"))

    if "weight" in bio:
        weights("weight", ("blkio.weight", "blkio.bfq.weight"), ("io.bfq.weight", "io.weight"),
                [("", bio["weight"])])
    if "weightDevice" in bio:
        weights("weightDevice", ("blkio.weight_device", "blkio.bfq.weight_device"),
                ("io.bfq.weight", "io.weight"), bio["weightDevice"])
    if "leafWeight" in bio:  # CFQ's (gone since Linux 5.0); cgroup2 has none
        weights("leafWeight", ("blkio.leaf_weight",), (), [("", bio["leafWeight"])])
    if "leafWeightDevice" in bio:
        weights("weightDevice[].leafWeight", ("blkio.leaf_weight_device",), (), bio["leafWeightDevice"])
    fields = {"read_bps": "throttleReadBpsDevice", "write_bps": "throttleWriteBpsDevice",
              "read_iops": "throttleReadIOPSDevice", "write_iops": "throttleWriteIOPSDevice"}
    settings = lim.v1_settings() if kind == "v1" else lim.v2_settings()
    throttles = [s for s in settings if s[0] in ("blkio", "io") and s[1] not in ("blkio.weight", "io.weight")]
    for (_ctrl, name, value, _optional), (what, _dev, _rate) in zip(throttles, lim._throttled()):
        put(fields[what], name, value)
