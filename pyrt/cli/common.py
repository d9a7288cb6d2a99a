"""What the CLI's commands share: the options of `run` and `create` and what they
become (environment, mounts), exit statuses, and one-line error messages."""
from __future__ import annotations

import errno
import os
import sys

from pyrt.errors import InvalidArgument, PyrtError
from pyrt.launch.mounts import Bind, Tmpfs


def split_kv(items, what):
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {item!r}: expected KEY=VALUE")
        if not sep:  # `-e NAME` takes the value from pyrt's own environment, as docker does
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def add_run_options(p):
    """Options shared by `run` and `create`."""
    p.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="set an environment variable")
    p.add_argument("--env-file", action="append", metavar="FILE", help="read environment variables from a file")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("--hostname", metavar="NAME", help="container host name")
    p.add_argument("-v", "--volume", action="append", metavar="SRC:DST[:ro]", help="bind mount a host path")
    p.add_argument("--tmpfs", action="append", metavar="DST[:OPTIONS]", help="mount a tmpfs")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("-u", "--user", metavar="UID[:GID]", help="user to run as")
    p.add_argument("--network", "--net", default=None, metavar="NETWORK",
                   help="bridge (an image's default, $PYRT_DEFAULT_NETWORK to change), a network's name, "
                        "none (a namespace with only lo; --rootfs's default) or host")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability")
    p.add_argument("--privileged", action="store_true",
                   help="all capabilities and devices, no masked paths")
    p.add_argument("--device", action="append", default=[], metavar="HOST[:CONTAINER][:rwm]",
                   help="give the container a host device node (docker's default devices only, else)")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    p.add_argument("-t", "--tty", action="store_true", help="give the container a terminal of its own")
    p.add_argument("--rootfs", metavar="DIR", help="run in this root directory instead of an image")


def env_from_args(args):
    env = {}
    for path in args.env_file or ():
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        env.update(split_kv(lines, "env-file line"))
    env.update(split_kv(args.env, "env"))
    return env


def mounts_from_args(args):
    mounts = []
    for spec in args.volume or ():
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidArgument(f"invalid volume {spec!r}: expected SRC:DST[:ro|rw]")
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise InvalidArgument(f"invalid volume mode {mode!r} in {spec!r}: expected ro or rw")
        if not parts[1].startswith("/"):
            raise InvalidArgument(f"invalid volume {spec!r}: the destination must be an absolute path")
        mounts.append(Bind(parts[0], parts[1], readonly=mode == "ro"))
    for spec in args.tmpfs or ():
        dst, _, opts = spec.partition(":")
        size = mode = None
        flags = ["nosuid", "nodev", "noexec"]
        extra = []
        for o in filter(None, opts.split(",")):
            if o.startswith("size="):
                size = o[5:]
            elif o.startswith("mode="):
                mode = int(o[5:], 8)
            elif o in ("exec",):
                flags.remove("noexec")
            elif o in ("ro", "nosuid", "nodev", "noexec"):
                flags.append(o)
            else:
                extra.append(o)
        mounts.append(Tmpfs(dst, size=size, mode=mode, options=tuple(flags + extra)))
    return mounts


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def error_status(e) -> int:
    """As docker: 127 when the command is not found, 126 when it cannot be run,
    125 for every other failure to start the container."""
    if getattr(e, "op", None) == "exec":
        return 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
    return 125


def for_each(refs, action, *, missing_ok=False) -> int:
    """action(ref) for every ref, as docker's multi-object verbs: a failure is
    reported in one line and the others go on; 1 if any failed, else 0. A ref
    that names nothing is passed over silently with missing_ok (rm --force)."""
    status = 0
    for ref in refs:
        try:
            action(ref)
        except LookupError as e:
            if not missing_ok:
                print(f"pyrt: {message(e)}", file=sys.stderr)
                status = 1
        except (PyrtError, OSError, ValueError) as e:
            print(f"pyrt: {message(e)}", file=sys.stderr)
            status = 1
    return status


def message(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, PyrtError) and e.strerror:
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror}{where}"
    text = str(e)
    if isinstance(e, LookupError) and len(text) > 1 and text[0] == text[-1] == "'":
        text = text[1:-1]  # KeyError quotes its message
    return text.splitlines()[0] if text else type(e).__name__
