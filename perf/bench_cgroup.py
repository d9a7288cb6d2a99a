#!/usr/bin/env python3
"""What cgroup limits add to a container start: pyrt.run of /bin/true (busybox,
overlay root on tmpfs, network none) with and without a cgroup, in the same run.

  run                  no cgroup (the baseline)
  run+cgroup2          Cgroup.create (no limit) + run + remove: the cgroup2 part
                       only, joined with CLONE_INTO_CGROUP (v2 and hybrid hosts)
  run --memory         create(memory=64m) + run + remove
  run --all-limits     create(memory, cpus, pids, cpuset) + run + remove
  join v1 (pre-made)   run into a cgroup with a memory limit made once, before:
                       the cost of the join alone (a v1 cgroup.procs write on v1
                       and hybrid hosts)

Joining a v1 cgroup makes the kernel wait for an RCU grace period unless another
cgroup migration happened a few ms before (or a hierarchy is mounted with
favordynmods). A one-off `pyrt run --memory` after an idle moment pays it; a loop
of back-to-back runs does not. So each iteration first sleeps, untimed, for
--gap ms (default 20), as between two commands of a user; --gap 0 measures the
back-to-back case.

  python perf/bench_cgroup.py --quick
  python perf/bench_cgroup.py --gap 0 --quick
  python perf/bench_cgroup.py --favordynmods --quick   # remounts a cgroup hierarchy
        with favordynmods for the run (a host-wide setting), put back afterwards

The summary prints each median, its difference from `run`, and the target of
issue 4: a container with limits at most 2 ms slower than one without.
"""
from __future__ import annotations

import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

ALL_BENCHES = ["run", "run+cgroup2", "run --memory", "run --all-limits", "join v1 (pre-made)"]
QUICK_PYPERF_ARGS = ["-p", "2", "-n", "10", "-w", "1", "-l", "4"]
TARGET_MS = 2.0


def _limits(name):
    from pyrt.cgroups.cgroup import Limits
    return {
        "run+cgroup2": Limits(),
        "run --memory": Limits(memory="64m"),
        "run --all-limits": Limits(memory="64m", cpus=1, pids_limit=100, cpuset_cpus="0"),
    }.get(name)


def time_bench(loops, st, name):
    import pyrt
    from pyrt.cgroups.cgroup import Cgroup, Limits
    rootfs = pyrt.Overlay([st["lower"]], upperdir=st["upper"], workdir=st["work"])
    argv = ["/bin/true"]
    gap = st["gap"]
    parent = st["parent"]
    limits = _limits(name)
    pre = None
    if name == "join v1 (pre-made)":
        pre = Cgroup.create(f"pre-{os.getpid()}", Limits(memory="64m"), parent)
    total = 0.0
    try:
        for i in range(loops):
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            if limits is not None:
                cg = Cgroup.create(f"c{os.getpid()}-{i}", limits, parent)
                try:
                    r = pyrt.run(argv, rootfs, network="none", cgroup=cg)
                finally:
                    cg.remove()
            else:
                r = pyrt.run(argv, rootfs, network="none", cgroup=pre)
            total += time.perf_counter() - t0
            if r.returncode:
                raise RuntimeError(f"{name}: /bin/true exited with {r.returncode}")
    finally:
        if pre is not None:
            pre.remove()
    return total


def run_benchmarks(runner, st):
    return {name: runner.bench_time_func(name, time_bench, st, name) for name in st["benches"]}


# --- favordynmods (opt-in, main process only) ------------------------------------

def _mount_fields(point):
    """(per-mount options, super options) of the mount at `point`, from mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == point and "-" in fields:
                return fields[5], fields[fields.index("-") + 3]
    return None, None


_MNT_FLAGS = {"ro": "MS_RDONLY", "nosuid": "MS_NOSUID", "nodev": "MS_NODEV", "noexec": "MS_NOEXEC",
              "noatime": "MS_NOATIME", "nodiratime": "MS_NODIRATIME", "relatime": "MS_RELATIME",
              "strictatime": "MS_STRICTATIME"}


def remount(point, super_options):
    """mount(2) MS_REMOUNT of `point` with these super options, keeping its
    per-mount flags (util-linux's `mount -o remount` would merge the old options
    back in, so a flag could not be taken away with it)."""
    from pyrt import sys as psys
    mnt, _ = _mount_fields(point)
    flags = psys.MS_REMOUNT
    for opt in mnt.split(","):
        if opt in _MNT_FLAGS:
            flags |= getattr(psys, _MNT_FLAGS[opt])
    data = ",".join(o for o in super_options.split(",") if o not in ("rw", "ro"))
    psys.mount(None, point, None, flags, data)


def set_favordynmods(lay):
    """Remount one cgroup hierarchy with favordynmods (its effect on the kernel's
    threadgroup lock is host-wide). Returns (point, previous super options)."""
    point = lay.unified or sorted(lay.v1.values())[0]
    _, before = _mount_fields(point)
    opts = [o for o in before.split(",") if o != "favordynmods"] + ["favordynmods"]
    remount(point, ",".join(opts))
    return point, before


# --- main ------------------------------------------------------------------------

def main():
    argv, _quick = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_cgroup", argv)
    ap = runner.argparser
    ap.add_argument("--quick", action="store_true", help="a short run (< 1 min)")
    ap.add_argument("--gap", type=float, default=20.0, help="idle ms before each iteration, untimed (default 20)")
    ap.add_argument("--only", help="comma-separated benchmark names")
    ap.add_argument("--favordynmods", action="store_true",
                    help="remount a cgroup hierarchy with favordynmods during the run")
    args = runner.parse_args()
    lay = None

    def setup(args, scratch):
        nonlocal lay
        from pyrt.cgroups import cgroup as cgroups
        lay = cgroups.layout()
        wanted = ALL_BENCHES if not args.only else [n.strip() for n in args.only.split(",")]
        skipped = {}
        if not lay.unified:
            skipped["run+cgroup2"] = "no cgroup2 hierarchy"
        for name in ("run --memory", "run --all-limits"):
            missing = [c for c in _limits(name).controllers() if lay.where(c) is None]
            if missing:
                skipped[name] = f"no {', '.join(missing)} controller"
        if lay.where("memory") is None:
            skipped["join v1 (pre-made)"] = "no memory controller"
        elif lay.where("memory") == "v2":
            skipped["join v1 (pre-made)"] = "memory is a cgroup2 controller here: nothing to join in v1"
        busybox, why = common.find_static_busybox()
        if busybox is None:
            sys.exit(f"bench_cgroup: {why}")
        st = {"lower": common.make_busybox_rootfs(scratch.sub("lower"), busybox),
              "upper": scratch.sub("upper"), "work": scratch.sub("work"), "gap": args.gap / 1e3,
              "parent": f"pyrt-bench-{secrets.token_hex(3)}", "skipped": skipped,
              "benches": [n for n in wanted if n not in skipped]}
        if args.favordynmods:
            st["restore"] = set_favordynmods(lay)  # last: cleanup() puts it back
            common.log(f"[setup] favordynmods on {st['restore'][0]} (was: {st['restore'][1]})")
        return st

    def report(results, st):
        from pyrt.cgroups import cgroup as cgroups
        print_summary(results, st, st["skipped"], lay, cgroups.host_favors_dynmods(lay), args.gap)

    def cleanup(scratch, st):
        from pyrt.cgroups import cgroup as cgroups
        if st and st.get("restore"):
            point, before = st["restore"]
            remount(point, before)
            common.log(f"[cleanup] {point} back to: {_mount_fields(point)[1]}")
        if st:
            left = cgroups.prune(st["parent"], remove_parent=True)
            if any(not d.endswith(st["parent"]) for d in left):
                common.log(f"[cleanup] removed leftover cgroups: {left}")
        if scratch is not None:
            for p in scratch.cleanup():
                common.log(f"[cleanup] {p}")

    common.run_main(runner, args, name="bench_cgroup", setup=setup, run_benchmarks=run_benchmarks,
                    report=report, cleanup=cleanup, scratch_prefix="pyrt-bench-cgroup-")


def print_summary(results, st, skipped, lay, fdm, gap):
    print()
    print(f"pyrt.run of /bin/true with and without cgroups ({lay.mode} host; idle gap {gap:g} ms "
          f"before each run; favordynmods: {'on' if fdm else 'off'})")
    print(f"{'benchmark':<20} {'median':>10} {'stdev':>9}  {'vs run':>9}")
    base = results["run"].median() if results.get("run") else None
    for name in ALL_BENCHES:
        b = results.get(name)
        if b is None:
            if name in skipped:
                print(f"{name:<20} {'skipped':>10}  ({skipped[name]})")
            continue
        m = b.median()
        sd = b.stdev() if b.get_nvalue() > 1 else 0.0
        diff = f"{(m - base) * 1e3:+8.2f} ms" if base is not None and name != "run" else ""
        print(f"{name:<20} {m * 1e3:7.2f} ms {sd * 1e3:6.2f} ms  {diff:>9}")
    if base is not None:
        for name in ("run --memory", "run --all-limits"):
            if results.get(name):
                d = (results[name].median() - base) * 1e3
                print(f"target: {name} at most {TARGET_MS:g} ms slower than run: "
                      f"{'met' if d <= TARGET_MS else 'NOT met'} ({d:+.2f} ms)")


if __name__ == "__main__":
    main()
