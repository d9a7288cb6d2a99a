"""The layer writer (commit), diff, and tree copy (the `copy` storage driver).

Layers are built on tmpfs; container changes are made through a real overlay mount
(in a private mount namespace of a forked child, so the mount dies with it), and
the upper dir the kernel leaves is what gets diffed and committed. Tars are read
back with Python's tarfile (and unpacked with pyrt's unpacker for the round trip).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import stat
import tarfile
import tempfile
import traceback

import pytest

import helpers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay, mknod, chown)")

T0 = 1_600_000_000          # fixed mtimes for the image layers
LONG = "long-" + "x" * 150  # needs a pax path record
UID = 1000


# ---------------------------------------------------------------- helpers

def _write(path, data=b"", mode=0o644, mtime=T0, uid=0, gid=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def _fix_dir_times(root, mtime=T0):
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        os.utime(dirpath, (mtime, mtime))


def make_image(base):
    """Two image layers in overlay format (top-most last): l1, l2."""
    l1, l2 = os.path.join(base, "l1"), os.path.join(base, "l2")
    _write(f"{l1}/etc/motd", b"welcome\n")
    _write(f"{l1}/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
    _write(f"{l1}/etc/keep", b"keep me\n")
    _write(f"{l1}/usr/bin/tool", b"\x7fELF tool" * 100, mode=0o755)
    _write(f"{l1}/data/dir1/a", b"a" * 10)
    _write(f"{l1}/data/dir1/b", b"b" * 10)
    _write(f"{l1}/data/dir1/sub/c", b"c" * 10)
    _write(f"{l1}/data/gone/x", b"x")
    _write(f"{l1}/old/name.txt", b"rename me\n")
    _write(f"{l1}/chmodme", b"mode\n")
    _write(f"{l1}/home/user/file", b"user data\n", uid=UID, gid=UID)
    os.chown(f"{l1}/home/user", UID, UID)
    os.symlink("motd", f"{l1}/etc/motd.link")
    _fix_dir_times(l1)
    # l2: changes motd, deletes data/gone/x via a whiteout, adds etc/l2only
    _write(f"{l2}/etc/motd", b"welcome to layer 2\n", mtime=T0 + 10)
    _write(f"{l2}/etc/l2only", b"from l2\n", mtime=T0 + 10)
    os.makedirs(f"{l2}/data/gone")
    os.mknod(f"{l2}/data/gone/x", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    _fix_dir_times(l2, T0 + 10)
    return l1, l2


def in_overlay(base, lowers, fn):
    """Mounts an overlay of `lowers` (top-most first) with a new upper dir in a
    forked child (private mount namespace) and runs fn(merged) there. Returns
    (upper, what fn returned)."""
    upper, work, merged = (os.path.join(base, n) for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        os.makedirs(d, exist_ok=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(r)
            from pyrt import sys as psys
            psys.unshare(psys.CLONE_NEWNS)
            psys.mount(None, "/", None, psys.MS_REC | psys.MS_PRIVATE)
            opts = (f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work},"
                    "redirect_dir=off,index=off,metacopy=off")
            psys.mount("overlay", merged, "overlay", 0, opts)
            try:
                result = fn(merged)
            finally:
                psys.umount2(merged, 0)
            payload = pickle.dumps((True, result))
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the parent
            payload = pickle.dumps((False, traceback.format_exc()))
        try:
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    ok, result = pickle.loads(data)
    assert ok and status == 0, result
    return upper, result


def container_changes(m):
    """What a container does (run in the overlay child, on the merged dir)."""
    _write(f"{m}/new.txt", b"new file\n", mtime=T0 + 100)
    os.setxattr(f"{m}/new.txt", "user.test", b"hello")
    os.unlink(f"{m}/etc/motd")                       # whiteout
    shutil.rmtree(f"{m}/data/dir1")                  # delete a dir ...
    os.mkdir(f"{m}/data/dir1")                       # ... and recreate it: opaque
    _write(f"{m}/data/dir1/newc", b"recreated\n", mtime=T0 + 100)
    shutil.rmtree(f"{m}/data/gone")                  # a whole dir: one whiteout
    os.rename(f"{m}/old/name.txt", f"{m}/old/renamed.txt")
    os.chmod(f"{m}/chmodme", 0o600)
    _write(f"{m}/data/h1", b"hardlinked\n", mtime=T0 + 100)
    os.link(f"{m}/data/h1", f"{m}/data/h2")
    os.symlink("/etc/passwd", f"{m}/link")
    os.setxattr(f"{m}/etc/keep", "user.test", b"copied up")
    _write(f"{m}/{LONG}", b"long name\n", mtime=T0 + 100)
    os.chmod(f"{m}/usr/bin/tool", 0o4755)
    os.chown(f"{m}/home/user/file", UID, UID)        # copy-up keeps the owner
    with open(f"{m}/home/user/file", "ab") as f:
        f.write(b"more\n")
    return helpers.tree_state(m)


EXPECTED_CHANGES = [
    ("C", "/chmodme"),
    ("C", "/data"),
    ("C", "/data/dir1"),
    ("D", "/data/dir1/a"),
    ("D", "/data/dir1/b"),
    ("A", "/data/dir1/newc"),
    ("D", "/data/dir1/sub"),
    ("D", "/data/gone"),
    ("A", "/data/h1"),
    ("A", "/data/h2"),
    ("C", "/etc"),
    ("C", "/etc/keep"),
    ("D", "/etc/motd"),
    ("C", "/home"),
    ("C", "/home/user"),
    ("C", "/home/user/file"),
    ("A", "/link"),
    ("A", "/" + LONG),
    ("A", "/new.txt"),
    ("C", "/old"),
    ("D", "/old/name.txt"),
    ("A", "/old/renamed.txt"),
    ("C", "/usr"),
    ("C", "/usr/bin"),
    ("C", "/usr/bin/tool"),
]

# The tar of that upper dir: walk order, each dir's names sorted bytewise (a
# whiteout sits where the name it deletes would), the opaque marker first in its dir.
EXPECTED_TAR = [
    ("chmodme", tarfile.REGTYPE),
    ("data", tarfile.DIRTYPE),
    ("data/dir1", tarfile.DIRTYPE),
    ("data/dir1/.wh..wh..opq", tarfile.REGTYPE),
    ("data/dir1/newc", tarfile.REGTYPE),
    ("data/.wh.gone", tarfile.REGTYPE),
    ("data/h1", tarfile.REGTYPE),
    ("data/h2", tarfile.LNKTYPE),
    ("etc", tarfile.DIRTYPE),
    ("etc/keep", tarfile.REGTYPE),
    ("etc/.wh.motd", tarfile.REGTYPE),
    ("home", tarfile.DIRTYPE),
    ("home/user", tarfile.DIRTYPE),
    ("home/user/file", tarfile.REGTYPE),
    ("link", tarfile.SYMTYPE),
    (LONG, tarfile.REGTYPE),
    ("new.txt", tarfile.REGTYPE),
    ("old", tarfile.DIRTYPE),
    ("old/.wh.name.txt", tarfile.REGTYPE),
    ("old/renamed.txt", tarfile.REGTYPE),
    ("usr", tarfile.DIRTYPE),
    ("usr/bin", tarfile.DIRTYPE),
    ("usr/bin/tool", tarfile.REGTYPE),
]


def layer_bytes(tree, **kw) -> bytes:
    """pyrt._core.write_layer into a temp file, returned as bytes."""
    from pyrt import _core
    with tempfile.TemporaryFile(dir="/dev/shm") as f:
        _core.write_layer(tree, f.fileno(), **kw)
        f.seek(0)
        return f.read()


def members(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getmembers()


@pytest.fixture
def committed(tmp_shm):
    """(image layers top-most first, upper dir, merged tree state) after the
    container's changes."""
    l1, l2 = make_image(tmp_shm)
    lowers = [l2, l1]
    before = {l: helpers.tree_state(l) for l in lowers}
    upper, merged_state = in_overlay(tmp_shm, lowers, container_changes)
    # the image layers are never modified
    for l in lowers:
        assert helpers.tree_state(l) == before[l]
    return lowers, upper, merged_state


# ---------------------------------------------------------------- diff

def test_changes_of_an_overlay_container(committed):
    from pyrt.store.changes import changes
    lowers, upper, _ = committed
    assert changes(upper, lowers) == EXPECTED_CHANGES


def test_changes_without_lowers_and_empty(tmp_shm):
    from pyrt.store.changes import changes
    empty = os.path.join(tmp_shm, "u")
    os.mkdir(empty)
    assert changes(empty, []) == []
    _write(f"{empty}/a/b", b"x")
    os.mknod(f"{empty}/gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    assert changes(empty, []) == [("A", "/a"), ("A", "/a/b"), ("D", "/gone")]


# ---------------------------------------------------------------- the layer tar

def test_write_layer_entries(committed):
    lowers, upper, _ = committed
    data = layer_bytes(upper)
    ms = members(data)
    assert [(m.name, m.type) for m in ms] == EXPECTED_TAR
    by = {m.name: m for m in ms}
    for m in ms:
        # normalized metadata: numeric ids only, whole-second mtimes, no atime/ctime
        assert m.uname == "" and m.gname == ""
        assert not any(k in m.pax_headers for k in ("atime", "ctime", "uname", "gname"))
        assert not any("trusted." in k for k in m.pax_headers), (m.name, m.pax_headers)
        assert m.devmajor == 0 and m.devminor == 0
        if m.name.rsplit("/", 1)[-1].startswith(".wh."):
            assert m.size == 0 and m.isreg()
        if m.isreg() and not m.name.rsplit("/", 1)[-1].startswith(".wh."):
            st = os.lstat(os.path.join(upper, m.name))
            assert m.mtime == int(st.st_mtime)
            assert m.size == st.st_size
            assert m.mode == stat.S_IMODE(st.st_mode)
    assert by["data/h2"].linkname == "data/h1"
    assert by["link"].linkname == "/etc/passwd"
    assert by["new.txt"].pax_headers["SCHILY.xattr.user.test"] == "hello"
    assert by["etc/keep"].pax_headers["SCHILY.xattr.user.test"] == "copied up"
    assert "path" in by[LONG].pax_headers
    assert by["usr/bin/tool"].mode == 0o4755
    assert by["chmodme"].mode == 0o600
    assert (by["home/user/file"].uid, by["home/user/file"].gid) == (UID, UID)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.extractfile("new.txt").read() == b"new file\n"
        assert tf.extractfile(LONG).read() == b"long name\n"
        assert tf.extractfile("home/user/file").read() == b"user data\nmore\n"
    # the end: two zero blocks, nothing else
    assert len(data) % 512 == 0 and data[-1024:] == b"\0" * 1024


def test_write_layer_is_deterministic(committed):
    _, upper, _ = committed
    assert layer_bytes(upper) == layer_bytes(upper)


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_write_layer_blob(committed, tmp_shm, compression):
    from pyrt.store.commit import MEDIA_TYPES, write_layer_blob
    if compression == "zstd":
        zstandard = pytest.importorskip("zstandard")
    _, upper, _ = committed
    out = os.path.join(tmp_shm, "out")
    os.mkdir(out)
    a = write_layer_blob(upper, out, compression=compression)
    b = write_layer_blob(upper, out, compression=compression)
    assert a["digest"] == b["digest"] and a["diff_id"] == b["diff_id"]
    assert a["media_type"] == MEDIA_TYPES[compression]
    blob = open(a["path"], "rb").read()
    assert os.path.dirname(a["path"]) == out and a["size"] == len(blob)
    assert a["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
    if compression == "gzip":
        tar = gzip.decompress(blob)
    elif compression == "zstd":
        tar = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    else:
        tar = blob
    assert a["diff_id"] == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert tar == layer_bytes(upper)
    assert a["uncompressed_size"] == len(tar)
    os.unlink(a["path"])
    os.unlink(b["path"])
    assert os.listdir(out) == []


def test_gzip_blob_spans_many_blocks(tmp_shm):
    """Several compression blocks (primed, sync-flushed, concatenated): still one
    valid gzip stream, the same bytes every time."""
    from pyrt.store.commit import write_layer_blob
    up = os.path.join(tmp_shm, "up")
    rnd = __import__("random").Random(1)
    _write(f"{up}/big", b"".join(rnd.randbytes(512) + b"A" * 3000 for _ in range(1500)))
    _write(f"{up}/rand", rnd.randbytes(3 << 20))
    out = os.path.join(tmp_shm, "out")
    os.mkdir(out)
    a = write_layer_blob(up, out)
    b = write_layer_blob(up, out)
    assert a["digest"] == b["digest"]
    tar = gzip.decompress(open(a["path"], "rb").read())
    assert tar == layer_bytes(up)
    assert a["size"] < a["uncompressed_size"]


def test_write_layer_blob_failure_leaves_nothing(tmp_shm):
    from pyrt.store.commit import write_layer_blob
    out = os.path.join(tmp_shm, "out")
    os.mkdir(out)
    for compression in (None, "gzip"):
        with pytest.raises(FileNotFoundError):
            write_layer_blob(os.path.join(tmp_shm, "nope"), out, compression=compression)
    assert os.listdir(out) == []
    with pytest.raises(ValueError):
        write_layer_blob(tmp_shm, out, compression="lzma")


def test_round_trip_through_the_unpacker(committed, tmp_shm):
    """write_layer -> unpack_layer gives back the upper dir (whiteouts as 0:0 char
    devices, the opaque dir by xattr, hardlinks, modes, owners, user xattrs)."""
    unpack = pytest.importorskip("pyrt.store.unpack")
    from pyrt.store.commit import write_layer_blob
    _, upper, _ = committed
    out = os.path.join(tmp_shm, "out")
    os.mkdir(out)
    blob = write_layer_blob(upper, out)
    dest = os.path.join(tmp_shm, "unpacked")
    os.mkdir(dest)
    diff_id, _ = unpack.unpack_layer(blob["path"], dest, media_type=blob["media_type"],
                                     expected_diff_id=blob["diff_id"])
    assert diff_id == blob["diff_id"]

    def norm(state):
        keep = {}
        for path, (mode, uid, gid, payload, xattrs) in state.items():
            xattrs = tuple((k, v) for k, v in xattrs
                           if k.startswith("user.") or k == "trusted.overlay.opaque")
            if stat.S_ISDIR(mode) or stat.S_ISCHR(mode):
                # dirs: the mode/owner of the root is not in a layer; whiteouts: a
                # 0:0 device either way
                keep[path] = (stat.S_IFMT(mode), payload, xattrs) if path == "." else \
                    (mode, uid, gid, payload, xattrs) if stat.S_ISDIR(mode) else (stat.S_IFMT(mode), payload)
            else:
                keep[path] = (mode, uid, gid, payload, xattrs)
        return keep

    assert norm(helpers.tree_state(dest)) == norm(helpers.tree_state(upper))
    assert os.stat(f"{dest}/data/h1").st_ino == os.stat(f"{dest}/data/h2").st_ino
    for rel in ("new.txt", "data/dir1/newc", LONG):
        assert int(os.lstat(f"{dest}/{rel}").st_mtime) == int(os.lstat(f"{upper}/{rel}").st_mtime)


def test_pax_records_for_long_links_big_ids_and_sizes(tmp_shm):
    up = os.path.join(tmp_shm, "up")
    os.mkdir(up)
    target = "/" + "t" * 200
    os.symlink(target, f"{up}/longlink")
    _write(f"{up}/bigid", b"x", uid=3_000_000, gid=4_000_000)
    os.mknod(f"{up}/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(f"{up}/fifo")
    old = -86400 * 365
    _write(f"{up}/old", b"y", mtime=old)
    with open(f"{up}/sparse", "wb") as f:  # 9 GiB apparent size: pax size record
        f.truncate(9 << 30)
    # only its header is checked: stop reading after the sparse file's header
    from pyrt import _core
    r, w = os.pipe()
    import threading
    err = []

    def run():
        try:
            _core.write_layer(up, w)
        except OSError as e:
            err.append(e)
        finally:
            os.close(w)
    t = threading.Thread(target=run)
    t.start()
    head = b""
    with os.fdopen(r, "rb") as f:
        while len(head) < 64 << 10:
            chunk = f.read(4096)
            if not chunk:
                break
            head += chunk
    t.join()
    assert err and isinstance(err[0], BrokenPipeError)  # we closed the pipe early
    tf = tarfile.open(fileobj=io.BytesIO(head + b"\0" * 1024), mode="r:")
    got = {}
    try:
        for m in tf:
            got[m.name] = m
            if m.name == "sparse":
                break
    except tarfile.ReadError:
        pass
    assert got["longlink"].linkname == target and "linkpath" in got["longlink"].pax_headers
    assert (got["bigid"].uid, got["bigid"].gid) == (3_000_000, 4_000_000)
    assert got["null"].ischr() and (got["null"].devmajor, got["null"].devminor) == (1, 3)
    assert got["fifo"].isfifo()
    assert got["old"].mtime == old
    assert got["sparse"].size == 9 << 30 and got["sparse"].pax_headers["size"] == str(9 << 30)


def test_write_layer_refuses_redirect_and_metacopy(tmp_shm):
    up = os.path.join(tmp_shm, "up")
    os.makedirs(f"{up}/d")
    os.setxattr(f"{up}/d", "trusted.overlay.redirect", b"/elsewhere")
    with pytest.raises(OSError) as ei:
        layer_bytes(up)
    assert ei.value.errno == 95 and ei.value.filename.endswith("/up/d")  # EOPNOTSUPP
    assert "redirect" in str(ei.value)
    assert [m.name for m in members(layer_bytes(up, raw=True))] == ["d"]


def test_userxattr_whiteouts(tmp_shm):
    """With userxattr, overlay's markers are user.overlay.*: read as such, and not
    emitted as xattrs."""
    up = os.path.join(tmp_shm, "up")
    os.makedirs(f"{up}/opq")
    os.setxattr(f"{up}/opq", "user.overlay.opaque", b"y")
    _write(f"{up}/wh")
    os.setxattr(f"{up}/wh", "user.overlay.whiteout", b"")
    ms = members(layer_bytes(up, userxattr=True))
    assert [(m.name, m.type) for m in ms] == [("opq", tarfile.DIRTYPE),
                                               ("opq/.wh..wh..opq", tarfile.REGTYPE),
                                               (".wh.wh", tarfile.REGTYPE)]
    assert not any(m.pax_headers for m in ms)


# ---------------------------------------------------------------- copy_tree

def _sample_tree(src):
    _write(f"{src}/plain", b"hello\n" * 1000, mtime=T0)
    _write(f"{src}/suid", b"#!/bin/sh\n", mode=0o4755, uid=UID, gid=UID, mtime=T0 + 1)
    _write(f"{src}/sgid", b"x", mode=0o2711, uid=0, gid=UID)
    os.setxattr(f"{src}/plain", "user.k", b"v")
    os.setxattr(f"{src}/plain", "trusted.overlay.origin", b"junk")
    with open(f"{src}/sparse", "wb") as f:
        f.seek(8 << 20)
        f.write(b"end")
        f.seek(1 << 20)
        f.write(b"middle")
    os.utime(f"{src}/sparse", ns=(T0 * 10**9 + 123456789, T0 * 10**9 + 987654321))
    os.makedirs(f"{src}/d/e")
    os.link(f"{src}/plain", f"{src}/d/e/hard")
    os.symlink("../plain", f"{src}/d/link")
    os.lchown(f"{src}/d/link", UID, UID)
    os.mknod(f"{src}/d/null", 0o640 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(f"{src}/d/blk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.mkfifo(f"{src}/d/fifo", 0o620)
    os.chmod(f"{src}/d", 0o1777)
    os.chown(f"{src}/d/e", UID, 0)
    _fix_dir_times(src, T0 + 5)
    os.utime(f"{src}/d/link", (T0 + 7, T0 + 7), follow_symlinks=False)


def _times(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p).st_mtime_ns
    return out


def test_copy_tree_keeps_everything(tmp_shm):
    from pyrt import _core
    src, dst = os.path.join(tmp_shm, "src"), os.path.join(tmp_shm, "dst")
    _sample_tree(src)
    stats = _core.copy_tree(src, dst)
    s, d = helpers.tree_state(src), helpers.tree_state(dst)
    # trusted.overlay.* is dropped; everything else is the same
    s["plain"] = s["plain"][:4] + (tuple(x for x in s["plain"][4] if not x[0].startswith("trusted.")),)
    s["d/e/hard"] = s["plain"]
    assert d == s
    assert _times(dst) == _times(src)
    assert os.stat(f"{dst}/plain").st_ino == os.stat(f"{dst}/d/e/hard").st_ino
    assert os.stat(f"{dst}/sparse").st_blocks * 512 < 1 << 20  # holes stayed holes
    assert os.stat(f"{dst}/suid").st_mode & 0o7777 == 0o4755
    assert stats["links"] == 1 and stats["files"] >= 4
    # overlay xattrs on request
    dst2 = os.path.join(tmp_shm, "dst2")
    _core.copy_tree(src, dst2, overlay_xattrs=True)
    assert os.getxattr(f"{dst2}/plain", "trusted.overlay.origin") == b"junk"


def test_copy_tree_replaces_and_merges(tmp_shm):
    from pyrt import _core
    src, dst = os.path.join(tmp_shm, "src"), os.path.join(tmp_shm, "dst")
    _write(f"{src}/f", b"new")
    _write(f"{src}/dir/x", b"x")
    _write(f"{src}/wasdir", b"now a file")
    _write(f"{dst}/f", b"old content that is longer")
    _write(f"{dst}/dir/kept", b"kept")
    _write(f"{dst}/wasdir/deep/file", b"gone")
    _write(f"{tmp_shm}/outside", b"outside")
    os.link(f"{tmp_shm}/outside", f"{dst}/dir/x")  # dst's x is a hardlink to a file outside
    _core.copy_tree(src, dst)
    assert open(f"{dst}/f", "rb").read() == b"new"
    assert open(f"{dst}/dir/x", "rb").read() == b"x"
    assert open(f"{dst}/dir/kept", "rb").read() == b"kept"
    assert open(f"{dst}/wasdir", "rb").read() == b"now a file"
    assert open(f"{tmp_shm}/outside", "rb").read() == b"outside"  # not written through


def test_copy_tree_never_follows_symlinks_in_dst(tmp_shm):
    from pyrt import _core
    src, dst = os.path.join(tmp_shm, "src"), os.path.join(tmp_shm, "dst")
    outside = os.path.join(tmp_shm, "outside")
    os.makedirs(outside)
    _write(f"{outside}/victim", b"victim")
    _write(f"{src}/evil/victim", b"pwned")
    _write(f"{src}/a/b/c", b"deep")
    _write(f"{src}/file", b"pwned")
    _write(f"{src}/d2/x", b"x")
    os.makedirs(dst)
    os.symlink(outside, f"{dst}/evil")                 # a dir in src over a symlink in dst
    os.symlink(outside, f"{dst}/a")                    # ... and an intermediate component
    os.symlink(f"{outside}/victim", f"{dst}/file")     # a file over a symlink
    os.makedirs(f"{src}/d3")
    os.mknod(f"{src}/d3/gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    os.symlink(outside, f"{dst}/d3")                   # whiteouts below a symlink
    before = helpers.tree_state(outside)
    _core.copy_tree(src, dst, whiteouts=True)
    assert helpers.tree_state(outside) == before
    assert os.listdir(outside) == ["victim"]
    for p in ("evil", "a", "a/b", "d3"):
        assert stat.S_ISDIR(os.lstat(f"{dst}/{p}").st_mode), p
    assert open(f"{dst}/evil/victim", "rb").read() == b"pwned"
    assert open(f"{dst}/a/b/c", "rb").read() == b"deep"
    assert stat.S_ISREG(os.lstat(f"{dst}/file").st_mode)


def test_copy_tree_applies_whiteouts(tmp_shm):
    from pyrt import _core
    lower, upper, dst = (os.path.join(tmp_shm, n) for n in ("lower", "upper", "dst"))
    _write(f"{lower}/keep", b"k")
    _write(f"{lower}/del", b"d")
    _write(f"{lower}/deldir/x", b"x")
    _write(f"{lower}/opq/old1", b"1")
    _write(f"{lower}/opq/sub/old2", b"2")
    os.makedirs(upper)
    os.mknod(f"{upper}/del", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    os.mknod(f"{upper}/deldir", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    _write(f"{upper}/opq/new", b"n")
    os.setxattr(f"{upper}/opq", "trusted.overlay.opaque", b"y")
    _write(f"{upper}/xwh")
    os.setxattr(f"{upper}/xwh", "trusted.overlay.whiteout", b"")
    _write(f"{dst}/xwh", b"deleted by an xattr whiteout")
    _core.copy_tree(lower, dst, whiteouts=True)
    st = _core.copy_tree(upper, dst, whiteouts=True)
    assert sorted(helpers.tree_state(dst)) == [".", "keep", "opq", "opq/new"]
    assert "trusted.overlay.opaque" not in os.listxattr(f"{dst}/opq")
    assert st["removed"] >= 5
    # without whiteouts=True they are copied as they are
    raw = os.path.join(tmp_shm, "raw")
    _core.copy_tree(upper, raw)
    assert helpers.is_whiteout(f"{raw}/del")


def test_copy_driver_materializes_the_union(committed, tmp_shm):
    """The image's layers copied bottom-up with whiteouts, then the upper dir the
    kernel left: the same tree as the kernel's merged overlay view."""
    from pyrt import _core
    lowers, upper, merged_state = committed
    rootfs = os.path.join(tmp_shm, "rootfs")
    os.mkdir(rootfs)
    for layer in reversed(lowers):
        _core.copy_tree(layer, rootfs, whiteouts=True)
    _core.copy_tree(upper, rootfs, whiteouts=True)

    def strip(state):
        return {p: v[:4] + (tuple(x for x in v[4] if not x[0].startswith("trusted.overlay.")),)
                for p, v in state.items()}
    assert strip(helpers.tree_state(rootfs)) == strip(merged_state)


def test_copy_tree_bad_arguments(tmp_shm):
    from pyrt import _core
    with pytest.raises(FileNotFoundError):
        _core.copy_tree(os.path.join(tmp_shm, "nope"), os.path.join(tmp_shm, "dst"))
    _write(f"{tmp_shm}/src/f", b"x")
    with pytest.raises(NotADirectoryError):
        _core.copy_tree(f"{tmp_shm}/src/f", os.path.join(tmp_shm, "dst"))
    with pytest.raises(ValueError):  # into itself
        _core.copy_tree(f"{tmp_shm}/src", f"{tmp_shm}/src/sub")
    os.mkdir(f"{tmp_shm}/elsewhere")
    os.symlink(f"{tmp_shm}/elsewhere", f"{tmp_shm}/dstlink")
    with pytest.raises(OSError):  # dst itself must not be a symlink
        _core.copy_tree(f"{tmp_shm}/src", f"{tmp_shm}/dstlink")


# ---------------------------------------------------------------- copy driver: diff/commit by comparison

def _materialize(lowers, rootfs):
    from pyrt import _core
    os.mkdir(rootfs)
    for layer in reversed(lowers):
        _core.copy_tree(layer, rootfs, whiteouts=True)


@pytest.fixture
def materialized(tmp_shm):
    """(rootfs, lowers): the two layers of make_image copied into one rootfs."""
    l1, l2 = make_image(tmp_shm)
    lowers = [l2, l1]
    rootfs = os.path.join(tmp_shm, "rootfs")
    _materialize(lowers, rootfs)
    return rootfs, lowers


@pytest.fixture
def changed(materialized):
    """(rootfs, lowers) after changes of every kind to the materialized rootfs."""
    rootfs, lowers = materialized
    r = rootfs
    _write(f"{r}/new.txt", b"new", mtime=T0 + 100)
    os.unlink(f"{r}/etc/motd")
    shutil.rmtree(f"{r}/data/dir1")
    os.chmod(f"{r}/chmodme", 0o600)
    with open(f"{r}/etc/keep", "r+b") as f:  # same size, same mtime: only content differs
        f.write(b"KEEP")
    os.utime(f"{r}/etc/keep", (T0, T0))
    os.setxattr(f"{r}/etc/passwd", "user.x", b"1")
    os.makedirs(f"{r}/newdir/sub")
    _write(f"{r}/newdir/sub/f", b"f")
    os.unlink(f"{r}/old/name.txt")
    os.mkdir(f"{r}/old/name.txt")  # a file became a dir
    _write(f"{r}/old/name.txt/inner", b"i")
    for d in ("etc", "data", "old"):  # the dirs' own mtimes are back as they were
        os.utime(f"{r}/{d}", (T0 + 10 if d in ("etc", "data") else T0,) * 2)
    os.utime(f"{r}/old/name.txt", (T0, T0))
    return rootfs, lowers


def test_changes_by_compare_of_an_unchanged_rootfs_is_empty(materialized):
    from pyrt.store.changes import changes_by_compare, compare_entries
    rootfs, lowers = materialized
    assert changes_by_compare(rootfs, lowers) == []
    assert compare_entries(rootfs, lowers) == []


def test_changes_by_compare(changed):
    from pyrt.store.changes import changes_by_compare, compare_entries
    rootfs, lowers = changed
    assert changes_by_compare(rootfs, lowers) == [
        ("C", "/chmodme"),
        ("C", "/data"),
        ("D", "/data/dir1"),
        ("C", "/etc"),
        ("C", "/etc/keep"),
        ("D", "/etc/motd"),
        ("C", "/etc/passwd"),
        ("A", "/new.txt"),
        ("A", "/newdir"),
        ("A", "/newdir/sub"),
        ("A", "/newdir/sub/f"),
        ("C", "/old"),
        ("C", "/old/name.txt"),
        ("A", "/old/name.txt/inner"),
    ]
    # content=False trusts size+mtime
    assert ("C", "/etc/keep") not in changes_by_compare(rootfs, lowers, content=False)
    entries = compare_entries(rootfs, lowers)
    assert ("data/dir1", "whiteout") in entries and ("etc/motd", "whiteout") in entries


@pytest.fixture
def blob_by_compare(changed, tmp_shm):
    """The layer blob (uncompressed) written by compare for the `changed` rootfs."""
    from pyrt.store.commit import write_layer_blob_by_compare
    rootfs, lowers = changed
    out = os.path.join(tmp_shm, "out")
    os.mkdir(out)
    return write_layer_blob_by_compare(rootfs, lowers, out, compression=None)


def test_layer_blob_by_compare_entries(blob_by_compare):
    blob = blob_by_compare
    names = [(m.name, m.type) for m in members(open(blob["path"], "rb").read())]
    assert names == [
        ("chmodme", tarfile.REGTYPE),
        ("data", tarfile.DIRTYPE),
        ("data/.wh.dir1", tarfile.REGTYPE),
        ("etc", tarfile.DIRTYPE),
        ("etc/keep", tarfile.REGTYPE),
        ("etc/.wh.motd", tarfile.REGTYPE),
        ("etc/passwd", tarfile.REGTYPE),
        ("new.txt", tarfile.REGTYPE),
        ("newdir", tarfile.DIRTYPE),
        ("newdir/sub", tarfile.DIRTYPE),
        ("newdir/sub/f", tarfile.REGTYPE),
        ("old", tarfile.DIRTYPE),
        ("old/name.txt", tarfile.DIRTYPE),
        ("old/name.txt/inner", tarfile.REGTYPE),
    ]


def test_layer_blob_by_compare_on_the_image_gives_the_rootfs_back(changed, blob_by_compare, tmp_shm):
    rootfs, lowers = changed
    blob = blob_by_compare
    again = os.path.join(tmp_shm, "again")
    unpack = pytest.importorskip("pyrt.store.unpack")
    top = os.path.join(tmp_shm, "top")
    os.mkdir(top)
    unpack.unpack_layer(blob["path"], top, media_type=blob["media_type"])
    _materialize([top] + lowers, again)

    def no_root(state):
        state.pop(".")
        return state
    assert no_root(helpers.tree_state(again)) == no_root(helpers.tree_state(rootfs))


def test_write_entries_stays_inside(tmp_shm):
    from pyrt import _core
    root = os.path.join(tmp_shm, "root")
    _write(f"{tmp_shm}/secret", b"secret")
    _write(f"{root}/ok", b"ok")
    os.symlink(tmp_shm, f"{root}/link")
    with open(os.path.join(tmp_shm, "t.tar"), "wb") as f:
        for bad in ("../secret", "/secret", "link/secret", "a/../ok", "", "ok/"):
            with pytest.raises(OSError):
                _core.write_entries(root, [(bad, "path")], f.fileno())
        f.truncate(0)
        f.seek(0)
        _core.write_entries(root, [("ok", "path"), ("link", "path"), ("gone", "whiteout")],
                            f.fileno())
    ms = members(open(os.path.join(tmp_shm, "t.tar"), "rb").read())
    assert [(m.name, m.type) for m in ms] == [("ok", tarfile.REGTYPE), ("link", tarfile.SYMTYPE),
                                              (".wh.gone", tarfile.REGTYPE)]


@pytest.mark.parametrize("tool", ["tar", "bsdtar"])
def test_layer_tar_reads_with_other_tools(committed, tmp_shm, tool):
    """GNU tar and libarchive list the same entries and extract the same content."""
    import subprocess
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed")
    _, upper, _ = committed
    path = os.path.join(tmp_shm, "layer.tar")
    with open(path, "wb") as f:
        f.write(layer_bytes(upper))
    listed = subprocess.run([tool, "-tf", path], check=True, capture_output=True, text=True).stdout
    assert [n.rstrip("/") for n in listed.splitlines()] == [n for n, _ in EXPECTED_TAR]
    dest = os.path.join(tmp_shm, "x")
    os.mkdir(dest)
    subprocess.run([tool, "-xf", path, "-C", dest], check=True, capture_output=True)
    assert open(f"{dest}/{LONG}", "rb").read() == b"long name\n"
    assert os.stat(f"{dest}/data/h1").st_ino == os.stat(f"{dest}/data/h2").st_ino
    assert os.readlink(f"{dest}/link") == "/etc/passwd"
    assert os.lstat(f"{dest}/usr/bin/tool").st_mode & 0o7777 == 0o4755


def test_many_and_large_xattrs(tmp_shm):
    """xattr buffers grow as needed: many names, big values, empty values."""
    from pyrt import _core
    src = os.path.join(tmp_shm, "src")
    _write(f"{src}/f", b"x")
    want = {f"user.attr{i:03d}": bytes([i]) * (i * 37) for i in range(60)}
    want["user.big"] = b"B" * 3000
    for k, v in want.items():
        os.setxattr(f"{src}/f", k, v)
    dst = os.path.join(tmp_shm, "dst")
    _core.copy_tree(src, dst)
    assert {k: os.getxattr(f"{dst}/f", k) for k in os.listxattr(f"{dst}/f")} == want
    (m,) = members(layer_bytes(src))
    got = {k[len("SCHILY.xattr."):]: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
    assert sorted(got) == sorted(want)
    assert got["user.big"] == "B" * 3000 and got["user.attr000"] == ""
