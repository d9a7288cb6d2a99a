"""OCI runtime spec (a bundle's config.json, runtime-spec 1.x): parse and validate
it into what pyrt's spawn core takes (a SpawnSpec with its OCI block), the
cgroup and its resources, and the hooks. Used by `pyrt-runtime`
(pyrt/cli/oci_runtime.py).

    cfg = load_config(bundle)               # the JSON, checked to be a runtime spec
    plan = parse(cfg, bundle)               # validated; ConfigError names the field
    plan.spec, plan.oci                     # SpawnSpec and OciOptions, still without fds
    plan.joins, plan.pid_join               # namespaces joined by path
    plan.cgroup_parent, plan.cgroup_name, plan.resources
    apply_resources(cgroup, plan.resources) # once the cgroup exists
    plan.add_cgroup_mounts(cgroup)          # the spec's `cgroup` mounts, now that paths are known

What the spawn core sets up comes from the spec only: its mounts (in order), its
devices (plus the default ones runc adds), masked and read-only paths; pyrt's own
fixed /proc, /sys and /dev set-up is not used.
"""
from __future__ import annotations

import os

from pyrt import sys as psys
from pyrt.errors import ConfigError, InvalidArgument, PyrtError  # noqa: F401 (re-exported)

SPEC_VERSION = "1.1.0"

#: a container process's PATH when neither the image nor the caller sets one (docker's and runc's)

CLONE = {
    "mount": psys.CLONE_NEWNS, "uts": psys.CLONE_NEWUTS, "ipc": psys.CLONE_NEWIPC,
    "user": psys.CLONE_NEWUSER, "pid": psys.CLONE_NEWPID, "network": psys.CLONE_NEWNET,
    "cgroup": psys.CLONE_NEWCGROUP, "time": psys.CLONE_NEWTIME,
}
NS_FILES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "user": "user", "pid": "pid",
            "network": "net", "cgroup": "cgroup", "time": "time"}

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
DEFAULT_DEVICE_RULES = [
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm", "c 1:9 rwm",
    "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm",
]

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# seccomp: the kernel's SECCOMP_RET_* values; operators as libseccomp numbers them
SECCOMP_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7ff00000,
    "SCMP_ACT_LOG": 0x7ffc0000, "SCMP_ACT_ALLOW": 0x7fff0000,
}
SECCOMP_OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
SECCOMP_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
SECCOMP_ARCHS = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64", "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64", "SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64", "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x", "SCMP_ARCH_PARISC": "parisc", "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
}

# sysctls that belong to a namespace (runc's list): only those may be set
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def _err(where, msg):
    return ConfigError(f"config.json: {where}: {msg}")


def _type(value, types, where, what):
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)):
        raise _err(where, f"expected {what}, got {type(value).__name__}")
    return value


def _int(value, where, lo=None, hi=None):
    _type(value, int, where, "an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _err(where, f"{value} is out of range")
    return value


def _str_list(value, where):
    _type(value, list, where, "a list of strings")
    for i, v in enumerate(value):
        _type(v, str, f"{where}[{i}]", "a string")
    return value


def _b(s) -> bytes:
    return os.fsencode(s)


def load_config(bundle: str) -> dict:
    """The bundle's config.json, parsed; ConfigError when it is missing or not a
    runtime spec of version 1.x."""
    import json
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            cfg = json.loads(f.read())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {bundle!r} a bundle?)") from None
    except ValueError as e:
        raise ConfigError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    version = cfg.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise _err("ociVersion", f"{version!r} is not a supported runtime spec version (1.x)")
    return cfg


class Plan:
    """What a bundle's config asks for, resolved (see the module doc)."""

    def __init__(self):
        self.spec = None            # pyrt.launch.process.SpawnSpec
        self.oci = None             # pyrt._core.OciOptions
        self.joins = []             # [(CLONE_NEW*, path)] joined in the child, user first
        self.pid_join = None        # a pid namespace path: joined by the caller before the spawn
        self.cgroup_parent = None
        self.cgroup_name = None
        self.resources = {}
        self.hooks = {}
        self.annotations = {}
        self.oom_score_adj = None
        self.terminal = False
        self.process = {}
        self.new_namespaces = set()
        self.cgroup_mounts = []     # [(index into spec.mounts to replace, options)]
        self.warnings = []

    def add_cgroup_mounts(self, cgroup, layout=None, own_cgroups=None):
        """Replace each `cgroup` mount of the spec by what shows the container's own
        cgroups at its destination: with a cgroup namespace, new cgroup (v1) /
        cgroup2 filesystems (v1 and hybrid hosts: under a tmpfs, one per hierarchy);
        without one, binds of the container's cgroup directories."""
        from pyrt import _core
        from pyrt.cgroups.cgroup import layout as host_layout
        if not self.cgroup_mounts:
            return
        lay = layout or host_layout()
        has_ns = "cgroup" in self.new_namespaces or any(t == CLONE["cgroup"] for t, _ in self.joins)
        own = own_cgroups if own_cgroups is not None else ({} if has_ns else _own_cgroups())
        out = []
        replaced = {i: opts for i, opts in self.cgroup_mounts}
        for i, m in enumerate(self.spec.mounts):
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
        self.spec.mounts = out
        self.cgroup_mounts = []


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


def parse(cfg: dict, bundle: str, *, container_id: str = "", systemd_cgroup: bool = False) -> Plan:
    """Validate a runtime spec and resolve it into a Plan (no fd opened, nothing
    created). Relative paths (root.path, bind sources) are taken from the bundle."""
    from pyrt import _core
    from pyrt.launch.process import SpawnSpec

    bundle = os.path.abspath(bundle)
    plan = Plan()
    linux = cfg.get("linux") or {}
    _type(linux, dict, "linux", "an object")

    # -- process ------------------------------------------------------------------
    proc = cfg.get("process")
    if not isinstance(proc, dict):
        raise _err("process", "missing (a container needs a process to run)")
    plan.process = proc
    args = _str_list(proc.get("args") or [], "process.args")
    if not args:
        raise _err("process.args", "empty: nothing to run")
    env = _str_list(proc.get("env") or [], "process.env")
    for i, e in enumerate(env):
        if "=" not in e:
            raise _err(f"process.env[{i}]", f"{e!r} is not KEY=VALUE")
    path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), None)
    cwd = proc.get("cwd", "/")
    _type(cwd, str, "process.cwd", "a string")
    if not cwd.startswith("/"):
        raise _err("process.cwd", f"{cwd!r} is not an absolute path")
    spec = SpawnSpec(argv=[_b(a) for a in args], env=[_b(e) for e in env],
                     path=_b(path) if path is not None else None, cwd=_b(cwd))
    oci = _core.OciOptions()
    plan.spec, plan.oci = spec, oci
    spec.oci = oci
    plan.terminal = bool(proc.get("terminal", False))

    user = proc.get("user") or {}
    _type(user, dict, "process.user", "an object")
    uid = _int(user.get("uid", 0), "process.user.uid", 0, 2**32 - 2)
    gid = _int(user.get("gid", 0), "process.user.gid", 0, 2**32 - 2)
    groups = [_int(g, f"process.user.additionalGids[{i}]", 0, 2**32 - 2)
              for i, g in enumerate(user.get("additionalGids") or [])]
    spec.user = (uid, gid, groups)
    if user.get("umask") is not None:
        spec.umask = _int(user["umask"], "process.user.umask", 0, 0o777)

    caps_cfg = proc.get("capabilities")
    if caps_cfg is not None:
        _type(caps_cfg, dict, "process.capabilities", "an object")
        sets = {k: _cap_mask(caps_cfg.get(k) or [], f"process.capabilities.{k}", plan)
                for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
        spec.caps = sets["bounding"]
        oci.cap_sets = (sets["effective"], sets["permitted"], sets["inheritable"], sets["ambient"])
    else:
        spec.caps = 0
        oci.cap_sets = (0, 0, 0, 0)

    import resource
    rlimits = []
    seen = set()
    for i, rl in enumerate(proc.get("rlimits") or []):
        where = f"process.rlimits[{i}]"
        _type(rl, dict, where, "an object")
        name = rl.get("type")
        res = getattr(resource, name, None) if isinstance(name, str) and name.startswith("RLIMIT_") else None
        if res is None:
            raise _err(where + ".type", f"unknown rlimit {name!r}")
        if name in seen:
            raise _err(where + ".type", f"{name} given twice")
        seen.add(name)
        hard = _int(rl.get("hard", 0), where + ".hard", 0, 2**64 - 1)
        soft = _int(rl.get("soft", 0), where + ".soft", 0, 2**64 - 1)
        if soft > hard:
            raise _err(where, f"soft limit {soft} above the hard limit {hard}")
        rlimits.append((res, soft, hard))
    spec.rlimits = rlimits
    if proc.get("noNewPrivileges"):
        spec.setup |= _core.SETUP_NO_NEW_PRIVS
    if proc.get("oomScoreAdj") is not None:
        plan.oom_score_adj = _int(proc["oomScoreAdj"], "process.oomScoreAdj", -1000, 1000)
    for key in ("apparmorProfile", "selinuxLabel"):
        if proc.get(key):
            plan.warnings.append(f"process.{key} ignored: pyrt-runtime has no LSM support")

    # -- namespaces ---------------------------------------------------------------
    flags = 0
    joined = {}
    seen = set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        where = f"linux.namespaces[{i}]"
        _type(ns, dict, where, "an object")
        kind = ns.get("type")
        if kind not in CLONE:
            raise _err(where + ".type", f"unknown namespace type {kind!r} (known: {', '.join(CLONE)})")
        if kind in seen:
            raise _err(where + ".type", f"namespace {kind!r} given twice")
        seen.add(kind)
        p = ns.get("path")
        if p:
            _type(p, str, where + ".path", "a string")
            if not os.path.exists(p):
                raise _err(where + ".path", f"{p}: no such namespace file")
            joined[kind] = p
        else:
            flags |= CLONE[kind]
            plan.new_namespaces.add(kind)
    if "mount" not in seen:
        raise _err("linux.namespaces", "a mount namespace is needed (pyrt-runtime never changes the host's mounts)")
    if "pid" in joined:
        plan.pid_join = joined.pop("pid")
    order = ["user"] + [k for k in ("mount", "network", "ipc", "uts", "cgroup", "time") if k in joined]
    plan.joins = [(CLONE[k], joined[k]) for k in order if k in joined]
    if "user" in joined:
        if flags & CLONE["pid"]:
            raise _err("linux.namespaces", "a new pid namespace inside a joined user namespace is not supported")
        oci.unshare_flags = flags  # made after joining the user namespace, owned by it
        flags = 0
    spec.clone_flags = flags
    if "network" in plan.new_namespaces:
        spec.setup |= _core.SETUP_LOOPBACK

    if "user" in plan.new_namespaces:
        spec.uid_map = _idmap(linux.get("uidMappings"), "linux.uidMappings")
        spec.gid_map = _idmap(linux.get("gidMappings"), "linux.gidMappings")
        if os.geteuid() != 0:  # rootless (runc --rootless): the maps written as an ordinary user may
            from pyrt.launch import userns
            try:
                userns.explicit_maps(spec.uid_map, spec.gid_map).apply(spec)
            except PyrtError as e:
                raise _err("linux.uidMappings", str(e)) from None
    elif os.geteuid() != 0 and "user" not in joined:
        raise _err("linux.namespaces", "an ordinary user needs a user namespace (pyrt-runtime spec --rootless "
                                       "writes one)")
    elif linux.get("uidMappings") or linux.get("gidMappings"):
        if "user" not in joined:
            raise _err("linux.uidMappings", "id mappings need a new user namespace")

    hostname = cfg.get("hostname")
    if hostname:
        _type(hostname, str, "hostname", "a string")
        if "uts" not in seen:
            raise _err("hostname", "setting the hostname needs a uts namespace")
        spec.hostname = _b(hostname)
    if cfg.get("domainname"):
        plan.warnings.append("domainname ignored")

    # -- root and mounts ----------------------------------------------------------
    root = cfg.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise _err("root.path", "missing")
    rootfs = os.path.join(bundle, root["path"])
    if not os.path.isdir(rootfs):
        raise _err("root.path", f"{rootfs}: not a directory")
    if "mount" in joined:  # the process simply runs in that mount namespace
        plan.warnings.append("a joined mount namespace: root and mounts of the spec are not set up")
    else:
        from pyrt.launch.process import _anchor
        spec.rootfs = _b(os.path.realpath(rootfs))
        spec.anchor = _anchor()
        spec.readonly_root = bool(root.get("readonly", False))
        mounts = []
        dev_is_fs = False
        for i, m in enumerate(cfg.get("mounts") or []):
            c, is_cgroup, opts = _mount(m, f"mounts[{i}]", bundle)
            _check_proc_mount(c, f"mounts[{i}]", spec.rootfs.decode(errors="surrogateescape"))
            if is_cgroup:
                plan.cgroup_mounts.append((len(mounts), opts))
            if c[3] == b"/dev":
                dev_is_fs = c[0] != _core.MOUNT_BIND
            mounts.append(c)
        spec.mounts = mounts
        # devices: the spec's, then runc's defaults that it does not name
        devices = []
        names = set()
        for i, d in enumerate(linux.get("devices") or []):
            devices.append(_device(d, f"linux.devices[{i}]"))
            names.add(devices[-1][0])
        if dev_is_fs:
            for p, kind, major, minor in DEFAULT_DEVICES:
                if _b(p) not in names:
                    devices.append((_b(p), _DEV_KIND[kind] | 0o666, major, minor, 0, 0))
            oci.dev_links = True
        oci.devices = devices
        masked = _str_list(linux.get("maskedPaths") or [], "linux.maskedPaths")
        ro = _str_list(linux.get("readonlyPaths") or [], "linux.readonlyPaths")
        if masked or ro:
            spec.setup |= _core.SETUP_MASK
            spec.masked_paths = [_b(p) for p in masked]
            spec.readonly_paths = [_b(p) for p in ro]
        prop = linux.get("rootfsPropagation")
        if prop:
            if prop not in PROPAGATION:
                raise _err("linux.rootfsPropagation", f"unknown propagation {prop!r}")
            oci.root_propagation = PROPAGATION[prop]

    # -- sysctl -------------------------------------------------------------------
    sysctl = linux.get("sysctl") or {}
    _type(sysctl, dict, "linux.sysctl", "an object")
    for key, value in sysctl.items():
        _type(value, str, f"linux.sysctl.{key}", "a string")
        _check_sysctl(key, seen)
        oci.sysctls.append((_b(key.replace(".", "/")) if "/" not in key else _b(key.lstrip("/")), _b(value)))

    # -- cgroups ------------------------------------------------------------------
    cpath = linux.get("cgroupsPath") or ""
    _type(cpath, str, "linux.cgroupsPath", "a string")
    if systemd_cgroup:
        raise ConfigError(_systemd_message(cpath))
    if cpath:
        if ":" in cpath and not cpath.startswith("/"):
            raise _err("linux.cgroupsPath", f"{cpath!r} is a systemd slice:prefix:name path; "
                                            "pyrt-runtime manages cgroups itself (cgroupfs): use a "
                                            "path like /parent/name (podman: --cgroup-manager cgroupfs)")
        parts = [p for p in cpath.strip("/").split("/") if p]
        if not parts:
            raise _err("linux.cgroupsPath", f"{cpath!r} names no cgroup")
        plan.cgroup_parent = "/".join(parts[:-1]) or "pyrt-runtime"
        plan.cgroup_name = parts[-1]
    else:
        plan.cgroup_parent, plan.cgroup_name = "pyrt-runtime", container_id or None
    plan.resources = _resources(linux.get("resources") or {}, oci.devices)

    # -- seccomp ------------------------------------------------------------------
    if linux.get("seccomp"):
        spec.seccomp, spec.seccomp_flags = compile_seccomp(linux["seccomp"])

    # -- hooks, annotations -------------------------------------------------------
    hooks = cfg.get("hooks") or {}
    _type(hooks, dict, "hooks", "an object")
    for kind, items in hooks.items():
        if kind not in HOOK_KINDS:
            raise _err(f"hooks.{kind}", f"unknown hook kind (known: {', '.join(HOOK_KINDS)})")
        _type(items, list, f"hooks.{kind}", "a list")
        for i, h in enumerate(items):
            where = f"hooks.{kind}[{i}]"
            _type(h, dict, where, "an object")
            if not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
                raise _err(where + ".path", "an absolute path is needed")
            _str_list(h.get("args") or [], where + ".args")
            _str_list(h.get("env") or [], where + ".env")
            if h.get("timeout") is not None and _int(h["timeout"], where + ".timeout") <= 0:
                raise _err(where + ".timeout", "must be positive")
    plan.hooks = hooks
    ann = cfg.get("annotations") or {}
    _type(ann, dict, "annotations", "an object")
    plan.annotations = ann
    return plan


def _systemd_message(cpath):
    running = os.path.isdir("/run/systemd/system")
    why = "systemd is not running on this host" if not running else \
        "pyrt-runtime does not drive systemd (it writes cgroupfs directly)"
    return (f"--systemd-cgroup: systemd cgroups are not available: {why}; use cgroupfs "
            f"(podman --cgroup-manager cgroupfs; containerd: SystemdCgroup = false)")


def _cap_mask(names, where, plan):
    from pyrt.launch import caps
    _str_list(names, where)
    m = 0
    for n in names:
        try:
            m |= 1 << caps.number(n)
        except ValueError:
            plan.warnings.append(f"{where}: unknown capability {n} ignored")
    return m


def _idmap(maps, where):
    if not maps:
        raise _err(where, "a new user namespace needs id mappings")
    _type(maps, list, where, "a list")
    lines = []
    for i, m in enumerate(maps):
        _type(m, dict, f"{where}[{i}]", "an object")
        c = _int(m.get("containerID"), f"{where}[{i}].containerID", 0, 2**32 - 1)
        h = _int(m.get("hostID"), f"{where}[{i}].hostID", 0, 2**32 - 1)
        n = _int(m.get("size"), f"{where}[{i}].size", 1, 2**32)
        lines.append(f"{c} {h} {n}\n")
    return "".join(lines).encode()


_DEV_KIND = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}


def _device(d, where):
    _type(d, dict, where, "an object")
    p = d.get("path")
    if not isinstance(p, str) or not p.startswith("/"):
        raise _err(where + ".path", "an absolute path is needed")
    kind = d.get("type")
    if kind not in _DEV_KIND:
        raise _err(where + ".type", f"unknown device type {kind!r} (c, b, u or p)")
    major = _int(d.get("major", 0), where + ".major", 0) if kind != "p" else 0
    minor = _int(d.get("minor", 0), where + ".minor", 0) if kind != "p" else 0
    mode = d.get("fileMode")
    mode = 0o666 if mode is None else _int(mode, where + ".fileMode", 0, 0o7777)
    uid = _int(d.get("uid", 0), where + ".uid", 0)
    gid = _int(d.get("gid", 0), where + ".gid", 0)
    return (_b(os.path.normpath(p)), _DEV_KIND[kind] | mode, major, minor, uid, gid)


_FLAG_OPTS = {"ro": "RDONLY", "nosuid": "NOSUID", "nodev": "NODEV", "noexec": "NOEXEC"}
_CLEAR_OPTS = {"rw": "RDONLY", "suid": "NOSUID", "dev": "NODEV", "exec": "NOEXEC"}
_IGNORED_OPTS = {"defaults", "relatime", "norelatime", "noatime", "atime", "strictatime", "nostrictatime",
                 "nodiratime", "diratime", "sync", "async", "dirsync", "mand", "nomand", "lazytime",
                 "nolazytime", "silent", "loud", "iversion", "noiversion", "z", "Z", "tmpcopyup",
                 "notmpcopyup", "copy", "nocopy", "remount", "U"}


def _mount(m, where, bundle):
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
        elif o in _FLAG_OPTS:
            flags |= getattr(_core, "MNT_" + _FLAG_OPTS[o])
        elif o in _CLEAR_OPTS:
            flags &= ~getattr(_core, "MNT_" + _CLEAR_OPTS[o])
        elif o in PROPAGATION:
            prop = PROPAGATION[o]
        elif o in ("idmap", "ridmap"):
            raise _err(where + ".options", f"{o}: id-mapped mounts are not supported")
        elif o in _IGNORED_OPTS:
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


def _check_proc_mount(c, where, rootfs):
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


def _check_sysctl(key, namespaces):
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if "ipc" not in namespaces:
            raise _err(f"linux.sysctl.{key}", "needs an ipc namespace")
    elif key.startswith("net."):
        if "network" not in namespaces:
            raise _err(f"linux.sysctl.{key}", "needs a network namespace")
    elif key in ("kernel.hostname", "kernel.domainname"):
        raise _err(f"linux.sysctl.{key}", "set it with the hostname / domainname fields")
    else:
        raise _err(f"linux.sysctl.{key}", "not namespaced: it would change the host")


def _resources(res, devices):
    """The resources we apply, validated: {memory: {...}, cpu: {...}, pids, devices:
    [rules], unified: {...}}; also the controllers they need."""
    _type(res, dict, "linux.resources", "an object")
    out = {}
    mem = res.get("memory") or {}
    _type(mem, dict, "linux.resources.memory", "an object")
    m = {}
    for key in ("limit", "reservation", "swap"):
        v = mem.get(key)
        if v is not None:
            _int(v, f"linux.resources.memory.{key}")
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
    uni = res.get("unified") or {}
    _type(uni, dict, "linux.resources.unified", "an object")
    for k, v in uni.items():
        if "/" in k or k.startswith(".") or not isinstance(v, str):
            raise _err(f"linux.resources.unified.{k}", "invalid")
    if uni:
        out["unified"] = uni
    return out


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
    from pyrt.cgroups.cgroup import CPU_PERIOD, CgroupError, _write, cpu_shares_to_weight

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


def compile_seccomp(sc) -> tuple:
    """A seccomp profile (linux.seccomp) -> (BPF program bytes, seccomp() flags)."""
    from pyrt import _core
    from pyrt.errors import SpawnError
    _type(sc, dict, "linux.seccomp", "an object")
    if not _core.seccomp_available():
        raise _err("linux.seccomp", "this pyrt was built without libseccomp (apt-get install "
                                    "libseccomp-dev, then reinstall pyrt): the profile cannot be loaded")
    if sc.get("listenerPath"):
        raise _err("linux.seccomp.listenerPath", "seccomp notify is not supported")

    def action(name, errno_ret, where):
        if name == "SCMP_ACT_NOTIFY":
            raise _err(where, "SCMP_ACT_NOTIFY is not supported")
        if name not in SECCOMP_ACTIONS:
            raise _err(where, f"unknown action {name!r}")
        value = SECCOMP_ACTIONS[name]
        if name == "SCMP_ACT_ERRNO":
            value |= (1 if errno_ret is None else _int(errno_ret, where, 0, 0xffff)) & 0xffff
        elif name == "SCMP_ACT_TRACE":
            value |= (1 if errno_ret is None else _int(errno_ret, where, 0, 0xffff)) & 0xffff
        return value

    default = action(sc.get("defaultAction"), sc.get("defaultErrnoRet"), "linux.seccomp.defaultAction")
    archs = []
    for a in _str_list(sc.get("architectures") or [], "linux.seccomp.architectures"):
        if a not in SECCOMP_ARCHS:
            raise _err("linux.seccomp.architectures", f"unknown architecture {a!r}")
        archs.append(SECCOMP_ARCHS[a].encode())
    flags = 0
    for f in _str_list(sc.get("flags") or [], "linux.seccomp.flags"):
        if f not in SECCOMP_FLAGS:
            raise _err("linux.seccomp.flags", f"unknown flag {f!r}")
        flags |= SECCOMP_FLAGS[f]
    rules = []
    for i, s in enumerate(sc.get("syscalls") or []):
        where = f"linux.seccomp.syscalls[{i}]"
        _type(s, dict, where, "an object")
        names = _str_list(s.get("names") or [], where + ".names")
        act = action(s.get("action"), s.get("errnoRet"), where + ".action")
        args = []
        for j, a in enumerate(s.get("args") or []):
            w = f"{where}.args[{j}]"
            _type(a, dict, w, "an object")
            op = SECCOMP_OPS.get(a.get("op"))
            if op is None:
                raise _err(w + ".op", f"unknown operator {a.get('op')!r}")
            args.append((_int(a.get("index", 0), w + ".index", 0, 5), op,
                         _int(a.get("value", 0), w + ".value", 0, 2**64 - 1),
                         _int(a.get("valueTwo", 0), w + ".valueTwo", 0, 2**64 - 1)))
        rules.append((act, [n.encode() for n in names], args))
    try:
        return _core.seccomp_compile(default, archs, rules), flags
    except SpawnError as e:
        raise _err("linux.seccomp", str(e)) from None


def default_config(rootless: bool = False) -> dict:
    """What `pyrt-runtime spec` writes: runc's default config.json."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    cfg = {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=" + _default_path(), "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyrt",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        uid, gid = os.getuid(), os.getgid()
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        del cfg["linux"]["resources"]
        cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] not in ("cgroup", "sysfs")] + [
            {"destination": "/sys", "type": "none", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
        cfg["mounts"][2]["options"].remove("gid=5")
    return cfg


def _default_path() -> str:
    from pyrt.launch.process import DEFAULT_PATH  # the one definition (process imports this module's users)
    return DEFAULT_PATH
