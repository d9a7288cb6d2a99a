"""pyrt-runtime's native create with --systemd-cgroup (csrc/rt_config_systemd.c,
csrc/rt_create.c) on a host systemd runs on pure cgroup v2 (the guest), against
its Python implementation (PYRT_RUNTIME_PYTHON=1): for each cgroupsPath both
sides give the same exit status and error line, the same record and the same
scope (active while the container lives, gone after delete), and leave nothing."""
import json
import os
import shutil
import subprocess
import uuid

import pytest

RUNTIME = shutil.which("pyrt-runtime")


@pytest.fixture
def bundle(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for name in ("sh", "sleep", "true"):
        os.symlink("busybox", rootfs / "bin" / name)
    b = tmp_path / "bundle"
    b.mkdir()
    subprocess.run([RUNTIME, "spec", "--bundle", str(b)], check=True)
    return str(b), str(rootfs)


def _write(bundle, rootfs, cpath):
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["args"] = ["sleep", "1000"]
    cfg["process"]["terminal"] = False
    cfg["linux"]["cgroupsPath"] = cpath
    with open(path, "w") as f:
        json.dump(cfg, f)


def _side(root, bundle, cid, python):
    env = dict(os.environ, PYRT_RUNTIME_PYTHON="1") if python else {
        k: v for k, v in os.environ.items() if k != "PYRT_RUNTIME_PYTHON"}
    base = [RUNTIME, "--root", root, "--systemd-cgroup"]
    with open(os.path.join(bundle, f"{cid}.err"), "w+b") as err:
        rc = subprocess.run(base + ["--debug", "create", "--bundle", bundle, cid], env=env, stdin=subprocess.DEVNULL,
                            stdout=err, stderr=err, timeout=120).returncode
        err.seek(0)
        text = err.read().decode().replace(cid, "ID")
    assert python == ("handed over" in text), text  # the native side is native
    text = "\n".join(line for line in text.splitlines() if "debug:" not in line)
    rec = unit = None
    if rc == 0:
        with open(os.path.join(root, cid, "state.json")) as f:
            rec = json.load(f)
        for k in ("created", "pid", "start_time", "id"):
            rec.pop(k)
        unit = rec["systemd_unit"]
        active = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True).stdout.strip()
        assert active == "active", (unit, active)
        assert os.path.isdir(f"/sys/fs/cgroup/{rec['systemd_scope']}/container")
        rec = json.loads(json.dumps(rec).replace(cid, "ID"))
    subprocess.run(base + ["delete", "--force", cid], stdin=subprocess.DEVNULL, timeout=120)
    assert not os.path.exists(os.path.join(root, cid))
    if unit is not None:
        state = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True).stdout.strip()
        assert state != "active", unit
    return rc, text, rec


@pytest.mark.skipif(os.geteuid() != 0, reason="the native create is root's")
@pytest.mark.parametrize("cpath", ["", "machine.slice:libpod:abc", "machine-pods.slice:crio:abc", ":pfx:",
                                   "system.slice::abc", "/machine/abc", "machine.slice:a:b:c",
                                   "machine.slice:p:../../etc", "-.slice:p:n", "machine.slice:p:n.slice",
                                   "machine.slice:-x:n"])
def test_systemd_cgroup_native_and_python_agree(bundle, tmp_path, cpath):
    b, rootfs = bundle
    _write(b, rootfs, cpath)
    root = str(tmp_path / "state")
    nid, pid_ = f"n{uuid.uuid4().hex[:8]}", f"p{uuid.uuid4().hex[:8]}"
    native = _side(root, b, nid, python=False)
    python = _side(root, b, pid_, python=True)
    assert native == python
