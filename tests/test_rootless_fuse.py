"""The fuse-overlayfs storage driver (pyrt.launch.fuse), for an ordinary user whose
kernel refuses overlay in a user namespace: run as the test user (usertools),
checked from here as root (nothing mounted on the host, no daemon left)."""
from __future__ import annotations

import json
import os
import shutil
import tarfile

import pytest

import imagetools
from clitools import ok

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not shutil.which("fuse-overlayfs") or not os.access("/dev/fuse", os.W_OK),
                                 reason="fuse-overlayfs and /dev/fuse are needed (tests/install-deps.sh)")]

FUSE = {"PYRT_STORAGE_DRIVER": "fuse-overlayfs", "PYRT_DEFAULT_NETWORK": "none"}


def _daemons(user) -> list[int]:
    """The pids of the test user's fuse-overlayfs processes."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            st = os.stat(f"/proc/{pid}")
        except OSError:
            continue
        if st.st_uid == user.uid and os.path.basename(argv[0]) == b"fuse-overlayfs":
            out.append(int(pid))
    return out


def _fuse_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if "fuse-overlayfs" in ln or " fuse." in ln]


def test_run_and_write(user, base_tar):
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "--name", "c1", "base:1", "sh", "-c",
                  "id -u; echo w > /data/x; cat /data/x; stat -c '%u:%g' /data/owned; "
                  "grep -c fuse /proc/self/mountinfo", env=FUSE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["0", "w", "1000:1000", "1"], r.stdout
    assert r.stderr == b""
    (c,) = json.loads(ok(user.pyrt("inspect", "c1")))
    assert c["Driver"] == "fuse-overlayfs"
    with open(os.path.join(user.store, "containers", c["Id"], "upper", "data", "x")) as f:
        assert f.read() == "w\n"
    assert _daemons(user) == [] and _fuse_mounts() == []
    ok(user.pyrt("rm", "c1", env=FUSE))
    assert os.listdir(os.path.join(user.store, "containers")) == []
