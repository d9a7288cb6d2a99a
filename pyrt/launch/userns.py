"""User namespaces for an ordinary user (rootless pyrt): which ids a container
gets and how its maps are written.

As root nothing here is used unless asked for (`uidmap=`/`gidmap=`). As an
ordinary user every container gets a user namespace of its own, mapped as
rootless podman maps it:

    container 0      -> the caller's own uid (gid)
    container 1..N   -> the caller's subordinate range(s) in /etc/subuid (/etc/subgid)

written by the setuid helpers newuidmap and newgidmap (Debian package `uidmap`),
which check the maps against those files. Without a subordinate range, or
without the helpers, only the caller's own id is mapped (to root) and one line on
stderr says so, once per process; a user= other than root is then refused with
a message that says why.

`maps_for_caller()` is that default; `explicit_maps()` checks maps a caller gave
(uidmap=/gidmap=) against what the helpers would allow, so that a bad map fails
with one line before anything is started."""
from __future__ import annotations

import os
import shutil
import sys
import threading

from pyrt.errors import InvalidArgument, Unsupported

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"

# Where the helpers are looked up besides $PATH (an ordinary user's PATH often
# lacks the sbin directories; Debian installs them in /usr/bin).
_HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")

_HOW_TO_ADD = ("add one as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}")


class IdMaps:
    """A container's uid and gid maps (bytes, as /proc/PID/uid_map takes them) and
    how they are written: `uid_helper`/`gid_helper` (paths of newuidmap and
    newgidmap) or None (written directly, with setgroups denied when not root).
    `size`: how many ids the container has (0..size-1); `note`: why it has only
    one, when that is so."""

    __slots__ = ("uid_map", "gid_map", "uid_helper", "gid_helper", "setgroups_deny", "size", "note",
                 "uid_triples", "gid_triples")

    def __init__(self, uid_triples, gid_triples, uid_helper=None, gid_helper=None, setgroups_deny=False,
                 note=""):
        self.uid_triples, self.gid_triples = list(uid_triples), list(gid_triples)
        self.uid_map = _render(self.uid_triples)
        self.gid_map = _render(self.gid_triples)
        self.uid_helper, self.gid_helper = uid_helper, gid_helper
        self.setgroups_deny = setgroups_deny
        self.size = min(_span(self.uid_triples), _span(self.gid_triples))
        self.note = note

    @property
    def single(self) -> bool:
        """Only the caller's own id is mapped (no subordinate ids)."""
        return self.size <= 1

    def apply(self, spec) -> None:
        """Give a SpawnSpec these maps (the caller adds CLONE_NEWUSER)."""
        spec.uid_map, spec.gid_map = self.uid_map, self.gid_map
        spec.uid_map_helper = os.fsencode(self.uid_helper) if self.uid_helper else None
        spec.gid_map_helper = os.fsencode(self.gid_helper) if self.gid_helper else None
        spec.setgroups_deny = self.setgroups_deny

    def to_host(self, cid: int, kind: str = "uid") -> int | None:
        """The host id of container id `cid` (None: not mapped)."""
        for inside, outside, count in (self.uid_triples if kind == "uid" else self.gid_triples):
            if inside <= cid < inside + count:
                return outside + cid - inside
        return None

    def to_container(self, hid: int, kind: str = "uid") -> int | None:
        """The container id of host id `hid` (None: not mapped)."""
        for inside, outside, count in (self.uid_triples if kind == "uid" else self.gid_triples):
            if outside <= hid < outside + count:
                return inside + hid - outside
        return None

    def __repr__(self):
        return f"IdMaps(uid={self.uid_triples}, gid={self.gid_triples}, helpers={bool(self.uid_helper)})"


def _render(triples) -> bytes:
    return "".join(f"{a} {b} {c}\n" for a, b, c in triples).encode()


def _span(triples) -> int:
    return max((a + c for a, b, c in triples), default=0)


def user_name(uid: int | None = None) -> str:
    uid = os.getuid() if uid is None else uid
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def subordinate_ranges(path: str, uid: int, name: str) -> list[tuple[int, int]]:
    """The (start, count) ranges of `path` (/etc/subuid or /etc/subgid) for the
    user `name` (or its numeric id), in the file's order; [] when there is none
    (or no file)."""
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, PermissionError):
        return out
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0 and start + count <= 1 << 32:
            out.append((start, count))
    return out


def find_helper(name: str) -> str | None:
    """The path of a helper program (newuidmap, newgidmap, slirp4netns, nsenter...),
    found on PATH or in the usual system directories (PATH may be a user's own), or None."""
    found = shutil.which(name)
    if found:
        return found
    for d in _HELPER_DIRS:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def _stacked(own: int, ranges) -> list[tuple[int, int, int]]:
    """0 -> own id, then the ranges one after the other from 1 (podman's map)."""
    triples, at = [(0, own, 1)], 1
    for start, count in ranges:
        triples.append((at, start, count))
        at += count
    return triples


_cache = None  # (key, IdMaps)
_cache_lock = threading.Lock()
_noted = set()


def _key():
    stamps = []
    for p in (SUBUID, SUBGID):
        try:
            st = os.stat(p)
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append(None)
    return (os.getuid(), os.getgid(), tuple(stamps), os.environ.get("PATH"))


def _subid_problem(uid, gid, name) -> tuple[str, list, list, str | None, str | None]:
    """(why the caller cannot have more than its own id, or "", the uid ranges,
    the gid ranges, newuidmap, newgidmap)."""
    uranges = subordinate_ranges(SUBUID, uid, name)
    granges = subordinate_ranges(SUBGID, uid, name)
    newuidmap, newgidmap = find_helper("newuidmap"), find_helper("newgidmap")
    if not uranges or not granges:
        which = " and ".join(p for p, r in ((SUBUID, uranges), (SUBGID, granges)) if not r)
        why = f"no subordinate ids for {name} in {which} ({_HOW_TO_ADD.format(user=name)})"
    elif not newuidmap or not newgidmap:
        missing = " and ".join(n for n, p in (("newuidmap", newuidmap), ("newgidmap", newgidmap)) if not p)
        why = f"{missing} not found (install the package uidmap)"
    else:
        why = ""
    return why, uranges, granges, newuidmap, newgidmap


def maps_for_caller() -> IdMaps:
    """The maps an ordinary user's containers get (see the module's docstring),
    read once and again when /etc/subuid or /etc/subgid change."""
    global _cache
    if _inside:  # an in_userns child: the maps of the user it works for
        return _cache[1]
    key = _key()
    c = _cache
    if c is not None and c[0] == key:
        return c[1]
    with _cache_lock:
        uid, gid = os.getuid(), os.getgid()
        name = user_name(uid)
        why, uranges, granges, newuidmap, newgidmap = _subid_problem(uid, gid, name)
        if why:
            maps = IdMaps([(0, uid, 1)], [(0, gid, 1)], setgroups_deny=True, note=why)
        else:
            maps = IdMaps(_stacked(uid, uranges), _stacked(gid, granges), newuidmap, newgidmap)
        _cache = (key, maps)
        return maps


def note_single(maps: IdMaps) -> None:
    """One line on stderr, once per process and reason, when containers get only
    the caller's own id."""
    if maps.single and maps.note and maps.note not in _noted:
        _noted.add(maps.note)
        try:
            sys.stderr.write(f"pyrt: only your own id is mapped in containers (as root): {maps.note}\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass


def require_subids(what: str) -> IdMaps:
    """The caller's maps for an operation that needs more than its own id (files
    of other owners in an image's layers): raises a one-line Unsupported when the
    caller has no subordinate range or no helpers."""
    maps = maps_for_caller()
    if maps.single:
        raise Unsupported(f"{what}: {maps.note}")
    return maps


def _triples(m, what) -> list[tuple[int, int, int]]:
    if isinstance(m, (bytes, str)):
        text = os.fsdecode(m)
        rows = [line.split() for line in text.splitlines() if line.strip()]
    else:
        rows = [list(r) for r in m]
    out = []
    for r in rows:
        try:
            a, b, c = (int(x) for x in r)
        except (TypeError, ValueError):
            raise InvalidArgument(f"{what}: each line is 'inside outside count': {r!r}") from None
        if a < 0 or b < 0 or c <= 0 or a + c > 1 << 32 or b + c > 1 << 32:
            raise InvalidArgument(f"{what}: invalid range {a} {b} {c}")
        out.append((a, b, c))
    if not out:
        raise InvalidArgument(f"{what}: empty map")
    return out


def _allowed(triples, own, ranges, kind, name, path) -> None:
    """Every host id of the map is the caller's own or in its subordinate ranges."""
    for inside, outside, count in triples:
        if count == 1 and outside == own:
            continue
        if any(start <= outside and outside + count <= start + n for start, n in ranges):
            continue
        raise InvalidArgument(
            f"{kind} map {inside} {outside} {count}: host {kind}s {outside}-{outside + count - 1} are not "
            f"yours (not your own {kind} and outside {name}'s ranges in {path})")


def explicit_maps(uidmap, gidmap) -> IdMaps:
    """Maps a caller gave (triples or "inside outside count" lines), for an
    ordinary user: written directly when each is the one line of the caller's own
    id, else by newuidmap/newgidmap after the same check they make (so the error
    names the map). A missing one defaults to the caller's own id as root."""
    uid, gid = os.getuid(), os.getgid()
    ut = _triples(uidmap, "uid map") if uidmap is not None else [(0, uid, 1)]
    gt = _triples(gidmap, "gid map") if gidmap is not None else [(0, gid, 1)]
    direct_u = len(ut) == 1 and ut[0][1:] == (uid, 1)
    direct_g = len(gt) == 1 and gt[0][1:] == (gid, 1)
    if direct_u and direct_g:
        return IdMaps(ut, gt, setgroups_deny=True)
    name = user_name(uid)
    why, uranges, granges, newuidmap, newgidmap = _subid_problem(uid, gid, name)
    _allowed(ut, uid, uranges, "uid", name, SUBUID)
    _allowed(gt, gid, granges, "gid", name, SUBGID)
    if not newuidmap or not newgidmap:
        raise Unsupported(f"these id maps need {why}")
    # newgidmap handles setgroups itself; one helper writes both or neither map
    return IdMaps(ut, gt, newuidmap, newgidmap)


def apply(spec, uidmap=None, gidmap=None, shared=True) -> IdMaps:
    """As an ordinary user: give `spec` a user namespace's maps (the caller's
    default ones, or those given); returns them. `shared`: the container joins
    the process's shared namespace of those maps (shared_fd) rather than getting
    one of its own; a spec that goes to another process (the monitor, a pool's
    zygote) gets one of its own there."""
    if uidmap is not None or gidmap is not None:
        maps = explicit_maps(uidmap, gidmap)
    else:
        maps = maps_for_caller()
        note_single(maps)
    maps.apply(spec)
    if shared:
        spec.userns_fd = shared_fd(maps)
    return maps


def check_user(maps: IdMaps, ident) -> None:
    """A user= the container's maps cannot give: one line that says why."""
    if ident is None:
        return
    uid, gid, groups = ident
    for kind, v in [("uid", uid), ("gid", gid)] + [("gid", g) for g in groups]:
        if maps.to_host(v, kind) is None:
            more = f" ({maps.note})" if maps.note else ""
            raise InvalidArgument(f"user {uid}:{gid}: {kind} {v} is not mapped in the container's user "
                                  f"namespace (it has {kind}s 0-{maps.size - 1}){more}")


_shared = None  # (pid, maps key, fd): this process's user namespace for its containers
_shared_lock = threading.Lock()


def shared_fd(maps: IdMaps) -> int:
    """An fd of a user namespace with `maps`, made once per process (and again
    when the maps change) and shared by the containers it starts: a container is
    cloned into it, so no map helper runs per container (as rootless podman shares
    one namespace among a user's containers). The fd stays open for the process's
    life; a forked child makes its own on first use."""
    global _shared
    key = (maps.uid_map, maps.gid_map, maps.uid_helper, maps.gid_helper)
    s = _shared
    if s is not None and s[0] == os.getpid() and s[1] == key:
        return s[2]
    with _shared_lock:
        s = _shared
        if s is not None and s[0] == os.getpid() and s[1] == key:
            return s[2]
        from pyrt import _core
        fd = _core.userns_create(maps.uid_map, maps.gid_map,
                                 os.fsencode(maps.uid_helper) if maps.uid_helper else None,
                                 os.fsencode(maps.gid_helper) if maps.gid_helper else None, maps.setgroups_deny)
        if s is not None and s[0] == os.getpid():
            try:
                os.close(s[2])
            except OSError:
                pass
        _shared = (os.getpid(), key, fd)
        return fd


# -- file work inside the user namespace ----------------------------------------------------------

_inside = False  # this process is in_userns's child: root of the shared namespace


def inside() -> bool:
    """Whether this process is an in_userns child (an ordinary user's store work,
    done as root of its user namespace)."""
    return _inside


def rootless() -> bool:
    """Whether pyrt works for an ordinary user here: not root, or root of the user
    namespace an in_userns child runs in (its store holds user.overlay.* xattrs,
    no device nodes)."""
    return os.geteuid() != 0 or _inside


def note(message: str) -> None:
    """One line on stderr (a notice an ordinary user should see: a device node
    skipped, a fallback taken)."""
    try:
        sys.stderr.write(f"pyrt: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def in_userns(fn, *args, **kwargs):
    """fn(*args, **kwargs), as root of the process's shared user namespace when
    this process is an ordinary user's (else simply called): for the store's file
    work, whose files belong to the user's subordinate ids (unpacking layers,
    removing them, reading a container's changes, copying into volumes). The work
    runs in a forked child that joins the namespace (and a mount namespace of its
    own, for the overlays it may mount) and sends back fn's result, or its
    exception, pickled; stdout and stderr are this process's. The child runs
    Python after fork: fn must not need locks other threads of this process may
    hold (the store's database is not used there)."""
    if os.geteuid() == 0:
        return fn(*args, **kwargs)
    maps = maps_for_caller()
    return _in(shared_fd(maps), maps, fn, args, kwargs)


def in_userns_of(pidfd: int, fn, *args, **kwargs):
    """in_userns, in the user namespace of the process behind `pidfd` (one of the
    caller's: a container whose files only that namespace may reach, such as a
    FUSE root mounted there)."""
    if os.geteuid() == 0:
        return fn(*args, **kwargs)
    return _in(pidfd, maps_for_caller(), fn, args, kwargs)


def _in(fd, maps, fn, args, kwargs):
    import pickle
    r, w = os.pipe()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        status = 0
        try:
            os.close(r)
            _enter(fd, maps)
            try:
                payload = pickle.dumps((True, fn(*args, **kwargs)))
            except BaseException as e:  # noqa: B902 (sent to the parent, re-raised there)
                try:
                    payload = pickle.dumps((False, e))
                except Exception:
                    payload = pickle.dumps((False, RuntimeError(f"{type(e).__name__}: {e}")))
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:  # noqa: B902
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            data = f.read()
    except BaseException:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    if not data:
        raise OSError(f"the user namespace helper (pid {pid}) failed: status {os.waitstatus_to_exitcode(status)}")
    ok, value = pickle.loads(data)
    if ok:
        return value
    raise value


def _enter(fd, maps):
    """In in_userns's child: join the namespace as its root, with a private mount
    namespace."""
    global _inside, _cache
    from pyrt import sys as psys
    _cache = (None, maps)
    psys.setns(fd, psys.CLONE_NEWUSER)
    psys.unshare(psys.CLONE_NEWNS)
    psys.mount(None, "/", None, psys.MS_REC | psys.MS_PRIVATE)
    if not maps.setgroups_deny:
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _inside = True


def overlay_options(options) -> list:
    """An overlay's options as an ordinary user mounts it in its user namespace:
    with userxattr (user.overlay.* xattrs; Linux 5.11), with which overlay refuses
    redirect_dir=off (nofollow neither makes redirects nor follows them). Items
    are str or bytes, as given."""
    out, has = [], False
    for o in options:
        b = o.encode() if isinstance(o, str) else o
        if b == b"redirect_dir=off":
            o = "redirect_dir=nofollow" if isinstance(o, str) else b"redirect_dir=nofollow"
        has |= b == b"userxattr"
        out.append(o)
    if not has:
        out.append(b"userxattr" if out and isinstance(out[0], bytes) else "userxattr")
    return out
