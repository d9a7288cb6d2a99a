"""`pyrt build`: an image from a Dockerfile, with docker's flags. The steps and the
output of RUN are printed as they come; -q prints only the image id."""
from __future__ import annotations

import os
import shutil
import sys

from pyrt.errors import BuildError


def _buildargs(items) -> dict:
    """--build-arg NAME=VALUE, or NAME alone for the value of NAME here (docker)."""
    out = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not key:
            raise BuildError(f"invalid --build-arg {item!r}: expected NAME=VALUE")
        out[key] = value if eq else None
    return out


def cmd_build(args, rt):

    def show(item):
        sys.stdout.write(item["stream"])
        sys.stdout.flush()
    dockerfile = args.file or os.path.join(args.context, "Dockerfile")
    tmp = None
    if dockerfile == "-":  # the Dockerfile on stdin (docker build -f -)
        tmp = rt.store.mkdtemp("dockerfile-")
        dockerfile = os.path.join(tmp, "Dockerfile")
        with open(dockerfile, "wb") as f:
            f.write(sys.stdin.buffer.read())
    try:
        img, _ = rt.images.build(args.context, tag=args.tag, dockerfile=os.path.abspath(dockerfile),
                                 buildargs=_buildargs(args.build_arg), nocache=args.no_cache,
                                 target=args.target, quiet=args.quiet, rm=args.rm == "true", log=show,
                                 network_mode=args.network)
    except BuildError as e:
        if args.quiet and e.output:  # the failing RUN's last lines, not shown as it ran
            sys.stderr.write("\n".join(e.output) + "\n")
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def register(subparsers):
    p = subparsers.add_parser("build", help="build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]",
                   help="name the final image (repeatable)")
    p.add_argument("-f", "--file", metavar="FILE", help="the Dockerfile (default CONTEXT/Dockerfile; - for standard input)")
    p.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE", help="set a build arg")
    p.add_argument("--no-cache", action="store_true", help="run every step, ignoring the cache")
    p.add_argument("--target", metavar="STAGE", help="build up to this stage")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--rm", choices=("true", "false"), nargs="?", const="true", default="true",
                   help="remove the containers of successful RUN steps (default true)")
    p.add_argument("--network", default=None, metavar="NETWORK",
                   help="the network of RUN steps: pyrt's default network (as a `pyrt run`), a network's "
                        "name, none (only a loopback) or host (the host's own)")
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")
    p.set_defaults(func=cmd_build)
