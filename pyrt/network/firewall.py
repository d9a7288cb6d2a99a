"""The rules a network needs once (not per container), in chains of pyrt's own,
jumped to first from the built-in ones, in the network namespace pyrt runs in:

- nat PYRT-POSTROUTING: outbound NAT, `-s SUBNET ! -o BRIDGE -j MASQUERADE` for
  each network but --internal ones (docker's rule);
- filter PYRT-FORWARD: what is forwarded to and from the bridges. Traffic on one
  bridge passes (with br_netfilter it is seen here too); replies and published
  ports (DNAT) reach containers; containers reach out; nothing else: no traffic
  between two networks, no unsolicited traffic from outside to a container's
  address, nothing in or out of an --internal network;
- filter PYRT-INPUT: a container on an --internal network reaches only the name
  server on its gateway address, nothing else of the host.

Published ports are the CNI portmap plugin's (per container). The chains are
rewritten whole (iptables-restore, one transaction per table) whenever a network
is wired for the first time in this namespace or removed."""
from __future__ import annotations

import fcntl
import os
import subprocess

from pyrt.errors import NetworkError

CHAINS = {"filter": (("FORWARD", "PYRT-FORWARD"), ("INPUT", "PYRT-INPUT")),
          "nat": (("POSTROUTING", "PYRT-POSTROUTING"),)}


def rules(nets) -> str:
    """iptables-restore input (with --noflush: only pyrt's chains are rewritten)."""
    nets = sorted(nets, key=lambda n: n.bridge)
    f = ["*filter", ":PYRT-FORWARD - [0:0]", ":PYRT-INPUT - [0:0]"]
    for n in nets:
        br = n.bridge
        f.append(f"-A PYRT-FORWARD -i {br} -o {br} -j ACCEPT")
        if n.dns:  # pyrt's name server, on the gateway address
            f += [f"-A PYRT-INPUT -i {br} -d {n.gateway} -p udp --dport 53 -j ACCEPT",
                  f"-A PYRT-INPUT -i {br} -d {n.gateway} -p tcp --dport 53 -j ACCEPT"]
        if n.internal:
            f += [f"-A PYRT-FORWARD -i {br} -j DROP", f"-A PYRT-FORWARD -o {br} -j DROP",
                  f"-A PYRT-INPUT -i {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                  f"-A PYRT-INPUT -i {br} -j DROP"]
    for n in nets:
        if not n.internal:
            f.append(f"-A PYRT-FORWARD -o {n.bridge} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT")
    bridges = [n.bridge for n in nets]
    for a in bridges:  # between two networks: nothing (but replies and published ports above)
        for b in bridges:
            if a != b:
                f.append(f"-A PYRT-FORWARD -i {a} -o {b} -j DROP")
    for n in nets:
        if not n.internal:
            f += [f"-A PYRT-FORWARD -i {n.bridge} -j ACCEPT", f"-A PYRT-FORWARD -o {n.bridge} -j DROP"]
    f.append("COMMIT")
    nat = ["*nat", ":PYRT-POSTROUTING - [0:0]"]
    for n in nets:
        if not n.internal:
            nat.append(f"-A PYRT-POSTROUTING -s {n.subnet} ! -o {n.bridge} -j MASQUERADE")
    nat.append("COMMIT")
    return "\n".join(f + nat) + "\n"


def _iptables(*args, input=None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, input=input, capture_output=True)
    except FileNotFoundError:
        raise NetworkError(f"{args[0]} not found: pyrt's networks need iptables "
                           "(Debian: apt-get install iptables)") from None


def apply(root: str, nets) -> None:
    """Rewrite pyrt's chains for `nets` (every network of the store) and make sure
    the built-in chains jump to them first. Serialized per store (a lock file)."""
    d = os.path.join(root, "networks")
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(d, "firewall.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = _iptables("iptables-restore", "-w", "--noflush", input=rules(nets).encode())
        if r.returncode != 0:
            raise NetworkError(f"setting up the firewall of pyrt's networks: iptables-restore: "
                               f"{_text(r)}")
        for table, pairs in CHAINS.items():
            for builtin, chain in pairs:
                if _iptables("iptables", "-w", "-t", table, "-C", builtin, "-j", chain).returncode != 0:
                    r = _iptables("iptables", "-w", "-t", table, "-I", builtin, "1", "-j", chain)
                    if r.returncode != 0:
                        raise NetworkError(f"setting up the firewall of pyrt's networks: iptables: {_text(r)}")
    finally:
        os.close(fd)


def _text(r) -> str:
    return " ".join((r.stderr or r.stdout).decode(errors="replace").split()) or f"exit status {r.returncode}"
