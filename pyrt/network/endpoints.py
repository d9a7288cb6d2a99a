"""Wiring containers to networks: what pyrt.containers calls.

A container's networks are in its config: "NetworkMode" (none, host, or the
network it was created on) and "Networks" ({name: {"Aliases": [...],
"IPAMConfig": {"IPv4Address": ...}}}, docker's EndpointSettings, first one
first). They are wired when it starts and unwired when it ends:

- `wire(container)`: a new network namespace; for each network a lease (an
  address, table `endpoints`, holder = this process) recorded first, then the
  CNI plugins' ADD (eth0, eth1, ...); published ports on the first network. The
  container joins the namespace (its fd). Any failure undoes what was done.
- `unwire(container)`: the plugins' DEL (the namespace may be gone: the plugins
  cope) and the leases dropped. Called when a foreground run ends, when a detached
  container is found ended, and by remove.
- `reconcile(runtime)`: a lease whose container is not running and whose holder
  is gone (a pyrt process killed while starting it, a container that ended while
  nobody watched) is unwired. Run before every wiring and network change, so a
  crash never keeps an address or a firewall rule for long.
- `connect` / `disconnect`: change a container's networks; a running container
  is wired or unwired at once (in its own namespace)."""
from __future__ import annotations

import json
import os
import re
import time

from pyrt.errors import Conflict, InvalidArgument, NetworkError, NetworkNotFound

_ALIAS = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,252})?")


# -- at create -------------------------------------------------------------------------------

def plan(runtime, network_mode=None, network=None, networking_config=None, aliases=None, ipv4_address=None):
    """A new container's ("NetworkMode", "Networks") from create's arguments:
    network_mode (docker's: "bridge", "host", "none" or a network name; default
    pyrt.network.model.default_network()), or network (the SDK's name of the
    network to join), networking_config ({name: {"Aliases": [...], "IPAMConfig":
    {"IPv4Address": ...}}}), aliases and ipv4_address (--network-alias, --ip)."""
    from pyrt.network.names import DEFAULT, default_network
    if network and network_mode and network != network_mode:
        raise InvalidArgument("network and network_mode conflict: give one")
    mode = network_mode or network or default_network()
    if mode == "default":
        mode = DEFAULT
    if mode.startswith("container:"):
        raise InvalidArgument("network mode container:NAME is not supported")
    extra = dict(networking_config or {})
    if mode in ("none", "host", "slirp4netns"):
        if aliases or ipv4_address or extra:
            raise InvalidArgument(f"network aliases, addresses and endpoints need a network (not {mode})")
        return mode, {}
    net = runtime.networks.get(mode)
    ep = _endpoint(extra.pop(mode, None) or extra.pop(net.name, None) or {}, net)
    ep["Aliases"] = _check_aliases(list(ep.get("Aliases") or []) + list(aliases or []), net)
    if ipv4_address:
        ep["IPAMConfig"] = {"IPv4Address": ipv4_address}
    _check_address(ep, net)
    networks = {net.name: ep}
    for name, cfg in extra.items():
        other = runtime.networks.get(name)
        if not hasattr(other, "subnet"):
            raise InvalidArgument(f"a container on network {net.name} cannot also use network {name}")
        e = _endpoint(cfg or {}, other)
        e["Aliases"] = _check_aliases(e.get("Aliases") or [], other)
        _check_address(e, other)
        networks[other.name] = e
    return net.name, networks


def _endpoint(cfg, net) -> dict:
    if not isinstance(cfg, dict):
        cfg = {k: getattr(cfg, k) for k in ("Aliases", "IPAMConfig") if hasattr(cfg, k)}
    out = {"Aliases": list(cfg.get("Aliases") or cfg.get("aliases") or [])}
    ipam = cfg.get("IPAMConfig") or cfg.get("ipam_config") or {}
    addr = ipam.get("IPv4Address") or cfg.get("ipv4_address")
    if addr:
        out["IPAMConfig"] = {"IPv4Address": str(addr)}
    return out


def _check_aliases(aliases, net) -> list:
    if aliases and not net.dns:
        raise InvalidArgument(f"network-scoped aliases need a user-defined network (not {net.name})")
    for a in aliases:
        if not isinstance(a, str) or not _ALIAS.fullmatch(a):
            raise InvalidArgument(f"invalid network alias {a!r}: letters, digits, '_', '.' and '-'")
    return list(dict.fromkeys(aliases))


def _check_address(ep, net) -> None:
    import ipaddress
    addr = (ep.get("IPAMConfig") or {}).get("IPv4Address")
    if not addr:
        return
    if not net.dns:
        raise InvalidArgument(f"a chosen address (--ip) needs a user-defined network (not {net.name})")
    try:
        ip = ipaddress.IPv4Address(addr)
    except ValueError:
        raise InvalidArgument(f"invalid --ip {addr!r}: an IPv4 address") from None
    subnet = ipaddress.IPv4Network(net.subnet)
    if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address,
                                  ipaddress.IPv4Address(net.gateway)):
        raise InvalidArgument(f"address {ip} is not available in network {net.name} ({subnet}, "
                              f"gateway {net.gateway})")


def resolv_conf(runtime, networks: dict, dns=(), dns_search=()) -> str | None:
    """The /etc/resolv.conf of a container on `networks` (None: none or host, the
    model writes the host's). On a user-defined network pyrt's name server (its
    gateway address) answers, under the search domain "dns.pyrt" and the host's
    (or --dns-search); it sends other names to --dns servers, else the host's. On
    the default network: the host's file without loopback name servers (out of a
    container's reach; docker's public ones when none is left), or --dns."""
    if not networks:
        return None
    first = runtime.networks.get(next(iter(networks)))
    try:
        with open("/etc/resolv.conf") as f:
            host = f.read().splitlines()
    except OSError:
        host = []

    def key(ln):
        return ln.split()[:1]
    search = list(dns_search) or [d for ln in host if key(ln) == ["search"] for d in ln.split()[1:]]
    options = [ln for ln in host if key(ln) == ["options"]]
    if first.dns:
        from pyrt.network.dns import DOMAIN
        domains = [DOMAIN] + [d for d in search if d != DOMAIN]
        return f"search {' '.join(domains)}\nnameserver {first.gateway}\n" + "".join(o + "\n" for o in options)
    servers = list(dns) or [ln.split()[1] for ln in host if key(ln) == ["nameserver"] and len(ln.split()) > 1
                            and not _loopback(ln.split()[1])] or ["8.8.8.8", "8.8.4.4"]
    return ((f"search {' '.join(search)}\n" if search else "")
            + "".join(f"nameserver {ip}\n" for ip in servers) + "".join(o + "\n" for o in options))


def _loopback(addr: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def uses_networks(config: dict) -> bool:
    """Is the container wired to pyrt networks (not none, host or slirp4netns)?"""
    return config.get("NetworkMode", "none") not in ("none", "host", "slirp4netns")


# -- leases ------------------------------------------------------------------------------------

def start_time(pid: int) -> int:
    """A process's start time (clock ticks after boot), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return 0 if fields[0] == b"Z" else int(fields[19])


def _holder() -> str:
    return f"{os.getpid()}:{start_time(os.getpid())}"


def _holder_alive(holder: str) -> bool:
    pid, _, st = holder.partition(":")
    if not pid.isdigit() or not st.isdigit():
        return False
    return int(pid) > 0 and str(start_time(int(pid))) == st and st != "0"


def _nets_by_id(runtime) -> dict:
    nets = runtime.networks
    return {r["id"]: nets.from_row(r) for r in runtime.store.db.query("SELECT * FROM networks")}


def _attachment(net, row, netns=""):
    from pyrt.network.cni import Attachment
    info = json.loads(row["info"])
    return Attachment(net, row["container_id"], row["ifname"], row["ip"], info.get("Ports") or [], netns=netns)


def _lease(runtime, c, net, ep, ifname, ports) -> str:
    """Record the container's lease on net (an address allocated now); returns it."""
    from pyrt.network import ipam
    requested = (ep.get("IPAMConfig") or {}).get("IPv4Address")
    with runtime.store.db.transaction() as tx:
        row = tx.query_one("SELECT config FROM networks WHERE id=?", (net.id,))
        if row is None:
            raise NetworkNotFound(f"network {net.name} not found (removed meanwhile)")
        net.config = json.loads(row["config"])
        if tx.query_one("SELECT 1 FROM endpoints WHERE container_id=? AND network_id=?", (c.id, net.id)):
            raise Conflict(f"container {c.name} is already wired to network {net.name}")
        ip = ipam.allocate(tx, net, requested)
        import secrets
        info = {"Aliases": ep.get("Aliases") or [], "Ports": ports, "EndpointID": secrets.token_hex(32),
                "Name": c.name, "Dns": list(c.config.get("Dns") or [])}
        tx.execute("INSERT INTO endpoints (container_id, network_id, ifname, ip, holder, info, created) "
                   "VALUES (?,?,?,?,?,?,?)", (c.id, net.id, ifname, ip, _holder(), json.dumps(info), time.time()))
    return ip


def _drop(runtime, container_id, network_id) -> None:
    with runtime.store.db.transaction() as tx:
        tx.execute("DELETE FROM endpoints WHERE container_id=? AND network_id=?", (container_id, network_id))


def _activate(runtime, net) -> None:
    """Before wiring to net: its bridge missing means this namespace has not seen
    pyrt's networks yet (or lost them): set the firewall up."""
    import socket
    try:
        socket.if_nametoindex(net.bridge)
        return
    except OSError:
        pass
    from pyrt.network import firewall
    firewall.apply(runtime.store.root, list(_nets_by_id(runtime).values()))


def _wire_one(runtime, c, net, ep, ifname, netns_path, ports, pass_fds=()) -> dict:
    from pyrt.network import cni
    ip = _lease(runtime, c, net, ep, ifname, ports)
    try:
        _activate(runtime, net)
        att = cni.Attachment(net, c.id, ifname, ip, ports, netns=netns_path)
        cni.add(att, pass_fds=pass_fds)
    except BaseException:
        _drop(runtime, c.id, net.id)
        raise
    with runtime.store.db.transaction() as tx:
        row = tx.query_one("SELECT info FROM endpoints WHERE container_id=? AND network_id=?", (c.id, net.id))
        if row is not None:
            info = dict(json.loads(row["info"]), MacAddress=att.mac)
            tx.execute("UPDATE endpoints SET info=? WHERE container_id=? AND network_id=?",
                       (json.dumps(info), c.id, net.id))
    return {"ip": ip, "net": net}


def _unwire_rows(runtime, rows, netns="") -> NetworkError | None:
    """DEL every lease of rows, then drop them (also when a plugin failed: an
    address must not stay taken; the first error is returned)."""
    nets = _nets_by_id(runtime)
    first = None
    dns = False
    from pyrt.network import cni
    for row in rows:
        net = nets.get(row["network_id"])
        if net is None:
            continue
        dns = dns or net.dns
        att = _attachment(net, row, netns)
        # With the namespace gone and no published port there is nothing left for
        # pyrt's conflist to undo (the veth went with the namespace, static IPAM
        # holds nothing): DEL would only start two plugins for nothing.
        if netns or att.ports:
            try:
                cni.delete(att)
            except NetworkError as e:
                first = first or e
        _drop(runtime, row["container_id"], row["network_id"])
    if dns:
        from pyrt.network import dns as dns_
        dns_.notify(runtime.store.root)
    return first


# -- what containers call ----------------------------------------------------------------------

class Wiring:
    """A wired container's network namespace (fd), until its spawn has joined it."""

    def __init__(self, fd: int):
        self.fd = fd

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def wire(c) -> Wiring | None:
    """Wire container c to its networks before it starts (None for none and host).
    Close the returned Wiring once the container has started (it then holds the
    namespace); on a failed start call unwire(c)."""
    cfg = c.config
    if not uses_networks(cfg):
        return None
    runtime = c._c.runtime
    reconcile(runtime)
    nets = []
    for name, ep in (cfg.get("Networks") or {}).items():
        try:
            nets.append((runtime.networks.get(name), ep))
        except NetworkNotFound:
            raise NetworkNotFound(f"container {c.name}: network {name} not found") from None
    ports = cfg.get("Ports") or []
    check_ports(runtime, c, ports)
    from pyrt.network.netns import new_netns
    fd = new_netns()
    wired = []
    try:
        for i, (net, ep) in enumerate(nets):
            wired.append(_wire_one(runtime, c, net, ep, f"eth{i}", f"/proc/self/fd/{fd}",
                                   ports if i == 0 else [], pass_fds=(fd,)))
        if wired:
            _set_own_address(c, wired[0]["ip"])
        if any(w["net"].dns for w in wired):
            from pyrt.network import dns
            dns.ensure(runtime.store.root)
    except BaseException:
        os.close(fd)
        unwire(c)
        raise
    return Wiring(fd)


def unwire(c, raise_errors=False) -> None:
    """Undo the container's wiring (every lease it has)."""
    runtime = c._c.runtime
    rows = runtime.store.db.query("SELECT * FROM endpoints WHERE container_id=?", (c.id,))
    if rows:
        err = _unwire_rows(runtime, rows)
        if err is not None and raise_errors:
            raise err


def reconcile(runtime) -> None:
    """Unwire leases left behind: their container is not running and the process
    that made them is gone."""
    rows = runtime.store.db.query("SELECT * FROM endpoints")
    if not rows:
        return
    by_container: dict = {}
    for r in rows:
        by_container.setdefault(r["container_id"], []).append(r)
    for cid, leases in by_container.items():
        if any(_holder_alive(r["holder"]) for r in leases):
            continue  # being wired or run by a live pyrt process
        crow = runtime.store.db.query_one("SELECT state FROM containers WHERE id=?", (cid,))
        if crow is not None:
            state = json.loads(crow["state"])
            if state.get("Status") in ("running", "paused"):
                pid = state.get("Pid") or 0
                if pid > 0 and start_time(pid) == state.get("StartTime", -1):
                    continue
                try:  # it ended: recording that unwires it (or it was restarted)
                    runtime.containers.get(cid)
                except LookupError:
                    pass
                continue
        _unwire_rows(runtime, runtime.store.db.query("SELECT * FROM endpoints WHERE container_id=?", (cid,)))


def check_ports(runtime, c, ports) -> None:
    """Published ports must be free: not published by another container of the
    store (on the same address, or either on all), and not bound on the host."""
    import socket
    if not ports:
        return
    taken = {}
    for r in runtime.store.db.query("SELECT container_id, info FROM endpoints WHERE container_id != ?", (c.id,)):
        info = json.loads(r["info"])
        for p in info.get("Ports") or []:
            who = info.get("Name") or r["container_id"][:12]
            taken[(p["Protocol"], int(p["HostPort"]), p["HostIp"] or "0.0.0.0")] = who
    for p in ports:
        proto, port, ip = p["Protocol"], int(p["HostPort"]), p["HostIp"] or "0.0.0.0"
        for (tproto, tport, tip), who in taken.items():
            if tproto == proto and tport == port and (tip == ip or "0.0.0.0" in (tip, ip)):
                raise Conflict(f"port {ip}:{port}/{proto} is already published by container {who}")
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError as e:
                raise Conflict(f"cannot publish port {ip}:{port}/{proto}: {e.strerror.lower()}") from None


def _set_own_address(c, ip: str) -> None:
    """/etc/hosts: the container's host name on its address (docker's line)."""
    path = os.path.join(c.dir, "hosts")
    host = c.config.get("Hostname") or ""
    try:
        with open(path, "r+") as f:
            lines = f.read().splitlines()
            for i, ln in enumerate(lines):
                parts = ln.split()
                if len(parts) == 2 and parts[1] == host and not parts[0].startswith(("127.0.0.1", "::1")):
                    lines[i] = f"{ip}\t{host}"
                    break
            f.seek(0)
            f.write("\n".join(lines) + "\n")
            f.truncate()
    except OSError:
        pass


def connect(c, net, aliases=None, ipv4_address=None) -> None:
    """Add net to the container's networks; wire it now if it runs."""
    if not uses_networks(c.config):
        raise InvalidArgument(f"container {c.name} uses network {c.config.get('NetworkMode')}: it cannot be "
                              "connected to another one")
    runtime = c._c.runtime
    ep = {"Aliases": _check_aliases(list(aliases or []), net)}
    if ipv4_address:
        ep["IPAMConfig"] = {"IPv4Address": ipv4_address}
    _check_address(ep, net)
    reconcile(runtime)
    _update_networks(c, lambda nets: _add_network(c, nets, net.name, ep))
    c.reload()
    if c.status not in ("running", "paused"):
        return
    used = {r["ifname"] for r in runtime.store.db.query("SELECT ifname FROM endpoints WHERE container_id=?",
                                                         (c.id,))}
    ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
    try:
        _wire_one(runtime, c, net, ep, ifname, f"/proc/{c.state['Pid']}/ns/net", [])
        if net.dns:
            from pyrt.network import dns
            dns.ensure(runtime.store.root)
    except BaseException:
        _update_networks(c, lambda nets: nets.pop(net.name, None))
        raise


def _add_network(c, nets, name, ep):
    if name in nets:
        raise Conflict(f"container {c.name} is already connected to network {name}")
    nets[name] = ep


def disconnect(c, net, force=False) -> None:
    """Remove net from the container's networks; unwire it now if it runs."""
    if net.name not in (c.config.get("Networks") or {}):
        raise InvalidArgument(f"container {c.name} is not connected to network {net.name}")
    runtime = c._c.runtime
    c.reload()
    rows = runtime.store.db.query("SELECT * FROM endpoints WHERE container_id=? AND network_id=?", (c.id, net.id))
    if rows:
        pid = c.state.get("Pid") or 0
        err = _unwire_rows(runtime, rows, netns=f"/proc/{pid}/ns/net" if c.status in ("running", "paused")
                           and pid else "")
        if err is not None and not force:
            raise err
    _update_networks(c, lambda nets: nets.pop(net.name, None))


def _update_networks(c, change) -> None:
    db = c._c.store.db
    with db.transaction() as tx:
        row = tx.query_one("SELECT config FROM containers WHERE id=?", (c.id,))
        if row is None:
            from pyrt.errors import ContainerNotFound
            raise ContainerNotFound(f"no such container: {c.name}")
        cfg = json.loads(row["config"])
        nets = dict(cfg.get("Networks") or {})
        change(nets)
        cfg["Networks"] = nets
        tx.execute("UPDATE containers SET config=? WHERE id=?", (json.dumps(cfg), c.id))
    c.config = cfg


def network_removed(runtime, net) -> None:
    """After net's row is gone: its bridge and its firewall rules too."""
    import socket
    import subprocess
    from pyrt.network import firewall
    try:
        socket.if_nametoindex(net.bridge)
    except OSError:
        return  # never wired in this namespace
    subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)
    firewall.apply(runtime.store.root, list(_nets_by_id(runtime).values()))


# -- inspect ------------------------------------------------------------------------------------

def settings(c) -> dict:
    """docker's NetworkSettings.Networks (and the default network's top-level
    IPAddress, Gateway, MacAddress) of a container."""
    import ipaddress
    cfg = c.config
    if not uses_networks(cfg):
        mode = cfg.get("NetworkMode", "none")
        return {"Networks": {mode: _empty_endpoint()}, "IPAddress": "", "Gateway": "", "MacAddress": ""}
    store = c._c.store
    rows = {r["network_id"]: r for r in store.db.query("SELECT * FROM endpoints WHERE container_id=?", (c.id,))}
    out = {}
    top = {"IPAddress": "", "Gateway": "", "MacAddress": "", "IPPrefixLen": 0}
    for name, ep in (cfg.get("Networks") or {}).items():
        r = store.db.query_one("SELECT * FROM networks WHERE name=?", (name,))
        e = _empty_endpoint()
        e["Aliases"] = list(ep.get("Aliases") or [])
        e["IPAMConfig"] = ep.get("IPAMConfig")
        if r is not None:
            ncfg = json.loads(r["config"])
            e["NetworkID"] = r["id"]
            lease = rows.get(r["id"])
            if lease is not None:
                info = json.loads(lease["info"])
                e.update(IPAddress=lease["ip"], Gateway=ncfg["Gateway"],
                         IPPrefixLen=ipaddress.IPv4Network(ncfg["Subnet"]).prefixlen,
                         MacAddress=info.get("MacAddress", ""), EndpointID=info.get("EndpointID", ""))
                if name == "bridge":
                    top = {k: e[k] for k in top}
        out[name] = e
    return dict(top, Networks=out)


def _empty_endpoint() -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""}


def container_names(store, ids) -> dict:
    out = {}
    for cid in ids:
        r = store.db.query_one("SELECT name FROM containers WHERE id=?", (cid,))
        if r is not None:
            out[cid] = r["name"]
    return out
