"""Network namespaces for the tests of pyrt's networks (the `netns` and `netstore`
fixtures in conftest.py). Nothing here touches the host's network: every bridge,
veth, firewall rule and NAT pyrt makes lives in a namespace the test made.

- `NetNS()`: a new network namespace (held by a `sleep` the test owns), its lo up;
  `run(argv)` runs a command in it (nsenter: only the network namespace changes);
  `upstream()` adds a second namespace behind a veth, as the test namespace's
  default route (a fake "internet" at 192.0.2.2); `close()` ends every process
  left in them (pyrt's name server, monitors) and the namespaces with them.
- `NetStore`: a clitools.Store whose `pyrt` runs in a NetNS (with pyrt's default
  network, as users have it); its cleanup removes containers and networks there.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import clitools
import helpers

UPSTREAM_IP, HOST_UP_IP = "192.0.2.2", "192.0.2.1"


def _ns_inode(pid) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


class NetNS:
    def __init__(self):
        mine = _ns_inode("self")
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"],
                                       stdin=subprocess.DEVNULL)
        self.others: list[NetNS] = []
        try:
            helpers.wait_for(lambda: _ns_inode(self.holder.pid) not in (None, mine), what="a new netns")
            self.inode = _ns_inode(self.holder.pid)
            self.path = f"/proc/{self.holder.pid}/ns/net"
            self.check("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def argv(self, *argv) -> list:
        return ["nsenter", f"--net={self.path}", "--", *map(str, argv)]

    def run(self, *argv, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(self.argv(*argv), **kw)

    def check(self, *argv, **kw) -> str:
        r = self.run(*argv, **kw)
        assert r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
        return r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout

    def popen(self, *argv, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*argv), **kw)

    def python(self, code: str, *args, env=None) -> subprocess.CompletedProcess:
        """The installed Python (pyrt importable) running `code` in the namespace."""
        e = {k: v for k, v in os.environ.items() if k != "PYRT_DEFAULT_NETWORK"}
        e.update(env or {})
        return self.run(sys.executable, "-P", "-c", code, *args, env=e, timeout=300)

    def upstream(self) -> "NetNS":
        """A second namespace, the first one's default route (192.0.2.0/24 between them)."""
        up = NetNS()
        self.others.append(up)
        self.check("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        self.check("ip", "link", "set", "up1", "netns", str(up.holder.pid))
        self.check("ip", "addr", "add", f"{HOST_UP_IP}/24", "dev", "up0")
        self.check("ip", "link", "set", "up0", "up")
        up.check("ip", "addr", "add", f"{UPSTREAM_IP}/24", "dev", "up1")
        up.check("ip", "link", "set", "up1", "up")
        self.check("ip", "route", "add", "default", "via", UPSTREAM_IP)
        return up

    def pids(self) -> list[int]:
        """Processes in the namespace (but its holder)."""
        out = []
        for p in os.listdir("/proc"):
            if p.isdigit() and int(p) != self.holder.pid and _ns_inode(p) == self.inode:
                out.append(int(p))
        return out

    def links(self) -> list[str]:
        return [ln["ifname"] for ln in json.loads(self.check("ip", "-j", "link", "show"))]

    def iptables(self) -> str:
        return self.check("iptables-save")

    def close(self) -> list[int]:
        """Ends what is left in the namespaces; returns those pids (leftovers)."""
        left = []
        for other in self.others:
            left += other.close()
        if self.holder.poll() is None and getattr(self, "inode", None) is not None:
            left += self.pids()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()
        return left


class NetStore(clitools.Store):
    """A store whose `pyrt` runs in `ns` with the default network users get."""

    def __init__(self, root, base_tar, ns: NetNS):
        super().__init__(root, base_tar)
        self.ns = ns

    def _argv(self, argv):
        return self.ns.argv(clitools.PYRT, "--root", self.root, *map(str, argv))

    @staticmethod
    def _env():
        env = {k: v for k, v in os.environ.items() if k != "PYRT_DEFAULT_NETWORK"}
        env["PYRT_ROOT"] = "/nonexistent-on-purpose"
        return env

    def cli(self, *argv, input=None, timeout=60) -> subprocess.CompletedProcess:
        r = subprocess.run(self._argv(argv), capture_output=True, cwd="/", input=input, timeout=timeout,
                           env=self._env())
        self.ids.update(clitools.HEX64.findall(r.stdout.decode(errors="replace")))
        return r

    def popen(self, *argv, **kw) -> subprocess.Popen:
        return subprocess.Popen(self._argv(argv), cwd="/", env=self._env(), **kw)

    def get(self, ref):
        """A container's `inspect` (never the in-process API: looking at a container
        that ended unwires it, which must happen in the namespace)."""
        return json.loads(clitools.ok(self.cli("inspect", ref)))[0]

    def leases(self) -> list:
        return [dict(r) for r in self.rt.store.db.query("SELECT * FROM endpoints")]

    def cleanup(self) -> list[str]:
        """Removes every container and network from inside the namespace (never
        from the host's), then the usual checks; pyrt's name server must be gone."""
        problems = []
        ids = [r["id"] for r in self.rt.store.db.query("SELECT id FROM containers")]
        if ids:
            r = self.cli("rm", "-f", "-v", *ids)
            if r.returncode != 0:
                problems.append(f"rm -f: {r.stderr.decode()}")
        for row in self.rt.store.db.query("SELECT name FROM networks WHERE name != 'bridge'"):
            r = self.cli("network", "rm", row["name"])
            if r.returncode != 0:
                problems.append(f"network rm {row['name']}: {r.stderr.decode()}")
        if self.leases():
            problems.append(f"leases left: {self.leases()}")
        left = [r["name"] for r in self.rt.store.db.query("SELECT name FROM containers")]
        if left:  # never removed from here: unwiring would run in the host's namespace
            problems.append(f"containers left: {left}")
        else:
            problems += super().cleanup()
        end = time.monotonic() + 10
        while self._dns_pids() and time.monotonic() < end:
            time.sleep(0.02)
        if self._dns_pids():
            problems.append(f"pyrt's name server still runs: {self._dns_pids()}")
        return problems

    def _dns_pids(self):
        out = []
        for pid in self.ns.pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"pyrt/network/dns.py" in f.read():
                        out.append(pid)
            except OSError:
                pass
        return out


# -- user-mode networks (slirp4netns) -------------------------------------------------

SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    print(peer[0], flush=True)
    c.sendall(b"hello from " + sys.argv[1].encode() + b"\n")
    c.close()
"""


class Server:
    """SERVER run in a namespace (a NetNS) on ip:port; `peers()` the addresses it saw."""

    def __init__(self, ns, ip, port):
        self.proc = ns.popen(sys.executable, "-c", SERVER, ip, str(port), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        assert self.proc.stdout.readline() == b"listening\n", self.proc.stderr.read()

    def peers(self):
        self.proc.kill()
        out, _ = self.proc.communicate()
        return out.decode().split()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def tun_usable() -> bool:
    """/dev/net/tun open to every user (slirp4netns of an ordinary user needs it)."""
    try:
        mode = os.stat("/dev/net/tun").st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IROTH and mode & stat.S_IWOTH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def comm(pid) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
