"""A container's private network through slirp4netns (user-mode networking), as
rootless podman gives its containers: what an ordinary user, who cannot make
bridges or veth pairs, uses for outbound access (network mode "slirp4netns"; the
default of an ordinary user's containers when slirp4netns is installed).

- The container gets a network namespace of its own, owned by the user namespace
  its processes run in (pyrt._core.netns_create, made before it starts), with
  `tap0` = 10.0.2.100/24, the default route through 10.0.2.2 and a name server at
  10.0.2.3 (slirp4netns forwards its queries to the host's resolvers).
- slirp4netns (Debian package `slirp4netns`) runs on the host's side: each TCP
  connection or UDP flow the container opens becomes a socket of the slirp4netns
  process, so the container reaches what the user could reach, with the user's
  rights. It runs as root of the containers' user namespace (joined with
  `nsenter`; as root, in a private mount namespace of its own), in its own sandbox (`--enable-sandbox`: an empty root, no
  capabilities) under a seccomp filter (`--enable-seccomp`).
- The host's loopback is out of reach (`--disable-host-loopback`, podman's
  `allow_host_loopback=false` default): 10.0.2.2 is not mapped to the host's
  127.0.0.1, and the container's kernel will not route 127.0.0.0/8 out of tap0.
  slirp4netns itself connects wherever a frame on tap0 says, 127.0.0.1 included:
  a container that can write raw frames (CAP_NET_RAW) or rewrite its packets
  (CAP_NET_ADMIN: tc) could reach the host's loopback services through it. So
  containers on slirp4netns run without CAP_NET_RAW (`cap_drop`, as podman's
  default set), unless --cap-add NET_RAW (or ALL) or --privileged asks for it:
  those, and --cap-add NET_ADMIN, hand the container the host's loopback.
  The host's other addresses are reachable, as from any program of the user.
  The host's network namespace is never entered or changed.
- Published ports (-p, TCP and UDP) are slirp4netns's host forwards (added
  through its API socket before the container starts): it listens on the
  host's address and port and connects to 10.0.2.100:PORT in the container (a
  server there must listen on 0.0.0.0 or that address, as with docker).
- Its life: it ends when the write end of its exit pipe closes. A foreground
  run holds that end and closes it when the container ends (`UserNet.stop`); a
  detached container's monitor holds it (`hold_fd`) for its whole life, so
  slirp4netns ends with the monitor, whoever started it.

Why slirp4netns rather than pasta (both Debian 12 packages): the container has
an address of its own behind slirp4netns's NAT, so the host's addresses stay
reachable from it (pasta copies the host's address into the container, so the
host is reachable only through the gateway mapped to its loopback, which must
stay off); slirp4netns tells when it is ready (--ready-fd) and ends on an fd
(--exit-fd), while Debian 12's pasta (2023-03) signals neither, forks to the
background and forwards every bound port both ways unless told not to; and it is
what podman 4 on Debian 12 uses by default. pasta moves bytes faster (no NAT,
loopback connections spliced); slirp4netns is enough for what containers here do
(package downloads, test services)."""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time

from pyrt.errors import InvalidArgument, NetworkError, Unsupported
from pyrt.launch.userns import find_helper

MODE = "slirp4netns"
ADDRESS = "10.0.2.100"  # the container's (slirp4netns --configure)
GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"
MTU = 65520
READY_TIMEOUT = 15.0    # seconds slirp4netns may take to set the namespace up

def programs() -> tuple[str, str | None]:
    """(slirp4netns, nsenter or None as root); a one-line Unsupported when missing."""
    slirp = find_helper("slirp4netns")
    if not slirp:
        raise Unsupported("network slirp4netns: the program slirp4netns is not installed (install the package "
                          "slirp4netns, or use --network none)")
    nsenter = None
    if os.geteuid() != 0:
        nsenter = find_helper("nsenter")
        if not nsenter:
            raise Unsupported("network slirp4netns: nsenter (util-linux) is not installed")
    return slirp, nsenter


def available() -> bool:
    """Can containers here get a slirp4netns network (the programs are installed)?"""
    try:
        programs()
    except Unsupported:
        return False
    return True


def check_ports(ports) -> None:
    """Published ports as slirp4netns forwards them: [{"HostIp", "HostPort",
    "ContainerPort", "Protocol"}] (pyrt.containers.options.parse_ports)."""
    for p in ports:
        if p.get("Protocol", "tcp") not in ("tcp", "udp"):
            raise InvalidArgument(f"published port {p.get('ContainerPort')}/{p.get('Protocol')}: "
                                  "slirp4netns forwards tcp and udp")


def cap_drop(cap_add=(), cap_drop=(), privileged=False) -> list:
    """The capabilities a container on slirp4netns drops: `cap_drop` plus NET_RAW
    (raw frames on tap0 reach the host's loopback through slirp4netns), unless
    the caller asked for it (cap_add NET_RAW or ALL, privileged)."""
    asked = {c.upper().removeprefix("CAP_") for c in cap_add or ()}
    if privileged or asked & {"NET_RAW", "ALL"}:
        return list(cap_drop or ())
    return [*(cap_drop or ()), "NET_RAW"]


class UserNet:
    """A running slirp4netns for one container's network namespace.

    `fd`: the namespace (the spawn joins it; close_netns() once it has).
    `exit_fd`: the write end of slirp4netns's exit pipe: it ends when every copy
    is closed (stop() closes ours; a monitor keeps its own copy)."""

    def __init__(self, fd: int, proc: subprocess.Popen, exit_fd: int, log):
        self.fd, self.proc, self.exit_fd, self._log = fd, proc, exit_fd, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close_netns(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self) -> None:
        """Give slirp4netns's life to whoever holds a copy of exit_fd (a monitor):
        our copies closed, the process not waited for (it is reaped by Python's
        subprocess bookkeeping when it ends)."""
        self.close_netns()
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
            self.exit_fd = -1
        self._close_log()

    def stop(self, timeout: float = 5.0) -> None:
        """End slirp4netns (its exit fd closed; killed if it lingers) and reap it."""
        self.close_netns()
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
            self.exit_fd = -1
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def last_error(self) -> str:
        """slirp4netns's last line of complaint (for an error message)."""
        if self._log is None:
            return ""
        try:
            self._log.seek(0)
            lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines()]
        except OSError:
            return ""
        useful = [ln for ln in lines if ln and not ln.startswith(("WARNING", "sent tapfd", "received tapfd",
                                                                    "Starting slirp", "*", "parent failed",
                                                                    "child failed"))]
        return useful[-1] if useful else (lines[-1] if lines else "")


def _netns() -> int:
    """A new network namespace the container can join: as an ordinary user owned
    by the process's shared user namespace (the one its containers are cloned
    into); as root a plain one."""
    if os.geteuid() == 0:
        from pyrt.network.netns import new_netns
        return new_netns()
    from pyrt import _core
    from pyrt.launch import userns
    return _core.netns_create(userns.shared_fd(userns.maps_for_caller()))


def start(ports=(), runtime_dir: str | None = None) -> UserNet:
    """slirp4netns for a new network namespace, ready (the namespace's tap0 up
    and routed) and forwarding `ports` when this returns; a one-line
    NetworkError (nothing left running) when it cannot. runtime_dir: where its
    API socket and log are made (private, short-lived)."""
    slirp, nsenter = programs()
    check_ports(ports)
    fd = _netns()
    pipes, api_dir, net = [], None, None
    try:
        ready_r, ready_w = os.pipe()
        pipes += [ready_r, ready_w]
        exit_r, exit_w = os.pipe()
        pipes += [exit_r, exit_w]
        argv = [slirp, "--configure", f"--mtu={MTU}", "--disable-host-loopback", "--enable-sandbox",
                "--enable-seccomp", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}"]
        if ports:
            # a socket's path has at most 107 bytes: a private directory of the
            # system's temporary one when the runtime directory is too deep
            deep = runtime_dir is None or len(os.fsencode(runtime_dir)) > 60
            api_dir = tempfile.mkdtemp(prefix="pyrt-slirp-", dir=None if deep else runtime_dir)
            argv.append(f"--api-socket={os.path.join(api_dir, 'api.sock')}")
        argv += ["--netns-type=path", f"/proc/self/fd/{fd}", "tap0"]
        pass_fds = [fd, ready_w, exit_r]
        if nsenter:  # as root of the containers' user namespace, which owns the network namespace
            from pyrt.launch import userns
            ufd = userns.shared_fd(userns.maps_for_caller())
            argv = [nsenter, "--preserve-credentials", f"--user=/proc/self/fd/{ufd}", "--", *argv]
            pass_fds.append(ufd)
        else:
            # as root its sandbox's mount namespace would stay a peer of ours (shared
            # mounts): what it unmounts there would go here too; made private first
            argv = [find_helper("unshare") or "unshare", "--mount", "--propagation", "private", "--", *argv]
        log = tempfile.TemporaryFile(dir=runtime_dir)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=pass_fds,
                                    cwd="/", start_new_session=True)
        except OSError as e:
            log.close()
            raise NetworkError(f"network slirp4netns: cannot run {slirp}: {e.strerror}") from None
        pipes.remove(exit_w)
        net = UserNet(fd, proc, exit_w, log)
        fd = -1
        for f in (ready_w, exit_r):
            os.close(f)
            pipes.remove(f)
        _wait_ready(net, ready_r)
        for p in ports:
            _add_forward(net, os.path.join(api_dir, "api.sock"), p)
        return net
    except BaseException:
        if net is not None:
            net.stop(timeout=1.0)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
        for f in pipes:
            os.close(f)
        if api_dir is not None:
            shutil.rmtree(api_dir, ignore_errors=True)


def _wait_ready(net: UserNet, ready_r: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NetworkError(f"network slirp4netns: not ready after {READY_TIMEOUT:.0f} s")
        r, _, _ = select.select([ready_r], [], [], min(left, 0.5))
        if r:
            data = os.read(ready_r, 16)
            if data.startswith(b"1"):
                return
            break  # closed without a word: it failed
        if net.proc.poll() is not None:
            break
    try:
        net.proc.wait(1.0)
    except subprocess.TimeoutExpired:
        pass
    why = net.last_error() or f"exit status {net.proc.returncode}"
    raise NetworkError(f"network slirp4netns: it failed to start: {why}")


def _add_forward(net: UserNet, api: str, p: dict) -> None:
    """One published port through slirp4netns's API (add_hostfwd)."""
    req = {"execute": "add_hostfwd", "arguments": {
        "proto": p.get("Protocol", "tcp"), "host_addr": p.get("HostIp") or "0.0.0.0",
        "host_port": int(p["HostPort"]), "guest_port": int(p["ContainerPort"])}}
    what = f"{req['arguments']['host_addr']}:{p['HostPort']}:{p['ContainerPort']}/{req['arguments']['proto']}"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(READY_TIMEOUT)
            s.connect(api)
            s.sendall(json.dumps(req).encode())
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data.decode() or "{}")
    except (OSError, ValueError) as e:
        raise NetworkError(f"publish port {what}: slirp4netns's API: {e}") from None
    if "error" in reply or "return" not in reply:
        desc = (reply.get("error") or {}).get("desc") or data.decode(errors="replace").strip()
        raise NetworkError(f"publish port {what}: {desc}")


def resolv_conf(dns=(), dns_search=()) -> str:
    """The /etc/resolv.conf of a container on slirp4netns: its name server
    (10.0.2.3, which forwards to the host's), or --dns; the host's search domains
    and options, or --dns-search."""
    try:
        with open("/etc/resolv.conf") as f:
            host = f.read().splitlines()
    except OSError:
        host = []
    search = list(dns_search) or [d for ln in host if ln.split()[:1] == ["search"] for d in ln.split()[1:]]
    options = [ln for ln in host if ln.split()[:1] == ["options"]]
    servers = list(dns) or [DNS]
    return ((f"search {' '.join(search)}\n" if search else "")
            + "".join(f"nameserver {ip}\n" for ip in servers) + "".join(o + "\n" for o in options))
