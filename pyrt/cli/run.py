"""`pyrt run IMAGE` and `start -a`: a container in the foreground, its options
(mounts, ports, networks), the relay of its output and its reaper."""
from __future__ import annotations

import _signal as signal  # the C module: `signal` would import enum (1 ms of every verb)
import os
import sys

import pyrt
from pyrt import _core
from pyrt.cli.common import env_from_args
from pyrt.errors import ContainerNotFound, InvalidArgument
from pyrt.launch.reaper import Reaper


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
    p.add_argument("--sig-proxy", choices=("true", "false"), default="true", metavar="true|false",
                   help="in the foreground, pass the signals pyrt gets (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, "
                        "SIGUSR2, ...) on to the container (default true); false: they act on pyrt (SIGINT and "
                        "SIGTERM end it, and the container with it)")
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
            from pyrt.cgroups.limits import parse_bytes  # lazy: 1.7 ms, only for a limit
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


def _run_foreground(container, interactive, reaper, sig_proxy=True):
    """Start in the foreground: its output relayed to ours and kept in its log,
    as docker does; `reaper` (pyrt.launch.reaper) kills it and cleans up should
    this process die first. Returns the exit status (128+N when killed by signal
    N: 141 when its reader was gone and it got SIGPIPE)."""
    if container.config.get("Tty"):
        return _run_on_terminal(container, interactive, reaper, sig_proxy)
    from pyrt.containers.lifecycle import LOG_FILE  # lazy: 1.7 ms of `run --rootfs` (no log there)
    log_fd = os.open(os.path.join(container.dir, LOG_FILE),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        rc, log_error = relay_foreground(lambda **stdio: container.start_process(reaper=reaper, **stdio),
                                         interactive, sig_proxy, log_fd=log_fd, finished=container.finished)
    finally:
        os.close(log_fd)
    if log_error:
        print(f"pyrt: WARNING: the log of container {container.name} misses output: {os.strerror(log_error)}",
              file=sys.stderr)
    return 128 - rc if rc < 0 else rc


def relay_foreground(start, interactive, sig_proxy, log_fd=-1, finished=None):
    """Start a process with start(stdin=, stdout=, stderr=) (returning a
    pyrt.launch.process.Process) on pipes of ours and relay them to our stdio, our
    stdin too with `interactive`, and to log_fd (a CRI log, or -1: none) until it
    has exited; with sig_proxy the signals of forwarded_signals() sent to pyrt are
    passed on to it. finished(returncode) once it has been reaped, also when the
    relay could not be made. Returns (returncode, errno of a failed log write or 0);
    a returncode of -13 (SIGPIPE) when it was ended for its reader gone."""
    with _Signals(sig_proxy, wakeup=True) as signals:  # from before it runs: none is missed
        proc, relay = _start_relayed(start, interactive, log_fd, signals, finished)
        try:
            relay.run()
        except BaseException:  # KeyboardInterrupt (without --sig-proxy): it ends with us
            proc.kill()
            raise
        finally:
            sigpipe = relay.ended_by_sigpipe
            log_error = relay.close()
            rc = proc.wait()
            if sigpipe and rc == -9:  # ended for its reader gone (csrc/relay.h): SIGPIPE's end
                rc = -13
            if finished is not None:
                finished(rc)
    return rc, log_error


def _start_relayed(start, interactive, log_fd, signals, finished):
    """Start the process on pipes of ours (never our own fds: a container that held
    the caller's terminal or file could type into it, or reopen the file for writing
    through /proc/self/fd) and make the relay that copies through them (it owns our
    ends). (Process, _core.Relay)."""
    ours, theirs = [], []
    try:
        for nonblock in (0, 0) + ((1,) if interactive else ()):
            r, w = _core.relay_pipe(nonblock)
            ours.append(w if nonblock else r)
            theirs.append(r if nonblock else w)
        if not interactive:
            theirs.append(pyrt.DEVNULL)
        try:
            proc = start(stdin=theirs[2], stdout=theirs[0], stderr=theirs[1])
        finally:
            for fd in theirs:
                if fd >= 0:
                    os.close(fd)
            theirs = []
        try:
            # fds of ours that were closed when this process started are none (their
            # numbers may since have been reused: Python then made sys.std* None)
            relay = _core.Relay(proc.pidfd, pid=proc.pid, out_src=ours[0], out_dst=_fd(sys.stdout, 1),
                                err_src=ours[1], err_dst=_fd(sys.stderr, 2),
                                in_src=_fd(sys.stdin, 0) if interactive else -1,
                                in_dst=ours[2] if interactive else -1,
                                log_fd=log_fd, sig_fd=signals.fd, forward=signals.forwarded)
        except BaseException:
            proc.kill()
            proc.wait()
            if finished is not None:
                finished(proc.returncode)
            raise
        return proc, relay
    except BaseException:
        for fd in ours + [fd for fd in theirs if fd >= 0]:
            os.close(fd)
        raise


def _fd(stream, fd: int) -> int:
    return -1 if stream is None else fd


def _run_on_terminal(container, interactive, reaper, sig_proxy):
    """-t: the container's stdio is a terminal of its own, whose master the relay
    copies to our stdout (and to the log) and our stdin to (with -i). A terminal of
    ours is raw meanwhile (keys such as ^C reach the container's line discipline) and
    its size changes are passed on."""
    import termios  # lazy, as tty and pyrt.launch.tty (3.7 ms in all): only -t needs them
    from pyrt.containers.lifecycle import LOG_FILE  # lazy: 1.7 ms of `run --rootfs` (no log there)
    from pyrt.launch.tty import copy_window_size
    stdin = _fd(sys.stdin, 0)
    on_tty = stdin >= 0 and os.isatty(stdin)
    log_fd = os.open(os.path.join(container.dir, LOG_FILE),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    saved = None
    try:
        proc = container.start_process(tty=True, reaper=reaper)
        master = proc.pty
        try:
            if interactive and on_tty:
                import tty  # lazy: see termios above
                saved = termios.tcgetattr(stdin)
                tty.setraw(stdin)
            copy_window_size(stdin if on_tty else 1, master)
            winch = {}
            if on_tty:
                winch[signal.SIGWINCH] = lambda *_: copy_window_size(stdin, master)
            with _Signals(sig_proxy, wakeup=True, tty=True, handlers=winch) as signals:
                os.set_blocking(master, False)
                out, into = os.dup(master), (os.dup(master) if interactive and stdin >= 0 else -1)
                try:
                    relay = _core.Relay(proc.pidfd, pid=proc.pid, out_src=out, out_dst=_fd(sys.stdout, 1),
                                        in_src=stdin if into >= 0 else -1, in_dst=into, in_tty=True,
                                        log_fd=log_fd, sig_fd=signals.fd, forward=signals.forwarded)
                except BaseException:
                    os.close(out)
                    if into >= 0:
                        os.close(into)
                    raise
                try:
                    relay.run()
                finally:
                    log_error = relay.close()
        except BaseException:
            proc.kill()
            raise
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            os.close(master)
            proc.pty = None
            rc = proc.wait()
            container.finished(rc)
    finally:
        os.close(log_fd)
    if log_error:
        print(f"pyrt: WARNING: the log of container {container.name} misses output: {os.strerror(log_error)}",
              file=sys.stderr)
    return 128 - rc if rc < 0 else rc


def forwarded_signals(tty: bool) -> list:
    """What --sig-proxy passes on to the container, as docker does: the signals a
    user sends (SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGPWR,
    the real-time ones) and, without a terminal, SIGWINCH (with one, its size is
    passed on instead). Not those about pyrt itself (SIGCHLD, SIGPIPE, SIGURG, SIGIO,
    its limits and timers: SIGXCPU, SIGXFSZ, SIGPROF, SIGVTALRM; the faults) nor job
    control (SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT stop and go on with `pyrt`)."""
    names = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGPWR"]
    if not tty:
        names.append("SIGWINCH")
    sigs = [getattr(signal, n) for n in names if hasattr(signal, n)]
    if hasattr(signal, "SIGRTMIN"):
        sigs += range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    return sigs


class _Signals:
    """While a foreground container runs, with sig_proxy: the signals of
    forwarded_signals(tty) go to it. With `wakeup`, the relay (csrc/relay.h) passes
    them on: this process only notes them, and Python's wakeup fd, whose read end
    is `fd`, tells the relay their numbers (`forwarded`: those it passes on; for
    others, `handlers` of this process's own or its defaults, it lets Python run
    them). Else `proc` (set by the caller) gets them from here."""

    def __init__(self, sig_proxy: bool, wakeup: bool, tty: bool = False, handlers=None):
        self.sig_proxy, self.wakeup, self.tty = sig_proxy, wakeup, tty
        self.handlers = dict(handlers or {})
        self.proc = None
        self.forwarded = []
        self.fd = self._w = -1
        self.old, self._old_wakeup = {}, -1

    def __enter__(self):
        try:
            if self.wakeup:
                r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
                except ValueError:  # not the main thread: its handlers would not run either
                    os.close(r)
                    os.close(w)
                    return self
                self.fd, self._w = r, w
            if self.sig_proxy:
                self.forwarded = forwarded_signals(self.tty)
                for sig in self.forwarded:
                    self.old[sig] = signal.signal(sig, _noted if self.wakeup else self._forward)
            for sig, handler in self.handlers.items():
                self.old.setdefault(sig, signal.signal(sig, handler))
        except BaseException:
            self.__exit__()
            raise
        return self

    def _forward(self, sig, _frame):
        if self.proc is not None:
            self.proc.send_signal(sig)

    def __exit__(self, *exc):
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old = {}
        if self._w >= 0:
            signal.set_wakeup_fd(self._old_wakeup)
            os.close(self.fd)
            os.close(self._w)
            self.fd = self._w = -1


def _noted(_sig, _frame):
    """Python's part of a signal the relay passes on: none."""


def wait_foreground(proc, interactive, log=None, sig_proxy=True):
    """Wait for a foreground process started with inherited stdio or a terminal
    of its own (relayed to ours, and to `log`, a pyrt.containers.logs.LogWriter);
    with sig_proxy, the signals of forwarded_signals() sent to pyrt are passed on to
    it."""
    with _Signals(sig_proxy, wakeup=False, tty=True) as signals:
        signals.proc = proc
        if proc.pty is not None:
            from pyrt.launch.tty import relay  # lazy: 2.7 ms, only -t needs it
            try:
                relay(proc.pty, proc.pidfd, interactive, tap=log and (lambda data: log.write("stdout", data)))
            finally:
                os.close(proc.pty)
                proc.pty = None
        return proc.wait()


def _endpoint_config(args):
    """--network-alias and --ip: docker's EndpointSettings of the container's network."""
    if not args.network_alias and not args.ip:
        return None
    from pyrt.network.names import default_network  # lazy: 0.3 ms of `run --rootfs` (no network)
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
    from pyrt.network.names import default_network  # lazy: 0.3 ms of `run --rootfs` (no network)
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
        from pyrt.cli.orphan import command as clean_up  # lazy: 0.15 ms of `run --rootfs`
        reaper.run_on_death(clean_up(rt.root, c.id))
        try:
            return _run_foreground(c, args.interactive, reaper, sig_proxy=args.sig_proxy == "true")
        except BaseException:
            if args.rm:
                try:
                    c.remove(force=True)
                except ContainerNotFound:  # its end was recorded, and with it it went
                    pass
            raise


def _reaper():
    """A foreground container ends with this process: see pyrt.launch.reaper."""
    return Reaper()
