"""What perf/bench_lifecycle.py's workers and main process share: the image names,
the pyrt API runtime of a worker, process launchers whose stderr is kept, and the
command lines of the pyrt CLI, podman and a cycle."""
from __future__ import annotations

import itertools
import os
import subprocess
import time

import common  # noqa: E402  (perf/common.py)

IMAGE = "busybox:latest"
PODMAN_IMAGE = "localhost/busybox:latest"
MEM_LIMIT = "64m"

_ids = itertools.count()


# --- worker-side helpers -------------------------------------------------------

_rt = _img = _spawner = None


def runtime(st):
    global _rt, _img
    if _rt is None:
        import pyrt
        _rt = pyrt.Runtime(st["pyrt_store"])
        _img = _rt.images.get(IMAGE)
    return _rt, _img


def logging_spawner(st, tag):
    """common.Spawner, but with stderr appended to a file in the scratch
    directory, so that a failure can say why (see stderr_tail)."""
    sp = common.Spawner()
    path = os.path.join(st["state_dir"], f"stderr-{tag}-{os.getpid()}.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    sp.file_actions = [a if a[2] != 2 else (os.POSIX_SPAWN_DUP2, fd, 2) for a in sp.file_actions]
    sp.stderr_path, sp.stderr_fd = path, fd
    return sp


def close_spawner(sp):
    sp.close()
    if getattr(sp, "stderr_fd", -1) >= 0:
        os.close(sp.stderr_fd)
        sp.stderr_fd = -1


def get_spawner(st):
    global _spawner
    if _spawner is None:
        _spawner = logging_spawner(st, "worker")
    return _spawner


def stderr_tail(sp, n=600):
    try:
        with open(sp.stderr_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - n))
            return f.read().decode(errors="replace").strip()
    except (OSError, AttributeError):
        return ""


def fresh_name(st, tag):
    return f"{st['prefix']}-{tag}{os.getpid()}-{next(_ids)}"


def podman_base(st) -> list[str]:
    return [st["tools"]["podman"], "--root", st["podman_root"], "--runroot", st["podman_runroot"],
            "--tmpdir", st["podman_tmpdir"], "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]


def podman_run_d(st, name) -> list[str]:
    return podman_base(st) + ["run", "-d", "--pull", "never", "--name", name, "--network", "none",
                              "--cgroup-parent", st["podman_cgroup_parent"],
                              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                              PODMAN_IMAGE, "sleep", "1000"]


def pyrt_cli(st, *args) -> list[str]:
    return [st["cli"], "--root", st["pyrt_store"], *args]


def cycle_argvs(st, name):
    """(run -d, stop, rm) command lines of one cycle, for the CLI tools."""
    if name == "cycle pyrt CLI":
        n = fresh_name(st, "c")
        return [pyrt_cli(st, "run", "-d", "--name", n, IMAGE, "sleep", "1000"),
                pyrt_cli(st, "stop", "-t", "0", n), pyrt_cli(st, "rm", n)]
    if name == "cycle podman":
        n = fresh_name(st, "p")
        base = podman_base(st)
        return [podman_run_d(st, n), base + ["stop", "-t", "0", n], base + ["rm", n]]
    raise KeyError(name)


def idle_gap(st, name):
    return st["gap"] if name.endswith("[spaced]") else 0.0


def quiet(argv, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False, **kw)


def output(argv, *, timeout=120):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, check=False)
    if p.returncode:
        raise RuntimeError(f"`{' '.join(argv)}` exited with {p.returncode}: {p.stderr.strip()[-400:]}")
    return p.stdout.strip()


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(0.01)
