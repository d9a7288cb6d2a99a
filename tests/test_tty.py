"""Terminals: `pyrt run -t`, `run -it`, `exec -t`, `pyrt.spawn(tty=True)` and
`exec_run(tty=True)`. The container gets a pty of its own devpts instance as stdio
and controlling terminal; pyrt relays it. No terminal is needed to run these: the
relay works with pipes on pyrt's side too."""
from __future__ import annotations

import os

import pytest

import pyrt
from test_lifecycle import base_tar, error, ok, store  # noqa: F401  (fixtures)

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


def test_detached_terminal_is_refused(store):
    before = store.snapshot()
    error(store.cli("run", "-d", "-t", "base:1", "true"), status=125, match="-t with -d")
    assert store.snapshot() == before
    c = store.rt.containers.create("base:1", ["true"], tty=True)
    with pytest.raises(pyrt.errors.InvalidArgument, match="has a terminal"):
        c.start()
    # attached, it runs
    r = store.cli("start", "-a", c.id)
    assert r.returncode == 0, r.stderr
