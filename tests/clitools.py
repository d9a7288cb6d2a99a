"""The `pyrt` command as the tests run it (a subprocess of the installed entry point,
with `--root` on /dev/shm), shared by the test modules:

- `cli(root, *argv)`: run it; `ok(r)` its stdout when it must succeed, `ok_quiet(r)`
  the same but also nothing on stderr, `error(r)` its one-line message when it must fail.
- `Store`: a store with base:1 imported, the Runtime and the command on it, and the
  cleanup that checks no container, cgroup or monitor was left (the `store` fixture
  in conftest.py).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pyrt
from pyrt.errors import ContainerNotFound

PYRT = os.path.join(os.path.dirname(sys.executable), "pyrt")  # the installed entry point
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


def cli(root, *argv, driver=None, cwd="/") -> subprocess.CompletedProcess:
    """`pyrt --root ROOT [--storage-driver DRIVER] ARGV...` (PYRT_ROOT pointing
    nowhere: only --root may name the store)."""
    opts = ["--storage-driver", driver] if driver else []
    return subprocess.run([PYRT, "--root", root, *opts, *argv], capture_output=True, cwd=cwd,
                          env={**os.environ, "PYRT_ROOT": "/nonexistent-on-purpose"})


def ok(r) -> str:
    """stdout of a command that must succeed."""
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout.decode()


def ok_quiet(r) -> str:
    """stdout of a command that must succeed quietly: nothing on stderr (in a pipe)."""
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    assert r.stderr == b"", (r.args, r.stderr)
    return r.stdout.decode()


def error(r, status=1, match=None) -> str:
    """The message of a command that must fail: one line on stderr, no traceback."""
    err = r.stderr.decode()
    assert r.returncode == status, (r.args, r.returncode, r.stdout, err)
    assert err.startswith("pyrt: ") and err.endswith("\n") and err.count("\n") == 1, (r.args, err)
    assert "Traceback" not in err
    if match:
        assert re.search(match, err), (r.args, err)
    return err


# -- a store with base:1, for tests of containers ---------------------------------------------


def cgroup_mounts() -> list[str]:
    """Every cgroup hierarchy's mount point on this host, whatever its layout (v1,
    hybrid, pure v2): the cgroup2 one first."""
    from pyrt.cgroups import cgroup as cgroups
    lay = cgroups.layout(refresh=True)
    out = [lay.unified] if lay.unified else []
    for mount in sorted(set(lay.v1.values())):
        out.append(mount)
    assert out, "no cgroup hierarchy is mounted"
    return out


def cgroup_dirs(cid: str) -> list[str]:
    """The pyrt/<cid> directories of a container in every cgroup hierarchy."""
    return [d for d in (os.path.join(m, "pyrt", cid) for m in cgroup_mounts()) if os.path.isdir(d)]


def procs_holding(path: str) -> list[int]:
    """Pids of the processes with an open fd or cwd at or below `path` (a monitor
    keeps its container's log open)."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            targets = [os.readlink(f"/proc/{pid}/cwd")]
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
        except OSError:
            continue
        if any((t + "/").startswith(prefix) for t in targets):
            found.append(int(pid))
    return found


class Store:
    """A store on /dev/shm with base:1 (the busybox rootfs plus test files) imported,
    an open Runtime (`rt`) and the `pyrt` command on it (`cli`). It remembers every
    container id it sees (API creates, ids the CLI prints, hostnames) so that the
    cleanup can check their cgroups are gone."""

    def __init__(self, root: str, base_tar: str):
        self.root = root
        self.rt = pyrt.Runtime(root, quiet=True)
        self.rt.images.import_image(base_tar, "base", "1")
        self.ids: set[str] = set()
        self.prefixes: set[str] = set()
        cc = self.rt.containers
        orig = cc.create

        def create(*a, **kw):
            c = orig(*a, **kw)
            self.ids.add(c.id)
            return c

        cc.create = create  # run() calls self.create: ids of run() are seen too

    def cli(self, *argv, input=None, timeout=60) -> subprocess.CompletedProcess:
        r = subprocess.run([PYRT, "--root", self.root, *map(str, argv)], capture_output=True, cwd="/",
                           input=input, timeout=timeout, env={**os.environ, "PYRT_ROOT": "/nonexistent-on-purpose"})
        self.ids.update(HEX64.findall(r.stdout.decode(errors="replace")))
        return r

    def popen(self, *argv, **kw) -> subprocess.Popen:
        return subprocess.Popen([PYRT, "--root", self.root, *map(str, argv)], cwd="/",
                                env={**os.environ, "PYRT_ROOT": "/nonexistent-on-purpose"}, **kw)

    def get(self, ref):
        return self.rt.containers.get(ref)

    def db_rows(self):
        return [dict(r) for r in self.rt.store.db.query("SELECT id, name, state FROM containers ORDER BY id")]

    def snapshot(self) -> dict:
        """What bad input must not change: container rows and their states, the
        containers/ and volumes/ dirs, their cgroups, the tmp dir."""
        rows = self.db_rows()
        vols = os.path.join(self.root, "volumes")
        return {
            "rows": rows,
            "containers": sorted(os.listdir(os.path.join(self.root, "containers"))),
            "volumes": sorted(os.listdir(vols)) if os.path.isdir(vols) else [],
            "cgroups": {r["id"]: cgroup_dirs(r["id"]) for r in rows},
            "tmp": sorted(os.listdir(os.path.join(self.root, "tmp"))),
        }

    def cleanup(self) -> list[str]:
        """rm -f -v every container; returns what was left behind."""
        problems = []
        for c in self.rt.containers.list(all=True):
            self.ids.add(c.id)
            try:
                c.remove(force=True, v=True)
            except ContainerNotFound:
                pass  # removed meanwhile (--rm)
            except Exception as e:  # go on cleaning, report it
                problems.append(f"rm -f {c.name}: {e!r}")
        for cid in sorted(self.ids):
            if cgroup_dirs(cid):
                problems.append(f"cgroup left: {cgroup_dirs(cid)}")
        for prefix in sorted(self.prefixes):
            for m in cgroup_mounts():
                d = os.path.join(m, "pyrt")
                if os.path.isdir(d) and any(n.startswith(prefix) for n in os.listdir(d)):
                    problems.append(f"cgroup left in {d} for {prefix}")
        # the monitors end with their containers: wait for them (then end the stragglers)
        end = time.monotonic() + 10
        while procs_holding(self.root) and time.monotonic() < end:
            time.sleep(0.02)
        for pid in procs_holding(self.root):
            problems.append(f"process {pid} still holds files of the store")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return problems


# `python -c SPEC_CAPTURE FILE ARGV...`: pyrt's Python CLI run on ARGV up to its
# spawn, which writes the packed spawn spec (csrc/specpack.h; stdio, reaper and
# cgroup fds -1) to FILE instead of starting anything: what the native `pyrt` must
# build byte for byte.
SPEC_CAPTURE = """
import sys
from pyrt import _core
import pyrt.launch.process as process

class Stop(BaseException):
    pass

class Capture:
    def __getattr__(self, name):
        return getattr(_core, name)

    def spawn(self, spec):
        spec.stdio, spec.reaper_fd, spec.cgroup_fd, spec.cgroup_procs_fds = (-1, -1, -1), -1, -1, []
        with open(sys.argv[1], "wb") as f:
            f.write(_core.spec_pack(spec))
        raise Stop

process._core = Capture()
from pyrt.cli.main import main
try:
    main(sys.argv[2:])
except Stop:
    sys.exit(0)
sys.exit("no spawn")
"""
