"""Container verbs of the CLI: run IMAGE, create, start, ps, rm, diff, commit,
export, inspect."""
from __future__ import annotations

import os
import sys
import time


def add_run_image_options(p):
    """Options `run` has for image-based containers (shared with `create`)."""
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", help="container name")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("--mount", action="append", default=[], metavar="type=bind|volume|tmpfs,src=...,dst=...",
                   help="attach a mount (options: readonly, volume-nocopy, tmpfs-size, tmpfs-mode)")
    p.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]",
                   help="mount the volumes of another container")


def parse_mount(spec: str) -> dict:
    """docker's --mount syntax into a docker SDK Mount dict."""
    m = {"Type": "volume", "ReadOnly": False}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key == "type":
            m["Type"] = value
        elif key in ("source", "src"):
            m["Source"] = value
        elif key in ("destination", "dst", "target"):
            m["Target"] = value
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = value.lower() in ("", "1", "true")
        elif key == "volume-nocopy":
            m["VolumeOptions"] = {"NoCopy": value.lower() in ("", "1", "true")}
        elif key == "tmpfs-size":
            from pyrt.cgroups import parse_bytes
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(value)
        elif key == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
        elif key in ("bind-propagation", "consistency"):
            pass
        else:
            raise ValueError(f"invalid --mount option {key!r} in {spec!r}")
    if not m.get("Target"):
        raise ValueError(f"invalid --mount {spec!r}: dst= is required")
    return m


def _create(args, image, command, rt):
    from pyrt.cli.main import _env_from_args
    return rt.containers.create(
        image, command or None, name=args.name, entrypoint=[args.entrypoint] if args.entrypoint else None,
        environment=_env_from_args(args), working_dir=args.workdir, user=args.user, hostname=args.hostname,
        volumes=args.volume or [], tmpfs=args.tmpfs or [], mounts=[parse_mount(m) for m in args.mount],
        volumes_from=args.volumes_from, network_mode=args.network, read_only=args.read_only,
        cap_add=args.cap_add, cap_drop=args.cap_drop, privileged=args.privileged,
        auto_remove=getattr(args, "rm", False))


def _run_foreground(container, interactive):
    """Start with the terminal's stdio; forward SIGINT/SIGTERM/SIGHUP to it."""
    import signal
    import pyrt
    proc = container.start_process(stdin=None if interactive else pyrt.DEVNULL)
    old = {}

    def forward(sig, _frame):
        proc.send_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old[sig] = signal.signal(sig, forward)
    try:
        rc = proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    container.finished(rc)
    return 128 - rc if rc < 0 else rc


def run_image(args, image, command, rt):
    c = _create(args, image, command, rt)
    try:
        return _run_foreground(c, args.interactive)
    except BaseException:
        if args.rm:
            c.remove(force=True)
        raise


def cmd_create(args, rt):
    c = _create(args, args.image, args.command, rt)
    print(c.id)


def cmd_start(args, rt):
    rc = 0
    for ref in args.containers:
        c = rt.containers.get(ref)
        if args.attach:
            rc = _run_foreground(c, args.interactive)
        else:
            raise ValueError("start without -a needs detached containers, which pyrt does not support yet: use start -a")
    return rc


def _ago(t: float) -> str:
    d = max(0, time.time() - t)
    for unit, secs in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if d >= secs:
            n = int(d // secs)
            return f"{n} {unit[:-1] if n == 1 else unit} ago"
    return f"{int(d)} seconds ago"


def _status(c) -> str:
    s = c.state
    if c.status == "running":
        return f"Up {int(time.time() - s.get('StartedAt', time.time()))} seconds"
    if c.status == "exited":
        return f"Exited ({s.get('ExitCode', 0)}) {_ago(s.get('FinishedAt') or c.created)}"
    return "Created"


def cmd_ps(args, rt):
    cs = rt.containers.list(all=args.all)
    if args.only_ids:
        for c in cs:
            print(c.short_id)
        return
    rows = [{"ID": c.short_id, "Image": c.config.get("ImageRef", c.image_id[7:19]),
             "Command": " ".join(c.config["Cmd"]), "CreatedAt": _ago(c.created), "Status": _status(c),
             "Names": c.name} for c in cs]
    if args.format == "json":
        import json
        print(json.dumps(rows, indent=2))
        return
    _table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"],
           [[r["ID"], r["Image"], _trunc(r["Command"], 22), r["CreatedAt"], r["Status"], r["Names"]] for r in rows])


def _trunc(s, n):
    import json
    return json.dumps(s if len(s) <= n else s[: n - 1] + "…", ensure_ascii=False)


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    for row in [header] + rows:
        print("   ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def cmd_rm(args, rt):
    failed = 0
    for ref in args.containers:
        try:
            rt.containers.get(ref).remove(force=args.force, v=args.volumes)
            print(ref)
        except (LookupError, Exception) as e:  # go on with the others, as docker does
            from pyrt.cli.main import _message
            print(f"pyrt: {_message(e)}", file=sys.stderr)
            failed = 1
    return failed


def cmd_diff(args, rt):
    kinds = {0: "C", 1: "A", 2: "D"}
    for d in rt.containers.get(args.container).diff():
        print(f"{kinds[d['Kind']]} {d['Path']}")


def cmd_commit(args, rt):
    repo = tag = None
    if args.repository:
        from pyrt.oci.reference import parse_reference
        ref = parse_reference(args.repository)
        repo, tag = ref.repository, ref.tag
    c = rt.containers.get(args.container)
    image = c.commit(repository=repo, tag=tag, message=args.message, author=args.author, changes=args.change,
                     compression=None if args.compression == "none" else args.compression)
    print(image.id)


def cmd_export(args, rt):
    c = rt.containers.get(args.container)
    if args.output:
        tmp = args.output + ".part"
        try:
            with open(tmp, "wb") as f:
                c.export(f)
            os.rename(tmp, args.output)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        if sys.stdout.isatty():
            raise ValueError("refusing to write a tar to a terminal: use -o FILE or redirect the output")
        c.export(sys.stdout.buffer)


def cmd_inspect(args, rt):
    from pyrt.errors import ContainerNotFound, ImageNotFound
    out, status = [], 0
    for ref in args.objects:
        obj = None
        if args.type in (None, "container"):
            try:
                obj = rt.containers.get(ref).attrs
            except ContainerNotFound:
                pass
        if obj is None and args.type in (None, "image"):
            try:
                obj = rt.images.get(ref).attrs
            except ImageNotFound:
                pass
        if obj is None:
            print(f"pyrt: no such object: {ref}", file=sys.stderr)
            status = 1
        else:
            out.append(obj)
    import json
    print(json.dumps(out, indent=4))
    return status


def register(sub):
    from pyrt.cli.main import add_run_options
    import argparse
    p = sub.add_parser("create", help="create a container from an image (not started)")
    add_run_options(p)
    add_run_image_options(p)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("start", help="start a created or stopped container")
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr and wait")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", dest="only_ids", help="only ids")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill it first if running")
    p.add_argument("-v", "--volumes", action="store_true", help="also its anonymous volumes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("diff", help="changes of a container's filesystem (A added, C changed, D deleted)")
    p.add_argument("container")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("commit", help="make an image of a container's changes")
    p.add_argument("-m", "--message", help="commit message (the history comment)")
    p.add_argument("-a", "--author")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME")
    p.add_argument("--compression", choices=("gzip", "zstd", "none"), default="gzip")
    p.add_argument("container")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_commit)

    p = sub.add_parser("export", help="a container's filesystem as a tar")
    p.add_argument("-o", "--output", help="write to this file (default: standard output)")
    p.add_argument("container")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="low-level information on containers or images (JSON)")
    p.add_argument("--type", choices=("container", "image"))
    p.add_argument("objects", nargs="+")
    p.set_defaults(func=cmd_inspect)
