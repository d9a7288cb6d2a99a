"""`pyrt run IMAGE` in the foreground through its C relay (csrc/relay.h): every
byte of both streams reaches us and the log, in order, whatever reads them; a
reader that is gone ends the container as SIGPIPE would (141, no complaint);
signals go to the container (--sig-proxy) or act on pyrt; stdin is a pipe of
pyrt's with -i, /dev/null without; a line with no end costs no memory; the log's
records are those of pyrt.containers.logs.LogWriter. No timing is asserted."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import threading

import pytest

from clitools import PYRT, ok
from helpers import DEADLINE, wait_for

ENV = {**os.environ, "PYRT_ROOT": "/nonexistent-on-purpose"}


def _pyrt(store, *argv):
    return [PYRT, "--root", store.root, *argv]


def _state(store, name):
    (row,) = [r for r in store.db_rows() if r["name"] == name]
    store.ids.add(row["id"])
    return json.loads(row["state"])


# -- bulk output -------------------------------------------------------------------------------------

def test_100_mb_to_a_file_exact(store, tmp_shm):
    out = os.path.join(tmp_shm, "out")
    with open(out, "wb") as f:
        r = subprocess.run(_pyrt(store, "run", "--rm", "base:1", "sh", "-c", "head -c 100000000 /dev/zero"),
                           stdout=f, stderr=subprocess.PIPE, env=ENV, timeout=120, cwd="/")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    h = hashlib.sha256()
    with open(out, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert os.path.getsize(out) == 100_000_000
    assert h.hexdigest() == hashlib.sha256(bytes(100_000_000)).hexdigest()
    assert store.db_rows() == []


def test_numbered_lines_through_a_pipe_exact(store):
    """A pipe as our stdout (tee's path in the relay): the exact bytes, and the log
    has each line."""
    n = 300_000
    r = store.cli("run", "--name", "seq", "base:1", "seq", "1", str(n), timeout=120)
    want = "".join(f"{i}\n" for i in range(1, n + 1)).encode()
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(want).hexdigest()
    logs = store.cli("logs", "seq", timeout=120)
    assert hashlib.sha256(logs.stdout).hexdigest() == hashlib.sha256(want).hexdigest()


def test_interleaved_stdout_and_stderr_both_complete(store):
    script = ("i=0; while [ $i -lt 3000 ]; do echo out-$i; echo err-$i >&2; "
              "[ $((i % 500)) = 0 ] && head -c 70000 /dev/zero | tr '\\0' e >&2 && echo >&2; "
              "i=$((i+1)); done")
    r = store.cli("run", "--name", "both", "base:1", "sh", "-c", script, timeout=120)
    assert r.returncode == 0
    want_out = "".join(f"out-{i}\n" for i in range(3000))
    err_lines = []
    for i in range(3000):
        err_lines.append(f"err-{i}\n")
        if i % 500 == 0:
            err_lines.append("e" * 70000 + "\n")
    want_err = "".join(err_lines)
    assert r.stdout.decode() == want_out
    assert r.stderr.decode() == want_err
    logs = store.cli("logs", "both", timeout=120)
    assert logs.stdout.decode() == want_out and logs.stderr.decode() == want_err


def test_a_slow_reader_of_both_streams_loses_nothing(store):
    """Both of our pipes read slowly, by small reads: pyrt waits on each, as the
    container would on a direct pipe."""
    script = "seq 1 200000; seq 1 100000 >&2; seq 200001 250000"
    p = subprocess.Popen(_pyrt(store, "run", "--rm", "base:1", "sh", "-c", script), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV, cwd="/")
    got = {}

    def slow(name, f):
        parts = []
        while chunk := os.read(f.fileno(), 1000):
            parts.append(chunk)
            if len(parts) % 200 == 0:
                threading.Event().wait(0.01)
        got[name] = b"".join(parts)

    threads = [threading.Thread(target=slow, args=("out", p.stdout)), threading.Thread(target=slow, args=("err", p.stderr))]
    for t in threads:
        t.start()
    try:
        assert p.wait(timeout=120) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for t in threads:
            t.join(DEADLINE)
        p.stdout.close()
        p.stderr.close()
    assert got["out"] == "".join(f"{i}\n" for i in list(range(1, 200001)) + list(range(200001, 250001))).encode()
    assert got["err"] == "".join(f"{i}\n" for i in range(1, 100001)).encode()


# -- a reader that is gone ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["yes"], ["sh", "-c", "yes | cat"], ["sh", "-c", "echo one; sleep 0.2; yes"]],
                         ids=["init-writes", "child-writes", "writes-later"])
def test_a_gone_reader_ends_the_run_with_141(store, command):
    """`pyrt run IMAGE yes | head -n1`: the shell's convention, as for `yes | head
    -n1`: the container's writer gets SIGPIPE and pyrt exits 141, nothing on
    stderr; the container's record says the same."""
    argv = " ".join(_quote(a) for a in _pyrt(store, "run", "--name", "gone", "base:1", *command))
    r = subprocess.run(["bash", "-c", f"{argv} | head -n1; echo status=${{PIPESTATUS[0]}} >&2"],
                       capture_output=True, env=ENV, timeout=DEADLINE, cwd="/")
    assert r.stdout in (b"y\n", b"one\n")
    assert r.stderr == b"status=141\n", r.stderr
    state = _state(store, "gone")
    assert (state["Status"], state["ExitCode"]) == ("exited", 141)


def test_a_gone_reader_and_a_container_that_ignores_sigpipe(store):
    """A container that ignores SIGPIPE gets EPIPE, and goes on as it likes (here:
    busybox yes stops with status 1), as it would in a shell."""
    argv = " ".join(_quote(a) for a in _pyrt(store, "run", "--rm", "base:1", "sh", "-c", "trap '' PIPE; yes"))
    r = subprocess.run(["bash", "-c", f"{argv} | head -n1; echo status=${{PIPESTATUS[0]}} >&2"],
                       capture_output=True, env=ENV, timeout=DEADLINE, cwd="/")
    assert r.stdout == b"y\n"
    assert r.stderr.endswith(b"status=1\n") and b"Traceback" not in r.stderr and b"pyrt:" not in r.stderr
    assert store.db_rows() == []


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def test_a_container_that_closes_its_stdout_early(store):
    r = store.cli("run", "--rm", "base:1", "sh", "-c",
                  "echo first; exec >&-; sleep 0.1; echo on-stderr >&2; exit 3", timeout=DEADLINE)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"first\n", b"on-stderr\n")


@pytest.mark.parametrize("closed", ["stdout", "stderr", "stdin"])
def test_our_stdio_closed(store, closed):
    """`pyrt run ... >&-` (or 2>&-, or <&- with -i): what has no destination goes to
    the log only, no input is an immediate end of file; nothing hangs."""
    redirect = {"stdout": ">&-", "stderr": "2>&-", "stdin": "<&-"}[closed]
    argv = " ".join(_quote(a) for a in _pyrt(store, "run", "-i", "--name", "closed", "base:1", "sh", "-c",
                                             "cat; echo out; echo err >&2"))
    r = subprocess.run(["bash", "-c", f"{argv} {redirect}"], capture_output=True, env=ENV, timeout=DEADLINE,
                       cwd="/", input=b"in\n")
    assert r.returncode == 0
    assert r.stdout == {"stdout": b"", "stderr": b"in\nout\n", "stdin": b"out\n"}[closed]
    assert r.stderr == (b"" if closed == "stderr" else b"err\n")
    logs = store.cli("logs", "closed")
    assert logs.stdout == (b"out\n" if closed == "stdin" else b"in\nout\n") and logs.stderr == b"err\n"


def test_a_process_left_holding_the_pipe_does_not_keep_pyrt(store):
    """Without a pid namespace of its own a background process could hold the
    container's stdout open: the relay ends once the container's init has exited
    and its pipes are drained. (With pyrt's pid namespace the kernel ends it; the
    run must end either way.)"""
    r = store.cli("run", "--rm", "base:1", "sh", "-c", "(sleep 5 &) ; echo bye", timeout=DEADLINE)
    assert (r.returncode, r.stdout) == (0, b"bye\n")


# -- signals ----------------------------------------------------------------------------------------------

TRAPPING = ("trap 'echo got TERM; exit 7' TERM; trap 'echo got USR1' USR1; trap 'echo got INT; exit 8' INT; "
            "echo ready; while :; do sleep 0.05; done")


def _started(store, *argv):
    p = subprocess.Popen(_pyrt(store, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd="/")
    assert p.stdout.readline() == b"ready\n"
    return p


def _finish(p):
    try:
        out, err = p.communicate(timeout=DEADLINE)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p.returncode, out, err


def test_signals_are_passed_on_to_the_container(store):
    p = _started(store, "run", "--rm", "base:1", "sh", "-c", TRAPPING)
    p.send_signal(signal.SIGUSR1)
    assert p.stdout.readline() == b"got USR1\n"
    p.send_signal(signal.SIGTERM)
    assert _finish(p) == (7, b"got TERM\n", b"")
    assert store.db_rows() == []


def test_sigint_is_passed_on_too(store):
    p = _started(store, "run", "--name", "int", "base:1", "sh", "-c", TRAPPING)
    p.send_signal(signal.SIGINT)
    assert _finish(p) == (8, b"got INT\n", b"")
    assert _state(store, "int")["ExitCode"] == 8


def test_without_sig_proxy_signals_act_on_pyrt(store):
    """--sig-proxy=false: SIGINT interrupts pyrt (130), which ends its container
    (a foreground container does not outlive its pyrt); the container's trap never
    runs."""
    p = _started(store, "run", "--sig-proxy=false", "--name", "noproxy", "base:1", "sh", "-c", TRAPPING)
    p.send_signal(signal.SIGINT)
    rc, out, err = _finish(p)
    assert (rc, out) == (130, b"")
    assert b"Traceback" not in err
    state = _state(store, "noproxy")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)


def test_without_sig_proxy_sigterm_ends_pyrt_and_its_reaper_the_container(store):
    """--sig-proxy=false: SIGTERM kills pyrt (its default action); its reaper ends
    the container and, with --rm, removes it."""
    p = _started(store, "run", "--sig-proxy=false", "--rm", "base:1", "sh", "-c", TRAPPING)
    p.send_signal(signal.SIGTERM)
    rc, out, _ = _finish(p)
    assert (rc, out) == (-signal.SIGTERM, b"")
    wait_for(lambda: store.db_rows() == [], what="the reaper's clean-up")


def test_start_attached_passes_signals_on(store):
    """`start -a` relays as run does: its signals reach the container."""
    ok(store.cli("create", "--name", "sa", "base:1", "sh", "-c", TRAPPING))
    p = _started(store, "start", "-a", "sa")
    p.send_signal(signal.SIGUSR1)
    assert p.stdout.readline() == b"got USR1\n"
    p.send_signal(signal.SIGTERM)
    assert _finish(p) == (7, b"got TERM\n", b"")
    assert _state(store, "sa")["ExitCode"] == 7


def test_start_attached_without_sig_proxy_signals_act_on_pyrt(store):
    ok(store.cli("create", "--name", "sanp", "base:1", "sh", "-c", TRAPPING))
    p = _started(store, "start", "-a", "--sig-proxy=false", "sanp")
    p.send_signal(signal.SIGINT)
    rc, out, err = _finish(p)
    assert (rc, out) == (130, b"") and b"Traceback" not in err
    state = _state(store, "sanp")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)


def test_start_attached_takes_one_container(store):
    """As docker: attaching to several at once is refused, and none is started."""
    for name in ("one", "two"):
        ok(store.cli("create", "--name", name, "base:1", "true"))
    r = store.cli("start", "-a", "one", "two")
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1 and b"one container" in r.stderr
    assert {_state(store, n).get("Status", "created") for n in ("one", "two")} == {"created"}


def test_a_bad_sig_proxy_value_is_refused(store):
    r = store.cli("run", "--sig-proxy=maybe", "base:1", "true")
    assert r.returncode == 2 and b"sig-proxy" in r.stderr
    assert store.db_rows() == []


# -- stdin ------------------------------------------------------------------------------------------------

def test_stdin_is_passed_on_with_i_and_its_end_too(store):
    data = b"".join(b"line %d\n" % i for i in range(100000))
    r = store.cli("run", "--rm", "-i", "base:1", "sh", "-c", "md5sum; echo after-eof", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == hashlib.md5(data).hexdigest().encode() + b"  -\nafter-eof\n"


def test_without_i_stdin_is_dev_null(store):
    r = store.cli("run", "--rm", "base:1", "sh", "-c", "cat; readlink /proc/self/fd/0", input=b"not for it\n")
    assert (r.returncode, r.stdout) == (0, b"/dev/null\n")


def test_stdin_and_output_at_once_do_not_wait_on_each_other(store):
    """A container that writes a lot before it reads: pyrt keeps relaying its output
    while its stdin pipe is full."""
    data = os.urandom(3 << 20)
    r = store.cli("run", "--rm", "-i", "base:1", "sh", "-c", "head -c 4000000 /dev/zero; md5sum", input=data,
                  timeout=120)
    assert r.returncode == 0
    assert r.stdout[:4000000] == bytes(4000000)
    assert r.stdout[4000000:] == hashlib.md5(data).hexdigest().encode() + b"  -\n"


def test_the_container_never_holds_our_stdin_file(store, tmp_shm):
    """Attack: with -i and our stdin a file, the container gets a pipe, never the
    file (through /proc/self/fd/0 it could reopen it for writing)."""
    path = os.path.join(tmp_shm, "input")
    with open(path, "wb") as f:
        f.write(b"secret\n")
    with open(path, "rb") as f:
        r = subprocess.run(_pyrt(store, "run", "--rm", "-i", "base:1", "sh", "-c",
                                 "readlink /proc/self/fd/0; echo owned > /proc/self/fd/0; cat"),
                           stdin=f, capture_output=True, env=ENV, timeout=DEADLINE, cwd="/")
    assert r.stdout.startswith(b"pipe:[")
    with open(path, "rb") as f:
        assert f.read() == b"secret\n"


# -- the log ------------------------------------------------------------------------------------------------

def test_the_log_after_the_run(store):
    long = "L" * 20000
    script = f"echo a; echo b >&2; echo {long}; printf 'no newline at the end'"
    r = store.cli("run", "--name", "logged", "base:1", "sh", "-c", script)
    assert r.returncode == 0
    assert r.stdout == f"a\n{long}\nno newline at the end".encode() and r.stderr == b"b\n"
    logs = store.cli("logs", "logged")
    assert logs.stdout == r.stdout and logs.stderr == r.stderr
    cid = _state_id(store, "logged")
    with open(os.path.join(store.root, "containers", cid, "ctr.log"), "rb") as f:
        records = [line.split(b" ", 3)[1:] for line in f.read().split(b"\n")[:-1]]
    assert [(s, t, len(x)) for s, t, x in records if s == b"stdout"] == [
        (b"stdout", b"F", 1), (b"stdout", b"P", 8192), (b"stdout", b"P", 8192), (b"stdout", b"F", 20000 - 16384),
        (b"stdout", b"P", len("no newline at the end"))]


def _state_id(store, name):
    (row,) = [r for r in store.db_rows() if r["name"] == name]
    return row["id"]


def _peak_rss(pid: int) -> int:
    """VmHWM of a process, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def test_a_line_without_end_costs_no_memory(store, tmp_shm):
    """Attack: 100 MB with no newline. pyrt's memory stays bounded (its peak RSS,
    read once all of it came through, nowhere near the line), and the log holds
    the line in 8 KiB P records."""
    size = 100_000_000
    p = subprocess.Popen(_pyrt(store, "run", "--name", "noend", "base:1", "sh", "-c",
                               f"head -c {size} /dev/zero; sleep 0.5"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd="/")
    try:
        got = 0
        while got < size:
            chunk = os.read(p.stdout.fileno(), 1 << 20)
            assert chunk, got
            got += len(chunk)
        peak = _peak_rss(p.pid)  # the relay has logged all it passed on
        _, err = p.communicate(timeout=DEADLINE)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == 0, err
    assert 0 < peak < 64 << 20, peak  # an interpreter and pyrt's buffers: bounded, whatever the line
    path = os.path.join(store.root, "containers", _state_id(store, "noend"), "ctr.log")
    records = tags = 0
    rest = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                _, stream, tag, text = line.split(b" ", 3)
                assert stream == b"stdout" and tag == b"P" and len(text) <= 8192
                records += 1
                tags += len(text)
    assert rest == b"" and tags == size and records == -(-size // 8192)
    ok(store.cli("rm", "noend"))


class _Dir:
    def __init__(self, d):
        self.dir = d


def _records_by_stream(path):
    out = {}
    with open(path, "rb") as f:
        for r in f.read().split(b"\n")[:-1]:
            _time, stream, tag, text = r.split(b" ", 3)
            out.setdefault(stream, []).append((tag, text))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_c_log_writer_equals_the_python_one(tmp_shm, seed):
    """The relay's log writer (csrc/relay.c) and pyrt.containers.logs.LogWriter given
    the same chunks of two streams write the same records for each stream."""
    from pyrt import _core
    from pyrt.containers.lifecycle import LOG_FILE
    from pyrt.containers.logs import LogWriter
    rng = random.Random(seed)
    m = _core.LOG_LINE_MAX
    assert m == LogWriter.MAX_LINE
    parts = []
    for _ in range(rng.randrange(1, 60)):
        k = rng.random()
        if k < 0.4:
            parts.append(b"y" * rng.randrange(0, 4) + b"\n")
        elif k < 0.6:
            parts.append(b"\n")
        elif k < 0.8:
            parts.append(b"x" * rng.randrange(m - 2, 3 * m + 2) + b"\n")
        else:
            parts.append(b"z" * rng.choice([m, 2 * m, rng.randrange(1, 3 * m)]))
    data = b"".join(parts)
    py = LogWriter(_Dir(tmp_shm))
    c_path = os.path.join(tmp_shm, "c.log")
    fd = os.open(c_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        sink = _core.LogSink(fd)
        pos = 0
        while pos < len(data):
            n = rng.choice([1, 2, 7, 100, m - 1, m, m + 1, 65536, 3 * m])
            stream = rng.choice(["stdout", "stderr"])
            py.write(stream, data[pos:pos + n])
            sink.write(stream, data[pos:pos + n])
            pos += n
        py.close()
        assert sink.close() == 0
    finally:
        os.close(fd)
    assert _records_by_stream(c_path) == _records_by_stream(os.path.join(tmp_shm, LOG_FILE))


def test_c_log_writer_on_a_full_disk_says_so(tmp_shm):
    """A log that cannot be written is reported (its errno), not a crash."""
    from pyrt import _core
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        sink = _core.LogSink(fd)
        sink.write("stdout", b"x\n" * 10)
        assert sink.close() == 28  # ENOSPC
    finally:
        os.close(fd)


# -- the relay in-process, each way of copying -------------------------------------------------------

def _relay_through(tmp_shm, payload_out, payload_err, *, dst_kind, log):
    """Copy two files' contents, written by a host process to pipes of the relay's,
    to a pipe or a file of ours (and to a log, or none); returns (out, err, log)."""
    from pyrt import _core
    files = []
    for name, data in (("o", payload_out), ("e", payload_err)):
        path = os.path.join(tmp_shm, name)
        with open(path, "wb") as f:
            f.write(data)
        files.append(path)
    out_r, out_w = _core.relay_pipe(0)
    err_r, err_w = _core.relay_pipe(0)
    p = subprocess.Popen(["sh", "-c", 'cat "$0"; cat "$1" >&2; cat "$0"', *files], stdout=out_w, stderr=err_w)
    os.close(out_w)
    os.close(err_w)
    pidfd = os.pidfd_open(p.pid)
    log_path = os.path.join(tmp_shm, "log")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log else -1
    results, threads, dsts = {}, [], []
    for name in ("out", "err"):
        if dst_kind == "pipe":
            r, w = os.pipe()
            dsts.append(w)

            def read_all(fd=r, name=name):
                with open(fd, "rb") as f:
                    results[name] = f.read()
            threads.append(threading.Thread(target=read_all))
            threads[-1].start()
        else:
            dsts.append(os.open(os.path.join(tmp_shm, "dst-" + name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    try:
        relay = _core.Relay(pidfd, out_src=out_r, out_dst=dsts[0], err_src=err_r, err_dst=dsts[1], log_fd=log_fd)
        relay.run()
        assert relay.close() == 0
    finally:
        p.wait()
        os.close(pidfd)
        for fd in dsts:
            os.close(fd)
        for t in threads:
            t.join(DEADLINE)
        if log_fd >= 0:
            os.close(log_fd)
    if dst_kind == "file":
        for name in ("out", "err"):
            with open(os.path.join(tmp_shm, "dst-" + name), "rb") as f:
                results[name] = f.read()
    return results["out"], results["err"], (_records_by_stream(log_path) if log else None)


def _joined(records):
    """The stream's text from its records (P pieces joined; F ends a line)."""
    return b"".join(text + (b"\n" if tag == b"F" else b"") for tag, text in records)


@pytest.mark.parametrize("dst_kind", ["pipe", "file"])
@pytest.mark.parametrize("log", [True, False], ids=["log", "nolog"])
def test_relay_copies_exactly_each_way(tmp_shm, dst_kind, log):
    """tee (a pipe, with a log), splice (a pipe, no log), read and write (a file):
    the same bytes, and the log the same text."""
    rng = random.Random(7)
    out = b"".join(rng.choice([b"short\n", b"x" * rng.randrange(1, 20000) + b"\n", os.urandom(3000)])
                   for _ in range(400))
    err = os.urandom(1 << 20) + b"\nend"
    got_out, got_err, records = _relay_through(tmp_shm, out, err, dst_kind=dst_kind, log=log)
    assert got_out == out + out and got_err == err
    if log:
        assert _joined(records[b"stdout"]) == out + out and _joined(records[b"stderr"]) == err


# -- a terminal (-t) -------------------------------------------------------------------------------------

def test_run_it_on_a_terminal(store):
    """`pyrt run -it` from a terminal: its size at the start and when it changes
    (SIGWINCH) is the container's, keys such as ^C reach the container's line
    discipline (pyrt's terminal is raw meanwhile, and is restored), the exit
    status is the container's, the log has what was shown."""
    import fcntl
    import select
    import struct
    import termios
    import time
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    before = termios.tcgetattr(slave)
    p = subprocess.Popen(_pyrt(store, "run", "-it", "--name", "term", "base:1", "sh"), stdin=slave, stdout=slave,
                         stderr=slave, env=ENV, cwd="/", start_new_session=True)
    out = b""

    def until(marker):
        nonlocal out
        end = time.monotonic() + DEADLINE
        while marker not in out:
            assert time.monotonic() < end, (marker, out)
            if select.select([master], [], [], 0.1)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:  # EIO: pyrt closed the terminal
                    break
        return out

    try:
        until(b"/ # ")  # typed before pyrt made its terminal raw, it would be flushed
        os.write(master, b"stty size; echo sized-$((1+1))\n")
        until(b"sized-2")
        assert b"30 100" in out
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        p.send_signal(signal.SIGWINCH)
        os.write(master, b"sleep 30; echo slept\n")
        time.sleep(0.3)
        os.write(master, b"\x03")  # ^C: the container's terminal interrupts its sleep
        os.write(master, b"stty size; echo resized-$((2+2)); exit 3\n")
        until(b"resized-4")
        assert p.wait(timeout=DEADLINE) == 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        after = termios.tcgetattr(slave)
        os.close(slave)
        os.close(master)
    # "slept" never printed as a line of output (the typed line is echoed, maybe
    # redrawn by the shell's line editor around the ^C: not looked at)
    assert b"40 120" in out and not any(line.strip() == b"slept" for line in out.split(b"\n"))
    assert after == before  # raw no more
    logs = store.cli("logs", "term")
    assert b"resized-4" in logs.stdout
