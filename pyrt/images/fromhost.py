"""Images made of host files: a rootfs of host programs with the shared libraries
they need, minimal /etc/passwd and /etc/group, and busybox's applet links
(`pyrt image from-host`)."""
from __future__ import annotations

import os

from pyrt.errors import InvalidArgument

_HOST_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_HOST_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_LIB_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
             "/usr/local/lib"]


def _copy_host_path(root, path, done, depth=0, only_dir=False):
    """Copies host `path` to the same place under `root`, recreating every symlink met
    on the way (a merged /usr's /lib -> usr/lib included). Returns the real path.
    Nothing is ever written through a symlink made in `root`: each path is resolved
    on the host first. `only_dir`: make the directory, without its contents."""
    import shutil
    import stat as _stat
    if depth > 40:
        raise InvalidArgument(f"{path}: too many levels of symbolic links")
    path = os.path.normpath(path)
    key = ("dir", path) if only_dir else path
    if key in done:
        return done[key]
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, part in enumerate(parts):
        nxt = os.path.join(cur, part)
        st = os.lstat(nxt)
        dest = os.path.join(root, nxt.lstrip("/"))
        if _stat.S_ISLNK(st.st_mode):
            target = os.readlink(nxt)
            if not os.path.lexists(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.symlink(target, dest)
            resolved = os.path.normpath(os.path.join(cur, target))
            rest = "/".join(parts[i + 1:])
            real = _copy_host_path(root, os.path.join(resolved, rest) if rest else resolved, done,
                                   depth + 1, only_dir)
            done[key] = real
            return real
        if not _stat.S_ISLNK(st.st_mode) and os.path.islink(dest):
            # the image has a link where the host has none (a busybox applet): never write through it
            if _stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"{nxt}: a link of the same name was already put in the image")
        if i == len(parts) - 1 and only_dir:
            if not _stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"{nxt}: not a directory")
            if not os.path.isdir(dest):
                os.makedirs(dest, exist_ok=True)
                os.chmod(dest, _stat.S_IMODE(st.st_mode))
        elif i == len(parts) - 1:
            if _stat.S_ISDIR(st.st_mode):
                _copy_tree_into(nxt, dest)
            elif _stat.S_ISREG(st.st_mode):
                if not os.path.lexists(dest):
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out, open(nxt, "rb") as inp:
                        shutil.copyfileobj(inp, out, 1 << 20)
                    os.chmod(dest, _stat.S_IMODE(st.st_mode))
                    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                raise InvalidArgument(f"{nxt}: not a regular file, directory or symlink")
        else:
            if not os.path.isdir(dest) and not os.path.islink(dest):
                os.makedirs(dest, exist_ok=True)
                os.chmod(dest, _stat.S_IMODE(st.st_mode))
        cur = nxt
    done[key] = path
    return path


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


def build_host_rootfs(root, paths) -> str:
    """Fills `root` with the host paths, their libraries, /etc/passwd, /etc/group and a
    few empty dirs. Returns the first program's path (the image's Cmd). Busybox's
    applet links come last, only where no file was copied."""
    import shutil
    import subprocess
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    done = {}
    first = None
    applets = []
    for p in paths:
        if not os.path.isabs(p):
            found = shutil.which(p)
            if not found:
                raise InvalidArgument(f"{p}: no such program on this host (give a path)")
            p = found
        if not os.path.lexists(p):
            raise InvalidArgument(f"{p}: no such file or directory on this host")
        real = _copy_host_path(root, p, done)
        if first is None:
            first = p
        if os.path.isfile(real):
            for lib in _host_libraries(real):
                _copy_host_path(root, lib, done)
            if os.path.basename(real) == "busybox":
                r = subprocess.run([real, "--list-full"], capture_output=True, text=True)
                if r.returncode == 0:
                    applets += [(p, a) for a in r.stdout.split()]
    for p, applet in applets:
        name = os.path.basename(applet)
        adir = "/" + os.path.dirname(applet.strip("/"))
        if not name or name == "busybox" or adir == "/" or not os.path.isdir(adir):
            continue
        real_dir = _copy_host_path(root, adir, done, only_dir=True)
        link = os.path.join(root, real_dir.lstrip("/"), name)
        if not os.path.lexists(link):
            os.symlink(p, link)
    for d, mode in (("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("proc", 0o755), ("sys", 0o755),
                    ("dev", 0o755)):
        full = os.path.join(root, d)
        if not os.path.lexists(full):
            os.mkdir(full)
            os.chmod(full, mode)
    for name, text in (("passwd", _HOST_PASSWD), ("group", _HOST_GROUP)):
        f = os.path.join(root, "etc", name)
        if not os.path.lexists(f):
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w") as out:
                out.write(text)
    return first


def _copy_tree_into(src, dst):
    """Copies a host directory tree to `dst` (inside the image root) without ever
    following a symlink on the destination side: an existing non-directory entry is
    replaced, files are created with O_EXCL|O_NOFOLLOW."""
    import shutil
    import stat as _stat
    st = os.lstat(dst) if os.path.lexists(dst) else None
    if st is not None and not _stat.S_ISDIR(st.st_mode):
        os.unlink(dst)
        st = None
    if st is None:
        os.mkdir(dst)
    sst = os.lstat(src)
    with os.scandir(src) as it:
        for e in it:
            d = os.path.join(dst, e.name)
            est = e.stat(follow_symlinks=False)
            if _stat.S_ISDIR(est.st_mode):
                _copy_tree_into(e.path, d)
                continue
            if os.path.lexists(d):
                if os.path.isdir(d) and not os.path.islink(d):
                    continue
                os.unlink(d)
            if _stat.S_ISLNK(est.st_mode):
                os.symlink(os.readlink(e.path), d)
            elif _stat.S_ISREG(est.st_mode):
                fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out, open(e.path, "rb") as inp:
                    shutil.copyfileobj(inp, out, 1 << 20)
                os.chmod(d, _stat.S_IMODE(est.st_mode))
                os.utime(d, ns=(est.st_atime_ns, est.st_mtime_ns), follow_symlinks=False)
            # devices, fifos and sockets of the host are not copied
    os.chmod(dst, _stat.S_IMODE(sst.st_mode))
