"""A root container that no device cgroup holds (none could be made: no cgroup
hierarchy mounted, a read-only one, eBPF refused) must still open no host device:
its root and mounts are nodev and it has no CAP_MKNOD, so the nodes pyrt puts in
its /dev are all it can open (pyrt.launch.process.confine_without_device_cgroup,
spawn's SETUP_NODEV). The host without cgroups is made here by unmounting them
in a private mount namespace.

The attack: a rootfs (or an image layer) that carries a device node of the host,
here the first loop device's (b 7:0: not in docker's list, and opened with no
capability beyond root's), and a container that makes one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


PYRT = shutil.which("pyrt") or os.path.join(os.path.dirname(sys.executable), "pyrt")

# What the container tries; each line it prints is a hole (but NULL-OK: /dev/null works)
PROBE = ("(exec 3</evil) 2>/dev/null && echo OPENED-IMAGE-NODE; "
         "mknod /tmp/made b 7 0 2>/dev/null && echo MADE-NODE; "
         "[ -b /tmp/made ] && (exec 4</tmp/made) 2>/dev/null && echo OPENED-MADE-NODE; "
         "echo x >/dev/null && echo NULL-OK")


def _no_cgroups(argv, env=None):
    """argv in a private mount namespace without any cgroup hierarchy mounted."""
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'umount -R -l /sys/fs/cgroup && ! grep -q cgroup /proc/self/mountinfo && exec "$@"', "sh"]
    return subprocess.run(wrap + list(argv), capture_output=True, timeout=120, cwd="/",
                          env=env if env is not None else os.environ)


@pytest.fixture
def evil_rootfs(rootfs_copy):
    os.mknod(os.path.join(rootfs_copy, "evil"), 0o600 | 0o060000, os.makedev(7, 0))
    os.makedirs(os.path.join(rootfs_copy, "tmp"), exist_ok=True)
    return rootfs_copy


def _holes(out: bytes):
    lines = out.decode().split()
    assert "NULL-OK" in lines, out
    return [ln for ln in lines if ln != "NULL-OK"]


def test_in_process_run_without_cgroups(evil_rootfs):
    code = ("import pyrt, sys; r = pyrt.run(['sh', '-c', sys.argv[2]], rootfs=sys.argv[1], capture_output=True); "
            "sys.stdout.buffer.write(r.stdout); sys.stderr.buffer.write(r.stderr)")
    r = _no_cgroups([sys.executable, "-c", code, evil_rootfs, PROBE])
    assert r.returncode == 0, r.stderr
    assert _holes(r.stdout) == []


@pytest.mark.parametrize("side", ["native", "python"])
def test_cli_run_rootfs_without_cgroups(evil_rootfs, tmp_shm, side):
    env = dict(os.environ, PYRT_ROOT=os.path.join(tmp_shm, "store"))
    if side == "python":
        env["PYRT_CLI_PYTHON"] = "1"
    r = _no_cgroups([PYRT, "run", "--rootfs", evil_rootfs, "--", "sh", "-c", PROBE], env=env)
    assert r.returncode == 0, r.stderr
    assert _holes(r.stdout) == []


@pytest.mark.parametrize("side", ["native", "python"])
def test_image_run_without_cgroups(evil_rootfs, tmp_shm, side):
    """An image whose layer carries the node (unpacked as root, as docker does)."""
    store = os.path.join(tmp_shm, "store")
    env = dict(os.environ, PYRT_ROOT=store)
    r = subprocess.run([PYRT, "import", evil_rootfs, "evil:1"], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    if side == "python":
        env["PYRT_CLI_PYTHON"] = "1"
    r = _no_cgroups([PYRT, "run", "--rm", "--network", "none", "evil:1", "sh", "-c", PROBE], env=env)
    assert r.returncode == 0, r.stderr
    assert _holes(r.stdout) == []


def test_a_device_given_on_purpose_still_works(evil_rootfs):
    """--device (devices=) binds a host node in: without a device cgroup it is
    still usable (its bind is not nodev), the image's node still is not."""
    code = ("import pyrt, sys; r = pyrt.run(['sh', '-c', sys.argv[2]], rootfs=sys.argv[1], capture_output=True, "
            "devices=['/dev/zero:/dev/given']); sys.stdout.buffer.write(r.stdout)")
    probe = "head -c 3 /dev/given | od -An -tx1; " + PROBE
    r = _no_cgroups([sys.executable, "-c", code, evil_rootfs, probe])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:3] == [b"00", b"00", b"00"]
    assert _holes(b" ".join(r.stdout.split()[3:])) == []


def test_with_a_device_cgroup_nothing_opens(evil_rootfs):
    """The usual case, for comparison: the device cgroup refuses both nodes (a
    node may be made: CAP_MKNOD, as docker's)."""
    import pyrt
    r = pyrt.run(["sh", "-c", PROBE], rootfs=evil_rootfs, capture_output=True)
    assert [h for h in _holes(r.stdout) if h != "MADE-NODE"] == []
