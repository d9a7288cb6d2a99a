"""Escapes from a container onto the host, each attacked the way a hostile image,
a hostile root process in a container or a hostile registry would: setuid files
copied out, mounts over /proc in an OCI config, pid files, images for another
platform, credentials sent where they must not go, builds on the host's network."""
from __future__ import annotations

import io
import os
import stat
import tarfile

from test_lifecycle import PYRT, base_tar, error, ok, store  # noqa: F401  (fixtures)


def _setuid_tar(uid: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"#!/bin/sh\necho hi\n"
        ti = tarfile.TarInfo("suid")
        ti.size, ti.uid, ti.gid, ti.mode = len(data), uid, uid, 0o6755
        t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_cp_out_never_makes_a_setuid_root_file(store, tmp_shm):
    """A setuid file of uid 1000 in the container, copied out by root without -a,
    becomes root's: it must lose setuid and setgid (as cp does). With -a it keeps
    its owner, and may keep its bits."""
    c = store.rt.containers.create("base:1", ["true"], name="x")
    c.put_archive("/tmp", _setuid_tar(1000))
    out = os.path.join(tmp_shm, "out")
    ok(store.cli("cp", "x:/tmp/suid", out))
    st = os.lstat(out)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755, oct(st.st_mode)
    ok(store.cli("cp", "x:/tmp/.", os.path.join(tmp_shm, "tree")))  # inside a directory too
    st = os.lstat(os.path.join(tmp_shm, "tree", "suid"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755, oct(st.st_mode)
    ok(store.cli("cp", "-a", "x:/tmp/suid", os.path.join(tmp_shm, "kept")))
    st = os.lstat(os.path.join(tmp_shm, "kept"))
    assert st.st_uid == 1000 and stat.S_IMODE(st.st_mode) & 0o777 == 0o755


def test_cp_in_never_makes_a_setuid_root_file(store, tmp_shm):
    """The same on the way in: a host user's setuid file copied into a container
    without -a is root's there, and not setuid."""
    src = os.path.join(tmp_shm, "suid")
    with open(src, "w") as f:
        f.write("#!/bin/sh\n")
    os.chown(src, 1234, 1234)
    os.chmod(src, 0o6755)
    c = store.rt.containers.create("base:1", ["true"], name="y")
    ok(store.cli("cp", src, "y:/tmp/"))
    chunks, _ = c.get_archive("/tmp/suid")
    m = tarfile.open(fileobj=io.BytesIO(b"".join(chunks))).getmember("suid")
    assert m.uid == 0 and m.mode == 0o755, oct(m.mode)
