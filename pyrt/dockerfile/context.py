"""What COPY and ADD read and write.

- `IgnoreRules`: .dockerignore with docker's rules (comments, `*`, `?`, `**`, `!`
  exceptions, the last matching pattern wins, a pattern matching a directory
  matches what is below it).
- Trees, read-only: `ContextTree` (the build context minus what .dockerignore
  excludes) and `ImageTree` (the union of an image's layers, as a container sees
  it: whiteouts and opaque directories honoured). `resolve` follows symlinks
  inside the tree (`..` stops at its root, absolute targets start from it), so a
  symlink never leads out of the context or the image.
- `digest_sources`: a hash of names, types, modes and contents (not times) of
  sources, the COPY part of a step's cache key.
- `Writer`: puts files into a fresh layer directory; missing parent directories
  take the metadata the image has for them, and no symlink is ever followed there.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import stat

from pyrt.errors import BuildError
from pyrt.store.layers import lstat_beneath
from pyrt.launch.userdb import _layer_hides
from pyrt import _core

_MAX_LINKS = 40


# -- .dockerignore -----------------------------------------------------------------------------

class IgnoreRules:
    def __init__(self, text: str = ""):
        self.patterns = []  # (regex, is exception)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if exception else line).lstrip("/")
            if pattern and pattern != ".":
                self.patterns.append((re.compile(_pattern_regex(pattern)), exception))
        self.has_exceptions = any(e for _, e in self.patterns)

    @classmethod
    def load(cls, context_dir: str) -> "IgnoreRules":
        try:
            with open(os.path.join(context_dir, ".dockerignore"), encoding="utf-8") as f:
                return cls(f.read())
        except FileNotFoundError:
            return cls()

    def excluded(self, rel: str) -> bool:
        """Is the context path `rel` (relative, '/'-separated) excluded?"""
        parents = rel.split("/")[:-1]
        parent_paths = ["/".join(parents[:i + 1]) for i in range(len(parents))]
        result = False
        for regex, exception in self.patterns:
            if regex.fullmatch(rel) or any(regex.fullmatch(p) for p in parent_paths):
                result = not exception
        return result


def _pattern_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise BuildError(f".dockerignore: bad pattern {pattern!r}: unterminated [")
            body = pattern[i + 1:j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j + 1
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


# -- trees -------------------------------------------------------------------------------------

class Tree:
    """A read-only tree of files: `lstat(rel)` and `listdir(rel)` of paths relative
    to its root ('' is the root), `host_path(rel)` where to read an entry."""

    def lstat(self, rel):
        raise NotImplementedError

    def listdir(self, rel):
        raise NotImplementedError

    def host_path(self, rel):
        raise NotImplementedError

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """`path` with every symlink on the way replaced by its target, inside the
        tree (the last one only when follow_last). Returns a relative path."""
        todo = _parts(path)
        done, links = [], 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            rel = "/".join(done + [name])
            st = self.lstat(rel)
            if st is not None and stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                links += 1
                if links > _MAX_LINKS:
                    raise BuildError(f"{path}: too many levels of symbolic links")
                target = os.readlink(self.host_path(rel))
                if target.startswith("/"):
                    done = []
                todo = _parts(target) + todo
                continue
            done.append(name)
        return "/".join(done)

    def walk(self, rel):
        """(path, stat) of `rel` and everything below it, parents first, sorted."""
        st = self.lstat(rel)
        if st is None:
            return
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            for name in self.listdir(rel):
                yield from self.walk(f"{rel}/{name}" if rel else name)

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a wildcard pattern (`*`, `?` and `[...]` within one path
        component, as docker's COPY does), sorted."""
        found = [""]
        for part in _parts(pattern):
            nxt = []
            for base in found:
                if not any(c in part for c in "*?["):
                    cand = f"{base}/{part}" if base else part
                    if self.lstat(cand) is not None:
                        nxt.append(cand)
                    continue
                st = self.lstat(base)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    continue
                nxt += [f"{base}/{n}" if base else n for n in self.listdir(base) if fnmatch.fnmatchcase(n, part)]
            found = nxt
        return sorted(p for p in found if p)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


class ContextTree(Tree):
    """The build context directory, minus what .dockerignore excludes."""

    def __init__(self, root: str, ignore: IgnoreRules):
        self.root, self.ignore = root, ignore

    def host_path(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def lstat(self, rel):
        try:
            st = os.lstat(self.host_path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st if self._visible(rel, st) else None

    def listdir(self, rel):
        out = []
        with os.scandir(self.host_path(rel)) as it:
            for e in it:
                if self._visible(f"{rel}/{e.name}" if rel else e.name, e.stat(follow_symlinks=False)):
                    out.append(e.name)
        return sorted(out)

    def _visible(self, rel, st) -> bool:
        """Not excluded; an excluded directory is looked into when `!` patterns may
        take some of its files back."""
        if not rel or not self.ignore.excluded(rel):
            return True
        return self.ignore.has_exceptions and stat.S_ISDIR(st.st_mode)


def _is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):  # root's store, an ordinary user's
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


class ImageTree(Tree):
    """An image's files: the union of its layer directories (top-most first)."""

    def __init__(self, layers: list[str]):
        self.layers = layers

    def _entries(self, rel):
        """(host path, stat) of `rel` in each layer that has it, top-most first,
        down to the first layer that hides the ones below it."""
        for layer in self.layers:
            try:
                st = lstat_beneath(layer, rel)
            except (FileNotFoundError, NotADirectoryError):
                if rel and _layer_hides(layer, rel):
                    return
                continue
            yield (os.path.join(layer, rel) if rel else layer), st

    def _find(self, rel):
        """(host path, stat) of the entry the union shows at `rel`, or None."""
        found = next(self._entries(rel), None)
        return None if found is None or _is_whiteout(found[1]) else found

    def host_path(self, rel):
        found = self._find(rel)
        return found[0] if found else os.path.join(self.layers[0] if self.layers else "/nonexistent", rel)

    def lstat(self, rel):
        found = self._find(rel)
        return found[1] if found else None

    def listdir(self, rel):
        seen = {}  # name -> visible (a whiteout hides the layers below)
        for path, st in self._entries(rel):
            if not stat.S_ISDIR(st.st_mode):
                break
            with os.scandir(path) as it:
                for e in it:
                    if e.name not in seen:
                        seen[e.name] = not _is_whiteout(e.stat(follow_symlinks=False))
            if _opaque(path):
                break
        return sorted(n for n, visible in seen.items() if visible)


# -- hashing -----------------------------------------------------------------------------------

def digest_sources(tree: Tree, paths: list[str]) -> str:
    """sha256 over the names, types, modes and contents of `paths` and what is
    below them (times and owners left out: they do not change what COPY makes)."""
    h = hashlib.sha256()
    for top in paths:
        for rel, st in tree.walk(top):
            h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
            if stat.S_ISREG(st.st_mode):
                with open(tree.host_path(rel), "rb") as f:
                    h.update(hashlib.file_digest(f, "sha256").digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.fsencode(os.readlink(tree.host_path(rel))))
            h.update(b"\0")
    return h.hexdigest()


# -- writing a layer ---------------------------------------------------------------------------

class Writer:
    """Writes files into `root` (a fresh layer directory) over the image `image`
    (an ImageTree): a parent directory the layer needs is made with the mode,
    owner and times the image gives it (0755 root when the image has none)."""

    def __init__(self, root: str, image: ImageTree):
        self.root, self.image = root, image

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def mkdirs(self, rel: str) -> None:
        """Makes the directory `rel` and its parents in the layer."""
        done = []
        for name in _parts(rel):
            done.append(name)
            cur = "/".join(done)
            st = _lstat(self.path(cur))
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    raise BuildError(f"/{cur} is not a directory")
                continue
            os.mkdir(self.path(cur), 0o755)
            ist = self.image.lstat(cur)
            if ist is not None and stat.S_ISDIR(ist.st_mode):
                _set_meta(self.path(cur), ist)

    def copy(self, tree: Tree, src: str, dest: str, owner=None, mode=None) -> None:
        """Copies `src` of `tree` (and what is below it) to `dest` in the layer; a
        directory's contents go into `dest`, made as `mkdirs` does. owner: (uid,
        gid) for every entry, else the source's; mode: for every entry, else the
        source's. Times are kept."""
        entries = list(tree.walk(src))
        if entries and stat.S_ISDIR(entries[0][1].st_mode):
            new = self.image.lstat(dest) is None and _lstat(self.path(dest)) is None
            self.mkdirs(dest)
            if new and owner is not None:
                os.chown(self.path(dest), *owner)
            entries = entries[1:]
        targets = [(rel, st, f"{dest}/{rel[len(src):].lstrip('/')}".strip("/")) for rel, st in entries]
        for rel, st, target in targets:
            self._copy_entry(tree.host_path(rel), st, target, owner, mode)
        for rel, st, target in reversed(targets):  # directory times once their contents are in
            if stat.S_ISDIR(st.st_mode):
                os.utime(self.path(target), ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _copy_entry(self, source, st, target, owner, mode):
        self.mkdirs(os.path.dirname(target))
        path = self.path(target)
        old = _lstat(path)
        if stat.S_ISDIR(st.st_mode):
            if old is not None and not stat.S_ISDIR(old.st_mode):
                os.unlink(path)
                old = None
            if old is None:
                os.mkdir(path, 0o700)
        else:
            if old is not None:
                if stat.S_ISDIR(old.st_mode):
                    raise BuildError(f"cannot replace directory /{target} with a file")
                os.unlink(path)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(source), path)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(source, path)
            else:
                return  # devices, fifos and sockets of the context are not copied
        uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
        os.chown(path, uid, gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, mode if mode is not None else stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def merge(self, src_dir: str, dest: str, owner=None) -> None:
        """Moves a directory tree made on the host (an extracted archive) into `dest`."""
        if owner is not None:
            for dirpath, dirnames, filenames in os.walk(src_dir):
                for name in dirnames + filenames:
                    os.chown(os.path.join(dirpath, name), *owner, follow_symlinks=False)
        self.mkdirs(dest)
        _core.copy_tree(src_dir, self.path(dest))


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _set_meta(path, st):
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(source, path):
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with open(src, "rb", closefd=False) as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    finally:
        os.close(src)
