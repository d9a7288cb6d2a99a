"""pyrt-runtime's processes beyond the container's own: hooks in order with the state on
their stdin, a terminal over --console-socket, exec (with and without a terminal).
Every test force-deletes the containers it made, also on failure."""
from __future__ import annotations

import json
import os
import socket
import threading


from ocitools import wait_until, cmdline, runtime_cgroup_dirs
from ocitools import rt  # noqa: F401,F811 (fixtures)


def test_hooks_in_order_with_state(rt, make_bundle, tmp_shm, rootfs_copy):
    log = os.path.join(tmp_shm, "hooks.log")
    hook_script = os.path.join(tmp_shm, "hook.sh")
    with open(hook_script, "w") as f:
        f.write('#!/bin/sh\n{ printf "%s %s " "$1" "$(hostname)"; cat; echo; } >> "$LOG"\n')
    os.chmod(hook_script, 0o755)
    # startContainer's path resolves in the container: a copy in its root
    inside = os.path.join(rootfs_copy, "hook.sh")
    with open(inside, "w") as f:
        f.write('#!/bin/sh\n{ printf "%s %s " "$1" "$(hostname)"; cat; echo; } >> /hooklog/hooks.log\n')
    os.chmod(inside, 0o755)

    def hook(kind, path=hook_script):
        return {"path": path, "args": [path, kind], "env": [f"LOG={log}", "PATH=/usr/bin:/bin"]}

    def edit(c):
        c["hostname"] = "hooked"
        c["hooks"] = {k: [hook(k)] for k in ("prestart", "createRuntime", "createContainer", "poststart",
                                             "poststop")}
        c["hooks"]["startContainer"] = [hook("startContainer", "/hook.sh")]
        c["annotations"] = {"org.test": "yes"}
        c["mounts"].append({"destination": "/hooklog", "type": "bind", "source": tmp_shm, "options": ["rbind"]})
    bundle = make_bundle(["true"], edit, root=rootfs_copy)
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    wait_until(lambda: rt.state(cid)["status"] == "stopped", "the container to finish")
    assert rt("delete", cid).returncode == 0
    with open(log) as f:
        entries = [ln.split(" ", 2) for ln in f.read().splitlines() if ln]
    kinds = [e[0] for e in entries]
    assert kinds == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
    host = socket.gethostname()
    hosts = {e[0]: e[1] for e in entries}
    assert hosts["prestart"] == host and hosts["createContainer"] == "hooked" and hosts["startContainer"] == "hooked"
    states = {e[0]: json.loads(e[2]) for e in entries}
    assert states["createRuntime"]["status"] == "creating" and states["createRuntime"]["id"] == cid
    assert states["createRuntime"]["annotations"] == {"org.test": "yes"}
    assert states["createRuntime"]["bundle"] == bundle and states["createRuntime"]["pid"] > 0
    assert states["poststop"]["status"] == "stopped"
    # a failing createRuntime hook fails create, and nothing is left
    fail = make_bundle(["true"], lambda c: c.update(hooks={"createRuntime": [{"path": "/bin/false"}]}))
    cid = rt.new_id()
    p = rt.create(cid, fail)
    assert p.returncode == 1 and b"createRuntime hook /bin/false" in p.stderr
    assert rt("state", cid).returncode == 1 and runtime_cgroup_dirs(cid) == []


def _console_listener(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got = {}

    def accept():
        conn, _ = srv.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 1024, 4)
            got["name"], got["fds"] = msg, fds
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return srv, t, got


def _read_all(fd):
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the pty's other side is closed
            break
        if not chunk:
            break
        out += chunk
    return out


def test_terminal_over_console_socket(rt, make_bundle, tmp_shm):
    sock = os.path.join(tmp_shm, "console.sock")
    srv, t, got = _console_listener(sock)
    try:
        bundle = make_bundle(["sh", "-c", "tty; test -t 0 && echo isatty; ls -l /dev/console | cut -c1"],
                             lambda c: c["process"].update(terminal=True))
        cid = rt.new_id()
        p = rt.create(cid, bundle, "--console-socket", sock)
        assert p.returncode == 0, p.stderr
        t.join(30)
        assert got.get("name") == b"/dev/ptmx" and len(got["fds"]) == 1
        master = got["fds"][0]
        try:
            assert rt("start", cid).returncode == 0
            out = _read_all(master).replace(b"\r\n", b"\n")
        finally:
            os.close(master)
        assert out.split(b"\n")[:3] == [b"/dev/pts/0", b"isatty", b"c"]
        no_socket = rt.create(rt.new_id(), bundle)
        assert no_socket.returncode == 1 and b"console-socket" in no_socket.stderr
    finally:
        srv.close()


def test_exec(rt, make_bundle, tmp_shm):
    bundle = make_bundle(["sleep", "1000"], lambda c: c["process"]["env"].append("BASE=1"))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    p = rt("exec", "--env", "X=y", "--cwd", "/tmp", "--user", "1000:1000", cid,
           "sh", "-c", "echo $X $BASE; pwd; id -u; exit 3")
    assert p.returncode == 3 and p.stdout.decode().split() == ["y", "1", "/tmp", "1000"]
    proc = {"args": ["sh", "-c", "echo from process file; ps -o comm"], "env": ["PATH=/bin"], "cwd": "/",
            "user": {"uid": 0, "gid": 0}}
    pf = os.path.join(tmp_shm, "process.json")
    with open(pf, "w") as f:
        json.dump(proc, f)
    p = rt("exec", "--process", pf, cid)
    assert p.returncode == 0 and p.stdout.decode().split()[:4] == ["from", "process", "file", "COMMAND"]
    assert "sleep" in p.stdout.decode()
    # detached, with a pid file: it runs on in the container
    pidfile = os.path.join(tmp_shm, "exec.pid")
    p = rt("exec", "-d", "--pid-file", pidfile, cid, "sleep", "999", files=True)
    assert p.returncode == 0
    with open(pidfile) as f:
        epid = int(f.read())
    assert epid in json.loads(rt("ps", "--format", "json", cid).stdout)
    assert rt("exec", cid, "/no/such").returncode != 0
    assert rt("delete", "--force", cid).returncode == 0
    wait_until(lambda: b"sleep" not in cmdline(epid), "the exec'd process to go")


def test_exec_with_terminal(rt, make_bundle, tmp_shm):
    bundle = make_bundle(["sleep", "1000"])
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    sock = os.path.join(tmp_shm, "exec-console.sock")
    srv, t, got = _console_listener(sock)
    try:
        p = rt("exec", "-t", "--console-socket", sock, cid, "sh", "-c",
               "tty; test -t 1 && echo isatty; set -- $(cat /proc/self/stat); echo ctty=$7")
        assert p.returncode == 0, p.stderr
        t.join(30)
        master = got["fds"][0]
        try:
            out = _read_all(master).replace(b"\r\n", b"\n")
        finally:
            os.close(master)
        lines = out.split(b"\n")
        assert lines[:2] == [b"/dev/pts/0", b"isatty"]
        assert lines[2].startswith(b"ctty=") and lines[2] != b"ctty=0"  # its controlling terminal
    finally:
        srv.close()
