"""Subnets and addresses of pyrt's networks, kept in the store.

A network's subnet is given (`--subnet`) or picked from pyrt's pool, skipping
subnets of the store's other networks and of the host's routes. A container's
address is allocated in the same write transaction that records its lease
(table `endpoints`), round robin after the network's last one (as docker and the
CNI host-local plugin do: an address just released is not handed out again at
once, so peers' ARP and conntrack entries for it have time to expire)."""
from __future__ import annotations

import ipaddress

from pyrt.errors import Conflict, InvalidArgument, NetworkError

DEFAULT_SUBNET = "10.87.0.0/16"      # the default network, "bridge"
POOL = [f"10.{b}.{c}.0/24" for b in range(86, 79, -1) for c in range(256)]  # user-defined networks


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    text = str(text).strip()
    try:
        net = ipaddress.IPv4Network(text if "/" in text else "-", strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text!r}: use an IPv4 CIDR such as 10.1.0.0/24") from None
    if ipaddress.IPv4Interface(text).ip != net.network_address:
        raise InvalidArgument(f"invalid subnet {text!r}: the address has host bits set (did you mean {net}?)")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text!r}: too small, at most /30 (a gateway and one container)")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
        raise InvalidArgument(f"invalid subnet {text!r}: not a unicast range")
    return net


def parse_gateway(text: str, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    try:
        gw = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise InvalidArgument(f"invalid gateway {text!r}: an IPv4 address") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"invalid gateway {gw}: not a host address of the subnet {subnet}")
    return gw


def host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations of this network namespace's routes (but the default)."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 8:
                    continue
                dst, mask = int(fields[1], 16), int(fields[7], 16)
                if mask == 0:
                    continue
                # little-endian hex of the addresses as the kernel stores them
                d = ipaddress.IPv4Address(int.from_bytes(dst.to_bytes(4, "little"), "big"))
                m = bin(int.from_bytes(mask.to_bytes(4, "little"), "big")).count("1")
                out.append(ipaddress.IPv4Network(f"{d}/{m}", strict=False))
    except OSError:
        pass
    return out


def check_overlap(subnet: ipaddress.IPv4Network, others: dict) -> None:
    """others: {network name: subnet}."""
    for name, other in others.items():
        if subnet.overlaps(other):
            raise Conflict(f"subnet {subnet} overlaps {other} of network {name}: choose another subnet")


def pick_subnet(others: dict) -> ipaddress.IPv4Network:
    """The first subnet of pyrt's pool clear of the store's networks and the host's routes."""
    taken = list(others.values()) + host_routes()
    for cand in POOL:
        net = ipaddress.IPv4Network(cand)
        if not any(net.overlaps(t) for t in taken):
            return net
    raise NetworkError("no free subnet left in pyrt's pool (10.80.0.0/13): give one with --subnet")


def allocate(tx, network, requested: str | None = None) -> str:
    """An address of `network` (a Network) not leased to anyone, within the write
    transaction `tx` (the caller records the lease in it); `requested` (--ip) must
    be free. Updates the network's round-robin cursor."""
    subnet = ipaddress.IPv4Network(network.subnet)
    gateway = ipaddress.IPv4Address(network.gateway)
    used = {r["ip"] for r in tx.query("SELECT ip FROM endpoints WHERE network_id=?", (network.id,))}
    if requested is not None:
        try:
            ip = ipaddress.IPv4Address(requested)
        except ValueError:
            raise InvalidArgument(f"invalid --ip {requested!r}: an IPv4 address") from None
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address, gateway):
            raise InvalidArgument(f"address {ip} is not available in network {network.name} ({subnet}, "
                                  f"gateway {gateway})")
        if str(ip) in used:
            raise Conflict(f"address {ip} is already in use in network {network.name}")
        return str(ip)
    first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
    size = last - first + 1
    cursor = network.config.get("LastIP")
    start = int(ipaddress.IPv4Address(cursor)) + 1 if cursor else first
    if not first <= start <= last:
        start = first
    if len(used) + 1 >= size:  # the gateway takes one
        raise NetworkError(f"no free address in network {network.name} ({subnet}): its {len(used)} "
                           f"addresses are all leased")
    for i in range(size):
        cand = first + (start - first + i) % size
        ip = ipaddress.IPv4Address(cand)
        if ip != gateway and str(ip) not in used:
            cfg = dict(network.config, LastIP=str(ip))
            tx.execute("UPDATE networks SET config=? WHERE id=?", (_dumps(cfg), network.id))
            network.config = cfg
            return str(ip)
    raise NetworkError(f"no free address in network {network.name} ({subnet})")


def _dumps(obj) -> str:
    import json
    return json.dumps(obj, sort_keys=True)
