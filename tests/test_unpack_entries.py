"""The layer unpacker (csrc/unpack.c, pyrt._core.Unpacker, pyrt.store.unpack): entry types
and their metadata, tar formats, whiteouts; real tars made with Python's tarfile, unpacked
on tmpfs (helpers in unpacktools.py)."""
import io
import os
import shutil
import stat
import tarfile

import pytest

from pyrt.errors import LayerError
from unpacktools import E, make_tar, unpack, diff_id, reject
from unpacktools import work  # noqa: F401,F811 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, "
                                "trusted.* xattrs)")


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
