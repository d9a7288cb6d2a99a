"""Published ports of containers without a network (`run -d --network none -p
[IP:][HOSTPORT:]PORT`, the suite's default network): a detached container's
monitor listens on the host port and forwards each connection into the
container's own network namespace (csrc/portfwd.c). Served by busybox httpd in
the container, fetched from the host on 127.0.0.1."""
from __future__ import annotations

import json
import socket
import threading
import urllib.request

import pytest

from pyrt.errors import InvalidArgument
from clitools import error, ok
from helpers import DEADLINE, wait_for

SERVE = "mkdir -p /www; head -c 1048576 /dev/urandom > /www/big; echo hello-port > /www/index.html; " \
        "exec httpd -f -p {port} -h /www"


def fetch(port, path="/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=DEADLINE) as r:
        return r.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving(port):
    def up():
        try:
            return fetch(port) == b"hello-port\n"
        except OSError:
            return False
    return up


def test_publish_and_fetch(store):
    host = free_port()
    ok(store.cli("run", "-d", "--name", "web", "-p", f"127.0.0.1:{host}:80", "base:1", "sh", "-c",
                 SERVE.format(port=80)))
    wait_for(serving(host), what="httpd behind the published port")
    # a megabyte, and several clients at once
    big = [None] * 4

    def get(i):
        big[i] = fetch(host, "/big")
    threads = [threading.Thread(target=get, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert all(b is not None and len(b) == 1 << 20 for b in big) and len(set(big)) == 1
    assert ok(store.cli("port", "web")) == f"80/tcp -> 127.0.0.1:{host}\n"
    assert ok(store.cli("port", "web", "80/tcp")) == f"127.0.0.1:{host}\n"
    assert f"127.0.0.1:{host}->80/tcp" in ok(store.cli("ps"))
    attrs = json.loads(ok(store.cli("inspect", "web")))[0]
    assert attrs["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host)}]}
    # the port stays taken while it runs, and is free once it stops
    err = error(store.cli("run", "-d", "-p", f"127.0.0.1:{host}:80", "base:1", "true"), status=125,
                match="publish port")
    assert "in use" in err
    ok(store.cli("stop", "-t", "1", "web"))
    with pytest.raises(OSError):
        fetch(host)
    assert len([r for r in store.db_rows()]) == 1  # the failed one was removed


def test_api_and_a_free_host_port(store):
    c = store.rt.containers.run("base:1", ["sh", "-c", SERVE.format(port=8000)], detach=True,
                                ports={"8000/tcp": ("127.0.0.1", None)})
    host = int(c.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"])
    wait_for(serving(host), what="httpd behind the picked port")
    with pytest.raises(InvalidArgument, match="detach"):
        store.rt.containers.run("base:1", ["true"], ports={"80/tcp": 8080})


def test_bad_publish_options(store):
    before = store.snapshot()
    for args, match in ((["-p", "80"], "needs -d"),
                        (["-d", "-p", "1:2:3:4"], "invalid -p"),
                        (["-d", "-p", "99999:80"], "ports are 1-65535"),
                        (["-d", "--network", "none", "-p", "8080:53/udp"], "UDP ports needs a network"),
                        (["-d", "-p", "nothost:80:80"], "IPv4"),
                        (["-d", "--network", "host", "-p", "8080:80"], "host's ports")):
        error(store.cli("run", *args, "base:1", "true"), status=125, match=match)
    assert store.snapshot() == before
