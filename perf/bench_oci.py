#!/usr/bin/env python3
"""pyrt as an OCI runtime: `/bin/true` (busybox) in a new container, started

  pyrt-runtime        `pyrt-runtime run --bundle B ID` (the installed console script)
  pyrt-runtime/py     the same command with PYRT_RUNTIME_PYTHON=1: create and run done
                      by pyrt's Python implementation (what the native program hands a
                      config it does not take to), started through env(1)
  runc                `runc run --bundle B ID`, the same bundle
  crun                `crun run --bundle B ID`, the same bundle (on a cgroup-hybrid host
                      in a private mount namespace with the v2 controllers hidden)
  podman/<runtime>    `podman run --rm --network none IMAGE /bin/true` with
                      --runtime pyrt-runtime, runc and crun (a private store on tmpfs)
  python -c pass      the interpreter alone, for reference

in the same run, then prints each median and the ratios. Target: pyrt-runtime no
slower than runc. Needs root.

Then each operation on its own, pyrt-runtime beside crun and runc (`--ops N`
rounds, paired: in each round every runtime does, in turn, `create` of a `sleep`
bundle, `state`, `start`, `exec ID true` (waited for), `kill KILL`, `delete` once
it has stopped, and `run` of the /bin/true bundle, each command timed as a whole
process); the medians per operation and the ratios pyrt-runtime/crun and
pyrt-runtime/runc. Each runtime's
commands are started by a worker process of its own (crun's in the private mount
namespace it needs on a hybrid host, so no wrapper is in its figures), all with
the same launcher (posix_spawn + waitpid). Every pyrt-runtime command measured is
native (its create and run too; `pyrt-runtime --debug` says when a config is handed
to the Python implementation, which this bundle's is not).

  python perf/bench_oci.py --quick             # one worker per benchmark, ~1-2 min
  python perf/bench_oci.py                     # pyperf defaults
  python perf/bench_oci.py --only pyrt-runtime,runc --no-podman
  python perf/bench_oci.py --ops-only --ops 30  # only the per-operation table

After pyperf's figures, a second table gives the CPU time (user+system of the
command and everything it started) per run, which a loaded machine disturbs far
less than wall time (--no-cpu leaves it out).

What is fair about it:
- One bundle (config.json from `runc spec`, edited: /bin/true, no terminal, the
  namespaces mount/pid/uts/ipc/network, read-only root) over one overlay mounted
  once (as a snapshotter would), for pyrt-runtime, runc and crun. Every run uses a
  fresh container id; each runtime's --root is on tmpfs.
- cgroups: each runtime does what the bundle asks in its own way: runc and crun
  make a cgroup in every hierarchy; pyrt-runtime makes its cgroup2 one and the v1
  ones its resources need (here the devices controller: `runc spec` denies all
  devices).
- Launch: every command is started with posix_spawn + waitpid, stdio on /dev/null.
- pyrt's Python modules are byte-compiled first (compileall), as a wheel install
  does: with PYTHONDONTWRITEBYTECODE set (as here) an editable install would
  otherwise compile them at every start.
- The pyrt-runtime/py row runs the Python implementation with its `site`
  (including any .pth hooks other packages installed).
- podman: `--cgroup-manager cgroupfs --events-backend none --network none`, the
  ulimits this host needs (`--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`:
  no CAP_SYS_RESOURCE), and the same image for every runtime. With crun on a
  hybrid host the worker enters the private mount namespace first (podman, conmon
  and crun inherit it).
"""
from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

RUNTIMES = ["pyrt-runtime", "pyrt-runtime/py", "runc", "crun"]
PODMAN = ["podman/pyrt-runtime", "podman/runc", "podman/crun"]
ALL_BENCHES = RUNTIMES + PODMAN + ["python -c pass"]
QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "--min-time", "0.05"]
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
_ids = itertools.count()


# --- the timed loops (pyperf workers) ----------------------------------------------

_spawner = None
_in_crun_namespace = False


def _enter_crun_namespace(st):
    global _in_crun_namespace
    if not _in_crun_namespace:
        common.enter_private_mount_namespace()
        common.hide_cgroup2_controllers(st["empty"])
        _in_crun_namespace = True


def time_command(loops, st, name, make_argv):
    global _spawner
    if name in ("crun", "podman/crun") and st.get("crun_hide"):
        _enter_crun_namespace(st)
    if _spawner is None:
        _spawner = common.Spawner(env=st.get("env"))
    run = _spawner.run
    t0 = time.perf_counter()
    for _ in range(loops):
        argv = make_argv()
        rc = run(argv)
        if rc:
            raise RuntimeError(f"{name}: exit status {rc}: {' '.join(argv)}")
    return time.perf_counter() - t0


def argv_factory(name, st):
    prefix = f"{st['prefix']}-{os.getpid()}"
    tools = st["tools"]
    if name == "pyrt-runtime":
        base = [tools["pyrt-runtime"], "--root", st["pyrt_root"], "run", "--bundle", st["bundle"]]
        return lambda: base + [f"{prefix}-p{next(_ids)}"]
    if name == "pyrt-runtime/py":
        base = ["/usr/bin/env", "PYRT_RUNTIME_PYTHON=1", tools["pyrt-runtime"], "--root", st["pyrt_root"], "run",
                "--bundle", st["bundle"]]
        return lambda: base + [f"{prefix}-s{next(_ids)}"]
    if name in ("runc", "crun"):
        base = [tools[name], "--root", st[f"{name}_root"], "run", "--bundle", st["bundle"]]
        return lambda: base + [f"{prefix}-{name[0]}{next(_ids)}"]
    if name.startswith("podman/"):
        rt = name.split("/", 1)[1]
        argv = st["podman_argv"] + ["--runtime", tools[rt], "run", "--rm", "--network", "none",
                                    *PODMAN_ULIMITS, st["image"], "/bin/true"]
        return lambda: argv
    if name == "python -c pass":
        argv = [sys.executable, "-c", "pass"]
        return lambda: argv
    raise KeyError(name)


def run_benchmarks(runner, st) -> dict:
    if st.get("ops_only"):
        return {}
    return {name: runner.bench_time_func(name, time_command, st, name, argv_factory(name, st))
            for name in st["benches"]}


# --- each operation on its own (paired rounds) ------------------------------------------

OPS = ("create", "start", "state", "exec", "kill", "delete", "run")
OPS_RUNTIMES = ("pyrt-runtime", "crun", "runc")


def _root_of(name, st):
    return st["pyrt_root" if name == "pyrt-runtime" else f"{name}_root"]


def _wait_stopped(tool, root, cid, deadline=30.0):
    """Untimed: poll `state` until the container has stopped."""
    import json
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        p = subprocess.run([tool, "--root", root, "state", cid], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, check=False)
        if p.returncode == 0 and json.loads(p.stdout).get("status") == "stopped":
            return
        time.sleep(0.005)
    raise RuntimeError(f"{tool}: {cid} did not stop")


def _ops_round(name, st, sp, cid):
    """One round of every operation for one runtime: {op: seconds}."""
    tool, root = st["tools"][name], _root_of(name, st)
    base = [tool, "--root", root]
    times = {}

    def timed(op, argv):
        t0 = time.perf_counter()
        rc = sp.run(argv)
        times[op] = time.perf_counter() - t0
        if rc:
            raise RuntimeError(f"{name} {op}: exit status {rc}: {' '.join(argv)}")

    timed("create", base + ["create", "--bundle", st["sleep_bundle"], cid])
    timed("state", base + ["state", cid])
    timed("start", base + ["start", cid])
    timed("exec", base + ["exec", cid, "true"])  # in the running container, waited for
    timed("kill", base + ["kill", cid, "KILL"])
    _wait_stopped(tool, root, cid)
    timed("delete", base + ["delete", cid])
    timed("run", base + ["run", "--bundle", st["bundle"], cid + "r"])
    return times


def _ops_worker(name, st, rfd, wfd):
    """A forked worker: one round per line read, its times written back as JSON."""
    import json
    status = 0
    try:
        if name == "crun" and st.get("crun_hide"):
            _enter_crun_namespace(st)
        sp = common.Spawner(env=st.get("env"))
        with os.fdopen(rfd) as rf, os.fdopen(wfd, "w") as wf:
            for line in rf:
                try:
                    out = {"times": _ops_round(name, st, sp, line.strip())}
                except Exception as e:  # reported by the parent
                    out = {"error": str(e)}
                wf.write(json.dumps(out) + "\n")
                wf.flush()
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def ops_per_operation(st, rounds):
    """Each operation's median per runtime over `rounds` paired rounds (the order
    of the runtimes turns each round), and the ratios to crun and runc."""
    import json
    import statistics
    names = [n for n in OPS_RUNTIMES if n in st["tools"] and n in st.get("ops_runtimes", OPS_RUNTIMES)]
    if "pyrt-runtime" not in names or len(names) < 2:
        print("\nper operation: skipped (pyrt-runtime and crun or runc are needed)")
        return None
    workers = {}
    try:
        for name in names:
            r1, w1 = os.pipe()
            r2, w2 = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(w1)
                os.close(r2)
                for _, w, r in workers.values():  # the other workers' pipes: theirs alone
                    os.close(w.fileno())
                    os.close(r.fileno())
                common.die_with_parent()
                _ops_worker(name, st, r1, w2)
            os.close(r1)
            os.close(w2)
            workers[name] = (pid, os.fdopen(w1, "w"), os.fdopen(r2))
        times = {n: {op: [] for op in OPS} for n in names}
        for i in range(rounds):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                _, w, r = workers[name]
                w.write(f"{st['prefix']}-o{name[0]}{i}\n")
                w.flush()
                line = r.readline()
                if not line:
                    raise RuntimeError(f"{name}: its worker died")
                out = json.loads(line)
                if "error" in out:
                    raise RuntimeError(out["error"])
                for op, t in out["times"].items():
                    times[name][op].append(t)
    finally:
        for pid, w, r in workers.values():
            w.close()
            r.close()
            os.waitpid(pid, 0)
    med = {n: {op: statistics.median(v) for op, v in ops.items()} for n, ops in times.items()}
    print()
    print(f"per operation, whole processes, median of {rounds} paired rounds (ms):")
    print(f"{'operation':<10}" + "".join(f"{n:>14}" for n in names)
          + "".join(f"{'pyrt/' + n:>12}" for n in names if n != "pyrt-runtime"))
    for op in OPS + ("c+s+d",):
        vals = {n: (med[n][op] if op != "c+s+d" else med[n]["create"] + med[n]["start"] + med[n]["delete"])
                for n in names}
        line = f"{op:<10}" + "".join(f"{vals[n] * 1e3:14.2f}" for n in names)
        line += "".join(f"{vals['pyrt-runtime'] / vals[n]:11.2f}x" for n in names if n != "pyrt-runtime")
        print(line)
    if "crun" in med:
        slower = [op for op in OPS if med["pyrt-runtime"][op] > med["crun"][op]]
        print("target each operation no slower than crun's: "
              + ("met" if not slower else f"NOT met for {', '.join(slower)}"))
    if st.get("crun_hide") and "crun" in names:
        print("note: crun's worker is in a private mount namespace with the cgroup2 controllers hidden")
    return med


# --- setup and clean-up ----------------------------------------------------------------

def find_runtime():
    cand = os.path.join(os.path.dirname(sys.executable), "pyrt-runtime")
    if os.access(cand, os.X_OK):
        return cand
    return shutil.which("pyrt-runtime")


def setup(args, scratch) -> dict:
    install = not args.no_install
    wanted = ALL_BENCHES if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    if args.no_podman:
        wanted = [n for n in wanted if not n.startswith("podman/")]
    if getattr(args, "ops_only", False):
        wanted = list(OPS_RUNTIMES)
    unknown = [n for n in wanted if n not in ALL_BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(ALL_BENCHES)}")
    st = {"prefix": f"pyrtoci-{secrets.token_hex(3)}", "tools": {}, "skipped": {}, "notes": []}
    st["env"] = dict(os.environ)

    def skip(name, why):
        st["skipped"][name] = why
        common.log(f"[setup] skipping {name}: {why}")

    busybox, why = common.find_static_busybox(install=install)
    if busybox is None:
        raise SystemExit(f"bench_oci: {why}")
    st["lower"] = common.make_busybox_rootfs(scratch.sub("lower"), busybox)
    st["merged"] = common.mount_overlay([st["lower"]], scratch.sub("upper"), scratch.sub("work"),
                                        scratch.sub("merged"))
    st["empty"] = os.path.join(scratch.path, "empty")
    open(st["empty"], "w").close()
    for r in ("pyrt", "runc", "crun"):
        st[f"{r}_root"] = scratch.sub(f"{r}-root")
    st["bundle"] = scratch.sub("bundle")
    st["cgroup_mode"] = common.cgroup_mode()

    rt = find_runtime()
    if rt is None:
        for n in ("pyrt-runtime", "pyrt-runtime/py", "podman/pyrt-runtime"):
            skip(n, "pyrt-runtime is not installed (pip install -e .)")
    else:
        st["tools"]["pyrt-runtime"] = rt
        import pyrt
        pkg = os.path.dirname(os.path.abspath(pyrt.__file__))
        subprocess.run([sys.executable, "-m", "compileall", "-q", pkg], stdout=subprocess.DEVNULL, check=False)
    runc, why = common.find_tool("runc", install=install)
    if runc:
        st["tools"]["runc"] = runc
    else:
        skip("runc", why)
        skip("podman/runc", why)
    crun, why = common.find_tool("crun", install=install)
    if crun:
        st["tools"]["crun"] = crun
        st["crun_hide"] = common.crun_needs_hidden_controllers()
        if st["crun_hide"]:
            st["notes"].append("crun: cgroup v2 controllers hidden in a private mount namespace (hybrid host)")
    else:
        skip("crun", why)
        skip("podman/crun", why)
    spec_tool = runc or crun
    if spec_tool is None:
        raise SystemExit("bench_oci: neither runc nor crun: cannot make the bundle")
    common.make_oci_bundle(st["bundle"], st["merged"], ["/bin/true"], spec_tool=spec_tool)
    st["sleep_bundle"] = scratch.sub("bundle-sleep")
    common.make_oci_bundle(st["sleep_bundle"], st["merged"], ["/bin/sleep", "1000"], spec_tool=spec_tool)
    st["ops_only"] = bool(getattr(args, "ops_only", False))

    # one untimed run each, to see that it works here
    for name in RUNTIMES:
        if name not in wanted or name in st["skipped"]:
            continue
        argv = argv_factory(name, st)()
        if name == "crun" and st.get("crun_hide"):
            argv = common.crun_wrapper_argv(st["empty"], argv)
        ok, out = common.check_command(argv)
        if not ok:
            skip(name, out)

    podman_wanted = [n for n in PODMAN if n in wanted and n not in st["skipped"]]
    if podman_wanted:
        podman, why = common.find_tool("podman", install=install)
        if not podman:
            for n in podman_wanted:
                skip(n, why)
        else:
            proot = scratch.sub("podman")
            st["podman_argv"] = [podman, "--root", os.path.join(proot, "root"), "--runroot",
                                 os.path.join(proot, "runroot"), "--cgroup-manager", "cgroupfs",
                                 "--events-backend", "none"]
            st["image"] = "localhost/busybox:bench"
            tar = os.path.join(proot, "busybox.tar")
            with tarfile.open(tar, "w") as t:
                t.add(st["lower"], arcname=".")
            ok, out = common.check_command(st["podman_argv"] + ["import", tar, st["image"]])
            if not ok:
                for n in podman_wanted:
                    skip(n, f"podman import: {out}")
            for n in podman_wanted:
                if n in st["skipped"]:
                    continue
                argv = argv_factory(n, st)()
                if n == "podman/crun" and st.get("crun_hide"):
                    argv = common.crun_wrapper_argv(st["empty"], argv)
                ok, out = common.check_command(argv)
                if not ok:
                    skip(n, out[-300:])
    st["benches"] = [n for n in wanted if n not in st["skipped"]]
    return st


def _remove_pyrt_cgroups(prefix):
    from pyrt.cgroups.cgroup import layout
    lay = layout()
    removed = []
    for mount in set(lay.v1.values()) | ({lay.unified} if lay.unified else set()):
        parent = os.path.join(mount, "pyrt-runtime")
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for n in names:
            if n.startswith(prefix):
                try:
                    os.rmdir(os.path.join(parent, n))
                    removed.append(n)
                except OSError:
                    pass
    return removed


def cleanup(scratch, st):
    problems = []
    if st:
        prefix = st["prefix"]
        tools = st["tools"]
        if tools.get("pyrt-runtime"):
            left = common.oci_delete_all(tools["pyrt-runtime"], st["pyrt_root"], prefix)
            if left:
                problems.append(f"deleted {len(left)} leftover pyrt-runtime container(s)")
            if _remove_pyrt_cgroups(prefix):
                problems.append("removed leftover pyrt-runtime cgroups")
        if tools.get("runc"):
            if common.oci_delete_all(tools["runc"], st["runc_root"], prefix):
                problems.append("deleted leftover runc containers")
        if tools.get("crun"):
            wrap = (lambda argv: common.crun_wrapper_argv(st["empty"], argv)) if st.get("crun_hide") else None
            if common.oci_delete_all(tools["crun"], st["crun_root"], prefix, wrap=wrap):
                problems.append("deleted leftover crun containers")
        if st.get("podman_argv"):
            subprocess.run(st["podman_argv"] + ["rm", "--all", "--force", "--time", "0"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            subprocess.run(st["podman_argv"] + ["rmi", "--all", "--force"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if common.remove_cgroups(prefix):
            problems.append("removed leftover runc/crun cgroups")
    if scratch is not None:
        problems += scratch.cleanup()
    for p in problems:
        common.log(f"[cleanup] {p}")


# --- report ----------------------------------------------------------------------------

def print_summary(results, st):
    print()
    print("OCI runtimes: /bin/true (busybox), mount+pid+uts+ipc+net namespaces, bundle from `runc spec`")
    med = common.print_table(results, list(results), {}, width=22)
    print()
    print("ratios (below 1: the first is faster):")
    common.print_ratios(med, (("pyrt-runtime", "runc"), ("pyrt-runtime", "crun"), ("pyrt-runtime/py", "runc"),
                              ("pyrt-runtime/py", "crun"), ("podman/pyrt-runtime", "podman/runc"),
                              ("podman/pyrt-runtime", "podman/crun")))
    if "pyrt-runtime" in med and "runc" in med:
        verdict = "met" if med["pyrt-runtime"] <= med["runc"] else "NOT met"
        print(f"target pyrt-runtime no slower than runc: {verdict}")
    if "python -c pass" in med and "pyrt-runtime" in med:
        print(f"  (the interpreter alone, python -c pass: {med['python -c pass'] * 1e3:.2f} ms)")
    for k, v in st["skipped"].items():
        print(f"skipped {k}: {v}")
    for n in st["notes"]:
        print(f"note: {n}")


def cpu_per_run(st, n):
    """Untimed by pyperf: each command n times from this process, (median wall,
    mean CPU user+system of the command and all it started), both in seconds.
    CPU time is what a loaded machine disturbs least. crun (and podman/crun) run
    through the unshare wrapper here on a hybrid host: its cost is included."""
    import resource
    import statistics
    out = {}
    sp = common.Spawner(env=st.get("env"))
    try:
        for name in st["benches"]:
            make = argv_factory(name, st)
            walls, cpu = [], 0.0
            for _ in range(n):
                argv = make()
                if name in ("crun", "podman/crun") and st.get("crun_hide"):
                    argv = common.crun_wrapper_argv(st["empty"], argv, unshare=shutil.which("unshare"))
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                rc = sp.run(argv)
                walls.append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                if rc:
                    raise RuntimeError(f"{name}: exit status {rc}")
            out[name] = (statistics.median(walls), cpu / n)
    finally:
        sp.close()
    print()
    print(f"CPU time per run (user+system of the command and its children, {n} runs each):")
    print(f"{'benchmark':<22} {'wall median':>12} {'CPU/run':>10}")
    for name, (w, c) in out.items():
        wrapped = " (+unshare wrapper)" if name in ("crun", "podman/crun") and st.get("crun_hide") else ""
        print(f"{name:<22} {w * 1e3:9.2f} ms {c * 1e3:7.2f} ms{wrapped}")
    if "pyrt-runtime" in out and "runc" in out:
        print(f"  CPU pyrt-runtime / runc: {out['pyrt-runtime'][1] / out['runc'][1]:.2f}x")
    if "pyrt-runtime/py" in out and "runc" in out:
        print(f"  CPU pyrt-runtime/py / runc: {out['pyrt-runtime/py'][1] / out['runc'][1]:.2f}x")
    if "podman/pyrt-runtime" in out and "podman/runc" in out:
        print(f"  CPU podman/pyrt-runtime / podman/runc: "
              f"{out['podman/pyrt-runtime'][1] / out['podman/runc'][1]:.2f}x")
    return out


def main():
    argv, quick = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_oci", argv)
    ap = runner.argparser
    ap.add_argument("--only", help="comma-separated benchmarks among: " + ", ".join(ALL_BENCHES))
    ap.add_argument("--no-podman", action="store_true", help="leave out the podman benchmarks")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    ap.add_argument("--no-cpu", action="store_true", help="leave out the CPU-time table")
    ap.add_argument("--ops", type=int, default=None,
                    help="rounds of the per-operation table (default 30, --quick 10; 0 leaves it out)")
    ap.add_argument("--ops-only", action="store_true", help="only the per-operation table")
    args = runner.parse_args()

    def report(results, st):
        rounds = args.ops if args.ops is not None else (10 if quick else 30)
        if not st.get("ops_only"):
            print_summary(results, st)
            if not args.no_cpu:
                cpu_per_run(st, 10 if quick else 30)
        if rounds > 0:
            ops_per_operation(st, rounds)

    common.run_main(runner, args, name="bench_oci", setup=setup, run_benchmarks=run_benchmarks, report=report,
                    cleanup=cleanup, scratch_prefix="pyrt-bench-oci-", scratch_size="1g")


if __name__ == "__main__":
    main()
