"""Container verbs of the CLI: create, start, ps, rm, exec, logs, diff, commit,
export, inspect."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pyrt.cli.common import add_run_options, env_from_args, error_status, for_each, message
from pyrt.cli.images import confirm, human_size, report_prune
from pyrt.cli.orphan import command as clean_up
from pyrt.cli.output import parse_filters, print_inspected, print_rows, table
from pyrt.cli.run import _create, _reaper, _run_foreground, add_run_image_options
from pyrt.cli.shield import Shield
from pyrt.errors import ContainerNotFound, ImageNotFound, InvalidArgument, SpawnError
from pyrt.launch.tty import open_pty_in, relay


def cmd_create(args, rt):
    c = _create(args, args.image, args.command, rt)
    print(c.id)


def cmd_start(args, rt):
    if args.attach or args.interactive:
        # in the foreground (as docker: one container; -i attaches too)
        if len(args.containers) > 1:
            raise InvalidArgument("start -a/-i takes one container (start several without -a, then attach)")
        c = rt.containers.get(args.containers[0])
        with _reaper() as reaper:
            reaper.run_on_death(clean_up(rt.root, c.id))
            return _run_foreground(c, args.interactive, reaper, sig_proxy=args.sig_proxy == "true")
    for ref in args.containers:
        rt.containers.get(ref).start()
        print(ref)
    return 0


def _each(args, rt, action):
    """action on every named container, its name printed once done; failures are
    reported and the others go on."""
    def one(ref):
        action(rt.containers.get(ref))
        print(ref)
    return for_each(args.containers, one)


def cmd_stop(args, rt):
    return _each(args, rt, lambda c: c.stop(timeout=args.time))


def cmd_restart(args, rt):
    return _each(args, rt, lambda c: c.restart(timeout=args.time))


def cmd_kill(args, rt):
    return _each(args, rt, lambda c: c.kill(args.signal))


def cmd_pause(args, rt):
    return _each(args, rt, lambda c: c.pause())


def cmd_unpause(args, rt):
    return _each(args, rt, lambda c: c.unpause())


def cmd_wait(args, rt):
    status = 0
    for ref in args.containers:
        print(rt.containers.get(ref).wait()["StatusCode"])
    return status


def cmd_logs(args, rt):
    # lazy: 0.7 ms of `pyrt images` start-up (measured), for logs only
    from pyrt.containers import logs
    c = rt.containers.get(args.container)
    streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    kwargs = dict(timestamps=args.timestamps, tail=args.tail)
    if args.since:
        kwargs["since"] = _parse_since(args.since)
    # each line to its own stream, in the order the container wrote them
    chunks = logs.follow_logs(c, records=True, **kwargs) if args.follow else [logs.log_records(c, **kwargs)]
    last = None
    for records in chunks:
        for stream, text in records:
            if last is not None and stream != last:
                streams[last].flush()
            streams[stream].write(text)
            last = stream
        for out in streams.values():
            out.flush()
    return 0


def _parse_since(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(f"invalid --since {text!r}: use seconds since the epoch or a duration like 10m") from None


def cmd_exec(args, rt):
    # lazy: 0.7 ms of `pyrt images` start-up (measured), for exec only
    from pyrt.containers import processes
    c = rt.containers.get(args.container)
    if not args.command:
        raise InvalidArgument("exec needs a command")
    if args.detach and args.tty:
        raise InvalidArgument("exec -t with -d is not supported: nothing would hold the terminal")
    to_close, master, shield = [], None, None
    stdio = {}
    if args.tty:
        master, slave = open_pty_in(c.reload().state["Pid"])
        to_close.append(slave)
        stdio = dict(stdin=slave, stdout=slave, stderr=slave, new_session=True)
    else:
        shield = Shield(stdin=args.interactive)
        stdio = shield.stdio()
        if not args.interactive:
            to_close.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            stdio["stdin"] = to_close[-1]
    try:
        pid, pfd = processes.exec_process(c, args.command, user=args.user, environment=env_from_args(args),
                                          workdir=args.workdir, privileged=args.privileged, **stdio)
    except SpawnError as e:
        if master is not None:
            os.close(master)
        if e.op != "exec":
            raise
        print(f"pyrt: {message(e)}", file=sys.stderr)
        return error_status(e)  # as docker exec: 127 not found, 126 not executable
    finally:
        for fd in to_close:
            os.close(fd)
        if shield is not None:
            shield.started()
    if args.detach:
        os.close(pfd)
        return 0
    if master is not None:
        try:
            relay(master, pfd, args.interactive)
        finally:
            os.close(master)
    rc = processes.wait_pidfd(pfd)
    if shield is not None:
        shield.finish()
    return rc


STATS_COLUMNS = [("ID", "CONTAINER ID"), ("Name", "NAME"), ("CPUPerc", "CPU %"), ("MemUsage", "MEM USAGE / LIMIT"),
                 ("MemPerc", "MEM %"), ("PIDs", "PIDS")]


def cmd_stats(args, rt):
    """One reading (--no-stream), else a new one every second until ^C (redrawn in
    place on a terminal), as docker stats."""
    named = [rt.containers.get(r) for r in args.containers]
    prev = {}
    interval = 0.5  # the first CPU reading is over half a second
    try:
        while True:
            cs = named or rt.containers.list()
            for c in cs:
                prev.setdefault(c.id, (time.monotonic(), c.stats()["pyrt"].get("cpu_usage_ns") or 0))
            time.sleep(interval)
            rows = [_stats_row(c, prev) for c in cs if named or c.reload().status in ("running", "paused")]
            if not args.no_stream and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")  # redraw in place
            print_rows(rows, args.format, STATS_COLUMNS)
            sys.stdout.flush()
            if args.no_stream:
                return 0
            interval = 1.0
    except KeyboardInterrupt:
        return 0


def _stats_row(c, prev) -> dict:
    """A row of `stats`; the CPU % over the time since the previous reading."""
    p = c.stats()["pyrt"]
    t0, u0 = prev[c.id]
    now, used = time.monotonic(), p.get("cpu_usage_ns") or 0
    prev[c.id] = (now, used)
    cpu = (used - u0) / max(now - t0, 1e-6) / 1e9 * 100
    limit = p.get("memory_limit")
    mem = p.get("memory_usage") or 0
    return {"ID": c.short_id, "Name": c.name, "CPUPerc": f"{cpu:.2f}%",
            "MemUsage": f"{human_size(mem)} / {human_size(limit) if limit else 'unlimited'}",
            "MemPerc": f"{mem / limit * 100:.2f}%" if limit else "--", "PIDs": str(p.get("pids_current") or 0)}


def cmd_top(args, rt):
    t = rt.containers.get(args.container).top()
    print(table(t["Titles"], t["Processes"]))


def _ago(t: float) -> str:
    d = max(0, time.time() - t)
    for unit, secs in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if d >= secs:
            n = int(d // secs)
            return f"{n} {unit[:-1] if n == 1 else unit} ago"
    return f"{int(d)} seconds ago"


def _status(c) -> str:
    s = c.state
    if c.status in ("running", "paused"):
        up = f"Up {_ago(s.get('StartedAt') or time.time())[:-4]}"
        return up + " (Paused)" if c.status == "paused" else up
    if c.status == "exited":
        return f"Exited ({s.get('ExitCode', 0)}) {_ago(s.get('FinishedAt') or c.created)}"
    return "Created"


PS_COLUMNS = [("ID", "CONTAINER ID"), ("Image", "IMAGE"), ("Command", "COMMAND"), ("RunningFor", "CREATED"),
              ("Status", "STATUS"), ("Ports", "PORTS"), ("Names", "NAMES")]


def _ports_text(c) -> str:
    return ", ".join(f"{p['HostIp']}:{p['HostPort']}->{p['ContainerPort']}/{p['Protocol']}"
                     for p in c.config.get("Ports", []))


def cmd_ps(args, rt):
    cs = rt.containers.list(all=args.all, filters=parse_filters(args.filter, rt.containers.FILTERS))
    if args.only_ids:
        for c in cs:
            print(c.short_id)
        return
    rows = [{"ID": c.short_id, "Image": c.config.get("ImageRef", c.image_id[7:19]),
             "Command": " ".join(c.config["Cmd"]), "CreatedAt": _ago(c.created), "RunningFor": _ago(c.created),
             "Status": _status(c), "State": c.status, "Ports": _ports_text(c), "Names": c.name,
             "Labels": ",".join(f"{k}={v}" for k, v in c.config.get("Labels", {}).items())} for c in cs]
    if args.format == "table":  # the command quoted and cut, as docker shows it
        rows = [dict(r, Command=_trunc(r["Command"], 22)) for r in rows]
    print_rows(rows, args.format, PS_COLUMNS)


def _trunc(s, n):
    return json.dumps(s if len(s) <= n else s[: n - 1] + "…", ensure_ascii=False)


def cmd_rm(args, rt):
    failed = 0
    for ref in args.containers:
        try:
            rt.containers.get(ref).remove(force=args.force, v=args.volumes)
            print(ref)
        except (LookupError, Exception) as e:  # go on with the others, as docker does
            print(f"pyrt: {message(e)}", file=sys.stderr)
            failed = 1
    return failed


def cmd_cp(args, rt):
    """docker cp: exactly one side names a container (CONTAINER:PATH)."""
    # lazy: 1.7 ms of `pyrt ps` / `images` start-up (measured), for cp only
    from pyrt.containers import cp

    def split(arg):
        name, sep, path = arg.partition(":")
        if not sep or "/" in name or not name:  # a host path (absolute, or ./x:y)
            return None, arg
        return name, path or "/"
    (sc, src), (dc, dest) = split(args.src), split(args.dest)
    if (sc is None) == (dc is None):
        raise InvalidArgument("cp copies between a container and the host: one of SRC and DEST is CONTAINER:PATH")
    if sc is not None:
        cp.copy_out(rt.containers.get(sc), src if src.startswith("/") else "/" + src, dest,
                    follow=args.follow_link, archive=args.archive)
    else:
        cp.copy_in(rt.containers.get(dc), src, dest if dest.startswith("/") else "/" + dest, archive=args.archive)


def cmd_attach(args, rt):
    """docker attach: the running container's output as it comes (and, for one with
    a terminal, our input to it) until it ends, or until the detach keys."""
    # lazy: 2 ms of `pyrt ps` start-up (measured), for attach only
    from pyrt.containers.attach import attach
    c = rt.containers.get(args.container)
    keys = _detach_keys(args.detach_keys)
    if attach(c, stdin=not args.no_stdin, detach_keys=keys):
        return 0  # detached: it runs on
    return c.wait()["StatusCode"]


def _detach_keys(spec: str) -> bytes:
    """docker's --detach-keys: "ctrl-p,ctrl-q" style, as the bytes they send."""
    out = b""
    for key in spec.split(","):
        key = key.strip().lower()
        if key.startswith("ctrl-") and len(key) == 6 and "a" <= key[5] <= "z":
            out += bytes([ord(key[5]) - ord("a") + 1])
        elif len(key) == 1:
            out += key.encode()
        else:
            raise InvalidArgument(f"invalid detach key {key!r}: use a letter or ctrl-LETTER, comma separated")
    return out


def cmd_port(args, rt):
    """docker port: the container's published ports (or where one of them goes)."""
    c = rt.containers.get(args.container)
    found = 0
    for p in c.config.get("Ports", []):
        key = f"{p['ContainerPort']}/{p['Protocol']}"
        if args.port in (None, key, str(p["ContainerPort"])):
            print(f"{p['HostIp']}:{p['HostPort']}" if args.port else f"{key} -> {p['HostIp']}:{p['HostPort']}")
            found += 1
    if args.port and not found:
        raise InvalidArgument(f"no public port {args.port!r} published for {c.name}")


def cmd_rename(args, rt):
    rt.containers.get(args.container).rename(args.name)


def cmd_container_prune(args, rt):
    if not confirm("container prune removes all stopped containers", args.force):
        return 0
    report_prune(rt.containers.prune())
    return 0


def cmd_diff(args, rt):
    kinds = {0: "C", 1: "A", 2: "D"}
    for d in rt.containers.get(args.container).diff():
        print(f"{kinds[d['Kind']]} {d['Path']}")


def cmd_commit(args, rt):
    repo = tag = None
    if args.repository:
        # lazy: 0.5 ms of `pyrt ps` start-up (measured)
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
            raise InvalidArgument("refusing to write a tar to a terminal: use -o FILE or redirect the output")
        c.export(sys.stdout.buffer)


def cmd_inspect(args, rt):
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
    print_inspected(out, args.format)
    return status


def _add_ps(p):
    p.add_argument("-a", "--all", action="store_true", help="also stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", dest="only_ids", help="only ids")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="id, name, status, exited, ancestor or label (repeatable)")
    p.add_argument("--format", default="table", metavar="table|json|TEMPLATE",
                   help="e.g. '{{.Names}}' or 'table {{.ID}}\\t{{.Status}}'")
    p.set_defaults(func=cmd_ps)


def _add_rm(p):
    p.add_argument("-f", "--force", action="store_true", help="kill it first if running")
    p.add_argument("-v", "--volumes", action="store_true", help="also its anonymous volumes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_rm)


def _add_cp(p):
    p.add_argument("-a", "--archive", action="store_true", help="keep owners (default: the copy is root's)")
    p.add_argument("-L", "--follow-link", action="store_true", help="copy what a symlink SRC points to")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.set_defaults(func=cmd_cp)


def _add_rename(p):
    p.add_argument("container")
    p.add_argument("name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_rename)


def register(sub):
    p = sub.add_parser("create", help="create a container from an image (not started)")
    add_run_options(p)
    add_run_image_options(p)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("start", help="start created or stopped containers (in the background)")
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr and wait")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin too (implies -a)")
    p.add_argument("--sig-proxy", choices=("true", "false"), default="true", metavar="true|false",
                   help="with -a: pass the signals pyrt gets on to the container (default true), as run does")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_start)

    for verb, func, helptext in (("stop", cmd_stop, "stop running containers (StopSignal, then SIGKILL)"),
                                 ("restart", cmd_restart, "stop and start containers")):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("-t", "--time", type=float, default=10, help="seconds to wait before SIGKILL (default 10)")
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)
    p = sub.add_parser("kill", help="send a signal to containers (default SIGKILL)")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_kill)
    for verb, func, helptext in (("pause", cmd_pause, "freeze every process of containers"),
                                 ("unpause", cmd_unpause, "thaw paused containers"),
                                 ("wait", cmd_wait, "wait for containers to stop; print their exit codes")):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)

    p = sub.add_parser("logs", help="output of a detached container")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until it stops")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all", help="only the last N lines")
    p.add_argument("--since", help="only output since a time (seconds since the epoch) or a duration (10m)")
    p.add_argument("container")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    p.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    p.add_argument("-d", "--detach", action="store_true", help="do not wait for it")
    p.add_argument("-e", "--env", action="append", metavar="KEY=VALUE")
    p.add_argument("--env-file", action="append", metavar="FILE")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("stats", help="CPU, memory and pids use of running containers")
    p.add_argument("--no-stream", action="store_true", help="one reading, then exit (default: one a second)")
    p.add_argument("--format", default="table", metavar="table|json|TEMPLATE")
    p.add_argument("containers", nargs="*")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("top", help="processes of a running container")
    p.add_argument("container")
    p.set_defaults(func=cmd_top)

    _add_ps(sub.add_parser("ps", help="list containers"))
    _add_rm(sub.add_parser("rm", help="remove containers"))
    _add_rename(sub.add_parser("rename", help="give a container a new name"))
    p = sub.add_parser("port", help="a container's published ports")
    p.add_argument("container")
    p.add_argument("port", nargs="?", metavar="PORT[/PROTO]")
    p.set_defaults(func=cmd_port)
    p = sub.add_parser("attach", help="the output of a running container, and input to its terminal")
    p.add_argument("--no-stdin", action="store_true", help="output only")
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="keys that detach (default ctrl-p,ctrl-q)")
    p.add_argument("container")
    p.set_defaults(func=cmd_attach)
    _add_cp(sub.add_parser("cp", help="copy files between a container and the host",
                           usage="pyrt cp [-a] [-L] CONTAINER:SRC DEST|-  or  pyrt cp [-a] SRC|- CONTAINER:DEST"))

    group = sub.add_parser("container", help="manage containers")
    csub = group.add_subparsers(dest="container_verb", metavar="COMMAND", parser_class=type(group))
    _add_ps(csub.add_parser("ls", aliases=["list", "ps"], help="list containers"))
    _add_rm(csub.add_parser("rm", aliases=["remove"], help="remove containers"))
    _add_rename(csub.add_parser("rename", help="give a container a new name"))
    _add_cp(csub.add_parser("cp", help="copy files between a container and the host"))
    p = csub.add_parser("prune", help="remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_container_prune)
    p = csub.add_parser("inspect", help="a container's details (JSON)")
    p.add_argument("-f", "--format", metavar="TEMPLATE", help="e.g. '{{.State.Status}}'")
    p.add_argument("objects", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_inspect, type="container")
    group.set_defaults(func=lambda args, rt: (group.print_help(), 2)[1])

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
    p.add_argument("-f", "--format", metavar="TEMPLATE", help="e.g. '{{.State.Status}}' or '{{json .Config}}'")
    p.add_argument("objects", nargs="+")
    p.set_defaults(func=cmd_inspect)
