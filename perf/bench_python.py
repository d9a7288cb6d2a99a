#!/usr/bin/env python3
"""Python inside: the cost of running the host's Python in pyrt's host-root
sandbox (pyrt.HostRoot), and of bootstrapping a Debian base image.

Start-up, paired in one pyperf run (`python3 -c pass`, the host's /usr/bin/python3):

  python3 (host)       posix_spawn + waitpid of plain python3 on the host
  pyrt.run HostRoot    in-process pyrt.run(argv, rootfs=pyrt.HostRoot())
  Pool.run HostRoot    a warm pyrt.Pool(rootfs=pyrt.HostRoot(), size=4)
  bwrap (same binds)   bwrap with the same root: pyrt's skeleton bound read-only at
                       /, then exactly the binds and tmpfs HostRoot makes, --proc,
                       --dev, --unshare-all (it adds a user namespace) and
                       --die-with-parent; started like python3 (host)
  pyrt CLI --host-root `pyrt run --host-root -- python3 -c pass` (pyperf bench_command)

pyrt.run's overhead is its median minus python3 (host)'s; the goal is 3 ms or less.
What is not the same: pyrt.run also puts the container in a cgroup with docker's
device list and loads the default seccomp filter; bwrap does neither.

Bootstrap (--bootstrap, not pyperf: one network-bound run each, minbase of the
host's release from the host's mirror, stores on tmpfs):

  pyrt image bootstrap                        mmdebstrap -> tar -> one gzip layer
  debootstrap + pyrt import                   debootstrap --variant=minbase into a
                                              directory, then `pyrt import DIR`

    python3 perf/bench_python.py --quick        # a few values per benchmark
    python3 perf/bench_python.py                # pyperf defaults
    python3 perf/bench_python.py --bootstrap    # the bootstrap figures (needs the mirror)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

PYTHON = "/usr/bin/python3"
ARGV = [PYTHON, "-c", "pass"]
BENCHES = ["python3 (host)", "pyrt.run HostRoot", "Pool.run HostRoot", "bwrap (same binds)", "pyrt CLI --host-root"]
QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "--min-time", "0.05"]
OVERHEAD_TARGET = 3e-3


# --- timed loops (pyperf workers) ------------------------------------------------

def time_pyrt_run(loops, st):
    import pyrt
    hr = pyrt.HostRoot()
    run = pyrt.run
    t0 = time.perf_counter()
    for _ in range(loops):
        r = run(ARGV, rootfs=hr)
        if r.returncode:
            raise RuntimeError(f"pyrt.run: exit status {r.returncode}")
    return time.perf_counter() - t0


_pool = None


def time_pool(loops, st):
    global _pool
    import pyrt
    if _pool is None:  # one pool per worker, made untimed
        _pool = pyrt.Pool(rootfs=pyrt.HostRoot(), size=4)
        _pool.wait_ready(60)
    run = _pool.run
    t0 = time.perf_counter()
    for _ in range(loops):
        r = run(ARGV, capture_output=False)
        if r.returncode:
            raise RuntimeError(f"Pool.run: exit status {r.returncode}")
    return time.perf_counter() - t0


_spawner = None


def time_command(loops, st, argv):
    global _spawner
    if _spawner is None:
        _spawner = common.Spawner()
    run = _spawner.run
    t0 = time.perf_counter()
    for _ in range(loops):
        rc = run(argv)
        if rc:
            raise RuntimeError(f"exit status {rc}: {' '.join(argv)}")
    return time.perf_counter() - t0


def run_benchmarks(runner, st) -> dict:
    results = {}
    for name in st["benches"]:
        if name == "python3 (host)":
            results[name] = runner.bench_time_func(name, time_command, st, ARGV)
        elif name == "pyrt.run HostRoot":
            results[name] = runner.bench_time_func(name, time_pyrt_run, st)
        elif name == "Pool.run HostRoot":
            results[name] = runner.bench_time_func(name, time_pool, st)
        elif name == "bwrap (same binds)":
            results[name] = runner.bench_time_func(name, time_command, st, st["bwrap_argv"])
        elif name == "pyrt CLI --host-root":
            results[name] = runner.bench_command(name, st["cli_argv"])
    return results


# --- set-up, report -----------------------------------------------------------------

def bwrap_argv(bwrap) -> list:
    """bwrap with HostRoot's layout: its skeleton as /, then its binds and tmpfs."""
    import pyrt
    from pyrt.launch.mounts import Bind, Tmpfs
    skeleton, mounts, env = pyrt.HostRoot().prepare()
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", skeleton, "/", "--proc", "/proc",
            "--dev", "/dev"]
    for m in sorted(mounts, key=lambda m: os.path.normpath(m.target).count("/")):
        if isinstance(m, Bind):
            argv += ["--ro-bind", os.fspath(m.source), os.fspath(m.target)]
        elif isinstance(m, Tmpfs):
            argv += ["--tmpfs", os.fspath(m.target)]
    return argv + ["--setenv", "HOME", env["HOME"], "--chdir", "/"] + ARGV


def setup(args, scratch) -> dict:
    st = {"benches": [], "skipped": {}}
    if not os.path.exists(PYTHON):
        raise SystemExit(f"bench_python: {PYTHON} is missing")
    import pyrt
    r = pyrt.run(ARGV, rootfs=pyrt.HostRoot())
    if r.returncode:
        raise SystemExit(f"bench_python: python3 in the host root exited with {r.returncode}")
    bwrap, why = common.find_tool("bwrap", install=not args.no_install)
    if bwrap:
        st["bwrap_argv"] = bwrap_argv(bwrap)
        ok, out = common.check_command(st["bwrap_argv"])
        if not ok:
            st["skipped"]["bwrap (same binds)"] = out
    else:
        st["skipped"]["bwrap (same binds)"] = why
    cli = common.find_pyrt_cli()
    if cli:
        st["cli_argv"] = [cli, "run", "--host-root", "--", *ARGV]
    else:
        st["skipped"]["pyrt CLI --host-root"] = "no pyrt script installed"
    st["benches"] = [b for b in BENCHES if b not in st["skipped"]]
    return st


def report(results, st):
    print()
    med = common.print_table(results, BENCHES, st["skipped"], width=22)
    print()
    host = med.get("python3 (host)")
    for name in ("pyrt.run HostRoot", "Pool.run HostRoot", "bwrap (same binds)", "pyrt CLI --host-root"):
        if host is not None and name in med:
            line = f"  {name} - python3 (host): {(med[name] - host) * 1e3:+.2f} ms"
            if name == "pyrt.run HostRoot":
                met = med[name] - host <= OVERHEAD_TARGET
                line += f"  (target <= {OVERHEAD_TARGET * 1e3:.0f} ms: {'met' if met else 'NOT met'})"
            print(line)
    common.print_ratios(med, [("pyrt.run HostRoot", "bwrap (same binds)"), ("Pool.run HostRoot", "bwrap (same binds)")],
                        in_process={"pyrt.run HostRoot", "Pool.run HostRoot"})


def cleanup(scratch, st):
    if scratch is not None:
        for p in scratch.cleanup():
            common.log(f"[cleanup] {p}")


# --- bootstrap ----------------------------------------------------------------------

def bootstrap_figures(no_install):
    from pyrt.images import bootstrap as bs
    suite = bs.host_codename()
    mirror = bs.host_mirror(suite)
    cli = common.find_pyrt_cli()
    base = "/dev/shm"
    work = os.path.join(base, f"pyrt-bench-bootstrap-{os.getpid()}")
    os.makedirs(work)
    rows = []
    try:
        env = dict(os.environ)
        t0 = time.perf_counter()
        r = subprocess.run([cli, "--root", os.path.join(work, "s1"), "image", "bootstrap", "deb:1", "--suite", suite],
                           env=env, capture_output=True, text=True)
        t = time.perf_counter() - t0
        rows.append(("pyrt image bootstrap", t if r.returncode == 0 else None, r.stderr.strip()[-200:]))
        size = _image_size(cli, os.path.join(work, "s1"), "deb:1")
        debootstrap, why = common.find_tool("debootstrap", install=not no_install, package="debootstrap")
        if debootstrap:
            root = os.path.join(work, "root")
            t0 = time.perf_counter()
            r = subprocess.run([debootstrap, "--variant=minbase", suite, root, mirror], capture_output=True,
                               text=True)
            t1 = time.perf_counter()
            ok = r.returncode == 0
            why = r.stdout.strip()[-200:] + r.stderr.strip()[-200:]
            if ok:
                r = subprocess.run([cli, "--root", os.path.join(work, "s2"), "import", root, "deb:2"],
                                   capture_output=True, text=True)
                ok = r.returncode == 0
                why = r.stderr.strip()[-200:]
            t2 = time.perf_counter()
            rows.append(("debootstrap", t1 - t0 if ok else None, why))
            rows.append(("debootstrap + pyrt import", t2 - t0 if ok else None, why))
            size2 = _image_size(cli, os.path.join(work, "s2"), "deb:2") if ok else None
        else:
            rows.append(("debootstrap + pyrt import", None, why))
            size2 = None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"bootstrap of {suite} (minbase) from {mirror}:")
    for name, t, why in rows:
        print(f"  {name:<28} " + (f"{t:7.1f} s" if t is not None else f"failed: {why}"))
    if size:
        print(f"  image size: pyrt image bootstrap {size}" + (f", debootstrap + import {size2}" if size2 else ""))


def _image_size(cli, root, ref):
    import json
    r = subprocess.run([cli, "--root", root, "images", "--format", "json"], capture_output=True, text=True)
    try:
        for img in json.loads(r.stdout):
            if f"{img.get('Repository')}:{img.get('Tag')}" == ref:
                return f"{img.get('Size', 0) / 1e6:.0f} MB"
    except (ValueError, TypeError, AttributeError):
        pass
    return None


def main():
    if "--bootstrap" in sys.argv:
        if os.geteuid() != 0:
            raise SystemExit("bench_python --bootstrap needs root")
        bootstrap_figures("--no-install" in sys.argv)
        return
    argv, _ = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    no_install = "--no-install" in argv
    argv = [a for a in argv if a != "--no-install"]
    runner = common.make_runner("bench_python", argv)
    args = runner.parse_args()
    args.no_install = no_install
    common.run_main(runner, args, name="bench_python", setup=setup, run_benchmarks=run_benchmarks, report=report,
                    cleanup=cleanup)


if __name__ == "__main__":
    main()
