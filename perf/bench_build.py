"""Build benchmark: a 10-step Dockerfile (FROM, ENV, RUN, COPY, WORKDIR, CMD) on a
busybox base, built by `pyrt build` and by `buildah bud --layers`, in the same run,
with stores on tmpfs:

    cold:    every step run (--no-cache; the base image is in the store)
    cached:  every step from the layer cache (nothing changed since the last build)

The base: `pyrt image from-host busybox:latest /bin/busybox`, saved with
`pyrt save` and pulled into buildah's store (`buildah pull oci-archive:...`), so
both build from the same files. buildah runs with the overlay storage driver (as
pyrt; with vfs it spends a fixed ~5 s per cold build here), a private --root/--runroot,
`--isolation chroot` (what works without a daemon or a configured OCI runtime here)
and `--network host` (as pyrt's RUN steps). buildah is apt-get installed when missing.

    python3 perf/bench_build.py            # pyperf
    python3 perf/bench_build.py --quick    # a few values

Target: the cached rebuild under 0.3 s.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

QUICK_PYPERF_ARGS = ["-p", "1", "-n", "3", "-w", "1", "-l", "1"]
CACHED_TARGET = 0.3  # seconds
BENCHES = ["pyrt build (cold)", "pyrt build (cached)", "buildah bud (cold)", "buildah bud (cached)"]

DOCKERFILE = """\
FROM {base}
ENV APP=/app GREETING=hello
RUN echo "$GREETING" > /greeting && mkdir -p /var/lib/app
COPY config.txt /etc/app/config.txt
WORKDIR $APP
COPY src/ ./src/
RUN cat /etc/app/config.txt src/*.txt > all.txt
ENV MODE=production
RUN ls -l > listing.txt
CMD ["cat", "/app/all.txt"]
"""


def _context(path, base):
    os.makedirs(os.path.join(path, "src"))
    with open(os.path.join(path, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(base=base))
    with open(os.path.join(path, "config.txt"), "w") as f:
        f.write("key=value\n" * 50)
    for i in range(20):
        with open(os.path.join(path, "src", f"part{i:02d}.txt"), "w") as f:
            f.write(f"part {i}\n" * 100)


def _argv(name, st) -> list[str]:
    tool = name.split()[0]
    cold = name.endswith("(cold)")
    if tool == "pyrt":
        return [st["pyrt"], "--root", st["pyrt_root"], "build", "-q", "-t", "bench:1",
                *(["--no-cache"] if cold else []), st["pyrt_ctx"]]
    return [st["buildah"], "--root", st["buildah_root"], "--runroot", st["buildah_runroot"],
            "--storage-driver", "overlay", "bud", "--layers", "--isolation", "chroot", "--network", "host", "-q", "-t", "bench:1",
            *(["--no-cache"] if cold else []), st["buildah_ctx"]]


def time_build(loops, st, name):
    spawner = common.Spawner()
    argv = _argv(name, st)
    t0 = time.perf_counter()
    for _ in range(loops):
        rc = spawner.run(argv)
        if rc:
            raise RuntimeError(f"{name}: exit status {rc}: {' '.join(argv)}")
    elapsed = time.perf_counter() - t0
    spawner.close()
    return elapsed


def run_benchmarks(runner, st) -> dict:
    return {name: runner.bench_time_func(name, time_build, st, name) for name in st["benches"]}


def setup(args, scratch) -> dict:
    st = {"benches": [], "skipped": {}}
    pyrt = common.find_pyrt_cli()
    if pyrt is None:
        raise SystemExit("bench_build: the pyrt command is not installed")
    busybox, why = common.find_static_busybox()
    if busybox is None:
        raise SystemExit(f"bench_build: {why}")
    st.update(pyrt=pyrt, pyrt_root=scratch.sub("pyrt-store", create=False), pyrt_ctx=scratch.sub("ctx-pyrt", create=False))
    _run([pyrt, "--root", st["pyrt_root"], "image", "from-host", "busybox:latest", busybox])
    _context(st["pyrt_ctx"], "busybox:latest")
    _run(_argv("pyrt build (cold)", st))  # the first build fills the cache
    st["benches"] += ["pyrt build (cold)", "pyrt build (cached)"]

    buildah, why = common.find_tool("buildah", install=not args.no_install, package="buildah")
    if buildah is None:
        st["skipped"].update({n: why for n in BENCHES if n.startswith("buildah")})
        return st
    st.update(buildah=buildah, buildah_root=scratch.sub("buildah-root"), buildah_runroot=scratch.sub("buildah-run"),
              buildah_ctx=scratch.sub("ctx-buildah", create=False))
    archive = os.path.join(scratch.path, "busybox.tar")
    _run([pyrt, "--root", st["pyrt_root"], "save", "-o", archive, "busybox:latest"])
    b = [buildah, "--root", st["buildah_root"], "--runroot", st["buildah_runroot"], "--storage-driver", "overlay"]
    image_id = _run(b + ["pull", "-q", f"oci-archive:{archive}"]).strip().splitlines()[-1]
    _run(b + ["tag", image_id, "bench-base"])
    _context(st["buildah_ctx"], "localhost/bench-base")
    try:
        _run(_argv("buildah bud (cold)", st))
    except RuntimeError as e:
        st["skipped"].update({n: str(e)[-200:] for n in BENCHES if n.startswith("buildah")})
        return st
    st["benches"] += ["buildah bud (cold)", "buildah bud (cached)"]
    return st


def _run(argv) -> str:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit status {p.returncode}: {p.stderr.strip()[-500:]}")
    return p.stdout


def cleanup(scratch, st):
    if st and st.get("buildah"):  # buildah's overlay layers may hold mounts below its root
        subprocess.run([st["buildah"], "--root", st["buildah_root"], "--runroot", st["buildah_runroot"],
                        "--storage-driver", "overlay", "rmi", "--all", "--force"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if scratch is not None:
        for p in scratch.cleanup():
            common.log(f"[cleanup] {p}")


def report(results, st):
    print()
    print("10-step Dockerfile on busybox (FROM, 2 ENV, 3 RUN, 2 COPY, WORKDIR, CMD), stores on tmpfs")
    med = common.print_table(results, BENCHES, st["skipped"], width=22)
    print()
    print("ratios (below 1: pyrt is faster):")
    common.print_ratios(med, (("pyrt build (cold)", "buildah bud (cold)"),
                              ("pyrt build (cached)", "buildah bud (cached)")))
    if "pyrt build (cached)" in med:
        m = med["pyrt build (cached)"]
        print(f"target cached rebuild under {CACHED_TARGET} s: {m * 1e3:.0f} ms, "
              f"{'met' if m < CACHED_TARGET else 'NOT met'}")


def main():
    argv, _ = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_build", argv)
    runner.argparser.add_argument("--no-install", action="store_true", help="do not apt-get install buildah")
    args = runner.parse_args()
    common.run_main(runner, args, name="bench_build", setup=setup, run_benchmarks=run_benchmarks, report=report,
                    cleanup=cleanup, scratch_prefix="pyrt-bench-build-", scratch_size="1g")


if __name__ == "__main__":
    main()
