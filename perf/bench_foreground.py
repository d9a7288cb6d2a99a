"""Foreground output benchmark: a container's output through `pyrt run` (its C relay,
csrc/relay.c, which also writes the container's log) and through `podman run`
(conmon, with podman's default log driver), in the same run, both to a file on
tmpfs, both with `--rm`:

    zeros head      sh -c 'head -c 100000000 /dev/zero' > FILE   (100 MB)
    lines           sh -c 'yes | head -c 20000000' > FILE        (10 million lines)
    zeros dd        dd if=/dev/zero bs=1M count=100 > FILE        (100 MiB, from a producer
                    that costs little itself: busybox head copies in small steps)
    start-up        true                                           (what the three above
                    include besides the copying)

The same busybox for both: `pyrt image from-host busybox:latest BUSYBOX`, saved with
`pyrt save` and `podman load`ed. podman: a private --root/--runroot/--tmpdir on the
scratch tmpfs, `--runtime runc --cgroup-manager cgroupfs --events-backend file`, file
locks (a private containers.conf: podman's default shm lock segment is shared with
every podman user of the host), `--network none --pull never`, `--ulimit
nofile=1024:1024 --ulimit nproc=1024:1024` (needed on this kind of host) and a
private --cgroup-parent removed afterwards. Each value is a whole command, start-up
included: MB/s = bytes / wall time; "after start-up" also subtracts each tool's own
`true` median. For reference, the same shell command run on the host with no
container at all (`no container`).

    python3 perf/bench_foreground.py            # pyperf
    python3 perf/bench_foreground.py --quick    # a few values
    python3 perf/bench_foreground.py --smoke    # tiny sizes, each command once, the
                                                # bytes checked; no timing (for CI)

Targets: pyrt >= 500 MB/s for 100 MB (zeros dd, after start-up; zeros head is bound by
busybox head itself: see `no container`), lines at podman's pace or better.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

QUICK_PYPERF_ARGS = ["-p", "1", "-n", "3", "-w", "1", "-l", "1"]
IMAGE = "busybox:latest"
PODMAN_IMAGE = "localhost/busybox:latest"
CASES = {  # name: (shell command, bytes it writes)
    "zeros head": ("head -c 100000000 /dev/zero", 100_000_000),
    "lines": ("yes | head -c 20000000", 20_000_000),
    "zeros dd": ("dd if=/dev/zero bs=1M count=100 2>/dev/null", 100 * 1024 * 1024),
    "start-up": ("true", 0),
}
SMOKE_CASES = {
    "zeros head": ("head -c 1000000 /dev/zero", 1_000_000),
    "lines": ("yes | head -c 200000", 200_000),
    "zeros dd": ("dd if=/dev/zero bs=64k count=4 2>/dev/null", 4 * 65536),
    "start-up": ("true", 0),
}
TOOLS = ("pyrt", "podman", "no container")
THROUGHPUT_TARGET = 500e6  # bytes/s, pyrt, 100 MB
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def bench_names(cases) -> list[str]:
    return [f"{case} {tool}" for case in cases for tool in TOOLS
            if not (tool == "no container" and case == "start-up")]


def _argv(st, tool, command) -> list[str]:
    if tool == "pyrt":
        return [st["pyrt"], "--root", st["pyrt_root"], "run", "--rm", IMAGE, "sh", "-c", command]
    if tool == "podman":
        return podman_base(st) + ["run", "--rm", "--network", "none", "--pull", "never", *ULIMITS,
                                  "--cgroup-parent", st["podman_cgroup_parent"], PODMAN_IMAGE, "sh", "-c", command]
    return [st["busybox"], "sh", "-c", command]


def podman_base(st) -> list[str]:
    return [st["podman"], "--root", st["podman_root"], "--runroot", st["podman_runroot"], "--tmpdir",
            st["podman_tmpdir"], "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def _run_to_file(argv, out_path, env) -> int:
    """argv with stdout on out_path (truncated), stdin and stderr on /dev/null; its
    exit status."""
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                                                (os.POSIX_SPAWN_DUP2, fd, 1),
                                                                (os.POSIX_SPAWN_DUP2, null, 2)])
    finally:
        os.close(fd)
        os.close(null)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        except InterruptedError:
            continue


def time_case(loops, st, name) -> float:
    case, tool = _split(name)
    command, size = st["cases"][case]
    argv = _argv(st, tool, command)
    out = os.path.join(st["out_dir"], "out")
    env = dict(os.environ, CONTAINERS_CONF=st.get("podman_conf", ""))
    total = 0.0
    for _ in range(loops):
        t0 = time.perf_counter()
        rc = _run_to_file(argv, out, env)
        total += time.perf_counter() - t0
        if rc or os.path.getsize(out) != size:
            raise RuntimeError(f"{name}: exit status {rc}, {os.path.getsize(out)} bytes of {size}: {argv}")
        os.unlink(out)
    return total


def _split(name) -> tuple[str, str]:
    for tool in TOOLS:
        if name.endswith(" " + tool):
            return name[:-len(tool) - 1], tool
    raise ValueError(name)


def run_benchmarks(runner, st) -> dict:
    return {name: runner.bench_time_func(name, time_case, st, name) for name in st["benches"]}


def setup(args, scratch) -> dict:
    cases = SMOKE_CASES if getattr(args, "smoke", False) else CASES
    st = {"benches": [], "skipped": {}, "cases": cases, "out_dir": scratch.sub("out"),
          "prefix": f"pyrt-bench-fg-{os.getpid()}"}
    pyrt = common.find_pyrt_cli()
    if pyrt is None:
        raise SystemExit("bench_foreground: the pyrt command is not installed")
    busybox, why = common.find_static_busybox(install=not args.no_install)
    if busybox is None:
        raise SystemExit(f"bench_foreground: {why}")
    st.update(pyrt=pyrt, busybox=busybox, pyrt_root=scratch.sub("pyrt-store", create=False))
    _run([pyrt, "--root", st["pyrt_root"], "image", "from-host", IMAGE, busybox])
    names = bench_names(cases)
    st["benches"] += [n for n in names if not n.endswith(" podman")]

    podman_names = [n for n in names if n.endswith(" podman")]
    podman, why = common.find_tool("podman", install=not args.no_install, package="podman")
    runc, why2 = common.find_tool("runc", install=not args.no_install)
    if not (podman and runc):
        st["skipped"].update({n: why if not podman else why2 for n in podman_names})
        return st
    st.update(podman=podman, podman_root=scratch.sub("pm-root"), podman_runroot=scratch.sub("pm-run"),
              podman_tmpdir=scratch.sub("pm-tmp"), podman_cgroup_parent=f"/{st['prefix']}-podman",
              podman_conf=os.path.join(scratch.path, "containers.conf"))
    with open(st["podman_conf"], "w") as f:
        f.write('[engine]\nlock_type = "file"\n')
    os.environ["CONTAINERS_CONF"] = st["podman_conf"]
    archive = os.path.join(scratch.path, "busybox.tar")
    try:
        _run([pyrt, "--root", st["pyrt_root"], "save", "-o", archive, IMAGE])
        _run(podman_base(st) + ["load", "-q", "-i", archive])
        st["podman_log_driver"] = _run(podman_base(st) + ["info", "--format", "{{.Host.LogDriver}}"]).strip()
        st["podman_version"] = _run([podman, "--version"]).strip()
        rc = _run_to_file(_argv(st, "podman", "true"), os.path.join(st["out_dir"], "probe"), dict(os.environ))
        if rc:
            raise RuntimeError(f"podman run exited with {rc}")
    except Exception as e:  # noqa: BLE001
        st["skipped"].update({n: str(e)[-200:] for n in podman_names})
        return st
    finally:
        if os.path.exists(archive):
            os.unlink(archive)
    st["benches"] += podman_names
    st["benches"] = [n for n in names if n in st["benches"]]
    return st


def _run(argv) -> str:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit status {p.returncode}: {p.stderr.strip()[-500:]}")
    return p.stdout


def cleanup(scratch, st):
    if st and st.get("podman"):
        subprocess.run(podman_base(st) + ["rm", "--all", "--force"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        subprocess.run(podman_base(st) + ["rmi", "--all", "--force"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        for p in common.remove_cgroup_trees(f"{st['prefix']}-podman"):
            common.log(f"[cleanup] cgroup {p}")
    if scratch is not None:
        for p in scratch.cleanup():
            common.log(f"[cleanup] {p}")


def report(results, st):
    cases = st["cases"]
    print()
    print("a container's output to a file on tmpfs, whole commands (start-up included), --rm; "
          f"podman's log driver: {st.get('podman_log_driver', '?')}")
    sizes = {n: cases[_split(n)[0]][1] for n in bench_names(cases)}

    def rate(name, m):
        size = sizes[name]
        return f"   {size / m / 1e6:8.0f} MB/s" if size else ""

    med = common.print_table(results, bench_names(cases), st["skipped"], width=26, extra=rate,
                             extra_header="   throughput")
    print()
    print("throughput ratios, pyrt / podman (above 1: pyrt is faster):")
    common.print_ratios(med, [(f"{c} pyrt", f"{c} podman") for c in cases if c != "start-up"],
                        line="  {a} / {b}: {r:.2f}x", rates=True)
    print()
    print("after start-up (the median of `true` of the same tool subtracted):")
    for case, (_, size) in cases.items():
        if not size:
            continue
        parts = []
        for tool in ("pyrt", "podman"):
            m, base = med.get(f"{case} {tool}"), med.get(f"start-up {tool}")
            if m is not None and base is not None and m > base:
                parts.append(f"{tool} {size / (m - base) / 1e6:.0f} MB/s")
        if parts:
            print(f"  {case}: " + ", ".join(parts))
    m, base = med.get("zeros dd pyrt"), med.get("start-up pyrt")
    if m is not None and base is not None and m > base:
        r = cases["zeros dd"][1] / (m - base)
        print(f"target pyrt >= {THROUGHPUT_TARGET / 1e6:.0f} MB/s for 100 MB (zeros dd, after start-up): "
              f"{r / 1e6:.0f} MB/s, {'met' if r >= THROUGHPUT_TARGET else 'NOT met'}")
    a, b = med.get("lines pyrt"), med.get("lines podman")
    if a is not None and b is not None:
        print(f"target lines at podman's pace or better: {b / a:.2f}x, {'met' if a <= b else 'NOT met'}")


def smoke(args):
    """Each command once on tiny sizes, its output checked; no timing."""
    if os.geteuid() != 0:
        raise SystemExit("bench_foreground needs root")
    scratch = st = None
    try:
        scratch = common.Scratch(prefix="pyrt-bench-fg-", size="256m")
        st = setup(args, scratch)
        for name in st["benches"]:
            time_case(1, st, name)
            print(f"smoke ok: {name}")
        for name, why in st["skipped"].items():
            print(f"smoke skipped: {name} ({why[:100]})")
    finally:
        cleanup(scratch, st)


def main():
    if "--smoke" in sys.argv[1:]:
        import argparse
        p = argparse.ArgumentParser(prog="bench_foreground.py")
        p.add_argument("--smoke", action="store_true")
        p.add_argument("--no-install", action="store_true")
        smoke(p.parse_args())
        return
    argv, _ = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_foreground", argv)
    runner.argparser.add_argument("--no-install", action="store_true", help="do not apt-get install podman")
    args = runner.parse_args()
    common.run_main(runner, args, name="bench_foreground", setup=setup, run_benchmarks=run_benchmarks,
                    report=report, cleanup=cleanup, scratch_prefix="pyrt-bench-fg-", scratch_size="2g")


if __name__ == "__main__":
    main()
