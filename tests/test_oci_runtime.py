"""pyrt-runtime, pyrt's OCI runtime command line (pyrt/cli/oci_runtime.py), driven directly
on bundles built here (the test rootfs, a config from `pyrt-runtime spec` edited): the
command line itself, and the life cycle (create/start/state/kill/delete, pause, state kept
across processes). The config's fields are in test_oci_config.py, hooks, terminals and
exec in test_oci_process.py, podman and containerd driving it in test_oci_engines.py.

Containers made by `pyrt-runtime create` are not this process's children (the
container's process outlives create and is adopted by init, as an engine's
subreaper would adopt it); every test force-deletes what it made, also on failure.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from ocitools import TIMEOUT
from ocitools import wait_until, cmdline, runtime_cgroup_dirs
from ocitools import rt  # noqa: F401,F811 (fixtures)


# -- the command line itself ---------------------------------------------------------------

def test_version_features_and_spec(runtime_bin, tmp_shm):
    out = subprocess.run([runtime_bin, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("pyrt-runtime version ") and "spec: 1." in out
    feats = json.loads(subprocess.run([runtime_bin, "features"], capture_output=True, check=True).stdout)
    assert feats["ociVersionMin"].startswith("1.") and "createRuntime" in feats["hooks"]
    assert "network" in feats["linux"]["namespaces"] and "CAP_SYS_ADMIN" in feats["linux"]["capabilities"]
    assert "rbind" in feats["mountOptions"]
    subprocess.run([runtime_bin, "spec", "--bundle", tmp_shm], check=True)
    with open(os.path.join(tmp_shm, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["ociVersion"].startswith("1.") and cfg["root"]["path"] == "rootfs"
    assert {m["type"] for m in cfg["mounts"]} >= {"proc", "tmpfs", "devpts", "mqueue", "sysfs", "cgroup"}
    again = subprocess.run([runtime_bin, "spec", "--bundle", tmp_shm], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr


def test_usage_errors(rt):
    p = rt("nosuchcommand")
    assert p.returncode != 0 and b"unknown command" in p.stderr
    p = rt("state", "nosuch")
    assert p.returncode == 1 and b"does not exist" in p.stderr
    p = rt("delete", "nosuch")
    assert p.returncode == 1
    assert rt("delete", "--force", "nosuch").returncode == 0  # as runc
    p = rt("create", "--bundle", "/nonexistent-bundle", "x1")
    assert p.returncode == 1 and b"config.json" in p.stderr


def test_log_file_json(rt, tmp_shm):
    log = os.path.join(tmp_shm, "log.json")
    p = rt("state", "nosuch", glob=("--log", log, "--log-format", "json"))
    assert p.returncode == 1
    with open(log) as f:
        rec = json.loads(f.readline())
    assert rec["level"] == "error" and "nosuch" in rec["msg"] and rec["time"].endswith("Z")


def test_systemd_cgroup_is_a_clear_error(rt, make_bundle):
    """--systemd-cgroup where systemd does not run the machine on pure cgroup2 (this
    host): one line saying why, nothing made. (Where it does: tests/vm/guest.)"""
    from pyrt.ocirt.spec import systemd_unavailable
    if systemd_unavailable() is None:
        pytest.skip("systemd runs this host: tests/vm/guest covers --systemd-cgroup")
    bundle = make_bundle(["true"], lambda c: c["linux"].update(cgroupsPath="machine.slice:pyrt:x"))
    cid = rt.new_id()
    p = rt("create", "--bundle", bundle, cid, glob=("--systemd-cgroup",))
    assert p.returncode == 1
    assert b"systemd cgroups are not available" in p.stderr and b"cgroupfs" in p.stderr
    assert len(p.stderr.strip().split(b"\n")) == 1
    assert rt("state", cid).returncode == 1


@pytest.mark.parametrize("cpath, want", [
    ("", ("system.slice", "pyrt-runtime-ID.scope")),
    ("machine.slice:libpod:abc", ("machine.slice", "libpod-abc.scope")),
    ("machine-pods.slice:crio:abc", ("machine-pods.slice", "crio-abc.scope")),
    (":pfx:", ("system.slice", "pfx-ID.scope")),
    ("user.slice::abc", ("user.slice", "abc.scope")),
    # refused: a path, a part that is not one unit-name word, a slice as the name
    ("/machine/abc", None), ("machine.slice:a:b:c", None), ("../x.slice:p:n", None),
    ("machine.slice:p:../../etc", None), ("machine.slice:p/q:n", None), ("machine:p:n", None),
    ("-.slice:p:n", None), ("a--b.slice:p:n", None), ("machine.slice:p:n.slice", None),
    ("machine.slice:p:n\n", None), ("machine.slice:p:" + "n" * 300, None), ("machine.slice:-x:n", None),
])
def test_systemd_cgroups_path(cpath, want):
    """--systemd-cgroup's cgroupsPath (slice:prefix:name, as runc and crun take it)
    becomes a slice and a scope unit of unit-name words only; anything else is
    refused naming the field."""
    from pyrt.cgroups.systemd import slice_path
    from pyrt.errors import ConfigError
    from pyrt.ocirt.spec import systemd_cgroups_path
    if want is None:
        with pytest.raises(ConfigError, match="linux.cgroupsPath"):
            systemd_cgroups_path(cpath, "ID")
    else:
        assert systemd_cgroups_path(cpath, "ID") == want
    assert slice_path("machine-pods-x.slice") == "machine.slice/machine-pods.slice/machine-pods-x.slice"


# -- lifecycle --------------------------------------------------------------------------------

def test_create_start_state_kill_delete(rt, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo started; exec sleep 1000"])
    cid = rt.new_id()
    pidfile = os.path.join(bundle, "pid")
    p = rt.create(cid, bundle, "--pid-file", pidfile)
    assert p.returncode == 0, p.stderr
    st = rt.state(cid)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == bundle
    assert st["ociVersion"].startswith("1.") and isinstance(st["annotations"], dict)
    pid = st["pid"]
    with open(pidfile) as f:
        assert int(f.read()) == pid
    # the process outlived create, set up, but the program has not started
    assert os.path.exists(f"/proc/{pid}") and b"sleep" not in cmdline(pid)
    assert rt.output(cid, bundle) == b""
    assert any(line.split()[0] == cid for line in rt("list").stdout.decode().splitlines()[1:])

    assert rt("start", cid).returncode == 0
    wait_until(lambda: b"sleep" in cmdline(pid), "the program to run")
    assert rt.state(cid)["status"] == "running"
    assert rt.output(cid, bundle) == b"started\n"
    again = rt("start", cid)
    assert again.returncode == 1 and b"running" in again.stderr
    assert json.loads(rt("ps", "--format", "json", cid).stdout) == [pid]
    listing = json.loads(rt("list", "--format", "json").stdout)
    assert [s["status"] for s in listing if s["id"] == cid] == ["running"]

    refused = rt("delete", cid)
    assert refused.returncode == 1 and b"--force" in refused.stderr
    assert rt.state(cid)["status"] == "running"

    assert rt("kill", cid, "KILL").returncode == 0
    wait_until(lambda: rt.state(cid)["status"] == "stopped", "the container to stop")
    assert rt.state(cid)["pid"] == 0
    assert rt("kill", cid).returncode == 1  # not running
    assert rt("delete", cid).returncode == 0
    assert rt("state", cid).returncode == 1
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert runtime_cgroup_dirs(cid) == []


def test_create_reports_setup_errors(rt, make_bundle):
    for args, edit, words in (
            (["/no/such/program"], None, [b"/no/such/program", b"No such file"]),
            (["true"], lambda c: c["process"].update(cwd="/no/such/dir"), [b"chdir", b"/no/such/dir"]),
            (["true"], lambda c: c["mounts"].append({"destination": "/srv", "type": "bind",
                                                     "source": "/no/such/source"}), [b"/no/such/source"]),
            (["true"], lambda c: c["process"].update(args=[]), [b"process.args"]),
            (["true"], lambda c: c["linux"].update(sysctl={"kernel.panic": "1"}), [b"kernel.panic"]),
    ):
        bundle = make_bundle(args, edit)
        cid = rt.new_id()
        p = rt.create(cid, bundle)
        assert p.returncode == 1, (args, p.stderr)
        for w in words:
            assert w in p.stderr, (w, p.stderr)
        assert rt("state", cid).returncode == 1
        assert not os.path.exists(os.path.join(rt.root, cid))
        assert runtime_cgroup_dirs(cid) == []


def test_run_exit_status_and_output(rt, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo out; echo err >&2; exit 5"])
    cid = rt.new_id()
    p = rt("run", "--bundle", bundle, cid)
    assert p.returncode == 5
    assert p.stdout == b"out\n" and p.stderr == b"err\n"
    assert rt("state", cid).returncode == 1  # run deletes what it made
    # killed from outside (pid 1 of its namespace ignores what it has no handler for)
    bundle = make_bundle(["sleep", "1000"])
    cid = rt.new_id()
    run = subprocess.Popen([rt.binary, "--root", rt.root, "run", "--bundle", bundle, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: rt("state", cid).returncode == 0 and rt.state(cid)["status"] == "running",
                  "the container to run")
        assert rt("kill", cid, "9").returncode == 0
        assert run.wait(TIMEOUT) == 128 + signal.SIGKILL
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_delete_force_running_and_kill_all(rt, make_bundle):
    bundle = make_bundle(["sh", "-c", "sleep 1000 & sleep 1000 & exec sleep 1000"])
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    wait_until(lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout)) == 3, "three processes")
    table = rt("ps", cid).stdout.decode().splitlines()
    assert "PID" in table[0] and len(table) == 4
    assert rt("kill", "--all", cid, "KILL").returncode == 0
    wait_until(lambda: rt.state(cid)["status"] == "stopped", "the container to stop")
    assert rt("delete", cid).returncode == 0

    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    pid = rt.state(cid)["pid"]
    assert rt("start", cid).returncode == 0
    assert rt("delete", "--force", cid).returncode == 0
    assert rt("state", cid).returncode == 1
    wait_until(lambda: b"sleep" not in cmdline(pid), "the process to go")
    assert runtime_cgroup_dirs(cid) == []


def test_delete_created_container(rt, make_bundle):
    bundle = make_bundle(["sleep", "1000"])
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    pid = rt.state(cid)["pid"]
    assert rt("delete", cid).returncode == 0  # a created container needs no --force (as runc)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or not cmdline(pid), "the process to go")


def test_pause_resume(rt, make_bundle):
    bundle = make_bundle(["sleep", "1000"])
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("pause", cid).returncode == 1  # created, not running
    assert rt("start", cid).returncode == 0
    assert rt("pause", cid).returncode == 0
    assert rt.state(cid)["status"] == "paused"
    assert rt("delete", cid).returncode == 1
    assert rt("resume", cid).returncode == 0
    assert rt.state(cid)["status"] == "running"
    assert rt("resume", cid).returncode == 1
    pid = rt.state(cid)["pid"]
    assert rt("pause", cid).returncode == 0
    assert rt("delete", "--force", cid).returncode == 0  # a frozen container goes too
    wait_until(lambda: b"sleep" not in cmdline(pid), "the process to go")
    assert runtime_cgroup_dirs(cid) == []


def test_state_survives_and_start_from_another_process(rt, make_bundle, tmp_shm):
    bundle = make_bundle(["sh", "-c", "echo hello from $(hostname)"],
                         lambda c: c.update(hostname="survivor"))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        rec = json.load(f)
    assert rec["pid"] == rt.state(cid)["pid"]
    # start from an unrelated process (a shell), as engines do
    subprocess.run(["sh", "-c", f'"{rt.binary}" --root "{rt.root}" start {cid}'], check=True)
    wait_until(lambda: rt.state(cid)["status"] == "stopped", "the container to finish")
    assert rt.output(cid, bundle) == b"hello from survivor\n"
