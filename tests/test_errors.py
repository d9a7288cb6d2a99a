"""pyrt's one error hierarchy: a failed syscall is a SyscallError that is also the
errno's own OSError subclass (with op and path), the classes that moved into
pyrt.errors are still importable from their old modules, and a disk that fills
during a load says "no space left on device", leaving the store as it was."""
from __future__ import annotations

import copy
import errno
import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import tarfile
import tempfile

import pytest

import pyrt
import pyrt.errors
from pyrt.errors import (ConfigError, ContainerError, ControllerUnavailable, CgroupError, InvalidArgument,
                         PyrtError, SpawnError, StoreChanged, SyscallError)


# -- SyscallError: the errno's own OSError subclass ----------------------------------------------

@pytest.mark.parametrize("err, builtin", [
    (errno.EACCES, PermissionError), (errno.EPERM, PermissionError), (errno.ENOENT, FileNotFoundError),
    (errno.EEXIST, FileExistsError), (errno.ENOTDIR, NotADirectoryError), (errno.ETIMEDOUT, TimeoutError),
])
def test_syscall_error_is_the_errno_subclass(err, builtin):
    for cls in (SyscallError, SpawnError, CgroupError):
        e = cls(err, "open", "/some/where")
        assert isinstance(e, builtin) and isinstance(e, cls) and isinstance(e, PyrtError)
        assert isinstance(e, OSError) and isinstance(e, SyscallError)
        assert (e.errno, e.op, e.path, e.filename) == (err, "open", "/some/where", "/some/where")
        assert str(e) == f'open "/some/where": {os.strerror(err)}'
        assert type(e) is type(cls(err, "other"))  # one class per (class, errno subclass)
        assert type(e).__name__ == cls.__name__
        for again in (pickle.loads(pickle.dumps(e)), copy.copy(e)):
            assert type(again) is type(e)
            assert (again.errno, again.op, again.path, str(again)) == (e.errno, e.op, e.path, str(e))


def test_syscall_error_without_a_subclass_and_with_two_paths():
    e = SyscallError(errno.ENOSPC, "write", "/store/blob")
    assert type(e) is SyscallError and str(e) == 'write "/store/blob": No space left on device'
    e = SyscallError(errno.EXDEV, "rename", "/a", path2="/b")
    assert (e.filename, e.filename2, e.path2) == ("/a", "/b", "/b")
    assert str(e) == 'rename "/a" -> "/b": Invalid cross-device link'
    assert str(pickle.loads(pickle.dumps(e))) == str(e)
    e = CgroupError(errno.EBUSY, "remove cgroup", "/sys/fs/cgroup/x", "it still has processes")
    assert str(pickle.loads(pickle.dumps(e))) == str(e)
    assert str(e) == 'remove cgroup "/sys/fs/cgroup/x": Device or resource busy (it still has processes)'
    u = ControllerUnavailable("cpu", "not enabled")
    assert isinstance(u, CgroupError) and u.errno == errno.ENODEV and u.controller == "cpu"
    assert str(pickle.loads(pickle.dumps(u))) == str(u) == \
        "cgroup controller 'cpu' is not available on this host (not enabled)"


def test_missing_program_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        pyrt.run([str(tmp_path / "no-such-program")])
    e = info.value
    assert isinstance(e, SpawnError) and isinstance(e, SyscallError)
    assert (e.errno, e.op, e.path) == (errno.ENOENT, "exec", str(tmp_path / "no-such-program"))
    assert str(e) == f'exec "{tmp_path / "no-such-program"}": No such file or directory'


def test_non_executable_file_is_permission_error(tmp_path):
    prog = tmp_path / "not-executable"
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(0o644)
    with pytest.raises(PermissionError) as info:
        pyrt.run([str(prog)])
    e = info.value
    assert isinstance(e, SpawnError)
    assert (e.errno, e.op, e.path) == (errno.EACCES, "exec", str(prog))
    assert "Permission denied" in str(e)


def test_missing_program_in_a_rootfs(rootfs):
    try:
        pyrt.run(["/no/such/program"], rootfs=rootfs)
    except FileNotFoundError as e:
        assert e.op == "exec" and e.path == "/no/such/program"
    else:
        pytest.fail("no FileNotFoundError")


def test_cli_exit_status_and_one_line(tmp_path):
    prog = tmp_path / "not-executable"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o644)
    env = dict(os.environ, PYRT_ROOT=str(tmp_path / "store"))
    for argv, status, text in ((["--rootfs", "/", str(tmp_path / "nope")], 127, "No such file or directory"),
                               (["--rootfs", "/", str(prog)], 126, "Permission denied")):
        r = subprocess.run(["pyrt", "run", *argv], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == status, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("pyrt: exec ") and text in lines[0], r.stderr


# -- the classes that moved into pyrt.errors ------------------------------------------------------

def test_moved_classes_are_importable_from_both_places():
    import pyrt.cgroups.cgroup
    import pyrt.containers.model
    import pyrt.ocirt.spec
    import pyrt.store
    for mod, name in ((pyrt.cgroups.cgroup, "CgroupError"), (pyrt.cgroups.cgroup, "ControllerUnavailable"),
                      (pyrt.containers.model, "ContainerError"), (pyrt.ocirt.spec, "ConfigError"),
                      (pyrt.store, "StoreChanged")):
        assert getattr(mod, name) is getattr(pyrt.errors, name), name
        assert issubclass(getattr(pyrt.errors, name), PyrtError)
    assert issubclass(CgroupError, SyscallError) and issubclass(SpawnError, SyscallError)
    assert issubclass(ConfigError, InvalidArgument) and issubclass(InvalidArgument, ValueError)
    assert issubclass(StoreChanged, pyrt.errors.Conflict)
    e = ContainerError("c", 3, ["x"], "img", b"boom\n")
    assert str(e) == "command ['x'] in image 'img' returned non-zero exit status 3: boom"
    assert pyrt.SpawnError is SpawnError and pyrt.PyrtError is PyrtError


def test_every_exception_class_is_in_pyrt_errors():
    """No module of pyrt defines its own public exception class any more."""
    import pathlib
    import re
    root = pathlib.Path(pyrt.__file__).parent
    found = []
    for p in root.rglob("*.py"):
        if p.name == "errors.py":
            continue
        for m in re.finditer(r"^class ([A-Z]\w*)\((\w*(Error|Exception|Conflict|Argument|Unavailable)\w*)",
                             p.read_text(), re.M):
            found.append(f"{p.relative_to(root)}: {m.group(1)}")
    # the OCI runtime command line's own exit-status carriers are not errors of pyrt's API
    found = [f for f in found if not f.startswith("cli/oci_runtime.py")]
    assert found == []


# -- a full disk during a load --------------------------------------------------------------------

def _tar(files) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _oci_layout(path, layers, ref="full:1"):
    """An OCI image layout of gzip layers (uncompressed tar bytes)."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return f"sha256:{d}", len(data)

    descs, diff_ids = [], []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        digest, size = blob(gzip.compress(tar, compresslevel=1))
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cdigest, csize = blob(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cdigest, "size": csize},
                           "layers": descs}).encode()
    mdigest, msize = blob(manifest)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": ref}}]}, f)
    return path


def _store_view(rt):
    """The store's images, tags and layers (rows) and its files (but the database's)."""
    db = rt.store.db
    rows = {t: sorted(tuple(r) for r in db.query(f"SELECT * FROM {t}")) for t in ("images", "layers")}
    files = []
    for dirpath, dirnames, filenames in os.walk(rt.store.root):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, rt.store.root)
            if not rel.startswith("db") and "sqlite" not in n and not n.startswith("pyrt.db"):
                files.append(rel)
    return rows, sorted(files)


@pytest.fixture
def small_store():
    """A 2 MiB tmpfs under /dev/shm with a store on it (and one small image loaded)."""
    base = tempfile.mkdtemp(prefix="pyrt-enospc-", dir="/dev/shm")
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt], check=True)
    rt = None
    try:
        from pyrt.runtime import Runtime
        rt = Runtime(os.path.join(mnt, "store"))
        small = _oci_layout(os.path.join(base, "small"), [_tar([("hello", b"hello\n")])], ref="small:1")
        rt.images.load(small)
        yield rt, base
    finally:
        if rt is not None:
            rt.close()
        subprocess.run(["umount", "-l", mnt], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)


def _check_enospc(rt, layout):
    before = _store_view(rt)
    with pytest.raises(OSError) as info:
        rt.images.load(layout)
    e = info.value
    assert isinstance(e, SyscallError) and isinstance(e, PyrtError), repr(e)
    assert e.errno == errno.ENOSPC
    assert "No space left on device" in str(e) and "rejected" not in str(e)
    assert not isinstance(e, pyrt.errors.ImageFormatError) and not isinstance(e, pyrt.errors.LayerError)
    assert _store_view(rt) == before  # no half-written image, blob or snapshot left
    assert [i.tags for i in rt.images.list()] == [["small:1"]]
    return e


def test_enospc_writing_blobs_during_load(small_store):
    rt, base = small_store
    # a layer that does not compress: its blob alone is bigger than the store's disk
    layout = _oci_layout(os.path.join(base, "big"), [_tar([("random", os.urandom(3 << 20))])])
    _check_enospc(rt, layout)


def test_enospc_unpacking_during_load(small_store):
    rt, base = small_store
    # a tiny blob that unpacks to more than the disk holds (not zeros: no holes)
    layout = _oci_layout(os.path.join(base, "bomb"), [_tar([(f"f{i}", b"pyrt" * (1 << 18)) for i in range(3)])])
    assert os.path.getsize(os.path.join(layout, "blobs", "sha256", os.listdir(
        os.path.join(layout, "blobs", "sha256"))[0])) < (1 << 20)
    _check_enospc(rt, layout)


def test_enospc_spooling_a_compressed_archive(small_store):
    rt, base = small_store
    layout = _oci_layout(os.path.join(base, "big"), [_tar([("random", os.urandom(3 << 20))])])
    archive = os.path.join(base, "big.tar.gz")
    with tarfile.open(archive, "w:gz", compresslevel=1) as tf:
        for n in sorted(os.listdir(layout)):
            tf.add(os.path.join(layout, n), n)
    e = _check_enospc(rt, archive)
    assert e.op.startswith("spool") or e.op.startswith("write"), e


def test_cli_load_says_no_space_left(small_store):
    rt, base = small_store
    layout = _oci_layout(os.path.join(base, "bomb"), [_tar([(f"f{i}", b"pyrt" * (1 << 18)) for i in range(3)])])
    root = rt.store.root
    before = _store_view(rt)
    r = subprocess.run(["pyrt", "--root", root, "load", "-i", layout], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrt: ") and "No space left on device" in lines[0], r.stderr
    assert "rejected" not in r.stderr
    assert _store_view(rt) == before


# -- pyrt's own failures are pyrt.errors classes, still caught as before -----------------------

def test_user_errors_are_invalid_argument_and_still_value_errors(tmp_path):
    for call in (lambda: pyrt.run([]), lambda: pyrt.run(["true"], namespaces=["nosuch"]),
                 lambda: pyrt.run(["true"], hostname="x", namespaces=[])):
        with pytest.raises(InvalidArgument) as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, PyrtError)
    from pyrt.launch import caps
    with pytest.raises(InvalidArgument):
        caps.number("CAP_NO_SUCH_THING")


def test_pool_closed_is_a_pyrt_error_and_a_runtime_error():
    assert issubclass(pyrt.errors.PoolClosed, PyrtError) and issubclass(pyrt.errors.PoolClosed, RuntimeError)
    assert issubclass(pyrt.errors.Unsupported, PyrtError) and issubclass(pyrt.errors.Unsupported, RuntimeError)
