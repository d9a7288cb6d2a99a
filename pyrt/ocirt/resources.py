"""linux.resources of an OCI config, validated into the form
pyrt.cgroups.oci.apply_resources writes (see there)."""
from __future__ import annotations

from pyrt.errors import InvalidArgument
from pyrt.oci import fields

_err, _type, _int, _str_list = fields.err, fields.typed, fields.integer, fields.str_list

INT64_MAX = (1 << 63) - 1
# the cgroup.* files of linux.resources.unified that are limits
UNIFIED_CGROUP_LIMITS = ("cgroup.max.depth", "cgroup.max.descendants")

DEFAULT_DEVICE_RULES = [
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm", "c 1:9 rwm",
    "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm",
]


def parse_resources(res, devices):
    """The resources we apply, validated: {memory: {...}, cpu: {...}, pids, devices:
    [rules], blockIO: {...} (see block_io), unified: {...}}."""
    _type(res, dict, "linux.resources", "an object")
    # what pyrt-runtime cannot apply is an error (the spec: a runtime unable to
    # create the environment the config asks for MUST say so), never ignored
    for key in ("hugepageLimits", "network", "rdma"):
        if res.get(key):
            raise _err(f"linux.resources.{key}", "not supported by pyrt-runtime")
    for key in ("kernel", "kernelTCP"):
        if (res.get("memory") or {}).get(key) not in (None, -1, 0):
            raise _err(f"linux.resources.memory.{key}", "not supported by pyrt-runtime (nor by cgroup2)")
    for key in ("realtimeRuntime", "realtimePeriod"):
        if (res.get("cpu") or {}).get(key):
            raise _err(f"linux.resources.cpu.{key}", "not supported by pyrt-runtime")
    out = {}
    mem = res.get("memory") or {}
    _type(mem, dict, "linux.resources.memory", "an object")
    m = {}
    for key in ("limit", "reservation", "swap"):
        v = mem.get(key)
        if v is not None:
            # bounded: a v1 kernel takes a larger number as 0 (a container killed at once)
            _int(v, f"linux.resources.memory.{key}", None, INT64_MAX)
            if v > 0:
                m[key] = v
            elif v == -1 and key == "swap":
                m[key] = -1
    if mem.get("swappiness") is not None:
        m["swappiness"] = _int(mem["swappiness"], "linux.resources.memory.swappiness", 0, 100)
    if mem.get("disableOOMKiller"):
        m["disableOOMKiller"] = True
    if "limit" in m and m.get("swap", 0) > 0 and m["swap"] < m["limit"]:
        raise _err("linux.resources.memory.swap", "memory+swap must not be below the memory limit")
    if m:
        out["memory"] = m
    cpu = res.get("cpu") or {}
    _type(cpu, dict, "linux.resources.cpu", "an object")
    c = {}
    if cpu.get("shares"):
        c["shares"] = _int(cpu["shares"], "linux.resources.cpu.shares", 0)
    if cpu.get("quota") is not None and cpu["quota"] != 0:
        c["quota"] = _int(cpu["quota"], "linux.resources.cpu.quota")
    if cpu.get("period"):
        c["period"] = _int(cpu["period"], "linux.resources.cpu.period", 1000, 1000000)
    for key in ("cpus", "mems"):
        if cpu.get(key):
            from pyrt.cgroups.cgroup import format_cpuset, parse_cpuset
            try:
                c[key] = format_cpuset(parse_cpuset(cpu[key], f"cpuset {key}"))
            except InvalidArgument as e:
                raise _err(f"linux.resources.cpu.{key}", str(e)) from None
    if c:
        out["cpu"] = c
    pids = res.get("pids") or {}
    _type(pids, dict, "linux.resources.pids", "an object")
    if pids.get("limit") is not None and pids["limit"] != 0:
        out["pids"] = _int(pids["limit"], "linux.resources.pids.limit", -1)
    rules = []
    for i, d in enumerate(res.get("devices") or []):
        where = f"linux.resources.devices[{i}]"
        _type(d, dict, where, "an object")
        kind = d.get("type") or "a"
        if kind not in ("a", "c", "b"):
            raise _err(where + ".type", f"unknown device type {kind!r}")
        access = d.get("access") or "rwm"
        if not isinstance(access, str) or not access or set(access) - set("rwm"):
            raise _err(where + ".access", f"invalid access {access!r}")
        major = d.get("major")
        minor = d.get("minor")
        mj = -1 if major is None or major == -1 else _int(major, where + ".major", 0)
        mn = -1 if minor is None or minor == -1 else _int(minor, where + ".minor", 0)
        access = "".join(ch for ch in "rwm" if ch in access)
        if kind == "a":
            mj = mn = -1
        rules.append((kind, mj, mn, access, bool(d.get("allow"))))
    if rules:
        # as runc: the devices the container gets are allowed after the spec's rules
        for path, mode, major, minor, _, _ in devices:
            kind = {0o020000: "c", 0o060000: "b"}.get(mode & 0o170000)
            if kind:
                rules.append((kind, major, minor, "rwm", True))
        from pyrt.cgroups.devices import parse_rule
        rules += [parse_rule(r) for r in DEFAULT_DEVICE_RULES]
        out["devices"] = rules
    bio = block_io(res.get("blockIO") or {})
    if bio:
        out["blockIO"] = bio
    uni = res.get("unified") or {}
    _type(uni, dict, "linux.resources.unified", "an object")
    for k, v in uni.items():
        if "/" in k or k.startswith(".") or not isinstance(v, str):
            raise _err(f"linux.resources.unified.{k}", "invalid")
        if k.startswith("cgroup.") and k not in UNIFIED_CGROUP_LIMITS:
            # cgroup.procs and cgroup.threads would move any host process in (and delete
            # kill it), cgroup.kill, .freeze, .subtree_control, .type act on the tree
            raise _err(f"linux.resources.unified.{k}", "not a resource limit: only cgroup.max.depth "
                       "and cgroup.max.descendants of the cgroup.* files may be set")
    if uni:
        out["unified"] = uni
    return out


# device numbers as the kernel has them (dev_t: a 12-bit major, a 20-bit minor)
MAJOR_MAX, MINOR_MAX = (1 << 12) - 1, (1 << 20) - 1
THROTTLES = {"throttleReadBpsDevice": "read_bps", "throttleWriteBpsDevice": "write_bps",
             "throttleReadIOPSDevice": "read_iops", "throttleWriteIOPSDevice": "write_iops"}


def _device(d, where) -> str:
    """A blockIO entry's device as "MAJ:MIN", made from two integers in the
    kernel's ranges (nothing else of the config reaches the cgroup file)."""
    _type(d, dict, where, "an object")
    major = _int(d.get("major"), where + ".major", 0, MAJOR_MAX)
    minor = _int(d.get("minor"), where + ".minor", 0, MINOR_MAX)
    return f"{major}:{minor}"


def block_io(bio) -> dict:
    """linux.resources.blockIO validated: {"weight": 10..1000, "leafWeight": 10..1000,
    "weightDevice": [("MAJ:MIN", weight)], "leafWeightDevice": [("MAJ:MIN", weight)],
    "read_bps" / "write_bps" / "read_iops" / "write_iops": [["MAJ:MIN", rate]]}, each
    key only when set (a weight or a rate of 0 sets nothing)."""
    _type(bio, dict, "linux.resources.blockIO", "an object")
    out = {}
    for key in ("weight", "leafWeight"):
        v = bio.get(key)
        if v is not None and v != 0:
            out[key] = _int(v, f"linux.resources.blockIO.{key}", 10, 1000)
    wd = bio.get("weightDevice") or []
    _type(wd, list, "linux.resources.blockIO.weightDevice", "a list")
    for i, d in enumerate(wd):
        where = f"linux.resources.blockIO.weightDevice[{i}]"
        dev = _device(d, where)
        for key, into in (("weight", "weightDevice"), ("leafWeight", "leafWeightDevice")):
            v = d.get(key)
            if v is not None and v != 0:
                out.setdefault(into, []).append((dev, _int(v, f"{where}.{key}", 10, 1000)))
    for key, kind in THROTTLES.items():
        items = bio.get(key) or []
        _type(items, list, f"linux.resources.blockIO.{key}", "a list")
        for i, d in enumerate(items):
            where = f"linux.resources.blockIO.{key}[{i}]"
            dev = _device(d, where)
            rate = _int(d.get("rate"), where + ".rate", 0, 2**64 - 1)
            if rate:
                out.setdefault(kind, []).append([dev, rate])
    return out
