"""`pyrt`: the command line, with the docker verbs and flags users know.

Parses, calls the Python API, prints. Errors are printed on one line and exit 1;
`pyrt run` exits with the container's status (128+N when killed by signal N)."""
from __future__ import annotations

import os
import sys
import warnings

import pyrt
from pyrt.cli import bench, fastargs
from pyrt.cli.bench import cmd_run_profile
from pyrt.cli.common import add_run_options, env_from_args, error_status, exit_status, message, mounts_from_args
from pyrt.cli.run import add_run_image_options, relay_foreground, run_image, wait_foreground
from pyrt.errors import InvalidArgument, PlatformWarning, PyrtError
from pyrt.launch.reaper import Reaper
from pyrt.paths import default_store_root

REMAINDER = "..."  # argparse.REMAINDER: argparse is imported only when a command line needs it


def _parser_class():
    # lazy: 1.1 ms of `pyrt run --rootfs` start-up (measured), which fastargs parses
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, f"pyrt: {message}\nSee '{self.prog} --help'.\n")
    return _Parser


def cmd_run(args, runtime_factory):
    if getattr(args, "profile", None):  # a measured run (pyrt/cli/bench.py)
        return cmd_run_profile(args, runtime_factory)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    host_root = getattr(args, "host_root", False)
    if host_root and args.rootfs is not None:
        raise InvalidArgument("run takes --rootfs DIR or --host-root, not both")
    if args.rootfs is None and not host_root:
        if not command:
            raise InvalidArgument("run needs an image (or --rootfs DIR, or --host-root) and optionally a command")
        return run_image(args, command[0], command[1:], runtime_factory())
    if not command:
        raise InvalidArgument(f"run {'--host-root' if host_root else '--rootfs'} needs a command")
    root = pyrt.HostRoot() if host_root else args.rootfs
    # lazy: 0.15 ms of `pyrt ps` start-up (measured)
    from pyrt.launch.seccomp import from_security_opt
    seccomp = from_security_opt(getattr(args, "security_opt", None), args.cap_add, args.privileged)
    env = env_from_args(args)
    if args.tty:
        env.setdefault("TERM", "xterm")
    with Reaper() as reaper:  # it ends with this process, killed or not: see pyrt.launch.reaper
        def start(**stdio):
            return pyrt.spawn(command, root, env=env, cwd=args.workdir,
                              hostname=args.hostname, mounts=mounts_from_args(args), user=args.user,
                              network=args.network or "none", read_only=args.read_only, cap_add=args.cap_add,
                              cap_drop=args.cap_drop, privileged=args.privileged, tty=args.tty, seccomp=seccomp,
                              devices=args.device, reaper=reaper, **stdio)
        sig_proxy = args.sig_proxy == "true"
        if args.tty:  # a terminal of its own, relayed to ours
            rc = wait_foreground(start(stdin=None), args.interactive, sig_proxy=sig_proxy)
        else:  # pipes of ours, never our own fds (see relay_foreground)
            rc, _ = relay_foreground(start, args.interactive, sig_proxy)
    return exit_status(rc)


def _verb(argv) -> str | None:
    """The command word of argv (skipping the global options and their values)."""
    it = iter(argv)
    for word in it:
        if word in ("--root", "--storage-driver", "--cgroup-manager"):
            next(it, None)
        elif not word.startswith("-"):
            return word
    return None


def declare_globals(parser):
    """The options before the command word (to argparse, or to pyrt.cli.fastargs)."""
    parser.add_argument("--root", default=default_store_root(),
                        help="store directory (default $PYRT_ROOT, else /var/lib/pyrt, or "
                             "~/.local/share/pyrt for an ordinary user)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--storage-driver", choices=("overlay", "fuse-overlayfs", "copy"), default=None,
                        help="how container roots are made (default: overlay when the store's filesystem allows, "
                             "else for an ordinary user fuse-overlayfs when installed, else copy)")
    parser.add_argument("--cgroup-manager", choices=("systemd", "cgroupfs"), default=None,
                        help="who makes containers' cgroups (default: systemd where it runs the machine "
                             "on pure cgroup v2, else cgroupfs; $PYRT_CGROUP_MANAGER)")


def declare_run(run):
    """`run`'s options and arguments (to argparse, or to pyrt.cli.fastargs)."""
    add_run_options(run)
    run.add_argument("--host-root", action="store_true",
                     help="run in the host's own /usr, /bin, /lib* and selected /etc, read-only, with a "
                          "private /tmp and home, instead of an image (pyrt.HostRoot)")
    add_run_image_options(run)
    bench.add_profile_option(run)
    run.add_argument("command", nargs=REMAINDER,
                     help="image and command (or command with --rootfs or --host-root)")
    run.set_defaults(func=cmd_run)


def build_parser(verb=None):
    """The argument parser; with `verb`="run", only what `run` needs (building
    every command's parser costs more than a container start)."""
    _Parser = _parser_class()
    parser = _Parser(prog="pyrt", description="pyrt: containers from Python, with a C core.")
    declare_globals(parser)
    parser.add_argument("--version", action="version", version="pyrt 0.1.0")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run a command in a new container",
                         usage="pyrt run [OPTIONS] (IMAGE | --rootfs DIR | --host-root) [--] [COMMAND [ARG...]]")
    declare_run(run)
    if verb == "run":
        return parser
    # lazy: the other verbs' modules cost `pyrt run` 1.8 ms of its start-up (measured),
    # whose parser is run's alone
    from pyrt.cli import build, containers, images, network, registry, volumes
    containers.register(sub)
    images.register(sub)
    volumes.register(sub)
    bench.register(sub)
    build.register(sub)
    registry.register(sub)
    network.register(sub)
    return parser


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    args = fastargs.parse(argv, "run", "verb", declare_globals, declare_run)
    if args is None:  # anything but a plain `run`: argparse, its help and its messages
        parser = build_parser(_verb(argv))
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2

    runtime = None
    _print_warnings()
    if args.cgroup_manager:  # for this process and those it starts (a container's monitor)
        os.environ["PYRT_CGROUP_MANAGER"] = args.cgroup_manager

    def runtime_factory():
        nonlocal runtime
        if runtime is None:
            # lazy: 2.5 ms of `pyrt run --rootfs` start-up (measured), which needs no store
            from pyrt.runtime import Runtime
            runtime = Runtime(args.root, storage_driver=args.storage_driver, quiet=args.quiet)
        return runtime

    try:
        if args.func is cmd_run:
            rc = cmd_run(args, runtime_factory)
        else:
            rc = args.func(args, runtime_factory())
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except (OSError, ValueError, LookupError) as e:  # pyrt errors are among these
        print(f"pyrt: {message(e)}", file=sys.stderr)
        return error_status(e) if args.func is cmd_run else 1
    except Exception as e:
        if not isinstance(e, PyrtError):
            raise
        print(f"pyrt: {message(e)}", file=sys.stderr)
        return 125 if args.func is cmd_run else 1
    return rc or 0


def _print_warnings() -> None:
    """pyrt's warnings (PlatformWarning, ...) as one line on stderr each."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PlatformWarning):
            print(f"pyrt: WARNING: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)
    warnings.showwarning = show
    warnings.simplefilter("always", PlatformWarning)


if __name__ == "__main__":
    sys.exit(main())
