"""pyrt-runtime under a rootless engine: rootless podman (and containerd under
RootlessKit) run the OCI runtime as root of the user namespace they made, not as
the ordinary user. There the runtime keeps its state in $XDG_RUNTIME_DIR (as runc
and crun do: /run is the host root's), takes the host root's directories (seen as
the overflow uid) as root's, and treats the host's cgroups as an ordinary user
does: no device cgroup, a cgroup only in a delegated subtree."""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import pytest

PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture
def runtime_dir(user, runtime_bin):
    """pyrt-runtime as installed, in a directory of the user's with a python3
    beside it that imports this pyrt (the interpreter the runtime hands create
    over to, as it does beside any installation)."""
    d = user.mkdir("rt", 0o755)
    exe = os.path.join(d, "pyrt-runtime")
    shutil.copy(os.path.realpath(runtime_bin), exe)
    env = "".join(f"export {k}='{v}'\n" for k, v in user.env.items() if k in ("PYTHONPATH", "LD_LIBRARY_PATH"))
    with open(os.path.join(d, "python3"), "w") as f:
        f.write(f"#!/bin/sh\n{env}exec {user.python} \"$@\"\n")
    for name in ("pyrt-runtime", "python3"):
        os.chmod(os.path.join(d, name), 0o755)
    return exe


@pytest.fixture
def rootless_podman(user, runtime_dir, rootfs, rootfs_kind):
    """podman as the test user (rootless: it runs the runtime as root of its user
    namespace), its store in the user's directories, pyrt-runtime its runtime and a
    busybox image imported from the test rootfs. Its pause process (which keeps
    that user namespace) is killed by its pid at the end."""
    exe = shutil.which("podman")
    if exe is None:
        pytest.skip("podman is not installed")
    if rootfs_kind != "busybox":
        pytest.skip("the podman tests need the busybox rootfs")
    runroot = f"/dev/shm/pyrt-prl-{os.getpid()}"  # podman wants a run root of at most 50 characters
    os.mkdir(runroot, 0o700)
    os.chown(runroot, user.uid, user.gid)
    cmd = [exe, "--root", user.mkdir("u/home/podman"), "--runroot", runroot, "--runtime", runtime_dir,
           "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--log-level", "error"]
    tar = os.path.join(user.mkdir("img", 0o755), "busybox.tar")
    with tarfile.open(tar, "w") as t:
        t.add(rootfs, arcname=".")
    os.chmod(tar, 0o644)

    def run(*args, timeout=120):
        return user.run(cmd + list(args), timeout=timeout)
    try:
        r = run("import", tar, "localhost/busybox:test")
        if r.returncode != 0:
            pytest.skip(f"rootless podman does not work here: {r.stderr.decode()[-300:]}")
        yield run
    finally:
        run("rm", "--all", "--force", "--time", "0")
        pid_file = os.path.join(user.runtime_dir, "libpod", "tmp", "pause.pid")
        try:
            with open(pid_file) as f:
                os.kill(int(f.read().strip()), 9)
        except (OSError, ValueError):
            pass
        # podman's layers hold files of the user's subordinate ids, some read-only
        subprocess.run(["chmod", "-R", "u+rwX", user.base], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)


def test_rootless_podman_runs_a_container(rootless_podman, user):
    r = rootless_podman("run", "--rm", "--network", "none", *PODMAN_ULIMITS, "localhost/busybox:test",
                        "sh", "-c", "echo hello $(id -u); cat /proc/self/uid_map | wc -l; exit 3")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.decode().split()
    assert lines[:2] == ["hello", "0"]
    assert int(lines[2]) >= 1  # the engine's user namespace
    # the runtime's state was kept in the user's runtime directory, and is gone
    state = os.path.join(user.runtime_dir, "pyrt-runtime")
    assert os.path.isdir(state) and os.listdir(state) == []
    assert os.stat(state).st_uid == user.uid


def test_rootless_podman_detached_exec_stop(rootless_podman):
    r = rootless_podman("run", "-d", "--name", "rl", "--network", "none", *PODMAN_ULIMITS,
                        "localhost/busybox:test", "sleep", "300")
    assert r.returncode == 0, r.stderr
    r = rootless_podman("exec", "rl", "sh", "-c", "echo in $(hostname)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("in ")
    r = rootless_podman("inspect", "--format", "{{.State.Status}}", "rl")
    assert r.stdout.decode().strip() == "running"
    assert rootless_podman("stop", "-t", "1", "rl").returncode == 0
    r = rootless_podman("inspect", "--format", "{{.State.Status}}", "rl")
    assert r.stdout.decode().strip() == "exited"
    assert rootless_podman("rm", "rl").returncode == 0


@pytest.mark.parametrize("side", ["native", "python"])
def test_root_of_a_user_namespace_keeps_state_in_xdg_runtime_dir(user, runtime_dir, side):
    """`unshare -r` makes the user root of a user namespace, as a rootless engine
    does: the default state directory is $XDG_RUNTIME_DIR/pyrt-runtime, made there
    although its ancestors (the host root's, on /dev/shm) show as the overflow uid."""
    argv = [runtime_dir, "list"] if side == "native" else [user.python, "-m", "pyrt.cli.oci_runtime", "list"]
    r = user.run(["unshare", "-r", *argv])
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(os.path.join(user.runtime_dir, "pyrt-runtime"))


@pytest.mark.parametrize("side", ["native", "python"])
def test_root_of_a_user_namespace_refuses_a_state_dir_it_does_not_own(user, runtime_dir, tmp_shm, side):
    """Attack: $XDG_RUNTIME_DIR pointing at a directory of someone else's (root's
    here, which the user namespace shows as the overflow uid, not as its root):
    its pyrt-runtime is not taken as the user's own state directory."""
    other = os.path.join(tmp_shm, "others")
    os.makedirs(os.path.join(other, "pyrt-runtime"), mode=0o755)
    os.chmod(other, 0o755)
    argv = [runtime_dir, "list"] if side == "native" else [user.python, "-m", "pyrt.cli.oci_runtime", "list"]
    r = user.run(["unshare", "-r", *argv], env={"XDG_RUNTIME_DIR": other})
    assert r.returncode != 0
    assert b"not by you" in r.stderr, r.stderr
    assert len(r.stderr.decode().strip().splitlines()) == 1


# -- native create as root of a user namespace, against the Python implementation --------

# What one side does as root of a fresh user namespace (`unshare -r`, as a rootless
# engine runs the runtime): create (its debug lines say whether it was handed over),
# the record it wrote, the state, then delete --force and what is left.
_SCRIPT = r'''
rt="$1"; out="$2"; root="$2/state"; bundle="$3"; id="$4"
"$rt" --root "$root" --debug create --bundle "$bundle" "$id" </dev/null >/dev/null 2>"$out/create.err"
echo $? > "$out/rc"
cat "$root/$id/state.json" > "$out/rec.json" 2>/dev/null || echo "{}" > "$out/rec.json"
"$rt" --root "$root" state "$id" > "$out/state.json" 2>/dev/null || echo "{}" > "$out/state.json"
"$rt" --root "$root" delete --force "$id" >/dev/null 2>&1
ls "$root" > "$out/left" 2>/dev/null || true
'''


def _rootless_config(user, runtime_dir, rootfs, edit):
    """A config as rootless podman writes it: `spec --rootless` without its user
    namespace (the engine's is already made), the test rootfs, `sleep`."""
    import json
    r = user.run([runtime_dir, "spec", "--rootless", "--bundle", user.mkdir(f"b{len(os.listdir(user.base))}",
                                                                            0o755)], check=True)
    bundle = r.args[-1]
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    lnx = cfg["linux"]
    lnx["namespaces"] = [n for n in lnx["namespaces"] if n["type"] != "user"]
    lnx.pop("uidMappings", None)
    lnx.pop("gidMappings", None)
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["args"] = ["sleep", "100"]
    cfg["process"]["terminal"] = False
    if edit:
        edit(cfg)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return bundle


def _side(user, runtime_dir, bundle, python):
    import json
    out = user.mkdir(f"out-{'py' if python else 'c'}-{os.path.basename(bundle)}")
    cid = "rl-" + os.path.basename(bundle)
    env = {"PYRT_RUNTIME_PYTHON": "1"} if python else {}
    user.run(["unshare", "-r", "sh", "-c", _SCRIPT, "sh", runtime_dir, out, bundle, cid], env=env, check=True)

    def read(name):
        with open(os.path.join(out, name)) as f:
            return f.read()
    rec = json.loads(read("rec.json"))
    for k in ("created", "pid", "start_time", "id", "bundle"):
        rec.pop(k, None)
    text = read("create.err")
    err = [ln.replace(cid, "ID") for ln in text.splitlines() if "debug:" not in ln]
    return (int(read("rc")), err, rec, json.loads(read("state.json")).get("status"), "handed over" in text,
            read("left").split())


def _res(**kw):
    def edit(cfg):
        cfg["linux"]["resources"] = kw
    return edit


def _cgpath(path):
    def edit(cfg):
        cfg["linux"]["cgroupsPath"] = path
    return edit


NS_ROOT_CASES = [
    ("podman-shape", None),
    ("devices-only", _res(devices=[{"allow": False, "access": "rwm"}])),
    ("memory-limit", _res(memory={"limit": 1 << 26})),
    ("pids-limit", _res(pids={"limit": 10})),
    ("relative-path", _cgpath("a/b")),
    ("absolute-path", _cgpath("/pyrt-test/x")),
    ("slice-path", _cgpath("user.slice:x:y")),
    ("dotdot-path", _cgpath("a/../b")),
]


@pytest.mark.parametrize("name,edit", NS_ROOT_CASES, ids=[c[0] for c in NS_ROOT_CASES])
def test_root_of_a_user_namespace_native_and_python_agree(user, runtime_dir, rootfs, name, edit):
    """Created natively as root of a user namespace (no hand-over) with the same
    outcome as the Python implementation: exit status, error line, state.json,
    state; no cgroup without a delegated subtree, a limit refused in one line
    saying how to get one; nothing left after delete."""
    bundle = _rootless_config(user, runtime_dir, rootfs, edit)
    n = _side(user, runtime_dir, bundle, python=False)
    p = _side(user, runtime_dir, bundle, python=True)
    assert not n[4], f"the native create handed over: {n[1]}"
    assert n[:4] == p[:4]
    assert n[5] == p[5] == []  # the state directories are empty again
    if name in ("memory-limit", "pids-limit"):
        assert n[0] == 1 and len(n[1]) == 1 and "systemd delegates" in n[1][0] and user.name in n[1][0], n[1]
    if name in ("podman-shape", "devices-only", "relative-path"):
        assert n[0] == 0 and n[3] == "created" and "cgroup_name" not in n[2], n


# -- the scope a rootless engine names (--systemd-cgroup under systemd) -------------------
# podman reads that scope as the container's cgroup (its stats: PIDs, memory, the
# limit). The guest suite (tests/vm/guest/test_rootless_podman.py) runs it under
# systemd; here, what can be seen without systemd.

def test_engine_scope_gets_the_limits_as_unit_properties(monkeypatch):
    """The memory and pids limits go to StartTransientUnit as MemoryMax and
    TasksMax (systemd writes them on the scope); no limit, no property."""
    from pyrt.cgroups import systemd as cgroup_systemd
    from pyrt.errors import CgroupError
    from pyrt.ocirt.operations import _engine_scope_limits

    props = _engine_scope_limits({"memory": {"limit": 64 << 20, "swap": 128 << 20}, "pids": 50,
                                  "cpu": {"shares": 2}})
    assert props == (("MemoryMax", "t", 64 << 20), ("TasksMax", "t", 50))
    assert _engine_scope_limits({"memory": {"limit": -1}, "pids": -1}) == ()
    assert _engine_scope_limits({}) == ()
    calls = []

    def fake_busctl(method, signature, *args):
        calls.append((method, args))
        raise CgroupError(5, f"systemd {method}", args[0], "no bus here")
    monkeypatch.setattr(cgroup_systemd, "_busctl", fake_busctl)
    with pytest.raises(CgroupError):
        cgroup_systemd.start_unit("libpod-x.scope", "user.slice", "/nonexistent", "t", properties=props)
    method, args = calls[0]
    assert method == "StartTransientUnit" and args[2] == 6
    assert args[-7:] == ("MemoryMax", "t", 64 << 20, "TasksMax", "t", 50, 0)
    assert [c[0] for c in calls] == ["StartTransientUnit", "StopUnit"]  # undone, its placeholder killed


def test_drop_placeholder_leaves_the_container_alone(tmp_path):
    """The placeholder in the scope's supervisor/ is killed and its cgroup
    removed; the container's leaf beside it and its process are untouched; a
    scope without one is no error."""
    from pyrt.cgroups import systemd as cgroup_systemd
    from pyrt.cgroups.layout import layout
    unified = layout().unified
    if os.geteuid() != 0 or not unified:
        pytest.skip("needs root and a cgroup2 hierarchy")
    scope = f"pyrt-test-drop-{os.getpid()}.scope"
    base = os.path.join(unified, scope)
    procs = []
    try:
        for leaf in ("supervisor", "container"):
            os.makedirs(os.path.join(base, leaf))
            p = subprocess.Popen(["sleep", "60"])
            procs.append(p)
            with open(os.path.join(base, leaf, "cgroup.procs"), "w") as f:
                f.write(str(p.pid))
        cgroup_systemd.drop_placeholder(scope, unified)
        assert procs[0].wait(timeout=10) == -9
        assert not os.path.exists(os.path.join(base, "supervisor"))
        with open(os.path.join(base, "container", "cgroup.procs")) as f:
            assert f.read().split() == [str(procs[1].pid)]
        assert procs[1].poll() is None
        cgroup_systemd.drop_placeholder(scope, unified)  # gone already: nothing to do
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for leaf in ("supervisor", "container", ""):
            try:
                os.rmdir(os.path.join(base, leaf))
            except FileNotFoundError:
                pass
