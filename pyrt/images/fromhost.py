"""Images made of host files (`pyrt image from-host`): host programs with the shared
libraries they need, busybox's applet links, minimal /etc/passwd and /etc/group; for
a Python interpreter (a program that is one, follows a link to one, or names one in
its #! line) its standard library and compiled modules with their libraries, asked
of the interpreter itself; a virtual environment's packages at the same path; the
dynamic loader's config and cache; CA certificates and time zone data when wanted.

Only what is asked goes in: what pyrt adds by itself (a standard library, a venv's
site-packages, certificates, ...) never includes a file or directory that not every
host user may read, nor a venv's other files. The image is a function of its input:
every directory, link and generated file gets one time, the newest of the copied
files' (or $SOURCE_DATE_EPOCH, which also clamps them), so the same files give the
same digest."""
from __future__ import annotations

import os
import stat as _stat

from pyrt.errors import InvalidArgument
from pyrt import hostpython

_HOST_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_HOST_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_LIB_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
             "/usr/local/lib"]

# Where OpenSSL and the CA bundle live on Debian/Ubuntu (/etc/ssl, /usr/lib/ssl) and
# Fedora/RHEL (/etc/pki); a Python adds where its own OpenSSL looks. Never a private/ dir.
CERT_PATHS = ("/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/usr/lib/ssl/certs", "/usr/lib/ssl/cert.pem",
              "/usr/lib/ssl/openssl.cnf", "/etc/pki/tls/certs", "/etc/pki/tls/cert.pem",
              "/etc/pki/tls/openssl.cnf", "/etc/pki/ca-trust/extracted", "/etc/crypto-policies/back-ends")
TZ_PATHS = ("/usr/share/zoneinfo",)
LOADER_CONFIG = ("/etc/ld.so.conf", "/etc/ld.so.conf.d")


class HostImage:
    """What build_host_rootfs made: the image's command, environment and time."""

    def __init__(self, cmd, env, created, pythons):
        self.cmd, self.env, self.created, self.pythons = cmd, env, created, pythons


def _public(st) -> bool:
    """Readable by every host user (a directory: readable and searchable)."""
    if _stat.S_ISDIR(st.st_mode):
        return bool(st.st_mode & _stat.S_IROTH) and bool(st.st_mode & _stat.S_IXOTH)
    return bool(st.st_mode & _stat.S_IROTH)


def _copy_file(src, dest, st):
    import shutil
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
    os.chmod(dest, _stat.S_IMODE(st.st_mode))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


class _Copier:
    """Copies host paths to the same place under `root`. `public`: only what every
    host user may read (what pyrt adds by itself). Remembers what it copied: trees
    (so a tree inside one is not copied twice), the links met inside trees, the
    shared objects (for their libraries)."""

    def __init__(self, root):
        self.root = root
        self.done = {}
        self.trees = []
        self.links = []     # host paths of symlinks found inside copied trees
        self.objects = []   # host paths of *.so files found inside copied trees

    def dest(self, host_path):
        return os.path.join(self.root, host_path.lstrip("/"))

    def copy(self, path, only_dir=False, public=False, skip=None, depth=0):
        """Copies host `path`, recreating every symlink met on the way (a merged
        /usr's /lib -> usr/lib included). Returns the real path, or None when
        `public` left it out. Nothing is ever written through a symlink made in
        `root`: each path is resolved on the host first. `only_dir`: make the
        directory, without its contents."""
        if depth > 40:
            raise InvalidArgument(f"{path}: too many levels of symbolic links")
        path = os.path.normpath(path)
        key = ("dir", path) if only_dir else path
        if key in self.done:
            return self.done[key]
        parts = [p for p in path.split("/") if p]
        cur = "/"
        for i, part in enumerate(parts):
            nxt = os.path.join(cur, part)
            st = os.lstat(nxt)
            dest = self.dest(nxt)
            last = i == len(parts) - 1
            if _stat.S_ISLNK(st.st_mode):
                target = os.readlink(nxt)
                if not os.path.lexists(dest):
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    os.symlink(target, dest)
                resolved = os.path.normpath(os.path.join(cur, target))
                rest = "/".join(parts[i + 1:])
                real = self.copy(os.path.join(resolved, rest) if rest else resolved, only_dir, public, skip,
                                 depth + 1)
                self.done[key] = real
                return real
            if os.path.islink(dest) and _stat.S_ISDIR(st.st_mode):
                # the image has a link where the host has none (a busybox applet): never write through it
                raise InvalidArgument(f"{nxt}: a link of the same name was already put in the image")
            if last and public and not _public(st):
                self.done[key] = None
                return None
            if last and only_dir:
                if not _stat.S_ISDIR(st.st_mode):
                    raise InvalidArgument(f"{nxt}: not a directory")
                if not os.path.isdir(dest):
                    os.makedirs(dest, exist_ok=True)
                    os.chmod(dest, _stat.S_IMODE(st.st_mode))
            elif last:
                if _stat.S_ISDIR(st.st_mode):
                    if not self._in_tree(nxt):
                        self._tree(nxt, dest, public, skip)
                        self.trees.append(nxt)
                elif _stat.S_ISREG(st.st_mode):
                    if not os.path.lexists(dest):
                        _copy_file(nxt, dest, st)
                else:
                    raise InvalidArgument(f"{nxt}: not a regular file, directory or symlink")
            elif not os.path.isdir(dest) and not os.path.islink(dest):
                os.makedirs(dest, exist_ok=True)
                os.chmod(dest, _stat.S_IMODE(st.st_mode))
            cur = nxt
        self.done[key] = path
        return path

    def _in_tree(self, path):
        return any(path == t or path.startswith(t.rstrip("/") + "/") for t in self.trees)

    def _tree(self, src, dst, public, skip):
        """Copies a host directory tree to `dst` (inside the image root) without ever
        following a symlink on the destination side: an existing non-directory entry
        is replaced, files are created with O_EXCL|O_NOFOLLOW. Devices, fifos and
        sockets of the host are not copied."""
        st = os.lstat(dst) if os.path.lexists(dst) else None
        if st is not None and not _stat.S_ISDIR(st.st_mode):
            os.unlink(dst)
            st = None
        if st is None:
            os.mkdir(dst)
        sst = os.lstat(src)
        with os.scandir(src) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            d = os.path.join(dst, e.name)
            est = e.stat(follow_symlinks=False)
            is_dir = _stat.S_ISDIR(est.st_mode)
            if (public and not _stat.S_ISLNK(est.st_mode) and not _public(est)) or \
                    (skip is not None and skip(e.path, is_dir)):
                continue
            if is_dir:
                self._tree(e.path, d, public, skip)
                continue
            if os.path.lexists(d):
                if os.path.isdir(d) and not os.path.islink(d):
                    continue
                os.unlink(d)
            if _stat.S_ISLNK(est.st_mode):
                os.symlink(os.readlink(e.path), d)
                self.links.append(e.path)
            elif _stat.S_ISREG(est.st_mode):
                _copy_file(e.path, d, est)
                if e.name.endswith(".so") or ".so." in e.name:
                    self.objects.append(e.path)
        os.chmod(dst, _stat.S_IMODE(sst.st_mode))

    def follow_links(self, start=0):
        """Copies the targets of the links met in trees since `start` that are files
        (a standard library's sitecustomize.py -> /etc/..., a CA certificate link
        into /usr/share/ca-certificates), as `public` additions. A link to a
        directory is kept as it is, without what it points to."""
        i = start
        while i < len(self.links):
            link = self.links[i]
            i += 1
            try:
                real = os.path.realpath(link)
                st = os.stat(real)
            except OSError:
                continue
            if _stat.S_ISREG(st.st_mode) and _public(st):
                self.copy(link, public=True)
        return i


def _elf_info(path):
    """(interpreter, [DT_NEEDED], [runpath dirs]) of an ELF file, or None if it is not
    a dynamically linked ELF."""
    import struct
    try:
        with open(path, "rb") as f:
            data = f.read(64)
            if data[:4] != b"\x7fELF":
                return None
            is64, little = data[4] == 2, data[5] == 1
            e = "<" if little else ">"
            if is64:
                phoff, = struct.unpack_from(e + "Q", data, 32)
                phentsize, phnum = struct.unpack_from(e + "HH", data, 54)
            else:
                phoff, = struct.unpack_from(e + "I", data, 28)
                phentsize, phnum = struct.unpack_from(e + "HH", data, 42)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
            interp, dynamic, loads = None, None, []
            for i in range(phnum):
                off = i * phentsize
                if is64:
                    p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(e + "IIQQQQQQ", ph, off)
                else:
                    p_type, p_offset, p_vaddr, _, p_filesz, _, _, _ = struct.unpack_from(e + "IIIIIIII", ph, off)
                if p_type == 3:
                    f.seek(p_offset)
                    interp = f.read(p_filesz).rstrip(b"\x00").decode()
                elif p_type == 2:
                    dynamic = (p_offset, p_filesz)
                elif p_type == 1:
                    loads.append((p_vaddr, p_offset, p_filesz))
            if dynamic is None:
                return None
            f.seek(dynamic[0])
            dyn = f.read(dynamic[1])
            entsize = 16 if is64 else 8
            fmt = e + ("qQ" if is64 else "iI")
            needed, runpath, strtab = [], [], None
            for off in range(0, len(dyn) - entsize + 1, entsize):
                tag, val = struct.unpack_from(fmt, dyn, off)
                if tag == 0:
                    break
                if tag == 1:
                    needed.append(val)
                elif tag in (15, 29):
                    runpath.append(val)
                elif tag == 5:
                    strtab = val
            if strtab is None:
                return None
            for vaddr, offset, filesz in loads:
                if vaddr <= strtab < vaddr + filesz:
                    strtab_off = strtab - vaddr + offset
                    break
            else:
                return None

            def string(o):
                f.seek(strtab_off + o)
                buf = f.read(4096)
                return buf.split(b"\x00", 1)[0].decode()
            rp = []
            for o in runpath:
                rp.extend(d.replace("$ORIGIN", os.path.dirname(path)) for d in string(o).split(":") if d)
            return interp, [string(o) for o in needed], rp
    except (OSError, struct.error, UnicodeDecodeError):
        return None


def _host_libraries(path) -> list:
    """The shared libraries (and loader) a host program needs: from ldd, else from the
    ELF DT_NEEDED entries looked up in the usual directories."""
    import shutil
    import subprocess
    info = _elf_info(path)
    if info is None:
        return []
    libs = []
    if shutil.which("ldd"):
        r = subprocess.run(["ldd", path], capture_output=True, text=True)
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                line = line.strip()
                if "=>" in line:
                    target = line.split("=>", 1)[1].strip().split(" (", 1)[0].strip()
                    if target.startswith("/"):
                        libs.append(target)
                elif line.startswith("/"):
                    libs.append(line.split(" (", 1)[0].strip())
            return libs
    seen, queue = set(), [path]
    if info[0]:
        libs.append(info[0])
    while queue:
        cur = queue.pop()
        ci = _elf_info(cur)
        if ci is None:
            continue
        for name in ci[1]:
            if name in seen:
                continue
            seen.add(name)
            for d in ci[2] + _LIB_DIRS:
                cand = os.path.join(d, name)
                if os.path.exists(cand):
                    libs.append(cand)
                    queue.append(os.path.realpath(cand))
                    break
    return libs


def _libraries_of_many(paths) -> list:
    """The shared libraries the ELF files `paths` need, with one ldd per hundred
    files (ldd prints a "FILE:" line before each one's list when given several)."""
    import shutil
    import subprocess
    elfs = [p for p in paths if _elf_info(p) is not None]
    if len(elfs) < 2 or not shutil.which("ldd"):
        return [lib for p in elfs for lib in _host_libraries(p)]
    out = []
    for i in range(0, len(elfs), 100):
        chunk = elfs[i:i + 100]
        r = subprocess.run(["ldd", "--", *chunk], capture_output=True, text=True)
        if r.returncode != 0:  # one of them is not dynamic after all: one at a time
            out += [lib for p in chunk for lib in _host_libraries(p)]
            continue
        for line in r.stdout.splitlines():
            if not line.startswith(("\t", " ")):
                continue  # a FILE: header
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().split(" (", 1)[0].strip()
                if target.startswith("/"):
                    out.append(target)
            elif line.startswith("/"):
                out.append(line.split(" (", 1)[0].strip())
    return out


def _shebang(path):
    """The interpreter a script names in its #! line (through /usr/bin/env, looked
    up in the image's PATH), None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return None
    interp = words[0]
    if not os.path.isabs(interp) or not os.path.exists(interp):
        raise InvalidArgument(f"{path}: its interpreter {interp} is not on this host")
    if os.path.basename(interp) == "env":
        names = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not names:
            return None
        import shutil
        from pyrt.launch.process import DEFAULT_PATH
        found = shutil.which(names[0], path=DEFAULT_PATH)
        if not found:
            raise InvalidArgument(f"{path}: its interpreter {names[0]} (#!{' '.join(words)}) is not on this host")
        return [interp, found]
    return [interp]


def build_host_rootfs(root, paths, *, venv=None, certs=None, tzdata=False) -> HostImage:
    """Fills `root` with the host paths, their libraries, what a Python among them
    needs, `venv`'s packages, /etc/passwd, /etc/group and a few empty dirs.

    The first path is the image's command (with no path, the venv's python): it
    must be a program, not a directory. certs: None (the default) adds the CA
    certificates when the image has a Python, True always, False never. tzdata:
    the time zone database (/usr/share/zoneinfo, or where the Python's zoneinfo
    looks). Busybox's applet links come last, only where no file was copied."""
    import shutil
    import subprocess
    from pyrt.launch.process import DEFAULT_PATH
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    cp = _Copier(root)
    programs = []
    for p in paths:
        if not os.path.isabs(p):
            found = shutil.which(p)
            if not found:
                raise InvalidArgument(f"{p}: no such program on this host (give a path)")
            p = found
        if not os.path.lexists(p):
            raise InvalidArgument(f"{p}: no such file or directory on this host")
        _check_visible(p)
        programs.append(p)
    if programs:
        first = programs[0]
        if os.path.isdir(first):
            raise InvalidArgument(f"{first}: a directory, not a program (the first path is the image's "
                                  "command; directories may follow it)")
        if not os.path.isfile(first) or not os.access(first, os.X_OK):
            raise InvalidArgument(f"{first}: not a program (not an executable file)")
    venv_info = None
    env_path = DEFAULT_PATH
    env = {}
    if venv is not None:
        venv = os.path.abspath(os.fspath(venv))
        _check_visible(venv, "--venv ")
        vpy = hostpython.venv_python(venv)
        venv_info = hostpython.ask(vpy, venv)
        if not programs:
            programs.append(vpy)
        env_path = os.path.join(venv, "bin") + ":" + DEFAULT_PATH
        env["VIRTUAL_ENV"] = venv
    if not programs:
        raise InvalidArgument("from-host needs a program (or --venv DIR)")

    applets = []
    pythons = {}      # real path of each interpreter -> what it said
    queue = list(programs) + ([vpy] if venv is not None and vpy not in programs else [])
    shared = []       # ELF files whose libraries come along
    while queue:
        p = queue.pop(0)
        real = cp.copy(p)
        if real is None or not os.path.isfile(real):
            continue
        interp = _shebang(real)
        if interp:
            queue.extend(interp)
            continue
        info = _elf_info(real)  # None for a static program
        if info is not None:
            shared.append(real)
        if os.path.basename(real) == "busybox":
            r = subprocess.run([real, "--list-full"], capture_output=True, text=True)
            if r.returncode == 0:
                applets += [(p, a) for a in r.stdout.split()]
        if real not in pythons and hostpython.is_python(real, info[1] if info else ()):
            pythons[real] = hostpython.ask(real)
            _add_python(cp, pythons[real])
    if venv_info is not None:
        start = len(cp.links)
        for part in hostpython.venv_parts(venv, venv_info):
            cp.copy(part, public=True)
        cp.follow_links(start)
    if certs or (certs is None and pythons):
        _add_certs(cp, pythons.values())
    if tzdata:
        _add_tzdata(cp, pythons.values())
    libs = set()
    for lib in _libraries_of_many(shared + cp.objects):
        if lib not in libs:
            libs.add(lib)
            cp.copy(lib)
    for p, applet in applets:
        name = os.path.basename(applet)
        adir = "/" + os.path.dirname(applet.strip("/"))
        if not name or name == "busybox" or adir == "/" or not os.path.isdir(adir):
            continue
        real_dir = cp.copy(adir, only_dir=True)
        link = os.path.join(root, real_dir.lstrip("/"), name)
        if not os.path.lexists(link):
            os.symlink(p, link)
    for d, mode in (("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("proc", 0o755), ("sys", 0o755),
                    ("dev", 0o755)):
        full = os.path.join(root, d)
        if not os.path.lexists(full):
            os.mkdir(full)
            os.chmod(full, mode)
    if libs:
        for p in LOADER_CONFIG:
            if os.path.lexists(p):
                cp.copy(p, public=True)
    epoch = _epoch(root)
    generated = _loader_cache(root) if libs else []
    for name, text in (("passwd", _HOST_PASSWD), ("group", _HOST_GROUP)):
        f = os.path.join(root, "etc", name)
        if not os.path.lexists(f):
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            generated.append(f)
    _settle_times(root, epoch, generated)
    for p in programs:  # a program outside the usual dirs runs by its name too
        d = os.path.dirname(os.path.abspath(p))
        if d not in env_path.split(":"):
            env_path += ":" + d
    env = {"PATH": env_path, **env}
    return HostImage([programs[0]], env, epoch, sorted(pythons))


def _check_visible(path, what=""):
    """A path under /dev, /proc or /sys would be hidden by the container's own."""
    for top in ("/dev", "/proc", "/sys"):
        for p in (os.path.abspath(path), os.path.realpath(path)):
            if p == top or p.startswith(top + "/"):
                raise InvalidArgument(f"{what}{path}: under {top}, which every container mounts anew "
                                      "(it would not be seen): move it elsewhere")


def _add_python(cp, info):
    """An interpreter's standard library and compiled modules (their libraries are
    copied with everyone's), and the files its standard library links to."""
    start = len(cp.links)
    stdlib = info.get("stdlib") or ""
    for d in hostpython.runtime_dirs(info):
        cp.copy(d, public=True, skip=hostpython.skip_in_stdlib(stdlib) if stdlib else None)
    cp.follow_links(start)


def _add_certs(cp, pythons):
    start = len(cp.links)
    wanted = list(CERT_PATHS)
    for info in pythons:
        wanted += [p for p in info.get("certs") or () if p not in wanted]
    for p in wanted:
        if os.path.lexists(p) and os.path.basename(os.path.normpath(p)) != "private":
            cp.copy(p, public=True)
    cp.follow_links(start)


def _add_tzdata(cp, pythons):
    wanted = []
    for info in pythons:
        wanted += [p for p in info.get("tzpath") or () if os.path.isdir(p)][:1]
    for p in wanted or TZ_PATHS:
        if os.path.isdir(p):
            cp.copy(p, public=True)


def _loader_cache(root) -> list:
    """A loader cache made for the image's own libraries, from the host's loader
    config copied with them (ldconfig -r, which needs root: without it the loader
    searches its default directories, as it does with no cache). Returns the files
    it wrote."""
    import shutil
    import subprocess
    from pyrt.launch.process import DEFAULT_PATH
    ldconfig = shutil.which("ldconfig", path=DEFAULT_PATH)
    cache = os.path.join(root, "etc", "ld.so.cache")
    if ldconfig is None or os.geteuid() != 0 or os.path.lexists(cache):
        return []
    aux = os.path.join(root, "var", "cache", "ldconfig")
    had_aux = os.path.lexists(aux)
    r = subprocess.run([ldconfig, "-X", "-r", root], capture_output=True)
    if not had_aux and os.path.lexists(aux):  # inode numbers and times: not part of an image
        shutil.rmtree(aux, ignore_errors=True)
        for d in ("var/cache", "var"):
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                break
    if r.returncode != 0 or not os.path.isfile(cache) or os.path.islink(cache):
        try:
            os.unlink(cache)
        except OSError:
            pass
        return []
    return [cache]


def _epoch(root) -> int:
    """The image's time: $SOURCE_DATE_EPOCH when set, else the newest mtime of the
    files copied into `root` (so the same files make the same image)."""
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            return max(0, int(sde))
        except ValueError:
            raise InvalidArgument(f"SOURCE_DATE_EPOCH={sde!r}: not a number of seconds") from None
    newest = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if _stat.S_ISREG(st.st_mode) and st.st_mtime > newest:
                newest = int(st.st_mtime)
    return newest


def _settle_times(root, epoch, generated):
    """Every directory, link and generated file at `epoch`; copied files newer than
    it clamped to it."""
    gen = set(generated)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not _stat.S_ISREG(st.st_mode) or p in gen or st.st_mtime > epoch:
                os.utime(p, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))
