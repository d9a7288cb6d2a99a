#!/usr/bin/env python3
"""Containers per second running /bin/true (busybox, tmpfs rootfs), in the same run:

  C loop         a small C program (compiled here): clone into new mount, pid, uts,
                 ipc, net and cgroup namespaces, a tmpfs upper + overlay (volatile)
                 over the rootfs, pivot_root, exec /bin/true, waitpid; in a loop
  pool           pyrt.Pool(rootfs=..., size=4, measure=False).run(["/bin/true"]) in
                 a loop (one thread): parked containers, refilled in the background
  pool+measure   the same with the default measure=True: every container in its own
                 cgroup (v2 + v1 memory on a hybrid host), usage read after each run
  pool latency   the pool's per-run latency: the hand-over of the command to its exit
                 seen by Python (Usage.wall), summed (so pyperf shows the mean); this
                 one runs on every CPU (a pool's normal setting), the refill beside it
  pyrt.run       a cold pyrt.run(["/bin/true"], rootfs, upper_tmpfs=True) per container
  crun           `crun run` on an OCI bundle per container (posix_spawn + waitpid), in
                 a private mount namespace with the cgroup v2 controllers hidden on a
                 hybrid host (see perf/common.py)

By default every worker is pinned to one CPU (pyperf --affinity, the last CPU) so
the rates are per core: everything a container costs (the pool's refill, the
zygotes, the C loop's own process, crun) competes for that CPU. --all-cpus leaves
them unpinned. On a shared, busy machine the pyperf figures of two benchmarks are
taken minutes apart; the "paired" comparison after them alternates rounds of the
C loop and of the pool (--paired ROUNDS, 0 to skip) and reports the median ratio
of rounds next to each other, which the load of other processes disturbs less. What a pooled container does that the C loop does not: /proc,
/sys, /dev (devpts, shm, mqueue), the masked and read-only paths, lo up,
capabilities and no_new_privs. Needs root.

  python perf/bench_pool.py --quick             # one worker per benchmark, < 1 min
  python perf/bench_pool.py                     # pyperf defaults (a few minutes)
  python perf/bench_pool.py --only "C loop,pool" -o out.json
  python perf/bench_pool.py --smoke             # each path once, tiny (CI); no figures

The C loop is perf/c_loop.c, compiled and measured in the same run.
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

TARGET_RATE_FRACTION = 0.90    # pool >= 90 % of the C loop per core
TARGET_LATENCY = 1.5e-3        # hand-over to exit seen by Python

ALL_BENCHES = ["C loop", "pool", "pool+measure", "pool latency", "pyrt.run", "crun"]
QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "--min-time", "0.2"]
POOL_SIZE = 4


# --- the timed loops (pyperf workers) --------------------------------------------------

def time_c_loop(loops, st):
    return common.time_c_loop(st["c_loop"], st["lower"], st["c_anchor"], loops)


_pools = {}


def _pool(st, measure):
    """One pool per worker and kind, made (untimed) on first use, closed at exit."""
    key = bool(measure)
    if key not in _pools:
        import pyrt
        pool = pyrt.Pool(rootfs=st["lower"], size=POOL_SIZE, measure=measure)
        atexit.register(pool.close)
        pool.wait_ready(30)
        _pools[key] = pool
    return _pools[key]


def time_pool(loops, st, measure):
    pool = _pool(st, measure)
    run = pool.run
    argv = ["/bin/true"]
    t0 = time.perf_counter()
    for _ in range(loops):
        if run(argv, capture_output=False).returncode:
            raise RuntimeError("pool: /bin/true failed")
    return time.perf_counter() - t0


def _unpin():
    try:
        with open("/sys/devices/system/cpu/online") as f:
            from pyrt.cgroups.cgroup import parse_cpuset
            os.sched_setaffinity(0, parse_cpuset(f.read().strip()))
    except OSError:
        pass


def time_pool_latency(loops, st):
    if "latency" not in _pools:
        _unpin()  # before the pool (and its threads and zygotes) exists
        import pyrt
        pool = pyrt.Pool(rootfs=st["lower"], size=POOL_SIZE, measure=False)
        atexit.register(pool.close)
        pool.wait_ready(30)
        _pools["latency"] = pool
    pool = _pools["latency"]
    total = 0.0
    for _ in range(loops):
        r = pool.run(["/bin/true"], capture_output=False)
        if r.returncode:
            raise RuntimeError("pool: /bin/true failed")
        total += r.usage.wall
    return total


def time_pyrt_run(loops, st):
    import pyrt
    run = pyrt.run
    argv, root = ["/bin/true"], st["lower"]
    t0 = time.perf_counter()
    for _ in range(loops):
        if run(argv, root, upper_tmpfs=True, network="none").returncode:
            raise RuntimeError("pyrt.run: /bin/true failed")
    return time.perf_counter() - t0


_spawner = None
_in_crun_namespace = False
_ids = iter(range(1 << 62))


def time_crun(loops, st):
    global _spawner, _in_crun_namespace
    if st.get("crun_hide") and not _in_crun_namespace:
        common.enter_private_mount_namespace()  # untimed, once per worker
        common.hide_cgroup2_controllers(st["empty"])
        _in_crun_namespace = True
    if _spawner is None:
        _spawner = common.Spawner()
    base = [st["crun"], "--root", st["crun_root"], "run", "--bundle", st["bundle"]]
    prefix = f"{st['prefix']}-{os.getpid()}-"
    t0 = time.perf_counter()
    for _ in range(loops):
        rc = _spawner.run(base + [prefix + str(next(_ids))])
        if rc:
            raise RuntimeError(f"crun: exit status {rc}")
    return time.perf_counter() - t0


def run_benchmarks(runner, st) -> dict:
    """The same sequence of runner calls in the main process and in every worker."""
    results = {}
    for name in st["benches"]:
        if name == "C loop":
            results[name] = runner.bench_time_func(name, time_c_loop, st)
        elif name == "pool":
            results[name] = runner.bench_time_func(name, time_pool, st, False)
        elif name == "pool+measure":
            results[name] = runner.bench_time_func(name, time_pool, st, True)
        elif name == "pool latency":
            results[name] = runner.bench_time_func(name, time_pool_latency, st)
        elif name == "pyrt.run":
            results[name] = runner.bench_time_func(name, time_pyrt_run, st)
        elif name == "crun":
            results[name] = runner.bench_time_func(name, time_crun, st)
    return results


# --- setup and clean-up (main process) ----------------------------------------------

def setup(args, scratch) -> dict:
    install = not args.no_install
    wanted = ALL_BENCHES if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ALL_BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(ALL_BENCHES)}")
    st = {"prefix": f"pyrtpool-{secrets.token_hex(3)}", "skipped": {}, "notes": []}
    busybox, why = common.find_static_busybox(install=install)
    if busybox is None:
        raise SystemExit(f"bench_pool: {why}")
    st["lower"] = common.make_busybox_rootfs(scratch.sub("lower"), busybox)
    st["empty"] = os.path.join(scratch.path, "empty")
    open(st["empty"], "w").close()

    def skip(name, why):
        st["skipped"][name] = why
        common.log(f"[setup] skipping {name}: {why}")

    if "C loop" in wanted:
        why = common.prepare_c_loop(scratch, st)
        if why:
            skip("C loop", why)

    if {"pool", "pool+measure", "pool latency", "pyrt.run"} & set(wanted):
        try:
            import pyrt
            r = pyrt.run(["/bin/true"], st["lower"], upper_tmpfs=True, network="none")
            if r.returncode:
                raise RuntimeError(f"/bin/true exited with {r.returncode}")
            with pyrt.Pool(rootfs=st["lower"], size=1) as pool:
                if pool.run(["/bin/true"]).returncode:
                    raise RuntimeError("/bin/true failed in a pool")
                if not pool._zygotes:
                    st["notes"].append("pyrt-zygote not installed: the pool clones from Python")
        except Exception as exc:  # noqa: BLE001
            for n in ("pool", "pool+measure", "pool latency", "pyrt.run"):
                skip(n, f"{type(exc).__name__}: {exc}")

    if "crun" in wanted:
        crun, why = common.find_tool("crun", install=install)
        if not crun:
            skip("crun", why)
        else:
            st["crun"] = crun
            st["crun_root"] = scratch.sub("crun-root")
            st["bundle"] = scratch.sub("bundle")
            st["merged"] = common.mount_overlay([st["lower"]], scratch.sub("oci-upper"), scratch.sub("oci-work"),
                                                scratch.sub("merged"))
            common.make_oci_bundle(st["bundle"], st["merged"], ["/bin/true"], spec_tool=crun,
                                   namespaces=("mount", "pid", "uts", "ipc", "network", "cgroup"))
            st["crun_hide"] = common.crun_needs_hidden_controllers()
            argv = [crun, "--root", st["crun_root"], "run", "--bundle", st["bundle"], f"{st['prefix']}-check"]
            if st["crun_hide"]:
                unshare, why = common.find_tool("unshare", install=install)
                ok, out = (False, why) if not unshare else \
                    common.check_command(common.crun_wrapper_argv(st["empty"], argv, unshare=unshare))
                st["notes"].append("crun: cgroup v2 controllers hidden in a private mount namespace "
                                   "(hybrid host), entered once per worker, untimed")
            else:
                ok, out = common.check_command(argv)
            if not ok:
                skip("crun", out)

    st["benches"] = [n for n in wanted if n not in st["skipped"]]
    return st


def cleanup(scratch, st):
    problems = []
    if st and st.get("crun"):
        wrap = None
        if st.get("crun_hide") and shutil.which("unshare"):
            def wrap(argv):
                return common.crun_wrapper_argv(st["empty"], argv)
        left = common.oci_delete_all(st["crun"], st["crun_root"], st["prefix"], wrap=wrap)
        if left:
            problems.append(f"deleted {len(left)} leftover crun container(s)")
    if st:
        removed = common.remove_cgroups(st["prefix"])
        if removed:
            problems.append(f"removed {len(removed)} leftover cgroup(s)")
    if scratch is not None:
        problems += scratch.cleanup()
    for p in problems:
        common.log(f"[cleanup] {p}")


def paired(st, rounds, n, cpu):
    """Alternate rounds of n containers: the C loop, then the pool (this process,
    pinned like the workers). Returns [(C loop rate, pool rate)] and the pool's
    per-run latencies."""
    import pyrt
    if cpu is not None:
        os.sched_setaffinity(0, {int(c) for c in str(cpu).split(",")})
    out, walls = [], []
    with pyrt.Pool(rootfs=st["lower"], size=POOL_SIZE, measure=False) as pool:
        pool.wait_ready(30)
        for _ in range(20):
            pool.run(["/bin/true"], capture_output=False)
        for _ in range(rounds):
            # the pool refills its parked containers in the background after a
            # round: let it finish, so that none of that work is in the C loop's time
            pool.wait_ready(30)
            time.sleep(0.05)
            c = n / time_c_loop(n, st)
            t0 = time.perf_counter()
            for _ in range(n):
                walls.append(pool.run(["/bin/true"], capture_output=False).usage.wall)
            out.append((c, n / (time.perf_counter() - t0)))
    return out, walls


# --- report -----------------------------------------------------------------------------

def print_summary(results, st, pinned):
    print()
    where = f"pinned to CPU {pinned} (per core)" if pinned else "unpinned"
    print(f"Containers running /bin/true (busybox, tmpfs rootfs), {where}:")
    print(f"{'benchmark':<14} {'median':>10} {'rate':>12} {'values':>7}")
    med = {}
    for name in ALL_BENCHES:
        b = results.get(name)
        if b is None:
            if name in st["skipped"]:
                print(f"{name:<14} {'skipped':>10}  ({st['skipped'][name][:100]})")
            continue
        med[name] = b.median()
        rate = "" if name == "pool latency" else f"{1 / med[name]:8.0f} /s"
        print(f"{name:<14} {med[name] * 1e3:7.3f} ms {rate:>12} {b.get_nvalue():>7}")
    print()
    print("Ratios (rates):")
    common.print_ratios(med, (("pool", "C loop"), ("pool+measure", "C loop"), ("pool", "pyrt.run"),
                              ("pool", "crun"), ("C loop", "crun")), "  {a} / {b}: {r:.2f}", rates=True,
                        in_process={"C loop", "pool", "pool+measure", "pyrt.run"})
    if "pool" in med:
        if "C loop" in med:
            f = med["C loop"] / med["pool"]
            print(f"  target pool >= {TARGET_RATE_FRACTION:.0%} of the C loop's rate "
                  f"({'per core' if pinned else 'all CPUs'}): {f:.0%}: {'met' if f >= TARGET_RATE_FRACTION else 'NOT met'}")
    if "pool latency" in med:
        lat = med["pool latency"]
        print(f"  per-run latency (hand-over to exit seen by Python, all CPUs), median of means: "
              f"{lat * 1e3:.3f} ms (target < {TARGET_LATENCY * 1e3:.1f} ms: "
              f"{'met' if lat < TARGET_LATENCY else 'NOT met'})")
    if "C loop" in med:
        print(f"note: the C loop (perf/c_loop.c) leaves out: {common.C_LOOP_LEAVES_OUT}")
    for n in st["notes"]:
        print(f"note: {n}")


# --- main -------------------------------------------------------------------------------

def main():
    argv, _quick = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    all_cpus = "--all-cpus" in argv
    argv = [a for a in argv if a != "--all-cpus"]
    pinned = None
    if not all_cpus and "--worker" not in argv and not any(a.startswith("--affinity") for a in argv):
        pinned = str(sorted(os.sched_getaffinity(0))[-1])
        argv = [f"--affinity={pinned}"] + argv
    elif any(a.startswith("--affinity") for a in argv):
        for i, a in enumerate(argv):
            if a.startswith("--affinity="):
                pinned = a.split("=", 1)[1]
            elif a == "--affinity" and i + 1 < len(argv):
                pinned = argv[i + 1]
    runner = common.make_runner("bench_pool", argv)
    ap = runner.argparser
    ap.add_argument("--only", help="comma-separated benchmarks among: " + ", ".join(ALL_BENCHES))
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    ap.add_argument("--paired", type=int, default=5, metavar="ROUNDS",
                    help="rounds of the paired C loop / pool comparison (0: none)")
    args = runner.parse_args()
    if common.SMOKE:
        args.paired = min(args.paired, 1)

    def report(results, st):
        if any(v is not None for v in results.values()):
            print_summary(results, st, pinned)
        if args.paired and {"C loop", "pool"} <= set(st["benches"]):
            import statistics
            n = 5 if common.SMOKE else 300
            rows, walls = paired(st, args.paired, n, pinned)
            print()
            print(f"Paired rounds of {n} containers, {'CPU ' + pinned if pinned else 'all CPUs'} "
                  "(C loop, then the pool):")
            for c, p in rows:
                print(f"  C loop {c:6.0f}/s   pool {p:6.0f}/s   ratio {p / c:.2f}")
            r = statistics.median(p / c for c, p in rows)
            print(f"  median ratio pool / C loop: {r:.2f} (target >= {TARGET_RATE_FRACTION:.2f}: "
                  f"{'met' if r >= TARGET_RATE_FRACTION else 'NOT met'})")
            walls.sort()
            q = lambda f: walls[min(len(walls) - 1, int(f * len(walls)))] * 1e3  # noqa: E731
            print(f"  pool per-run latency in these rounds: median {q(0.5):.3f} ms, p10 {q(0.1):.3f}, "
                  f"p90 {q(0.9):.3f}, p99 {q(0.99):.3f} ms (target < {TARGET_LATENCY * 1e3:.1f} ms)")

    common.run_main(runner, args, name="bench_pool", why_root="namespaces, mounts", setup=setup,
                    run_benchmarks=run_benchmarks, report=report, cleanup=cleanup,
                    scratch_prefix="pyrt-bench-pool-")


if __name__ == "__main__":
    main()
