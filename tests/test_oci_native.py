"""The native `pyrt-runtime` (csrc/bin/pyrt-runtime.c, csrc/rt_*.c): what is its
own beyond the behaviour tests/test_oci_runtime.py and test_oci_conformance.py
check through it. Its documents equal the Python implementation's (features,
spec), both sides work on each other's containers (one state directory format),
the command line reads as runc's, and hostile input is refused or ignored
without touching anything outside the state root: malformed records, ids that
climb out, a symlink planted as a container, a reused pid.

Records written by hand here describe processes this test started itself (a
`sleep` it reaps), never anyone else's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import helpers


@pytest.fixture
def rt(oci_rt):
    return oci_rt


def _python_runtime(root, *args):
    """The same command done by the Python implementation."""
    return subprocess.run([sys.executable, "-P", "-m", "pyrt.cli.oci_runtime", "--root", root, *args],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def sleeper():
    """A process of our own to point records at; killed and reaped after the test."""
    p = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL)
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def _start_time(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def _plant(root, cid, rec=None, raw=None):
    """A container directory written by hand: the record `rec` (or raw bytes)."""
    d = os.path.join(root, cid)
    os.makedirs(d, mode=0o700)
    with open(os.path.join(d, "state.json"), "wb") as f:
        f.write(raw if raw is not None else json.dumps(rec).encode())
    return d


def _rec(cid, pid, start_time, **extra):
    rec = {"id": cid, "status": "created", "bundle": "/nonexistent", "rootfs": "/nonexistent/rootfs",
           "created": "2024-01-02T03:04:05.000000000Z", "owner": "", "annotations": {}, "oci_version": "1.1.0",
           "hooks": None, "process": {}, "pid": pid, "start_time": start_time, "started": True, "seccomp": None}
    rec.update(extra)
    return rec


def _one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- it is the native program ------------------------------------------------------------------

def test_installed_runtime_is_native(runtime_bin):
    with open(runtime_bin, "rb") as f:
        assert f.read(4) == b"\x7fELF"


# -- the documents equal the Python implementation's -------------------------------------------

def test_features_equal_the_python_implementation(runtime_bin):
    from pyrt.ocirt.operations import features
    native = json.loads(subprocess.run([runtime_bin, "features"], capture_output=True, check=True).stdout)
    assert native == features()


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_equals_the_python_implementation(runtime_bin, tmp_shm, rootless):
    from pyrt.ocirt.defaults import default_config
    subprocess.run([runtime_bin, "spec", "--bundle", tmp_shm] + (["--rootless"] if rootless else []), check=True)
    with open(os.path.join(tmp_shm, "config.json")) as f:
        text = f.read()
    assert json.loads(text) == default_config(rootless=rootless)
    assert text.startswith("{\n\t\"ociVersion\": ") and text.endswith("}\n")  # as json.dump(indent="\t")


def test_spec_never_writes_through_a_planted_symlink(runtime_bin, tmp_shm):
    target = os.path.join(tmp_shm, "victim")
    os.symlink(target, os.path.join(tmp_shm, "config.json"))  # dangling: open would create the target
    p = subprocess.run([runtime_bin, "spec", "--bundle", tmp_shm], capture_output=True)
    assert p.returncode == 1 and "exists" in _one_line(p.stderr)
    assert not os.path.exists(target)


def test_version(runtime_bin):
    from pyrt import __version__
    out = subprocess.run([runtime_bin, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == f"pyrt-runtime version {__version__}"


# -- the command line ------------------------------------------------------------------------

def test_help_as_a_new_user_reads_it(runtime_bin):
    p = subprocess.run([runtime_bin, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("usage: pyrt-runtime")
    assert "create, run and exec are done by pyrt's Python implementation" in p.stdout
    none = subprocess.run([runtime_bin], capture_output=True, text=True)
    assert none.returncode == 2 and none.stderr.startswith("usage:")
    for cmd in ("state", "kill", "delete", "ps", "list", "spec", "create", "run", "exec"):
        p = subprocess.run([runtime_bin, cmd, "--help"], capture_output=True, text=True)
        assert p.returncode == 0 and f" {cmd} " in p.stdout.splitlines()[0], (cmd, p.stdout, p.stderr)


def test_unknown_options_and_commands(rt):
    p = rt("state", "--bogus", "x")
    assert p.returncode == 2 and _one_line(p.stderr) == "pyrt-runtime: state: unknown option --bogus"
    p = rt("--bogus", "state", "x")
    assert p.returncode == 2 and p.stderr.startswith(b"pyrt-runtime: unknown option --bogus\nusage:")
    p = rt("frobnicate")
    assert p.returncode == 2 and "unknown command 'frobnicate'" in _one_line(p.stderr)
    p = rt("state")
    assert p.returncode == 2 and "state takes a container id" in _one_line(p.stderr)
    p = rt("state", "a", "b")
    assert p.returncode == 2
    p = rt("kill", "x", "NOPE")
    assert p.returncode == 2 and "invalid signal 'NOPE'" in _one_line(p.stderr)
    p = rt("list", "--format", "yaml")
    assert p.returncode == 2
    p = rt("--log-format", "xml", "list")
    assert p.returncode == 2 and b"--log-format" in p.stderr
    p = rt("kill", "x", "--all", glob=("--root",))  # --root swallows "kill": no command is left
    assert p.returncode != 0


def test_option_forms_as_runc(rt, make_bundle, tmp_shm):
    """-opt and --opt, --opt=value, flags with =true/=false."""
    cid = rt.new_id()
    assert rt.create(cid, make_bundle(["sleep", "1000"])).returncode == 0
    alt = subprocess.run([rt.binary, f"--root={rt.root}", "state", cid], capture_output=True)
    assert alt.returncode == 0 and json.loads(alt.stdout)["status"] == "created"
    alt = subprocess.run([rt.binary, "-root", rt.root, "state", cid], capture_output=True)
    assert alt.returncode == 0
    assert rt("start", cid).returncode == 0
    assert rt("delete", "--force=false", cid).returncode == 1  # running: refused
    assert rt("kill", "-all=true", cid, "SIGKILL").returncode == 0
    helpers.wait_for(lambda: rt.state(cid)["status"] == "stopped", what="the container to stop")
    assert rt("delete", "-force", cid).returncode == 0


def test_log_file_formats(rt, tmp_shm):
    log = os.path.join(tmp_shm, "log.txt")
    assert rt("state", "nosuch", glob=("--log", log)).returncode == 1
    assert rt("state", "nosuch", glob=("--log", log, "--log-format=json")).returncode == 1
    with open(log) as f:
        text, js = f.read().splitlines()
    assert text.startswith('time="') and ' level=error msg="container \'nosuch\' does not exist' in text
    rec = json.loads(js)
    assert rec["level"] == "error" and "nosuch" in rec["msg"] and rec["time"].endswith("Z")


def test_signal_names_and_numbers(rt, make_bundle):
    cid = rt.new_id()
    rtmin1 = int(signal.SIGRTMIN) + 1
    bundle = make_bundle(["sh", "-c", f"trap 'echo usr1' USR1; trap 'echo rt; exit 3' {rtmin1}; echo ready; "
                                      "while :; do sleep 0.05; done"])
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    helpers.wait_for(lambda: rt.output(cid, bundle).startswith(b"ready"), what="the traps")  # pid 1 ignores others
    for n, sig in enumerate(("usr1", "SIGUSR1", str(int(signal.SIGUSR1))), 1):
        assert rt("kill", cid, sig).returncode == 0, sig  # one at a time: pending ones would merge
        helpers.wait_for(lambda: rt.output(cid, bundle).count(b"usr1") == n, what=f"USR1 trap {n}")
    assert rt("kill", cid, "RTMIN+1").returncode == 0
    helpers.wait_for(lambda: rt.state(cid)["status"] == "stopped", what="the container to stop")
    assert rt.output(cid, bundle).endswith(b"rt\n")
    assert rt("kill", cid, "KILL").returncode == 1  # stopped: not running
    assert rt("delete", cid).returncode == 0


def test_ps_table_and_json(rt, make_bundle):
    cid = rt.new_id()
    assert rt.create(cid, make_bundle(["sleep", "1000"])).returncode == 0
    assert rt("start", cid).returncode == 0
    pid = rt.state(cid)["pid"]
    p = rt("ps", "--format", "json", cid)
    assert p.returncode == 0 and json.loads(p.stdout) == [pid]

    def comm():
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    # start returns once the process was let go: its exec of sleep may still be ahead
    helpers.wait_for(lambda: comm() == "sleep", what="the container's exec")
    p = rt("ps", cid, "-o", "pid,comm")
    lines = p.stdout.decode().splitlines()
    assert p.returncode == 0 and lines[0].split() == ["PID", "COMMAND"] and lines[1].split() == [str(pid), "sleep"]
    assert len(lines) == 2
    assert rt("delete", "--force", cid).returncode == 0


# -- one state directory for both implementations ----------------------------------------------

def test_python_and_native_work_on_each_others_containers(rt, make_bundle):
    cid = rt.new_id()
    assert rt.create(cid, make_bundle(["sleep", "1000"])).returncode == 0
    native = rt.state(cid)
    py = json.loads(_python_runtime(rt.root, "state", cid).stdout)
    assert native == py and native["status"] == "created"
    assert rt("start", cid).returncode == 0  # native start: the Python side sees it started
    assert json.loads(_python_runtime(rt.root, "state", cid).stdout)["status"] == "running"
    assert _python_runtime(rt.root, "pause", cid).returncode == 0
    assert rt.state(cid)["status"] == "paused"
    assert rt("resume", cid).returncode == 0
    assert json.loads(_python_runtime(rt.root, "list", "--format", "json").stdout) == \
        json.loads(rt("list", "--format", "json").stdout)
    assert rt("kill", cid, "KILL").returncode == 0
    helpers.wait_for(lambda: rt.state(cid)["status"] == "stopped", what="the container to stop")
    p = _python_runtime(rt.root, "delete", cid)
    assert p.returncode == 0, p.stderr
    assert rt("state", cid).returncode == 1


def test_start_never_follows_a_planted_fifo_symlink(rt, make_bundle, tmp_shm):
    cid = rt.new_id()
    assert rt.create(cid, make_bundle(["sleep", "1000"])).returncode == 0
    other = os.path.join(tmp_shm, "other.fifo")
    os.mkfifo(other)
    fifo = os.path.join(rt.root, cid, "exec.fifo")
    os.unlink(fifo)
    os.symlink(other, fifo)
    p = rt("start", cid)
    assert p.returncode == 1 and "its process is gone" in _one_line(p.stderr)
    assert rt.state(cid)["status"] == "created"
    assert rt("delete", cid).returncode == 0


# -- hostile input -----------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ["../x", "a/b", ".", "..", "", "x\ny", "x" * 300],
                         ids=["up", "slash", "dot", "dotdot", "empty", "newline", "long"])
def test_hostile_ids_are_refused(rt, tmp_shm, cid):
    os.makedirs(rt.root, exist_ok=True)
    outside = os.path.join(tmp_shm, "x")
    os.mkdir(outside)
    with open(os.path.join(outside, "state.json"), "w") as f:
        json.dump({"pid": 1, "start_time": _start_time(1)}, f)
    for args in (("state", cid), ("kill", cid, "KILL"), ("delete", "--force", cid), ("start", cid),
                 ("pause", cid), ("ps", cid)):
        p = rt(*args)
        assert p.returncode in (1, 2), (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
    assert os.path.exists(os.path.join(outside, "state.json"))


def test_a_symlink_in_the_root_is_no_container(rt, tmp_shm, sleeper):
    """root/evil -> a directory elsewhere holding a record of a live process: no
    command follows it; delete --force removes the link, never its target."""
    os.makedirs(rt.root, exist_ok=True)
    elsewhere = os.path.join(tmp_shm, "elsewhere")
    os.mkdir(elsewhere)
    with open(os.path.join(elsewhere, "state.json"), "w") as f:
        json.dump(_rec("evil", sleeper.pid, _start_time(sleeper.pid)), f)
    os.symlink(elsewhere, os.path.join(rt.root, "evil"))
    for args in (("state", "evil"), ("kill", "evil", "KILL"), ("delete", "evil"), ("start", "evil"),
                 ("pause", "evil")):
        p = rt(*args)
        assert p.returncode == 1 and "does not exist" in _one_line(p.stderr), (args, p.stderr)
    assert rt("list", "--quiet").stdout == b""
    assert rt("delete", "--force", "evil").returncode == 0
    assert not os.path.lexists(os.path.join(rt.root, "evil"))
    assert os.path.exists(os.path.join(elsewhere, "state.json")) and sleeper.poll() is None


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe", b'"a string"', b"{" * 100000,
                                 b'{"a":' * 100000], ids=["bad", "array", "empty", "bytes", "string", "open",
                                                          "deep"])
def test_malformed_records(rt, raw):
    os.makedirs(rt.root, exist_ok=True)
    d = _plant(rt.root, "broken", raw=raw)
    p = rt("state", "broken")
    assert p.returncode == 1 and "broken state file" in _one_line(p.stderr)
    assert rt("delete", "broken").returncode == 1 and os.path.isdir(d)  # left as it was
    assert rt("list", "--quiet").returncode == 0  # a broken one is not listed, not fatal
    p = rt("delete", "--force", "broken")  # --force: it goes (nothing in it is acted on)
    assert p.returncode == 0 and not os.path.exists(d)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_a_record_that_is_no_file(rt, tmp_shm, kind):
    """state.json as a FIFO (which would block a reader at open), a symlink (to a
    record elsewhere) or a directory: refused at once as broken, never followed."""
    os.makedirs(rt.root, exist_ok=True)
    d = os.path.join(rt.root, "odd")
    os.mkdir(d)
    rec = os.path.join(d, "state.json")
    if kind == "fifo":
        os.mkfifo(rec)
    elif kind == "symlink":
        other = os.path.join(tmp_shm, "other.json")
        with open(other, "w") as f:
            json.dump(_rec("odd", 1, 0), f)
        os.symlink(other, rec)
    else:
        os.mkdir(rec)
    p = rt("state", "odd", timeout=30)
    assert p.returncode == 1 and "broken state file" in _one_line(p.stderr)
    p = _python_runtime(rt.root, "state", "odd")  # the Python side alike
    assert p.returncode == 1 and "broken state file" in _one_line(p.stderr)
    assert rt("delete", "--force", "odd", timeout=30).returncode == 0 and not os.path.exists(d)


def test_records_of_the_wrong_shape_are_not_trusted(rt, tmp_shm, sleeper):
    """Members of other types or that point outside: a stopped container, no cgroup
    followed out of the hierarchies, no hook run, nothing killed."""
    os.makedirs(rt.root, exist_ok=True)
    marker = os.path.join(tmp_shm, "hook-ran")
    rec = _rec("odd", str(sleeper.pid), None, cgroup_name="../../../../tmp", cgroup_parent="../..",
               annotations=[1], hooks={"poststop": "not a list"}, status=7)
    _plant(rt.root, "odd", rec)
    st = rt.state("odd")
    assert st["status"] == "stopped" and st["pid"] == 0 and st["annotations"] == [1]
    deep = json.dumps(_rec("deep", 0, 0, annotations="X")).replace('"X"', "[" * 10000 + "]" * 10000)
    _plant(rt.root, "deep", raw=deep.encode())
    p = rt("state", "deep")  # too deep to print whole: cut, never a crash
    assert p.returncode in (0, 1) and p.returncode == 0 or _one_line(p.stderr)
    assert rt("delete", "deep").returncode == 0
    assert rt("kill", "odd", "KILL").returncode == 1
    assert rt("delete", "odd").returncode == 0
    assert sleeper.poll() is None and not os.path.exists(marker)


def test_a_reused_pid_is_never_the_container(rt, sleeper):
    """A record whose pid now belongs to another process (its start time differs):
    stopped, pid 0; kill refuses; delete kills nothing."""
    os.makedirs(rt.root, exist_ok=True)
    _plant(rt.root, "reused", _rec("reused", sleeper.pid, _start_time(sleeper.pid) - 1))
    st = rt.state("reused")
    assert st["status"] == "stopped" and st["pid"] == 0
    p = rt("kill", "reused", "KILL")
    assert p.returncode == 1 and "is not running" in _one_line(p.stderr)
    assert rt("kill", "--all", "reused", "KILL").returncode == 1
    assert rt("delete", "--force", "reused").returncode == 0
    assert sleeper.poll() is None


def test_a_live_record_of_our_own_process(rt, sleeper):
    """The same record with the right start time: running (no cgroup: its pid is
    all `ps` has), and `delete --force` kills it."""
    os.makedirs(rt.root, exist_ok=True)
    _plant(rt.root, "mine", _rec("mine", sleeper.pid, _start_time(sleeper.pid)))
    st = rt.state("mine")
    assert st["status"] == "running" and st["pid"] == sleeper.pid
    assert json.loads(rt("ps", "--format", "json", "mine").stdout) == [sleeper.pid]
    p = rt("pause", "mine")
    assert p.returncode == 1 and "has no cgroup to freeze" in _one_line(p.stderr)
    assert rt("delete", "mine").returncode == 1  # running: refused
    assert rt("delete", "--force", "mine").returncode == 0
    assert sleeper.wait(timeout=30) == -signal.SIGKILL


def test_poststop_hook_failure_warns_and_delete_goes_on(rt, tmp_shm):
    """poststop hooks run with the state on stdin; one that fails is a warning."""
    os.makedirs(rt.root, exist_ok=True)
    out = os.path.join(tmp_shm, "poststop.json")
    hooks = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}; exit 3"]},
                          {"path": "/nonexistent/hook"},
                          {"path": "/bin/sh", "args": ["sh", "-c", "sleep 30"], "timeout": 1}]}
    _plant(rt.root, "hooked", _rec("hooked", 0, 0, hooks=hooks, status="created"))
    p = rt("delete", "hooked")
    assert p.returncode == 0
    err = p.stderr.decode()
    assert "poststop hook /bin/sh exited with status 3" in err
    assert "poststop hook /nonexistent/hook: No such file or directory" in err
    assert "poststop hook /bin/sh: timed out after 1s" in err
    with open(out) as f:
        state = json.load(f)
    assert state["id"] == "hooked" and state["status"] == "stopped" and state["pid"] == 0
    assert not os.path.exists(os.path.join(rt.root, "hooked"))


def test_create_is_handed_to_python_even_without_python_on_path(rt, make_bundle):
    """create runs through the python next to pyrt-runtime, whatever PATH says."""
    cid = rt.new_id()
    bundle = make_bundle(["true"])
    with open(os.path.join(bundle, "create.err"), "w+b") as err:  # files: the container holds them
        rc = subprocess.run([rt.binary, "--root", rt.root, "create", "--bundle", bundle, cid],
                            env={"PATH": "/nonexistent"}, stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                            timeout=120).returncode
        err.seek(0)
        assert rc == 0, err.read()
    assert rt.state(cid)["status"] == "created"
    assert rt("delete", cid).returncode == 0


# -- as an ordinary user ---------------------------------------------------------------------------

def test_an_ordinary_users_state_directory(user, runtime_bin):
    """Its default state directory is $XDG_RUNTIME_DIR/pyrt-runtime, made 0700; one
    owned by someone else is refused in one line, never used."""
    import shutil
    import stat
    binary = os.path.join(user.base, "pyrt-runtime")  # a copy the user can reach (static: no libraries)
    shutil.copy2(runtime_bin, binary)
    os.chmod(binary, 0o755)
    p = user.run([binary, "list", "--quiet"])
    assert p.returncode == 0 and p.stdout == b"", p.stderr
    st = os.stat(os.path.join(user.runtime_dir, "pyrt-runtime"))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700)
    p = user.run([binary, "state", "nosuch"])
    assert p.returncode == 1 and "does not exist (in " + os.path.join(user.runtime_dir, "pyrt-runtime") \
        in _one_line(p.stderr)
    os.rmdir(os.path.join(user.runtime_dir, "pyrt-runtime"))
    os.mkdir(os.path.join(user.runtime_dir, "pyrt-runtime"), 0o755)  # root's
    p = user.run([binary, "list"])
    assert p.returncode == 1 and "is owned by uid 0, not by you" in _one_line(p.stderr)
