"""pyrt-runtime's native exec (csrc/rt_exec.c) against its Python implementation
(PYRT_RUNTIME_PYTHON=1 forces it): for a table of exec invocations, valid and
hostile (command line and --process forms, env, cwd, user, caps, bad users and
caps, hostile --process JSON, a cwd escaping through a symlink, a created,
stopped, paused or unknown container), both sides give the same stdout, exit
status and error line, and leave nothing behind (no process in the container
beyond its own, no file beside the pid file, the state as it was). And the
invocations engines send are done natively (--debug says when one is handed
over)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from ocitools import cmdline, wait_stopped, wait_until
from ocitools import rt  # noqa: F401,F811 (fixtures)

PYTHON = {"PYRT_RUNTIME_PYTHON": "1"}


def _run(rt, args, *, python=False, debug=False, files=False):
    env = dict(os.environ)
    env.pop("PYRT_RUNTIME_PYTHON", None)
    if python:
        env.update(PYTHON)
    argv = [rt.binary, "--root", rt.root, *(["--debug"] if debug else []), *args]
    if files:  # a detached process keeps our pipes open: through files
        import tempfile
        with tempfile.TemporaryFile(dir=rt.base) as out, tempfile.TemporaryFile(dir=rt.base) as err:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                timeout=120).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, rc, out.read(), err.read())
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=120)


def _procs(rt, cid):
    p = _run(rt, ["ps", "--format", "json", cid])
    return sorted(json.loads(p.stdout)) if p.returncode == 0 else None


def _state_files(rt):
    out = {}
    for d, _, files in os.walk(rt.root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, rt.root)] = fh.read() if f.endswith(".json") else b""
    return out


def _same(rt, cid, args, *, native=True, files=False):
    """exec `args` (after `exec`) on both sides: the same result, nothing left.
    native: the native side must not hand it over."""
    before = (_procs(rt, cid), _state_files(rt), sorted(os.listdir(rt.base)))
    results = []
    for python in (False, True):
        p = _run(rt, ["exec", *args], python=python, debug=not python, files=files)
        err = [ln for ln in p.stderr.decode(errors="replace").splitlines() if "level=debug" not in ln
               and not ln.startswith("pyrt-runtime: debug")]
        if not python:
            handed = "handed over to pyrt's Python implementation" in p.stderr.decode(errors="replace")
            assert handed != native, (args, p.stderr)
        results.append((p.returncode, p.stdout, err))
        after = (_procs(rt, cid), _state_files(rt), sorted(os.listdir(rt.base)))
        assert after == before, (args, python, before, after)
    assert results[0] == results[1], (args, results)
    return results[0]


@pytest.fixture
def running(rt, make_bundle, rootfs_copy):
    """A running container (sleep) on a writable copy of the test rootfs, with
    symlinks that point out of it."""
    os.symlink("../../../../../../../../", os.path.join(rootfs_copy, "escape"))
    os.symlink("/proc/1/root/etc", os.path.join(rootfs_copy, "escape2"))
    bundle = make_bundle(["sleep", "1000"], lambda c: c["process"]["env"].append("BASE=1"), root=rootfs_copy,
                         readonly=False)
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    return cid


def _pf(rt, name, content):
    path = os.path.join(rt.base, name)
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    return path


SH = ["sh", "-c"]

# (name, args before the id, args after the id, native?)
CMDLINE = [
    ("plain", [], ["true"], True),
    ("exit-status", [], SH + ["exit 7"], True),
    ("killed-by-signal", [], SH + ["kill -9 $$"], True),
    ("env-cwd-user", ["-e", "X=y", "--env=Z=1", "--cwd", "/tmp", "--user", "1000:1000",
                      "--additional-gids", "5", "-g", "6"],
     SH + ["echo $X $Z $BASE; pwd; id -u; id -g; id -G"], True),
    ("user-uid-only", ["-u", "0042"], SH + ["id -u; id -g"], True),
    ("caps-added", ["--cap", "CAP_NET_ADMIN", "-c", "sys_time"], SH + ["grep Cap /proc/self/status"], True),
    ("caps-unknown", ["--cap", "CAP_BOGUS"], SH + ["grep CapBnd /proc/self/status"], True),
    ("no-new-privs", ["--no-new-privs"], SH + ["grep NoNewPrivs /proc/self/status"], True),
    ("cwd-relative", ["--cwd", "tmp"], ["pwd"], True),
    ("cwd-escapes-by-symlink", ["--cwd", "/escape"], SH + ["pwd -P; ls /escape/ | head -3"], True),
    ("cwd-escapes-by-abs-symlink", ["--cwd", "/escape2"], ["pwd"], True),
    ("cwd-missing", ["--cwd", "/no/such/dir"], ["pwd"], True),
    ("env-not-kv", ["-e", "NOPE"], ["true"], True),
    ("env-quote", ["-e", "it's"], ["true"], True),
    ("program-missing", [], ["/no/such"], True),
    ("program-not-on-path", [], ["nosuchprog"], True),
    ("user-huge", ["--user", "99999999999"], ["true"], True),
    ("user-words", ["--user", "root"], ["true"], False),
    ("user-negative", ["--user", "-1"], ["true"], False),
    ("gid-words", ["--user", "1:x"], ["true"], False),
    ("gids-words", ["-g", "wheel"], ["true"], False),
    ("no-command", [], [], True),
    ("unknown-option", ["--bogus"], ["true"], True),
    ("preserve-fds", ["--preserve-fds", "2"], ["true"], False),
    ("tty-without-socket", ["-t"], ["true"], True),
]


@pytest.mark.parametrize("name,pre,post,native", CMDLINE, ids=[c[0] for c in CMDLINE])
def test_exec_command_line(rt, running, name, pre, post, native):
    rc, out, err = _same(rt, running, [*pre, running, *post], native=native)
    if name == "env-cwd-user":
        assert rc == 0 and out.decode().split() == ["y", "1", "1", "/tmp", "1000", "1000", "1000", "5", "6"]
    if name.startswith("cwd-escapes"):
        assert b"/proc" not in out or rc != 0  # never the host's
    if name == "killed-by-signal":
        assert rc == 137


PROCESS = [
    ("valid", {"args": ["sh", "-c", "echo $A; pwd; id -u"], "env": ["A=b", "PATH=/bin:/usr/bin"], "cwd": "/tmp",
               "user": {"uid": 7, "gid": 8, "umask": 63}, "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 99,
                                                                      "soft": 98}]}, True),
    ("rlimit-seen", {"args": ["sh", "-c", "ulimit -n"], "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 99,
                                                                     "soft": 77}]}, True),
    ("args-empty", {"args": []}, True),
    ("args-missing", {"env": ["A=1"]}, True),
    ("args-not-strings", {"args": ["true", 1]}, True),
    ("env-not-list", {"args": ["true"], "env": "A=1"}, True),
    ("cwd-relative", {"args": ["true"], "cwd": "tmp"}, True),
    ("cwd-escape", {"args": ["pwd"], "cwd": "/escape/escape/.."}, True),
    ("uid-negative", {"args": ["true"], "user": {"uid": -1}}, True),
    ("uid-string", {"args": ["true"], "user": {"uid": "0"}}, True),
    ("uid-huge", {"args": ["true"], "user": {"uid": 2**80}}, True),
    ("caps-unknown", {"args": ["true"], "capabilities": {"bounding": ["CAP_BOGUS"]}}, True),
    ("caps-not-list", {"args": ["true"], "capabilities": {"bounding": "CAP_KILL"}}, True),
    ("caps-non-ascii", {"args": ["true"], "capabilities": {"bounding": ["CAP_K\u0131LL"]}}, False),
    ("rlimit-unknown", {"args": ["true"], "rlimits": [{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]}, True),
    ("terminal-no-socket", {"args": ["true"], "terminal": True}, True),
    ("not-an-object", "[1, 2]", False),
    ("not-json", "{'args': ['true']}", False),
    ("comments", '{"args": ["true"]} // x', False),
    ("duplicate-key", '{"args": ["true"], "args": ["false"]}', False),
    ("deep", '{"args": ["true"], "x": ' + "[" * 100 + "]" * 100 + "}", False),
    ("nul-escape", '{"args": ["tr\\u0000ue"]}', False),
    ("empty-file", "", False),
]


@pytest.mark.parametrize("name,proc,native", PROCESS, ids=[c[0] for c in PROCESS])
def test_exec_process_file(rt, running, name, proc, native):
    pf = _pf(rt, f"process-{name}.json", proc)
    rc, out, err = _same(rt, running, ["--process", pf, running], native=native)
    if name == "valid":
        assert rc == 0 and out.decode().split() == ["b", "/tmp", "7"]
    if name == "rlimit-seen":
        assert out.decode().split() == ["77"]


def test_exec_process_file_missing(rt, running):
    _same(rt, running, ["--process", os.path.join(rt.base, "nope.json"), running], native=False)


def test_exec_detach_pid_file(rt, running):
    """--detach with --pid-file: the same on both sides; each leaves its process,
    named by the pid file, running in the container until it is killed."""
    for python in (False, True):
        pidfile = os.path.join(rt.base, f"exec-{python}.pid")
        p = _run(rt, ["exec", "-d", "--pid-file", pidfile, running, "sleep", "999"], python=python, files=True)
        assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"")
        with open(pidfile) as f:
            epid = int(f.read())
        assert epid in _procs(rt, running) and b"sleep" in cmdline(epid)
        assert [f for f in os.listdir(rt.base) if f.endswith(".tmp")] == []
        os.kill(epid, signal.SIGKILL)
        wait_until(lambda: epid not in (_procs(rt, running) or []), "the exec'd process to go")


def test_exec_pid_file_unwritable(rt, running):
    """A pid file that cannot be written: the same error on both sides (but for
    the temporary name), and the process it would have named killed and reaped."""
    import re
    before = _procs(rt, running)
    errs = []
    for python in (False, True):
        p = _run(rt, ["exec", "-d", "--pid-file", "/nonexistent-dir/x.pid", running, "sleep", "99"],
                 python=python, files=True)
        errs.append((p.returncode, re.sub(rb"[0-9a-f]{16}", b"R", p.stderr)))
        assert _procs(rt, running) == before
    assert errs[0] == errs[1] and errs[0][0] == 1, errs


def test_exec_pid_file_refuses_planted_symlink(rt, running, tmp_shm):
    """A pid file path whose directory holds attacker files: the pid file replaces
    a symlink, never writes through it."""
    victim = os.path.join(tmp_shm, "victim")
    with open(victim, "w") as f:
        f.write("keep")
    pidfile = os.path.join(rt.base, "planted.pid")
    os.symlink(victim, pidfile)
    p = _run(rt, ["exec", "--pid-file", pidfile, running, "true"])
    assert p.returncode == 0, p.stderr
    with open(victim) as f:
        assert f.read() == "keep"
    assert not os.path.islink(pidfile)


def test_exec_signal_forwarded(rt, running):
    """SIGTERM to a waiting native exec reaches the process (exit 143)."""
    env = {k: v for k, v in os.environ.items() if k != "PYRT_RUNTIME_PYTHON"}
    p = subprocess.Popen([rt.binary, "--root", rt.root, "exec", running, "sh", "-c", "echo up; exec sleep 999"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert p.stdout.readline() == b"up\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 143
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def test_exec_with_seccomp(rt, make_bundle):
    """The container's recorded seccomp profile binds what exec runs, natively too."""
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"],
                                                            "action": "SCMP_ACT_ERRNO"}]}
    bundle = make_bundle(["sleep", "1000"], lambda c: c["linux"].__setitem__("seccomp", prof))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    rc, out, err = _same(rt, cid, [cid, "sh", "-c", "mkdir /tmp/x; echo $?"])
    assert out.decode().split()[-1] != "0"


def test_exec_container_states(rt, make_bundle):
    """created (allowed), paused, stopped and unknown containers."""
    bundle = make_bundle(["sleep", "1000"])
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    rc, out, _ = _same(rt, cid, [cid, "sh", "-c", "echo in-created"])
    assert rc == 0 and out == b"in-created\n"
    assert rt("start", cid).returncode == 0
    if rt("pause", cid).returncode == 0:
        try:
            rc, _, err = _same(rt, cid, [cid, "true"])
            assert rc == 1 and err == [f"pyrt-runtime: container {cid} is paused: resume it first"]
        finally:
            assert rt("resume", cid).returncode == 0
    stopped = rt.new_id()
    assert rt.create(stopped, make_bundle(["true"])).returncode == 0
    assert rt("start", stopped).returncode == 0
    wait_stopped(rt, stopped)
    rc, _, err = _same(rt, stopped, [stopped, "true"])
    assert rc == 1 and "is stopped: cannot exec in it" in err[0]
    rc, _, err = _same(rt, cid, ["no-such-container", "true"])
    assert rc == 1 and "does not exist" in err[0]
    rc, _, err = _same(rt, cid, ["../evil", "true"])
    assert rc != 0
    rc, _, err = _same(rt, cid, [], native=True)
    assert rc == 2


def _tty_exec(rt, cid, sock, args, python):
    """exec -t with a listener on `sock`: (result, what came over the terminal)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    srv.listen(1)
    got = {}

    def accept():
        conn, _ = srv.accept()
        with conn:
            got["msg"], got["fds"], _, _ = socket.recv_fds(conn, 1024, 4)
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        p = _run(rt, ["exec", "-t", "--console-socket", sock, cid, *args], python=python, debug=not python)
        t.join(30)
        out = b""
        for fd in got.get("fds", []):
            try:
                while True:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:  # EIO: the pty's other side is closed
                        break
                    if not chunk:
                        break
                    out += chunk
            finally:
                os.close(fd)
        return p, got.get("msg"), out.replace(b"\r\n", b"\n")
    finally:
        srv.close()
        os.unlink(sock)


def test_exec_terminal(rt, running):
    """--tty over --console-socket: the same terminal on both sides (a pty of the
    container's devpts, its controlling terminal, 24x80), natively."""
    args = ["sh", "-c", "tty; test -t 1 && echo isatty; stty size; set -- $(cat /proc/self/stat); "
                        "test $7 != 0 && echo ctty; exit 5"]
    res = []
    for python in (False, True):
        p, msg, out = _tty_exec(rt, running, os.path.join(rt.base, "tty.sock"), args, python)
        if not python:
            assert "handed over" not in p.stderr.decode(), p.stderr
        res.append((p.returncode, p.stdout, msg, out))
    assert res[0] == res[1]
    assert res[0] == (5, b"", b"/dev/ptmx", b"/dev/pts/0\nisatty\n24 80\nctty\n") or \
        res[0][3].startswith(b"/dev/pts/")


def test_exec_terminal_socket_refused(rt, running):
    """A console socket nobody listens on: the same error on both sides."""
    _same(rt, running, ["-t", "--console-socket", os.path.join(rt.base, "nosock"), running, "true"])


def test_exec_is_fast_path_for_engines(rt, running):
    """podman's exec: --process FILE --detach --pid-file, and conmon's without
    --detach; native."""
    proc = {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["echo", "hi"],
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]},
            "noNewPrivileges": False}
    pf = _pf(rt, "podman.json", proc)
    t = time.monotonic()
    rc, out, err = _same(rt, running, ["--process", pf, running])
    assert (rc, out, err) == (0, b"hi\n", []) and time.monotonic() - t < 120
