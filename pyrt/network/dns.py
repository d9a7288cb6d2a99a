"""pyrt's name server for user-defined networks (docker's embedded DNS, podman's
aardvark-dns): one process per store, started when a container is first wired to
a user-defined network and ending once none is.

It listens (UDP and TCP, port 53) on the gateway address of each user-defined
network, which containers on it have as their only name server
(/etc/resolv.conf, search domain "dns.pyrt"). A query is answered only for a
container that holds a lease on the network it came in on (its source address),
from the store's leases: the container names, short ids and network aliases of
that network (a name before an alias: an alias cannot take a container's name).
Other names go to the container's --dns servers or the host's, except on
--internal networks (no way out, names included). Nothing is cached: the store
is read at each query (SQLite, read-only)."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import socket
import sqlite3
import struct
import sys
import time

DOMAIN = "dns.pyrt"
TTL = 10
STATE = "dns.json"   # {"pid", "addresses"}: written once listening (in <root>/networks)
LOCK = "dns.lock"    # held by the server for its life
LOG = "dns.log"
IDLE_CHECK = 5.0     # seconds between checks for leases left (it ends without any)
UPSTREAM_TIMEOUT = 2.0
MAX_PENDING = 256    # queries forwarded and not answered yet: more are dropped
MAX_TCP = 64         # TCP clients at once: more are closed at once

_NOERROR, _SERVFAIL, _NXDOMAIN, _REFUSED = 0, 2, 3, 5
_A, _PTR, _AAAA = 1, 12, 28


# -- the caller's side -------------------------------------------------------------------------

def _dir(root):
    return os.path.join(root, "networks")


def _read_state(root) -> dict | None:
    try:
        with open(os.path.join(_dir(root), STATE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _running(root) -> bool:
    """Is a server holding the store's lock?"""
    try:
        fd = os.open(os.path.join(_dir(root), LOCK), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _wanted(root) -> set:
    db = _connect(root)
    try:
        return {json.loads(r[0])["Gateway"] for r in db.execute("SELECT config FROM networks")
                if json.loads(r[0]).get("DNS")}
    finally:
        db.close()


def ensure(root: str, timeout: float = 15.0) -> None:
    """Make sure the store's server runs and listens on every user-defined
    network's gateway (start it, or tell it to look again)."""
    wanted = _wanted(root)
    if not wanted:
        return
    state = _read_state(root)
    if state and _running(root):
        if wanted <= set(state.get("addresses") or ()):
            return
        try:
            os.kill(state["pid"], signal.SIGHUP)
        except (ProcessLookupError, KeyError, TypeError):
            pass
    else:
        _start(root, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _read_state(root)
        if state and wanted <= set(state.get("addresses") or ()):
            return
        time.sleep(0.01)
    from pyrt.errors import NetworkError
    raise NetworkError(f"pyrt's name server did not start listening on {', '.join(sorted(wanted))} "
                       f"(see {os.path.join(_dir(root), LOG)})")


def notify(root: str) -> None:
    """Leases changed: the server looks again (and ends when none is left)."""
    state = _read_state(root)
    if state and _running(root):
        try:
            os.kill(state["pid"], signal.SIGHUP)
        except (ProcessLookupError, KeyError, TypeError):
            pass


def _start(root, timeout) -> None:
    import subprocess
    os.makedirs(_dir(root), mode=0o700, exist_ok=True)
    r, w = os.pipe()
    try:
        log = os.open(os.path.join(_dir(root), LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            # the file itself, not the package: the server needs only the standard library
            p = subprocess.Popen([sys.executable, "-P", "-I", os.path.abspath(__file__), root, str(w)], pass_fds=(w,),
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                                 start_new_session=True, close_fds=True)
        finally:
            os.close(log)
        os.close(w)
        w = -1
        p.wait()  # it forks at once: the server is not our child
        select.select([r], [], [], timeout)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# -- DNS messages -----------------------------------------------------------------------------

def parse_query(data: bytes):
    """(id, flags, qname (lower case, no final dot), qtype, question bytes) or None."""
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or (flags >> 11) & 0xF != 0 or qd != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(data):
            return None
        n = data[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 or i + 1 + n > len(data):
            return None
        labels.append(data[i + 1:i + 1 + n])
        i += 1 + n
    if i + 4 > len(data):
        return None
    qtype = struct.unpack("!H", data[i:i + 2])[0]
    try:
        name = b".".join(labels).decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    return qid, flags, name, qtype, data[12:i + 4]


def response(qid, flags, question, rcode, answers=()) -> bytes:
    """answers: [(type, rdata bytes)], all for the question's name."""
    out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode  # QR AA RD RA
    out = struct.pack("!HHHHHH", qid, out_flags, 1, len(answers), 0, 0) + question
    for rtype, rdata in answers:
        out += struct.pack("!HHHIH", 0xC00C, rtype, 1, TTL, len(rdata)) + rdata
    return out


def _encode_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


# -- the server -------------------------------------------------------------------------------

def _connect(root):
    return sqlite3.connect(f"file:{os.path.join(root, 'pyrt.db')}?mode=ro", uri=True, timeout=10,
                           isolation_level=None)


class Server:
    def __init__(self, root):
        self.root = root
        self.db = _connect(root)
        self.udp = {}      # gateway -> socket
        self.tcp = {}      # gateway -> listening socket
        self.nets = {}     # gateway -> (network id, internal)
        self.pending = {}  # upstream socket -> [client addr, listening socket, query, servers left, deadline]
        self.conns = {}    # tcp client socket -> [listening gateway, buffer, deadline]
        self.upstream = []

    # what to serve
    def reload(self):
        rows = self.db.execute("SELECT id, config FROM networks").fetchall()
        nets = {}
        for nid, cfg in rows:
            cfg = json.loads(cfg)
            if cfg.get("DNS"):
                nets[cfg["Gateway"]] = (nid, bool(cfg.get("Internal")))
        for gw in list(self.udp):
            if gw not in nets:
                self.udp.pop(gw).close()
                self.tcp.pop(gw).close()
        for gw in nets:
            if gw not in self.udp:
                try:
                    self.udp[gw], self.tcp[gw] = _listen(gw)
                except OSError as e:
                    print(f"pyrt-dns: cannot listen on {gw}:53: {e.strerror}", file=sys.stderr, flush=True)
                    continue
        self.nets = {gw: v for gw, v in nets.items() if gw in self.udp}
        self.upstream = _host_servers()

    def leases_left(self) -> bool:
        ids = {nid for nid, _ in self.nets.values()}
        if not ids:
            return False
        rows = self.db.execute("SELECT network_id FROM endpoints").fetchall()
        return any(r[0] in ids for r in rows)

    def write_state(self):
        path = os.path.join(_dir(self.root), STATE)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "addresses": sorted(self.nets)}, f)
        os.rename(tmp, path)

    def remove_state(self):
        try:
            os.unlink(os.path.join(_dir(self.root), STATE))
        except FileNotFoundError:
            pass

    # answers
    def answer(self, gw, src, data):
        """The reply to a query (bytes), None to forward it, or () to drop it."""
        q = parse_query(data)
        if q is None:
            return ()
        qid, flags, name, qtype, question = q
        nid, internal = self.nets[gw]
        me = self.db.execute("SELECT container_id, info FROM endpoints WHERE network_id=? AND ip=?",
                             (nid, src)).fetchone()
        if me is None:  # only the network's own containers may ask
            return response(qid, flags, question, _REFUSED)
        # its networks: the one the query came in on first, then its others with names
        dns_ids = {n for n, _ in self.nets.values()}
        mine = [nid] + [r[0] for r in self.db.execute("SELECT network_id FROM endpoints WHERE container_id=?",
                                                       (me[0],)) if r[0] != nid and r[0] in dns_ids]
        local = name[:-len(DOMAIN) - 1] if name.endswith("." + DOMAIN) else None
        key = local if local is not None else name
        found, rows = [], []
        for n in mine:
            rows = self.db.execute(
                "SELECT e.container_id, e.ip, e.info, c.name FROM endpoints e JOIN containers c "
                "ON c.id = e.container_id WHERE e.network_id=?", (n,)).fetchall()
            # a container's name (or id) first: an alias cannot take it
            found = [r for r in rows if r[3].lower() == key or r[0][:12] == key or r[0] == key] or \
                [r for r in rows if key in (a.lower() for a in json.loads(r[2]).get("Aliases") or ())]
            if found:
                break
        if found:
            if qtype == _A:
                return response(qid, flags, question, _NOERROR,
                                [(_A, socket.inet_aton(r[1])) for r in found])
            return response(qid, flags, question, _NOERROR)  # the name exists: no data of that type
        if qtype == _PTR and name.endswith(".in-addr.arpa"):
            ip = ".".join(reversed(name[:-len(".in-addr.arpa")].split(".")))
            hit = self.db.execute(
                "SELECT c.name FROM endpoints e JOIN containers c ON c.id = e.container_id "
                f"WHERE e.ip=? AND e.network_id IN ({','.join('?' * len(mine))})", (ip, *mine)).fetchone()
            if hit is not None:
                return response(qid, flags, question, _NOERROR, [(_PTR, _encode_name(f"{hit[0]}.{DOMAIN}"))])
        if local is not None or "." not in key and key:
            return response(qid, flags, question, _NXDOMAIN)
        if internal:
            return response(qid, flags, question, _REFUSED)
        self._forward_to = json.loads(me[1]).get("Dns") or self.upstream
        return None

    def forward(self, client, lsock, data):
        servers = list(self._forward_to)
        if not servers:
            q = parse_query(data)
            if q:
                lsock.sendto(response(q[0], q[1], q[4], _SERVFAIL), client)
            return
        self._send_upstream(client, lsock, data, servers)

    def _send_upstream(self, client, lsock, data, servers):
        if len(self.pending) >= MAX_PENDING:
            return  # the client asks again
        while servers:
            server = servers.pop(0)
            try:
                s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.sendto(data, (server, 53))
            except OSError:
                continue
            self.pending[s] = [client, lsock, data, servers, time.monotonic() + UPSTREAM_TIMEOUT]
            return
        q = parse_query(data)
        if q and lsock is not None:
            _reply(lsock, client, response(q[0], q[1], q[4], _SERVFAIL))

    def run(self, ready_fd: int):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        hup = [False]

        def on_hup(*_):
            hup[0] = True
        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.reload()
        self.write_state()
        if ready_fd >= 0:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        next_check = time.monotonic() + IDLE_CHECK
        while True:
            now = time.monotonic()
            timeout = next_check - now
            for p in self.pending.values():
                timeout = min(timeout, p[4] - now)
            readable = [wake_r] + list(self.udp.values()) + list(self.tcp.values()) + list(self.pending) \
                + list(self.conns)
            poller = select.poll()  # not select(): no limit on fd numbers
            by_fd = {}
            for s in readable:
                fd = s if isinstance(s, int) else s.fileno()
                by_fd[fd] = s
                poller.register(fd, select.POLLIN)
            try:
                ready = [by_fd[fd] for fd, _ in poller.poll(max(0.0, timeout) * 1000)]
            except InterruptedError:
                ready = []
            for s in ready:
                if s == wake_r:
                    os.read(wake_r, 512)
                elif s in self.pending:
                    self._upstream_reply(s)
                elif s in self.conns:
                    self._tcp_read(s)
                else:
                    self._serve(s)
            now = time.monotonic()
            for s, p in list(self.pending.items()):
                if p[4] <= now:
                    del self.pending[s]
                    s.close()
                    self._send_upstream(p[0], p[1], p[2], p[3])
            for s, c in list(self.conns.items()):
                if c[2] <= now:
                    del self.conns[s]
                    s.close()
            if hup[0] or now >= next_check:
                hup[0] = False
                next_check = now + IDLE_CHECK
                self.reload()
                self.write_state()
                if not self.leases_left():
                    self.remove_state()  # a starter that reads no state starts a server
                    if not self.leases_left():
                        return
                    self.write_state()

    def _serve(self, s):
        gw = next((g for g, u in self.udp.items() if u is s), None)
        if gw is None:  # a TCP listener
            gw = next(g for g, t in self.tcp.items() if t is s)
            try:
                conn, _ = s.accept()
            except OSError:
                return
            if len(self.conns) >= MAX_TCP:
                conn.close()
                return
            conn.setblocking(False)
            self.conns[conn] = [gw, b"", time.monotonic() + 10]
            return
        try:
            data, client = s.recvfrom(4096)
        except OSError:
            return
        out = self.answer(gw, client[0], data)
        if out is None:
            self.forward(client, s, data)
        elif out:
            _reply(s, client, out)

    def _tcp_read(self, conn):
        gw, buf, _ = self.conns[conn]
        try:
            chunk = conn.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            del self.conns[conn]
            conn.close()
            return
        buf += chunk
        self.conns[conn][1] = buf
        if len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
            return
        n = struct.unpack("!H", buf[:2])[0]
        data = buf[2:2 + n]
        del self.conns[conn]
        try:
            src = conn.getpeername()[0]
            out = self.answer(gw, src, data)
            if out is None:  # forwarded over UDP, answered over this connection
                servers = list(self._forward_to)
                reply = _ask_upstream_blocking(data, servers)
                q = parse_query(data)
                out = reply or (response(q[0], q[1], q[4], _SERVFAIL) if q else b"")
            if out:
                conn.setblocking(True)
                conn.settimeout(2)
                conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            pass
        finally:
            conn.close()

    def _upstream_reply(self, s):
        client, lsock, data = self.pending.pop(s)[:3]
        try:
            reply = s.recv(65535)
        except OSError:
            reply = b""
        finally:
            s.close()
        if len(reply) >= 2 and reply[:2] == data[:2]:
            _reply(lsock, client, reply)


def _reply(sock, client, data):
    try:
        sock.sendto(data, client)
    except OSError:
        pass


def _ask_upstream_blocking(data, servers) -> bytes | None:
    for server in servers:
        try:
            with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(UPSTREAM_TIMEOUT)
                s.sendto(data, (server, 53))
                reply = s.recv(65535)
                if reply[:2] == data[:2]:
                    return reply
        except OSError:
            continue
    return None


def _listen(gw):
    IP_FREEBIND = 15  # the bridge may get its address only later
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for s in (u, t):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            s.bind((gw, 53))
            s.setblocking(False)
        t.listen(64)
    except OSError:
        u.close()
        t.close()
        raise
    return u, t


def _host_servers() -> list:
    out = []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append(parts[1].split("%")[0])
    except OSError:
        pass
    return out


def main(argv) -> int:
    root, ready = argv[0], int(argv[1]) if len(argv) > 1 else -1
    if os.fork() > 0:  # the starter waits for this one: the server goes on, nobody's child
        os._exit(0)
    lock = os.open(os.path.join(_dir(root), LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + 2.0
    while True:  # another server may be ending: wait for it a little
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return 0
            time.sleep(0.02)
    server = Server(root)
    try:
        server.run(ready)
    finally:
        if _read_state(root) and _read_state(root).get("pid") == os.getpid():
            server.remove_state()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as e:
        if e.errno != errno.EPIPE:
            print(f"pyrt-dns: {e}", file=sys.stderr)
        sys.exit(1)
