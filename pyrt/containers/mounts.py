"""What a container mounts, as the user asked for it: docker's `-v`, `--tmpfs`,
`--mount` and the docker SDK's volumes/tmpfs/mounts arguments, validated into the
mount list stored with the container (bind, volume and tmpfs entries)."""
from __future__ import annotations

import os

from pyrt.errors import InvalidArgument


def _parse_volume_spec(spec: str) -> dict:
    """`-v` syntax: SRC:DST[:OPTS] (SRC a host path or a volume name) or DST
    alone (an anonymous volume); OPTS: ro, rw, nocopy (z/Z accepted, ignored)."""
    parts = spec.split(":")
    if len(parts) == 1:
        src, dst, opts = None, parts[0], []
    elif len(parts) in (2, 3):
        src, dst = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) == 3 else []
    else:
        raise InvalidArgument(f"invalid volume {spec!r}: expected [SRC:]DST[:OPTIONS]")
    ro, nocopy = False, False
    for o in opts:
        if o == "ro":
            ro = True
        elif o == "nocopy":
            nocopy = True
        elif o not in ("rw", "z", "Z", ""):
            raise InvalidArgument(f"invalid volume option {o!r} in {spec!r}: expected ro, rw or nocopy")
    if src == "":
        raise InvalidArgument(f"invalid volume {spec!r}: empty source")
    if src is None:
        return {"Type": "volume", "Name": None, "Destination": dst, "RW": not ro, "NoCopy": nocopy}
    if src.startswith("/") or src.startswith("."):
        return {"Type": "bind", "Source": src, "Destination": dst, "RW": not ro}
    return {"Type": "volume", "Name": src, "Destination": dst, "RW": not ro, "NoCopy": nocopy}


def _from_sdk_mount(m: dict) -> dict:
    """A docker SDK Mount dict (Type, Source, Target, ReadOnly, VolumeOptions,
    TmpfsOptions) into pyrt's stored mount form."""
    kind = m.get("Type", "volume")
    dst = m.get("Target") or m.get("Destination")
    ro = bool(m.get("ReadOnly")) or m.get("RW") is False
    if kind == "bind":
        return {"Type": "bind", "Source": m.get("Source"), "Destination": dst, "RW": not ro}
    if kind == "volume":
        nocopy = bool((m.get("VolumeOptions") or {}).get("NoCopy") or m.get("NoCopy"))
        return {"Type": "volume", "Name": m.get("Source") or m.get("Name") or None, "Destination": dst,
                "RW": not ro, "NoCopy": nocopy}
    if kind == "tmpfs":
        t = m.get("TmpfsOptions") or {}
        out = {"Type": "tmpfs", "Destination": dst, "Options": ["nosuid", "nodev", "noexec"]}
        if t.get("SizeBytes") or m.get("Size"):
            out["Size"] = str(t.get("SizeBytes") or m.get("Size"))
        if t.get("Mode") is not None or m.get("Mode") is not None:
            out["Mode"] = int(t.get("Mode") if t.get("Mode") is not None else m.get("Mode"))
        if ro:
            out["Options"].append("ro")
        return out
    raise InvalidArgument(f"unknown mount type {kind!r}: expected bind, volume or tmpfs")


def _tmpfs_mount(dst: str, opts: str) -> dict:
    m = {"Type": "tmpfs", "Destination": dst, "Options": ["nosuid", "nodev", "noexec"]}
    for o in filter(None, (opts or "").split(",")):
        if o.startswith("size="):
            from pyrt.cgroups.limits import parse_bytes
            m["Size"] = str(parse_bytes(o[5:]))
        elif o.startswith("mode="):
            try:
                m["Mode"] = int(o[5:], 8)
            except ValueError:
                raise InvalidArgument(f"invalid tmpfs mode {o[5:]!r}: expected octal digits") from None
        elif o == "exec":
            m["Options"].remove("noexec")
        elif o in ("ro", "rw", "nosuid", "nodev", "noexec", "suid", "dev"):
            if o in ("suid", "dev"):
                m["Options"].remove("no" + o)
            elif o != "rw":
                m["Options"].append(o)
        else:
            raise InvalidArgument(f"invalid tmpfs option {o!r} for {dst}")
    return m


def collect_mounts(volumes, tmpfs, mounts, volumes_from_mounts) -> list[dict]:
    """Every mount the caller asked for, validated (no volume is created yet)."""
    out = []
    if isinstance(volumes, dict):  # docker SDK: {src: {"bind": dst, "mode": "ro"}}
        for src, v in volumes.items():
            spec = f"{src}:{v['bind']}:{v.get('mode', 'rw')}" if isinstance(v, dict) else f"{src}:{v}"
            out.append(_parse_volume_spec(spec))
    else:
        out.extend(_parse_volume_spec(spec) for spec in volumes or ())
    items = tmpfs.items() if isinstance(tmpfs, dict) else ((t.partition(":")[0], t.partition(":")[2]) for t in tmpfs or ())
    out.extend(_tmpfs_mount(dst, opts) for dst, opts in items)
    out.extend(_from_sdk_mount(m) for m in mounts or ())
    seen = {m["Destination"] for m in out}
    out.extend(m for m in volumes_from_mounts if m["Destination"] not in seen)
    dests = set()
    for m in out:
        dst = m["Destination"]
        if not dst or not dst.startswith("/"):
            raise InvalidArgument(f"invalid mount destination {dst!r}: must be an absolute path")
        norm = os.path.normpath(dst)
        if norm == "/":
            raise InvalidArgument("invalid mount destination '/': cannot mount over the container's root")
        if norm in dests:
            raise InvalidArgument(f"duplicate mount point: {dst}")
        dests.add(norm)
        if m["Type"] == "bind":
            src = m["Source"]
            if not src:
                raise InvalidArgument(f"bind mount for {dst} needs a source")
            if not os.path.exists(src):
                raise InvalidArgument(f"bind source path does not exist: {src}")
            m["Source"] = os.path.abspath(src)
        elif m["Type"] == "volume" and m["Name"] is not None:
            from pyrt.containers.volumes import validate_name
            validate_name(m["Name"])
    return out
