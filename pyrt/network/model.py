"""`Runtime(root).networks`, with the docker SDK's names: create, get, list,
prune; a Network has id, name, attrs, containers, connect, disconnect, remove,
reload. Rows of the store's `networks` table; their kernel side (a bridge, the
firewall chains) is made when a container is first wired to them and removed with
them.

The pre-defined networks are docker's: "bridge" (the default network, made in the
store on first use; no names), "host" and "none" (no network of their own: a
container uses the host's, or has only its loopback)."""
from __future__ import annotations

import json
import os
import re
import time

from pyrt.errors import Conflict, InvalidArgument, NetworkError, NetworkNotFound
from pyrt.network.names import DEFAULT, DEFAULT_BRIDGE, PREDEFINED

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def _now_iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Network:
    def __init__(self, collection, row):
        self._c = collection
        self._load(row)

    def _load(self, row):
        self.id = row["id"]
        self.name = row["name"]
        self.created = row["created"]
        self.config = json.loads(row["config"])

    def __repr__(self):
        return f"<Network {self.short_id} {self.name}>"

    short_id = property(lambda self: self.id[:12])
    subnet = property(lambda self: self.config["Subnet"])
    gateway = property(lambda self: self.config["Gateway"])
    bridge = property(lambda self: self.config["Bridge"])
    internal = property(lambda self: bool(self.config.get("Internal")))
    dns = property(lambda self: bool(self.config.get("DNS")))
    labels = property(lambda self: dict(self.config.get("Labels") or {}))

    def reload(self):
        row = self._c.store.db.query_one("SELECT * FROM networks WHERE id=?", (self.id,))
        if row is None:
            raise NetworkNotFound(f"no such network: {self.name}")
        self._load(row)
        return self

    def _endpoints(self) -> list:
        return self._c.store.db.query("SELECT * FROM endpoints WHERE network_id=? ORDER BY created", (self.id,))

    @property
    def containers(self) -> list:
        """The containers wired to it now (running ones), as Container objects."""
        out = []
        for r in self._endpoints():
            try:
                out.append(self._c.runtime.containers.get(r["container_id"]))
            except LookupError:
                pass
        return out

    @property
    def attrs(self) -> dict:
        """What `docker network inspect` shows, in its shape."""
        from pyrt.network.endpoints import container_names
        import ipaddress
        prefix = ipaddress.IPv4Network(self.subnet).prefixlen
        eps = self._endpoints()
        names = container_names(self._c.store, [r["container_id"] for r in eps])
        containers = {}
        for r in eps:
            info = json.loads(r["info"])
            containers[r["container_id"]] = {
                "Name": names.get(r["container_id"], ""), "EndpointID": info.get("EndpointID", ""),
                "MacAddress": info.get("MacAddress", ""), "IPv4Address": f"{r['ip']}/{prefix}", "IPv6Address": ""}
        return {
            "Name": self.name, "Id": self.id, "Created": _now_iso(self.created), "Scope": "local",
            "Driver": "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {},
                     "Config": [{"Subnet": self.subnet, "Gateway": self.gateway}]},
            "Internal": self.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": {"com.docker.network.bridge.name": self.bridge, **(self.config.get("Options") or {})},
            "Labels": self.labels, "DNSEnabled": self.dns,
            "ConfigFile": os.path.join(self._c.store.root, "networks", f"{self.name}.conflist"),
        }

    def connect(self, container, aliases=None, ipv4_address=None, **_ignored):
        """Connect a container (object, name or id): now if it runs, else from its
        next start. aliases: more names it answers to on this network."""
        from pyrt.network import endpoints
        c = container if hasattr(container, "config") else self._c.runtime.containers.get(container)
        endpoints.connect(c, self, aliases=aliases, ipv4_address=ipv4_address)

    def disconnect(self, container, force=False):
        from pyrt.network import endpoints
        c = container if hasattr(container, "config") else self._c.runtime.containers.get(container)
        endpoints.disconnect(c, self, force=force)

    def remove(self):
        self._c._remove(self)


class _Predefined:
    """"host" and "none": listed and inspected as docker does, never wired."""

    def __init__(self, name):
        self.name = name
        self.id = __import__("hashlib").sha256(f"pyrt-network-{name}".encode()).hexdigest()
        self.created = 0.0

    short_id = property(lambda self: self.id[:12])
    labels = property(lambda self: {})
    internal = False

    def __repr__(self):
        return f"<Network {self.short_id} {self.name}>"

    def reload(self):
        return self

    @property
    def containers(self):
        return []

    @property
    def attrs(self):
        return {"Name": self.name, "Id": self.id, "Created": _now_iso(self.created), "Scope": "local",
                "Driver": "host" if self.name == "host" else "null", "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": {}, "Config": []}, "Internal": False,
                "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Containers": {}, "Options": {}, "Labels": {}}

    def connect(self, container, **_kw):
        raise InvalidArgument(f"container cannot be connected to network {self.name}: choose it at create "
                              f"(--network {self.name})")

    def disconnect(self, container, force=False):
        raise InvalidArgument(f"container cannot be disconnected from network {self.name}")

    def remove(self):
        raise Conflict(f"{self.name} is a pre-defined network and cannot be removed")


class NetworkCollection:
    FILTERS = ("name", "id", "label", "driver", "type", "dangling")

    def __init__(self, runtime):
        self.runtime = runtime
        self.store = runtime.store

    def from_row(self, row) -> Network:
        return Network(self, row)

    def _rows(self):
        return self.store.db.query("SELECT * FROM networks ORDER BY created")

    def _others(self, tx=None) -> dict:
        import ipaddress
        rows = (tx or self.store.db).query("SELECT name, config FROM networks")
        return {r["name"]: ipaddress.IPv4Network(json.loads(r["config"])["Subnet"]) for r in rows}

    def create(self, name, driver=None, options=None, ipam=None, check_duplicate=None, internal=False,
               labels=None, enable_ipv6=False, attachable=None, scope=None, ingress=None) -> Network:
        """A bridge network. ipam: the SDK's {"Config": [{"Subnet": "10.1.0.0/24",
        "Gateway": "10.1.0.1"}]} (default: a free /24 of pyrt's pool, the first
        address the gateway). internal: no way out (no default route, no NAT, the
        firewall drops what would leave). Containers on it find each other by name."""
        from pyrt.network import ipam as ipam_
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if name in PREDEFINED or name == "default":
            raise Conflict(f"network {name} is pre-defined: choose another name")
        if driver not in (None, "bridge"):
            raise InvalidArgument(f"unsupported network driver {driver!r}: pyrt has bridge networks")
        if enable_ipv6:
            raise InvalidArgument("IPv6 networks are not supported yet")
        if options:
            unknown = set(options) - {"com.docker.network.bridge.name"}
            if unknown:
                raise InvalidArgument(f"unsupported network option {sorted(unknown)[0]!r}")
        pools = (ipam or {}).get("Config") or (ipam or {}).get("config") or []
        if (ipam or {}).get("Driver", "default") not in ("default", None):
            raise InvalidArgument(f"unsupported IPAM driver {ipam.get('Driver')!r}: pyrt allocates addresses itself")
        if len(pools) > 1:
            raise InvalidArgument("one subnet per network (IPv4)")
        pool = dict(pools[0]) if pools else {}
        subnet_text = pool.get("Subnet") or pool.get("subnet")
        gw_text = pool.get("Gateway") or pool.get("gateway")
        subnet = ipam_.parse_subnet(subnet_text) if subnet_text else None
        if gw_text and subnet is None:
            raise InvalidArgument("a gateway needs a subnet (--subnet)")
        gateway = ipam_.parse_gateway(gw_text, subnet) if gw_text else None
        bridge = (options or {}).get("com.docker.network.bridge.name")
        if bridge is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}", bridge):
            raise InvalidArgument(f"invalid bridge name {bridge!r}: at most 15 of [a-zA-Z0-9_.-]")
        return self._insert(name, subnet, gateway, internal=bool(internal), labels=_labels(labels),
                            bridge=bridge, dns=True)

    def _insert(self, name, subnet, gateway, *, internal, labels, bridge, dns, default=False) -> Network:
        from pyrt.network import cni, ipam as ipam_
        nid = os.urandom(32).hex()  # secrets.token_hex(32): secrets is not imported for it (measured)
        with self.store.db.transaction() as tx:
            if tx.query_one("SELECT 1 FROM networks WHERE name=?", (name,)):
                raise Conflict(f"network with name {name} already exists")
            others = self._others(tx)
            if subnet is None:
                subnet = ipam_.pick_subnet(others)
            else:
                ipam_.check_overlap(subnet, others)
            if gateway is None:
                gateway = subnet.network_address + 1
            used = {json.loads(r["config"])["Bridge"] for r in tx.query("SELECT config FROM networks")}
            if bridge is None:
                bridge = DEFAULT_BRIDGE if default else _free_bridge(used)
            elif bridge in used:
                raise Conflict(f"bridge {bridge} is used by another network")
            config = {"Driver": "bridge", "Subnet": str(subnet), "Gateway": str(gateway), "Internal": internal,
                      "Labels": labels, "Bridge": bridge, "DNS": dns}
            tx.execute("INSERT INTO networks (id, name, created, config) VALUES (?,?,?,?)",
                       (nid, name, time.time(), json.dumps(config, sort_keys=True)))
        net = self.get(nid)
        cni.write_conflist(self.store.root, net)
        return net

    def default(self) -> Network:
        """The default network ("bridge"), made on first use."""
        from pyrt.network import ipam as ipam_
        try:
            return self._get_row(DEFAULT)
        except NetworkNotFound:
            pass
        import ipaddress
        try:
            return self._insert(DEFAULT, ipaddress.IPv4Network(ipam_.DEFAULT_SUBNET), None, internal=False,
                                labels={}, bridge=None, dns=False, default=True)
        except Conflict:  # made by another process meanwhile
            return self._get_row(DEFAULT)

    def _get_row(self, ref) -> Network:
        db = self.store.db
        row = db.query_one("SELECT * FROM networks WHERE name=? OR id=?", (ref, ref))
        if row is None and ref and all(ch in "0123456789abcdef" for ch in ref):
            rows = db.query("SELECT * FROM networks WHERE id LIKE ? LIMIT 2", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"network id prefix {ref!r} is ambiguous: use more characters")
            row = rows[0] if rows else None
        if row is None:
            raise NetworkNotFound(f"network {ref} not found")
        return Network(self, row)

    def get(self, network_id, *args, **kwargs):
        """By name, id or unambiguous id prefix ("bridge" is made on first use)."""
        if network_id in ("host", "none"):
            return _Predefined(network_id)
        if network_id in (DEFAULT, "default"):
            return self.default()
        return self._get_row(network_id)

    def list(self, names=None, ids=None, filters=None, greedy=False):
        """Every network, pre-defined ones included (docker's order: by name).
        filters: {"name": [...], "id": [...], "label": ["k" or "k=v"], "driver":
        "bridge", "type": "custom"|"builtin", "dangling": True} (containers-less)."""
        from pyrt.filters import wanted_filters
        from pyrt.network.endpoints import reconcile
        self.default()
        reconcile(self.runtime)
        wanted = wanted_filters(filters, self.FILTERS, "network")
        nets = [Network(self, r) for r in self._rows()] + [_Predefined("host"), _Predefined("none")]
        if names:
            nets = [n for n in nets if n.name in names]
        if ids:
            nets = [n for n in nets if any(n.id.startswith(i) for i in ids)]
        used = _used_networks(self.store) if "dangling" in wanted else set()
        out = []
        from pyrt.filters import all_labels_match
        for n in nets:
            checks = {
                "name": lambda v: v in n.name,
                "id": lambda v: n.id.startswith(v),
                "driver": lambda v: v == (n.attrs["Driver"]),
                "type": lambda v: v == ("builtin" if n.name in PREDEFINED else "custom"),
                "dangling": lambda v: str(v).lower() in ("1", "true") and n.name not in PREDEFINED
                and n.name not in used or str(v).lower() in ("0", "false") and (n.name in used or
                                                                               n.name in PREDEFINED),
            }
            if all(all_labels_match(n.labels, values) if k == "label" else any(checks[k](v) for v in values)
                   for k, values in wanted.items()):
                out.append(n)
        return sorted(out, key=lambda n: n.name)

    def prune(self, filters=None) -> dict:
        """Removes the user-defined networks no container uses: {"NetworksDeleted": [names]}."""
        wanted = {k: v if isinstance(v, (list, tuple)) else [v] for k, v in (filters or {}).items()}
        if set(wanted) - {"label"}:
            raise InvalidArgument("network prune: only label filters are supported")
        from pyrt.filters import all_labels_match
        used = _used_networks(self.store)
        out = []
        for r in self._rows():
            n = Network(self, r)
            if n.name in PREDEFINED or n.name in used:
                continue
            if not all(all_labels_match(n.labels, v) for v in wanted.values()):
                continue
            try:
                self._remove(n)
            except (Conflict, NetworkNotFound):
                continue
            out.append(n.name)
        return {"NetworksDeleted": out}

    def _remove(self, net: Network) -> None:
        from pyrt.network import cni, endpoints
        if net.name in PREDEFINED:
            raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
        endpoints.reconcile(self.runtime)
        users = _users(self.store, net)
        if users:
            raise Conflict(f"network {net.name} is in use by container{'s' if len(users) > 1 else ''} "
                           f"{', '.join(sorted(users))}: remove {'them' if len(users) > 1 else 'it'} or "
                           "disconnect first")
        with self.store.db.transaction() as tx:
            if tx.query_one("SELECT 1 FROM endpoints WHERE network_id=?", (net.id,)):
                raise Conflict(f"network {net.name} has active endpoints")
            if tx.execute("DELETE FROM networks WHERE id=?", (net.id,)).rowcount != 1:
                raise NetworkNotFound(f"network {net.name} not found")
        cni.remove_conflist(self.store.root, net.name)
        endpoints.network_removed(self.runtime, net)


def _free_bridge(used) -> str:
    import socket
    for i in range(1, 10000):
        name = f"pyrt{i}"
        if name in used:
            continue
        try:
            socket.if_nametoindex(name)  # an interface of someone else's
        except OSError:
            return name
    raise NetworkError("no free bridge name")


def _labels(labels) -> dict:
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    out = {}
    for item in labels or ():
        k, _, v = str(item).partition("=")
        if not k:
            raise InvalidArgument(f"invalid label {item!r}: use key=value")
        out[k] = v
    return out


def _container_networks(config: dict) -> list:
    return list((config.get("Networks") or {}).keys())


def _used_networks(store) -> set:
    out = set()
    for r in store.db.query("SELECT config FROM containers"):
        out.update(_container_networks(json.loads(r["config"])))
    return out


def _users(store, net) -> list:
    out = []
    for r in store.db.query("SELECT name, config FROM containers"):
        if net.name in _container_networks(json.loads(r["config"])):
            out.append(r["name"])
    return out
