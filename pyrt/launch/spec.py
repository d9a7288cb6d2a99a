"""The spawn spec: one typed definition of everything a container's first process
gets (SpawnSpec), and the builder that turns arguments into one (build_spec), which
pyrt.run/spawn, containers, the pool and pyrt-runtime's bundles (oci=: the config
says everything itself, pyrt adds none of its defaults) all go through; a command
started in a running container (exec, and pyrt-runtime's exec and hooks) gets its
ExecSpec from build_exec_spec, whose capabilities and seccomp filter are resolved as
build_spec resolves them."""
from __future__ import annotations

import _thread  # threading.Lock is _thread.allocate_lock: importing threading costs a run more (measured)
import os

from pyrt import _core, sys as psys
from pyrt.errors import InvalidArgument
from pyrt.launch import caps
from pyrt.launch.mounts import Overlay, to_c as _mounts_to_c

# pyrt.launch.seccomp is imported where a filter is made: `pyrt ps` loads this module.

# The PATH of a container whose image sets none (docker's).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NAMESPACES = {
    "mount": psys.CLONE_NEWNS,
    "uts": psys.CLONE_NEWUTS,
    "ipc": psys.CLONE_NEWIPC,
    "user": psys.CLONE_NEWUSER,
    "pid": psys.CLONE_NEWPID,
    "net": psys.CLONE_NEWNET,
    "cgroup": psys.CLONE_NEWCGROUP,
    "time": psys.CLONE_NEWTIME,
}
DEFAULT_NAMESPACES = ("mount", "pid", "uts", "ipc", "cgroup")

# The OCI runtime defaults (as Docker and podman use them).
MASKED_PATHS = [
    b"/proc/acpi", b"/proc/asound", b"/proc/kcore", b"/proc/keys", b"/proc/latency_stats",
    b"/proc/timer_list", b"/proc/timer_stats", b"/proc/sched_debug", b"/proc/scsi",
    b"/sys/firmware", b"/sys/devices/virtual/powercap",
]
READONLY_PATHS = [
    b"/proc/bus", b"/proc/fs", b"/proc/irq", b"/proc/sys", b"/proc/sysrq-trigger",
]

_ANCHOR = None
_anchor_lock = _thread.allocate_lock()


def _anchor() -> bytes:
    """An empty directory each container's root is attached to, inside the
    container's own mount namespace (so one directory serves every container)."""
    global _ANCHOR
    if _ANCHOR is None:
        with _anchor_lock:
            bases = ["/run/pyrt", os.path.join("/tmp", f"pyrt-{os.getuid()}")]
            if os.geteuid() != 0:  # an ordinary user's own runtime directory (pyrt.paths)
                from pyrt.paths import runtime_dir
                bases = [runtime_dir()]
            for base in bases:
                path = os.path.join(base, "rootfs")
                try:
                    os.makedirs(path, mode=0o700, exist_ok=True)
                except OSError:
                    continue
                _ANCHOR = os.fsencode(path)
                break
            else:
                raise OSError(f"cannot create the pyrt mount anchor under {' or '.join(bases)}")
    return _ANCHOR


def parse_user(user) -> tuple[int, int, list[int]] | None:
    """'UID', 'UID:GID' or (uid, gid) -> (uid, gid, supplementary groups)."""
    if user is None:
        return None
    if isinstance(user, int):
        return (user, user if user else 0, [])
    if isinstance(user, tuple):
        return (int(user[0]), int(user[1]), [int(g) for g in user[2:]])
    uid, _, gid = str(user).partition(":")
    try:
        u = int(uid)
        g = int(gid) if gid else 0
    except ValueError:
        raise InvalidArgument(f"invalid user {user!r}: names need an image (use numeric UID[:GID] with a rootfs)") from None
    if u < 0 or g < 0:
        raise InvalidArgument(f"invalid user {user!r}")
    return (u, g, [])


def _idmap(m) -> bytes | None:
    if m is None:
        return None
    if isinstance(m, (str, bytes)):
        return os.fsencode(m)
    return "".join(f"{a} {b} {c}\n" for a, b, c in m).encode()


class SpawnSpec:
    """The fully resolved spec handed to the C core (bytes and ints only): every field
    of a spawn, each with its value for "not asked for". build_spec makes one from
    user-facing arguments, and from a bundle's config for pyrt-runtime (pyrt.ocirt.spec
    hands it what the config asks for, with oci=)."""

    __slots__ = ("argv", "env", "path", "cwd", "rootfs", "lowerdirs", "upperdir", "workdir", "overlay_options",
                 "upper_tmpfs", "anchor", "readonly_root", "mounts", "masked_paths", "readonly_paths",
                 "clone_flags", "setup", "hostname", "user", "uid_map", "gid_map", "uid_map_helper", "gid_map_helper", "setgroups_deny", "userns_fd", "caps", "umask", "rlimits",
                 "stdio", "cgroup_fd", "cgroup_procs_fds", "init", "seccomp", "seccomp_flags", "console_fd",
                 "netns_fd", "reaper_fd", "oci")

    def __init__(self, argv, env, path=None, cwd=None):
        self.argv, self.env, self.path, self.cwd = argv, env, path, cwd
        self.rootfs = self.upperdir = self.workdir = self.overlay_options = self.anchor = None
        self.lowerdirs, self.mounts, self.masked_paths, self.readonly_paths = [], [], [], []
        self.readonly_root = False
        self.upper_tmpfs = None       # bytes: tmpfs options of a volatile upper layer
        self.clone_flags = self.setup = 0
        self.hostname = self.user = None
        self.caps = 0
        self.umask = -1
        self.rlimits = []
        self.uid_map = self.gid_map = None
        self.uid_map_helper = self.gid_map_helper = None  # rootless (pyrt.launch.userns)
        self.setgroups_deny = False
        self.userns_fd = -1  # rootless: the process's shared user namespace (per spawn)
        self.stdio = (-1, -1, -1)
        self.cgroup_fd = -1
        self.cgroup_procs_fds = []
        self.init = False
        self.seccomp, self.seccomp_flags = None, 0  # a BPF program (bytes) and its flags
        self.console_fd = -1  # a socket that gets the master of the container's terminal
        self.netns_fd = -1    # a network namespace joined instead of a new one (build_spec's network=fd)
        self.reaper_fd = -1   # a pyrt-reaper's socket, told the child's pidfd before it goes on
        self.oci = None       # pyrt-runtime's options (pyrt._core.OciOptions)


def build_spec(args, rootfs=None, *, env=None, cwd=None, hostname=None, mounts=(), user=None,
               network="none", read_only=False, namespaces=DEFAULT_NAMESPACES, cap_add=(), cap_drop=(),
               privileged=False, no_new_privs=True, rlimits=None, uidmap=None, gidmap=None,
               umask=None, aslr=True, new_session=False, init=False, upper_tmpfs=None,
               seccomp="default", caps_mask=None, masked_paths=None, readonly_paths=None,
               oci=None) -> SpawnSpec:
    """Turn user-facing arguments into a SpawnSpec, validating them.

    seccomp: "default" (pyrt's default profile, an allow-list, see pyrt.launch.seccomp; the
    one containers from images get; none when privileged), a profile dict in the OCI
    / docker JSON form, or None (or "unconfined") for no filter: an explicit opt-out,
    for code that is trusted.

    rootfs: a directory, a pyrt.Overlay, or a pyrt.HostRoot (the host's own
    programs, read-only, with a private /tmp and home: see pyrt.launch.hostroot).

    upper_tmpfs: a volatile writable layer over a directory rootfs (or an Overlay
    without upperdir): True, or tmpfs options such as "size=256m". The container
    mounts a private tmpfs and the overlay over it; writes vanish with it.

    What an OCI config gives as such: caps_mask (the bounding set, instead of
    cap_add/cap_drop/privileged), masked_paths and readonly_paths (instead of the
    defaults), seccomp as a compiled (program, flags) pair. oci (pyrt._core.OciOptions,
    pyrt-runtime's): the spec is a bundle's, which says everything itself: env is
    its list of "K=V" as given (PATH, HOME, HOSTNAME not added), mounts are resolved
    C mounts kept in the config's order, and pyrt's own /proc, /sys, /dev and masks
    are not set up (the config's mounts and paths are); an empty hostname is set."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = [args]
    argv = [os.fsencode(a) for a in args]
    if not argv:
        raise InvalidArgument("no command given")
    ident = parse_user(user)
    if oci is not None:  # the bundle's env as it is; PATH (its last) looks the command up
        env_list = [os.fsencode(e) for e in env or ()]
        path = next((e[5:] for e in reversed(env_list) if e.startswith(b"PATH=")), None)
    else:
        env = dict(env) if env is not None else {}
        env.setdefault("PATH", DEFAULT_PATH)
        if hostname:
            env.setdefault("HOSTNAME", hostname)
        if getattr(rootfs, "_host_root", False):  # pyrt.HostRoot: a skeleton dir and the host's mounts
            rootfs, host_mounts, defaults = rootfs.prepare(mounts, ident)
            mounts = list(host_mounts) + list(mounts)
            read_only = True
            for k, v in defaults.items():
                env.setdefault(k, v)
        env.setdefault("HOME", "/root" if not ident or ident[0] == 0 else "/")
        env_list = [os.fsencode(f"{k}={v}") for k, v in env.items()]
        path = os.fsencode(env["PATH"])
    spec = SpawnSpec(argv=argv, env=env_list, path=path, cwd=os.fsencode(cwd) if cwd else None)
    spec.oci = oci

    flags = 0
    for ns in namespaces:
        try:
            flags |= NAMESPACES[ns]
        except KeyError:
            raise InvalidArgument(f"unknown namespace {ns!r} (known: {', '.join(NAMESPACES)})") from None
    if network == "none":
        flags |= NAMESPACES["net"]
        spec.setup |= _core.SETUP_LOOPBACK
    elif isinstance(network, int) and not isinstance(network, bool) and network >= 0:
        # an open network namespace (pyrt.network prepares one per container): joined,
        # its lo brought up; the caller keeps the fd open until the spawn returns
        if flags & NAMESPACES["net"]:
            raise InvalidArgument("a network namespace to join and a new one: choose one")
        spec.netns_fd = network
        spec.setup |= _core.SETUP_LOOPBACK
    elif network != "host":
        raise InvalidArgument(f"unknown network {network!r}: use 'none' or 'host'")
    maps = None
    if oci is not None and os.geteuid() != 0 and (uidmap is not None or gidmap is not None):
        # pyrt-runtime --rootless: the bundle's maps, in a user namespace of its own
        from pyrt.launch import userns
        flags |= NAMESPACES["user"]
        userns.apply(spec, uidmap, gidmap, shared=False)
    elif oci is None and os.geteuid() != 0 and (flags or uidmap is not None or gidmap is not None):
        # an ordinary user: a user namespace of the container's own (pyrt.launch.userns)
        from pyrt.launch import userns
        flags |= NAMESPACES["user"]
        maps = userns.apply(spec, uidmap, gidmap)
    elif uidmap is not None or gidmap is not None:
        if spec.netns_fd >= 0:
            raise InvalidArgument("joining a network namespace from a new user namespace is not supported")
        flags |= NAMESPACES["user"]
        spec.uid_map, spec.gid_map = _idmap(uidmap), _idmap(gidmap)
    if hostname or (oci is not None and hostname is not None):
        if oci is None and not flags & NAMESPACES["uts"]:  # (a bundle may set it in a joined one)
            raise InvalidArgument("hostname needs the uts namespace")
        spec.hostname = os.fsencode(hostname)

    if rootfs is not None and oci is not None:
        spec.anchor = _anchor()
        spec.rootfs = os.fsencode(rootfs)
        spec.readonly_root = bool(read_only)
        spec.mounts = list(mounts)
    elif rootfs is not None:
        flags |= NAMESPACES["mount"]
        spec.anchor = _anchor()
        if isinstance(rootfs, Overlay):
            spec.lowerdirs = [os.fsencode(os.path.abspath(p)) for p in rootfs.lowerdirs]
            if rootfs.upperdir is not None:
                spec.upperdir = os.fsencode(os.path.abspath(rootfs.upperdir))
                spec.workdir = os.fsencode(os.path.abspath(rootfs.workdir))
            spec.overlay_options = ",".join(rootfs.options).encode() or None
        else:
            root = os.path.abspath(os.fspath(rootfs))
            if not os.path.isdir(root):
                raise NotADirectoryError(20, "rootfs is not a directory", root)
            if upper_tmpfs:
                spec.lowerdirs = [os.fsencode(root)]
            else:
                spec.rootfs = os.fsencode(root)
        if upper_tmpfs:
            if spec.upperdir is not None:
                raise InvalidArgument("upper_tmpfs needs an overlay without upperdir (or a directory rootfs)")
            spec.upper_tmpfs = b"" if upper_tmpfs is True else os.fsencode(upper_tmpfs)
        if spec.lowerdirs and os.geteuid() != 0:
            from pyrt.launch.userns import overlay_options  # mounted in its user namespace
            opts = [o for o in (spec.overlay_options or b"").split(b",") if o]
            spec.overlay_options = b",".join(overlay_options(opts or [b"userxattr"]))
        spec.readonly_root = bool(read_only)
        spec.setup |= _core.SETUP_PROC | _core.SETUP_SYS | _core.SETUP_DEV
        if not privileged and masked_paths is None and readonly_paths is None:
            masked_paths, readonly_paths = MASKED_PATHS, READONLY_PATHS
        spec.mounts = _mounts_to_c(mounts)
    elif mounts or read_only or upper_tmpfs:
        raise InvalidArgument("mounts, read_only and upper_tmpfs need a rootfs")
    if masked_paths or readonly_paths:
        spec.setup |= _core.SETUP_MASK
        spec.masked_paths = [os.fsencode(p) for p in masked_paths or ()]
        spec.readonly_paths = [os.fsencode(p) for p in readonly_paths or ()]
    spec.clone_flags = flags

    if ident is None and (os.geteuid() == 0 or spec.uid_map):
        ident = (0, 0, [])  # root, without the caller's supplementary groups (as docker)
    if maps is not None:
        userns.check_user(maps, ident)
    spec.user = ident
    spec.caps = caps.resolve(cap_add, cap_drop, privileged) if caps_mask is None else caps_mask
    if no_new_privs and not privileged:
        spec.setup |= _core.SETUP_NO_NEW_PRIVS
    if not aslr:
        spec.setup |= _core.SETUP_NO_ASLR
    if new_session:
        spec.setup |= _core.SETUP_SETSID
    if umask is not None:
        spec.umask = int(umask)
    spec.rlimits = [(r, s, h) for r, (s, h) in (rlimits or {}).items()]
    spec.init = bool(init)
    spec.seccomp, spec.seccomp_flags = _seccomp_filter(cap_add, privileged, seccomp)
    return spec


def build_exec_spec(pid, argv, env, *, start_time, cwd="/", user=None, cap_add=(), cap_drop=(),
                    privileged=False, seccomp="default", stdio=(None, None, None), new_session=False,
                    cgroup_fds=(-1, ()), caps_mask=None, path=None, no_new_privs=True, umask=None,
                    rlimits=None, namespaces=None):
    """The ExecSpec (pyrt._core.exec_ runs it) of `argv` started in the running
    container whose init is `pid` (checked against its `start_time`), with the
    container's `env`, `cwd`, `user` ((uid, gid, [groups]); None: its root when the
    caller is root, else the caller's ids) and the
    capabilities and seccomp filter build_spec would give it (cap_add, cap_drop,
    privileged, seccomp; caps_mask and a compiled (program, flags) seccomp as
    build_spec takes them). stdio: fds, None for none; cgroup_fds: the container's
    cgroup (Cgroup.spawn_fds()), joined by the new process; path: the PATH argv[0]
    is looked up in (default: env's); rlimits as build_spec's; namespaces: a
    CLONE_NEW* mask of those joined (default: all)."""
    prog, flags = _seccomp_filter(cap_add, privileged, seccomp)
    if user is None and os.geteuid() == 0:
        user = (0, 0, [])  # root of the container, without the caller's groups (as build_spec)
    return _core.ExecSpec(pid, [os.fsencode(a) for a in argv], env, start_time=start_time, cwd=cwd, user=user,
                          caps=caps.resolve(cap_add, cap_drop, privileged) if caps_mask is None else caps_mask,
                          stdio=tuple(-1 if fd is None else fd for fd in stdio), new_session=new_session,
                          cgroup_fd=cgroup_fds[0], cgroup_procs_fds=cgroup_fds[1], seccomp=prog,
                          seccomp_flags=flags, path=path, no_new_privs=no_new_privs,
                          umask=-1 if umask is None else int(umask), namespaces=namespaces,
                          rlimits=[(r, s, h) for r, (s, h) in (rlimits or {}).items()])


def _seccomp_filter(cap_add, privileged, seccomp) -> tuple:
    """(BPF program, flags) of `seccomp` ("default", a profile dict; None or
    "unconfined" for none; a compiled (program, flags) pair as it is), or (None, 0)."""
    if seccomp is None:
        return None, 0
    if isinstance(seccomp, tuple):
        return seccomp
    from pyrt.launch import seccomp as _seccomp
    return _seccomp.filter_for(cap_add, privileged, None if seccomp == "default" else seccomp) or (None, 0)
