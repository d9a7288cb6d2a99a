"""`pyrt cp` and the SDK's get_archive/put_archive: into and out of stopped and
running containers, docker's naming rules, owners, tar streams, and containers
whose symlinks point at host paths (resolved in the container's root, never on
the host)."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile

import pytest

from pyrt.errors import InvalidArgument
from clitools import PYRT, error, ok


@pytest.fixture
def host(tmp_shm):
    d = os.path.join(tmp_shm, "host")
    os.makedirs(os.path.join(d, "dir", "sub"))
    with open(os.path.join(d, "file"), "w") as f:
        f.write("from the host\n")
    with open(os.path.join(d, "dir", "sub", "deep"), "w") as f:
        f.write("deep\n")
    os.chown(os.path.join(d, "file"), 1234, 1234)
    os.symlink("sub/deep", os.path.join(d, "dir", "link"))
    return d


def test_copy_in_and_out_of_a_stopped_container(store, host, tmp_shm):
    ok(store.cli("create", "--name", "c", "base:1", "true"))
    ok(store.cli("cp", os.path.join(host, "file"), "c:/tmp/"))       # into a directory
    ok(store.cli("cp", os.path.join(host, "file"), "c:/tmp/renamed"))  # as a new name
    ok(store.cli("cp", os.path.join(host, "dir"), "c:/newdir"))        # a dir under a new name
    ok(store.cli("cp", os.path.join(host, "dir") + "/.", "c:/tmp"))    # a dir's contents
    diff = ok(store.cli("diff", "c")).split("\n")
    for path in ("A /tmp/file", "A /tmp/renamed", "A /newdir", "A /newdir/link", "A /newdir/sub/deep",
                 "A /tmp/sub", "A /tmp/link"):
        assert path in diff, (path, diff)
    out = os.path.join(tmp_shm, "out")
    os.mkdir(out)
    ok(store.cli("cp", "c:/newdir", out))                              # into an existing dir
    ok(store.cli("cp", "c:/tmp/renamed", os.path.join(out, "f")))      # as a new name
    ok(store.cli("cp", "c:newdir/sub/.", os.path.join(out, "contents")))  # relative to the root, contents
    assert open(os.path.join(out, "newdir", "sub", "deep")).read() == "deep\n"
    assert os.readlink(os.path.join(out, "newdir", "link")) == "sub/deep"
    assert open(os.path.join(out, "f")).read() == "from the host\n"
    assert os.listdir(os.path.join(out, "contents")) == ["deep"]
    # owners: root's by default, kept with -a
    ok(store.cli("cp", "-a", os.path.join(host, "file"), "c:/tmp/kept"))
    t = _tar_of(store, "c", "/tmp")
    assert t.getmember("tmp/file").uid == 0 and t.getmember("tmp/kept").uid == 1234
    assert t.getmember("tmp/file").mode == 0o644


def test_running_container_and_its_volumes(store, host, tmp_shm):
    ok(store.cli("run", "-d", "--name", "r", "-v", "vol:/vol", "base:1", "sleep", "100"))
    ok(store.cli("cp", os.path.join(host, "file"), "r:/vol/"))
    assert ok(store.cli("exec", "r", "cat", "/vol/file")) == "from the host\n"
    vol_file = os.path.join(store.root, "volumes", "vol", "_data", "file")
    assert open(vol_file).read() == "from the host\n"  # in the volume, not the container's layer
    ok(store.cli("exec", "r", "sh", "-c", "echo made inside > /made"))
    out = os.path.join(tmp_shm, "made")
    ok(store.cli("cp", "r:/made", out))
    assert open(out).read() == "made inside\n"
    # device nodes stay inside
    devs = os.path.join(tmp_shm, "devs")
    ok(store.cli("cp", "r:/dev", devs))
    for dirpath, dirnames, filenames in os.walk(devs):
        for n in filenames:
            mode = os.lstat(os.path.join(dirpath, n)).st_mode
            assert not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)), n


def test_symlinks_to_host_paths_resolve_in_the_container(store, tmp_shm, host):
    secret = os.path.join(tmp_shm, "secret")
    os.mkdir(secret)
    with open(os.path.join(secret, "key"), "w") as f:
        f.write("host only\n")
    c = store.rt.containers.run("base:1", ["sh", "-c", f"ln -s {secret} /x; ln -s / /up; ln -s ../../../../.. /dots"],
                                detach=True)
    c.wait()
    # reading through them finds the container's files, never the host's
    error(store.cli("cp", "c-none:/x", tmp_shm), match="no such container")
    error(store.cli("cp", f"{c.name}:/x/key", os.path.join(tmp_shm, "got")), match="no such file")
    assert not os.path.exists(os.path.join(tmp_shm, "got"))
    ok(store.cli("cp", f"{c.name}:/dots/data/a", os.path.join(tmp_shm, "a")))  # the image's /data/a
    ok(store.cli("cp", "-L", f"{c.name}:/up", os.path.join(tmp_shm, "rootcopy")))
    assert "data" in os.listdir(os.path.join(tmp_shm, "rootcopy"))
    # writing through them lands in the container (or fails), never on the host
    error(store.cli("cp", os.path.join(host, "file"), f"{c.name}:/x/"), match="must exist|no such")
    ok(store.cli("cp", os.path.join(host, "file"), f"{c.name}:/up/tmp/"))
    assert os.listdir(secret) == ["key"]
    assert "A /tmp/file" in ok(store.cli("diff", c.name)).split("\n")
    # and the copy out keeps a symlink as a symlink
    ok(store.cli("cp", f"{c.name}:/x", os.path.join(tmp_shm, "xlink")))
    assert os.readlink(os.path.join(tmp_shm, "xlink")) == secret


def test_tar_streams_and_the_sdk(store, tmp_shm):
    c = store.rt.containers.create("base:1", ["true"], name="s")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("in/.wh.not-a-whiteout")
        data = b"plain file\n"
        ti.size, ti.uid = len(data), 42
        t.addfile(ti, io.BytesIO(data))
    assert c.put_archive("/tmp", buf.getvalue()) is True
    chunks, info = c.get_archive("/tmp/in")
    assert info["name"] == "in" and info["mode"] & (1 << 31)
    t = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
    member = t.getmember("in/.wh.not-a-whiteout")
    assert member.uid == 42 and t.extractfile(member).read() == b"plain file\n"
    # the CLI's "-": a tar on stdout, a tar from stdin
    r = subprocess.run([PYRT, "--root", store.root, "cp", "s:/tmp/in", "-"], capture_output=True)
    assert r.returncode == 0 and "in/.wh.not-a-whiteout" in tarfile.open(fileobj=io.BytesIO(r.stdout)).getnames()
    r = subprocess.run([PYRT, "--root", store.root, "cp", "-", "s:/"], input=buf.getvalue(), capture_output=True)
    assert r.returncode == 0, r.stderr
    assert "A /in/.wh.not-a-whiteout" in ok(store.cli("diff", "s")).split("\n")
    with pytest.raises(NotADirectoryError):
        c.put_archive("/tmp/in/.wh.not-a-whiteout", buf.getvalue())


def test_bad_copies(store, host, tmp_shm):
    ok(store.cli("create", "--name", "b", "base:1", "true"))
    before = store.snapshot()
    error(store.cli("cp", os.path.join(host, "file"), os.path.join(tmp_shm, "x")), match="one of SRC and DEST")
    error(store.cli("cp", "b:/a", "b:/c"), match="one of SRC and DEST")
    error(store.cli("cp", "b:/nosuch", tmp_shm), match="no such file")
    error(store.cli("cp", os.path.join(host, "nosuch"), "b:/tmp"), match="No such file")
    error(store.cli("cp", os.path.join(host, "dir"), "b:/data/a"), match="cannot copy a directory to a file")
    error(store.cli("cp", os.path.join(host, "file"), "b:/no/such/dir/"), match="must exist|no such")
    assert store.snapshot() == before
    assert store.cli("diff", "b").stdout == b""


def _tar_of(store, name, path) -> tarfile.TarFile:
    chunks, _ = store.get(name).get_archive(path)
    return tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))


def test_source_names():
    from pyrt.containers.cp import _source_name
    assert _source_name("/a/b") == (False, "b") and _source_name("/a/b/") == (False, "b")
    assert _source_name("/a/b/.") == (True, "b") and _source_name("/") == (False, "root")
    with pytest.raises(InvalidArgument):
        from pyrt.containers.cp import _target
        _target(True, False, True, True, False, "d", "/file")
