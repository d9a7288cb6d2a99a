"""The OCI runtime spec's linux.resources written into a container's cgroup, as
pyrt-runtime applies them: each setting to whichever hierarchy holds its
controller on this host (v1 files or cgroup2 files), devices by the v1 devices
controller or by the eBPF program on cgroup2. `resources` is the validated form
pyrt.ocirt makes of a config:

    {"memory": {"limit", "reservation", "swap", "swappiness", "disableOOMKiller"},
     "cpu": {"shares", "quota", "period", "cpus", "mems"}, "pids": N,
     "devices": [(type, major, minor, access, allow)], "unified": {file: value}}
"""
from __future__ import annotations

import os

from pyrt.cgroups.cgroup import CPU_PERIOD, _write, cpu_shares_to_weight
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
    for k, v in (resources.get("unified") or {}).items():
        if not cg.v2_dir:
            raise CgroupError(2, "linux.resources.unified needs cgroup v2", k)
        put(cg.v2_dir, k, v)
