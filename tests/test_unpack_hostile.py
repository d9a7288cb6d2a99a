"""The layer unpacker against hostile and broken input: names that climb out, symlink
and hardlink tricks, forbidden xattrs, malformed headers, truncated and mutated streams,
limits and bombs; everything stays inside the destination."""
import gzip
import os
import shutil
import tarfile

import pytest

from pyrt.errors import LayerError
from unpacktools import zstandard, E, make_tar, unpack, reject, pax_sparse_1tb
from unpacktools import work  # noqa: F401,F811 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, "
                                "trusted.* xattrs)")


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


def test_fuse_overlayfs_xattrs_are_dropped(work):
    """fuse-overlayfs keeps its own state in user.fuseoverlayfs.* and reads it from
    the lower layers too: a layer that brings user.fuseoverlayfs.opaque would hide
    the layers below a directory from a fuse-overlayfs container only (the kernel's
    overlay, pyrt's diff and commit would still show them), so an image would look
    one way under one storage driver and another way under the other. Such xattrs
    are never image content (pyrt's own layers drop them): not unpacked."""
    data = make_tar([
        E("d", "dir", pax={"SCHILY.xattr.user.fuseoverlayfs.opaque": "y", "SCHILY.xattr.user.ok": "1"}),
        E("f", data=b"x", pax={"SCHILY.xattr.user.fuseoverlayfs.override_stat": "0:0:4755",
                               "SCHILY.xattr.user.fuseoverlayfs.origin": "x"}),
    ])
    st = {}
    unpack(data, work.dest, stats=st)
    assert os.listxattr(f"{work.dest}/d") == ["user.ok"]
    assert os.listxattr(f"{work.dest}/f") == []
    assert st["skipped"] == 3


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
        pax_sparse_1tb(),
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
