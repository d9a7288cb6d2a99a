"""`pyrt run IMAGE` and `start -a`: a container in the foreground, its options
(mounts, ports, networks), the relay of its output and its reaper."""
from __future__ import annotations

import os
from pyrt.errors import InvalidArgument


def add_run_image_options(p):
    """Options `run` has for image-based containers (shared with `create`)."""
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", help="container name")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("--mount", action="append", default=[], metavar="type=bind|volume|tmpfs,src=...,dst=...",
                   help="attach a mount (options: readonly, volume-nocopy, tmpfs-size, tmpfs-mode)")
    p.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]",
                   help="mount the volumes of another container")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    p.add_argument("--init", action="store_true", help="a tiny init as PID 1 (forwards signals, reaps zombies)")
    p.add_argument("-m", "--memory", metavar="BYTES", help="memory limit (e.g. 256m)")
    p.add_argument("--memory-swap", metavar="BYTES", help="memory + swap limit (-1: unlimited swap)")
    p.add_argument("--memory-reservation", metavar="BYTES", help="memory soft limit")
    p.add_argument("--cpus", metavar="N", help="number of CPUs (e.g. 1.5)")
    p.add_argument("-c", "--cpu-shares", type=int, metavar="N", help="relative CPU weight")
    p.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs allowed (e.g. 0-1)")
    p.add_argument("--cpuset-mems", metavar="LIST", help="memory nodes allowed")
    p.add_argument("--pids-limit", type=int, metavar="N", help="most processes at once (-1: unlimited)")
    p.add_argument("--blkio-weight", type=int, metavar="N", help="relative block I/O weight (10 to 1000)")
    for what, help in (("read-bps", "bytes read per second from a block device (e.g. /dev/sda:10mb)"),
                       ("write-bps", "bytes written per second to a block device"),
                       ("read-iops", "read operations per second from a block device"),
                       ("write-iops", "write operations per second to a block device")):
        p.add_argument(f"--device-{what}", action="append", default=[], metavar="PATH:RATE", help="most " + help)
    p.add_argument("--stop-signal", metavar="SIGNAL", help="signal that stops the container")
    p.add_argument("--security-opt", action="append", default=[], metavar="seccomp=unconfined|PROFILE.json",
                   help="seccomp profile (default: pyrt's, see pyrt/seccomp.py)")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOSTPORT:]PORT[/tcp|udp]",
                   help="publish a container's port on the host's (on a network: TCP and UDP, by the kernel; "
                        "with --network none: TCP, detached containers, by their monitor)")
    p.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                   help="another name of the container on its (user-defined) network")
    p.add_argument("--ip", metavar="ADDRESS", help="the container's IPv4 address on its (user-defined) network")
    p.add_argument("--log-opt", action="append", default=[], metavar="max-size=10m|max-file=3",
                   help="rotate a detached container's log")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE", help="a container label")
    p.add_argument("--restart", default="no", metavar="POLICY",
                   help="no, on-failure[:N], always or unless-stopped (detached containers; a stop or kill by "
                        "hand ends it)")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP", help="a line of /etc/hosts")
    p.add_argument("--dns", action="append", default=[], metavar="IP", help="a nameserver of /etc/resolv.conf")
    p.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN", help="a search domain")


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
            from pyrt.cgroups.limits import parse_bytes
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(value)
        elif key == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
        elif key in ("bind-propagation", "consistency"):
            pass
        else:
            raise InvalidArgument(f"invalid --mount option {key!r} in {spec!r}")
    if not m.get("Target"):
        raise InvalidArgument(f"invalid --mount {spec!r}: dst= is required")
    return m


def _create(args, image, command, rt):
    from pyrt.cli.common import env_from_args
    name, _, tries = args.restart.partition(":")
    if tries and not tries.isdigit():
        raise InvalidArgument(f"invalid --restart {args.restart!r}: no, on-failure[:N], always or unless-stopped")
    return rt.containers.create(
        image, command or None, name=args.name, entrypoint=[args.entrypoint] if args.entrypoint else None,
        environment=env_from_args(args), working_dir=args.workdir, user=args.user, hostname=args.hostname,
        volumes=args.volume or [], tmpfs=args.tmpfs or [], mounts=[parse_mount(m) for m in args.mount],
        volumes_from=args.volumes_from, network_mode=args.network, read_only=args.read_only,
        networking_config=_endpoint_config(args),
        init=args.init, mem_limit=args.memory, memswap_limit=args.memory_swap,
        mem_reservation=args.memory_reservation, cpus=args.cpus, cpu_shares=args.cpu_shares,
        cpuset_cpus=args.cpuset_cpus, cpuset_mems=args.cpuset_mems, pids_limit=args.pids_limit,
        blkio_weight=args.blkio_weight, device_read_bps=args.device_read_bps,
        device_write_bps=args.device_write_bps, device_read_iops=args.device_read_iops,
        device_write_iops=args.device_write_iops, stop_signal=args.stop_signal, tty=args.tty, security_opt=args.security_opt,
        ports=parse_publish(args.publish), labels=args.label, extra_hosts=args.add_host, dns=args.dns,
        dns_search=args.dns_search,
        restart_policy={"Name": name, "MaximumRetryCount": int(tries or 0)},
        log_config={"Config": dict(o.partition("=")[::2] for o in args.log_opt)} if args.log_opt else None,
        cap_add=args.cap_add, cap_drop=args.cap_drop, privileged=args.privileged,
        auto_remove=getattr(args, "rm", False), devices=args.device)


def _run_foreground(container, interactive, reaper):
    """Start with the terminal's stdin (or a terminal of its own: created with -t);
    its output is relayed to ours and kept in its log, as docker does. `reaper`
    (pyrt.launch.reaper) kills it and cleans up should this process die first."""
    import pyrt
    from pyrt.containers.logs import LogWriter
    tty = bool(container.config.get("Tty"))
    stdin = None if interactive or tty else pyrt.DEVNULL
    out = None if tty else pyrt.PIPE
    shield = None
    if interactive and not tty:
        from pyrt.cli.shield import Shield
        shield = Shield(stdin=True)
        stdin = shield.stdio().get("stdin", stdin)
    try:
        proc = container.start_process(stdin=stdin, stdout=out, stderr=out, tty=tty, reaper=reaper)
    finally:
        if shield is not None:
            shield.started()
    log = LogWriter(container)
    try:
        rc = wait_foreground(proc, interactive, log)
    finally:
        log.close()
    container.finished(rc)
    return 128 - rc if rc < 0 else rc


def wait_foreground(proc, interactive, log=None):
    """Wait for a foreground container, relaying its terminal if it has one, or its
    stdout/stderr pipes (to ours, and to `log`, a pyrt.containers.logs.LogWriter); SIGINT,
    SIGTERM and SIGHUP sent to pyrt are passed on to it."""
    import _signal as signal  # signal's own module adds enums (and imports enum): measured, not needed here
    old = {}

    def forward(sig, _frame):
        proc.send_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old[sig] = signal.signal(sig, forward)
    try:
        if proc.pty is not None:
            from pyrt.launch.tty import relay
            try:
                relay(proc.pty, proc.pidfd, interactive, tap=log and (lambda data: log.write("stdout", data)))
            finally:
                os.close(proc.pty)
                proc.pty = None
        elif proc.stdout is not None:
            _relay_pipes(proc, log)
        return proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _relay_pipes(proc, log) -> None:
    """Copies the container's stdout and stderr to ours (and to the log) as they
    come, until both end or the container has exited and they are drained."""
    import selectors
    from pyrt.launch.tty import write_all
    sel = selectors.DefaultSelector()
    streams = {proc.stdout.fileno(): ("stdout", 1), proc.stderr.fileno(): ("stderr", 2)}
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    sel.register(proc.pidfd, selectors.EVENT_READ)
    exited = False
    try:
        while len(sel.get_map()) > (0 if exited else 1):
            events = sel.select(0 if exited else None)
            if exited and not events:
                return  # exited, and nothing more to read
            for key, _ in events:
                if key.fd == proc.pidfd:
                    exited = True
                    sel.unregister(key.fd)
                    continue
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                name, ours = streams[key.fd]
                if log is not None:
                    log.write(name, data)
                try:
                    write_all(ours, data)
                except BrokenPipeError:
                    # our reader went away (`pyrt run ... | head`): so does the
                    # container's, which then gets SIGPIPE as it would in a pipe
                    sel.unregister(key.fd)
                    (proc.stdout if key.fd == proc.stdout.fileno() else proc.stderr).close()
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()


def _endpoint_config(args):
    """--network-alias and --ip: docker's EndpointSettings of the container's network."""
    if not args.network_alias and not args.ip:
        return None
    from pyrt.network.names import default_network
    ep = {"Aliases": list(args.network_alias)}
    if args.ip:
        ep["IPAMConfig"] = {"IPv4Address": args.ip}
    return {args.network or default_network(): ep}


def parse_publish(items) -> dict:
    """docker's -p [IP:][HOSTPORT:]PORT[/PROTO] as the SDK's ports dict."""
    out = {}
    for item in items:
        spec, _, proto = item.partition("/")
        parts = spec.split(":")
        if len(parts) > 3 or not parts[-1]:
            raise InvalidArgument(f"invalid -p {item!r}: use [IP:][HOSTPORT:]PORT[/tcp]")
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        host = parts[-2] if len(parts) >= 2 else ""
        out[f"{parts[-1]}/{proto or 'tcp'}"] = (ip or "0.0.0.0", host or None)
    return out


def _network_of(args) -> str:
    from pyrt.network.names import default_network
    return args.network or default_network()


def run_image(args, image, command, rt):
    if args.publish and not args.detach and _network_of(args) == "none":
        raise InvalidArgument("-p with --network none needs -d: a detached container's monitor forwards its ports")
    if args.restart != "no" and not args.detach:
        raise InvalidArgument("--restart needs -d: a detached container's monitor restarts it")
    if args.detach:
        c = _create(args, image, command, rt)
        try:
            c.start()
        except BaseException:
            c.remove(force=True, v=True)
            raise
        print(c.id)
        return 0
    with _reaper() as reaper:  # started first: from its creation on, the container is cleaned up
        c = _create(args, image, command, rt)
        from pyrt.cli.orphan import command as clean_up
        reaper.run_on_death(clean_up(rt.root, c.id))
        try:
            return _run_foreground(c, args.interactive, reaper)
        except BaseException:
            if args.rm:
                c.remove(force=True)
            raise


def _reaper():
    """A foreground container ends with this process: see pyrt.launch.reaper."""
    from pyrt.launch.reaper import Reaper
    return Reaper()
