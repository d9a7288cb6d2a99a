#!/usr/bin/env python3
"""An ordinary user's container on fuse-overlayfs, in the same run as what that
user would use instead: `/bin/true` (busybox) in a new container, started from
the command line and removed, one image, the store on tmpfs.

  pyrt fuse-overlayfs     pyrt --storage-driver fuse-overlayfs run --rm IMAGE /bin/true
                          (a keeper and a fuse-overlayfs daemon per container)
  podman fuse-overlayfs   podman run --rm --cgroups disabled IMAGE /bin/true, rootless, its
                          overlay driver with mount_program=fuse-overlayfs (rootless
                          podman's fallback where the kernel refuses overlay)
  pyrt overlay            pyrt --storage-driver overlay run --rm IMAGE /bin/true: the
                          kernel's overlay in the user namespace, for the cost of the fallback

Every command runs as the user (setpriv, the same cost for each) with
--network none, in the worker's private mount namespace where a hybrid cgroup
host's v2 controllers are hidden (crun refuses them). The user: --user NAME
(default: the first with a range in /etc/subuid; else `pyrt-bench` is made).

  python perf/bench_fuse.py --quick      # one worker per benchmark, < 1 min
  python perf/bench_fuse.py --smoke      # each loop twice, no timing (CI)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "-l", "4"]
ALL_BENCHES = ["pyrt fuse-overlayfs", "podman fuse-overlayfs", "pyrt overlay"]
IMAGE = "bb:1"


def _user_argv(st, argv) -> list[str]:
    u = st["user"]
    env = [f"{k}={v}" for k, v in st["env"].items()]
    return ["setpriv", f"--reuid={u['uid']}", f"--regid={u['gid']}", "--init-groups", "--reset-env", "--",
            "env", "-i", *env, *argv]


def _podman(st) -> list[str]:
    return ["podman", "--root", st["podman_root"], "--runroot", st["podman_runroot"], "--storage-driver", "overlay",
            "--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]


def command(st, name) -> list[str]:
    if name == "podman fuse-overlayfs":
        return _user_argv(st, _podman(st) + ["run", "--rm", "--cgroups", "disabled", "--network", "none", IMAGE,
                                            "/bin/true"])
    driver = name.split()[1]
    return _user_argv(st, [st["python"], "-m", "pyrt.cli.main", "--root", st["pyrt_root"], "--storage-driver",
                           driver, "run", "--rm", "--network", "none", IMAGE, "/bin/true"])


_entered = False


def _enter(st):
    """Once per worker: a private mount namespace with the v2 controllers hidden."""
    global _entered
    if not _entered:
        common.enter_private_mount_namespace()
        if common.crun_needs_hidden_controllers():
            common.hide_cgroup2_controllers(st["empty"])
        _entered = True


def _time(loops, st, name):
    _enter(st)
    argv = command(st, name)
    subprocess.run(argv, check=True, capture_output=True, cwd="/")  # untimed: a warm cache
    t0 = time.perf_counter()
    for _ in range(loops):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    return time.perf_counter() - t0


def run_benchmarks(runner, st) -> dict:
    return {name: runner.bench_time_func(name, _time, st, name) for name in st["benches"]}


def setup(args, scratch) -> dict:
    for tool in ("fuse-overlayfs", "setpriv"):
        if not shutil.which(tool):
            raise SystemExit(f"bench_fuse needs {tool}")
    busybox, why = common.find_static_busybox(install=not args.no_install)
    if busybox is None:
        raise SystemExit(f"bench_fuse: {why}")
    pw = common.pick_user(args.user)
    os.chmod(scratch.path, 0o711)
    home = scratch.sub("home")
    st = {"benches": [n for n in ALL_BENCHES if not args.only or n in args.only.split(",")], "skipped": {},
          "user": {"name": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid},
          # podman's runroot: at most 50 characters
          "pyrt_root": os.path.join(home, "pyrt"), "podman_root": os.path.join(home, "podman"),
          "podman_runroot": f"/dev/shm/pbf-{os.getpid()}", "empty": os.path.join(scratch.path, "empty"),
          "env": {"HOME": home, "XDG_RUNTIME_DIR": os.path.join(home, "run"), "USER": pw.pw_name,
                  "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": _site(), "PYRT_DEFAULT_NETWORK": "none"}}
    open(st["empty"], "w").close()
    rootfs = common.make_busybox_rootfs(scratch.sub("rootfs"), busybox)
    tar = os.path.join(scratch.path, "bb.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    os.chmod(tar, 0o644)
    os.makedirs(st["env"]["XDG_RUNTIME_DIR"], mode=0o700)
    os.mkdir(st["podman_runroot"], 0o700)
    os.chown(st["podman_runroot"], pw.pw_uid, pw.pw_gid)
    for dirpath, dirnames, filenames in os.walk(home):
        for n in dirnames + filenames + ["."]:
            os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    st["python"] = _user_python(st, scratch)
    r = subprocess.run(_user_argv(st, [st["python"], "-m", "pyrt.cli.main", "--root", st["pyrt_root"], "import",
                                       tar, IMAGE]), capture_output=True, cwd="/")
    if r.returncode:
        raise SystemExit(f"bench_fuse: pyrt import: {r.stderr.decode()}")
    if "podman fuse-overlayfs" in st["benches"]:
        why = _podman_import(st, tar) if shutil.which("podman") else "podman not found"
        if why:
            st["benches"].remove("podman fuse-overlayfs")
            st["skipped"]["podman fuse-overlayfs"] = why
    return st


def _podman_import(st, tar) -> str:
    """Import the image for podman; "" or why it failed. In a child in the private
    mount namespace the workers use: rootless podman's pause process, which later
    podman commands join, starts here (and so sees no v2 controllers)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            _enter(st)
            out = subprocess.run(_user_argv(st, _podman(st) + ["import", tar, IMAGE]), capture_output=True, cwd="/")
            os.write(w, out.stderr.strip()[-200:] if out.returncode else b"")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        why = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    return why


def _user_python(st, scratch) -> str:
    """An interpreter the user can run that imports this pyrt: this one, else the
    system's of the same version, else this one's installation bound read-only
    into the scratch directory (it may live where the user cannot read, as under
    /root; scratch.cleanup() unmounts it)."""
    def works(exe):
        r = subprocess.run(_user_argv(st, [exe, "-c", "import pyrt._core, pyrt.cli.main"]), capture_output=True,
                           cwd="/")
        return r.returncode == 0, r.stderr.decode().strip()[-300:]
    for exe in (sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"):
        ok, why = works(exe)
        if ok:
            return exe
    prefix = os.path.realpath(sys.base_prefix)
    bound = scratch.sub("python")
    subprocess.run(["mount", "--bind", "-o", "ro", prefix, bound], check=True)
    st["env"]["LD_LIBRARY_PATH"] = os.path.join(bound, "lib")  # its libpython (an absolute RUNPATH)
    exe = os.path.join(bound, os.path.relpath(os.path.realpath(sys._base_executable), prefix))
    ok, why = works(exe)
    if ok:
        return exe
    raise SystemExit(f"bench_fuse: no Python the user can run imports pyrt: {why}")


def _site() -> str:
    import pyrt
    return os.path.dirname(os.path.dirname(os.path.abspath(pyrt.__file__)))


def cleanup(scratch, st):
    if st is not None:  # rootless podman's pause process, started by the first podman command
        pid_file = os.path.join(st["env"]["XDG_RUNTIME_DIR"], "libpod", "tmp", "pause.pid")
        try:
            with open(pid_file) as f:
                os.kill(int(f.read().strip()), 9)
        except (OSError, ValueError):
            pass
    if st is not None:
        shutil.rmtree(st["podman_runroot"], ignore_errors=True)
    if scratch is not None:
        for p in scratch.cleanup():
            common.log(f"[cleanup] {p}")


def report(results, st, args):
    print()
    print(f"Container start-up and removal from the command line, /bin/true (busybox) on tmpfs, as "
          f"{st['user']['name']} (uid {st['user']['uid']})")
    med = common.print_table(results, ALL_BENCHES, st["skipped"], width=22)
    print()
    common.print_ratios(med, [("pyrt fuse-overlayfs", "podman fuse-overlayfs"),
                              ("pyrt fuse-overlayfs", "pyrt overlay")])


def main():
    common.bench_main("bench_fuse", benches=ALL_BENCHES, quick_args=QUICK_PYPERF_ARGS, setup=setup,
                      run_benchmarks=run_benchmarks, report=report, cleanup=cleanup,
                      time_one=lambda st, name: _time(2, st, name), why_root="to prepare the user's stores",
                      user_option=True, smoke_in_child=True)


if __name__ == "__main__":
    main()
