"""`pyrt bench`, and `pyrt run --profile bench` (a measured run)."""
from __future__ import annotations

import os
import sys

from pyrt.cli.common import env_from_args, exit_status, mounts_from_args, split_kv
from pyrt.errors import InvalidArgument


def register(sub):
    p = sub.add_parser("bench", help="run a command N times in fresh containers, write pyperf JSON",
                       usage="pyrt bench [OPTIONS] (IMAGE | --rootfs DIR | --host-root) -- COMMAND [ARG...]",
                       description="Runs COMMAND --runs times (after --warmups runs) in fresh containers "
                                   "of a warm pool with the bench profile (pinned with --cpuset, no CPU "
                                   "quota, memory limit without swap, no network, fixed hostname and "
                                   "environment, throw-away tmpfs upper) and writes a pyperf JSON file: "
                                   "`python -m pyperf stats FILE` and `compare_to A B` read it.")
    p.add_argument("--runs", "-n", type=int, default=20, metavar="N", help="measured runs (default 20)")
    p.add_argument("--warmups", "-w", type=int, default=1, metavar="K", help="runs before them, not counted")
    p.add_argument("--pool", type=int, default=2, metavar="SIZE", help="containers kept parked (default 2)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the pyperf JSON here")
    p.add_argument("--append", action="store_true", help="add to FILE rather than replace it")
    p.add_argument("--cpuset", metavar="CPUS", help="CPUs to pin to (default: the last one)")
    p.add_argument("-m", "--memory", metavar="BYTES", help="memory limit, no swap (default 1g)")
    p.add_argument("--rootfs", metavar="DIR", help="run in this root directory instead of an image")
    p.add_argument("--host-root", action="store_true",
                   help="run in the host's own programs, read-only (pyrt.HostRoot), instead of an image")
    p.add_argument("--name", help="benchmark name (default: the command)")
    p.add_argument("--metric", choices=("wall", "cpu"), default="wall",
                   help="the value of a run: wall time (default) or CPU time (user + system)")
    p.add_argument("--no-aslr", action="store_true", help="disable address space randomization")
    p.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="add an environment variable")
    p.add_argument("--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("--input", metavar="FILE", help="feed this file to each run's stdin")
    p.add_argument("command", nargs="...", help="image and command (or command with --rootfs)")  # argparse.REMAINDER
    p.set_defaults(func=cmd_bench)
    return p


def _root(args):
    """--rootfs DIR, --host-root (a pyrt.HostRoot) or None (an image)."""
    if getattr(args, "host_root", False):
        if args.rootfs is not None:
            raise InvalidArgument("--rootfs DIR or --host-root, not both")
        # lazy: 2 ms of `pyrt run` and `ps` start-up (python -X importtime), for --host-root only
        from pyrt.launch.hostroot import HostRoot
        return HostRoot()
    return args.rootfs


def _image_and_command(args):
    words = list(args.command)
    image = None
    if _root(args) is None:
        if not words or words[0] == "--":
            raise InvalidArgument("bench needs an image (or --rootfs DIR) and a command")
        image, words = words[0], words[1:]
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise InvalidArgument("bench needs a command (after --)")
    return image, words


def cmd_bench(args, rt):
    # lazy: 3.4 ms of every `pyrt` start-up (measured), for `pyrt bench` only
    from pyrt.pool import bench
    image, command = _image_and_command(args)
    stdin = None
    if args.input:
        with open(args.input, "rb") as f:
            stdin = f.read()
    suite = bench.bench(command, image=image, rootfs=_root(args), root=rt.root if image else None,
                        runs=args.runs, warmups=args.warmups, pool_size=args.pool, cpuset=args.cpuset,
                        memory=args.memory, name=args.name, metric=args.metric, aslr=not args.no_aslr,
                        env=split_kv(args.env, "env") or None, cwd=args.workdir, input=stdin,
                        progress=bench._progress_printer())
    if args.output:
        if args.append:
            if os.path.exists(args.output):
                # lazy: 21 ms (measured), for -o with --append only
                import pyperf
                old = pyperf.BenchmarkSuite.load(args.output)
                for b in suite.get_benchmarks():
                    old.add_benchmark(b)
                suite = old
        suite.dump(args.output, replace=True)
    print(bench.summary(suite))
    return 0


# -- pyrt run --profile bench ------------------------------------------------------------

def add_profile_option(run_parser):
    run_parser.add_argument("--profile", choices=("bench",),
                            help="bench: a measured run (pinned, no CPU quota, no swap, fixed env); "
                                 "its usage is printed on stderr")


def cmd_run_profile(args, runtime_factory):
    """`pyrt run --profile bench ...`: one measured container; its output goes
    through, then one line of usage on stderr; exits with the command's status."""
    # lazy: 3.4 ms of every `pyrt` start-up (measured), for --profile only
    from pyrt.pool.pool import run as measured_run
    words = list(args.command)
    if words and words[0] == "--":
        words = words[1:]
    image = None
    root = _root(args)
    if root is None:
        if not words:
            raise InvalidArgument("run needs an image (or --rootfs DIR) and optionally a command")
        image, words = words[0], words[1:]
        if words and words[0] == "--":
            words = words[1:]
        if not words:
            raise InvalidArgument("run --profile needs a command")
    elif not words:
        raise InvalidArgument("run --rootfs or --host-root needs a command")
    if getattr(args, "cpus", None):
        raise InvalidArgument("--profile bench runs without a CPU quota: pin with --cpuset-cpus instead of --cpus")
    kwargs = {}
    for opt, key in (("memory", "memory"), ("memory_swap", "memory_swap"), ("cpuset_cpus", "cpuset"),
                     ("pids_limit", "pids_limit")):
        if getattr(args, opt, None) is not None:
            kwargs[key] = getattr(args, opt)
    r = measured_run(words, root, image=image, root=runtime_factory().root if image else None,
                     profile=args.profile, env=env_from_args(args) or None, cwd=args.workdir,
                     hostname=args.hostname, mounts=mounts_from_args(args), user=args.user,
                     network=args.network, read_only=args.read_only, cap_add=args.cap_add,
                     cap_drop=args.cap_drop, privileged=args.privileged,
                     stdin=sys.stdin.fileno() if args.interactive else None, stdout=sys.stdout.fileno(),
                     stderr=sys.stderr.fileno(), **kwargs)
    print(f"pyrt: {format_usage(r.usage)}", file=sys.stderr)
    return exit_status(r.returncode)


def format_usage(u) -> str:
    parts = [f"wall {u.wall * 1e3:.2f} ms"]
    if u.cpu is not None:
        parts.append(f"cpu {u.cpu * 1e3:.2f} ms (user {u.user * 1e3:.2f}, system {u.system * 1e3:.2f})")
    if u.peak_memory is not None:
        parts.append(f"peak memory {u.peak_memory / 1048576:.1f} MiB")
    parts.append(f"nivcsw {u.nivcsw}")
    parts.append(f"throttled {u.throttled or 0}")
    if u.oom_killed:
        parts.append("OOM killed")
    text = ", ".join(parts)
    if u.noise:
        text += "; noise: " + "; ".join(u.noise)
    return text
