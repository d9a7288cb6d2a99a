"""`pyrt-runtime`, the OCI runtime command, as the tests run it: `Runtime` wraps it
with a state root of its own (the `oci_rt` fixture in conftest.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

RUNTIME = os.path.join(os.path.dirname(sys.executable), "pyrt-runtime")
TIMEOUT = 120


class Runtime:
    """`pyrt-runtime --root ROOT ...` with the given state root; remembers every
    container id it was asked to create, and force-deletes them in cleanup()."""

    def __init__(self, binary, root, base):
        self.binary, self.root, self.base = binary, root, base
        self.ids = []

    def new_id(self, prefix="t"):
        cid = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args, check=False, timeout=TIMEOUT, glob=(), files=False):
        """files=True: stdout and stderr go through files rather than pipes (for
        commands that leave a process behind holding them: exec -d)."""
        argv = [self.binary, "--root", self.root, *glob, *args]
        if files:
            import tempfile
            with tempfile.TemporaryFile(dir=self.base) as out, tempfile.TemporaryFile(dir=self.base) as err:
                rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    timeout=timeout).returncode
                out.seek(0)
                err.seek(0)
                p = subprocess.CompletedProcess(argv, rc, out.read(), err.read())
        else:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"pyrt-runtime {' '.join(args)}: exit {p.returncode}: "
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    def state(self, cid):
        return json.loads(self("state", cid, check=True).stdout)

    def create(self, cid, bundle, *extra):
        """create; the container inherits create's stdio: files (cid.out, cid.err in
        the bundle), never our pipes, which it would hold open."""
        argv = [self.binary, "--root", self.root, "create", "--bundle", bundle, *extra, cid]
        with open(os.path.join(bundle, f"{cid}.out"), "wb") as out, \
                open(os.path.join(bundle, f"{cid}.err"), "w+b") as err:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                timeout=TIMEOUT).returncode
            err.seek(0)
            return subprocess.CompletedProcess(argv, rc, b"", err.read())

    def output(self, cid, bundle):
        with open(os.path.join(bundle, f"{cid}.out"), "rb") as f:
            return f.read()

    def cleanup(self):
        for cid in self.ids:
            self("delete", "--force", cid)


# -- bundles straight from the runtime spec's shapes ------------------------------------------

def spec_config(root, args, *, namespaces=("pid", "network", "ipc", "uts", "mount"), mounts=None,
                **extra) -> dict:
    """A config.json as config.md and config-linux.md show it (not podman's, not
    `pyrt-runtime spec`'s): process, root, the default filesystems as mounts, the
    given namespaces (type only), no terminal. `extra`: top-level keys to set, with
    `linux` merged into the linux object."""
    cfg = {
        "ociVersion": "1.1.0",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": list(args),
                    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/"},
        "root": {"path": root, "readonly": False},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        ] if mounts is None else mounts,
        "linux": {"namespaces": [{"type": t} for t in namespaces]},
    }
    linux = extra.pop("linux", {})
    cfg["linux"].update(linux)
    cfg.update(extra)
    return cfg


def write_bundle(base, cfg) -> str:
    """A new bundle directory under `base` holding `cfg` as its config.json."""
    bundle = os.path.join(base, f"bundle-{uuid.uuid4().hex[:8]}")
    os.mkdir(bundle)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle


def wait_stopped(rt, cid, timeout=60.0) -> dict:
    """Poll `state` until the container is stopped (a deadline for hangs only)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        st = rt.state(cid)
        if st["status"] == "stopped":
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"container {cid} did not stop: {st}")
        time.sleep(0.02)


def run_to_end(rt, bundle) -> str:
    """create, start, wait until stopped, delete: the container's stdout."""
    cid = rt.new_id()
    p = rt.create(cid, bundle)
    if p.returncode != 0:
        raise AssertionError(f"create: {p.stderr.decode(errors='replace')}")
    rt("start", cid, check=True)
    wait_stopped(rt, cid)
    rt("delete", cid, check=True)
    return rt.output(cid, bundle).decode()


# -- shared by the test_oci_* modules ------------------------------------------------------

@pytest.fixture
def rt(oci_rt):
    """The `pyrt-runtime` command on a state root of the test's own (conftest's `oci_rt`),
    by the short name the test_oci_* modules use."""
    return oci_rt


def wait_until(cond, what, timeout=30.0):
    """Poll until cond() is true (a deadline for hangs, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def runtime_cgroup_dirs(name, parent="pyrt-runtime"):
    from pyrt.cgroups.cgroup import layout
    lay = layout()
    mounts = set(lay.v1.values()) | ({lay.unified} if lay.unified else set())
    return [os.path.join(m, parent, name) for m in mounts if os.path.isdir(os.path.join(m, parent, name))]


def run_bundle(rt, bundle, cid=None):
    p = rt("run", "--bundle", bundle, cid or rt.new_id())
    assert p.returncode == 0 and not p.stderr, p.stderr
    return p.stdout.decode()
