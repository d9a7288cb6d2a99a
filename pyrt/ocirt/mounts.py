"""The mounts of an OCI config (`mounts`, linux.devices, the `cgroup` mounts)
resolved into the spawn core's mount tuples:

    (kind, flags, source, destination, data, fstype, propagation)

Destinations are checked here as far as the config shows them (nothing over or
inside /proc but what runc allows, through the rootfs's symlinks too); the C
core checks again where each one really resolves, with fds.
"""
from __future__ import annotations

import os

from pyrt.oci import fields

_err, _type, _int, _str_list = fields.err, fields.typed, fields.integer, fields.str_list


def _b(s) -> bytes:
    return os.fsencode(s)


MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED, MS_REC = 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 14
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC, "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# The devices runc gives every container (and allows in the devices cgroup).
DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
]

DEV_KIND = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}


def device(d, where):
    _type(d, dict, where, "an object")
    p = d.get("path")
    if not isinstance(p, str) or not p.startswith("/"):
        raise _err(where + ".path", "an absolute path is needed")
    kind = d.get("type")
    if kind not in DEV_KIND:
        raise _err(where + ".type", f"unknown device type {kind!r} (c, b, u or p)")
    major = _int(d.get("major", 0), where + ".major", 0) if kind != "p" else 0
    minor = _int(d.get("minor", 0), where + ".minor", 0) if kind != "p" else 0
    mode = d.get("fileMode")
    # the permissions; an st_mode's file type bits (podman writes them) are dropped, as runc does
    mode = 0o666 if mode is None else _int(mode, where + ".fileMode", 0, 0o177777) & 0o7777
    uid = _int(d.get("uid", 0), where + ".uid", 0)
    gid = _int(d.get("gid", 0), where + ".gid", 0)
    return (_b(os.path.normpath(p)), DEV_KIND[kind] | mode, major, minor, uid, gid)


FLAG_OPTS = {"ro": "RDONLY", "nosuid": "NOSUID", "nodev": "NODEV", "noexec": "NOEXEC"}
CLEAR_OPTS = {"rw": "RDONLY", "suid": "NOSUID", "dev": "NODEV", "exec": "NOEXEC"}
IGNORED_OPTS = {"defaults", "relatime", "norelatime", "noatime", "atime", "strictatime", "nostrictatime",
                 "nodiratime", "diratime", "sync", "async", "dirsync", "mand", "nomand", "lazytime",
                 "nolazytime", "silent", "loud", "iversion", "noiversion", "z", "Z", "tmpcopyup",
                 "notmpcopyup", "copy", "nocopy", "remount", "U"}


def mount_entry(m, where, bundle):
    """One mount of the spec -> (C mount tuple, is a cgroup mount, options)."""
    from pyrt import _core
    _type(m, dict, where, "an object")
    dest = m.get("destination")
    if not isinstance(dest, str) or not dest:
        raise _err(where + ".destination", "missing")
    if not dest.startswith("/"):
        dest = "/" + dest  # runc takes relative destinations from the root
    dest = os.path.normpath(dest)
    kind = m.get("type") or ""
    _type(kind, str, where + ".type", "a string")
    opts = _str_list(m.get("options") or [], where + ".options")
    source = m.get("source") or ""
    _type(source, str, where + ".source", "a string")
    if m.get("uidMappings") or m.get("gidMappings"):
        raise _err(where, "id-mapped mounts are not supported")
    flags = 0
    prop = 0
    data = []
    bind = kind == "bind"
    recursive = False
    for o in opts:
        if o in ("bind", "rbind"):
            bind = True
            recursive = recursive or o == "rbind"
        elif o in FLAG_OPTS:
            flags |= getattr(_core, "MNT_" + FLAG_OPTS[o])
        elif o in CLEAR_OPTS:
            flags &= ~getattr(_core, "MNT_" + CLEAR_OPTS[o])
        elif o in PROPAGATION:
            prop = PROPAGATION[o]
        elif o in ("idmap", "ridmap"):
            raise _err(where + ".options", f"{o}: id-mapped mounts are not supported")
        elif o in IGNORED_OPTS:
            continue
        else:
            data.append(o)
    if bind:
        if kind == "bind" and "bind" not in opts and "rbind" not in opts:
            recursive = True  # type bind without an option: as runc, a recursive bind
        if not source:
            raise _err(where + ".source", "a bind mount needs a source")
        src = os.path.join(bundle, source)
        if not os.path.exists(src):
            raise _err(where + ".source", f"{src}: no such file or directory")
        if not recursive:
            flags |= _core.MNT_NOREC
        return (_core.MOUNT_BIND, flags, _b(src), _b(dest), None, None, prop), False, opts
    if not kind:
        raise _err(where + ".type", "missing (and no bind option)")
    if kind == "cgroup":
        return (_core.MOUNT_FS, flags, None, _b(dest), None, b"cgroup", prop), True, opts
    return (_core.MOUNT_FS, flags, None, _b(dest), ",".join(data).encode() or None, _b(kind), prop), False, opts


# Files below /proc a bind mount may cover (what lxcfs emulates; runc's list).
PROC_MOUNT_OK = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                 "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                 "/proc/sys/kernel/ns_last_pid")


def _in_root(rootfs: str, dest: str) -> str:
    """Where `dest` lands in the rootfs, its symlinks resolved in it as the mount
    will resolve them (a path that does not exist yet is taken as it is)."""
    parts = dest.split("/")
    done: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p in ("", "."):
            continue
        if p == "..":
            if done:
                done.pop()
            continue
        try:
            target = os.readlink(os.path.join(rootfs, *done, p))
        except OSError:  # not a symlink, or not there
            done.append(p)
            continue
        links += 1
        if links > 40:
            break
        if target.startswith("/"):
            done = []
        parts[:0] = target.split("/")
    return "/" + "/".join(done)


def check_proc_mount(c, where, rootfs):
    """As runc (CVE-2019-19921): at /proc only a proc filesystem (or a bind of
    the host's /proc), below it only binds of the few files lxcfs emulates; a
    symlink in the rootfs that leads there counts as there."""
    from pyrt import _core
    kind, src, dest = c[0], c[2], c[3].decode(errors="surrogateescape")
    for d in dict.fromkeys((dest, _in_root(rootfs, dest))):
        if d == "/proc":
            if kind == _core.MOUNT_FS and c[5] == b"proc":
                continue
            if kind == _core.MOUNT_BIND and os.path.realpath(src) == b"/proc":
                continue
            raise _err(where + ".destination", f"{dest!r} cannot be mounted because it is not of type proc")
        if d.startswith("/proc/") and d not in PROC_MOUNT_OK:
            raise _err(where + ".destination", f"{dest!r} cannot be mounted because it is inside /proc")


def cgroup_mounts(spec_mounts, indices, has_ns, cgroup, layout=None, own_cgroups=None) -> list:
    """`spec_mounts` with the `cgroup` mounts at `indices` replaced by what shows
    the container's own cgroups at their destination: with a cgroup namespace, new cgroup (v1) /
    cgroup2 filesystems (v1 and hybrid hosts: under a tmpfs, one per hierarchy);
    without one, binds of the container's cgroup directories."""
    from pyrt import _core
    from pyrt.cgroups.cgroup import layout as host_layout
    lay = layout or host_layout()
    own = own_cgroups if own_cgroups is not None else ({} if has_ns else _own_cgroups())
    out = []
    replaced = set(indices)
    for i, m in enumerate(spec_mounts):
        if i not in replaced:
            out.append(m)
            continue
        flags, prop = m[1], m[6] if len(m) > 6 else 0
        dest = m[3].decode() if isinstance(m[3], bytes) else m[3]
        fs_flags = flags & ~_core.MNT_RDONLY
        if lay.mode == "v2":
            if has_ns:
                out.append((_core.MOUNT_FS, flags, None, _b(dest), None, b"cgroup2", prop))
            else:
                src = cgroup.v2_dir if cgroup is not None and cgroup.v2_dir else \
                    os.path.join(lay.unified, own.get("", "/").lstrip("/"))
                out.append((_core.MOUNT_BIND, flags, _b(src), _b(dest), None, None, prop))
            continue
        # v1 or hybrid: a tmpfs holding one directory per hierarchy
        out.append((_core.MOUNT_FS, flags, None, _b(dest), b"mode=755", b"tmpfs", prop))
        mounts = {}
        for ctrl, mp in sorted(lay.v1.items()):
            mounts.setdefault(mp, []).append(ctrl)
        if lay.unified:
            mounts[lay.unified] = None
        for mp, ctrls in sorted(mounts.items()):
            name = os.path.basename(mp)
            target = _b(os.path.join(dest, name))
            if has_ns:
                if ctrls is None:
                    out.append((_core.MOUNT_FS, fs_flags | (flags & _core.MNT_RDONLY), None, target, None,
                                b"cgroup2", 0))
                else:
                    out.append((_core.MOUNT_FS, fs_flags | (flags & _core.MNT_RDONLY), None, target,
                                ",".join(ctrls).encode(), b"cgroup", 0))
                continue
            if ctrls is None:
                src = cgroup.v2_dir if cgroup is not None and cgroup.v2_dir else \
                    os.path.join(mp, own.get("", "/").lstrip("/"))
            else:
                d = cgroup.v1_dirs.get(ctrls[0]) if cgroup is not None else None
                src = d or os.path.join(mp, own.get(ctrls[0], "/").lstrip("/"))
            if os.path.isdir(src):
                out.append((_core.MOUNT_BIND, (flags & ~_core.MNT_NOREC) | _core.MNT_NOREC, _b(src), target,
                            None, None, 0))
    return out


def _own_cgroups() -> dict:
    """{controller or "": path} of this process (/proc/self/cgroup)."""
    out = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in (ctrls.split(",") if ctrls else [""]):
                    out[c] = path
    except OSError:
        pass
    return out
