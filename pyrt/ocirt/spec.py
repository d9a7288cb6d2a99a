"""A bundle's config.json (runtime-spec 1.x) parsed and validated into a spawn plan:
what pyrt's spawn core takes (a SpawnSpec with its OCI block), the cgroup and its
resources, the hooks. Used by pyrt.ocirt.operations.

    cfg = load_config(bundle)               # the JSON, checked to be a runtime spec
    plan = parse(cfg, bundle)               # validated; ConfigError names the field
    plan.spec, plan.oci                     # SpawnSpec and OciOptions, still without fds
    plan.joins, plan.pid_join               # namespaces joined by path
    plan.cgroup_parent, plan.cgroup_name, plan.resources
    plan.add_cgroup_mounts(cgroup)          # the spec's `cgroup` mounts, now that paths are known

Nothing is written here: the resources go into the cgroup through
pyrt.cgroups.oci, a seccomp profile is compiled by pyrt.launch.seccomp, the mounts
are resolved by pyrt.ocirt.mounts and linux.resources checked by
pyrt.ocirt.resources. What the spawn core sets up comes from the spec only: its
mounts (in order), its devices (plus the default ones runc adds), masked and
read-only paths; pyrt's own fixed /proc, /sys and /dev set-up is not used.
"""
from __future__ import annotations

import os
import re
import stat

from pyrt import sys as psys
from pyrt.cgroups import systemd as cgroup_systemd
from pyrt.cgroups.cgroup import layout
from pyrt.cgroups.oci import apply_resources, resource_controllers  # noqa: F401 (importable from here too)
from pyrt.errors import ConfigError, InvalidArgument  # noqa: F401 (re-exported)
from pyrt.launch.seccomp import compile_seccomp
from pyrt.launch.spec import build_spec
from pyrt.paths import ordinary_user
from pyrt.oci import fields
from pyrt.ocirt import mounts as ocimounts
from pyrt.ocirt.defaults import SPEC_VERSION, default_config  # noqa: F401 (importable from here too)
from pyrt.ocirt.hooks import KINDS as HOOK_KINDS
from pyrt.ocirt.mounts import PROPAGATION
from pyrt.ocirt.resources import parse_resources as _resources  # noqa: F401 (importable from here too)

CLONE = {
    "mount": psys.CLONE_NEWNS, "uts": psys.CLONE_NEWUTS, "ipc": psys.CLONE_NEWIPC,
    "user": psys.CLONE_NEWUSER, "pid": psys.CLONE_NEWPID, "network": psys.CLONE_NEWNET,
    "cgroup": psys.CLONE_NEWCGROUP, "time": psys.CLONE_NEWTIME,
}
NS_FILES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "user": "user", "pid": "pid",
            "network": "net", "cgroup": "cgroup", "time": "time"}


# sysctls that belong to a namespace (runc's list): only those may be set
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


_err, _type, _int, _str_list = fields.err, fields.typed, fields.integer, fields.str_list


def _b(s) -> bytes:
    return os.fsencode(s)


def load_config(bundle: str) -> dict:
    """The bundle's config.json, parsed; ConfigError when it is missing or not a
    runtime spec of version 1.x."""
    import json
    path = os.path.join(bundle, "config.json")
    try:
        # non-blocking, and only a regular file: a FIFO there would wait for a writer
        # forever, /dev/zero would be read until memory ran out
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{path}: not a regular file")
            cfg = json.loads(f.read())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {bundle!r} a bundle?)") from None
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{path}: invalid JSON: {e}") from None
    except RecursionError:  # json's reader recurses once a level
        raise ConfigError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    version = cfg.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise _err("ociVersion", f"{version!r} is not a supported runtime spec version (1.x)")
    return cfg


class Plan:
    """What a bundle's config asks for, resolved (see the module doc)."""

    def __init__(self):
        self.spec = None            # pyrt.launch.spec.SpawnSpec, made by build_spec
        self.oci = None             # pyrt._core.OciOptions
        self.joins = []             # [(CLONE_NEW*, path)] joined in the child, user first
        self.pid_join = None        # a pid namespace path: joined by the caller before the spawn
        self.cgroup_parent = None
        self.cgroup_name = None
        self.systemd_slice = None   # --systemd-cgroup: the slice and the scope unit made in it
        self.systemd_unit = None
        self.systemd_scope = None   # that scope's cgroup, below the cgroup2 mount
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
        cgroups at its destination (see ocimounts.cgroup_mounts)."""
        if not self.cgroup_mounts:
            return
        has_ns = "cgroup" in self.new_namespaces or any(t == CLONE["cgroup"] for t, _ in self.joins)
        self.spec.mounts = ocimounts.cgroup_mounts(self.spec.mounts, [i for i, _ in self.cgroup_mounts], has_ns,
                                                cgroup, layout, own_cgroups)
        self.cgroup_mounts = []


def parse(cfg: dict, bundle: str, *, container_id: str = "", systemd_cgroup: bool = False) -> Plan:
    """Validate a runtime spec and resolve it into a Plan (no fd opened, nothing
    created). Relative paths (root.path, bind sources) are taken from the bundle."""
    from pyrt import _core

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
    cwd = proc.get("cwd", "/")
    _type(cwd, str, "process.cwd", "a string")
    if not cwd.startswith("/"):
        raise _err("process.cwd", f"{cwd!r} is not an absolute path")
    # what build_spec gets (the one builder of a SpawnSpec), collected as the config
    # is checked; the spec is built once everything is
    kw = {"env": env, "cwd": cwd, "network": "host", "privileged": False, "seccomp": None}
    oci = _core.OciOptions()
    plan.oci = oci
    plan.terminal = bool(proc.get("terminal", False))

    user = proc.get("user") or {}
    _type(user, dict, "process.user", "an object")
    uid = _int(user.get("uid", 0), "process.user.uid", 0, 2**32 - 2)
    gid = _int(user.get("gid", 0), "process.user.gid", 0, 2**32 - 2)
    groups = [_int(g, f"process.user.additionalGids[{i}]", 0, 2**32 - 2)
              for i, g in enumerate(user.get("additionalGids") or [])]
    kw["user"] = (uid, gid, *groups)
    if user.get("umask") is not None:
        kw["umask"] = _int(user["umask"], "process.user.umask", 0, 0o777)

    caps_cfg = proc.get("capabilities")
    if caps_cfg is not None:
        _type(caps_cfg, dict, "process.capabilities", "an object")
        sets = {k: _cap_mask(caps_cfg.get(k) or [], f"process.capabilities.{k}", plan)
                for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
        kw["caps_mask"] = sets["bounding"]
        oci.cap_sets = (sets["effective"], sets["permitted"], sets["inheritable"], sets["ambient"])
    else:
        kw["caps_mask"] = 0
        oci.cap_sets = (0, 0, 0, 0)

    import resource
    rlimits = {}
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
        rlimits[res] = (soft, hard)
    kw["rlimits"] = rlimits
    kw["no_new_privs"] = bool(proc.get("noNewPrivileges"))
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
            if not stat.S_ISREG(os.stat(p).st_mode):  # nsfs files are; a FIFO's open would wait forever
                raise _err(where + ".path", f"{p}: not a namespace file")
            joined[kind] = p
        else:
            flags |= CLONE[kind]
            plan.new_namespaces.add(kind)
    if "pid" in joined:
        plan.pid_join = joined.pop("pid")
    order = ["user"] + [k for k in ("mount", "network", "ipc", "uts", "cgroup", "time") if k in joined]
    plan.joins = [(CLONE[k], joined[k]) for k in order if k in joined]
    if "user" in joined and flags & CLONE["pid"]:
        raise _err("linux.namespaces", "a new pid namespace inside a joined user namespace is not supported")
    # a new network namespace: build_spec's network "none" (made, its lo brought up)
    kw["namespaces"] = [k for k in plan.new_namespaces if k != "network"]
    if "network" in plan.new_namespaces:
        kw["network"] = "none"

    if "user" in plan.new_namespaces:
        kw["uidmap"] = _idmap(linux.get("uidMappings"), "linux.uidMappings")
        kw["gidmap"] = _idmap(linux.get("gidMappings"), "linux.gidMappings")
        if os.geteuid() != 0:  # rootless (runc --rootless): the maps written as an ordinary user may
            from pyrt.errors import PyrtError
            from pyrt.launch import userns
            try:
                userns.explicit_maps(kw["uidmap"], kw["gidmap"])
            except PyrtError as e:
                raise _err("linux.uidMappings", str(e)) from None
    elif os.geteuid() != 0 and "user" not in joined:
        raise _err("linux.namespaces", "an ordinary user needs a user namespace (pyrt-runtime spec --rootless "
                                       "writes one)")
    elif linux.get("uidMappings") or linux.get("gidMappings"):
        if "user" not in joined:
            raise _err("linux.uidMappings", "id mappings need a new user namespace")

    hostname = cfg.get("hostname")
    if hostname is not None:
        _type(hostname, str, "hostname", "a string")
        if hostname and "uts" not in seen:
            raise _err("hostname", "setting the hostname needs a uts namespace")
        if "uts" in seen:  # "" too: the container's hostname is then empty
            kw["hostname"] = hostname
    if cfg.get("domainname"):
        plan.warnings.append("domainname ignored")
    if linux.get("mountLabel"):
        plan.warnings.append("linux.mountLabel ignored: pyrt-runtime has no LSM support")

    # -- root and mounts ----------------------------------------------------------
    root = cfg.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise _err("root.path", "missing")
    rootfs = os.path.join(bundle, root["path"])
    if "mount" not in joined and not os.path.isdir(rootfs):  # a joined one has its own paths
        raise _err("root.path", f"{rootfs}: not a directory")
    if "mount" not in plan.new_namespaces:
        _without_mounts(cfg, linux, rootfs, "mount" in joined, plan)
    else:
        kw["rootfs"] = os.path.realpath(rootfs)
        kw["read_only"] = bool(root.get("readonly", False))
        mounts = []
        dev_is_fs = False
        for i, m in enumerate(cfg.get("mounts") or []):
            c, is_cgroup, opts = ocimounts.mount_entry(m, f"mounts[{i}]", bundle)
            ocimounts.check_proc_mount(c, f"mounts[{i}]", kw["rootfs"])
            if is_cgroup:
                plan.cgroup_mounts.append((len(mounts), opts))
            if c[3] == b"/dev":
                dev_is_fs = c[0] != _core.MOUNT_BIND
            mounts.append(c)
        kw["mounts"] = mounts
        # devices: the spec's, then runc's defaults that it does not name
        devices = []
        names = set()
        for i, d in enumerate(linux.get("devices") or []):
            devices.append(ocimounts.device(d, f"linux.devices[{i}]"))
            names.add(devices[-1][0])
        if dev_is_fs:
            for p, kind, major, minor in ocimounts.DEFAULT_DEVICES:
                if _b(p) not in names:
                    devices.append((_b(p), ocimounts.DEV_KIND[kind] | 0o666, major, minor, 0, 0))
            oci.dev_links = True
        oci.devices = devices
        masked = _str_list(linux.get("maskedPaths") or [], "linux.maskedPaths")
        ro = _str_list(linux.get("readonlyPaths") or [], "linux.readonlyPaths")
        for where, paths in (("linux.maskedPaths", masked), ("linux.readonlyPaths", ro)):
            for i, p in enumerate(paths):
                if not p.startswith("/"):
                    raise _err(f"{where}[{i}]", f"{p!r} is not an absolute path")
        kw["masked_paths"], kw["readonly_paths"] = masked, ro
        prop = linux.get("rootfsPropagation")
        if prop:
            if prop not in PROPAGATION:
                raise _err("linux.rootfsPropagation", f"unknown propagation {prop!r}")
            oci.root_propagation = PROPAGATION[prop]

    # -- sysctl -------------------------------------------------------------------
    sysctl = linux.get("sysctl") or {}
    _type(sysctl, dict, "linux.sysctl", "an object")
    if sysctl and "mount" not in plan.new_namespaces:
        raise _err("linux.sysctl", NO_MOUNTS_WHY + ": sysctls are written through the container's own /proc")
    for key, value in sysctl.items():
        _type(value, str, f"linux.sysctl.{key}", "a string")
        _check_sysctl(key, seen)
        oci.sysctls.append((_b(key.replace(".", "/")) if "/" not in key else _b(key.lstrip("/")), _b(value)))

    # -- cgroups ------------------------------------------------------------------
    cpath = linux.get("cgroupsPath") or ""
    _type(cpath, str, "linux.cgroupsPath", "a string")
    if ordinary_user():  # root of a user namespace too (a rootless engine), as runc and crun
        _user_cgroups(plan, cpath, container_id, systemd_cgroup)
    elif systemd_cgroup:
        plan.systemd_slice, plan.systemd_unit = systemd_cgroups_path(cpath, container_id)
        # the container's cgroup: the leaf of a delegated scope of its own
        plan.cgroup_parent = plan.systemd_scope = \
            f"{cgroup_systemd.slice_path(plan.systemd_slice)}/{plan.systemd_unit}"
        plan.cgroup_name = cgroup_systemd.LEAF
    elif cpath:
        if ":" in cpath and not cpath.startswith("/"):
            raise _err("linux.cgroupsPath", f"{cpath!r} is a systemd slice:prefix:name path; "
                                            "pyrt-runtime manages cgroups itself (cgroupfs): use a "
                                            "path like /parent/name (podman: --cgroup-manager cgroupfs)")
        # absolute: from the root of each hierarchy; relative: below pyrt-runtime's
        # own parent (the one containers without a cgroupsPath get)
        parts = [p for p in cpath.split("/") if p]
        _check_parts(cpath, parts)
        if not cpath.startswith("/"):
            parts.insert(0, "pyrt-runtime")
        plan.cgroup_parent = "/".join(parts[:-1])
        plan.cgroup_name = parts[-1]
    elif not systemd_cgroup:
        plan.cgroup_parent, plan.cgroup_name = "pyrt-runtime", container_id or None
    plan.resources = _resources(linux.get("resources") or {}, oci.devices)

    for key in ("intelRdt", "timeOffsets", "personality"):
        if linux.get(key):
            raise _err(f"linux.{key}", "not supported by pyrt-runtime")

    # -- seccomp ------------------------------------------------------------------
    if linux.get("seccomp"):
        kw["seccomp"] = compile_seccomp(linux["seccomp"])

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
            if h.get("timeout") is not None:
                _int(h["timeout"], where + ".timeout", 1, 2**31 // 1000)  # waits are in int milliseconds
    plan.hooks = hooks
    ann = cfg.get("annotations") or {}
    _type(ann, dict, "annotations", "an object")
    plan.annotations = ann

    plan.spec = build_spec(args, kw.pop("rootfs", None), oci=oci, **kw)
    if "user" in joined:  # made after joining the user namespace, owned by it
        oci.unshare_flags, plan.spec.clone_flags = plan.spec.clone_flags, 0
    return plan


NO_MOUNTS_WHY = ("the container has no mount namespace of its own, and pyrt-runtime never mounts in a "
                 "mount namespace it did not create (the host's, or one joined by path)")


def _without_mounts(cfg, linux, rootfs, joined, plan):
    """A container without a mount namespace of its own (none in the config, or one
    joined by path): its process is chroot'ed into root.path, resolved in that mount
    namespace once joined, and nothing is mounted; a config that asks for a mount
    (mounts, masked or read-only paths, a read-only root, a root propagation,
    devices) is refused, since it would change a mount table pyrt does not own."""
    asks = [("mounts", cfg.get("mounts")), ("linux.maskedPaths", linux.get("maskedPaths")),
            ("linux.readonlyPaths", linux.get("readonlyPaths")), ("root.readonly", cfg["root"].get("readonly")),
            ("linux.rootfsPropagation", linux.get("rootfsPropagation")), ("linux.devices", linux.get("devices"))]
    for where, value in asks:
        if value:
            raise _err(where, NO_MOUNTS_WHY + ": add a new mount namespace, or leave this out")
    plan.oci.chroot_path = _b(rootfs if joined else os.path.realpath(rootfs))


_UNIT_WORD = re.compile(r"[A-Za-z0-9_.-]+")
DEFAULT_SLICE, DEFAULT_PREFIX = "system.slice", "pyrt-runtime"


def _check_parts(cpath, parts):
    if not parts:
        raise _err("linux.cgroupsPath", f"{cpath!r} names no cgroup")
    if any(p in (".", "..") for p in parts):
        raise _err("linux.cgroupsPath", f"{cpath!r}: '.' and '..' are not allowed")


def _user_cgroups(plan, cpath, container_id, systemd_cgroup):
    """An ordinary user's container cgroup (as runc --rootless and crun under
    systemd): inside the subtree systemd delegates to the user, the `container/`
    leaf (or the relative cgroupsPath) of a transient scope its own systemd
    instance makes (pyrt.cgroups.systemd, on the user's bus), with
    --systemd-cgroup the scope slice:prefix:name names (the slice one of the
    user's instance, user.slice by default), else pyrt-runtime-<id>.scope in
    user.slice. Every path is below the delegated subtree: a cgroupsPath can
    name neither an absolute path nor '..'. Without delegation: no cgroup (a
    cgroupsPath is not used, as runc --rootless), and create refuses resources."""
    from pyrt.cgroups.delegation import delegated_root
    below = []
    if cpath and not systemd_cgroup:
        if cpath.startswith("/") or (":" in cpath):
            raise _err("linux.cgroupsPath", f"{cpath!r}: an ordinary user's container is in a scope of its "
                                            "systemd instance: use a relative path (below that scope), or "
                                            "--systemd-cgroup with slice:prefix:name")
        below = [p for p in cpath.split("/") if p]
        _check_parts(cpath, below)
    base = delegated_root() if container_id else None  # (exec parses a process alone)
    if base is None:
        return
    if systemd_cgroup:
        plan.systemd_slice, plan.systemd_unit = systemd_cgroups_path(cpath, container_id, "user.slice")
    else:
        plan.systemd_slice, plan.systemd_unit = systemd_cgroups_path("", container_id, "user.slice")
    plan.systemd_scope = f"{base}/{cgroup_systemd.slice_path(plan.systemd_slice)}/{plan.systemd_unit}"
    parts = [plan.systemd_scope] + (below or [cgroup_systemd.LEAF])
    plan.cgroup_parent = "/".join(parts[:-1])
    plan.cgroup_name = parts[-1]


def systemd_cgroups_path(cpath: str, container_id: str, default_slice: str = DEFAULT_SLICE):
    """--systemd-cgroup's cgroupsPath, "slice:prefix:name" (empty parts and an empty
    path: system.slice, pyrt-runtime, the container's id): (slice, unit), the scope
    unit `prefix-name.scope` in `slice`. Each part is one unit-name word (letters,
    digits, _ . -): nothing of the config can name a path or another unit type."""
    where = "linux.cgroupsPath"
    parts = cpath.split(":") if cpath else ["", "", ""]
    if len(parts) != 3:
        raise _err(where, f"{cpath!r}: with --systemd-cgroup it is slice:prefix:name "
                          "(as machine.slice:libpod:ID), not a path")
    slice_, prefix, name = parts
    slice_ = slice_ or default_slice
    prefix = prefix if cpath else DEFAULT_PREFIX
    name = name or container_id
    if (not _UNIT_WORD.fullmatch(slice_) or not slice_.endswith(".slice") or slice_ == "-.slice"
            or slice_.startswith("-") or "--" in slice_ or slice_.endswith("-.slice") or slice_.startswith(".")):
        raise _err(where, f"{slice_!r} is not a systemd slice name (as machine.slice or machine-pods.slice)")
    for what, word in (("prefix", prefix), ("name", name)):
        if (word or what == "name") and (not _UNIT_WORD.fullmatch(word) or word.startswith((".", "-"))):
            raise _err(where, f"invalid {what} {word!r}: letters, digits, '_', '.' and '-' only")
    if name.endswith(".slice"):
        raise _err(where, f"{name!r}: pyrt-runtime puts a container in a scope, not a slice")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    if len(unit) > 255 or len(slice_) > 255:
        raise _err(where, f"{cpath!r}: a systemd unit name is at most 255 characters")
    return slice_, unit


def systemd_unavailable():
    """Why --systemd-cgroup cannot be used on this host (one line), or None."""
    if not os.path.isdir("/run/systemd/system"):
        why = "systemd is not running on this host (no /run/systemd/system)"
    elif layout().mode != "v2":
        why = "this host's cgroups are not pure cgroup2 (pyrt-runtime's systemd scopes need it)"
    else:
        return None
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


