"""Fixtures shared by pyrt's tests.

- The whole session runs in a private mount namespace of its own (made rshared
  again inside, so that a container that forgot to make its mounts private would
  still leak into it and be caught). Mounts made by other processes on the machine
  then never show up in the leak checks, and a leaked mount dies with the session.
  Set PYRT_TESTS_HOST_MOUNTNS=1 to stay in the host's mount namespace.
- `rootfs`: a test rootfs on tmpfs (busybox-static when installed, else host
  binaries with their libraries; PYRT_TESTS_NO_BUSYBOX=1 forces the latter), with
  /etc/passwd and /etc/group (root and user 1000) and /tmp. Shared: do not write to
  it; use `rootfs_copy` or `overlay_rootfs` for a writable root.
- `tmp_shm`: a per-test directory on /dev/shm, removed after the test.
- Every test is checked for leaked mounts and children (autouse, see
  `_no_leaked_mounts_or_children`); `leak_check` adds open fds on demand.
- Stores and images: `base_tar` (the test rootfs plus test files as one tar, made
  once a session), `store` (a clitools.Store with base:1, cleaned and checked after
  the test), `rt` and `rt2` (pyrt.Runtime on empty stores; modules that need another
  kind of `rt` define their own).
- The OCI runtime command: `runtime_bin`, `oci_rt` (an ocitools.Runtime, its
  containers force-deleted after the test), `make_bundle`.
- Networks: the suite's containers get no network by default
  (PYRT_DEFAULT_NETWORK=none: nothing may touch the host's network); `netns` (a
  nettools.NetNS, a network namespace of the test's own) and `netstore` (a
  nettools.NetStore: a `store` whose `pyrt` runs in it, with the default network
  users get) are for the tests of networks.

Plain helper functions and classes live in helpers.py, clitools.py (the `pyrt`
command, Store), imagetools.py (test images), ocitools.py (`pyrt-runtime`) and
nettools.py (network namespaces);
test modules never import from each other.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import helpers
import imagetools
import ocitools

MS_REC, MS_PRIVATE, MS_SHARED = 0x4000, 0x40000, 0x100000
CLONE_NEWNS = 0x00020000

_SESSION_BASE = None

# tests/vm/guest runs inside the VM guest (tests/vm/run.sh), not in this suite.
collect_ignore = ["vm"]


def _enter_private_mount_ns() -> str:
    if os.environ.get("PYRT_TESTS_HOST_MOUNTNS") == "1":
        return "host (PYRT_TESTS_HOST_MOUNTNS=1)"
    from pyrt._sys import ffi, lib
    if lib.unshare(CLONE_NEWNS) < 0:  # e.g. already multi-threaded
        return f"host (unshare: {os.strerror(ffi.errno)})"
    if lib.mount(ffi.NULL, b"/", ffi.NULL, MS_REC | MS_PRIVATE, ffi.NULL) < 0 or \
            lib.mount(ffi.NULL, b"/", ffi.NULL, MS_REC | MS_SHARED, ffi.NULL) < 0:
        raise OSError(ffi.errno, f"making / private then shared: {os.strerror(ffi.errno)}")
    return "private"


def pytest_configure(config):
    # Python processes the tests start (`python -c`, `-m pyrt.cli.main`) must import
    # the installed pyrt, not the source tree in the working directory (it has no
    # compiled modules): no working directory at the front of their sys.path.
    os.environ["PYTHONSAFEPATH"] = "1"
    # containers of images join pyrt's default network (a bridge) unless told: the
    # suite's stay off it; the network tests wire theirs in namespaces they make
    os.environ["PYRT_DEFAULT_NETWORK"] = "none"
    config.addinivalue_line("markers", "no_leak_check: skip the per-test check for leaked mounts and children")
    if os.geteuid() == 0:
        config._pyrt_mount_ns = _enter_private_mount_ns()


def pytest_report_header(config):
    return f"pyrt tests: mount namespace: {getattr(config, '_pyrt_mount_ns', 'host (not root)')}"


@pytest.fixture(scope="session")
def shm_base():
    """The session's directory on /dev/shm; everything tests write lives below it."""
    if os.geteuid() != 0:
        pytest.skip("pyrt's tests need root (real namespaces and mounts)")
    base = tempfile.mkdtemp(prefix="pyrt-tests-", dir="/dev/shm")
    os.chmod(base, 0o711)  # a user namespace's root (an unmapped host uid) must reach the rootfs
    try:
        yield base
    finally:
        helpers.detach_mounts_under(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def rootfs_kind(shm_base):
    root = os.path.join(shm_base, "rootfs")
    return helpers.build_rootfs(root, use_busybox=os.environ.get("PYRT_TESTS_NO_BUSYBOX") != "1")


@pytest.fixture(scope="session")
def rootfs(shm_base, rootfs_kind) -> str:
    """The shared, read-only-by-convention test rootfs (a directory path)."""
    return os.path.join(shm_base, "rootfs")


@pytest.fixture
def tmp_shm(request, shm_base):
    """A fresh directory on /dev/shm (tmpfs) for this test, removed after it. A mount
    left below it fails the test (and is detached before the removal)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    path = tempfile.mkdtemp(prefix=name + "-", dir=shm_base)
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        left = helpers.detach_mounts_under(path)
        shutil.rmtree(path, ignore_errors=True)
        assert not left, f"mounts left under {path}: {left}"


@pytest.fixture
def rootfs_copy(rootfs, tmp_shm) -> str:
    """A private, writable copy of the test rootfs (a directory rootfs)."""
    return helpers.copy_tree(rootfs, os.path.join(tmp_shm, "rootfs"))


@pytest.fixture
def overlay_rootfs(rootfs, tmp_shm):
    """A writable overlay root: the shared rootfs as its only lower dir, plus a
    private upper and work dir (`.upperdir` says where writes go)."""
    import pyrt
    upper, work = os.path.join(tmp_shm, "upper"), os.path.join(tmp_shm, "work")
    os.mkdir(upper)
    os.mkdir(work)
    return pyrt.Overlay([rootfs], upper, work)


@pytest.fixture
def leak_check():
    """A snapshot of the test process (mountinfo lines, children, open fds) taken
    now: call `.assert_clean()` (or `.leaks()`) after the work, `.reset()` to
    take a new one."""
    return helpers.LeakCheck()


@pytest.fixture(autouse=True)
def _no_leaked_mounts_or_children(request):
    """Fails a test that leaves a mount or a child process behind (then cleans up,
    so one leak does not spill into the next tests)."""
    if request.node.get_closest_marker("no_leak_check"):
        yield
        return
    before = helpers.ProcessState()
    yield
    after = helpers.ProcessState()
    leaks = after.leaks_since(before, fds=False)
    if leaks:
        helpers.reap(leaks.get("children", ()))
        from pyrt._sys import lib
        for line in reversed(leaks.get("mounts", ())):
            lib.umount2(os.fsencode(helpers.mount_points([line])[0]), 2)  # MNT_DETACH
        pytest.fail(f"the test leaked: {leaks}", pytrace=False)


# -- stores and images --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def base_tar(rootfs, shm_base) -> str:
    """imagetools.write_base_tar of the test rootfs (base:1 in a `store`), written
    once a session."""
    path = os.path.join(shm_base, "base.tar")
    if not os.path.exists(path):
        imagetools.write_base_tar(rootfs, path + ".tmp")
        os.rename(path + ".tmp", path)
    return path


@pytest.fixture
def store(tmp_shm, base_tar):
    """A clitools.Store on /dev/shm with base:1; after the test every container is
    removed (rm -f -v) and nothing may be left (cgroups, monitors)."""
    import clitools  # imports pyrt: not before pytest_configure has made the mount namespace
    s = clitools.Store(os.path.join(tmp_shm, "store"), base_tar)
    try:
        yield s
    finally:
        problems = s.cleanup()
        s.rt.close()
        assert not problems, problems


@pytest.fixture
def rt(tmp_shm):
    """A pyrt.Runtime on an empty store."""
    from pyrt.runtime import Runtime
    r = Runtime(os.path.join(tmp_shm, "store"))
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def rt2(tmp_shm):
    """A second pyrt.Runtime on another empty store."""
    from pyrt.runtime import Runtime
    r = Runtime(os.path.join(tmp_shm, "store2"))
    try:
        yield r
    finally:
        r.close()


# -- the OCI runtime command ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runtime_bin():
    if not os.path.exists(ocitools.RUNTIME):
        pytest.skip(f"{ocitools.RUNTIME} is not installed (pip install -e .)")
    return ocitools.RUNTIME


@pytest.fixture
def oci_rt(runtime_bin, tmp_shm):
    r = ocitools.Runtime(runtime_bin, os.path.join(tmp_shm, "state"), tmp_shm)
    try:
        yield r
    finally:
        r.cleanup()


@pytest.fixture
def make_bundle(runtime_bin, rootfs, tmp_shm):
    """make_bundle(args, edit=None, root=None) -> bundle dir: `pyrt-runtime spec`,
    then root.path (the shared test rootfs, read-only), the args, no terminal."""
    n = [0]

    def make(args, edit=None, root=None, readonly=True):
        n[0] += 1
        bundle = os.path.join(tmp_shm, f"bundle{n[0]}")
        os.mkdir(bundle)
        subprocess.run([runtime_bin, "spec", "--bundle", bundle], check=True)
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["root"] = {"path": root or rootfs, "readonly": readonly}
        cfg["process"]["args"] = list(args)
        cfg["process"]["terminal"] = False
        if edit:
            edit(cfg)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        return bundle
    return make


# -- networks ------------------------------------------------------------------------------------------

@pytest.fixture
def netns():
    """A network namespace of the test's own (nettools.NetNS); whatever is left
    running in it at the end fails the test (and is ended)."""
    if not shutil.which("nsenter") or not shutil.which("unshare"):
        pytest.skip("nsenter and unshare (util-linux) are needed")
    import nettools
    ns = nettools.NetNS()
    ok = False
    try:
        yield ns
        ok = True
    finally:
        left = ns.close()
        if ok:
            assert not left, f"processes left in the test's network namespace: {left}"


@pytest.fixture
def netstore(tmp_shm, base_tar, netns):
    """A nettools.NetStore (base:1) whose `pyrt` runs in `netns`; its containers and
    networks are removed there after the test, and nothing may be left."""
    import nettools
    from pyrt.network.cni import find_plugin
    try:
        find_plugin("bridge")
    except LookupError:
        pytest.skip("the CNI plugins are not installed (containernetworking-plugins)")
    except Exception as e:
        pytest.skip(str(e))
    s = nettools.NetStore(os.path.join(tmp_shm, "store"), base_tar, netns)
    try:
        yield s
    finally:
        problems = s.cleanup()
        s.rt.close()
        assert not problems, problems

# -- an ordinary user (the rootless tests) ------------------------------------------------------------

@pytest.fixture(scope="session")
def test_user(shm_base):
    """(passwd entry, python, its env): usertools.USER, with a subordinate range,
    and a Python it can run that imports the installed pyrt."""
    import usertools
    if not shutil.which("setpriv") or not shutil.which("useradd"):
        pytest.skip("setpriv and useradd are needed to run pyrt as an ordinary user")
    pw = usertools.ensure_user(usertools.USER, subids=True)
    python, env = usertools.user_python(shm_base, pw)
    return pw, python, env


@pytest.fixture
def user(test_user, tmp_shm):
    """A usertools.UserEnv of the test user, with a home, data and runtime
    directory of this test's own."""
    import usertools
    pw, python, env = test_user
    return usertools.UserEnv(pw, python, env, tmp_shm)


@pytest.fixture
def user_nosub(test_user, tmp_shm):
    """A usertools.UserEnv of a user without a subordinate range."""
    import usertools
    pw = usertools.ensure_user(usertools.USER_NOSUB, subids=False)
    _, python, env = test_user
    return usertools.UserEnv(pw, python, env, os.path.join(tmp_shm, "nosub"))


@pytest.fixture(scope="session")
def user_rootfs(shm_base, rootfs, test_user):
    """The test rootfs as the test user's containers see theirs: owned by the user
    (container root) and its subordinate ids (0755 directories: shared, read-only
    by convention)."""
    import usertools
    pw = test_user[0]
    dst = os.path.join(shm_base, "rootfs-user")
    if not os.path.isdir(dst):
        usertools.shifted_copy(rootfs, dst, pw.pw_uid, pw.pw_gid, usertools.subid_base(pw.pw_name))
    return dst


@pytest.fixture
def net_user(user, netns, base_tar):
    """The test user, its commands run in the test's network namespace, base:1
    imported (user-mode networks: slirp4netns)."""
    import nettools
    from clitools import ok
    if not shutil.which("slirp4netns"):
        pytest.skip("slirp4netns is not installed (tests/install-deps.sh installs it)")
    if not nettools.tun_usable():
        pytest.skip("/dev/net/tun is not open to users (mode 0666 as udev makes it; tests/install-deps.sh)")
    user.in_netns(netns.path)
    ok(user.pyrt("import", base_tar, "base:1"))
    yield user
    for c in json.loads(user.pyrt("ps", "-a", "--format", "json").stdout or b"[]"):
        user.pyrt("rm", "-f", c["Id"])


@pytest.fixture
def servers():
    """servers(ns, ip, port): a nettools.Server, killed at the test's end."""
    import nettools
    made = []

    def make(ns, ip, port):
        s = nettools.Server(ns, ip, port)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()
