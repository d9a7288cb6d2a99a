"""Beyond the quick start, on Debian 12's kernel and systemd: the OCI runtime with
cgroup2 resources, containers across `systemctl daemon-reload`, and the copy
storage driver with reflinks on xfs and btrfs."""
import json
import os
import subprocess
import time
import uuid

import pytest

from guestlib import cgroup_dir, read


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout


@pytest.mark.parametrize("manager", ["systemd", "cgroupfs"])
def test_containers_survive_daemon_reload_with_their_limits(pyrt, manager):
    pyrt("--cgroup-manager", manager, "run", "-d", "--name", "keep", "--memory", "48m", "--pids-limit", "25",
         "busybox:latest", "sleep", "1000")
    cid = pyrt.inspect("keep")["Id"]
    cg = cgroup_dir(pyrt.inspect("keep")["State"]["Pid"])
    if manager == "systemd":  # a delegated scope of its own, the container in its leaf
        assert cg == f"/sys/fs/cgroup/machine.slice/pyrt-{cid}.scope/container"
        assert sh(f"systemctl show -p Delegate --value pyrt-{cid}.scope").strip() == "yes"
    else:
        assert cg == f"/sys/fs/cgroup/pyrt/{cid}"
    sh("systemctl daemon-reload")
    time.sleep(1)
    assert pyrt.inspect("keep")["State"]["Running"]
    assert cgroup_dir(pyrt.inspect("keep")["State"]["Pid"]) == cg
    assert read(os.path.join(cg, "memory.max")) == str(48 << 20)
    assert read(os.path.join(cg, "pids.max")) == "25"
    assert pyrt.out("exec", "keep", "echo", "alive") == "alive"
    assert pyrt.out("stats", "--no-stream", "--format", "{{.PIDs}}", "keep") == "1"
    pyrt("rm", "-f", "keep")
    assert not os.path.exists(cg)
    if manager == "systemd":
        assert not os.path.exists(os.path.dirname(cg))
        assert subprocess.run(["systemctl", "is-active", f"pyrt-{cid}.scope"], capture_output=True,
                              text=True).stdout.strip() != "active"


def test_systemd_is_the_default_cgroup_manager_here(pyrt):
    assert "(systemd)" in pyrt.out("info")
    out = pyrt.out("run", "--rm", "--memory", "32m", "busybox:latest", "cat", "/proc/self/cgroup")
    assert out == "0::/"  # its own cgroup namespace, rooted at its leaf
    assert not [d for d in os.listdir("/sys/fs/cgroup/machine.slice") if d.startswith("pyrt-")]


@pytest.fixture
def bundle(tmp_path, pyrt):
    """An OCI bundle: the busybox image's rootfs and pyrt-runtime's default config."""
    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    cid = pyrt.out("create", "busybox:latest", "true")
    pyrt("export", "-o", str(tmp_path / "rootfs.tar"), cid)
    pyrt("rm", cid)
    sh(f"tar -xf {tmp_path}/rootfs.tar -C {b}/rootfs")
    sh(f"cd {b} && pyrt-runtime spec")
    return b


def test_oci_runtime_lifecycle_with_cgroup2_resources(bundle, tmp_path):
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["args"] = ["sleep", "1000"]
    cfg["process"]["terminal"] = False
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 30},
                                 "cpu": {"quota": 25000, "period": 100000}}
    cfg["linux"]["cgroupsPath"] = "/pyrt-guest/oci-" + uuid.uuid4().hex[:8]
    (bundle / "config.json").write_text(json.dumps(cfg))
    root = str(tmp_path / "state")
    cid = "oci-" + uuid.uuid4().hex[:8]
    rt = ["pyrt-runtime", "--root", root]
    # the calls an engine makes (runc's command line)
    # the container's stdio: files (a pipe would stay open as long as the container runs)
    with open(tmp_path / "out", "wb") as out:
        subprocess.run(rt + ["create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), cid],
                       check=True, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=120)
    try:
        state = json.loads(sh(" ".join(rt + ["state", cid])))
        assert state["status"] == "created"
        pid = int((tmp_path / "pid").read_text())
        cg = cgroup_dir(pid)
        assert cg.endswith(cfg["linux"]["cgroupsPath"])
        assert read(os.path.join(cg, "memory.max")) == str(64 << 20)
        assert read(os.path.join(cg, "pids.max")) == "30"
        assert read(os.path.join(cg, "cpu.max")) == "25000 100000"
        sh(" ".join(rt + ["start", cid]))
        assert json.loads(sh(" ".join(rt + ["state", cid])))["status"] == "running"
        sh(" ".join(rt + ["kill", cid, "KILL"]))
        for _ in range(100):
            if json.loads(sh(" ".join(rt + ["state", cid])))["status"] == "stopped":
                break
            time.sleep(0.1)
        assert json.loads(sh(" ".join(rt + ["state", cid])))["status"] == "stopped"
    finally:
        subprocess.run(rt + ["delete", "--force", cid], capture_output=True)
    assert not os.path.exists(cg)


@pytest.fixture(params=["xfs", "btrfs"])
def reflink_fs(request, tmp_path):
    """A scratch filesystem that shares extents, on a loop device."""
    img = tmp_path / f"{request.param}.img"
    mnt = tmp_path / request.param
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(512 << 20)
    sh(f"mkfs.{request.param} -q {img}" if request.param == "xfs" else f"mkfs.btrfs -q {img}")
    sh(f"mount -o loop {img} {mnt}")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", str(mnt)])


def test_copy_driver_reflinks(reflink_fs):
    from pyrt import _core
    src = os.path.join(reflink_fs, "src")
    os.makedirs(src)
    with open(os.path.join(src, "big"), "wb") as f:
        f.write(os.urandom(1 << 20) * 16)
    st = _core.copy_tree(src, os.path.join(reflink_fs, "dst"))
    assert st["files"] == 1 and st["reflinked"] == 1, st
    # and a whole container on a store there with the copy driver
    root = os.path.join(reflink_fs, "store")
    base = ["pyrt", "--root", root, "--storage-driver", "copy"]
    subprocess.run(base + ["image", "from-host", "bb:1", "/bin/busybox"], check=True, capture_output=True)
    out = subprocess.run(base + ["run", "--rm", "bb:1", "sh", "-c", "echo copy > /f; cat /f"], check=True,
                         capture_output=True, text=True).stdout
    assert out == "copy\n"


def _block_device():
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram", "fd", "sr")):
            continue
        try:
            return read(f"/sys/block/{name}/dev")
        except OSError:
            continue
    pytest.skip("no block device")


def test_oci_runtime_systemd_cgroup_scope_and_block_io(bundle, tmp_path):
    """pyrt-runtime --systemd-cgroup: cgroupsPath slice:prefix:name makes the
    delegated transient scope prefix-name.scope in the slice (through systemd's
    D-Bus API), the container in its container/ leaf with its limits (blockIO
    throttles in io.max); delete stops the scope."""
    dev = _block_device()
    cid = "oci-" + uuid.uuid4().hex[:8]
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["args"] = ["sleep", "1000"]
    cfg["process"]["terminal"] = False
    major, minor = map(int, dev.split(":"))
    cfg["linux"]["cgroupsPath"] = f"machine.slice:pyrt-guest:{cid}"
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 30}, "blockIO": {
        "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1 << 20}],
        "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 200}]}}
    (bundle / "config.json").write_text(json.dumps(cfg))
    rt = ["pyrt-runtime", "--root", str(tmp_path / "state"), "--systemd-cgroup"]
    unit = f"pyrt-guest-{cid}.scope"
    scope = f"/sys/fs/cgroup/machine.slice/{unit}"
    # the container's stdio: files (a pipe would stay open as long as the container runs)
    with open(tmp_path / "out", "wb") as out:
        p = subprocess.run(rt + ["create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), cid],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=120)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    try:
        pid = int((tmp_path / "pid").read_text())
        assert cgroup_dir(pid) == scope + "/container"
        assert sh(f"systemctl show -p Delegate --value {unit}").strip() == "yes"
        assert sh(f"systemctl is-active {unit}").strip() == "active"
        cg = scope + "/container"
        assert read(os.path.join(cg, "memory.max")) == str(64 << 20)
        assert read(os.path.join(cg, "pids.max")) == "30"
        io = [ln for ln in read(os.path.join(cg, "io.max")).splitlines() if ln.startswith(dev + " ")]
        assert io and io[0].split()[1:] == [f"rbps={1 << 20}", "wbps=max", "riops=max", "wiops=200"]
        sh(" ".join(rt + ["start", cid]))
        assert json.loads(sh(" ".join(rt + ["state", cid])))["status"] == "running"
        assert str(pid) in sh(" ".join(rt + ["ps", "--format", "json", cid]))
    finally:
        subprocess.run(rt + ["delete", "--force", cid], capture_output=True)
    assert not os.path.exists(scope)
    assert subprocess.run(["systemctl", "is-active", unit], capture_output=True,
                          text=True).stdout.strip() != "active"
    # a cgroupsPath that is not slice:prefix:name is refused, naming the field
    cfg["linux"]["cgroupsPath"] = "/pyrt-guest/x"
    (bundle / "config.json").write_text(json.dumps(cfg))
    p = subprocess.run(rt + ["create", "--bundle", str(bundle), cid + "x"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 1 and "linux.cgroupsPath" in p.stderr and "slice:prefix:name" in p.stderr
