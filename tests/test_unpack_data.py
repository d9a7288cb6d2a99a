"""The layer unpacker's data paths: sparse files, compressions and diff_id, parallel
unpacking of layers, layers written by GNU tar and bsdtar."""
import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest

from pyrt.errors import LayerError
from pyrt.store.unpack import (detect_compression, unpack_layer, unpack_layers_parallel)
from unpacktools import GNU_TAR, zstandard, E, make_tar, unpack, diff_id, reject, gnu_tar, pax_sparse_1tb
from unpacktools import work  # noqa: F401,F811 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, "
                                "trusted.* xattrs)")


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


def test_sparse_entry_claiming_a_terabyte(work):
    data = pax_sparse_1tb()
    unpack(data, work.dest)
    st = os.lstat(f"{work.dest}/huge")
    assert st.st_size == 1 << 40
    assert st.st_blocks * 512 <= 64 << 10
    with open(f"{work.dest}/huge", "rb") as f:
        f.seek((1 << 40) - 4096)
        assert f.read() == b"x" * 4096


def test_sparse_entry_with_unbounded_real_data_is_rejected(work):
    # the map claims 1 TiB of real data: refused before anything is written
    data = pax_sparse_1tb(real=b"", claim=1 << 40)
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
