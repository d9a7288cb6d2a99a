"""pyrt-runtime honours a bundle's config.json: process settings, capabilities, mounts,
read-only root, masked and read-only paths, devices and sysctls, user namespace
mappings, namespaces joined by path, resources and cgroupsPath, block I/O, seccomp.
Every test force-deletes the containers it made, also on failure."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

import helpers
from ocitools import run_bundle
from ocitools import rt  # noqa: F401,F811 (fixtures)


# -- config.json honoured -----------------------------------------------------------------

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
    out = run_bundle(rt, make_bundle(["sh", "-c", script], edit)).splitlines()
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
    out = run_bundle(rt, make_bundle(["sh", "-c", "grep CapEff /proc/self/status; cat /proc/self/mountinfo; ls /dev"]))
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
        out = run_bundle(rt, make_bundle(["sh", "-c", script], edit, root=rootfs_copy))
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
    out = run_bundle(rt, make_bundle(["sh", "-c", script], edit)).split()
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
    out = run_bundle(rt, make_bundle(["sh", "-c", script], edit)).splitlines()
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
    out = run_bundle(rt, make_bundle(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; ls -l /dev/null"],
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
    out = run_bundle(rt, make_bundle(["sh", "-c", script], edit)).split()
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


@pytest.fixture
def block_io(rt):
    """(major, minor, cgroup layout, a parent cgroup name of the test's own), or a
    skip; the parent is pruned afterwards."""
    from pyrt.cgroups.cgroup import layout, prune
    dev = _a_block_device()
    lay = layout()
    if dev is None or lay.where("blkio") is None and lay.where("io") is None:
        pytest.skip("no block device or no block I/O controller")
    parent = f"pyrt-test-{uuid.uuid4().hex[:8]}"
    try:
        yield dev[0], dev[1], lay, parent
    finally:
        prune(parent, remove_parent=True)


@pytest.mark.parametrize("key", ["cgroup.procs", "cgroup.threads", "cgroup.kill"])
def test_a_config_cannot_reach_a_host_process_through_unified(rt, make_bundle, key):
    """linux.resources.unified writing cgroup.procs would move any host process into
    the container's cgroup (and `delete` would kill it there): refused, the
    process left where it was, nothing made."""
    host = subprocess.Popen(["sleep", "1000"])
    try:
        with open(f"/proc/{host.pid}/cgroup") as f:
            before = f.read()
        cid = rt.new_id()

        def edit(c):
            c["linux"]["resources"] = {"unified": {key: str(host.pid)}}
        r = rt.create(cid, make_bundle(["true"], edit))
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"linux.resources.unified.{key}: not a resource limit".encode() in r.stderr
        with open(f"/proc/{host.pid}/cgroup") as f:
            assert f.read() == before
        assert host.poll() is None
        assert rt("state", cid).returncode != 0
    finally:
        host.kill()
        host.wait()


def test_block_io_throttles(rt, make_bundle, block_io):
    """linux.resources.blockIO through pyrt's block I/O limits: the per-device
    throttles in blkio.throttle.* (v1) or io.max (cgroup2)."""
    from pyrt.cgroups.cgroup import Cgroup
    major, minor, lay, parent = block_io
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


@pytest.mark.parametrize("field, files", [
    ("weight", ("blkio.weight", "blkio.bfq.weight", "io.bfq.weight", "io.weight")),
    ("weightDevice", ("blkio.weight_device", "blkio.bfq.weight_device", "io.bfq.weight", "io.weight")),
    ("leafWeight", ("blkio.leaf_weight",)),
])
def test_block_io_weights(rt, make_bundle, block_io, field, files):
    """A weight is written where a weighing scheduler has a file for it, else refused
    with an error naming the field (never dropped); a leaf weight is an error on
    every kernel since 5.0 (and on cgroup2)."""
    from pyrt.cgroups.cgroup import Cgroup
    major, minor, lay, parent = block_io
    bio = {"weight": {"weight": 500},
           "weightDevice": {"weightDevice": [{"major": major, "minor": minor, "weight": 500}]},
           "leafWeight": {"leafWeight": 500}}[field]
    bdir = os.path.join(lay.v1["blkio"], parent) if "blkio" in lay.v1 else None
    # the parent cgroup made first by a container without block I/O settings, so that
    # what it offers is known whether or not the one with them is refused
    first = rt.new_id()
    try:
        plain = make_bundle(["true"], lambda c: c["linux"].update(cgroupsPath=f"/{parent}/{first}"))
        assert rt.create(first, plain).returncode == 0
    finally:
        rt("delete", "--force", first)
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
            assert p.returncode == 1 and b"linux.resources.blockIO." + field.encode() in p.stderr
            assert rt("state", cid).returncode != 0 and not Cgroup.exists(cid, parent)
    finally:
        rt("delete", "--force", cid)


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
        out = run_bundle(rt, make_bundle(["sh", "-c", "echo ran; grep Seccomp: /proc/self/status"], edit, readonly=False))
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
        out = run_bundle(rt, make_bundle(["sh", "-c", "mkdir /tmp/d 2>&1; grep Seccomp: /proc/self/status"],
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
