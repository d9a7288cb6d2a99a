"""pyrt-runtime driven end to end by the engines that use an OCI runtime: podman
(`--runtime`, a private store on /dev/shm) and containerd (`ctr run --runc-binary`, a
private containerd on a unix socket in a temporary directory)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import uuid

import pytest

import helpers
from ocitools import TIMEOUT
from ocitools import wait_until


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
        wait_until(lambda: b"started" in podman("logs", cid).stdout, "the log")
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
        wait_until(lambda: daemon.poll() is not None or run("version").returncode == 0, "containerd to listen")
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
        wait_until(lambda: b"RUNNING" in run("tasks", "ls").stdout, "the task to run")
        st = json.loads(subprocess.run([binary, "--root", os.path.join(runc_root, "pyrt-test"), "state", name],
                                       capture_output=True, check=True).stdout)
        assert st["status"] == "running"
        p = run("tasks", "exec", "--exec-id", "e1", name, "sh", "-c", "echo exec ok")
        assert p.returncode == 0 and p.stdout == b"exec ok\n", p.stderr
        assert run("tasks", "kill", "-s", "KILL", name).returncode == 0
        wait_until(lambda: b"STOPPED" in run("tasks", "ls").stdout, "the task to stop")
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
