"""Container cgroups where systemd owns the cgroup tree (pure cgroup v2 under
systemd: Debian 12, Ubuntu, Fedora, RHEL 9), as podman's systemd cgroup manager
does: each container's cgroup is in a transient scope of its own,
machine.slice/pyrt-<id>.scope, made through systemd's D-Bus API with
Delegate=yes. What is below a delegated scope is pyrt's: systemd never moves,
kills or resets it (daemon-reload included), so pyrt writes the container's limits
there itself, in the scope's container/ leaf.

A scope must hold a process when it is made: a placeholder (`sleep infinity`,
reparented to init) starts it and then waits in the scope's supervisor/ leaf until
the container is removed (stopping the scope ends it); until then the container's
cgroup, its accounting and OOM record outlive the container's processes, as they
do with cgroupfs. The scope a rootless engine names (pyrt-runtime --systemd-cgroup
as an ordinary user, or as root of a user namespace) is what the engine reads as
the container's cgroup: there the placeholder ends once the container's process
is in (drop_placeholder), as crun's scopes hold the container's alone. D-Bus is spoken through `busctl`, which ships with systemd."""
from __future__ import annotations

import errno
import os
import time

from pyrt.errors import CgroupError, InvalidArgument

SLICE = "machine.slice"
LEAF = "container"  # the container's own cgroup, below its scope


def manager(lay) -> str:
    """"systemd" or "cgroupfs": PYRT_CGROUP_MANAGER (set by `--cgroup-manager`), else
    systemd where systemd runs the machine on a pure cgroup2 tree and we are root
    (the default of podman there), else cgroupfs."""
    want = os.environ.get("PYRT_CGROUP_MANAGER", "")
    if want in ("systemd", "cgroupfs"):
        return want
    if want:
        raise InvalidArgument(f"invalid cgroup manager {want!r}: use systemd or cgroupfs")
    if lay.mode == "v2" and os.geteuid() == 0 and os.path.isdir("/run/systemd/system"):
        return "systemd"
    if os.geteuid() != 0:  # an ordinary user: its systemd instance, where it delegates a subtree
        from pyrt.cgroups.delegation import usable
        return "systemd" if usable() else "cgroupfs"
    return "cgroupfs"


def _user_base() -> str | None:
    """An ordinary user's delegated subtree (pyrt.cgroups.delegation), whose
    systemd instance makes its containers' scopes in its own user.slice."""
    if os.geteuid() == 0:
        return None
    from pyrt.cgroups.delegation import delegated_root
    return delegated_root()


def scope_of(cid: str) -> str:
    """The container's scope, as a path below the cgroup2 mount."""
    base = _user_base()
    if base:
        return f"{base}/user.slice/pyrt-{cid}.scope"
    return f"{SLICE}/pyrt-{cid}.scope"


def is_scope(parent: str) -> bool:
    if parent.startswith(SLICE + "/pyrt-") and parent.endswith(".scope"):
        return True
    base = _user_base()
    return bool(base) and parent.startswith(f"{base}/user.slice/pyrt-") and parent.endswith(".scope")


def _busctl(method: str, signature: str, *args) -> str:
    import subprocess  # here, as in _placeholder: every container start asks manager(), few run these (measured)
    from pyrt.paths import ordinary_user
    bus = "--user" if ordinary_user() else "--system"  # an ordinary user's own instance
    cmd = ["busctl", bus, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
           "org.freedesktop.systemd1.Manager", method, signature, *map(str, args)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CgroupError(2, "systemd cgroup manager", "busctl",
                          "busctl not found: systemd's cgroup manager needs it (pyrt's "
                          "--cgroup-manager cgroupfs, pyrt-runtime without --systemd-cgroup as root, do without)") from None
    if p.returncode != 0:
        why = p.stderr.strip()
        if "connect to bus" in why:
            why += ("; is systemd running? (pyrt's --cgroup-manager cgroupfs, pyrt-runtime without "
                    "--systemd-cgroup as root, do without it)")
        raise CgroupError(5, f"systemd {method}", args[0] if args else "", why)
    return p.stdout


def _placeholder() -> int:
    """A process that sleeps until killed, already reparented away from us."""
    import subprocess
    p = subprocess.run(["sh", "-c", "sleep infinity </dev/null >/dev/null 2>&1 & echo $!"], capture_output=True,
                       text=True, check=True, start_new_session=True)
    return int(p.stdout.strip())


def slice_path(slice_: str) -> str:
    """A slice's cgroup below the cgroup2 mount, as systemd nests them:
    "machine.slice" -> "machine.slice", "a-b.slice" -> "a.slice/a-b.slice"."""
    stem = slice_[:-len(".slice")]
    parts = stem.split("-")
    return "/".join("-".join(parts[:i + 1]) + ".slice" for i in range(len(parts)))


def start(cid: str, unified: str) -> str:
    """Make the container's scope (placeholder inside, moved to supervisor/ so the
    scope can hand controllers down); returns its path below the cgroup2 mount."""
    slice_ = "user.slice" if _user_base() else SLICE  # an ordinary user's own systemd instance
    return start_unit(f"pyrt-{cid}.scope", slice_, unified, f"pyrt container {cid[:12]}", scope=scope_of(cid))


def start_unit(unit: str, slice_: str, unified: str, description: str, scope: str | None = None,
               properties: tuple = ()) -> str:
    """A delegated transient scope `unit` in `slice_` (a validated unit and slice
    name), its placeholder in its supervisor/ leaf; returns the scope's path below
    the cgroup2 mount (`scope` when the manager is a user's, below its own service).
    `properties`: more of the unit's, (name, D-Bus signature, value) each, as
    ("MemoryMax", "t", 1 << 26)."""
    scope = scope or f"{slice_path(slice_)}/{unit}"
    extra = [x for prop in properties for x in prop]
    pid = _placeholder()
    try:
        _busctl("StartTransientUnit", "ssa(sv)a(sa(sv))", unit, "fail", 4 + len(properties),
                "Description", "s", description, "Slice", "s", slice_,
                "Delegate", "b", "true", "PIDs", "au", 1, pid, *extra, 0)
        want = "0::/" + scope + "\n"
        deadline = time.monotonic() + 10
        while True:  # the job runs asynchronously: done once the placeholder is in
            with open(f"/proc/{pid}/cgroup") as f:
                if f.read() == want:
                    break
            if time.monotonic() > deadline:
                raise CgroupError(110, "systemd start scope", scope, "the placeholder never moved in")
            time.sleep(0.002)
        sup = os.path.join(unified, scope, "supervisor")
        os.mkdir(sup, 0o755)
        with open(os.path.join(sup, "cgroup.procs"), "w") as f:
            f.write(str(pid))
    except BaseException:
        try:  # undo what got made; the first failure is the one to report
            stop_unit(unit, scope, unified)
        except OSError:
            pass
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        raise
    return scope


def drop_placeholder(scope: str, unified: str, timeout: float = 5.0) -> None:
    """End the scope's placeholder and remove its supervisor/ leaf, once the
    container's processes hold the scope: what is in the scope is then the
    container's alone (an engine that reads the scope as the container's cgroup,
    as podman does, counts no process of ours), and systemd removes the scope
    when they are gone, as it does crun's."""
    sup = os.path.join(unified, scope, "supervisor")
    try:
        with open(os.path.join(sup, "cgroup.kill"), "w") as f:
            f.write("1")
    except FileNotFoundError:  # no cgroup.kill (before 5.14): each process
        if not os.path.isdir(sup):
            return
        with open(os.path.join(sup, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(sup)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:  # not dead yet
                raise CgroupError(e.errno, "remove the placeholder's cgroup", sup, e.strerror) from None
        time.sleep(0.002)


def stop(cid: str, unified: str) -> None:
    """Stop the container's scope (see stop_unit)."""
    stop_unit(f"pyrt-{cid}.scope", scope_of(cid), unified)


def stop_unit(unit: str, scope: str, unified: str) -> None:
    """Stop the scope (its placeholder, and anything left in it, is killed; systemd
    removes the cgroups) and wait until its cgroup `scope` is gone."""
    try:
        _busctl("StopUnit", "ss", unit, "replace")
    except OSError as e:
        if "not loaded" not in str(e) and "NoSuchUnit" not in str(e):
            raise
    d = os.path.join(unified, scope)
    deadline = time.monotonic() + 10
    while os.path.isdir(d) and time.monotonic() < deadline:
        time.sleep(0.005)
