#!/usr/bin/env python3
"""pyrt as an OCI runtime: `/bin/true` (busybox) in a new container, started

  pyrt-runtime        `pyrt-runtime run --bundle B ID` (the installed console script)
  pyrt-runtime -S     the same code with `python -S` (no site: no other package's .pth
                      hooks); shows what the interpreter's start-up costs here
  runc                `runc run --bundle B ID`, the same bundle
  crun                `crun run --bundle B ID`, the same bundle (on a cgroup-hybrid host
                      in a private mount namespace with the v2 controllers hidden)
  podman/<runtime>    `podman run --rm --network none IMAGE /bin/true` with
                      --runtime pyrt-runtime, runc and crun (a private store on tmpfs)
  python -c pass      the interpreter alone, for reference

in the same run, then prints each median and the ratios. Target: pyrt-runtime no
slower than runc. Needs root.

  python perf/bench_oci.py --quick             # one worker per benchmark, ~1-2 min
  python perf/bench_oci.py                     # pyperf defaults
  python perf/bench_oci.py --only pyrt-runtime,runc --no-podman

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
- The console script runs Python with its `site` (including any .pth hooks that
  other packages installed: on this machine one imports certifi, ~20 ms of CPU);
  the -S row runs the same main() without site, with pyrt's own path set up.
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
import sysconfig
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

RUNTIMES = ["pyrt-runtime", "pyrt-runtime -S", "runc", "crun"]
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
    if name == "pyrt-runtime -S":
        base = st["nosite_argv"] + ["--root", st["pyrt_root"], "run", "--bundle", st["bundle"]]
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
    return {name: runner.bench_time_func(name, time_command, st, name, argv_factory(name, st))
            for name in st["benches"]}


# --- setup and clean-up ----------------------------------------------------------------

def find_runtime():
    cand = os.path.join(os.path.dirname(sys.executable), "pyrt-runtime")
    if os.access(cand, os.X_OK):
        return cand
    return shutil.which("pyrt-runtime")


def nosite_argv():
    """`python -S -c ...` running pyrt-runtime's main with only pyrt's own paths: the
    site-packages directories, and pyrt's editable-install hook when there is one."""
    paths = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    code = ("import sys; sys.path[:0] = %r\n"
            "try:\n import _editable_skbc_pyrt\nexcept ImportError:\n pass\n"
            "from pyrt.cli.oci_runtime import main; sys.exit(main())" % (paths,))
    return [sys.executable, "-S", "-c", code]


def setup(args, scratch) -> dict:
    install = not args.no_install
    wanted = ALL_BENCHES if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    if args.no_podman:
        wanted = [n for n in wanted if not n.startswith("podman/")]
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
        for n in ("pyrt-runtime", "pyrt-runtime -S", "podman/pyrt-runtime"):
            skip(n, "pyrt-runtime is not installed (pip install -e .)")
    else:
        st["tools"]["pyrt-runtime"] = rt
        import pyrt
        pkg = os.path.dirname(os.path.abspath(pyrt.__file__))
        subprocess.run([sys.executable, "-m", "compileall", "-q", pkg], stdout=subprocess.DEVNULL, check=False)
        st["nosite_argv"] = nosite_argv()
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
    common.print_ratios(med, (("pyrt-runtime", "runc"), ("pyrt-runtime", "crun"), ("pyrt-runtime -S", "runc"),
                              ("pyrt-runtime -S", "crun"), ("podman/pyrt-runtime", "podman/runc"),
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
    if "pyrt-runtime -S" in out and "runc" in out:
        print(f"  CPU pyrt-runtime -S / runc: {out['pyrt-runtime -S'][1] / out['runc'][1]:.2f}x")
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
    args = runner.parse_args()

    def report(results, st):
        print_summary(results, st)
        if not args.no_cpu:
            cpu_per_run(st, 10 if quick else 30)

    common.run_main(runner, args, name="bench_oci", setup=setup, run_benchmarks=run_benchmarks, report=report,
                    cleanup=cleanup, scratch_prefix="pyrt-bench-oci-", scratch_size="1g")


if __name__ == "__main__":
    main()
