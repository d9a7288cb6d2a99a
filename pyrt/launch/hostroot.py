"""A container root made of the host's own programs, for running code rather than
images: `pyrt.run(argv, rootfs=pyrt.HostRoot())`, `pyrt run --host-root`,
`pyrt.Pool(rootfs=pyrt.HostRoot())`.

The root is a small skeleton directory pyrt keeps (mount points, the links of a
merged /usr, a generated /etc/passwd, /etc/group and /etc/hosts), read-only, with:

- the host's /usr, /bin, /sbin, /lib* bound read-only (nosuid, nodev), as links
  where the host has links (a merged /usr);
- selected /etc entries bound read-only (HostRoot.ETC: the loader's cache and
  config, alternatives, CA certificates, time zone, os-release, Python's config,
  ...); never shadow files, keys, sudoers or ssh config, and nothing that not every
  host user may read;
- a private tmpfs at /tmp, /home and /root (HOME is /root for root, /home else);
- whatever the caller binds in (`mounts=`), and for `python=` an interpreter's
  prefix and venv outside /usr.

Everything else of pyrt.run applies unchanged: new namespaces (no network by
default), /proc, /sys read-only, docker's /dev and device list, masked paths,
docker's capabilities, no_new_privs and the default seccomp profile.

Skeletons live in /run/pyrt/hostroot (or /tmp/pyrt-UID/hostroot), one per
distinct layout, named by a digest of what is in them; they are a few empty
directories and three small files, shared by every container with that layout."""
from __future__ import annotations

import glob
import hashlib
import os
import stat as _stat
import threading

from pyrt import _core
from pyrt.errors import InvalidArgument
from pyrt.launch.mounts import Bind, Tmpfs

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

_lock = threading.Lock()
_layouts = {}  # (HostRoot fields, uid, gid, mount targets) -> (stamp, (skeleton, mounts, env))


class _HostBind(Bind):
    """A read-only, nosuid, nodev bind of a host path (its C form made once: a
    HostRoot's mounts serve every container started with it)."""

    __slots__ = ("_c",)

    def __init__(self, source, target=None):
        super().__init__(source, target or source, readonly=True)
        self._c = None

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, f) == getattr(other, f) for f in Bind.__slots__)

    def __hash__(self):
        return hash((str(self.source), str(self.target)))

    def __repr__(self):
        return f"HostBind(source={self.source!r}, target={self.target!r})"

    def to_c(self):
        if self._c is None:
            kind, flags, src, dst, data = super().to_c()
            self._c = (kind, flags | _core.MNT_NOSUID | _core.MNT_NODEV, src, dst, data)
        return self._c


class HostRoot:
    """The host's programs as a container's root (see the module's docstring).

    dirs        host directories bound read-only at the same path (DIRS; those
                that do not exist are left out, links are kept as links)
    etc         /etc entries (names relative to /etc, glob patterns allowed)
                bound read-only when present (ETC); an entry that not every host
                user may read is an error
    python      True: the calling interpreter (sys.executable); or the path of an
                interpreter: its prefix (and its venv) bound read-only when outside
                `dirs`, so that it runs inside as it does here
    tmpfs_size  the size of each private tmpfs (/tmp, /home, /root), e.g. "64m"
    """

    __slots__ = ("dirs", "etc", "python", "tmpfs_size", "_memo")
    _FIELDS = ("dirs", "etc", "python", "tmpfs_size")

    DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
    ETC = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl/certs", "ssl/openssl.cnf",
           "pki/tls/certs", "pki/tls/openssl.cnf", "pki/ca-trust/extracted", "crypto-policies/back-ends",
           "ca-certificates.conf", "localtime", "timezone", "nsswitch.conf", "protocols", "services",
           "mime.types", "os-release", "debian_version", "lsb-release", "locale.alias", "locale.conf",
           "python3*", "terminfo", "inputrc", "gai.conf", "host.conf")
    TMPFS = ("/tmp", "/home", "/root")
    _host_root = True  # what pyrt.launch.spec.build_spec looks for (without importing this module)
    _FORBIDDEN = ("shadow", "gshadow", "shadow-", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl/private",
                  "security/opasswd", "machine-id", "ld.so.preload")

    def __init__(self, dirs=DIRS, etc=ETC, *, python=None, tmpfs_size=None):
        self.dirs = tuple(os.path.normpath(os.fspath(d)) for d in dirs)
        self.etc = tuple(etc)
        self.python = python
        self.tmpfs_size = tmpfs_size
        for d in self.dirs:
            if not d.startswith("/") or d == "/":
                raise InvalidArgument(f"HostRoot dirs must be absolute paths below /: {d!r}")
            if d.split("/")[1] in ("proc", "sys", "dev", "etc", "tmp", "home", "root"):
                raise InvalidArgument(f"HostRoot dirs: {d} is not taken from the host (see HostRoot.etc, "
                                      "or bind it with mounts=)")
        for e in (() if etc is HostRoot.ETC else self.etc):  # the default is known to be fine
            e = str(e)
            if e.startswith("/") or ".." in e.split("/") or not e:
                raise InvalidArgument(f"HostRoot etc entries are names relative to /etc: {e!r}")
            if any(e == f or e.startswith(f + "/") for f in self._FORBIDDEN):
                raise InvalidArgument(f"HostRoot etc: /etc/{e} is never taken from the host")
        self._memo = None  # the directories whose times say the layout is still right

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    def __hash__(self):
        return hash(tuple(str(getattr(self, f)) for f in self._FIELDS))

    def __repr__(self):
        return "HostRoot(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS) + ")"

    def prepare(self, mounts=(), user=None):
        """(skeleton dir, [the host's mounts], {env defaults}) for a container of
        user `user` (uid, gid, groups) with the caller's `mounts` on top. Worked
        out once per layout and kept while the host's / and /etc (and the /etc
        directories the entries name) are unchanged, so that a new HostRoot per
        run costs no more than one kept."""
        uid, gid = (user[0], user[1]) if user else (0, 0)
        targets = tuple(sorted((os.path.normpath(os.fsdecode(_target(m))), _is_dir_mount(m)) for m in mounts))
        key = (self.dirs, self.etc, str(self.python), self.tmpfs_size, uid, gid, targets)
        stamp = self._stamp()
        got = _layouts.get(key)
        if got is not None and got[0] == stamp and os.path.isdir(got[1][0]):
            return got[1]
        result = self._layout(uid, gid, targets)
        with _lock:
            if len(_layouts) > 256:
                _layouts.clear()
            _layouts[key] = (stamp, result)
        return result

    def _stamp(self) -> tuple:
        dirs = self._memo
        if dirs is None:
            dirs = {"/", "/etc"} | {os.path.join("/etc", str(e).split("/")[0]) for e in self.etc if "/" in str(e)}
            self._memo = dirs = tuple(sorted(dirs))
        out = []
        for d in dirs:
            try:
                out.append(os.stat(d).st_mtime_ns)
            except OSError:
                out.append(None)
        return tuple(out)

    # -- the layout ----------------------------------------------------------
    def _layout(self, uid, gid, targets):
        entries = {}   # skeleton path (relative) -> ("dir", mode) | ("file",) | ("link", target) | ("data", text)
        mounts = []
        bound = []     # host dirs bound at the same path

        def parents(rel):
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                entries.setdefault("/".join(parts[:i]), ("dir", 0o755))

        for name, mode in (("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("tmp", 0o1777), ("home", 0o755),
                           ("root", 0o700), ("etc", 0o755), ("var", 0o755), ("run", 0o755), ("mnt", 0o755)):
            entries[name] = ("dir", mode)
        entries["var/tmp"] = ("link", "../tmp")

        for d in self.dirs + self._python_dirs():
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                continue
            rel = d.lstrip("/")
            if any(d == b or d.startswith(b + "/") for b in bound):
                continue
            if _stat.S_ISLNK(st.st_mode) and "/" not in rel:
                parents(rel)
                entries[rel] = ("link", os.readlink(d))
            elif _stat.S_ISDIR(st.st_mode) or _stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(d)
                if not os.path.isdir(real):
                    continue
                parents(rel)
                entries[rel] = ("dir", 0o755)
                mounts.append(_HostBind(real, d))
                bound.append(d)

        for pattern in self.etc:
            found = sorted(glob.glob(os.path.join("/etc", pattern)))
            for host in found:
                rel = host.lstrip("/")
                if any(rel == "etc/" + f or rel.startswith("etc/" + f + "/") for f in self._FORBIDDEN):
                    continue
                st = os.lstat(host)
                if _stat.S_ISLNK(st.st_mode):
                    real = os.path.realpath(host)
                    if any(real == b or real.startswith(b + "/") for b in bound):
                        parents(rel)
                        entries[rel] = ("link", os.readlink(host))
                        continue
                    try:
                        st = os.stat(real)
                    except OSError:
                        continue  # a dangling link
                    host = real
                if not _public(st):
                    if self.etc is not HostRoot.ETC:
                        raise InvalidArgument(f"HostRoot etc: {host} is not readable by every host user: "
                                              "not bound (bind it with mounts= if that is meant)")
                    continue
                if not (_stat.S_ISDIR(st.st_mode) or _stat.S_ISREG(st.st_mode)):
                    continue
                parents(rel)
                entries[rel] = ("dir", 0o755) if _stat.S_ISDIR(st.st_mode) else ("file",)
                mounts.append(_HostBind(host, "/" + rel))

        passwd, group = _PASSWD, _GROUP
        if uid not in (0, 65534):
            passwd += f"user:x:{uid}:{gid}:user:/home:/bin/sh\n"
        if gid not in (0, 65534):
            group += f"user:x:{gid}:\n"
        for name, text in (("passwd", passwd), ("group", group), ("hosts", _HOSTS)):
            if "etc/" + name not in entries:
                entries["etc/" + name] = ("data", text)

        taken = {t for t, _ in targets}
        size = {} if self.tmpfs_size is None else {"size": self.tmpfs_size}
        for t in self.TMPFS:
            if t in taken:
                continue
            if t == "/tmp":
                mounts.append(Tmpfs(t, mode=0o1777, **size))
            elif t == "/root":
                mounts.append(Tmpfs(t, mode=0o700, **size))
            else:
                opts = ("nosuid", "nodev") + ((f"uid={uid}", f"gid={gid}") if uid else ())
                mounts.append(Tmpfs(t, mode=0o755, options=opts, **size))
        tmpfs = [t for t in self.TMPFS if t not in taken]

        # the caller's mount points: in the skeleton, unless under a tmpfs (made
        # there at start) or under a host dir (where they must exist)
        for t, is_dir in targets:
            if t == "/" or any(t == x or t.startswith(x.rstrip("/") + "/") for x in tmpfs + ["/dev", "/proc", "/sys"]):
                continue
            host_dir = next((b for b in bound if t == b or t.startswith(b + "/")), None)
            if host_dir is not None:
                if not os.path.exists(t):
                    raise InvalidArgument(f"mount destination {t}: inside the host's read-only {host_dir}, "
                                          "where it does not exist (choose another path, e.g. under /mnt)")
                continue
            rel = t.lstrip("/")
            cur = entries.get(rel)
            if cur is not None and cur[0] == "link":
                raise InvalidArgument(f"mount destination {t}: a link in the host root")
            parents(rel)
            if rel not in entries or entries[rel][0] == "data":
                entries[rel] = ("dir", 0o755) if is_dir else ("file",)

        skeleton = _skeleton(entries)
        env = {"HOME": "/root" if uid == 0 else "/home"}
        return skeleton, mounts, env

    def _python_dirs(self) -> tuple:
        if not self.python:
            return ()
        import sys
        if self.python is True or os.path.realpath(os.fspath(self.python)) == os.path.realpath(sys.executable):
            prefixes = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix]
            exe = sys.executable
        else:
            from pyrt.hostpython import ask
            exe = os.fspath(self.python)
            if not os.path.exists(exe):
                raise InvalidArgument(f"HostRoot python: {exe}: no such file on this host")
            info = ask(exe)
            prefixes = [info["base_prefix"], info["base_exec_prefix"], info["prefix"], info["exec_prefix"]]
        out = []
        for p in prefixes + [os.path.dirname(os.path.dirname(os.path.realpath(exe)))]:
            p = os.path.normpath(p)
            if p == "/" or p in out or any(p == d or p.startswith(d + "/") for d in self.dirs):
                continue
            if p.split("/")[1] in ("proc", "sys", "dev"):
                raise InvalidArgument(f"HostRoot python: its prefix {p} is under /{p.split('/')[1]}, "
                                      "which the container mounts anew")
            out.append(p)
        return tuple(out)


def _target(m):
    t = getattr(m, "target", None)
    if t is None:
        raise InvalidArgument(f"unknown mount {m!r}")
    return os.fsencode(os.fspath(t))


def _is_dir_mount(m) -> bool:
    if isinstance(m, Bind):
        return os.path.isdir(os.fspath(m.source))
    return True


def _public(st) -> bool:
    if _stat.S_ISDIR(st.st_mode):
        return bool(st.st_mode & _stat.S_IROTH) and bool(st.st_mode & _stat.S_IXOTH)
    return bool(st.st_mode & _stat.S_IROTH)


def _base() -> str:
    for base in ("/run/pyrt", os.path.join("/tmp", f"pyrt-{os.getuid()}")):
        path = os.path.join(base, "hostroot")
        try:
            os.makedirs(base, mode=0o755, exist_ok=True)
            os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.lstat(path)
        except OSError:
            continue
        if _stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            return path
    raise OSError("cannot create pyrt's host root skeletons under /run/pyrt or /tmp")


def _skeleton(entries) -> str:
    """The skeleton directory holding `entries`, made once (atomically: built aside,
    then renamed) and named by their digest."""
    items = sorted(entries.items())
    digest = hashlib.sha256(repr(items).encode()).hexdigest()[:24]
    base = _base()
    path = os.path.join(base, digest)
    if os.path.isdir(path):
        return path
    import tempfile
    with _lock:
        if os.path.isdir(path):
            return path
        tmp = tempfile.mkdtemp(prefix=".new-", dir=base)
        try:
            os.chmod(tmp, 0o755)
            for rel, what in items:  # sorted: parents before children
                p = os.path.join(tmp, rel)
                if what[0] == "dir":
                    os.mkdir(p)
                    os.chmod(p, what[1])
                elif what[0] == "link":
                    os.symlink(what[1], p)
                else:
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                    with os.fdopen(fd, "w") as f:
                        if what[0] == "data":
                            f.write(what[1])
            try:
                os.rename(tmp, path)
                tmp = None
            except OSError:
                if not os.path.isdir(path):  # not another process's skeleton
                    raise
        finally:
            if tmp is not None:
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
    return path
