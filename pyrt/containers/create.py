"""Making a container: its config from the image and the options, its directory
(upper, work, the init layer or the `copy` driver's materialized root, /etc/hostname,
hosts and resolv.conf), its volumes, and its row. Also which storage driver a store
can use."""
from __future__ import annotations

import json
import os
import stat
import time

from pyrt import _core
from pyrt.containers.model import _layer_paths, _rmtree
from pyrt.containers.mounts import collect_mounts
from pyrt.containers.options import (check_name, container_argv, env_list_to_dict, parse_addresses,
                                     parse_extra_hosts, parse_labels, parse_log_config, parse_ports,
                                     parse_restart_policy)
from pyrt.errors import Conflict, InvalidArgument, SpawnError
from pyrt.launch import process
from pyrt.launch.mounts import Overlay
from pyrt.launch.spec import DEFAULT_PATH
from pyrt.oci.image import check_platform

# What making a container needs beyond this (pyrt.cgroups.limits and .devices,
# pyrt.launch.seccomp and .userdb, pyrt.containers.volumes) is imported in create():
# `pyrt ps` loads this module without making a container.


_ADJECTIVES = ("brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid",
               "merry", "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen")
_NAMES = ("babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "knuth",
          "lamport", "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing")


def create(collection, image, command=None, *, name=None, entrypoint=None, environment=None, working_dir=None,
           user=None, hostname=None, mounts=None, volumes=None, tmpfs=None, volumes_from=None,
           network_mode=None, network=None, networking_config=None, read_only=False, cap_add=None,
           cap_drop=None, privileged=False,
           auto_remove=False, init=False, mem_limit=None, memswap_limit=None, mem_reservation=None,
           nano_cpus=None, cpus=None, cpu_shares=None, cpuset_cpus=None, cpuset_mems=None,
           pids_limit=None, stop_signal=None, tty=False, security_opt=None, ports=None,
           log_config=None, labels=None, extra_hosts=None, dns=None, dns_search=None,
           restart_policy=None, devices=None, blkio_weight=None, device_read_bps=None,
           device_write_bps=None, device_read_iops=None, device_write_iops=None):
    """A container of `image` (a reference or an Image), not started. Limits
    use the docker SDK's names (mem_limit="256m", nano_cpus or cpus=1.5,
    cpu_shares, cpuset_cpus="0", pids_limit=100, memswap_limit). tty=True: it
    runs on a terminal of its own (detached, its monitor holds it: see attach).
    security_opt: ["seccomp=unconfined"] or ["seccomp=/path/profile.json"] (the
    default is pyrt's profile, pyrt/seccomp.py). network_mode: docker's ("bridge",
    "host", "none" or a network's name; default pyrt.network.model.default_network()),
    or network (the SDK's: a network's name); networking_config: {network name:
    {"Aliases": [...], "IPAMConfig": {"IPv4Address": ...}}}. ports: the docker SDK's
    {"80/tcp": 8080, "53/udp": ("127.0.0.1", 5353), "81/tcp": None (a free port)}:
    on a network, forwarded by the kernel; with network none (TCP only), by its
    monitor while it runs detached. log_config: the SDK's {"Config": {"max-size":
    "10m", "max-file": "3"}}: the log rotates (as docker's json-file driver).
    labels: a dict, or a list of "key=value" (added to the image's).
    extra_hosts ({"name": "ip"} or ["name:ip"]), dns (["1.1.1.1"]) and
    dns_search: lines of the container's /etc/hosts and /etc/resolv.conf.
    restart_policy: {"Name": "on-failure"|"always"|"unless-stopped", "MaximumRetryCount":
    n}: its monitor starts a detached container again when it ends (not when
    stopped or killed by hand).
    devices: host device nodes to give it, as docker's --device
    ("/dev/kvm", "/dev/sda:/dev/xvda:r", or the SDK's "HOST:CONTAINER:rwm"
    strings): each is bound in and allowed; every other device but docker's
    default list (pyrt.cgroups.devices.DEFAULT_RULES) can be made but not opened.
    blkio_weight (10..1000) and device_read_bps / device_write_bps /
    device_read_iops / device_write_iops (the SDK's [{"Path": "/dev/sda", "Rate":
    1048576}] or "PATH:RATE" strings): block I/O limits."""
    from pyrt.cgroups.devices import parse_device
    from pyrt.cgroups.limits import Limits
    from pyrt.launch.seccomp import from_security_opt
    from pyrt.launch.userdb import home_of, resolve_user
    device_list = [parse_device(d).to_dict() for d in devices or ()]
    limits = Limits.from_docker(mem_limit=mem_limit, memswap_limit=memswap_limit,
                                mem_reservation=mem_reservation,
                                nano_cpus=nano_cpus if cpus is None else float(cpus) * 1e9,
                                cpu_shares=cpu_shares, cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems,
                                pids_limit=pids_limit, blkio_weight=blkio_weight,
                                device_read_bps=device_read_bps, device_write_bps=device_write_bps,
                                device_read_iops=device_read_iops, device_write_iops=device_write_iops)
    seccomp = from_security_opt(security_opt, cap_add, privileged)
    img = image if hasattr(image, "layers") else collection.runtime.images.get(image)
    check_platform(img.config)
    icfg = (img.config or {}).get("config") or {}
    argv = container_argv(icfg, command, entrypoint)
    if name is not None:
        check_name(name)
    from pyrt.network.endpoints import plan as network_plan
    network_mode, networks = network_plan(collection.runtime, network_mode, network, networking_config)
    published = parse_ports(ports)
    log_opts = parse_log_config(log_config)
    hosts_extra, dns_servers = parse_extra_hosts(extra_hosts), parse_addresses(dns, "dns")
    policy = parse_restart_policy(restart_policy)
    if policy and auto_remove:
        raise InvalidArgument("a restart policy and --rm (auto_remove) conflict: choose one")
    if any(p["Protocol"] != "tcp" for p in published) and network_mode == "none":
        raise InvalidArgument("publishing UDP ports needs a network (not none: its monitor forwards TCP only)")
    if network_mode == "slirp4netns":
        from pyrt.network import usermode
        usermode.programs()  # installed, or one line that says what to install
        usermode.check_ports(published)
    if published and network_mode == "host":
        raise InvalidArgument("published ports with the host network: the container already uses the "
                              "host's ports")
    inherited = []
    for ref in volumes_from or ():
        ref, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid volumes-from mode {mode!r}: expected ro or rw")
        for m in collection.get(ref).config.get("Mounts", []):
            if m["Type"] in ("bind", "volume"):
                m = dict(m)
                if mode:
                    m["RW"] = mode == "rw"
                inherited.append(m)
    mount_list = collect_mounts(volumes, tmpfs, mounts, inherited)
    covered = {os.path.normpath(m["Destination"]) for m in mount_list}
    for path in sorted(icfg.get("Volumes") or {}):  # the image's VOLUMEs: anonymous volumes
        if os.path.normpath(path) not in covered:
            mount_list.append({"Type": "volume", "Name": None, "Destination": path, "RW": True, "NoCopy": False})
    cid = os.urandom(32).hex()  # secrets.token_hex(32), without importing secrets (measured)
    hostname = hostname or cid[:12]
    env = env_list_to_dict(icfg.get("Env"))
    if isinstance(environment, dict):
        env.update({k: str(v) for k, v in environment.items()})
    else:
        env.update(env_list_to_dict(environment))
    env.setdefault("PATH", DEFAULT_PATH)
    if tty:
        env.setdefault("TERM", "xterm")
    env["HOSTNAME"] = hostname
    user = user if user is not None else icfg.get("User", "")
    layers_top_first = _layer_paths(img)
    if user:
        resolve_user(user, layers_top_first)  # an unknown user is an error now, not at start
    if "HOME" not in env:
        uid = resolve_user(user, layers_top_first)[0] if user else 0
        env["HOME"] = home_of(uid, layers_top_first)
    driver = collection.runtime.storage_driver
    config = {
        "Cmd": argv, "Env": [f"{k}={v}" for k, v in env.items()],
        "WorkingDir": working_dir if working_dir is not None else icfg.get("WorkingDir", ""),
        "User": user, "Hostname": hostname, "Mounts": mount_list, "NetworkMode": network_mode,
        "Networks": networks, "Dns": dns_servers,
        "ReadOnly": bool(read_only), "CapAdd": list(cap_add or []), "CapDrop": list(cap_drop or []),
        "Privileged": bool(privileged), "AutoRemove": bool(auto_remove), "Driver": driver,
        "ImageRef": image if isinstance(image, str) else img.id,
        "StopSignal": stop_signal or icfg.get("StopSignal") or "SIGTERM",
        "Limits": limits.to_dict(), "Init": bool(init), "Tty": bool(tty), "Seccomp": seccomp,
        "Ports": published, "LogConfig": log_opts,
        "Labels": {**(icfg.get("Labels") or {}), **parse_labels(labels)},
        "RestartPolicy": policy, "Devices": device_list,
    }
    if driver == "fuse-overlayfs":  # its option syntax: refused before anything is made
        from pyrt.launch.fuse import check_paths
        check_paths(collection.store.root, *layers_top_first)
    cdir = os.path.join(collection.store.root, "containers", cid)
    os.mkdir(cdir, 0o700)
    new_volumes = []
    try:
        os.mkdir(os.path.join(cdir, "upper"), 0o755)
        os.mkdir(os.path.join(cdir, "work"), 0o700)
        _write_etc_files(cdir, hostname, network_mode, hosts_extra, dns_servers, list(dns_search or ()),
                         resolv=_resolv(collection.runtime, network_mode, networks, dns_servers, dns_search))
        if driver != "copy":
            _make_init_layer(cdir, config["WorkingDir"], layers_top_first)
        if driver == "fuse-overlayfs":  # the union's mount point (in its keeper's mount namespace)
            os.mkdir(os.path.join(cdir, "merged"), 0o755)
        if driver == "copy":
            rootfs = os.path.join(cdir, "rootfs")
            os.mkdir(rootfs, 0o755)
            from pyrt.launch.userns import in_userns, rootless
            # an ordinary user's layers hold files of its subordinate ids: copied as
            # root of its user namespace, opaque dirs read from user.overlay.opaque
            in_userns(_materialize, cdir, rootfs, [layer.path for layer in img.layers], config["WorkingDir"],
                      rootless())
        _prepare_volumes(collection, mount_list, img, new_volumes)
        name = name or _free_name(collection)
        with collection.store.db.transaction() as tx:
            if tx.query_one("SELECT 1 FROM containers WHERE name=?", (name,)):
                raise Conflict(f"the container name {name!r} is already in use: remove that container "
                               "or choose another name")
            if tx.query_one("SELECT 1 FROM images WHERE id=?", (img.id,)) is None:
                raise Conflict(f"image {img.id[7:19]} was removed meanwhile")
            tx.execute("INSERT INTO containers (id, name, image_id, created, config, state) VALUES (?,?,?,?,?,?)",
                       (cid, name, img.id, time.time(), json.dumps(config), json.dumps({"Status": "created"})))
    except BaseException:
        _rmtree(cdir)
        for v in new_volumes:
            try:
                v._c._delete(v.name)
            except LookupError:
                pass
        raise
    return collection.get(cid)


def _prepare_volumes(collection, mount_list, img, new_volumes):
    """Create the named volumes that do not exist yet and the anonymous ones,
    and fill new, empty ones with the image's content at their destination."""
    from pyrt.containers.volumes import populate
    vols = collection.runtime.volumes
    for m in mount_list:
        if m["Type"] != "volume":
            continue
        if m["Name"] is None:
            v = vols.create(anonymous=True)
            m["Name"], m["Anonymous"] = v.name, True
            new_volumes.append(v)
        else:
            try:
                v = vols.get(m["Name"])
            except LookupError:
                v = vols.create(m["Name"])
                new_volumes.append(v)
        m["Source"] = v.mountpoint
        if not m.get("NoCopy"):
            populate(v, [layer.path for layer in img.layers], m["Destination"])


def _free_name(collection):
    for _ in range(100):
        n = f"{_pick(_ADJECTIVES)}_{_pick(_NAMES)}"
        if not collection.store.db.query_one("SELECT 1 FROM containers WHERE name=?", (n,)):
            return n
    return "pyrt_" + os.urandom(4).hex()


def _pick(seq):
    """secrets.choice (uniform, from os.urandom) for up to 256 items, without
    importing secrets (hmac, hashlib, random: measured, more than a run's own work)."""
    while True:
        r = os.urandom(1)[0]
        if r < 256 - 256 % len(seq):
            return seq[r % len(seq)]


def detect_storage_driver(runtime) -> str:
    """overlay when the store's filesystem can hold overlay upper dirs; else, for an
    ordinary user, fuse-overlayfs when it can mount (pyrt.launch.fuse); else copy.
    Each fallback is said in one line. Probed once per store by mounting a tiny
    union in a throw-away container setup (fuse-overlayfs: by its keeper), and
    remembered in <root>/storage-driver. $PYRT_NO_OVERLAY=1 makes the overlay probe
    fail (as on a kernel that refuses overlay in a user namespace) and
    $PYRT_NO_FUSE_OVERLAYFS=1 the fuse-overlayfs one (as without the program), for
    the tests of the fallbacks."""
    memo = os.path.join(runtime.store.root, "storage-driver")
    try:
        with open(memo) as f:
            driver = f.read().strip()
        if driver in ("overlay", "fuse-overlayfs", "copy"):
            return driver
    except FileNotFoundError:
        pass
    reason = _probe_overlay(runtime)
    if reason is None:
        return _chose(runtime, memo, "overlay")
    if os.geteuid() != 0:
        fuse_reason = _probe_fuse(runtime)
        if fuse_reason is None:
            return _chose(runtime, memo, "fuse-overlayfs", f"overlay is not usable for the store "
                                                           f"{runtime.store.root} ({reason})")
        reason = f"{reason}; nor is fuse-overlayfs: {fuse_reason}"
    return _chose(runtime, memo, "copy", f"overlay is not usable for the store {runtime.store.root} ({reason})")


def _probe_overlay(runtime) -> str | None:
    """Why the kernel's overlay cannot be mounted for the store (None: it can)."""
    if os.environ.get("PYRT_NO_OVERLAY") == "1":  # as a kernel that refuses overlay (documented)
        return "PYRT_NO_OVERLAY=1"
    probe = runtime.store.mkdtemp("probe-")
    try:
        dirs = [os.path.join(probe, d) for d in ("l1", "l2", "upper", "work")]
        for d in dirs:
            os.mkdir(d)
        try:  # the spawn mounts the overlay, then fails to exec the missing program; privileged:
            # no device cgroup to make for it (nor to leave behind should this process be killed)
            process.run(["/.pyrt-probe"], Overlay(dirs[:2], upperdir=dirs[2], workdir=dirs[3]), privileged=True)
            return None
        except SpawnError as e:
            return None if e.op == "exec" else str(e)
    finally:
        _rmtree(probe)


def _probe_fuse(runtime) -> str | None:
    """Why fuse-overlayfs cannot mount for the store (None: it can)."""
    from pyrt.errors import PyrtError
    from pyrt.launch import fuse
    if os.environ.get("PYRT_NO_FUSE_OVERLAYFS") == "1":  # as without the program (documented)
        return "PYRT_NO_FUSE_OVERLAYFS=1"
    why = fuse.usable()
    if why:
        return why
    probe = runtime.store.mkdtemp("probe-")
    try:
        dirs = [os.path.join(probe, d) for d in ("l1", "l2", "upper", "work")]
        for d in dirs:
            os.mkdir(d)
        try:
            fuse.Keeper.start(probe, dirs[:2], dirs[2], dirs[3]).close()
            return None
        except PyrtError as e:
            return str(e)
    finally:
        _rmtree(probe)


def _chose(runtime, memo, driver, notice=None):
    """Record the store's driver, and say in one line why it is not overlay."""
    import sys
    if notice is not None and not runtime.quiet:
        print(f"pyrt: {notice}: using the {driver} storage driver", file=sys.stderr)
    tmp = f"{memo}.{os.getpid()}.tmp"  # two processes may probe at once: same answer
    with open(tmp, "w") as f:
        f.write(driver + "\n")
    os.rename(tmp, memo)
    return driver


def _resolv(runtime, network_mode, networks, dns_servers, dns_search):
    """The container's /etc/resolv.conf from pyrt.network (None: the host's)."""
    if network_mode == "slirp4netns":
        from pyrt.network.usermode import resolv_conf as usermode_resolv
        return usermode_resolv(dns_servers, list(dns_search or ()))
    from pyrt.network.endpoints import resolv_conf
    return resolv_conf(runtime, networks, dns_servers, list(dns_search or ()))


def _write_etc_files(cdir, hostname, network_mode, extra_hosts=(), dns=(), dns_search=(), resolv=None):
    """/etc/hostname, /etc/hosts (plus --add-host lines) and /etc/resolv.conf (the
    host's, or --dns/--dns-search; `resolv`: the one pyrt.network made) of a container."""
    with open(os.path.join(cdir, "hostname"), "w") as f:
        f.write(hostname + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if network_mode == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            pass
    else:
        hosts += f"127.0.1.1\t{hostname}\n"
    hosts += "".join(f"{ip}\t{name}\n" for name, ip in extra_hosts)
    with open(os.path.join(cdir, "hosts"), "w") as f:
        f.write(hosts)
    if resolv is not None:
        with open(os.path.join(cdir, "resolv.conf"), "w") as f:
            f.write(resolv)
        return
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    if dns or dns_search:
        kept = [ln for ln in resolv.splitlines() if not ln.startswith("nameserver" if dns else "search")
                and not (dns_search and ln.startswith("search"))]
        resolv = "\n".join(kept + [f"search {' '.join(dns_search)}"] * bool(dns_search)
                           + [f"nameserver {ip}" for ip in dns]) + "\n"
    with open(os.path.join(cdir, "resolv.conf"), "w") as f:
        f.write(resolv)


def _in_image(lowers, rel) -> bool:
    """Does some layer have `rel` (a relative path)? Whiteouts are not looked at:
    this only decides whether a placeholder is needed."""
    return any(os.path.lexists(os.path.join(lower, rel)) for lower in lowers)


def _make_init_layer(cdir, workdir, lowers):
    """The container's init layer (as docker has): a read-only layer between the
    image and the container's upper dir holding the mount points pyrt adds (/proc,
    /sys, /dev, /etc/hosts, /etc/hostname, /etc/resolv.conf) and the working dir,
    when the image lacks them, so they never show in `diff` or `commit`."""
    init = os.path.join(cdir, "init")
    os.mkdir(init, 0o755)
    for d in ("proc", "sys", "dev"):
        if not _in_image(lowers, d):
            os.mkdir(os.path.join(init, d), 0o755)
    for name in ("hostname", "hosts", "resolv.conf"):
        rel = os.path.join("etc", name)
        if not _in_image(lowers, rel) and not any(os.path.islink(os.path.join(lo, "etc")) for lo in lowers):
            os.makedirs(os.path.join(init, "etc"), mode=0o755, exist_ok=True)
            open(os.path.join(init, rel), "w").close()
    rel = (workdir or "").strip("/")
    if rel and ".." not in rel.split("/") and not _in_image(lowers, rel):
        # a symlink on the way in the image: the spawn core creates it inside the root
        parts = rel.split("/")
        if not any(os.path.islink(os.path.join(lo, *parts[:i + 1])) for lo in lowers for i in range(len(parts))):
            os.makedirs(os.path.join(init, rel), mode=0o755, exist_ok=True)


def _materialize(cdir, rootfs, layer_paths, workdir, userxattr):
    """The `copy` driver's root: the layers copied bottom-up (whiteouts applied),
    then its init layer."""
    for path in layer_paths:
        _core.copy_tree(path, rootfs, whiteouts=True, userxattr=userxattr)
    _make_copy_init(cdir, rootfs, workdir)


def _make_copy_init(cdir, rootfs, workdir):
    """The `copy` driver's init layer: the mount points pyrt adds (/proc, /sys, /dev,
    /etc/hostname, /etc/hosts, /etc/resolv.conf) and the working dir are made in the
    materialized root when the image lacks them (the times of the dir they are made in
    kept; never through a symlink: the spawn core resolves those inside the root), and
    mirrored, with the same metadata, in containers/<id>/init, which `diff` and
    `commit` compare the root with on top of the image: so they never show there."""
    made = []

    def make(rel, directory):
        parts = [p for p in rel.split("/") if p and p != "."]
        if not parts or ".." in parts:
            return
        if any(os.path.islink(os.path.join(rootfs, *parts[:i + 1])) for i in range(len(parts))):
            return
        i = 0
        while os.path.lexists(os.path.join(rootfs, *parts[:i + 1])):
            i += 1
            if i == len(parts):
                return  # the image has it
        anchor = os.path.join(rootfs, *parts[:i])
        if not os.path.isdir(anchor):
            return
        st = os.lstat(anchor)
        for j in range(i, len(parts)):
            path = os.path.join(rootfs, *parts[:j + 1])
            if j < len(parts) - 1 or directory:
                os.mkdir(path, 0o755)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
        made.append(parts)
        os.utime(anchor, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    for d in ("proc", "sys", "dev"):
        make(d, True)
    for name in ("hostname", "hosts", "resolv.conf"):
        make("etc/" + name, False)
    make(workdir or "", True)
    init = os.path.join(cdir, "init")
    os.mkdir(init, 0o755)
    entries = set()
    for parts in made:
        entries.update(tuple(parts[:k]) for k in range(1, len(parts) + 1))
    for parts in sorted(entries, key=len):
        src, dst = os.path.join(rootfs, *parts), os.path.join(init, *parts)
        if os.path.isdir(src):
            os.mkdir(dst, 0o755)
        else:
            os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
    for parts in sorted(entries, key=len, reverse=True):  # deepest first: a dir's times after its children
        src, dst = os.path.join(rootfs, *parts), os.path.join(init, *parts)
        st = os.lstat(src)
        for name in os.listxattr(src, follow_symlinks=False):
            if not name.startswith(("trusted.overlay.", "user.overlay.")):
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
