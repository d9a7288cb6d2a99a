"""pyrt's networks (pyrt/network): bridges wired by the CNI plugins, addresses
kept in the store, names, outbound NAT, published TCP and UDP ports through the
kernel, isolation, and cleanup after every kind of end.

Everything runs in network namespaces the tests make (the `netns` and `netstore`
fixtures, tests/nettools.py): pyrt's bridges, veths, firewall rules, NAT and name
server live there, and traffic stays on their loopback and between them. The
"outside" is a second namespace (nettools.NetNS.upstream) behind a veth."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import textwrap

import pytest

import nettools
from clitools import error, ok
from helpers import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
TCP_SERVER = "nc -ll -p {port} -e echo {reply}"  # busybox's persistent server: one line to each client


@pytest.fixture(scope="module")
def probe(shm_base):
    """A directory with udpprobe (tests/probes/udpprobe.c: busybox has no UDP
    client or server), bound into containers at /probe."""
    d = os.path.join(shm_base, "net-probes")
    out = os.path.join(d, "udpprobe")
    if not os.path.exists(out):
        os.makedirs(d, exist_ok=True)
        r = subprocess.run(["gcc", "-static", "-O2", "-o", out + ".tmp", os.path.join(HERE, "probes", "udpprobe.c")],
                           capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot build the UDP probe: {r.stderr.decode()[:200]}")
        os.rename(out + ".tmp", out)
    return d


@pytest.fixture(autouse=True)
def _busybox(rootfs_kind):
    if rootfs_kind != "busybox":
        pytest.skip("needs busybox's nc, ip and nslookup")


def inspect(s, ref) -> dict:
    return json.loads(ok(s.cli("inspect", ref)))[0]


def address(s, ref, network) -> str:
    return inspect(s, ref)["NetworkSettings"]["Networks"][network]["IPAddress"]


def serve_tcp(s, name, network, port=80, reply=None, extra=()):
    ok(s.cli("run", "-d", "--name", name, "--network", network, *extra, "base:1", "sh", "-c",
             TCP_SERVER.format(reply=reply or name, port=port)))
    listening(s, name, port)


def listening(s, name, port):
    wait_for(lambda: f":{port} ".encode() in s.cli("exec", name, "netstat", "-ltn").stdout,
             what=f"{name} listening on {port}")


def run_in(s, network, script, *extra) -> str:
    return ok(s.cli("run", "--rm", "--network", network, *extra, "base:1", "sh", "-c", script))


def udp_ready(s, name):
    wait_for(lambda: b"ready" in s.cli("logs", name).stdout, what=f"{name}'s UDP server")


def veths(ns) -> list:
    return [n for n in ns.links() if n.startswith("veth")]


# -- talking ----------------------------------------------------------------------------------------

def test_two_containers_talk_tcp_and_udp_by_address_name_and_alias(netstore, probe):
    s = netstore
    net_id = ok(s.cli("network", "create", "app")).strip()
    assert len(net_id) == 64
    ok(s.cli("run", "-d", "--name", "srv", "--network", "app", "--network-alias", "db", "-v", f"{probe}:/probe:ro",
             "base:1", "sh", "-c",
             TCP_SERVER.format(reply="tcp-hello", port=80) + " & exec /probe/udpprobe serve 5000"))
    udp_ready(s, "srv")
    listening(s, "srv", 80)
    ep = inspect(s, "srv")["NetworkSettings"]["Networks"]["app"]
    subnet = ipaddress.IPv4Network(json.loads(ok(s.cli("network", "inspect", "app")))[0]["IPAM"]["Config"][0]["Subnet"])
    ip = ep["IPAddress"]
    assert ipaddress.IPv4Address(ip) in subnet and ep["Gateway"] == str(subnet.network_address + 1)
    assert ep["MacAddress"] == "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    assert ep["Aliases"] == ["db"] and ep["NetworkID"] == net_id and ep["IPPrefixLen"] == subnet.prefixlen
    out = run_in(s, "app", f"for h in srv db {ip} srv.dns.pyrt; do nc $h 80 </dev/null; "
                 "/probe/udpprobe send $h 5000 x-$h; done", "-v", f"{probe}:/probe:ro")
    assert out.split() == ["tcp-hello", "echo:x-srv", "tcp-hello", "echo:x-db", "tcp-hello", f"echo:x-{ip}",
                           "tcp-hello", "echo:x-srv.dns.pyrt"]
    members = json.loads(ok(s.cli("network", "inspect", "app")))[0]["Containers"]
    assert [m["Name"] for m in members.values()] == ["srv"]
    assert list(members.values())[0]["IPv4Address"] == f"{ip}/{subnet.prefixlen}"
    # the resolver sees its name, its short id and its alias (getaddrinfo, /etc/resolv.conf)
    cid = inspect(s, "srv")["Id"]
    out = run_in(s, "app", f"/probe/udpprobe resolve {cid[:12]}; cat /etc/resolv.conf; ip route",
                 "-v", f"{probe}:/probe:ro")
    assert out.splitlines()[0] == ip
    assert "search dns.pyrt" in out and f"nameserver {subnet.network_address + 1}" in out
    assert f"default via {subnet.network_address + 1} dev eth0" in out


def test_default_bridge_has_addresses_and_no_names(netstore):
    s = netstore
    out = run_in(s, "bridge", "ip -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf")
    assert "inet 10.87." in out and "default via 10.87.0.1 dev eth0" in out
    assert "nameserver 127." not in out  # the host's loopback resolver is out of a container's reach
    ok(s.cli("run", "-d", "--name", "a", "base:1", "sh", "-c", TCP_SERVER.format(reply="by-ip", port=80)))
    listening(s, "a", 80)
    a = inspect(s, "a")
    assert a["HostConfig"]["NetworkMode"] == "bridge"
    ip = a["NetworkSettings"]["IPAddress"]
    assert ip == a["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] and ip.startswith("10.87.")
    assert f"{ip}\t{a['Config']['Hostname']}" in ok(s.cli("exec", "a", "cat", "/etc/hosts"))
    assert run_in(s, "bridge", f"nc {ip} 80 </dev/null") == "by-ip\n"
    r = s.cli("run", "--rm", "base:1", "sh", "-c", "nc -w 2 a 80 </dev/null")  # docker's default bridge: no names
    assert r.returncode != 0
    error(s.cli("run", "--network-alias", "x", "base:1", "true"), status=125, match="user-defined network")
    error(s.cli("run", "--ip", "10.87.0.99", "base:1", "true"), status=125, match="user-defined network")


def test_outbound_nat_and_no_way_out_of_an_internal_network(netstore, netns):
    s = netstore
    up = netns.upstream()
    server = up.popen(__import__("sys").executable, "-c", textwrap.dedent("""
        import socket, sys
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 8080)); s.listen(8); print("ready", flush=True)
        while True:
            c, peer = s.accept(); c.sendall(f"peer={peer[0]}\\n".encode()); c.close()
        """), stdout=subprocess.PIPE)
    host_service = netns.popen(__import__("sys").executable, "-c", textwrap.dedent("""
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 9999)); s.listen(8); print("ready", flush=True)
        while True:
            c, peer = s.accept(); c.sendall(b"host-service\\n"); c.close()
        """), stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline() == b"ready\n" and host_service.stdout.readline() == b"ready\n"
        # out through the host's default route, NATed to its address there
        assert run_in(s, "bridge", f"nc {nettools.UPSTREAM_IP} 8080 </dev/null") == f"peer={nettools.HOST_UP_IP}\n"
        ok(s.cli("network", "create", "--subnet", "10.61.0.0/24", "open"))
        assert run_in(s, "open", f"nc {nettools.UPSTREAM_IP} 8080 </dev/null") == f"peer={nettools.HOST_UP_IP}\n"
        # the host's services: reachable from a network as in docker
        assert run_in(s, "open", "nc 10.61.0.1 9999 </dev/null") == "host-service\n"
        # --internal: no route out, nothing forwarded, nothing of the host, no names from outside
        ok(s.cli("network", "create", "--internal", "--subnet", "10.62.0.0/24", "secret"))
        assert json.loads(ok(s.cli("network", "inspect", "secret")))[0]["Internal"] is True
        serve_tcp(s, "vault", "secret")
        script = (f"ip route; nc -w 2 {nettools.UPSTREAM_IP} 8080 </dev/null && echo REACHED-UPSTREAM; "
                  f"nc -w 2 {nettools.HOST_UP_IP} 9999 </dev/null && echo REACHED-HOST; "
                  "nc -w 2 10.62.0.1 9999 </dev/null && echo REACHED-GATEWAY; "
                  "ip route add default via 10.62.0.1 2>/dev/null && echo ROUTE-ADDED; "
                  "nslookup example.com >/dev/null 2>&1 && echo RESOLVED-OUTSIDE; nc vault 80 </dev/null")
        out = run_in(s, "secret", script)
        assert "default" not in out and "REACHED" not in out and "ROUTE-ADDED" not in out
        assert "RESOLVED-OUTSIDE" not in out and out.endswith("vault\n")
    finally:
        for p in (server, host_service):
            p.kill()
            p.wait()
            p.stdout.close()


def test_networks_are_isolated_from_each_other(netstore):
    s = netstore
    ok(s.cli("network", "create", "left"))
    ok(s.cli("network", "create", "right"))
    serve_tcp(s, "l", "left")
    serve_tcp(s, "r", "right")
    serve_tcp(s, "d", "bridge")
    ips = {name: address(s, name, net) for name, net in (("l", "left"), ("r", "right"), ("d", "bridge"))}
    for net, peers in (("left", "rd"), ("right", "ld"), ("bridge", "lr")):
        tries = [f"nc -w 1 {ips[p]} 80 </dev/null && echo REACHED-{p}" for p in peers]
        if net != "bridge":  # and no name of another network
            tries += [f"nslookup {p} >/dev/null 2>&1 && echo RESOLVED-{p}" for p in peers]
        assert run_in(s, net, "".join(f"({t}) & " for t in tries) + "wait") == "", net
    assert run_in(s, "left", "nc l 80 </dev/null") == "l\n"


# -- published ports ------------------------------------------------------------------------------

def test_published_tcp_and_udp_ports_through_the_kernel(netstore, netns, probe):
    s = netstore
    ok(s.cli("run", "-d", "--name", "web", "-p", "8080:80", "-p", "5353:5000/udp", "-v", f"{probe}:/probe:ro",
             "base:1", "sh", "-c", TCP_SERVER.format(reply="web", port=80) + " & exec /probe/udpprobe serve 5000"))
    udp_ready(s, "web")
    listening(s, "web", 80)
    assert netns.check("busybox", "nc", "127.0.0.1", "8080", input=b"") == "web\n"
    assert netns.check(os.path.join(probe, "udpprobe"), "send", "127.0.0.1", "5353", "dgram") == "echo:dgram\n"
    assert ok(s.cli("port", "web")).splitlines() == ["80/tcp -> 0.0.0.0:8080", "5000/udp -> 0.0.0.0:5353"]
    # no monitor forwards them: nothing listens on the host's ports
    assert ":8080" not in netns.check("busybox", "netstat", "-ltn")
    # taken while it runs: by another container, or by a host process
    err = error(s.cli("run", "-d", "-p", "8080:80", "base:1", "true"), status=125, match="already published")
    assert "web" in err
    holder = netns.popen(__import__("sys").executable, "-c", "import socket,sys; s=socket.socket(); "
                         "s.bind(('127.0.0.1', 9090)); s.listen(); print('ready', flush=True); sys.stdin.read()",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"ready\n"
        error(s.cli("run", "-d", "-p", "127.0.0.1:9090:80", "base:1", "true"), status=125, match="in use")
    finally:
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()
    assert [r["name"] for r in s.db_rows()] == ["web"]  # the refused ones left nothing
    # a foreground container publishes too, on a user-defined network
    ok(s.cli("network", "create", "front"))
    fg = s.popen("run", "--rm", "--network", "front", "-p", "8081:80", "base:1", "sh", "-c", "echo fg | nc -l -p 80",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def answer():
            assert fg.poll() is None, fg.stderr.read()
            return netns.run("busybox", "nc", "127.0.0.1", "8081", input=b"").stdout
        assert wait_for(answer, what="the fg port") == b"fg\n"
        assert fg.wait(30) == 0
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()
        fg.stdout.close()
        fg.stderr.close()
    # rm -f of the running one: its address, interface and port rules go
    wid = inspect(s, "web")["Id"]
    ok(s.cli("rm", "-f", "web"))
    assert s.leases() == [] and veths(netns) == []
    rules = netns.iptables()
    assert wid not in rules and "8080" not in rules
    r = netns.run("busybox", "nc", "-w", "2", "127.0.0.1", "8080", input=b"")
    assert r.stdout == b""


# -- addresses --------------------------------------------------------------------------------------

def test_addresses_run_out_with_a_clear_error_and_come_back(netstore):
    s = netstore
    ok(s.cli("network", "create", "--subnet", "10.60.0.0/30", "tiny"))
    ok(s.cli("run", "-d", "--name", "only", "--network", "tiny", "base:1", "sleep", "600"))
    assert address(s, "only", "tiny") == "10.60.0.2"
    error(s.cli("run", "-d", "--network", "tiny", "base:1", "true"), status=125,
          match=r"no free address in network tiny \(10.60.0.0/30\)")
    error(s.cli("run", "--rm", "--network", "tiny", "base:1", "true"), status=125, match="no free address")
    assert [r["name"] for r in s.db_rows()] == ["only"] and len(s.leases()) == 1
    ok(s.cli("rm", "-f", "only"))
    assert run_in(s, "tiny", "ip -4 addr show eth0 | grep -o 'inet [0-9.]*'") == "inet 10.60.0.2\n"
    # a chosen address, and one taken
    ok(s.cli("network", "create", "--subnet", "10.63.0.0/24", "--gateway", "10.63.0.254", "pick"))
    ok(s.cli("run", "-d", "--name", "fixed", "--network", "pick", "--ip", "10.63.0.77", "base:1", "sleep", "600"))
    assert inspect(s, "fixed")["NetworkSettings"]["Networks"]["pick"]["Gateway"] == "10.63.0.254"
    assert "default via 10.63.0.254" in run_in(s, "pick", "ip route")
    error(s.cli("run", "-d", "--network", "pick", "--ip", "10.63.0.77", "base:1", "true"), status=125,
          match="already in use")
    error(s.cli("run", "-d", "--network", "pick", "--ip", "10.64.0.1", "base:1", "true"), status=125,
          match="not available")


def test_bad_input_is_refused_and_changes_nothing(netstore):
    s = netstore
    ok(s.cli("network", "create", "--subnet", "10.70.0.0/16", "wide"))
    before = (s.snapshot(), ok(s.cli("network", "ls")), s.rt.store.db.dump()["networks"])
    for args, match in ((["--subnet", "10.1.2.0/33", "x"], "invalid subnet"),
                        (["--subnet", "banana", "x"], "invalid subnet"),
                        (["--subnet", "10.1.2.3/24", "x"], "host bits set"),
                        (["--subnet", "10.70.3.0/24", "x"], "overlaps 10.70.0.0/16 of network wide"),
                        (["--subnet", "10.71.0.0/24", "--gateway", "10.72.0.1", "x"], "not a host address"),
                        (["--gateway", "10.71.0.1", "x"], "needs --subnet"),
                        (["--subnet", "10.73.0.0/24", "wide"], "already exists"),
                        (["-d", "macvlan", "x"], "unsupported network driver"),
                        (["bad/name"], "invalid network name"),
                        (["host"], "pre-defined")):
        error(s.cli("network", "create", *args), match=match)
    error(s.cli("run", "--network", "nosuch", "base:1", "true"), status=125, match="network nosuch not found")
    error(s.cli("run", "-d", "--network", "nosuch", "base:1", "true"), status=125, match="network nosuch not found")
    error(s.cli("network", "rm", "nosuch"), match="network nosuch not found")
    error(s.cli("network", "rm", "bridge"), match="pre-defined")
    error(s.cli("network", "inspect", "nosuch"), match="not found")
    error(s.cli("network", "connect", "nosuch", "nobody"), match="not found")
    assert (s.snapshot(), ok(s.cli("network", "ls")), s.rt.store.db.dump()["networks"]) == before


def test_network_rm_is_refused_while_in_use_and_prune(netstore):
    s = netstore
    ok(s.cli("network", "create", "busy"))
    ok(s.cli("run", "-d", "--name", "user", "--network", "busy", "base:1", "sleep", "600"))
    error(s.cli("network", "rm", "busy"), match="in use by container user")
    ok(s.cli("stop", "-t", "0", "user"))
    assert s.leases() == []
    error(s.cli("network", "rm", "busy"), match="in use by container user")  # stopped: still its network
    ok(s.cli("start", "user"))  # and it gets an address again
    assert address(s, "user", "busy")
    ok(s.cli("rm", "-f", "user"))
    ok(s.cli("network", "rm", "busy"))
    assert "pyrt1" not in s.ns.links()  # its bridge went with it
    ok(s.cli("network", "create", "-l", "team=a", "p1"))
    ok(s.cli("network", "create", "p2"))
    ok(s.cli("create", "--name", "later", "--network", "p2", "base:1", "true"))
    assert ok(s.cli("network", "ls", "-f", "dangling=true", "--format", "{{.Name}}")).split() == ["p1"]
    assert ok(s.cli("network", "ls", "-f", "label=team=a", "-q")).strip() == \
        json.loads(ok(s.cli("network", "inspect", "p1")))[0]["Id"][:12]
    assert ok(s.cli("network", "prune", "-f")) == "Deleted Networks:\np1\n"
    assert ok(s.cli("network", "ls", "--format", "{{.Name}}")).split() == ["bridge", "host", "none", "p2"]
    ok(s.cli("network", "create", "p3"))
    # system prune: the stopped container, then the networks nobody uses
    assert "Deleted Networks:\np2\np3\n" in ok(s.cli("system", "prune", "-f"))
    assert ok(s.cli("network", "ls", "--format", "{{.Name}}")).split() == ["bridge", "host", "none"]


def test_connect_and_disconnect_a_running_container(netstore):
    s = netstore
    ok(s.cli("network", "create", "n1"))
    ok(s.cli("network", "create", "n2"))
    ok(s.cli("run", "-d", "--name", "c1", "--network", "n1", "base:1", "sleep", "600"))
    serve_tcp(s, "c2", "n2")
    r = s.cli("exec", "c1", "sh", "-c", "nc -w 2 c2 80 </dev/null")
    assert r.stdout == b""
    ok(s.cli("network", "connect", "--alias", "one", "n2", "c1"))
    nets = inspect(s, "c1")["NetworkSettings"]["Networks"]
    assert sorted(nets) == ["n1", "n2"] and nets["n2"]["Aliases"] == ["one"]
    assert nets["n2"]["IPAddress"] in ok(s.cli("exec", "c1", "ip", "-4", "addr", "show", "eth1"))
    assert ok(s.cli("exec", "c1", "sh", "-c", "nc c2 80 </dev/null")) == "c2\n"  # named through n1's server
    assert ok(s.cli("exec", "c2", "nslookup", "one")).count(nets["n2"]["IPAddress"]) == 1
    error(s.cli("network", "connect", "n2", "c1"), match="already connected")
    ok(s.cli("network", "disconnect", "n2", "c1"))
    assert "eth1" not in ok(s.cli("exec", "c1", "ip", "link"))
    assert s.cli("exec", "c1", "sh", "-c", "nc -w 2 c2 80 </dev/null").stdout == b""
    assert sorted(inspect(s, "c1")["NetworkSettings"]["Networks"]) == ["n1"]
    assert len([r for r in s.leases() if r["container_id"] == inspect(s, "c1")["Id"]]) == 1
    error(s.cli("network", "disconnect", "n2", "c1"), match="not connected")
    # a stopped container: from its next start
    ok(s.cli("stop", "-t", "0", "c1"))
    ok(s.cli("network", "connect", "n2", "c1"))
    ok(s.cli("start", "c1"))
    assert ok(s.cli("exec", "c1", "sh", "-c", "nc c2 80 </dev/null")) == "c2\n"
    error(s.cli("network", "connect", "n2", ok(s.cli("create", "--network", "none", "base:1", "true")).strip()),
          match="uses network none")


def test_a_restarted_container_keeps_its_address(netstore):
    """Its monitor starts it again in the same namespace: the same address each run,
    given back when the last run ends."""
    s = netstore
    ok(s.cli("network", "create", "again"))
    ok(s.cli("run", "-d", "--name", "flaky", "--network", "again", "--restart", "on-failure:2", "base:1", "sh", "-c",
             "ip -4 addr show eth0 | grep -o 'inet [0-9.]*'; sleep 0.2; exit 3"))
    wait_for(lambda: inspect(s, "flaky")["State"]["Status"] == "exited", what="the last run to end")
    assert inspect(s, "flaky")["RestartCount"] == 2
    lines = ok(s.cli("logs", "flaky")).split("\n")
    assert len([ln for ln in lines if ln]) == 3 and len(set(ln for ln in lines if ln)) == 1, lines
    assert s.leases() == []


# -- attacks ----------------------------------------------------------------------------------------

def test_containers_cannot_spoof_addresses_or_names(netstore, netns, probe):
    s = netstore
    ok(s.cli("network", "create", "--subnet", "10.65.0.0/24", "town"))
    serve_tcp(s, "bank", "town", reply="real-bank")
    # a second container claims the bank's name as an alias: names come first
    ok(s.cli("run", "-d", "--name", "thief", "--network", "town", "--network-alias", "bank", "base:1", "sleep", "600"))
    bank = address(s, "bank", "town")
    out = run_in(s, "town", "/probe/udpprobe resolve bank", "-v", f"{probe}:/probe:ro")
    assert out.split() == [bank]
    # no address or interface changes without NET_ADMIN
    out = ok(s.cli("exec", "thief", "sh", "-c", f"ip addr add {bank}/24 dev eth0 || echo denied-addr; "
                   "ip link set eth0 address 02:42:0a:41:00:02 || echo denied-mac"))
    assert "denied-addr" in out and "denied-mac" in out
    assert run_in(s, "town", "nc bank 80 </dev/null") == "real-bank\n"
    # the name server answers only the network's containers, not anyone who can reach it
    code = textwrap.dedent("""
        import socket, struct, sys
        q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\\x04bank\\x00" + struct.pack("!HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
        s.sendto(q, ("10.65.0.1", 53)); r = s.recv(512)
        print(r[3] & 15)
        """)
    assert netns.check(__import__("sys").executable, "-c", code) == "5\n"  # REFUSED


def test_pyrt_killed_mid_start_leaves_nothing_after_the_next_command(netstore, netns, tmp_shm):
    """A plugin that hangs (a fake portmap first in CNI_PATH) holds pyrt mid-start:
    its lease and its bridge port are made. pyrt and the plugin are killed; the next
    pyrt command undoes the lease."""
    s = netstore
    fake = os.path.join(tmp_shm, "cni")
    os.makedirs(fake)
    with open(os.path.join(fake, "portmap"), "w") as f:
        f.write(f"#!/bin/sh\necho $$ > {fake}/pid\nexec sleep 600\n")
    os.chmod(os.path.join(fake, "portmap"), 0o755)
    env = {**s._env(), "CNI_PATH": fake}
    p = subprocess.Popen(s._argv(["run", "-d", "--name", "victim", "-p", "8089:80", "base:1", "sleep", "600"]),
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(os.path.join(fake, "pid")) and s.leases(), what="pyrt mid-start")
        assert len(veths(netns)) == 1
    finally:
        p.kill()
        p.wait()
        with open(os.path.join(fake, "pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
    assert len(s.leases()) == 1  # left behind
    assert "victim" in ok(s.cli("ps", "-a"))
    assert s.leases() == []
    wait_for(lambda: veths(netns) == [], what="the veth to go with its namespace")
    assert inspect(s, "victim")["State"]["Status"] == "created"
    assert run_in(s, "bridge", "echo fine") == "fine\n"


def test_no_leftovers_after_200_runs(netstore, netns):
    """200 containers started and removed (on the default network, on a user-defined
    one with a published port, some killed with rm -f): no lease, veth, port rule or
    name server is left."""
    s = netstore
    ok(s.cli("network", "create", "churn"))
    before = netns.iptables()
    code = textwrap.dedent("""
        import sys, pyrt
        rt = pyrt.Runtime(sys.argv[1], quiet=True)
        for i in range(200):
            if i % 4 == 3:
                c = rt.containers.run("base:1", ["sleep", "600"], detach=True, network="churn",
                                      ports={"80/tcp": 18000 + i})
                c.remove(force=True)
            else:
                out = rt.containers.run("base:1", ["sh", "-c", "ip -4 addr show eth0 | grep -c inet"], remove=True,
                                        network_mode="churn" if i % 2 else "bridge")
                assert out == b"1\\n", out
        print(rt.store.db.query_one("SELECT COUNT(*) FROM endpoints")[0])
        """)
    r = netns.python(code, s.root)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout == b"0\n"
    assert s.leases() == [] and s.db_rows() == []
    assert veths(netns) == [] and sorted(netns.links()) == ["lo", "pyrt0", "pyrt1"]
    after = netns.iptables()
    assert "CNI-DN-" not in after and "180" not in after.replace(before, "")


# -- the API and builds ----------------------------------------------------------------------------

def test_api_networks(netstore, netns):
    s = netstore
    code = textwrap.dedent("""
        import json, sys, pyrt
        from pyrt.errors import Conflict, NetworkNotFound
        rt = pyrt.Runtime(sys.argv[1], quiet=True)
        net = rt.networks.create("api", ipam={"Config": [{"Subnet": "10.66.0.0/24"}]}, labels={"k": "v"})
        assert rt.networks.get("api").id == net.id == rt.networks.get(net.id[:10]).id
        assert [n.name for n in rt.networks.list()] == ["api", "bridge", "host", "none"]
        assert [n.name for n in rt.networks.list(filters={"label": "k=v"})] == ["api"]
        c = rt.containers.run("base:1", ["sleep", "600"], detach=True, name="box", network="api")
        assert [x.name for x in net.containers] == ["box"]
        assert c.attrs["NetworkSettings"]["Networks"]["api"]["IPAddress"] == "10.66.0.2"
        other = rt.networks.create("other")
        other.connect(c, aliases=["b2"])
        assert sorted(c.reload().attrs["NetworkSettings"]["Networks"]) == ["api", "other"]
        other.disconnect("box")
        try:
            net.remove()
            raise SystemExit("removed while in use")
        except Conflict:
            pass
        out = rt.containers.run("base:1", ["sh", "-c", "nc -w 5 box 1 </dev/null; nslookup box | grep -c 10.66.0.2"],
                                network="api", remove=True)
        assert out == b"1\\n", out
        c.remove(force=True)
        net.remove()
        assert rt.networks.prune() == {"NetworksDeleted": ["other"]}
        try:
            rt.networks.get("api")
            raise SystemExit("still there")
        except NetworkNotFound:
            pass
        print(json.dumps(rt.networks.get("bridge").attrs["IPAM"]))
        """)
    r = netns.python(code, s.root)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert json.loads(r.stdout)["Config"] == [{"Subnet": "10.87.0.0/16", "Gateway": "10.87.0.1"}]


def test_build_run_steps_use_the_default_network(netstore, tmp_shm):
    s = netstore
    ctx = os.path.join(tmp_shm, "ctx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM base:1\nRUN ip -4 addr show eth0 | grep -o 'inet [0-9.]*' > /addr\n")
    ok(s.cli("build", "-q", "-t", "built:1", ctx))
    assert ok(s.cli("run", "--rm", "--network", "none", "built:1", "cat", "/addr")).startswith("inet 10.87.")
    ok(s.cli("rmi", "built:1"))
