"""pyrt-runtime, pyrt's OCI runtime command line (pyrt/cli/oci_runtime.py): driven
directly through create/start/state/kill/delete on bundles built here (the test
rootfs, a config from `pyrt-runtime spec` edited), then end to end by podman
(`--runtime`, a private store on /dev/shm) and by containerd (`ctr run
--runc-binary`, a private containerd on a unix socket in a temporary directory).

Containers made by `pyrt-runtime create` are not this process's children (the
container's process outlives create and is adopted by init, as an engine's
subreaper would adopt it); every test force-deletes what it made, also on failure.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import uuid

import pytest

import helpers
from ocitools import TIMEOUT

@pytest.fixture
def rt(oci_rt):
    """The `pyrt-runtime` command on a state root of the test's own (conftest's `oci_rt`)."""
    return oci_rt


def _wait_for(cond, what, timeout=30.0):
    """Poll until cond() is true (a deadline for hangs, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _cgroup_dirs(name, parent="pyrt-runtime"):
    from pyrt.cgroups.cgroup import layout
    lay = layout()
    mounts = set(lay.v1.values()) | ({lay.unified} if lay.unified else set())
    return [os.path.join(m, parent, name) for m in mounts if os.path.isdir(os.path.join(m, parent, name))]


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
    assert os.path.exists(f"/proc/{pid}") and b"sleep" not in _cmdline(pid)
    assert rt.output(cid, bundle) == b""
    assert any(line.split()[0] == cid for line in rt("list").stdout.decode().splitlines()[1:])

    assert rt("start", cid).returncode == 0
    _wait_for(lambda: b"sleep" in _cmdline(pid), "the program to run")
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
    _wait_for(lambda: rt.state(cid)["status"] == "stopped", "the container to stop")
    assert rt.state(cid)["pid"] == 0
    assert rt("kill", cid).returncode == 1  # not running
    assert rt("delete", cid).returncode == 0
    assert rt("state", cid).returncode == 1
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert _cgroup_dirs(cid) == []


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
        assert _cgroup_dirs(cid) == []


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
        _wait_for(lambda: rt("state", cid).returncode == 0 and rt.state(cid)["status"] == "running",
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
    _wait_for(lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout)) == 3, "three processes")
    table = rt("ps", cid).stdout.decode().splitlines()
    assert "PID" in table[0] and len(table) == 4
    assert rt("kill", "--all", cid, "KILL").returncode == 0
    _wait_for(lambda: rt.state(cid)["status"] == "stopped", "the container to stop")
    assert rt("delete", cid).returncode == 0

    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    pid = rt.state(cid)["pid"]
    assert rt("start", cid).returncode == 0
    assert rt("delete", "--force", cid).returncode == 0
    assert rt("state", cid).returncode == 1
    _wait_for(lambda: b"sleep" not in _cmdline(pid), "the process to go")
    assert _cgroup_dirs(cid) == []


def test_delete_created_container(rt, make_bundle):
    bundle = make_bundle(["sleep", "1000"])
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    pid = rt.state(cid)["pid"]
    assert rt("delete", cid).returncode == 0  # a created container needs no --force (as runc)
    _wait_for(lambda: not os.path.exists(f"/proc/{pid}") or not _cmdline(pid), "the process to go")


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
    _wait_for(lambda: b"sleep" not in _cmdline(pid), "the process to go")
    assert _cgroup_dirs(cid) == []


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
    _wait_for(lambda: rt.state(cid)["status"] == "stopped", "the container to finish")
    assert rt.output(cid, bundle) == b"hello from survivor\n"


# -- config.json honoured -----------------------------------------------------------------

def _run(rt, bundle, cid=None):
    p = rt("run", "--bundle", bundle, cid or rt.new_id())
    assert p.returncode == 0 and not p.stderr, p.stderr
    return p.stdout.decode()


def test_process_settings(rt, make_bundle):
    script = ("id -u; id -g; id -G; umask; pwd; echo $FOO; hostname; "
              "grep -E '^(CapBnd|CapEff|CapPrm|CapAmb|NoNewPrivs)' /proc/self/status; ulimit -n; ulimit -s; "
              "cat /proc/self/oom_score_adj")

    def edit(c):
        p = c["process"]
        p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7], "umask": 0o027}
        p["cwd"] = "/tmp"
        p["env"].append("FOO=bar baz")
        p["capabilities"] = {k: ["CAP_NET_BIND_SERVICE", "CAP_KILL"] for k in
                             ("bounding", "effective", "permitted", "inheritable", "ambient")}
        p["capabilities"]["bounding"].append("CAP_CHOWN")
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                        {"type": "RLIMIT_STACK", "soft": 4 << 20, "hard": 8 << 20}]
        p["noNewPrivileges"] = True
        p["oomScoreAdj"] = 500
        c["hostname"] = "honoured"
    out = _run(rt, make_bundle(["sh", "-c", script], edit)).splitlines()
    assert out[0:3] == ["1000", "1000", "1000 5 7"]
    assert out[3] == "0027" and out[4] == "/tmp" and out[5] == "bar baz" and out[6] == "honoured"
    status = "\n".join(out[7:12])
    bind, kill, chown = 1 << 10, 1 << 5, 1 << 0
    assert helpers.caps_of(status, "CapBnd") == bind | kill | chown
    # a non-root user keeps its capabilities through the ambient set
    assert helpers.caps_of(status, "CapAmb") == bind | kill
    assert helpers.caps_of(status, "CapEff") == bind | kill
    assert "NoNewPrivs:\t1" in status
    assert out[12] == "512" and out[13] == str(4 << 10) and out[14] == "500"


def test_root_caps_and_default_mounts(rt, make_bundle):
    out = _run(rt, make_bundle(["sh", "-c", "grep CapEff /proc/self/status; cat /proc/self/mountinfo; ls /dev"]))
    lines = out.splitlines()
    assert helpers.caps_of(lines[0], "CapEff") == (1 << 29) | (1 << 5) | (1 << 10)  # runc spec's three
    mi = {ln.split(" - ")[0].split()[4]: ln for ln in lines if " - " in ln}
    for target, fstype in (("/proc", "proc"), ("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"),
                           ("/dev/mqueue", "mqueue"), ("/sys", "sysfs"), ("/sys/fs/cgroup", None)):
        assert target in mi, target
        if fstype:
            assert mi[target].split(" - ")[1].split()[0] == fstype
    assert mi["/"].split()[5].split(",")[0] == "ro"  # root.readonly
    assert mi["/sys"].split()[5].split(",")[0] == "ro"
    for name in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "fd", "stdin", "pts", "shm"):
        assert name in out.split(), name


def test_mounts_from_the_spec(rt, make_bundle, tmp_shm, rootfs_copy):
    src = os.path.join(tmp_shm, "src")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "file"), "w") as f:
        f.write("bound\n")
    # a mount below the source: seen through rbind, not through bind
    inner = os.path.join(src, "sub")
    from pyrt._sys import ffi, lib
    assert lib.mount(b"tmpfs", inner.encode(), b"tmpfs", 0, ffi.NULL) == 0
    try:
        with open(os.path.join(inner, "inner"), "w") as f:
            f.write("inner\n")

        def edit(c):
            c["mounts"] += [
                {"destination": "/srv/rbind", "type": "bind", "source": src, "options": ["rbind", "ro"]},
                {"destination": "/srv/bind", "type": "none", "source": src, "options": ["bind", "nosuid"]},
                {"destination": "/srv/file", "type": "bind", "source": os.path.join(src, "file"),
                 "options": ["bind", "ro"]},
                {"destination": "/srv/tmp", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nodev", "noexec", "size=1m", "mode=700"]},
                {"destination": "/srv/slave", "type": "bind", "source": src, "options": ["rbind", "rslave"]},
            ]
            c["linux"]["rootfsPropagation"] = "rslave"
        script = ("cat /srv/rbind/file /srv/rbind/sub/inner /srv/file; ls /srv/bind/sub | wc -l; "
                  "touch /srv/rbind/x 2>/dev/null || echo ro-ok; touch /srv/bind/y && echo rw-ok; "
                  "stat -c %a /srv/tmp; cat /proc/self/mountinfo")
        out = _run(rt, make_bundle(["sh", "-c", script], edit, root=rootfs_copy))
        lines = out.splitlines()
        assert lines[:6] == ["bound", "inner", "bound", "0", "ro-ok", "rw-ok"]
        assert lines[6] == "700"
        mi = {ln.split()[4]: ln for ln in lines if " - " in ln}
        assert "nosuid" in mi["/srv/bind"].split()[5]
        assert mi["/srv/tmp"].split()[5].split(",")[:1] == ["rw"] and "nodev" in mi["/srv/tmp"]
        assert "size=1024k" in mi["/srv/tmp"] and "noexec" in mi["/srv/tmp"].split()[5]
        assert "master:" in mi["/srv/slave"]  # rslave: host mounts propagate in
        assert "master:" in mi["/"]           # rootfsPropagation rslave
        assert os.path.exists(os.path.join(src, "y"))
        os.unlink(os.path.join(src, "y"))
    finally:
        lib.umount2(inner.encode(), 2)


def test_readonly_root_masked_and_readonly_paths(rt, make_bundle):
    proc_file = next(p for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore") if os.path.exists(p))

    def edit(c):
        c["linux"]["maskedPaths"] = [proc_file, "/sys/firmware", "/etc/passwd", "/no/such/path"]
        c["linux"]["readonlyPaths"] = ["/proc/sys", "/tmp"]
    script = (f"touch /root/x 2>/dev/null || echo root-ro; wc -c < {proc_file}; ls /sys/firmware | wc -l; "
              "wc -c < /etc/passwd; (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null || echo sys-ro; "
              "touch /tmp/x 2>/dev/null || echo tmp-ro")
    out = _run(rt, make_bundle(["sh", "-c", script], edit)).split()
    assert out == ["root-ro", "0", "0", "0", "sys-ro", "tmp-ro"]


def test_devices_and_sysctl(rt, make_bundle):
    def edit(c):
        c["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                                  "fileMode": 0o620, "uid": 0, "gid": 5},
                                 {"path": "/dev/fifo0", "type": "p"}]
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000"}
    script = ("stat -c '%t:%T %a %u %g %F' /dev/mynull; stat -c %F /dev/fifo0; echo x > /dev/mynull && echo w; "
              "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni")
    with open("/proc/sys/kernel/shmmni") as f:
        host_before = f.read()
    out = _run(rt, make_bundle(["sh", "-c", script], edit)).splitlines()
    assert out[0] == "1:3 620 0 5 character special file"
    assert out[1] == "fifo" and out[2] == "w" and out[3:] == ["1", "1000"]
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read() == host_before  # the container's ipc namespace had its own


def test_user_namespace_mappings(rt, make_bundle, tmp_shm):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["mounts"] = [m for m in c["mounts"] if m["type"] not in ("cgroup",)]
        for m in c["mounts"]:
            if m["type"] == "devpts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
    out = _run(rt, make_bundle(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; ls -l /dev/null"],
                               edit)).splitlines()
    assert out[0].split() == ["0", "100000", "65536"] and out[1].split() == ["0", "100000", "65536"]
    assert out[2] == "0"
    assert out[3].startswith("c")  # the host's node bound in (no mknod in a user namespace)


def test_join_namespaces_by_path(rt, make_bundle):
    a = rt.new_id()
    bundle_a = make_bundle(["sleep", "1000"], lambda c: c.update(hostname="pod"))
    assert rt.create(a, bundle_a).returncode == 0
    assert rt("start", a).returncode == 0
    pid = rt.state(a)["pid"]
    ns = {t: os.stat(f"/proc/{pid}/ns/{t}").st_ino for t in ("net", "uts", "ipc", "pid")}

    def edit(c):
        c["linux"]["namespaces"] = [{"type": "mount"}, {"type": "cgroup"},
                                    {"type": "network", "path": f"/proc/{pid}/ns/net"},
                                    {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
                                    {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
                                    {"type": "pid", "path": f"/proc/{pid}/ns/pid"}]
        c.pop("hostname", None)
    script = "for t in net uts ipc pid; do stat -L -c %i /proc/self/ns/$t; done; hostname; ps -o comm"
    out = _run(rt, make_bundle(["sh", "-c", script], edit)).split()
    assert [int(x) for x in out[:4]] == [ns["net"], ns["uts"], ns["ipc"], ns["pid"]]
    assert out[4] == "pod" and "sleep" in out[5:]


def test_resources_and_cgroups_path(rt, make_bundle):
    parent = f"pyrt-test-{uuid.uuid4().hex[:8]}"
    cid = rt.new_id()

    def edit(c):
        c["linux"]["cgroupsPath"] = f"/{parent}/{cid}"
        c["linux"]["resources"] = {
            "memory": {"limit": 64 << 20, "reservation": 32 << 20},
            "cpu": {"quota": 50000, "period": 100000, "shares": 512},
            "pids": {"limit": 42},
            "devices": [{"allow": False, "access": "rwm"}],
        }
    bundle = make_bundle(["sleep", "1000"], edit)
    assert rt.create(cid, bundle).returncode == 0
    try:
        from pyrt.cgroups.cgroup import Cgroup
        cg = Cgroup.open(cid, parent)
        pid = rt.state(cid)["pid"]
        assert pid in cg.procs()
        s = cg.stats()
        assert s["memory_limit"] == 64 << 20 and s["pids_limit"] == 42
        if "cpu" in cg.v1_dirs:
            with open(os.path.join(cg.v1_dirs["cpu"], "cpu.cfs_quota_us")) as f:
                assert f.read().strip() == "50000"
            with open(os.path.join(cg.v1_dirs["cpu"], "cpu.shares")) as f:
                assert f.read().strip() == "512"
        elif cg.v2_dir and os.path.exists(os.path.join(cg.v2_dir, "cpu.max")):
            with open(os.path.join(cg.v2_dir, "cpu.max")) as f:
                assert f.read().split() == ["50000", "100000"]
        if "devices" in cg.v1_dirs:
            with open(os.path.join(cg.v1_dirs["devices"], "devices.list")) as f:
                rules = f.read().split("\n")
            assert "c 1:3 rwm" in rules and "a *:* rwm" not in rules
        assert rt("delete", cid).returncode == 0
        assert not Cgroup.exists(cid, parent)
    finally:
        rt("delete", "--force", cid)
        from pyrt.cgroups.cgroup import prune
        prune(parent, remove_parent=True)


def _a_block_device():
    """(major, minor) of a block device of this host, or None."""
    for name in sorted(os.listdir("/sys/block")):
        try:
            with open(f"/sys/block/{name}/dev") as f:
                major, minor = f.read().split(":")
            return int(major), int(minor)
        except (OSError, ValueError):
            continue
    return None


def test_block_io_throttles_and_weights(rt, make_bundle):
    """linux.resources.blockIO through pyrt's block I/O limits: the per-device
    throttles in blkio.throttle.* (v1) or io.max (cgroup2); a weight where the host
    has a file for it, else an error naming the field (never dropped); a leaf
    weight is an error on every kernel since 5.0 (and on cgroup2)."""
    from pyrt.cgroups.cgroup import Cgroup, layout, prune
    dev = _a_block_device()
    lay = layout()
    if dev is None or lay.where("blkio") is None and lay.where("io") is None:
        pytest.skip("no block device or no block I/O controller")
    major, minor = dev
    parent = f"pyrt-test-{uuid.uuid4().hex[:8]}"
    cid = rt.new_id()
    throttles = {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1 << 20}],
                 "throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": 2 << 20}],
                 "throttleReadIOPSDevice": [{"major": major, "minor": minor, "rate": 300}],
                 "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 400},
                                             {"major": major, "minor": minor, "rate": 0}]}  # 0: nothing

    def edit(c):
        c["linux"]["cgroupsPath"] = f"/{parent}/{cid}"
        c["linux"]["resources"] = {"blockIO": throttles}
    bundle = make_bundle(["sleep", "1000"], edit)
    try:
        p = rt.create(cid, bundle)
        assert p.returncode == 0, p.stderr
        cg = Cgroup.open(cid, parent)
        d = f"{major}:{minor}"
        if "blkio" in cg.v1_dirs:
            for kind, rate in (("read_bps", 1 << 20), ("write_bps", 2 << 20), ("read_iops", 300),
                               ("write_iops", 400)):
                with open(os.path.join(cg.v1_dirs["blkio"], f"blkio.throttle.{kind}_device")) as f:
                    assert f.read().split("\n")[0] == f"{d} {rate}"
        else:
            with open(os.path.join(cg.v2_dir, "io.max")) as f:
                line = next(ln for ln in f.read().splitlines() if ln.startswith(d + " "))
            assert line.split()[1:] == [f"rbps={1 << 20}", f"wbps={2 << 20}", "riops=300", "wiops=400"]
        assert rt("delete", "--force", cid).returncode == 0
    finally:
        rt("delete", "--force", cid)

    # a weight: written where a weighing scheduler has a file, else refused by name
    bdir = os.path.join(lay.v1["blkio"], parent) if "blkio" in lay.v1 else None
    for bio, files in (({"weight": 500}, ("blkio.weight", "blkio.bfq.weight", "io.bfq.weight", "io.weight")),
                       ({"weightDevice": [{"major": major, "minor": minor, "weight": 500}]},
                        ("blkio.weight_device", "blkio.bfq.weight_device", "io.bfq.weight", "io.weight")),
                       ({"leafWeight": 500}, ("blkio.leaf_weight",))):
        cid = rt.new_id()
        bundle = make_bundle(["sleep", "1000"], lambda c: (c["linux"].update(cgroupsPath=f"/{parent}/{cid}"),
                                                           c["linux"].update(resources={"blockIO": bio})))
        try:
            p = rt.create(cid, bundle)
            ctrl = bdir or os.path.join(lay.unified, parent)
            has = [f for f in files if os.path.exists(os.path.join(ctrl, f))]
            if has:
                assert p.returncode == 0, p.stderr
            else:
                assert p.returncode == 1 and b"linux.resources.blockIO." + next(iter(bio)).encode() in p.stderr
                assert rt("state", cid).returncode != 0 and not Cgroup.exists(cid, parent)
        finally:
            rt("delete", "--force", cid)
    prune(parent, remove_parent=True)


@pytest.mark.parametrize("bio, field", [
    ({"throttleReadBpsDevice": [{"major": 4096, "minor": 0, "rate": 1}]}, "throttleReadBpsDevice[0].major"),
    ({"throttleReadBpsDevice": [{"major": 8, "minor": 1 << 20, "rate": 1}]}, "throttleReadBpsDevice[0].minor"),
    ({"throttleWriteIOPSDevice": [{"major": "8:0\n1:3", "minor": 0, "rate": 1}]}, "throttleWriteIOPSDevice[0].major"),
    ({"throttleReadBpsDevice": [{"major": True, "minor": 0, "rate": 1}]}, "throttleReadBpsDevice[0].major"),
    ({"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}, "throttleReadBpsDevice[0].rate"),
    ({"weightDevice": [{"major": -1, "minor": 0, "weight": 100}]}, "weightDevice[0].major"),
    ({"weight": 5}, "weight"), ({"weight": 1001}, "weight"), ({"leafWeight": "100"}, "leafWeight"),
    ({"throttleReadBpsDevice": {"major": 8}}, "throttleReadBpsDevice"),
])
def test_block_io_hostile_values_are_refused(bio, field):
    """Device numbers and rates come from two integers in the kernel's ranges, or
    the config is refused naming the field: nothing else reaches a cgroup file."""
    from pyrt.errors import ConfigError
    from pyrt.ocirt.resources import parse_resources
    with pytest.raises(ConfigError, match=r"linux\.resources\.blockIO\." + field.replace("[", r"\[").replace("]", r"\]")):
        parse_resources({"blockIO": bio}, [])


def test_block_io_on_cgroup2_files(tmp_path, monkeypatch):
    """The cgroup2 side of blockIO written into a directory standing for a
    container's cgroup: io.bfq.weight before io.weight (converted as runc), per
    device weights, io.max lines; no leaf weight on cgroup2."""
    from pyrt.cgroups import oci
    from pyrt.errors import CgroupError
    from pyrt.ocirt.resources import parse_resources

    class FakeCgroup:
        v1_dirs = {}
        v2_dir = str(tmp_path)
        path = str(tmp_path)
    writes = []
    monkeypatch.setattr(oci, "_write", lambda path, value: writes.append((os.path.basename(path), value)))
    bio = {"weight": 1000, "weightDevice": [{"major": 8, "minor": 16, "weight": 10}],
           "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 4096}],
           "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 50}]}
    res = parse_resources({"blockIO": bio}, [])
    assert oci.resource_controllers(res) == ["blkio", "io"]
    (tmp_path / "io.weight").write_text("")
    (tmp_path / "io.max").write_text("")
    oci.apply_resources(FakeCgroup(), res)
    assert writes == [("io.weight", "default 10000"), ("io.weight", "8:16 1"),
                      ("io.max", "8:0 rbps=4096"), ("io.max", "8:0 wiops=50")]
    writes.clear()
    (tmp_path / "io.bfq.weight").write_text("")
    oci.apply_resources(FakeCgroup(), parse_resources({"blockIO": {"weight": 300}}, []))
    assert writes == [("io.bfq.weight", "default 300")]
    writes.clear()
    for name in ("io.weight", "io.bfq.weight"):
        os.unlink(tmp_path / name)
    with pytest.raises(CgroupError, match=r"blockIO\.weight: .*io\.bfq\.weight nor io\.weight"):
        oci.apply_resources(FakeCgroup(), parse_resources({"blockIO": {"weight": 300}}, []))
    with pytest.raises(CgroupError, match=r"blockIO\.leafWeight: cgroup2 has no leaf weights"):
        oci.apply_resources(FakeCgroup(), parse_resources({"blockIO": {"leafWeight": 300}}, []))
    assert writes == []


def test_an_allow_list_profile_that_names_nothing_pyrt_needs(rt, make_bundle):
    """A default-deny profile without close_range (or anything else of pyrt's): the
    container's filter is loaded after everything pyrt does but execve, so it runs."""
    from pyrt.launch.seccomp import default_profile
    profile = default_profile()
    profile["defaultAction"] = "SCMP_ACT_ERRNO"
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in ("close_range", "fchdir", "getcwd", "setsid")]
    for nnp in (True, False):
        def edit(c, nnp=nnp):
            c["linux"]["seccomp"] = profile
            c["process"]["noNewPrivileges"] = nnp
        out = _run(rt, make_bundle(["sh", "-c", "echo ran; grep Seccomp: /proc/self/status"], edit, readonly=False))
        assert "ran" in out and "Seccomp:\t2" in out, out


def test_seccomp_profile(rt, make_bundle):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                            {"names": ["nosuch_syscall_name"], "action": "SCMP_ACT_ERRNO"},
                            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}
    for nnp in (True, False):
        def edit(c, nnp=nnp):
            c["linux"]["seccomp"] = profile
            c["process"]["noNewPrivileges"] = nnp
        out = _run(rt, make_bundle(["sh", "-c", "mkdir /tmp/d 2>&1; grep Seccomp: /proc/self/status"],
                                   edit, readonly=False))
        assert "Operation not permitted" in out and "Seccomp:\t2" in out
    # exec'd processes are bound by the container's filter too (with and without no_new_privs)
    for nnp in (True, False):
        def edit(c, nnp=nnp):
            c["linux"]["seccomp"] = profile
            c["process"]["noNewPrivileges"] = nnp
        cid = rt.new_id()
        assert rt.create(cid, make_bundle(["sleep", "1000"], edit, readonly=False)).returncode == 0
        try:
            assert rt("start", cid).returncode == 0
            p = rt("exec", cid, "sh", "-c", "mkdir /tmp/e 2>&1; grep Seccomp: /proc/self/status")
            out = p.stdout.decode()
            assert "Operation not permitted" in out and "Seccomp:\t2" in out, (p.stdout, p.stderr)
        finally:
            rt("delete", "--force", cid)
    bad = make_bundle(["true"], lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_NOPE"}))
    p = rt.create(rt.new_id(), bad)
    assert p.returncode == 1 and b"SCMP_ACT_NOPE" in p.stderr


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
    _wait_for(lambda: rt.state(cid)["status"] == "stopped", "the container to finish")
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
    assert rt("state", cid).returncode == 1 and _cgroup_dirs(cid) == []


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
    _wait_for(lambda: b"sleep" not in _cmdline(epid), "the exec'd process to go")


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


# -- end to end through podman ------------------------------------------------------------

PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _busybox_tar(rootfs, path):
    with tarfile.open(path, "w") as tar:
        tar.add(rootfs, arcname=".")
    return path


@pytest.fixture(scope="module")
def podman(runtime_bin, shm_base, rootfs, rootfs_kind):
    """podman with a private store on /dev/shm, pyrt-runtime as its runtime and a
    busybox image imported from the test rootfs (no registry)."""
    exe = shutil.which("podman")
    if exe is None:
        pytest.skip("podman is not installed")
    if rootfs_kind != "busybox":
        pytest.skip("the podman tests need the busybox rootfs")
    base = os.path.join(shm_base, "podman")
    os.makedirs(base, exist_ok=True)
    cmd = [exe, "--root", os.path.join(base, "root"), "--runroot", os.path.join(base, "runroot"),
           "--runtime", runtime_bin, "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def run(*args, timeout=TIMEOUT, check=False):
        p = subprocess.run(cmd + list(args), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {p.returncode}: {p.stderr.decode()}")
        return p
    run.storage = os.path.join(base, "root", "overlay")
    try:
        run("import", _busybox_tar(rootfs, os.path.join(base, "busybox.tar")), "localhost/busybox:test",
            check=True)
        yield run
    finally:
        run("rm", "--all", "--force", "--time", "0")
        run("rmi", "--all", "--force")
        helpers.detach_mounts_under(base)


@pytest.fixture
def podman_mounts(podman):
    """podman keeps its storage directory bind-mounted on itself between commands
    (and its `container cleanup` helper may make that mount again after a test):
    that one mount is allowed; every other mount a test leaves is a failure."""
    before = set(helpers.mountinfo())
    yield
    left = [ln for ln in set(helpers.mountinfo()) - before
            if helpers.mount_points([ln])[0] != podman.storage]
    assert not left, f"mounts left behind: {left}"


def _prun(podman, *args):
    return podman("run", "--rm", "--network", "none", *PODMAN_ULIMITS, *args)


@pytest.mark.no_leak_check
def test_podman_run_exit_codes_and_output(podman, podman_mounts):
    p = _prun(podman, "localhost/busybox:test", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert p.returncode == 7, p.stderr
    assert p.stdout == b"out\n" and p.stderr.endswith(b"err\n")
    p = _prun(podman, "localhost/busybox:test", "/no/such/program")
    assert p.returncode in (126, 127) and b"/no/such/program" in p.stderr


@pytest.mark.no_leak_check
def test_podman_run_options(podman, podman_mounts, tmp_shm):
    vol = os.path.join(tmp_shm, "vol")
    os.mkdir(vol)
    os.chmod(vol, 0o777)
    with open(os.path.join(vol, "data"), "w") as f:
        f.write("volume data\n")
    script = ("echo $FOO; pwd; hostname; id -u; id -g; cat /data/data; touch /data/new && echo vol-rw; "
              "touch /root/x 2>/dev/null || echo root-ro; "
              # the limits where this host's layout puts them: v1, hybrid or pure cgroup2
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/unified/memory.max "
              "/sys/fs/cgroup/memory.max 2>/dev/null | head -1; "
              "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/unified/pids.max /sys/fs/cgroup/pids.max "
              "2>/dev/null | head -1")
    p = _prun(podman, "-e", "FOO=bar", "-w", "/tmp", "--hostname", "podhost", "--user", "1000:1000",
              "-v", f"{vol}:/data", "--read-only", "--memory", "64m", "--pids-limit", "50",
              "localhost/busybox:test", "sh", "-c", script)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode().split()
    assert out[:6] == ["bar", "/tmp", "podhost", "1000", "1000", "volume"]
    assert out[6:9] == ["data", "vol-rw", "root-ro"]
    assert out[9] == str(64 << 20) and out[10] == "50"
    assert os.path.exists(os.path.join(vol, "new"))


@pytest.mark.no_leak_check
def test_podman_detached_exec_logs_stop_rm(podman, podman_mounts):
    p = podman("run", "-d", "--network", "none", *PODMAN_ULIMITS, "localhost/busybox:test",
               "sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.decode().strip()
    try:
        p = podman("exec", cid, "sh", "-c", "echo in exec; exit 4")
        assert p.returncode == 4 and p.stdout == b"in exec\n"
        p = podman("exec", "-e", "E=1", "-w", "/tmp", cid, "sh", "-c", "echo $E $(pwd)")
        assert p.stdout == b"1 /tmp\n"
        _wait_for(lambda: b"started" in podman("logs", cid).stdout, "the log")
        assert podman("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == b"running"
        p = podman("stop", "-t", "30", cid)
        assert p.returncode == 0, p.stderr
        assert podman("inspect", "--format", "{{.State.ExitCode}}", cid).stdout.strip() == b"0"
        assert b"bye" in podman("logs", cid).stdout
    finally:
        p = podman("rm", "--force", cid)
    assert p.returncode == 0
    assert podman("inspect", cid).returncode != 0


# -- end to end through containerd -----------------------------------------------------------

def _oci_archive(rootfs, path):
    """A one-layer OCI image archive (oci-layout, index.json, blobs) of the rootfs."""
    import hashlib
    import io

    blobs = {}

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return {"digest": "sha256:" + d, "size": len(data)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    layer = blob(buf.getvalue())
    diff_id = layer["digest"]
    config = blob(json.dumps({"architecture": "amd64", "os": "linux",
                              "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
                              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
                                "layers": [dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar")]
                                }).encode())
    index = {"schemaVersion": 2, "manifests": [dict(manifest, mediaType="application/vnd.oci.image.manifest.v1+json",
                                                    annotations={"org.opencontainers.image.ref.name": "test"})]}
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for d, data in blobs.items():
            add(f"blobs/sha256/{d}", data)
    return path


@pytest.fixture(scope="module")
def ctr(runtime_bin, shm_base, rootfs, rootfs_kind):
    """A private containerd (its own root, state and unix socket), stopped at the
    end; `ctr(...)` runs ctr against it in namespace pyrt-test."""
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install containerd)")
    if rootfs_kind != "busybox":
        pytest.skip("the containerd tests need the busybox rootfs")
    base = os.path.join(shm_base, "containerd")
    os.makedirs(base, exist_ok=True)
    sock = os.path.join(base, "containerd.sock")
    with open(os.path.join(base, "config.toml"), "w") as f:
        f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
                f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n')
    log = open(os.path.join(base, "containerd.log"), "wb")
    daemon = subprocess.Popen(["containerd", "--config", os.path.join(base, "config.toml")],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    runc_root = os.path.join(base, "runc")

    def run(*args, timeout=TIMEOUT):
        return subprocess.run(["ctr", "--address", sock, "--namespace", "pyrt-test", *args],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    try:
        _wait_for(lambda: daemon.poll() is not None or run("version").returncode == 0, "containerd to listen")
        if daemon.poll() is not None:
            # installed but not starting is a broken machine, not a reason to skip
            pytest.fail(f"containerd did not start: {open(log.name, 'rb').read()[-500:]!r}")
        p = run("images", "import", "--base-name", "localhost/busybox",
                _oci_archive(rootfs, os.path.join(base, "busybox-oci.tar")))
        assert p.returncode == 0, p.stderr
        yield run, runtime_bin, runc_root
    finally:
        listed = run("tasks", "ls", "-q").stdout.decode().split()
        for t in listed:
            run("tasks", "kill", "-s", "KILL", t)
            run("tasks", "rm", "-f", t)
        for c in run("containers", "ls", "-q").stdout.decode().split():
            run("containers", "rm", c)
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        helpers.detach_mounts_under(base)


def test_ctr_run(ctr):
    run, binary, runc_root = ctr
    name = f"c-{uuid.uuid4().hex[:8]}"
    p = run("run", "--runc-binary", binary, "--runc-root", runc_root, "--rm", "localhost/busybox:test", name,
            "sh", "-c", "echo hello from ctr; id -u; hostname; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout.decode().split()[:4] == ["hello", "from", "ctr", "0"]
    assert run("containers", "ls", "-q").stdout.decode().split().count(name) == 0
    assert not os.listdir(os.path.join(runc_root, "pyrt-test")) if os.path.isdir(
        os.path.join(runc_root, "pyrt-test")) else True


def test_ctr_detached_task_kill(ctr):
    run, binary, runc_root = ctr
    name = f"c-{uuid.uuid4().hex[:8]}"
    p = run("run", "-d", "--runc-binary", binary, "--runc-root", runc_root, "localhost/busybox:test", name,
            "sleep", "1000")
    assert p.returncode == 0, p.stderr
    try:
        _wait_for(lambda: b"RUNNING" in run("tasks", "ls").stdout, "the task to run")
        st = json.loads(subprocess.run([binary, "--root", os.path.join(runc_root, "pyrt-test"), "state", name],
                                       capture_output=True, check=True).stdout)
        assert st["status"] == "running"
        p = run("tasks", "exec", "--exec-id", "e1", name, "sh", "-c", "echo exec ok")
        assert p.returncode == 0 and p.stdout == b"exec ok\n", p.stderr
        assert run("tasks", "kill", "-s", "KILL", name).returncode == 0
        _wait_for(lambda: b"STOPPED" in run("tasks", "ls").stdout, "the task to stop")
    finally:
        run("tasks", "rm", "-f", name)
        run("containers", "rm", name)


def test_ctr_systemd_cgroup_error(ctr):
    run, binary, runc_root = ctr
    name = f"c-{uuid.uuid4().hex[:8]}"
    try:
        p = run("run", "--runc-binary", binary, "--runc-root", runc_root, "--runc-systemd-cgroup",
                "--cgroup", f"machine.slice:pyrt:{name}", "--rm", "localhost/busybox:test", name, "true")
        assert p.returncode != 0
        assert b"systemd cgroups are not available" in p.stderr + p.stdout
    finally:
        run("tasks", "rm", "-f", name)
        run("containers", "rm", name)
