"""The native `pyrt` command (csrc/bin/pyrt.c): `pyrt run --rootfs` done in C gives
what the Python CLI gives (the same spawn spec field for field, the same output,
messages and exit status), every other command line is handed to Python, and
whatever Python would not trust (a seccomp cache another user could have written,
a pyrt that Python would import from elsewhere) is handed over too.

Whether a run was handed over is seen from outside: with PYTHONPROFILEIMPORTTIME=1
a Python that starts writes its import times to stderr; the native command never
does. PYRT_CLI_PYTHON=1 makes the command hand everything over (the reference)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from clitools import PYRT, SPEC_CAPTURE
from helpers import DEADLINE, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native `pyrt run --rootfs` is root's")


def _env(**more):
    env = dict(os.environ)
    env.pop("PYRT_CLI_PYTHON", None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.update(more)
    return env


def pyrt(*argv, python=False, input=None, env=None, **kw):
    e = _env(**(env or {}))
    if python:
        e["PYRT_CLI_PYTHON"] = "1"
    else:
        e["PYTHONPROFILEIMPORTTIME"] = "1"
    return subprocess.run([PYRT, *argv], capture_output=True, input=input, env=e, timeout=DEADLINE, **kw)


def handed_over(r) -> bool:
    return b"import time:" in r.stderr


def without_import_times(err: bytes) -> bytes:
    return b"".join(ln for ln in err.splitlines(keepends=True) if not ln.startswith(b"import time:"))


@pytest.fixture(scope="module")
def cached(rootfs):
    """The default seccomp filter compiled and kept for this build (by Python): the
    native command reads it from there."""
    r = pyrt("run", "--rootfs", rootfs, "true", python=True)
    assert r.returncode == 0, r.stderr
    return rootfs


def _native_spec(tmp, argv, env=None):
    out = os.path.join(tmp, "native.spec")
    r = pyrt(*argv, env={"PYRT_CLI_DUMP_SPEC": out, **(env or {})}, cwd=tmp)
    assert not handed_over(r), f"handed over: {argv}"
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f:
        return f.read()


def _python_spec(tmp, argv, env=None):
    out = os.path.join(tmp, "python.spec")
    r = subprocess.run([sys.executable, "-c", SPEC_CAPTURE, out, *argv], capture_output=True, env=_env(**(env or {})),
                       cwd=tmp, timeout=DEADLINE)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f:
        return f.read()


SPEC_CASES = [
    [],
    ["-e", "A=1", "-e", "B=2", "-e", "A=3", "-e", "FROM_HOST", "-e", "NOT_SET_ANYWHERE"],
    ["--env=PATH=/bin", "-e", "HOME=/h", "--env", "X="],
    ["-w", "/tmp", "-u", "1000:1000", "--hostname", "box"],
    ["--workdir=/", "--user=7", "--hostname="],
    ["-u", "0:", "--network", "host", "--read-only"],
    ["--net=none", "-i", "--rm", "--sig-proxy", "false"],
    ["--cap-add", "NET_ADMIN", "--cap-add", "sys_time", "--cap-drop", "CHOWN", "--cap-drop", "cap_kill"],
    ["--cap-drop", "ALL", "--cap-add", "KILL"],
    ["--cap-add", "ALL"],
    ["-v", "ROOTFS:/mnt/a:ro", "-v", "/tmp:/mnt", "--volume=/dev/shm:/x//y/../z/w:rw", "-v", "bin:/b"],
]


@pytest.mark.parametrize("opts", SPEC_CASES, ids=lambda o: " ".join(o) or "plain")
def test_native_spec_is_pythons(cached, tmp_shm, opts):
    """The packed spec (csrc/specpack.h) of the native command and of the Python CLI
    for the same command line are the same bytes: every field, the seccomp program
    included."""
    opts = [o.replace("ROOTFS", cached) for o in opts]
    os.makedirs(os.path.join(tmp_shm, "bin"), exist_ok=True)  # (-v bin:/b: relative to the working directory)
    argv = ["--root", tmp_shm, "run", "--rootfs", cached, *opts, "--", "/bin/sh", "-c", "echo $A"]
    env = {"FROM_HOST": "from host"}
    if any(o.startswith("--cap-add") for o in opts):  # the filter of these caps, cached by Python
        assert pyrt("run", "--rootfs", cached, *opts, "true", python=True).returncode in (0, 1, 126, 127)
    assert _native_spec(tmp_shm, argv, env) == _python_spec(tmp_shm, argv, env)


def test_native_spec_rootfs_spelling(cached, tmp_shm):
    """The rootfs path is made absolute as os.path.abspath does (lexically: a
    symlink is neither resolved nor refused, as in Python), whatever the spelling."""
    link = os.path.join(tmp_shm, "link")
    os.symlink(cached, link)
    os.mkdir(os.path.join(tmp_shm, "sub"))
    for spelling in ("link", "./link", "sub/../link", "sub//..//link/", os.path.join(tmp_shm, "sub", "..", "link")):
        argv = ["run", "--rootfs", spelling, "true"]
        assert _native_spec(tmp_shm, argv) == _python_spec(tmp_shm, argv), spelling


RUNS = [  # (options and command, stdin): done natively, output compared with Python's
    (["--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"], None),
    (["-e", "A=1", "-w", "/tmp", "/bin/sh", "-c", "echo $A $PWD $HOME; env | sort"], None),
    (["-u", "1000:1000", "--hostname", "box", "/bin/sh", "-c", "id -u; id -g; hostname; echo $HOME"], None),
    (["--read-only", "/bin/sh", "-c", "echo x > /x"], None),
    (["-i", "/bin/cat"], b"from stdin\n"),
    (["/bin/cat"], b"not read without -i\n"),
    (["/bin/sh", "-c", "kill -TERM $$"], None),
    (["/nonexistent"], None),
    (["--network", "host", "/bin/true"], None),
    (["-v", "/dev/shm:/mnt:ro", "/bin/sh", "-c", "test -d /mnt && ! touch /mnt/x-native-test"], None),
]


@pytest.mark.parametrize("args,stdin", RUNS, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_native_run_is_pythons(cached, args, stdin):
    native = pyrt("run", "--rootfs", cached, *args, input=stdin)
    assert not handed_over(native), native.stderr
    py = pyrt("run", "--rootfs", cached, *args, input=stdin, python=True)
    assert (native.returncode, native.stdout, native.stderr) == (py.returncode, py.stdout, py.stderr)


HANDED_OVER = [  # Python's own messages and statuses, from the native command too
    ["run", "--rootfs", "ROOTFS"],                       # no command
    ["run", "--rootfs", "/nonexistent-dir", "true"],     # not a directory
    ["run", "--rootfs", "ROOTFS", "-u", "nobody", "true"],
    ["run", "--rootfs", "ROOTFS", "-e", "=x", "true"],
    ["run", "--rootfs", "ROOTFS", "--cap-add", "BOGUS", "true"],
    ["run", "--rootfs", "ROOTFS", "--network", "bridge", "true"],
    ["run", "--rootfs", "ROOTFS", "--sig-proxy", "maybe", "true"],
    ["run", "--rootfs", "ROOTFS", "--bogus", "true"],
    ["run", "--rootfs", "ROOTFS", "-e"],
    ["run", "--rootfs", "ROOTFS", "--host", "x", "true"],  # an abbreviation: argparse's to judge
    ["run", "--rootfs", "ROOTFS", "-it", "true"],
    ["run", "--rootfs", "ROOTFS", "-v", "/nonexistent-src:/x", "true"],
    ["run", "--rootfs", "ROOTFS", "-v", "/tmp:relative", "true"],
    ["run", "--rootfs", "ROOTFS", "-v", "/tmp:/x:rx", "true"],
    ["run", "--rootfs", "ROOTFS", "-v", "/tmp:/x:ro:more", "true"],
    ["run", "--help"],
    ["--version"],
    ["bogus-verb"],
    [],
]


@pytest.mark.parametrize("argv", HANDED_OVER, ids=lambda a: " ".join(a) or "nothing")
def test_handed_over_is_pythons(cached, argv):
    argv = [cached if a == "ROOTFS" else a for a in argv]
    native = pyrt(*argv)
    assert handed_over(native)
    py = pyrt(*argv, python=True)
    assert (native.returncode, native.stdout, without_import_times(native.stderr)) == \
        (py.returncode, py.stdout, py.stderr)


def _cache_file():
    """The default filter's cache file of this build (pyrt.launch.seccomp's name)."""
    from pyrt.launch import seccomp
    return os.path.join(seccomp._cache_dir(), f"seccomp-{'-'.join(map(str, seccomp._versions()))}.bpf")


def test_untrusted_seccomp_cache_is_handed_over(cached):
    """A cache file another user owns, or one others may write, is not read: Python
    takes over (and compiles the filter itself, writing a trusted file again)."""
    r = pyrt("run", "--rootfs", cached, "true")
    assert not handed_over(r)
    path = _cache_file()
    st = os.stat(path)
    try:
        for change in (lambda: os.chown(path, 65534, 65534), lambda: os.chmod(path, 0o666),
                       lambda: os.chmod(path, 0o620)):
            os.chown(path, 0, 0)
            os.chmod(path, 0o600)
            change()
            r = pyrt("run", "--rootfs", cached, "true")
            assert handed_over(r) and r.returncode == 0, r.stderr
    finally:
        if os.path.exists(path):
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, st.st_mode & 0o777)
    assert not handed_over(pyrt("run", "--rootfs", cached, "true"))


def test_seccomp_cache_symlink_to_an_untrusted_file_is_handed_over(cached, tmp_shm):
    """The cache file a symlink to a file another user owns (the same program): the
    file read is the one judged, so it is not trusted and Python takes over."""
    path = _cache_file()
    assert not handed_over(pyrt("run", "--rootfs", cached, "true"))
    saved = path + ".saved"  # (the same directory: a rename)
    os.rename(path, saved)
    try:
        theirs = os.path.join(tmp_shm, "theirs.bpf")
        with open(saved, "rb") as src, open(theirs, "wb") as dst:
            dst.write(src.read())
        os.chown(theirs, 65534, 65534)
        os.chmod(theirs, 0o600)
        os.symlink(theirs, path)
        r = pyrt("run", "--rootfs", cached, "true")
        assert handed_over(r) and r.returncode == 0, r.stderr
    finally:
        if os.path.lexists(path):
            os.unlink(path)
        os.rename(saved, path)
    assert not handed_over(pyrt("run", "--rootfs", cached, "true"))


def test_python_path_changes_are_handed_over(cached, tmp_shm):
    """Where Python would import another pyrt (PYTHONPATH, a user site's pyrt), or
    another interpreter setup, the native command does not guess."""
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE"):
        r = pyrt("run", "--rootfs", cached, "true", env={var: sys.base_prefix if var == "PYTHONHOME" else tmp_shm})
        assert handed_over(r), var
    venv = os.path.exists(os.path.join(os.path.dirname(PYRT), "..", "pyvenv.cfg"))
    site = os.path.join(tmp_shm, ".local", "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                        "site-packages", "pyrt")
    os.makedirs(site)
    r = pyrt("run", "--rootfs", cached, "true", env={"HOME": tmp_shm})
    assert handed_over(r) != venv  # a venv does not look at the user's site


def test_gone_reader_is_141(cached):
    """`pyrt run --rootfs R yes | head -n1`: the shell's convention, 141 (SIGPIPE)."""
    r = subprocess.run(["bash", "-c", f'"{PYRT}" run --rootfs "{cached}" yes | head -n1; exit ${{PIPESTATUS[0]}}'],
                       capture_output=True, env=_env(PYTHONPROFILEIMPORTTIME="1"), timeout=DEADLINE)
    assert r.stdout == b"y\n" and r.returncode == 141, r
    assert b"import time:" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP])
def test_signals_are_forwarded(cached, sig):
    script = f"trap 'echo got {int(sig)}; exit 7' {sig.name[3:]}; echo ready; while :; do sleep 0.05; done"
    p = subprocess.Popen([PYRT, "run", "--rootfs", cached, "sh", "-c", script], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env(PYTHONPROFILEIMPORTTIME="1"))
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(sig)
        out, err = p.communicate(timeout=DEADLINE)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, out) == (7, f"got {int(sig)}\n".encode()), err
    assert b"import time:" not in err


def test_sigint_without_sig_proxy_ends_it_130(cached):
    p = subprocess.Popen([PYRT, "run", "--rootfs", cached, "--sig-proxy", "false", "sh", "-c",
                          "trap '' INT; echo ready; while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=DEADLINE)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130


def _pids_with(marker: bytes) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        found.append(int(pid))
            except OSError:
                pass
    return found


def _device_cgroup(pid: int):
    """pyrt/run-<pid>: the device cgroup `pyrt` (pid) makes for its container."""
    from pyrt.cgroups.layout import layout
    return os.path.join(layout().unified, "pyrt", f"run-{pid}")


@pytest.fixture
def sleeper(cached):
    """A native `pyrt run` whose container sleeps: (its Popen, the marker of its sleep)."""
    marker = f"{time.time_ns() % 10**9}.5"
    p = subprocess.Popen([PYRT, "run", "--rootfs", cached, "sh", "-c", f"echo ready; exec sleep {marker}"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
    try:
        assert p.stdout.readline() == b"ready\n"
        wait_for(lambda: _pids_with(marker.encode()), what="the container's sleep")
        yield p, marker
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        for pid in _pids_with(marker.encode()):
            os.kill(pid, signal.SIGKILL)


def test_killed_cli_ends_the_container(sleeper):
    """SIGKILL to the native `pyrt`: its pyrt-reaper ends the container, and the
    device cgroup made for it goes."""
    p, marker = sleeper
    cgroup = _device_cgroup(p.pid)
    assert os.path.isdir(cgroup)
    p.kill()
    p.wait()
    wait_for(lambda: not _pids_with(marker.encode()), what="the container to end with its pyrt")
    wait_for(lambda: not os.path.isdir(cgroup), what="its device cgroup to go")


def test_device_cgroup_holds_the_container(sleeper):
    """The container runs in pyrt/run-<pid of pyrt> (docker's device list, an eBPF
    program), removed once the run is over."""
    p, marker = sleeper
    cgroup = _device_cgroup(p.pid)
    with open(os.path.join(cgroup, "cgroup.procs")) as f:
        assert set(_pids_with(marker.encode())) <= {int(x) for x in f.read().split()}
    for pid in _pids_with(marker.encode()):
        os.kill(pid, signal.SIGKILL)  # (its init: from outside, only SIGKILL ends it)
    assert p.wait(timeout=DEADLINE) == 128 + signal.SIGKILL
    assert not os.path.isdir(cgroup)


@pytest.mark.parametrize("redirect", [">&-", "2>&-", "<&-", ">&- 2>&-"])
@pytest.mark.parametrize("cmd", ["sh -c 'echo out; echo err >&2; exit 4'", "/nonexistent"])
def test_closed_stdio_is_pythons(cached, redirect, cmd):
    """With one of its fds closed, `pyrt` does what the Python CLI does with the
    sys.std* it then lacks (an error Python would print to stdout is handed over)."""
    line = f'"{PYRT}" run -i --rootfs "{cached}" {cmd} {redirect}'
    native = subprocess.run(["bash", "-c", line], capture_output=True, env=_env(), timeout=DEADLINE)
    py = subprocess.run(["bash", "-c", line], capture_output=True, env=_env(PYRT_CLI_PYTHON="1"), timeout=DEADLINE)
    assert (native.returncode, native.stdout, native.stderr) == (py.returncode, py.stdout, py.stderr)


@pytest.mark.parametrize("python", [False, True], ids=["native", "python"])
def test_sigint_ignored_when_started_stays_ignored(cached, python):
    """Without --sig-proxy, SIGINT is Python's KeyboardInterrupt only where it was not
    ignored when `pyrt` started (a background job's): then it changes nothing."""
    p = subprocess.Popen([PYRT, "run", "--rootfs", cached, "--sig-proxy", "false", "sh", "-c",
                          "echo ready; sleep 0.5; echo done"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_env(**({"PYRT_CLI_PYTHON": "1"} if python else {})),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=DEADLINE)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, out) == (0, b"done\n")
