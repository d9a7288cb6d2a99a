"""Helpers shared by the test_unpack_* modules: tar entries and archives made with
tarfile or GNU tar, unpack and reject wrappers, the `work` fixture (a destination and
a snapshot of the host around it)."""
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import pytest
from pyrt.errors import LayerError
from pyrt.store.unpack import unpack_layer


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


def pax_sparse_1tb(real=b"x" * 4096, claim=None):
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
