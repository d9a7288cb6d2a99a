"""`pyrt run --rm --network none IMAGE /bin/true` against `crun run` of a bundle
of the same rootfs: whole processes both, measured in the same run.

  pyrt image        `pyrt --root STORE run --rm --network none bench:1 /bin/true`
                    (the native command, csrc/bin/pyrt.c: no Python started)
  pyrt image (Py)   the same command line with PYRT_CLI_PYTHON=1 (the Python CLI)
  crun              `crun --root R run --bundle B ID` of the busybox rootfs

Usage (root):
  python perf/bench_run_image.py                 # pyperf, every benchmark
  python perf/bench_run_image.py --quick
  python perf/bench_run_image.py --smoke         # each path once, tiny (CI); no figures

What each does:
- pyrt: looks the image up in the store's database, makes the container (its row,
  its directory with upper, work, init layer, hostname, hosts, resolv.conf and
  log), mounts the overlay of the image's layer, the init layer and the upper dir,
  makes its cgroup (pyrt/<id>, the device allow-list as an eBPF program), starts
  /bin/true in new mount, pid, uts, ipc, net (loopback only) and cgroup
  namespaces with the default seccomp filter and capabilities, relays and logs
  its output, records its state (running, exited), then removes the container
  (row, directory, cgroup): what `--rm` means.
- crun: the bundle's config (`crun spec`, root = an overlay of the same busybox
  rootfs mounted once), namespaces mount, pid, uts, ipc, network (no interface
  but lo) and cgroup; crun makes and removes a cgroup per container and its state
  directory under --root (tmpfs), a fresh container id each run.
- On a cgroup-hybrid host crun 1.x refuses to start unless an empty file is bound
  over /sys/fs/cgroup/unified/cgroup.controllers in a private mount namespace: each
  run of every tool then goes through the same wrapper, `unshare -m sh -c 'mount
  --bind EMPTY .../cgroup.controllers && exec TOOL ...'`, so that both pay it.
- Every run is a process started by the benchmark worker (posix_spawn + waitpid,
  stdio on /dev/null): whole-process figures on both sides.
"""
from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

TARGET_FACTOR = 2.0  # issue 14: `pyrt run --rm IMAGE true` <= 2x crun's run
ALL_BENCHES = ["pyrt image", "pyrt image (Py)", "crun"]
QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "--min-time", "0.05"]
NAMESPACES = ("mount", "pid", "uts", "ipc", "network", "cgroup")
IMAGE = "bench:1"

_ids = itertools.count()
_spawners = {}


def _wrapped(st, argv):
    if st.get("hide"):
        return common.crun_wrapper_argv(st["empty"], argv, unshare=st["tools"]["unshare"])
    return argv


def pyrt_argv(st):
    return [st["cli"], "--root", st["store"], "run", "--rm", "--network", "none", IMAGE, "/bin/true"]


def argv_factory(name, st):
    if name in ("pyrt image", "pyrt image (Py)"):
        argv = _wrapped(st, pyrt_argv(st))
        return lambda: argv
    base = [st["tools"]["crun"], "--root", st["crun_root"], "run", "--bundle", st["bundle"]]
    prefix = f"{st['prefix']}-{os.getpid()}"
    return lambda: _wrapped(st, base + [f"{prefix}-c{next(_ids)}"])


def time_command(loops, st, name, make_argv):
    sp = _spawners.get(name)
    if sp is None:
        env = dict(os.environ)
        env.pop("PYRT_CLI_PYTHON", None)
        if name == "pyrt image (Py)":
            env["PYRT_CLI_PYTHON"] = "1"
        sp = _spawners[name] = common.Spawner(env=env)
    run = sp.run
    t0 = time.perf_counter()
    for _ in range(loops):
        argv = make_argv()
        rc = run(argv)
        if rc:
            raise RuntimeError(f"{name}: exit status {rc}: {' '.join(argv)}")
    return time.perf_counter() - t0


def run_benchmarks(runner, st) -> dict:
    return {name: runner.bench_time_func(name, time_command, st, name, argv_factory(name, st))
            for name in st["benches"]}


# --- setup and clean-up (main process) -----------------------------------------

def _import_image(lower, store, scratch):
    """The busybox rootfs as the image bench:1 of a store of its own."""
    from pyrt.runtime import Runtime
    tar = os.path.join(scratch.path, "rootfs.tar")
    with tarfile.open(tar, "w") as t:
        for name in sorted(os.listdir(lower)):
            t.add(os.path.join(lower, name), arcname=name)
    rt = Runtime(store, quiet=True)
    try:
        rt.images.import_image(tar, "bench", "1")
    finally:
        rt.close()
    os.unlink(tar)


def setup(args, scratch) -> dict:
    install = not args.no_install
    wanted = ALL_BENCHES if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ALL_BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(ALL_BENCHES)}")
    st = {"prefix": f"pyrtbench-{secrets.token_hex(3)}", "tools": {}, "skipped": {}, "notes": []}

    def skip(name, why):
        st["skipped"][name] = why
        common.log(f"[setup] skipping {name}: {why}")

    busybox, why = common.find_static_busybox(install=install)
    if busybox is None:
        raise SystemExit(f"bench_run_image: {why}")
    st["lower"] = common.make_busybox_rootfs(scratch.sub("lower"), busybox)
    st["empty"] = os.path.join(scratch.path, "empty")
    open(st["empty"], "w").close()
    st["hide"] = common.crun_needs_hidden_controllers()
    if st["hide"]:
        unshare, why = common.find_tool("unshare", install=install)
        if not unshare:
            raise SystemExit(f"bench_run_image: the wrapper a hybrid host needs: {why}")
        st["tools"]["unshare"] = unshare
        st["notes"].append("cgroup-hybrid host: every run (pyrt's and crun's) goes through `unshare -m sh -c "
                           "'mount --bind EMPTY /sys/fs/cgroup/unified/cgroup.controllers && exec ...'`")

    # pyrt: a store with the image, its storage driver and seccomp filter set up by a first run
    st["cli"] = common.find_pyrt_cli()
    st["store"] = scratch.sub("pyrt-store")
    if not st["cli"]:
        for n in ("pyrt image", "pyrt image (Py)"):
            skip(n, "no `pyrt` command installed (pip install .)")
    else:
        _import_image(st["lower"], st["store"], scratch)
        env = dict(os.environ, PYRT_CLI_PYTHON="1")
        ok, out = common.check_command(_wrapped(st, pyrt_argv(st)), env=env)
        if not ok:
            for n in ("pyrt image", "pyrt image (Py)"):
                skip(n, f"`{' '.join(pyrt_argv(st))}` failed: {out}")
        else:
            env = {k: v for k, v in os.environ.items() if k != "PYRT_CLI_PYTHON"}
            r = subprocess.run(_wrapped(st, pyrt_argv(st)), env=dict(env, PYTHONPROFILEIMPORTTIME="1"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            native = r.returncode == 0 and b"import time:" not in r.stderr
            st["notes"].append("pyrt image: " + ("the native command (csrc/bin/pyrt.c), no Python started"
                                                 if native else "HANDED OVER to the Python CLI (see "
                                                 "csrc/bin/pyrt.c for when)"))

    # crun: a bundle of the same rootfs (an overlay of it, as pyrt's)
    if "crun" in wanted:
        crun, why = common.find_tool("crun", install=install)
        if not crun:
            skip("crun", why)
        else:
            st["tools"]["crun"] = crun
            st["merged"] = common.mount_overlay([st["lower"]], scratch.sub("oci-upper"), scratch.sub("oci-work"),
                                                scratch.sub("merged"))
            st["bundle"], st["crun_root"] = scratch.sub("bundle"), scratch.sub("crun-root")
            common.make_oci_bundle(st["bundle"], st["merged"], ["/bin/true"], spec_tool=crun,
                                   namespaces=NAMESPACES)
            argv = [crun, "--root", st["crun_root"], "run", "--bundle", st["bundle"], f"{st['prefix']}-check"]
            ok, out = common.check_command(_wrapped(st, argv))
            if not ok:
                skip("crun", out)
    st["benches"] = [n for n in wanted if n not in st["skipped"]]
    return st


def cleanup(scratch, st):
    problems = []
    if st:
        if st["tools"].get("crun"):
            left = common.oci_delete_all(st["tools"]["crun"], st["crun_root"], st["prefix"],
                                         wrap=(lambda argv: _wrapped(st, argv)) if st.get("hide") else None)
            if left:
                problems.append(f"deleted {len(left)} leftover crun container(s)")
        removed = common.remove_cgroups(st["prefix"])
        if removed:
            problems.append(f"removed {len(removed)} leftover cgroup(s)")
        if st.get("store") and os.path.isdir(st["store"]):
            from pyrt.runtime import Runtime
            rt = Runtime(st["store"], quiet=True)
            try:
                for c in rt.containers.list(all=True):  # (--rm leaves none: only after a failure)
                    problems.append(f"removed leftover pyrt container {c.name}")
                    c.remove(force=True, v=True)
            finally:
                rt.close()
    if scratch is not None:
        problems += scratch.cleanup()
    for p in problems:
        common.log(f"[cleanup] {p}")


# --- report ----------------------------------------------------------------------

def report(results, st):
    print()
    print("`pyrt run --rm --network none IMAGE /bin/true` and `crun run` (busybox rootfs, same namespaces, a cgroup "
          "each); whole processes")
    med = common.print_table(results, ALL_BENCHES, st["skipped"], width=16)
    print()
    print("Ratios (whole processes, same run):")
    if "crun" in med:
        for name in ("pyrt image", "pyrt image (Py)"):
            if name in med:
                f = med[name] / med["crun"]
                target = f" (target <= {TARGET_FACTOR:.0f}x: {'met' if f <= TARGET_FACTOR else 'NOT met'})" \
                    if name == "pyrt image" else ""
                print(f"  {name} / crun = {f:.2f}x{target}")
    if "pyrt image" in med and "pyrt image (Py)" in med:
        print(f"  pyrt image (Py) / pyrt image = {med['pyrt image (Py)'] / med['pyrt image']:.2f}x")
    print(f"note: pyrt measured as: {' '.join(pyrt_argv(st)) if st.get('cli') else '-'}")
    for n in st["notes"]:
        print(f"note: {n}")


def main():
    argv, _quick = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_run_image", argv)
    ap = runner.argparser
    ap.add_argument("--only", help="comma-separated benchmarks among: " + ", ".join(ALL_BENCHES))
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    args = runner.parse_args()
    common.run_main(runner, args, name="bench_run_image", why_root="namespaces, mounts, cgroups", setup=setup,
                    run_benchmarks=run_benchmarks, report=report, cleanup=cleanup,
                    scratch_prefix="pyrt-bench-run-image-")


if __name__ == "__main__":
    main()
