"""The layer unpacker (csrc/unpack.c, pyrt._core.Unpacker, pyrt.store.unpack) on real
tar files made with Python's tarfile and GNU tar, unpacked on tmpfs."""
import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile

import pytest

from pyrt.errors import LayerError
from pyrt.store.unpack import (detect_compression, unpack_layer, unpack_layers_parallel)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, "
                                "trusted.* xattrs)")

GNU_TAR = shutil.which("tar")
try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None


# ----------------------------------------------------------------- helpers

def _snapshot_host():
    """What must never change, whatever a layer says."""
    st = os.stat("/etc/passwd")
    with open("/etc/passwd", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return (st.st_ino, st.st_mtime_ns, st.st_size, digest,
            os.path.exists("/evil"), os.path.exists("/abs"), os.path.exists("/x"))


@pytest.fixture
def work():
    """A tmpfs directory holding dest/ (the snapshot being built) and sentinel/
    (next to it: must stay as it is)."""
    base = tempfile.mkdtemp(prefix="pyrt-unpack-", dir="/dev/shm")
    dest = os.path.join(base, "dest")
    sentinel = os.path.join(base, "sentinel")
    os.mkdir(dest)
    os.mkdir(sentinel)
    with open(os.path.join(sentinel, "keep"), "w") as f:
        f.write("keep")
    host = _snapshot_host()

    class W:
        pass

    w = W()
    w.base, w.dest, w.sentinel = base, dest, sentinel
    try:
        yield w
        # nothing written outside dest, whatever the test did
        assert sorted(os.listdir(base)) == ["dest", "sentinel"]
        assert os.listdir(sentinel) == ["keep"]
        with open(os.path.join(sentinel, "keep")) as f:
            assert f.read() == "keep"
        assert _snapshot_host() == host
    finally:
        shutil.rmtree(base, ignore_errors=True)


def E(name, kind="file", data=b"", mode=None, uid=0, gid=0, mtime=1700000000, link="",
      dev=(0, 0), pax=None):
    return dict(name=name, kind=kind, data=data, mode=mode, uid=uid, gid=gid, mtime=mtime,
                link=link, dev=dev, pax=pax or {})


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
          "fifo": tarfile.FIFOTYPE}


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = _TYPES[e["kind"]]
            ti.mode = e["mode"] if e["mode"] is not None else (
                0o755 if e["kind"] == "dir" else 0o644)
            ti.uid, ti.gid, ti.mtime = e["uid"], e["gid"], e["mtime"]
            ti.uname = ti.gname = ""
            ti.linkname = e["link"]
            ti.devmajor, ti.devminor = e["dev"]
            ti.pax_headers = dict(e["pax"])
            if e["kind"] == "file":
                ti.size = len(e["data"])
                tf.addfile(ti, io.BytesIO(e["data"]))
            else:
                tf.addfile(ti)
    return bio.getvalue()


def unpack(data, dest, **kw):
    return unpack_layer(io.BytesIO(data), dest, **kw)


def diff_id(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def reject(data, dest, entry=None, reason=None, **kw):
    with pytest.raises(LayerError) as ei:
        unpack(data, dest, **kw)
    msg = str(ei.value)
    if entry is not None:
        assert msg.startswith(f'layer entry "{entry}": '), msg
    if reason is not None:
        assert reason in msg, msg
    return msg


def gnu_tar(src_dir, out, *args):
    subprocess.run([GNU_TAR, "-C", src_dir, *args, "-cf", out, "."], check=True)


# ----------------------------------------------------------------- entry types

@pytest.fixture
def entries_unpacked(work):
    """A layer with one entry of each type (and modes, owners, times, xattrs)
    unpacked into work.dest: its diff ID and size are checked; returns the dest."""
    data = make_tar([
        E("dir", "dir", mode=0o750, uid=1000, gid=1001, mtime=1600000000),
        E("dir/file", data=b"hello\n", mode=0o640, uid=1000, gid=1001,
          pax={"mtime": "1650000000.123456789"}),
        E("dir/setuid", data=b"#!/bin/sh\n", mode=0o4755, uid=1002, gid=1003),
        E("dir/setgid", data=b"x", mode=0o2711, uid=5, gid=6),
        E("sticky", "dir", mode=0o1777, mtime=1500000000),
        E("sgdir", "dir", mode=0o2775, gid=50),
        E("dir/link", "symlink", link="file", uid=1004, gid=1005, mtime=1400000000),
        E("dir/abs", "symlink", link="/etc/passwd"),
        E("dir/hard", "hardlink", link="dir/file"),
        E("null", "chr", mode=0o666, dev=(1, 3)),
        E("loop0", "blk", mode=0o660, dev=(7, 0), gid=6),
        E("pipe", "fifo", mode=0o600, uid=7),
        E("dir/x", data=b"xattrs", pax={"SCHILY.xattr.user.foo": "bar",
                                        "SCHILY.xattr.user.empty": ""}),
        E("xdir", "dir", pax={"SCHILY.xattr.user.d": "dv"}),
    ])
    did, size = unpack(data, work.dest)
    assert did == diff_id(data)
    assert size == 6 + 10 + 1 + 6
    return work.dest


def test_entry_types_and_metadata(entries_unpacked):
    """Directories and regular files: modes (setuid, setgid, sticky), owners, times."""
    d = entries_unpacked
    st = os.lstat(f"{d}/dir")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert (st.st_uid, st.st_gid, st.st_mtime) == (1000, 1001, 1600000000)
    st = os.lstat(f"{d}/dir/file")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_mtime_ns == 1650000000123456789
    assert open(f"{d}/dir/file", "rb").read() == b"hello\n"
    st = os.lstat(f"{d}/dir/setuid")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1002, 1003)
    assert stat.S_IMODE(os.lstat(f"{d}/dir/setgid").st_mode) == 0o2711
    st = os.lstat(f"{d}/sticky")
    assert stat.S_IMODE(st.st_mode) == 0o1777 and st.st_mtime == 1500000000
    st = os.lstat(f"{d}/sgdir")
    assert stat.S_IMODE(st.st_mode) == 0o2775 and st.st_gid == 50


def test_entry_types_symlinks_and_hardlinks(entries_unpacked):
    d = entries_unpacked
    st = os.lstat(f"{d}/dir/link")
    assert stat.S_ISLNK(st.st_mode) and os.readlink(f"{d}/dir/link") == "file"
    assert (st.st_uid, st.st_gid, st.st_mtime) == (1004, 1005, 1400000000)
    assert os.readlink(f"{d}/dir/abs") == "/etc/passwd"

    a, b = os.lstat(f"{d}/dir/file"), os.lstat(f"{d}/dir/hard")
    assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev) and a.st_nlink == 2


def test_entry_types_device_nodes_and_fifos(entries_unpacked):
    d = entries_unpacked
    st = os.lstat(f"{d}/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(f"{d}/loop0")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 0) and st.st_gid == 6
    assert stat.S_IMODE(st.st_mode) == 0o660
    st = os.lstat(f"{d}/pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 7


def test_entry_types_xattrs(entries_unpacked):
    d = entries_unpacked
    assert os.getxattr(f"{d}/dir/x", "user.foo") == b"bar"
    assert os.getxattr(f"{d}/dir/x", "user.empty") == b""
    assert os.getxattr(f"{d}/xdir", "user.d") == b"dv"


def test_directory_times_survive_their_children(work):
    data = make_tar([E("a", "dir", mtime=1000000000), E("a/b", "dir", mtime=1100000000),
                     E("a/b/f", data=b"1"), E("a/g", data=b"2"),
                     E("a/b/c/d/deep", data=b"3")])  # implicit parents
    unpack(data, work.dest)
    assert os.lstat(f"{work.dest}/a").st_mtime == 1000000000
    assert os.lstat(f"{work.dest}/a/b").st_mtime == 1100000000
    assert stat.S_IMODE(os.lstat(f"{work.dest}/a/b/c").st_mode) == 0o755
    assert open(f"{work.dest}/a/b/c/d/deep").read() == "3"


def test_root_entry_metadata(work):
    for name in (".", "./", "/"):
        shutil.rmtree(work.dest)
        os.mkdir(work.dest)
        data = make_tar([E(name, "dir", mode=0o751, uid=3, gid=4, mtime=1234567890),
                         E("./f", data=b"f")])
        unpack(data, work.dest)
        st = os.lstat(work.dest)
        assert stat.S_IMODE(st.st_mode) == 0o751, name
        assert (st.st_uid, st.st_gid, st.st_mtime) == (3, 4, 1234567890)
        assert os.listdir(work.dest) == ["f"]


def test_root_entry_that_is_not_a_directory_is_rejected(work):
    reject(make_tar([E(".", data=b"x")]), work.dest, entry=".", reason="layer root")
    reject(make_tar([E("/", "symlink", link="/etc")]), work.dest, entry="/")


def test_later_entries_replace_earlier_ones(work):
    data = make_tar([
        E("a", data=b"first"), E("a", data=b"second"),          # file -> file
        E("b", data=b"file"), E("b", "dir"), E("b/in", data=b"in"),  # file -> dir
        E("c", "dir"), E("c/sub", "dir"), E("c/sub/f", data=b"x"),
        E("c", data=b"now a file"),                              # dir tree -> file
        E("d", "symlink", link="/etc/passwd"), E("d", data=b"not through"),  # link -> file
        E("e", data=b"f"), E("e", "symlink", link="a"),          # file -> symlink
        E("f", "dir", mode=0o700), E("f", "dir", mode=0o711),    # dir -> dir: merged
        E("g", data=b"g"), E("h", "hardlink", link="g"), E("h", "hardlink", link="g"),
    ])
    unpack(data, work.dest)
    d = work.dest
    assert open(f"{d}/a").read() == "second"
    assert open(f"{d}/b/in").read() == "in"
    assert open(f"{d}/c").read() == "now a file"
    assert not os.path.islink(f"{d}/d") and open(f"{d}/d").read() == "not through"
    assert os.readlink(f"{d}/e") == "a"
    assert stat.S_IMODE(os.lstat(f"{d}/f").st_mode) == 0o711
    assert os.lstat(f"{d}/h").st_ino == os.lstat(f"{d}/g").st_ino


def test_repeated_directory_and_root_get_the_last_owner(work):
    os.chown(work.dest, 1000, 1000)
    unpack(make_tar([E("./", "dir", uid=0, gid=0), E("a", "dir", uid=5, gid=5, mode=0o555),
                     E("a/f", data=b"f"), E("a", "dir", uid=0, gid=0, mode=0o500)]), work.dest)
    st = os.lstat(work.dest)
    assert (st.st_uid, st.st_gid) == (0, 0)
    st = os.lstat(f"{work.dest}/a")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o500)


def test_hardlink_keeps_sharing_after_replacement(work):
    data = make_tar([E("a", data=b"shared"), E("b", "hardlink", link="a"),
                     E("a", data=b"new a")])
    unpack(data, work.dest)
    assert open(f"{work.dest}/b").read() == "shared"
    assert open(f"{work.dest}/a").read() == "new a"


# ----------------------------------------------------------------- formats

@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names(work, fmt):
    long_dir = "/".join(["d" * 60] * 3)          # > 100: ustar prefix, GNU 'L', PAX path
    name = f"{long_dir}/{'f' * 90}"
    target = f"{long_dir}/{'t' * 90}"
    entries = [E(target, data=b"t"), E(name, "symlink", link=target),
               E(name + "2", "hardlink", link=target)]
    if fmt == tarfile.USTAR_FORMAT:
        entries = [E(f"{long_dir}/short", data=b"ustar prefix")]
    data = make_tar(entries, fmt=fmt)
    unpack(data, work.dest)
    if fmt == tarfile.USTAR_FORMAT:
        assert open(f"{work.dest}/{long_dir}/short").read() == "ustar prefix"
        return
    assert os.readlink(f"{work.dest}/{name}") == target
    assert os.lstat(f"{work.dest}/{name}2").st_ino == os.lstat(f"{work.dest}/{target}").st_ino


def test_pax_global_header_and_numbers(work):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "global", "uid": "4242"}) as tf:
        ti = tarfile.TarInfo("big-uid")
        ti.uid = 3000000   # does not fit the octal field: a PAX record
        ti.mtime = 1234.5  # a fraction: a PAX record
        tf.addfile(ti, io.BytesIO(b""))
        tf.addfile(tarfile.TarInfo("plain"), io.BytesIO(b""))
    unpack(bio.getvalue(), work.dest)
    st = os.lstat(f"{work.dest}/big-uid")
    assert st.st_uid == 3000000 and st.st_mtime_ns == 1234500000000
    assert os.lstat(f"{work.dest}/plain").st_uid == 4242  # from the global header


def test_one_byte_at_a_time_and_any_buffer(work):
    from pyrt._core import Unpacker
    content = os.urandom(3000)
    data = make_tar([E("d", "dir"), E("d/f", data=content),
                     E("d/l", "symlink", link="f"),
                     E("x", data=b"", pax={"SCHILY.xattr.user.a": "b" * 700})])
    with Unpacker(work.dest) as u:
        view = memoryview(bytearray(data))
        for i in range(len(view)):
            u.feed(view[i:i + 1])
        st = u.finish()
    assert st["entries"] == 4 and st["files"] == 2 and st["stream"] == len(data)
    with open(f"{work.dest}/d/f", "rb") as f:
        assert f.read() == content
    assert os.getxattr(f"{work.dest}/x", "user.a") == b"b" * 700
    assert os.readlink(f"{work.dest}/d/l") == "f"


def test_unpacker_api_errors(work):
    from pyrt._core import Unpacker
    u = Unpacker(work.dest)
    u.close()
    with pytest.raises(ValueError):
        u.feed(b"x")
    u.close()
    with pytest.raises(OSError):
        Unpacker(os.path.join(work.dest, "missing"))
    # after an error every call fails the same way
    u = Unpacker(work.dest)
    bad = bytearray(make_tar([E("f", data=b"1")]))
    bad[0:1] = b"g"  # breaks the checksum
    with pytest.raises(LayerError, match="checksum"):
        u.feed(bad)
    with pytest.raises(LayerError, match="checksum"):
        u.finish()
    u.close()


# ----------------------------------------------------------------- whiteouts

def test_whiteouts_and_opaque_dirs(work):
    data = make_tar([
        E(".wh.gone"), E("etc", "dir"), E("etc/.wh.motd"),
        E("opaque", "dir"), E("opaque/.wh..wh..opq"), E("opaque/kept", data=b"k"),
        E("implicit/.wh..wh..opq"),
        E(".wh..wh..opq"),
        E(".wh..wh.plnk", "dir"), E(".wh..wh.plnk/123.456", data=b"aufs"),
        E("file", data=b"f"), E(".wh.file"),  # the same layer's file is kept
    ])
    st = {}
    unpack(data, work.dest, stats=st)
    d = work.dest
    for path in ("gone", "etc/motd"):
        s = os.lstat(f"{d}/{path}")
        assert stat.S_ISCHR(s.st_mode) and s.st_rdev == 0, path
    assert not os.path.lexists(f"{d}/.wh.gone")
    assert os.getxattr(f"{d}/opaque", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(f"{d}/implicit", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(d, "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(f"{d}/opaque/.wh..wh..opq")
    assert open(f"{d}/opaque/kept").read() == "k"
    assert not os.path.lexists(f"{d}/.wh..wh.plnk")
    assert open(f"{d}/file").read() == "f"
    assert st["whiteouts"] == 3 and st["opaques"] == 3


@pytest.mark.parametrize("name,reason", [(".wh.", "invalid whiteout"),
                                         (".wh..", "invalid whiteout"),
                                         ("a/.wh...", "invalid whiteout"),
                                         (".wh.dir/x", "whiteout used as a directory")])
def test_bad_whiteout_names(work, name, reason):
    reject(make_tar([E(name)]), work.dest, entry=name, reason=reason)


def test_whiteout_that_traverses_stays_inside(work):
    # ".wh.../../x" cleans to "x": a plain file inside the layer, nothing else
    unpack(make_tar([E(".wh.../../x", data=b"x"), E("a/.wh.../../../y", data=b"y")]),
           work.dest)
    assert sorted(os.listdir(work.dest)) == ["x", "y"]
    reject(make_tar([E(".wh.../../../x")]), work.dest, entry=".wh.../../../x",
           reason="escapes")


# ----------------------------------------------------------------- hostile input

def test_dotdot_is_rejected(work):
    for name in ("../evil", "a/../../evil", "./../evil", "a/b/../../../evil"):
        reject(make_tar([E(name, data=b"evil")]), work.dest, entry=name,
               reason="path escapes the layer root")


def test_dotdot_inside_is_collapsed(work):
    unpack(make_tar([E("a/b/../c", data=b"c")]), work.dest)
    assert open(f"{work.dest}/a/c").read() == "c"


def test_absolute_names_are_clamped(work):
    unpack(make_tar([E("/abs/evil", data=b"evil"), E("//abs2", data=b"2")]), work.dest)
    assert open(f"{work.dest}/abs/evil").read() == "evil"
    assert open(f"{work.dest}/abs2").read() == "2"


def test_write_through_symlink_to_root_stays_inside(work):
    data = make_tar([E("link", "symlink", link="/"),
                     E("link/etc/passwd", data=b"root::0:0::/:/bin/sh\n"),
                     E("up", "symlink", link="../.."),
                     E("up/x", data=b"through ../.."),
                     E("tmp", "dir"),
                     E("deep", "symlink", link="../../../../../../tmp"),
                     E("deep/evil", data=b"evil"),
                     E("etcdir", "symlink", link="/etc"),
                     E("etcdir/shadow", data=b"evil")])
    unpack(data, work.dest)
    d = work.dest
    assert open(f"{d}/etc/passwd").read() == "root::0:0::/:/bin/sh\n"
    assert open(f"{d}/x").read() == "through ../.."
    assert open(f"{d}/tmp/evil").read() == "evil"
    assert open(f"{d}/etc/shadow").read() == "evil"
    assert os.readlink(f"{d}/link") == "/"


def test_write_through_dangling_symlink_fails_inside(work):
    # the link resolves (inside the layer) to a directory that does not exist
    reject(make_tar([E("dangling", "symlink", link="../../../../nowhere"),
                     E("dangling/evil", data=b"evil")]), work.dest, entry="dangling/evil",
           reason="No such file")
    assert not os.path.exists("/nowhere")


def test_symlink_as_last_component_is_replaced_not_followed(work):
    outside = os.path.join(work.sentinel, "keep")
    data = make_tar([E("evil", "symlink", link=outside), E("evil", data=b"pwned"),
                     E("evil2", "symlink", link=outside), E("evil2", "dir", mode=0o777),
                     E("evil3", "symlink", link=outside),
                     E("evil3", "chr", dev=(1, 3)),
                     E("evil4", "symlink", link=work.sentinel),
                     E("evil4", "hardlink", link="evil")])
    unpack(data, work.dest)
    assert open(f"{work.dest}/evil").read() == "pwned"
    assert os.path.isdir(f"{work.dest}/evil2") and not os.path.islink(f"{work.dest}/evil2")


def test_metadata_never_follows_symlinks(work):
    outside = os.path.join(work.sentinel, "keep")
    before = os.lstat(outside)
    data = make_tar([E("s", "symlink", link=outside, uid=1234, gid=1234, mtime=1),
                     E("sd", "symlink", link=work.sentinel, mtime=2,
                       pax={"SCHILY.xattr.user.x": "y"})])
    unpack(data, work.dest)
    after = os.lstat(outside)
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns) == (
        before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns)
    assert os.lstat(f"{work.dest}/s").st_uid == 1234
    assert os.lstat(f"{work.dest}/s").st_mtime == 1
    assert "user.x" not in os.listxattr(work.sentinel)


def test_hostile_hardlinks(work):
    # an absolute target is clamped into the layer, where it does not exist
    reject(make_tar([E("h", "hardlink", link="/etc/passwd")]), work.dest, entry="h",
           reason="hardlink target not in layer")
    reject(make_tar([E("etc", "dir"), E("h", "hardlink", link="/etc/passwd")]), work.dest,
           entry="h", reason="hardlink target not in layer")
    reject(make_tar([E("h", "hardlink", link="../../x")]), work.dest, entry="h",
           reason="outside layer")
    reject(make_tar([E("h", "hardlink", link="../" + os.path.basename(work.sentinel) +
                       "/keep")]), work.dest, entry="h", reason="outside layer")
    # through a symlink (to the host's /etc, or inside the layer): refused
    reject(make_tar([E("etc", "symlink", link="/etc"),
                     E("h", "hardlink", link="etc/passwd")]), work.dest, entry="h",
           reason="through symlink")
    reject(make_tar([E("real", "dir"), E("real/f", data=b"f"),
                     E("alias", "symlink", link="real"),
                     E("h", "hardlink", link="alias/f")]), work.dest, entry="h",
           reason="through symlink")
    reject(make_tar([E("h", "hardlink", link="")]), work.dest, entry="h")
    reject(make_tar([E("h", "hardlink", link=".")]), work.dest, entry="h")


def test_hardlink_to_a_symlink_links_the_symlink(work):
    unpack(make_tar([E("s", "symlink", link="/etc/passwd"), E("h", "hardlink", link="s"),
                     E("clamped", "hardlink", link="/s")]), work.dest)
    assert os.readlink(f"{work.dest}/h") == "/etc/passwd"
    assert os.lstat(f"{work.dest}/h").st_ino == os.lstat(f"{work.dest}/s").st_ino
    assert os.lstat(f"{work.dest}/clamped").st_ino == os.lstat(f"{work.dest}/s").st_ino


def test_forbidden_xattrs_are_dropped(work):
    data = make_tar([
        E("f", data=b"x", pax={"SCHILY.xattr.trusted.overlay.opaque": "y",
                               "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                               "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                               "SCHILY.xattr.security.selinux": "system_u",
                               "SCHILY.xattr.user.overlay.origin": "x",
                               "SCHILY.xattr.user.ok": "1"}),
        E("d", "dir", pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}),
    ])
    st = {}
    unpack(data, work.dest, stats=st)
    names = os.listxattr(f"{work.dest}/f")
    assert names == ["user.ok"], names
    assert not any(n.startswith("trusted.overlay") for n in os.listxattr(f"{work.dest}/d"))
    assert st["skipped"] == 6


@pytest.mark.parametrize("record", [b"18446744073709551621 path=x\n", b"99999999999999999999 a=b\n",
                                    b"5 a=b\n", b"12 path=abc", b"0 x=y\n", b"8 =abc\n"])
def test_malformed_pax_records(work, record):
    ti = tarfile.TarInfo("pax")
    ti.type = tarfile.XHDTYPE
    ti.size = len(record)
    body = ti.tobuf(tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512)
    data = body + make_tar([E("f", data=b"1")])
    reject(data, work.dest, reason="invalid PAX header")


def test_nul_in_names_rejected(work):
    data = make_tar([E("a", data=b"", pax={"path": "ok\x00/../../evil"})])
    reject(data, work.dest, reason="NUL")


def test_unsupported_type_and_bad_header(work):
    data = bytearray(make_tar([E("f", data=b"")]))
    data[156:157] = b"Z"
    chk = sum(data[:148]) + 8 * 32 + sum(data[156:512])
    data[148:156] = b"%06o\0 " % chk
    reject(bytes(data), work.dest, entry="f", reason="unsupported entry type")


# ----------------------------------------------------------------- limits, truncation

def test_truncated_streams(work):
    data = make_tar([E("a", data=b"A" * 5000), E("b", data=b"B" * 100)])
    reject(data[:512 + 2000], work.dest, entry="a", reason="truncated stream")
    reject(data[:512 + 5120 + 300], work.dest, reason="truncated stream")  # inside b's header
    end = 512 + 5120 + 512 + 512
    reject(data[:end], work.dest, reason="no end-of-archive")             # no zero blocks
    unpack(data[:end + 512], work.dest)                                    # a lone zero block
    reject(b"", work.dest, reason="truncated")


def test_truncated_gzip_and_zstd(work):
    data = make_tar([E("a", data=os.urandom(200000))])
    gz = gzip.compress(data)
    reject(gz[:len(gz) // 2], work.dest, reason="truncated")
    if zstandard is not None:
        zs = zstandard.ZstdCompressor().compress(data)
        reject(zs[:len(zs) // 2], work.dest, reason="truncated")


def test_gzip_bomb_stops_at_the_limit(work):
    data = make_tar([E("zeros", data=bytes(64 << 20))])
    gz = gzip.compress(data, compresslevel=9)
    assert len(gz) < 200000
    msg = reject(gz, work.dest, reason="max_stream_bytes", max_stream_bytes=8 << 20)
    assert "8388608" in msg
    # and the file never grew past the limit
    size = os.lstat(f"{work.dest}/zeros").st_size if os.path.exists(f"{work.dest}/zeros") else 0
    assert size <= 8 << 20


def test_limits(work):
    reject(make_tar([E("f", data=b"x" * 100)]), work.dest, entry="f", reason="file too large",
           max_file_size=99)
    reject(make_tar([E("f", data=b"x" * 60), E("g", data=b"y" * 60)]), work.dest, entry="g",
           reason="max_bytes", max_bytes=100)
    reject(make_tar([E(f"f{i}") for i in range(11)]), work.dest, entry="f10",
           reason="too many entries", max_entries=10)
    reject(make_tar([E("a" * 200)]), work.dest, reason="name too long", max_path=100)
    reject(make_tar([E("s", "symlink", link="t" * 200)]), work.dest, entry="s",
           reason="name too long", max_path=100)
    reject(make_tar([E("x", pax={"SCHILY.xattr.user.big": "v" * 5000})]), work.dest,
           entry="x", reason="xattr too large", max_xattr_size=4096)
    reject(make_tar([E("p", pax={"comment": "c" * 10000})]), work.dest,
           reason="extension header too large", max_header_size=4096)
    reject(make_tar([E(f"d{i}", "dir") for i in range(100)]), work.dest,
           reason="too many directories", max_meta_memory=1000)


def test_huge_declared_size_is_rejected_before_writing(work):
    ti = tarfile.TarInfo("huge")
    ti.size = 1 << 40
    header = ti.tobuf(tarfile.GNU_FORMAT)
    reject(header + bytes(4096), work.dest, entry="huge", reason="file too large")
    assert not os.path.exists(f"{work.dest}/huge")


# ----------------------------------------------------------------- sparse files

def _sparse_source(path, size, pieces):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in pieces:
            f.seek(off)
            f.write(data)


@pytest.mark.skipif(not GNU_TAR, reason="GNU tar not installed")
@pytest.mark.parametrize("fmt", [["--format=gnu"], ["--format=posix", "--sparse-version=0.0"],
                                 ["--format=posix", "--sparse-version=0.1"],
                                 ["--format=posix", "--sparse-version=1.0"]])
def test_sparse_files_stay_sparse(work, fmt):
    src = os.path.join(work.base, "src")
    os.mkdir(src)
    try:
        pieces = [(0, b"head" * 1000), (10 << 20, os.urandom(70000)),
                  ((32 << 20) - 3, b"end")]
        _sparse_source(f"{src}/sparse", 32 << 20, pieces)
        _sparse_source(f"{src}/holes-only", 5 << 20, [])
        # many segments: old GNU extension blocks, long PAX maps
        frag = [(i * 40960 + 8192, bytes([65 + i % 26]) * 100) for i in range(40)]
        _sparse_source(f"{src}/frag", 2 << 20, frag)
        tarpath = os.path.join(work.base, "sparse.tar")
        gnu_tar(src, tarpath, "--sparse", *fmt)
        with open(tarpath, "rb") as f:
            data = f.read()
    finally:
        shutil.rmtree(src)
        os.unlink(os.path.join(work.base, "sparse.tar"))
    assert len(data) < 1 << 20
    unpack(data, work.dest)
    st = os.lstat(f"{work.dest}/sparse")
    assert st.st_size == 32 << 20
    assert st.st_blocks * 512 < 1 << 20
    with open(f"{work.dest}/sparse", "rb") as f:
        for off, piece in pieces:
            f.seek(off)
            assert f.read(len(piece)) == piece
        f.seek(5000)
        assert f.read(100) == bytes(100)
    st = os.lstat(f"{work.dest}/holes-only")
    assert st.st_size == 5 << 20 and st.st_blocks == 0
    st = os.lstat(f"{work.dest}/frag")
    assert st.st_size == 2 << 20 and st.st_blocks * 512 <= 41 * 4096
    with open(f"{work.dest}/frag", "rb") as f:
        content = f.read()
    expected = bytearray(2 << 20)
    for off, piece in frag:
        expected[off:off + len(piece)] = piece
    assert content == expected


def test_zero_runs_of_a_plain_tar_become_holes(work):
    content = b"a" * 5000 + bytes(8 << 20) + b"z" * 10 + bytes(1 << 20)
    data = make_tar([E("zeros", data=content), E("all", data=bytes(3 << 20))])
    unpack(data, work.dest)
    st = os.lstat(f"{work.dest}/zeros")
    assert st.st_size == len(content) and st.st_blocks * 512 < 64 << 10
    with open(f"{work.dest}/zeros", "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(content).digest()
    st = os.lstat(f"{work.dest}/all")
    assert st.st_size == 3 << 20 and st.st_blocks == 0
    shutil.rmtree(work.dest)
    os.mkdir(work.dest)
    unpack(data, work.dest, detect_holes=False)
    assert os.lstat(f"{work.dest}/all").st_blocks * 512 >= 3 << 20


def _pax_sparse_1tb(real=b"x" * 4096, claim=None):
    """A PAX 1.0 sparse entry: apparent size 1 TiB, a few real bytes at its end."""
    size = 1 << 40
    off = size - len(real)
    claimed = len(real) if claim is None else claim
    sparse_map = f"1\n{off}\n{claimed}\n".encode()
    sparse_map += bytes(-len(sparse_map) % 512)
    ti = tarfile.TarInfo("./GNUSparseFile.0/huge")
    ti.size = len(sparse_map) + claimed
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                      "GNU.sparse.name": "huge", "GNU.sparse.realsize": str(size)}
    out = ti.tobuf(tarfile.PAX_FORMAT) + sparse_map + real
    out += bytes(-len(out) % 512) + bytes(1024)
    return out


def test_sparse_entry_claiming_a_terabyte(work):
    data = _pax_sparse_1tb()
    unpack(data, work.dest)
    st = os.lstat(f"{work.dest}/huge")
    assert st.st_size == 1 << 40
    assert st.st_blocks * 512 <= 64 << 10
    with open(f"{work.dest}/huge", "rb") as f:
        f.seek((1 << 40) - 4096)
        assert f.read() == b"x" * 4096


def test_sparse_entry_with_unbounded_real_data_is_rejected(work):
    # the map claims 1 TiB of real data: refused before anything is written
    data = _pax_sparse_1tb(real=b"", claim=1 << 40)
    reject(data, work.dest, entry="huge", reason="file too large")
    # a map that does not match the data it announces
    ti = tarfile.TarInfo("bad")
    ti.size = 10
    ti.pax_headers = {"GNU.sparse.major": "0", "GNU.sparse.minor": "1",
                      "GNU.sparse.size": "100", "GNU.sparse.map": "0,50",
                      "GNU.sparse.numblocks": "1"}
    bad = ti.tobuf(tarfile.PAX_FORMAT) + b"y" * 10 + bytes(502) + bytes(1024)
    reject(bad, work.dest, entry="bad", reason="invalid sparse map")
    ti.pax_headers["GNU.sparse.map"] = "90,20"
    ti.size = 20
    bad = ti.tobuf(tarfile.PAX_FORMAT) + b"y" * 20 + bytes(492) + bytes(1024)
    reject(bad, work.dest, entry="bad", reason="invalid sparse map")


# ----------------------------------------------------------------- compression, diff_id

def _compress(kind, data):
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


@pytest.mark.parametrize("kind", ["tar", "gzip", "zstd"])
@pytest.mark.parametrize("threads", [True, False])
def test_compressions_and_diff_id(work, kind, threads):
    if kind == "zstd" and zstandard is None:
        pytest.skip("zstandard not installed")
    data = make_tar([E("d", "dir")] + [E(f"d/f{i}", data=os.urandom(i * 1000))
                                       for i in range(50)])
    blob = _compress(kind, data)
    path = os.path.join(work.base, "blob")
    with open(path, "wb") as f:
        f.write(blob)
    try:
        st = {}
        did, size = unpack_layer(path, work.dest, expected_diff_id=diff_id(data),
                                 threads=threads, stats=st)
        assert did == diff_id(data)
        assert size == sum(i * 1000 for i in range(50))
        assert st["compression"] == kind and st["tar_size"] == len(data)
        assert st["files"] == 50
        with open(f"{work.dest}/d/f7", "rb") as f:
            assert len(f.read()) == 7000
        # a media type decides too; a file object works as the source
        shutil.rmtree(work.dest)
        os.mkdir(work.dest)
        mt = {"tar": "application/vnd.oci.image.layer.v1.tar",
              "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
              "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}[kind]
        with open(path, "rb") as f:
            assert unpack_layer(f, work.dest, media_type=mt, threads=threads)[0] == did
    finally:
        os.unlink(path)


def test_diff_id_mismatch_is_rejected(work):
    data = make_tar([E("f", data=b"1")])
    wrong = "sha256:" + "0" * 64
    msg = reject(gzip.compress(data), work.dest, reason="diff_id mismatch",
                 expected_diff_id=wrong)
    assert diff_id(data) in msg
    reject(data, work.dest, reason="invalid diff_id", expected_diff_id="sha256:xyz")


def test_verified_plain_blob_is_not_hashed_twice(work):
    data = make_tar([E("f", data=b"1")])
    did = diff_id(data)
    # the caller vouches for the blob's digest: it is the diff_id of a plain tar
    assert unpack(data, work.dest, source_digest=did, expected_diff_id=did)[0] == did
    shutil.rmtree(work.dest)
    os.mkdir(work.dest)
    wrong = "sha256:" + "1" * 64
    reject(data, work.dest, reason="diff_id mismatch", source_digest=wrong,
           expected_diff_id=did)
    # a compressed blob's digest is not its diff_id: still computed and checked
    shutil.rmtree(work.dest)
    os.mkdir(work.dest)
    gz = gzip.compress(data)
    assert unpack(gz, work.dest, source_digest=diff_id(gz))[0] == did


def test_progress_and_stats(work):
    data = make_tar([E(f"f{i}", data=os.urandom(100000)) for i in range(30)])
    gz = gzip.compress(data, compresslevel=1)
    seen = []
    st = {}
    unpack(gz, work.dest, progress=seen.append, stats=st)
    assert seen and seen[-1] == len(gz) and seen == sorted(seen)
    assert st["files"] == 30 and st["bytes"] == 3000000 and st["tar_size"] == len(data)


def test_chown_false_keeps_the_caller_as_owner(work):
    unpack(make_tar([E("f", data=b"1", uid=1000, gid=1000), E("d", "dir", uid=5)]), work.dest,
           chown=False)
    assert os.lstat(f"{work.dest}/f").st_uid == os.geteuid()
    assert os.lstat(f"{work.dest}/d").st_uid == os.geteuid()


def test_zlib_fallback(work, monkeypatch):
    monkeypatch.setitem(sys.modules, "isal", None)
    monkeypatch.setitem(sys.modules, "isal.igzip", None)
    from pyrt.store import unpack as mod
    assert mod.gzip_backend() == "zlib"
    data = make_tar([E("f", data=b"zlib")])
    st = {}
    assert unpack(gzip.compress(data), work.dest, stats=st)[0] == diff_id(data)
    assert st["gzip_backend"] == "zlib"


def test_missing_zstandard_is_a_clear_error(work, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)
    reject(b"\x28\xb5\x2f\xfd" + bytes(100), work.dest, reason="pip install zstandard")


def test_detect_compression():
    assert detect_compression(None, b"\x1f\x8b\x08\x00") == "gzip"
    assert detect_compression(None, b"\x28\xb5\x2f\xfd") == "zstd"
    assert detect_compression(None, b"etc/") == "tar"
    assert detect_compression("application/vnd.oci.image.layer.v1.tar+gzip", b"") == "gzip"
    assert detect_compression("application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    assert detect_compression("application/vnd.oci.image.layer.v1.tar+zstd") == "zstd"
    assert detect_compression("application/vnd.oci.image.layer.v1.tar", b"\x1f\x8b") == "gzip"
    with pytest.raises(LayerError, match="unsupported media type"):
        detect_compression("application/vnd.oci.image.layer.v1.tar+bzip2")


def test_invalid_gzip_is_a_layer_error(work):
    reject(b"\x1f\x8b\x08\x00" + os.urandom(1000), work.dest, reason="gzip")


# ----------------------------------------------------------------- parallel

def test_unpack_layers_parallel(work):
    layers = []
    for i in range(4):
        data = make_tar([E(f"layer{i}", "dir")] + [E(f"layer{i}/f{j}", data=os.urandom(5000))
                                                    for j in range(40)])
        dest = os.path.join(work.dest, f"s{i}")
        os.mkdir(dest)
        layers.append((data, dest))
    jobs = [{"source": io.BytesIO(gzip.compress(d)), "dest": dest,
             "expected_diff_id": diff_id(d)} for d, dest in layers]
    results = unpack_layers_parallel(jobs)
    assert [r[0] for r in results] == [diff_id(d) for d, _ in layers]
    for i, (_, dest) in enumerate(layers):
        assert len(os.listdir(f"{dest}/layer{i}")) == 40


def test_unpack_layers_parallel_reports_the_first_failure(work):
    good = make_tar([E("f", data=b"ok")])
    bad = make_tar([E("../evil", data=b"evil")])
    dests = []
    for i in range(3):
        dests.append(os.path.join(work.dest, f"s{i}"))
        os.mkdir(dests[-1])
    jobs = [{"source": io.BytesIO(good), "dest": dests[0]},
            {"source": io.BytesIO(bad), "dest": dests[1]},
            {"source": io.BytesIO(good), "dest": dests[2]}]
    with pytest.raises(LayerError, match=r'layer entry "\.\./evil"'):
        unpack_layers_parallel(jobs)
    jobs = [{"source": io.BytesIO(good), "dest": dests[2], "expected_diff_id": diff_id(bad)}]
    with pytest.raises(LayerError, match="diff_id mismatch"):
        unpack_layers_parallel(jobs)
    assert unpack_layers_parallel([]) == []


def test_parallel_failure_stops_the_other_layers(work):
    import threading
    big = make_tar([E(f"f{i}", data=os.urandom(1 << 20)) for i in range(40)])
    bad = make_tar([E("a", data=b"a"), E("../evil", data=b"evil")])
    dests = [os.path.join(work.dest, f"s{i}") for i in range(2)]
    for d in dests:
        os.mkdir(d)
    jobs = [{"source": io.BytesIO(gzip.compress(big, compresslevel=1)), "dest": dests[0]},
            {"source": io.BytesIO(bad), "dest": dests[1]}]
    result = []

    def run():
        try:
            unpack_layers_parallel(jobs, threads=True)
        except LayerError as e:
            result.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert not t.is_alive(), "unpack_layers_parallel hangs after a failure"
    assert result and "../evil" in str(result[0])


# ----------------------------------------------------------------- GNU tar layers

@pytest.mark.skipif(not GNU_TAR, reason="GNU tar not installed")
@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_tar_tree_roundtrip(work, fmt):
    src = os.path.join(work.base, "src")
    try:
        os.makedirs(f"{src}/usr/bin")
        os.makedirs(f"{src}/var/empty")
        with open(f"{src}/usr/bin/tool", "wb") as f:
            f.write(os.urandom(100000))
        os.chmod(f"{src}/usr/bin/tool", 0o4751)
        os.link(f"{src}/usr/bin/tool", f"{src}/usr/bin/tool2")
        os.symlink("usr/bin", f"{src}/bin")
        os.mkfifo(f"{src}/var/fifo")
        os.chown(f"{src}/var/empty", 33, 33)
        os.setxattr(f"{src}/usr/bin/tool", "user.origin", b"gnu")
        name = "n" * 150
        with open(f"{src}/{name}", "w") as f:
            f.write("long")
        os.utime(f"{src}/var/empty", ns=(1, 1000000000123))
        tarpath = os.path.join(work.base, "t.tar")
        xattrs = ["--xattrs", "--xattrs-include=user.*"] if fmt == "posix" else []
        gnu_tar(src, tarpath, f"--format={fmt}", *xattrs)  # (--xattrs means PAX records)
        with open(tarpath, "rb") as f:
            data = f.read()
        unpack(data, work.dest)
        for path in ("usr/bin/tool", "usr/bin/tool2", "bin", "var/fifo", "var/empty", name):
            a, b = os.lstat(f"{src}/{path}"), os.lstat(f"{work.dest}/{path}")
            assert (a.st_mode, a.st_uid, a.st_gid, a.st_size) == (
                b.st_mode, b.st_uid, b.st_gid, b.st_size), path
            if not stat.S_ISDIR(a.st_mode):
                assert int(a.st_mtime) == int(b.st_mtime), path
        mtime = os.lstat(f"{work.dest}/var/empty").st_mtime_ns
        assert mtime == (1000000000123 if fmt == "posix" else 1000000000000)
        assert os.lstat(f"{work.dest}/usr/bin/tool").st_ino == os.lstat(
            f"{work.dest}/usr/bin/tool2").st_ino
        if fmt == "posix":
            assert os.getxattr(f"{work.dest}/usr/bin/tool", "user.origin") == b"gnu"
        with open(f"{src}/usr/bin/tool", "rb") as a, open(f"{work.dest}/usr/bin/tool",
                                                          "rb") as b:
            assert a.read() == b.read()
    finally:
        shutil.rmtree(src, ignore_errors=True)
        if os.path.exists(os.path.join(work.base, "t.tar")):
            os.unlink(os.path.join(work.base, "t.tar"))


@pytest.mark.skipif(not shutil.which("bsdtar"), reason="bsdtar not installed")
def test_bsdtar_pax_layer(work):
    src = os.path.join(work.base, "src")
    tarpath = os.path.join(work.base, "b.tar")
    try:
        os.makedirs(f"{src}/etc")
        with open(f"{src}/etc/conf", "w") as f:
            f.write("conf")
        os.setxattr(f"{src}/etc/conf", "user.checksum", b"\x00\x01binary")
        os.symlink("conf", f"{src}/etc/link")
        os.link(f"{src}/etc/conf", f"{src}/etc/hard")
        subprocess.run(["bsdtar", "--format=pax", "--xattrs", "-C", src, "-cf", tarpath, "."],
                       check=True)
        with open(tarpath, "rb") as f:
            data = f.read()
    finally:
        shutil.rmtree(src, ignore_errors=True)
        if os.path.exists(tarpath):
            os.unlink(tarpath)
    unpack(data, work.dest)
    assert open(f"{work.dest}/etc/conf").read() == "conf"
    assert os.getxattr(f"{work.dest}/etc/conf", "user.checksum") == b"\x00\x01binary"
    assert os.readlink(f"{work.dest}/etc/link") == "conf"
    assert os.lstat(f"{work.dest}/etc/hard").st_ino == os.lstat(f"{work.dest}/etc/conf").st_ino


# ----------------------------------------------------------------- mutated input

def test_mutated_tars_fail_cleanly_and_stay_inside(work):
    """Corrupted headers, numbers, PAX records and truncations: each either
    unpacks or raises LayerError, and nothing lands outside dest."""
    import random
    from pyrt._core import Unpacker
    rng = random.Random(1234)
    seeds = [
        make_tar([E("d", "dir"), E("d/f", data=b"x" * 3000, pax={"SCHILY.xattr.user.a": "b"}),
                  E("d/l", "symlink", link="../../../etc"), E("d/h", "hardlink", link="d/f"),
                  E("c", "chr", dev=(1, 3)), E(".wh.x"), E("d/.wh..wh..opq"),
                  E("l2", "symlink", link="/"), E("l2/etc/x", data=b"e")]),
        make_tar([E("n" * 150, data=b"long"), E("m" * 120, "symlink", link="t" * 130)],
                 fmt=tarfile.GNU_FORMAT),
        _pax_sparse_1tb(),
    ]
    interesting = [0, 0x80, 0xff, ord("/"), ord("."), ord("\n"), ord("="), ord(" "), ord("9"),
                   ord("x"), ord("L"), ord("S"), ord("g"), ord("1"), ord("2"), ord("5")]
    outcomes = {"ok": 0, "rejected": 0}
    for i in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            blk = rng.randrange(len(data) // 512) * 512
            r = rng.random()
            if r < 0.7:
                data[blk + rng.randrange(512)] = rng.choice(interesting)
                head = data[blk:blk + 512]
                head[148:156] = b" " * 8
                data[blk + 148:blk + 156] = b"%06o\0 " % sum(head)
            elif r < 0.85:
                del data[rng.randrange(len(data)):]
            else:
                pos = rng.randrange(len(data))
                data[pos:pos] = rng.choice([b"../", b"99 path=../../x\n", b"\0" * 512])
            if len(data) < 1024:
                break
        dest = os.path.join(work.dest, str(i))
        os.mkdir(dest)
        u = Unpacker(dest, max_bytes=1 << 20, max_file_size=1 << 20)
        try:
            for off in range(0, len(data), 777):
                u.feed(data[off:off + 777])
            u.finish()
            outcomes["ok"] += 1
        except LayerError as e:
            assert str(e).startswith("layer"), e
            outcomes["rejected"] += 1
        finally:
            u.close()
        shutil.rmtree(dest)
    assert outcomes["ok"] and outcomes["rejected"]
