"""An ordinary user's container roots without the kernel's overlay: the `copy`
storage driver (the last resort, as for root), forced with --storage-driver copy
or $PYRT_STORAGE_DRIVER=copy (both documented), and the one-line notice when
pyrt falls back to it by itself. Run as the test user (usertools)."""
from __future__ import annotations

import json
import os

import pytest

import imagetools
from clitools import ok

pytestmark = pytest.mark.timeout(600)

# the same changes as root and as the user, every time fixed (cf. test_rootless_store)
CHANGES = """\
echo new > /data/new
chown 1000:1000 /data/new
rm -f /data/owned
mkdir -p /data/sub2 && echo n > /data/sub2/n
mkfifo /data/fifo
find / -xdev -exec touch -h -d '2001-01-01 00:00:00' {} + 2>/dev/null || true
"""


def test_copy_driver_as_user(user, store, base_tar):
    ok(user.pyrt("import", base_tar, "base:1"))
    env = {"PYRT_STORAGE_DRIVER": "copy", "PYRT_DEFAULT_NETWORK": "none"}
    r = user.pyrt("run", "--rm", "base:1", "sh", "-c",
                  "id -u; stat -c '%u:%g %a' /data/owned /data/suid /home/user; echo w > /data/x; cat /data/x",
                  env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split("\n") == ["0", "1000:1000 640", "0:0 4755", "1000:1000 755", "w", ""]
    assert r.stderr == b""
    # the same container as root's, committed: the same layer
    r = store.cli("--storage-driver", "copy", "run", "--name", "c1", "base:1", "sh", "-c", CHANGES)
    assert r.returncode == 0, r.stderr
    ok(store.cli("--storage-driver", "copy", "commit", "c1", "mine:1"))
    r = user.pyrt("run", "--name", "c1", "base:1", "sh", "-c", CHANGES, env=env)
    assert r.returncode == 0, r.stderr
    (c,) = json.loads(ok(user.pyrt("inspect", "c1")))
    assert c["Driver"] == "copy"
    assert ok(user.pyrt("diff", "c1", env=env)) == ok(store.cli("--storage-driver", "copy", "diff", "c1"))
    ok(user.pyrt("commit", "c1", "mine:1", env=env))
    out_root, out_user = os.path.join(user.dir, "root.tar"), os.path.join(user.dir, "user.tar")
    ok(store.cli("save", "-o", out_root, "mine:1"))
    ok(user.pyrt("save", "-o", out_user, "mine:1"))
    assert imagetools.saved_layers(out_root) == imagetools.saved_layers(out_user)
    ok(user.pyrt("rm", "c1", env=env))
    assert os.listdir(os.path.join(user.store, "containers")) == []


def test_copy_driver_with_whiteouts_and_opaque_dirs(user, base_tar):
    """Layers with a whiteout and an opaque directory, materialized by the copy
    driver in the user's store (opaque dirs there carry user.overlay.opaque)."""
    lower = imagetools.layer_tar([("dir", "d"), ("file", "d/old", {"data": "old\n"}), ("dir", "o"),
                                  ("file", "o/hidden", {"data": "h\n"}), ("file", "gone", {"data": "g\n"})])
    upper = imagetools.layer_tar([("whiteout", "gone"), ("opaque", "o"), ("file", "o/new", {"data": "n\n"})])
    user.load_layers(base_tar, [lower, upper], "layered:1")
    r = user.pyrt("--storage-driver", "copy", "run", "--rm", "--network", "none", "layered:1", "ls", "/", "/o", "/d")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "gone" not in out and "hidden" not in out
    assert "/o:\nnew\n" in out and "/d:\nold\n" in out


def test_fallback_to_copy_says_so_once(user, base_tar):
    """A store where neither overlay nor fuse-overlayfs can be mounted (forced:
    PYRT_NO_OVERLAY=1, PYRT_NO_FUSE_OVERLAYFS=1) gets the copy driver, with one line that says so, the first time only."""
    ok(user.pyrt("import", base_tar, "base:1"))
    env = {"PYRT_NO_OVERLAY": "1", "PYRT_NO_FUSE_OVERLAYFS": "1", "PYRT_DEFAULT_NETWORK": "none"}
    r = user.pyrt("run", "--rm", "base:1", "cat", "/etc/hostname", env=env)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "using the copy storage driver" in err and "PYRT_NO_OVERLAY" in err, err
    r = user.pyrt("run", "--rm", "base:1", "true", env=env)
    assert (r.returncode, r.stderr) == (0, b"")
    assert ok(user.pyrt("info", "--format", "{{.Driver}}")).strip() == "copy"
