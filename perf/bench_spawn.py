#!/usr/bin/env python3
"""Container start-up cost: /bin/true (busybox) in a new container, as

  C loop        perf/c_loop.c: clone into the same namespaces, tmpfs + overlay,
                pivot_root, exec, waitpid, in a loop in one process (the floor)
  pyrt.run      in-process `pyrt.run([...], rootfs=pyrt.Overlay(...), network="none")`
  pyrt CLI      `pyrt run --rootfs DIR -- /bin/true` (pyperf bench_command): the
                native `pyrt` command (csrc/bin/pyrt.c) when it does the run
                itself, which a note under the figures says
  runc          `runc run` on an OCI bundle (config.json from `runc spec`, edited)
  crun          `crun run` on the same bundle
  crun+unshare  crun through an `unshare -m sh -c 'mount --bind ...; exec crun ...'`
                wrapper (only on a cgroup-hybrid host, where crun needs it)
  bwrap         `bwrap --unshare-all --ro-bind ROOT / --proc /proc --dev /dev /bin/true`

all on one busybox rootfs on tmpfs, in the same run, then prints each median and
the ratios. Needs root.

  python perf/bench_spawn.py --quick            # one worker per benchmark, < 1 min
  python perf/bench_spawn.py                    # pyperf defaults (a few minutes)
  python perf/bench_spawn.py --fast -o out.json # any pyperf option works
  python perf/bench_spawn.py --only pyrt.run,crun --breakdown
  python perf/bench_spawn.py --smoke            # each path once, tiny (CI); no figures

Options of this script (the rest are pyperf's): --quick, --only NAMES,
--no-install (do not apt-get install missing tools), --breakdown (after the
benchmarks, time pyrt.run's parts in the main process).

What each one does, and what is fair about the comparison:
- Namespaces: mount, pid, uts, ipc and net for all. pyrt.run (its defaults) also
  makes a cgroup namespace; bwrap --unshare-all also makes user and cgroup
  namespaces; the OCI bundle has exactly mount/pid/uts/ipc/network.
- Root: pyrt.run mounts an overlay (lower = the busybox rootfs, upper and work
  on tmpfs) in each container. runc, crun and bwrap get one overlay mounted
  once by the benchmark (as a containerd snapshotter would) and only bind it,
  so they do a little less filesystem work per container than pyrt.run.
- cgroups: runc and crun create and remove one cgroup per container (in every
  v1 hierarchy and the v2 one on this hybrid host); pyrt.run with no `cgroup=`
  and bwrap create none.
- Launch: runc, crun, crun+unshare and bwrap are started by the benchmark worker
  with posix_spawn + waitpid (stdio on /dev/null); the pyrt CLI by pyperf's
  bench_command (a small Python that Popen()s it per loop). Both launchers cost
  the same (~0.7 ms for a plain /bin/true on this machine), and that cost is in
  every external figure; pyrt.run has none, being in-process.
- The pyrt CLI gets the busybox directory as `--rootfs DIR` (what it does with
  it is the CLI's business), plus `--rm` and `--network none` when its `run
  --help` offers them; PYRT_ROOT points at a store on tmpfs. The installed
  script next to sys.executable is run, never a pyenv shim (+40 ms of bash).
- Each runc/crun run uses a fresh container id; their --root is on tmpfs.
  runc needed nothing special here (cgroupfs driver, the default; its cgroups
  go to /<id> in each hierarchy, memory below the caller's own memory cgroup).
  crun puts the container in /<id> at the top of every hierarchy, memory too.
- crun on a hybrid host: crun 1.x refuses to start ("cgroups in hybrid mode not
  supported, drop all controllers from cgroupv2"). It runs when an empty file is
  bound over /sys/fs/cgroup/unified/cgroup.controllers in a private mount
  namespace. The "crun" benchmark's worker process enters such a namespace
  once, untimed, then starts crun per container like every other tool: this
  measures crun itself, which is what a user who sets this up once (e.g. a
  daemon started in such a namespace) pays. "crun+unshare" puts the wrapper
  (unshare + sh + mount, three more execs) in every run, for reference.
"""
from __future__ import annotations

import itertools
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

TARGET_RUN_FACTOR = 1.5    # pyrt.run within 1.5x of the C loop measured in the same run

ALL_BENCHES = ["C loop", "pyrt.run", "pyrt CLI", "runc", "crun", "crun+unshare", "bwrap"]
# In-process: no interpreter or program start per container. Whole-process: a
# program started (posix_spawn + waitpid) per container, as at a shell.
IN_PROCESS = {"C loop", "pyrt.run"}
QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "--min-time", "0.05"]

_ids = itertools.count()


# --- the timed loops (they run in pyperf worker processes) ---------------------

def time_c_loop(loops, st):
    return common.time_c_loop(st["c_loop"], st["lower"], st["c_anchor"], loops)


def time_pyrt_run(loops, st):
    import pyrt
    rootfs = pyrt.Overlay([st["lower"]], upperdir=st["pyrt_upper"], workdir=st["pyrt_work"])
    run = pyrt.run
    argv = ["/bin/true"]
    t0 = time.perf_counter()
    for _ in range(loops):
        r = run(argv, rootfs=rootfs, network="none")
        if r.returncode:
            raise RuntimeError(f"pyrt.run: /bin/true exited with {r.returncode}")
    return time.perf_counter() - t0


_spawner = None
_in_crun_namespace = False


def _enter_crun_namespace(st):
    """Once per worker, untimed: a private mount namespace with the cgroup v2
    controllers hidden, so that crun accepts this hybrid host."""
    global _in_crun_namespace
    if not _in_crun_namespace:
        common.enter_private_mount_namespace()
        common.hide_cgroup2_controllers(st["empty"])
        _in_crun_namespace = True


def time_command(loops, st, name, make_argv):
    global _spawner
    if name == "crun" and st.get("crun_hide"):
        _enter_crun_namespace(st)
    if _spawner is None:
        _spawner = common.Spawner()
    run = _spawner.run
    t0 = time.perf_counter()
    for _ in range(loops):
        argv = make_argv()
        rc = run(argv)
        if rc:
            raise RuntimeError(f"{name}: exit status {rc}: {' '.join(argv)}")
    return time.perf_counter() - t0


def argv_factory(name, st):
    """A function returning the argv of one run (a fresh container id each time)."""
    prefix = f"{st['prefix']}-{os.getpid()}"
    if name == "runc":
        base = [st["tools"]["runc"], "--root", st["runc_root"], "run", "--bundle", st["bundle"]]
        return lambda: base + [f"{prefix}-r{next(_ids)}"]
    if name == "crun":
        base = [st["tools"]["crun"], "--root", st["crun_root"], "run", "--bundle", st["bundle"]]
        return lambda: base + [f"{prefix}-c{next(_ids)}"]
    if name == "crun+unshare":
        base = [st["tools"]["crun"], "--root", st["crun_root"], "run", "--bundle", st["bundle"]]
        return lambda: common.crun_wrapper_argv(st["empty"], base + [f"{prefix}-u{next(_ids)}"],
                                                unshare=st["tools"]["unshare"])
    if name == "bwrap":
        argv = [st["tools"]["bwrap"], "--unshare-all", "--ro-bind", st["merged"], "/", "--proc", "/proc",
                "--dev", "/dev", "/bin/true"]
        return lambda: argv
    raise KeyError(name)


def run_benchmarks(runner, st) -> dict:
    """The same sequence of runner calls in the main process and in every
    worker (pyperf picks a worker's benchmark by its index in the sequence)."""
    if st.get("pyrt_store"):
        os.environ["PYRT_ROOT"] = st["pyrt_store"]  # for the CLI (workers' env is filtered)
    results = {}
    for name in st["benches"]:
        if name == "C loop":
            results[name] = runner.bench_time_func(name, time_c_loop, st)
        elif name == "pyrt.run":
            results[name] = runner.bench_time_func(name, time_pyrt_run, st)
        elif name == "pyrt CLI":
            results[name] = runner.bench_command(name, list(st["cli_argv"]))
        else:
            results[name] = runner.bench_time_func(name, time_command, st, name, argv_factory(name, st))
    return results


# --- setup and clean-up (main process) -----------------------------------------

def setup(args, scratch) -> dict:
    install = not args.no_install
    wanted = ALL_BENCHES if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ALL_BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(ALL_BENCHES)}")

    st = {"prefix": f"pyrtbench-{secrets.token_hex(3)}", "tools": {}, "skipped": {}, "notes": []}
    busybox, why = common.find_static_busybox(install=install)
    if busybox is None:
        raise SystemExit(f"bench_spawn: {why}")
    st["lower"] = common.make_busybox_rootfs(scratch.sub("lower"), busybox)
    st["pyrt_upper"], st["pyrt_work"] = scratch.sub("pyrt-upper"), scratch.sub("pyrt-work")
    st["pyrt_store"] = scratch.sub("pyrt-store")
    # One overlay for runc/crun/bwrap, its own upper/work (two overlays must not share an upper).
    st["merged"] = common.mount_overlay([st["lower"]], scratch.sub("oci-upper"), scratch.sub("oci-work"),
                                        scratch.sub("merged"))
    st["empty"] = os.path.join(scratch.path, "empty")
    open(st["empty"], "w").close()
    st["runc_root"], st["crun_root"] = scratch.sub("runc-root"), scratch.sub("crun-root")
    st["bundle"] = scratch.sub("bundle")
    st["cgroup_mode"] = common.cgroup_mode()

    def skip(name, why):
        st["skipped"][name] = why
        common.log(f"[setup] skipping {name}: {why}")

    if "C loop" in wanted:
        why = common.prepare_c_loop(scratch, st)
        if why:
            skip("C loop", why)

    # pyrt.run
    if "pyrt.run" in wanted:
        try:
            import pyrt
            r = pyrt.run(["/bin/true"], rootfs=pyrt.Overlay([st["lower"]], upperdir=st["pyrt_upper"],
                                                             workdir=st["pyrt_work"]), network="none")
            if r.returncode:
                skip("pyrt.run", f"/bin/true exited with {r.returncode}")
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            skip("pyrt.run", f"{type(exc).__name__}: {exc}")

    # pyrt CLI
    if "pyrt CLI" in wanted:
        cli = common.find_pyrt_cli()
        env = dict(os.environ, PYRT_ROOT=st["pyrt_store"])
        if not cli:
            skip("pyrt CLI", "no `pyrt` script installed (pip install -e .)")
        else:
            ok, out = common.check_command([cli, "run", "--help"], env=env)
            if not ok:
                skip("pyrt CLI", "`pyrt run` is not available yet: " + (out.splitlines() or [""])[-1])
            else:
                argv = [cli, "run"]
                if "--rm" in out:
                    argv.append("--rm")
                if "--network" in out:
                    argv += ["--network", "none"]
                argv += ["--rootfs", st["lower"], "--", "/bin/true"]
                ok, out = common.check_command(argv, env=env)  # (and the seccomp filter cached)
                if ok:
                    st["cli_argv"] = argv
                    st["notes"].append(f"pyrt CLI: {_cli_kind(argv, env)}")
                else:
                    skip("pyrt CLI", f"`{' '.join(argv)}` failed: {out}")

    # the OCI bundle
    runc = crun = None
    if {"runc", "crun", "crun+unshare"} & set(wanted):
        runc, why = common.find_tool("runc", install=install)
        if runc:
            st["tools"]["runc"] = runc
        else:
            skip("runc", why)
        if {"crun", "crun+unshare"} & set(wanted):
            crun, why = common.find_tool("crun", install=install)
            if crun:
                st["tools"]["crun"] = crun
            else:
                for n in ("crun", "crun+unshare"):
                    if n in wanted:
                        skip(n, why)
        spec_tool = runc or crun
        if spec_tool:
            common.make_oci_bundle(st["bundle"], st["merged"], ["/bin/true"], spec_tool=spec_tool)
            if spec_tool != runc:
                st["notes"].append("config.json made by `crun spec` (runc missing)")

    if runc and "runc" in wanted:
        cid = f"{st['prefix']}-check-runc"
        argv = [runc, "--root", st["runc_root"], "run", "--bundle", st["bundle"], cid]
        ok, out = common.check_command(argv)
        if not ok:
            # On some hosts runc cannot create cgroups at the default place: try a
            # path relative to its own cgroup (where it may create children).
            def relative_cgroups(cfg):
                cfg["linux"]["cgroupsPath"] = f"{st['prefix']}-runc"
            common.oci_delete_all(runc, st["runc_root"], st["prefix"])
            common.make_oci_bundle(st["bundle"], st["merged"], ["/bin/true"], spec_tool=runc,
                                   edit=relative_cgroups)
            ok2, out2 = common.check_command(argv)
            if ok2:
                st["notes"].append(f"runc needed cgroupsPath={st['prefix']}-runc ({out})")
            else:
                skip("runc", f"{out} / with a relative cgroupsPath: {out2}")
                common.make_oci_bundle(st["bundle"], st["merged"], ["/bin/true"], spec_tool=runc)

    if crun and ({"crun", "crun+unshare"} & set(wanted)):
        st["crun_hide"] = common.crun_needs_hidden_controllers()
        cid = f"{st['prefix']}-check-crun"
        argv = [crun, "--root", st["crun_root"], "run", "--bundle", st["bundle"], cid]
        if st["crun_hide"]:
            unshare, why = common.find_tool("unshare", install=install)
            if not unshare:
                for n in ("crun", "crun+unshare"):
                    skip(n, f"crun needs a private mount namespace on this hybrid host: {why}")
            else:
                st["tools"]["unshare"] = unshare
                ok, out = common.check_command(common.crun_wrapper_argv(st["empty"], argv, unshare=unshare))
                if not ok:
                    for n in ("crun", "crun+unshare"):
                        skip(n, f"crun failed even with the v2 controllers hidden: {out}")
                else:
                    st["notes"].append("crun: cgroup v2 controllers hidden in a private mount namespace "
                                       "(hybrid host)")
        else:
            skip("crun+unshare", f"not needed: cgroups are {st['cgroup_mode']}, crun runs as it is")
            ok, out = common.check_command(argv)
            if not ok:
                skip("crun", out)

    if "bwrap" in wanted:
        bwrap, why = common.find_tool("bwrap", install=install)
        if not bwrap:
            skip("bwrap", why)
        else:
            st["tools"]["bwrap"] = bwrap
            ok, out = common.check_command([bwrap, "--unshare-all", "--ro-bind", st["merged"], "/", "--proc",
                                            "/proc", "--dev", "/dev", "/bin/true"])
            if not ok:
                skip("bwrap", out)

    st["benches"] = [n for n in wanted if n not in st["skipped"]]
    return st


def cleanup(scratch, st):
    problems = []
    if st:
        prefix = st["prefix"]
        if st["tools"].get("runc"):
            left = common.oci_delete_all(st["tools"]["runc"], st["runc_root"], prefix)
            if left:
                problems.append(f"deleted {len(left)} leftover runc container(s)")
        if st["tools"].get("crun"):
            wrap = None
            if st.get("crun_hide") and st["tools"].get("unshare"):
                def wrap(argv):
                    return common.crun_wrapper_argv(st["empty"], argv, unshare=st["tools"]["unshare"])
            left = common.oci_delete_all(st["tools"]["crun"], st["crun_root"], prefix, wrap=wrap)
            if left:
                problems.append(f"deleted {len(left)} leftover crun container(s)")
        removed = common.remove_cgroups(prefix)
        if removed:
            problems.append(f"removed {len(removed)} leftover cgroup(s)")
    if scratch is not None:
        problems += scratch.cleanup()
    for p in problems:
        common.log(f"[cleanup] {p}")


def _cli_kind(argv, env) -> str:
    """Whether `pyrt` does this run natively (csrc/bin/pyrt.c) or hands it to its
    Python CLI: a Python that starts prints its import times with
    PYTHONPROFILEIMPORTTIME=1, the native command never does."""
    import subprocess
    r = subprocess.run(argv, env=dict(env, PYTHONPROFILEIMPORTTIME="1"), stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if b"import time:" in r.stderr:
        return "handed over to the Python CLI (see csrc/bin/pyrt.c for when)"
    return "the native front end (csrc/bin/pyrt.c), no Python started"


# --- report ----------------------------------------------------------------------

def print_summary(results, st):
    print()
    print("Container start-up, /bin/true (busybox) on a tmpfs rootfs; "
          "mount+pid+uts+ipc+net namespaces")
    base = None
    if results.get("pyrt.run") is not None:
        base = results["pyrt.run"].median()

    def ratio(name, m):
        kind = "in-process" if name in IN_PROCESS else "whole process"
        return f"  {f'{m / base:9.2f}x' if base else '':>10}  {kind}"
    med = common.print_table(results, ALL_BENCHES, st["skipped"], width=14, extra=ratio,
                             extra_header=f"  {'/ pyrt.run':>10}")

    def compare(a, b):
        r = med[b] / med[a]
        return f"{r:6.2f}x faster than" if r >= 1 else f"{1 / r:6.2f}x slower than"

    print()
    print("Ratios:")
    if "pyrt.run" in med:
        for name in ALL_BENCHES[2:]:
            if name in med:
                print(f"  pyrt.run (in-process, no cgroup) is {compare('pyrt.run', name)} {name} "
                      f"(a process per container{', a cgroup per container' if name in ('runc', 'crun', 'crun+unshare') else ''})")
        if "C loop" in med:
            f = med["pyrt.run"] / med["C loop"]
            print(f"  pyrt.run / C loop (both in-process, same run) = {f:.2f} "
                  f"(target <= {TARGET_RUN_FACTOR}: {'met' if f <= TARGET_RUN_FACTOR else 'NOT met'})")
            print(f"    the C loop leaves out: {common.C_LOOP_LEAVES_OUT}")
    if "pyrt CLI" in med and "crun" in med:
        print(f"  pyrt CLI is {compare('pyrt CLI', 'crun')} crun, both whole processes "
              f"(target: no slower than crun: {'met' if med['pyrt CLI'] <= med['crun'] else 'NOT met'})")
    else:
        missing = [n for n in ("pyrt CLI", "crun") if n not in med]
        why = "; ".join(f"{n}: {st['skipped'].get(n, 'not selected')}" for n in missing)
        print(f"  pyrt CLI vs crun: not measured ({why})")
    if st.get("cli_argv") and "pyrt CLI" in med:
        print(f"note: pyrt CLI measured as: {' '.join(st['cli_argv'])}")
    for n in st["notes"]:
        print(f"note: {n}")


def breakdown(st, n):
    """Time pyrt.run's parts in this process: the Python side (building the
    spec), the C spawn (clone -> container set up -> exec, until the error pipe
    closes), and waiting for the exit; with a plain posix_spawn of the same
    busybox (no namespaces) as the floor."""
    try:
        import pyrt
        from pyrt import _core
        from pyrt.launch.spec import build_spec
    except Exception as exc:  # noqa: BLE001
        print(f"breakdown unavailable: {exc}")
        return
    rootfs = pyrt.Overlay([st["lower"]], upperdir=st["pyrt_upper"], workdir=st["pyrt_work"])
    pc = time.perf_counter
    rows = {k: [] for k in ("pyrt.run total", "build_spec (Python)", "_core.spawn (C: clone..exec)",
                            "_core.wait (exec..reaped)", "posix_spawn+waitpid, no namespaces")}
    sp = common.Spawner(quiet=False)
    host_true = os.path.join(st["lower"], "bin", "busybox")
    try:
        for _ in range(n):
            t0 = pc()
            pyrt.run(["/bin/true"], rootfs=rootfs, network="none")
            rows["pyrt.run total"].append(pc() - t0)
            t0 = pc()
            spec = build_spec(["/bin/true"], rootfs, network="none")
            t1 = pc()
            pid, pidfd = _core.spawn(spec)
            t2 = pc()
            _core.wait(pidfd, None)
            t3 = pc()
            os.close(pidfd)
            rows["build_spec (Python)"].append(t1 - t0)
            rows["_core.spawn (C: clone..exec)"].append(t2 - t1)
            rows["_core.wait (exec..reaped)"].append(t3 - t2)
            t0 = pc()
            sp.run([host_true, "true"])
            rows["posix_spawn+waitpid, no namespaces"].append(pc() - t0)
    except Exception as exc:  # noqa: BLE001
        print(f"breakdown failed: {type(exc).__name__}: {exc}")
        return
    finally:
        sp.close()
    import statistics
    print()
    print(f"pyrt.run breakdown ({n} runs in the main process, medians):")
    for k, v in rows.items():
        print(f"  {k:<38} {statistics.median(v) * 1e3:8.3f} ms")


# --- main --------------------------------------------------------------------------

def main():
    argv, quick = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_spawn", argv)
    ap = runner.argparser
    ap.add_argument("--only", help="comma-separated benchmarks among: " + ", ".join(ALL_BENCHES))
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    ap.add_argument("--breakdown", action="store_true", help="also time pyrt.run's parts (main process)")
    args = runner.parse_args()

    def report(results, st):
        if any(v is not None for v in results.values()):
            print_summary(results, st)
        if args.breakdown or common.SMOKE:
            breakdown(st, 2 if common.SMOKE else 50 if quick else 300)

    common.run_main(runner, args, name="bench_spawn", why_root="namespaces, mounts", setup=setup,
                    run_benchmarks=run_benchmarks, report=report, cleanup=cleanup,
                    scratch_prefix="pyrt-bench-spawn-")


if __name__ == "__main__":
    main()
