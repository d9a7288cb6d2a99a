"""`pyrt bench`: run a command many times, each time in a fresh container of a
warm pool with the "bench" profile, and write the timings as a pyperf file.

    suite = pyrt.pool.bench.bench(["python3", "-c", "pass"], image="py:3", runs=20)
    suite.dump("result.json")      # python -m pyperf stats result.json

Each container run becomes one pyperf Run with one value (the wall time from the
hand-over of the command to its exit, or its CPU time with metric="cpu") and the
run's usage as metadata: usage_user, usage_system, usage_cpu (seconds),
command_max_rss (the container's memory peak, bytes), usage_nivcsw,
usage_throttled, usage_oom_killed, usage_cpu_wait and, when something may have
disturbed the run, `noise`. pyperf is imported only here, when needed.
"""
from __future__ import annotations

import os
import sys
from pyrt.errors import InvalidArgument, Unsupported

__all__ = ["bench", "usage_metadata"]

METRICS = ("wall", "cpu")


def usage_metadata(usage) -> dict:
    """pyperf run metadata of a pyrt.pool.metering.Usage (no None values, no empty strings)."""
    md = {}
    for key, value in (("usage_wall", usage.wall), ("usage_user", usage.user), ("usage_system", usage.system),
                       ("usage_cpu", usage.cpu), ("usage_cpu_wait", usage.cpu_wait),
                       ("usage_throttled_time", usage.throttled_time)):
        if value is not None:
            md[key] = float(value)
    if usage.peak_memory is not None:
        md["command_max_rss"] = int(usage.peak_memory)
    for key, value in (("usage_nvcsw", usage.nvcsw), ("usage_nivcsw", usage.nivcsw),
                       ("usage_throttled", usage.throttled)):
        if value is not None:
            md[key] = int(value)
    if usage.oom_killed is not None:
        md["usage_oom_killed"] = int(bool(usage.oom_killed))
    if usage.source:
        md["usage_source"] = usage.source
    if usage.noise:
        md["noise"] = "; ".join(usage.noise)
    return md


def _value(usage, metric):
    v = usage.wall if metric == "wall" else usage.cpu
    if v is None:
        raise Unsupported(f"this host cannot measure the {metric} time of a run")
    return max(v, 1e-9)  # pyperf wants values > 0


def bench(argv, *, image=None, rootfs=None, root=None, runs=20, warmups=1, pool_size=2, cpuset=None,
          memory=None, name=None, metric="wall", aslr=True, env=None, cwd=None, input=None,
          progress=None, check=True, **pool_options):
    """Run argv warmups + runs times in fresh containers (a pyrt.Pool with the
    "bench" profile) and return a pyperf.BenchmarkSuite with one benchmark.
    check: a run that exits non-zero raises CalledProcessError. progress:
    called with (done, total) after each run."""
    import pyperf

    from pyrt.pool.pool import Pool
    if metric not in METRICS:
        raise InvalidArgument(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if runs < 1 or warmups < 0:
        raise InvalidArgument("bench needs at least one run (and no negative warmups)")
    argv = [os.fsdecode(a) for a in ([argv] if isinstance(argv, (str, bytes)) else argv)]
    name = name or " ".join(argv)
    total = runs + warmups
    with Pool(image, rootfs=rootfs, root=root, size=min(pool_size, total), profile="bench", cpuset=cpuset,
              memory=memory, aslr=aslr, **pool_options) as pool:
        common = {
            "name": name,
            "pyrt_command": " ".join(argv)[:500],
            "pyrt_profile": "bench",
            "pyrt_cpuset": pool._cpuset or "",
            "pyrt_pool_size": pool.size,
            "pyrt_metric": metric,
            "pyrt_aslr": "on" if aslr else "off",
        }
        if pool._limits.memory:
            common["pyrt_memory_limit"] = int(pool._limits.memory)
        if image is not None:
            common["pyrt_image"] = str(image) if isinstance(image, str) else pool.image.id
        else:
            common["pyrt_rootfs"] = os.fspath(rootfs) if not hasattr(rootfs, "lowerdirs") else \
                ":".join(map(os.fspath, rootfs.lowerdirs))
        common = {k: v for k, v in common.items() if v != ""}
        warm, results = [], []
        for i in range(total):
            r = pool.run(argv, input=input, env=env, cwd=cwd, capture_output=True)
            if check and r.returncode != 0:
                import subprocess
                raise subprocess.CalledProcessError(r.returncode, argv, r.stdout, r.stderr)
            (warm if i < warmups else results).append(r.usage)
            if progress:
                progress(i + 1, total)
    pyperf_runs = []
    system = None
    for i, u in enumerate(results):
        md = dict(common, **usage_metadata(u))
        md["duration"] = float(u.wall)
        warmups_list = [(1, _value(w, metric)) for w in warm] if i == 0 else None
        if system is None:
            # pyperf's description of this machine, once; without mem_max_rss, which
            # would be this Python process's (the container's is command_max_rss)
            probe = pyperf.Run([_value(u, metric)], metadata={"name": name}, collect_metadata=True)
            system = {k: v for k, v in probe.get_metadata().items()
                      if k not in md and k not in ("mem_max_rss", "name")}
        pyperf_runs.append(pyperf.Run([_value(u, metric)], warmups=warmups_list,
                                      metadata=dict(system, **md), collect_metadata=False))
    return pyperf.BenchmarkSuite([pyperf.Benchmark(pyperf_runs)])


def summary(suite) -> str:
    """One line per benchmark: mean +- std dev (as pyperf prints it), and how many
    runs had a noise note."""
    lines = []
    for b in suite.get_benchmarks():
        values = b.get_values()
        mean = b.mean()
        if len(values) > 1:
            text = f"Mean +- std dev: {b.format_value(mean)} +- {b.format_value(b.stdev())}"
        else:
            text = f"{b.format_value(mean)}"
        noisy = sum(1 for r in b.get_runs() if r.get_metadata().get("noise"))
        note = f" ({noisy} of {len(b.get_runs())} runs had a noise note: see `python -m pyperf dump -v`)" \
            if noisy else ""
        lines.append(f"{b.get_name()}: {text}{note}")
    return "\n".join(lines)


def _progress_printer():
    if not sys.stderr.isatty():
        return None

    def show(done, total):
        end = "\n" if done == total else ""
        print(f"\rrun {done}/{total}", end=end, file=sys.stderr, flush=True)
    return show
