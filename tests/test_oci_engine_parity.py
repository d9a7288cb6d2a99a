"""The configs engines really send, created by pyrt-runtime's native create and by
its Python implementation (PYRT_RUNTIME_PYTHON=1): podman's config.json (its
seccomp profile, devices, cgroupsPath, masked and read-only paths, rlimits,
capabilities) is caught by a recording wrapper around pyrt-runtime, then both
sides create a container from it: the native side does not hand it over, and
both give the same record and leave nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile

import pytest

import helpers
from ocitools import TIMEOUT, runtime_cgroup_dirs

PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture
def rt(oci_rt):
    return oci_rt


@pytest.fixture(scope="module")
def recorded(runtime_bin, shm_base, rootfs, rootfs_kind):
    """podman (a private store) whose runtime is a wrapper that copies each
    create's config.json aside: yields (podman runner, directory of the copies)."""
    exe = shutil.which("podman")
    if exe is None:
        pytest.skip("podman is not installed")
    if rootfs_kind != "busybox":
        pytest.skip("the podman tests need the busybox rootfs")
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    base = os.path.join(shm_base, "podman-parity")
    copies = os.path.join(base, "configs")
    os.makedirs(copies, exist_ok=True)
    wrapper = os.path.join(base, "runtime")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                "b=; prev=\n"
                "for a in \"$@\"; do case \"$prev\" in --bundle|-b) b=$a;; esac; prev=$a; done\n"
                f"[ -n \"$b\" ] && [ -f \"$b/config.json\" ] && cp \"$b/config.json\" {copies}/$$.json\n"
                f"exec {runtime_bin} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    cmd = [exe, "--root", os.path.join(base, "root"), "--runroot", os.path.join(base, "runroot"),
           "--runtime", wrapper, "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def run(*args, check=False):
        p = subprocess.run(cmd + list(args), stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {p.returncode}: {p.stderr.decode()}")
        return p
    tar = os.path.join(base, "busybox.tar")
    with tarfile.open(tar, "w") as t:
        t.add(rootfs, arcname=".")
    try:
        run("import", tar, "localhost/busybox:parity", check=True)
        yield run, copies
    finally:
        run("rm", "--all", "--force", "--time", "0")
        run("rmi", "--all", "--force")
        helpers.detach_mounts_under(base)
        shutil.rmtree(base, ignore_errors=True)


def _last_config(copies):
    names = sorted(os.listdir(copies), key=lambda n: os.stat(os.path.join(copies, n)).st_mtime)
    assert names, "the wrapper recorded no config"
    with open(os.path.join(copies, names[-1])) as f:
        cfg = json.load(f)
    for n in names:
        os.unlink(os.path.join(copies, n))
    return cfg


def _create(rt, bundle, cid, python):
    env = dict(os.environ, PYRT_RUNTIME_PYTHON="1") if python else {
        k: v for k, v in os.environ.items() if k != "PYRT_RUNTIME_PYTHON"}
    with open(os.path.join(bundle, f"{cid}.err"), "w+b") as err:
        rc = subprocess.run([rt.binary, "--root", rt.root, "--debug", "create", "--bundle", bundle, cid],
                            stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env, timeout=TIMEOUT).returncode
        err.seek(0)
        return rc, err.read()


def _record(rt, cid):
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        rec = json.load(f)
    for k in ("created", "pid", "start_time", "id"):
        rec.pop(k)
    rec["cgroup_name"] = rec["cgroup_name"].replace(cid, "ID")
    return rec


@pytest.mark.no_leak_check
@pytest.mark.parametrize("extra", [
    [],
    ["-t"],
    ["--pids-limit", "50", "--memory", "64m", "--cap-add", "SYS_ADMIN", "--hostname", "h", "-e", "A=1",
     "--read-only", "--sysctl", "net.ipv4.ip_forward=1", "-u", "1000:1000", "--security-opt",
     "no-new-privileges", "--shm-size", "1m", "--tmpfs", "/scratch:size=1m", "--cap-drop", "ALL"],
    # podman writes a device's fileMode with its file type bits (st_mode: 0o20666)
    ["--device", "/dev/fuse"],
    ["--privileged"],
], ids=["default", "tty", "options", "device", "privileged"])
def test_podman_configs_are_native_and_agree(recorded, rt, tmp_shm, extra):
    podman, copies = recorded
    name = f"parity-{os.getpid()}-{len(extra)}"
    p = podman("run", "-d", "--name", name, "--network", "none", *PODMAN_ULIMITS, *extra,
               "localhost/busybox:parity", "sleep", "1000")
    assert p.returncode == 0, p.stderr
    try:
        cfg = _last_config(copies)
        cfg["process"]["terminal"] = False  # (no console socket here)
        bundle = os.path.join(tmp_shm, "bundle")
        os.makedirs(bundle, exist_ok=True)
        ids = {}
        for python in (False, True):
            cid = rt.new_id("py" if python else "n")
            c = json.loads(json.dumps(cfg))
            c["linux"]["cgroupsPath"] = f"/pyrt-parity/{cid}"  # (podman's own container has its path)
            c["hooks"] = {}  # (podman's hooks talk to podman about its own container)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(c, f)
            rc, err = _create(rt, bundle, cid, python)
            assert rc == 0, err
            if not python:
                assert b"handed over" not in err, err
            ids[python] = cid
            assert rt.state(cid)["status"] == "created"
        nrec, prec = _record(rt, ids[False]), _record(rt, ids[True])
        nrec["cgroup_name"], prec["cgroup_name"] = "ID", "ID"
        assert nrec == prec
        for cid in ids.values():
            assert rt("delete", "--force", cid).returncode == 0
            assert not os.path.exists(os.path.join(rt.root, cid))
            assert not runtime_cgroup_dirs(cid, "pyrt-parity")
    finally:
        podman("rm", "--force", "--time", "0", name)
