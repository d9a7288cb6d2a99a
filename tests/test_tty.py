"""Terminals: `pyrt run -t`, `run -it`, `run -dit` + `attach`, `exec -t`,
`pyrt.spawn(tty=True)` and `exec_run(tty=True)`. The container gets a pty of its
own devpts instance as stdio and controlling terminal; pyrt (or a detached
container's monitor) relays it. No terminal is needed to run these: the relay
works with pipes on pyrt's side too."""
from __future__ import annotations

import os
import subprocess

import pytest

import pyrt
from clitools import error, ok
from helpers import DEADLINE, wait_for

# field 7 of /proc/self/stat is the controlling terminal (0: none)
CTTY = "set -- $(cat /proc/self/stat); echo ctty=$7"


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the container's side is closed
            return out
        if not chunk:
            return out
        out += chunk


def test_spawn_with_a_terminal(rootfs):
    with pyrt.spawn(["/bin/sh", "-c", f"tty; {CTTY}; [ -t 1 ] && echo stdout-is-a-tty"], rootfs, tty=True) as p:
        assert p.pty is not None and os.isatty(p.pty)
        out = _read_all(p.pty)
        assert p.wait() == 0
    assert out.split(b"\r\n")[0] == b"/dev/pts/0"  # the container's own devpts; \r\n: a terminal
    assert b"ctty=0\r" not in out and b"ctty=" in out
    assert b"stdout-is-a-tty" in out


def test_spawn_tty_excludes_stdio(rootfs):
    with pytest.raises(ValueError, match="stdin, stdout and stderr must be None"):
        pyrt.spawn(["/bin/true"], rootfs, tty=True, stdout=pyrt.PIPE)


def test_cli_run_t(store):
    r = store.cli("run", "--rm", "-t", "base:1", "sh", "-c", f"tty; echo $TERM; stty size; {CTTY}; exit 3")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.decode().split("\r\n")
    assert lines[0] == "/dev/pts/0"
    assert lines[1] == "xterm"        # as docker sets it for -t
    assert lines[2] == "24 80"        # the default size when pyrt's side is no terminal
    assert lines[3].startswith("ctty=") and lines[3] != "ctty=0"


def test_cli_run_it_reads_input(store):
    r = store.cli("run", "--rm", "-it", "base:1", "sh", input=b"echo got $((6*7))\nexit 5\n")
    assert r.returncode == 5, r.stderr
    assert b"got 42" in r.stdout


def test_cli_run_rootfs_t(store, rootfs):
    r = store.cli("run", "-t", "--rootfs", rootfs, "--", "/bin/sh", "-c", "tty")
    assert ok(r) == "/dev/pts/0\r\n"


def test_cli_exec_t(store):
    ok(store.cli("run", "-d", "--name", "t1", "base:1", "sleep", "100"))
    r = store.cli("exec", "-t", "t1", "sh", "-c", f"tty; {CTTY}; exit 4")
    assert r.returncode == 4, r.stderr
    lines = r.stdout.decode().split("\r\n")
    assert lines[0].startswith("/dev/pts/")
    assert lines[1] != "ctty=0"
    r = store.cli("exec", "-it", "t1", "sh", input=b"echo in $((2+3))\nexit 6\n")
    assert r.returncode == 6 and b"in 5" in r.stdout


def test_exec_run_tty(store):
    c = store.rt.containers.run("base:1", ["sleep", "100"], detach=True)
    res = c.exec_run(["sh", "-c", "tty; exit 2"], tty=True)
    assert res.exit_code == 2
    assert res.output.startswith(b"/dev/pts/") and res.output.endswith(b"\r\n")


def test_detached_terminal_and_attach(store):
    """run -dit: the monitor holds the terminal; attach relays it (input included)
    until the detach keys or the container's end; the log keeps what it showed."""
    ok(store.cli("run", "-dit", "--name", "dt", "base:1", "sh"))
    p = store.popen("attach", "dt", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"echo $((6*7))-attached\n")
        p.stdin.flush()
        wait_for(lambda: b"42-attached" in store.cli("logs", "dt").stdout, what="the command's output")
        p.stdin.write(b"\x10\x11")  # ctrl-p ctrl-q: detach
        p.stdin.close()
        assert p.wait(timeout=DEADLINE) == 0, p.stderr.read()
        assert b"42-attached" in p.stdout.read()
    finally:
        _reap(p)
    assert store.get("dt").status == "running"  # detaching leaves it running
    # attached again, the container's end ends the attach, with its status
    r = store.cli("attach", "--detach-keys", "ctrl-x", "dt", input=b"exit 5\n")
    assert r.returncode == 5, r.stderr
    assert store.get("dt").status == "exited"
    error(store.cli("attach", "dt"), match="not running")


def test_attach_without_a_terminal_streams_output(store):
    ok(store.cli("run", "-d", "--name", "dn", "base:1", "sh", "-c",
                 "sleep 1; for i in 1 2 3; do echo tick$i; sleep 0.2; done; echo err >&2; exit 3"))
    p = store.popen("attach", "--no-stdin", "dn", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=DEADLINE)
    finally:
        _reap(p)
    assert p.returncode == 3 and b"tick3\n" in out and err == b"err\n"
    error(store.cli("attach", "--detach-keys", "ctrl-", "dn"), match="invalid detach key")


def _reap(p):
    if p.poll() is None:
        p.kill()
        p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        if f:
            f.close()


def test_attach_from_python(store):
    c = store.rt.containers.run("base:1", ["sh", "-c", "echo early; sleep 1; echo late; echo oops >&2"],
                                detach=True)
    wait_for(lambda: b"early" in c.logs(), what="the first line")
    assert c.attach(logs=True) == b"early\nlate\noops\n"
    assert c.wait()["StatusCode"] == 0
    d = store.rt.containers.run("base:1", ["sh", "-c", "sleep 1; echo a; echo b >&2"], detach=True)
    assert b"".join(d.attach(stream=True, stderr=False)) == b"a\n"
    with pytest.raises(pyrt.errors.Conflict, match="not running"):
        d.attach()
