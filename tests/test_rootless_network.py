"""An ordinary user's containers on a private network through slirp4netns
(pyrt.network.usermode): outbound access, published ports, and what stays out of
reach (the host's loopback, the host's network namespace).

Everything runs in a network namespace the test made (the `netns` fixture), with
an "upstream" namespace behind it at 192.0.2.2 standing for the outside: the
user's `pyrt` runs in the first one, which is the host as slirp4netns sees it.
Whatever is left running there at the end (a slirp4netns) fails the test."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from clitools import ok
from nettools import SERVER, comm, free_port, tun_usable

pytestmark = [pytest.mark.timeout(300)]

UPSTREAM_IP, HOST_IP = "192.0.2.2", "192.0.2.1"  # nettools.NetNS.upstream()

def test_default_network_reaches_the_outside(net_user, netns, servers):
    up = netns.upstream()
    port = free_port()
    outside = servers(up, UPSTREAM_IP, port)
    host = servers(netns, HOST_IP, port)  # the host's own (non-loopback) address
    links = netns.links()
    r = net_user.pyrt("run", "--rm", "base:1", "sh", "-c",
                      f"ip -o -4 addr show tap0 | grep -o 'inet [0-9./]*'; cat /etc/resolv.conf; "
                      f"nc {UPSTREAM_IP} {port} </dev/null; nc {HOST_IP} {port} </dev/null")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "inet 10.0.2.100/24" in out and "nameserver 10.0.2.3" in out, out
    assert f"hello from {UPSTREAM_IP}" in out and f"hello from {HOST_IP}" in out, out
    assert outside.peers() == [HOST_IP]  # NAT'd: slirp4netns's socket in the host's namespace
    assert host.peers() == [HOST_IP]
    assert netns.links() == links  # nothing added to the host's namespace (no veth, no tap)
    # the container's network is its own: inspect says so
    cid = ok(net_user.pyrt("create", "base:1", "true")).strip()
    (info,) = json.loads(ok(net_user.pyrt("inspect", cid)))
    assert info["HostConfig"]["NetworkMode"] == "slirp4netns"
    ok(net_user.pyrt("rm", cid))


def test_host_loopback_is_out_of_reach(net_user, netns, servers):
    port = free_port()
    servers(netns, "127.0.0.1", port)  # a service on the host's loopback only
    # 10.0.2.2 is not the host's 127.0.0.1 (--disable-host-loopback), and a container's
    # root (privileged: NET_ADMIN, /proc/sys writable) that routes 127.0.0.0/8 out
    # through tap0 gets nowhere either
    r = net_user.pyrt("run", "--rm", "--privileged", "base:1", "sh", "-c", f"""
        nc -w 2 10.0.2.2 {port} </dev/null && echo REACHED-GW
        echo 1 > /proc/sys/net/ipv4/conf/tap0/route_localnet && echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet
        ip route del 127.0.0.0/8 table local 2>/dev/null; ip route del local 127.0.0.1 table local 2>/dev/null
        ip route add 127.0.0.0/8 via 10.0.2.2 dev tap0 2>&1 || ip route add 127.0.0.1/32 dev tap0 2>&1
        ip route get 127.0.0.1
        nc -w 2 127.0.0.1 {port} </dev/null && echo REACHED-LO
        echo done""")
    out = r.stdout.decode()
    assert "done" in out, (out, r.stderr)
    assert "REACHED-GW" not in out and "REACHED-LO" not in out and "hello" not in out, out
    assert "tap0" in out, out  # the route was taken: the attack was tried


def test_container_root_cannot_touch_the_hosts_network(net_user, netns):
    links = netns.links()
    routes = netns.check("ip", "route")
    r = net_user.pyrt("run", "--rm", "base:1", "sh", "-c",
                      "ip -o link show | cut -d: -f2 | tr -d ' ' | sort | tr '\\n' ' '; echo; "
                      "ip link set tap0 down; ip route flush all 2>/dev/null; ip link add d0 type dummy 2>&1; "
                      "echo done")
    assert r.returncode == 0 and "done" in r.stdout.decode(), r.stderr
    assert r.stdout.decode().split("\n")[0].split() == ["lo", "tap0"]  # none of the host's links
    assert netns.links() == links and netns.check("ip", "route") == routes


def test_published_port_detached(net_user, netns):
    port = free_port()
    cid = ok(net_user.pyrt("run", "-d", "-p", f"127.0.0.1:{port}:8080", "base:1", "sh", "-c",
                           "while true; do echo served | nc -l -p 8080; done")).strip()
    try:
        def fetch():
            r = netns.run(sys.executable, "-c", f"""
import socket, sys
s = socket.create_connection(("127.0.0.1", {port}), timeout=5)
sys.stdout.write(s.recv(100).decode())""")
            return r.stdout.decode()
        import helpers
        helpers.wait_for(lambda: fetch() == "served\n", what="the published port")
        assert fetch() == "served\n"
        (c,) = json.loads(ok(net_user.pyrt("ps", "--format", "json")))
        assert "8080" in json.dumps(c)
    finally:
        ok(net_user.pyrt("rm", "-f", cid))
    # slirp4netns ended with the container's monitor (the netns fixture checks nothing is left)
    import helpers
    helpers.wait_for(lambda: not [p for p in netns.pids() if comm(p) == "slirp4netns"],
                     what="slirp4netns to end")


def test_published_port_in_use(net_user, netns):
    port = free_port()
    holder = netns.popen(sys.executable, "-c", SERVER, "127.0.0.1", str(port), stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"listening\n"
        r = net_user.pyrt("run", "-d", "--name", "p1", "-p", f"127.0.0.1:{port}:80", "base:1", "sleep", "60")
        err = r.stderr.decode()
        assert r.returncode != 0 and err.startswith("pyrt: ") and err.count("\n") == 1, err
        assert f"127.0.0.1:{port}:80" in err, err
        assert json.loads(ok(net_user.pyrt("ps", "-a", "--format", "json"))) == []
        assert not [p for p in netns.pids() if comm(p) == "slirp4netns"]
    finally:
        holder.kill()
        holder.wait()


def test_foreground_run_publishes_and_ends_its_network(net_user, netns):
    import threading

    import helpers
    port = free_port()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", net_user.pyrt(
        "run", "--rm", "--name", "fg1", "-p", f"127.0.0.1:{port}:9000", "base:1", "sh", "-c",
        "echo fg | nc -l -p 9000")))
    t.start()
    try:
        def listening():  # the container's nc listens (seen in its network namespace)
            r = net_user.pyrt("inspect", "fg1")
            pid = json.loads(r.stdout)[0]["State"]["Pid"] if r.returncode == 0 else 0
            rows = []
            for table in ("tcp", "tcp6"):
                try:
                    with open(f"/proc/{pid}/net/{table}") as f:
                        rows += [ln.split() for ln in f.readlines()[1:]]
                except OSError:
                    pass
            return pid > 0 and any(r[1].endswith(":2328") and r[3] == "0A" for r in rows)
        try:
            helpers.wait_for(listening, what="the container's server")
        except BaseException:
            r = net_user.pyrt("inspect", "fg1")
            t.join(30); print("DEBUG", result)
            raise
        r = netns.run(sys.executable, "-c", f"""
import socket, sys
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
sys.stdout.write(s.recv(100).decode())""")
        assert r.stdout == b"fg\n", r.stderr
    finally:
        t.join(60)
    assert result["r"].returncode == 0, result["r"].stderr
    assert not [p for p in netns.pids() if comm(p) == "slirp4netns"]


def test_published_port_with_network_none_through_the_monitor(net_user, netns):
    """--network none: the container's monitor forwards the port (a child of it
    in the container's user and network namespaces makes the sockets there)."""
    import helpers
    port = free_port()
    cid = ok(net_user.pyrt("run", "-d", "--network", "none", "-p", f"127.0.0.1:{port}:8080", "base:1", "sh", "-c",
                           "while true; do echo via-monitor | nc -l -p 8080; done")).strip()
    try:
        def fetch():
            r = netns.run(sys.executable, "-c", f"""
import socket, sys
s = socket.create_connection(("127.0.0.1", {port}), timeout=5)
sys.stdout.write(s.recv(100).decode())""")
            return r.stdout.decode()
        helpers.wait_for(lambda: fetch() == "via-monitor\n", what="the published port")
        assert fetch() == "via-monitor\n"
        # nothing but the monitor and its socket maker listen or run on the host's side
        assert not [p for p in netns.pids() if comm(p) == "slirp4netns"]
    finally:
        ok(net_user.pyrt("rm", "-f", cid))


def test_none_and_explicit_network(net_user):
    r = net_user.pyrt("run", "--rm", "--network", "none", "base:1", "sh", "-c", "ip -o link show | wc -l")
    assert r.stdout == b"1\n", r.stderr
    r = net_user.pyrt("run", "--rm", "--network", "slirp4netns", "--network-alias", "x", "base:1", "true")
    assert r.returncode != 0 and r.stderr.decode().count("\n") == 1, r.stderr


def test_slirp4netns_failure_is_one_line_and_leaves_nothing(net_user, netns):
    fake = net_user.mkdir("u/fakebin", 0o755)
    with open(os.path.join(fake, "slirp4netns"), "w") as f:
        f.write("#!/bin/sh\necho 'open(\"/dev/net/tun\"): Permission denied' >&2\necho 'child failed(1)' >&2\n"
                "exit 1\n")
    os.chmod(os.path.join(fake, "slirp4netns"), 0o755)
    env = {"PATH": fake + os.pathsep + net_user.env["PATH"]}
    for argv in (["run", "--rm"], ["run", "-d"]):
        r = net_user.pyrt(*argv, "base:1", "true", env=env)
        err = r.stderr.decode()
        assert r.returncode == 125 and err.count("\n") == 1, err
        assert err == 'pyrt: network slirp4netns: it failed to start: open("/dev/net/tun"): Permission denied\n'
    assert json.loads(ok(net_user.pyrt("ps", "-a", "--format", "json"))) == []
    assert os.listdir(os.path.join(net_user.store, "containers")) == []


def test_root_may_use_slirp4netns_too(netstore, netns, servers):
    """As root the network mode works the same (no user namespace: slirp4netns and
    the container's namespace are plain root's)."""
    if not shutil.which("slirp4netns"):
        pytest.skip("slirp4netns is not installed")
    up = netns.upstream()
    port = free_port()
    outside = servers(up, UPSTREAM_IP, port)
    r = netstore.cli("run", "--rm", "--network", "slirp4netns", "base:1", "sh", "-c",
                     f"ip -o -4 addr show tap0 | grep -o 'inet [0-9./]*'; nc {UPSTREAM_IP} {port} </dev/null")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"inet 10.0.2.100/24\nhello from {UPSTREAM_IP}\n"
    assert outside.peers() == [HOST_IP]
    assert not [p for p in netns.pids() if comm(p) == "slirp4netns"]


def test_pyrt_run_on_slirp4netns_as_user(user, user_rootfs, netns, servers):
    """pyrt.run(network="slirp4netns") in the user's own Python: the run gets the
    network, and its slirp4netns ends with it."""
    if not shutil.which("slirp4netns") or not tun_usable():
        pytest.skip("slirp4netns and a usable /dev/net/tun are needed")
    user.in_netns(netns.path)
    up = netns.upstream()
    port = free_port()
    outside = servers(up, UPSTREAM_IP, port)
    r = user.py(r"""
        import os, sys, pyrt
        r = pyrt.run(["sh", "-c", f"nc {sys.argv[2]} {sys.argv[3]} </dev/null"], rootfs=sys.argv[1],
                     network="slirp4netns", capture_output=True)
        print(r.returncode, r.stdout.decode().strip())
        print("children:", open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split())
        """, user_rootfs, UPSTREAM_IP, port)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().splitlines() == [f"0 hello from {UPSTREAM_IP}", "children: []"]
    assert outside.peers() == [HOST_IP]
