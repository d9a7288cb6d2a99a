"""Escapes from a container onto the host, each attacked the way a hostile image,
a hostile root process in a container or a hostile registry would: setuid files
copied out, mounts over /proc in an OCI config, pid files, images for another
platform, credentials sent where they must not go, builds on the host's network."""
from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from clitools import error, ok
from imagetools import OCIBuilder



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


# -- pyrt-runtime: mounts over /proc, the pid file -----------------------------------------

@pytest.fixture
def rt(oci_rt):
    """The `pyrt-runtime` command on a state root of the test's own (conftest's `oci_rt`)."""
    return oci_rt


def test_runtime_refuses_mounts_over_proc(rt, make_bundle, rootfs_copy, tmp_shm):
    """A bind mount at /proc (or below it) would hide the container's own /proc
    (and its masked paths) behind whatever the bundle names: refused, as runc
    does, also when a symlink in the rootfs leads there."""
    fake = os.path.join(tmp_shm, "fakeproc")
    os.mkdir(fake)
    os.symlink("/proc/sys", os.path.join(rootfs_copy, "sneaky"))
    for dest in ("/proc", "/proc/", "proc", "/proc/sys/kernel", "/proc/self/../sys", "/sneaky/kernel"):
        bundle = make_bundle(["true"], lambda c: c["mounts"].append(
            {"destination": dest, "type": "bind", "source": fake, "options": ["rbind"]}), root=rootfs_copy)
        cid = rt.new_id()
        p = rt("run", "--bundle", bundle, cid)
        assert p.returncode == 1, (dest, p.stdout, p.stderr)
        assert b"cannot be mounted because it is" in p.stderr, (dest, p.stderr)
        assert not os.path.exists(os.path.join(rt.root, cid))
    bundle = make_bundle(["true"], lambda c: c["mounts"].append(
        {"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}))
    p = rt("run", "--bundle", bundle, rt.new_id())
    assert p.returncode == 1 and b"not of type proc" in p.stderr, p.stderr
    # what lxcfs does stays allowed: a file over /proc/meminfo
    meminfo = os.path.join(tmp_shm, "meminfo")
    with open(meminfo, "w") as f:
        f.write("MemTotal: 1 kB\n")
    bundle = make_bundle(["cat", "/proc/meminfo"], lambda c: c["mounts"].append(
        {"destination": "/proc/meminfo", "type": "bind", "source": meminfo, "options": ["bind"]}))
    p = rt("run", "--bundle", bundle, rt.new_id())
    assert p.returncode == 0 and p.stdout == b"MemTotal: 1 kB\n", p.stderr


def test_runtime_pid_file_never_writes_through_a_planted_file(rt, make_bundle, tmp_shm):
    """The pid file goes through a temporary file: one with a name that can be
    guessed, opened without O_EXCL, writes through a symlink planted there."""
    victim = os.path.join(tmp_shm, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    piddir = os.path.join(tmp_shm, "piddir")
    os.mkdir(piddir)
    pidfile = os.path.join(piddir, "pid")
    os.symlink(victim, os.path.join(piddir, ".pid.pyrt-tmp"))  # the name used before
    bundle = make_bundle(["true"])
    p = rt("run", "--bundle", bundle, "--pid-file", pidfile, rt.new_id())
    assert p.returncode == 0, p.stderr
    assert open(victim).read() == "precious\n"
    assert not os.path.islink(pidfile) and int(open(pidfile).read()) > 0
    assert sorted(os.listdir(piddir)) == [".pid.pyrt-tmp", "pid"]  # no temp file left


# -- images for another platform ----------------------------------------------------------

def _foreign_image(store, tmp_shm, base_tar, name, **config):
    b = OCIBuilder(os.path.join(tmp_shm, f"layout-{name}"))
    with open(base_tar, "rb") as f:
        b.image([f.read()], compression=None, ref=f"{name}:1", config=config)
    b.write()
    out = b.tar(os.path.join(tmp_shm, f"{name}.tar"))
    ok(store.cli("load", "-i", out))
    return out


def test_image_for_another_os_is_refused(store, tmp_shm, base_tar):  # noqa: F811
    """An image for windows loads (and saves), as docker's pull and save do, but
    never runs: neither create nor run, CLI or API."""
    import pytest
    from pyrt.errors import InvalidArgument
    _foreign_image(store, tmp_shm, base_tar, "win", os="windows")
    msg = 'image operating system "windows" cannot be used on this platform'
    error(store.cli("create", "--name", "w1", "win:1", "true"), match=msg)
    r = store.cli("run", "--rm", "win:1", "true")
    assert r.returncode == 125 and msg in r.stderr.decode(), r
    with pytest.raises(InvalidArgument, match=msg):
        store.rt.containers.run("win:1", ["true"])
    assert store.rt.containers.list(all=True) == []
    ok(store.cli("save", "-o", os.path.join(tmp_shm, "saved.tar"), "win:1"))


def test_image_for_another_architecture_warns(store, tmp_shm, base_tar):  # noqa: F811
    """An arm64 image on this amd64 host runs (it may under emulation) with a
    warning on stderr from the CLI, a PlatformWarning from the API."""
    import warnings

    import pytest
    from pyrt.errors import PlatformWarning
    from pyrt.oci.image import host_arch
    other = "arm64" if host_arch() != "arm64" else "amd64"
    _foreign_image(store, tmp_shm, base_tar, "arm", architecture=other)
    r = store.cli("run", "--rm", "arm:1", "echo", "ran")
    assert r.returncode == 0 and r.stdout == b"ran\n", r
    err = r.stderr.decode()
    assert err.startswith("pyrt: WARNING: ") and f"linux/{other}" in err and err.count("\n") == 1, err
    with pytest.warns(PlatformWarning, match=f"linux/{other}"):
        store.rt.containers.run("arm:1", ["true"], remove=True)
    with warnings.catch_warnings():  # the host's own architecture: nothing said
        warnings.simplefilter("error")
        store.rt.containers.run("base:1", ["true"], remove=True)
    r = store.cli("run", "--rm", "base:1", "true")
    assert r.returncode == 0 and r.stderr == b"", r
