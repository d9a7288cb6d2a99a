"""Debian 12 as it ships: the README's quick start, the container life cycle and
the cgroup v2 limits, on kernel 6.1 (where three of pyrt's mount calls need their
fallbacks) and systemd's pure cgroup v2."""
import os
import re
import subprocess
import time

import pytest

from guestlib import cgroup_dir, read


def quick_start_commands():
    """The quick start line of the README, without the install steps the guest had
    done from the wheel (it has no network)."""
    text = open(os.environ["PYRT_README"]).read()
    block = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0].strip()
    steps = [s.strip() for s in block.split(" && ")]
    kept = [s for s in steps if not s.startswith(("apt-get", "python3 -m pip"))]
    assert kept and kept[0].startswith("pyrt "), steps
    return " && ".join(kept)


def test_readme_quick_start():
    root = "/var/lib/pyrt"
    try:
        p = subprocess.run(["sh", "-c", quick_start_commands()], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert re.search(r"^hello from \w+, pid 1$", p.stdout, re.M), p.stdout
        # on the guest's ext4 the store uses overlay, without a notice about it
        assert "not usable" not in p.stderr
        assert read(os.path.join(root, "storage-driver")) == "overlay"
    finally:
        subprocess.run(["rm", "-rf", root])


def test_masked_paths_exist_here(pyrt):
    # /proc/acpi and /sys/firmware exist on this kernel: the first masked directory
    # gets a new empty tmpfs, the others clones of it (6.1 cannot clone a detached mount)
    assert os.path.isdir("/proc/acpi") and os.listdir("/sys/firmware")
    out = pyrt.out("run", "--rm", "busybox:latest", "sh", "-c",
                   "ls -A /proc/acpi /sys/firmware | wc -w; touch /proc/acpi/x 2>&1; "
                   "grep -c ' /proc/acpi \\| /sys/firmware ' /proc/self/mountinfo")
    words, err, mounts = out.splitlines()
    assert words == "2"            # the two headers ls prints, nothing in either
    assert "Read-only file system" in err
    assert mounts == "2"


def test_overlay_legacy_mount_many_layers(pyrt, tmp_path):
    """An image of 140 layers: more than one page of absolute lowerdir paths, mounted
    on 6.1 (no lowerdir+) with the layers named by short fd paths."""
    import io, json, tarfile, hashlib
    layout = tmp_path / "oci"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / d).write_bytes(data)
        return d

    busybox = open("/bin/busybox", "rb").read()
    layers, diff_ids = [], []
    for i in range(140):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            def add(name, data, mode=0o644):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(data), mode
                t.addfile(ti, io.BytesIO(data))
            if i == 0:
                add("bin/busybox", busybox, 0o755)
                ti = tarfile.TarInfo("bin/sh"); ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"; t.addfile(ti)
                add("shadowed", b"bottom\n")
            add(f"layer/{i:03d}", f"{i}\n".encode())
            if i == 139:
                add("shadowed", b"top\n")
        d = blob(buf.getvalue())
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{d}",
                       "size": len(buf.getvalue())})
        diff_ids.append(f"sha256:{d}")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cd = blob(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": f"sha256:{cd}", "size": len(config)},
                           "layers": layers}).encode()
    md = blob(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{md}",
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "deep:1"}}]}))
    pyrt("load", "-i", str(layout))
    # the store's own path makes the absolute form far longer than a page
    lower = len(os.path.join(pyrt.root, "snapshots", "x" * 64, "fs")) * 140
    assert lower > 4096
    out = pyrt.out("run", "--rm", "deep:1", "sh", "-c",
                   "cat /shadowed; ls /layer | wc -l; echo new > /layer/000; cat /layer/000")
    assert out.split() == ["top", "140", "new"]
    # cp and export mount a stopped container's overlay themselves (Python, mount(2) on 6.1)
    pyrt("run", "--name", "deepc", "deep:1", "sh", "-c", "echo mine > /mine")
    pyrt("cp", "deepc:/mine", str(tmp_path / "mine"))
    pyrt("cp", "deepc:/layer/139", str(tmp_path / "139"))
    assert (tmp_path / "mine").read_text() == "mine\n" and (tmp_path / "139").read_text() == "139\n"
    pyrt("export", "-o", str(tmp_path / "deep.tar"), "deepc")
    import tarfile as _tar
    with _tar.open(tmp_path / "deep.tar") as t:
        names = set(t.getnames())
    assert "mine" in names and "layer/000" in names and "layer/139" in names


def test_cp_from_stopped_container(pyrt, tmp_path):
    # cp mounts a stopped container's overlay itself (in Python, the same fallback)
    pyrt("run", "--name", "cpsrc", "busybox:latest", "sh", "-c", "echo kept > /data.txt")
    pyrt("cp", "cpsrc:/data.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "kept\n"


def test_detached_life_cycle(pyrt):
    cid = pyrt.out("run", "-d", "--name", "web", "busybox:latest", "sh", "-c",
                   "echo started; while true; do sleep 1; done")
    assert pyrt.inspect("web")["State"]["Running"]
    pid = pyrt.inspect("web")["State"]["Pid"]
    cg = cgroup_dir(pid)
    assert cid in cg and os.path.isdir(cg)
    for _ in range(100):
        if "started" in pyrt.out("logs", "web"):
            break
        time.sleep(0.1)
    assert pyrt.out("logs", "web") == "started"
    assert pyrt.out("exec", "web", "sh", "-c", "echo $((6*7))") == "42"

    pyrt("pause", "web")
    assert read(os.path.join(cg, "cgroup.freeze")) == "1"
    assert pyrt.inspect("web")["State"]["Status"] == "paused"
    pyrt("unpause", "web")
    assert read(os.path.join(cg, "cgroup.freeze")) == "0"
    assert pyrt.inspect("web")["State"]["Status"] == "running"

    stats = pyrt.out("stats", "--no-stream", "--format", "{{json .}}", "web")
    assert "web" in stats and "MemUsage" in stats or "CPUPerc" in stats, stats

    pyrt("stop", "-t", "1", "web")
    assert not pyrt.inspect("web")["State"]["Running"]
    pyrt("rm", "web")
    assert not os.path.exists(cg)


def test_run_rm_leaves_nothing(pyrt):
    before = set(os.listdir("/sys/fs/cgroup/pyrt")) if os.path.isdir("/sys/fs/cgroup/pyrt") else set()
    assert pyrt.out("run", "--rm", "--memory", "64m", "busybox:latest", "echo", "gone") == "gone"
    assert pyrt.out("ps", "-aq") == "" or "gone" not in pyrt.out("ps", "-a")
    after = set(os.listdir("/sys/fs/cgroup/pyrt")) if os.path.isdir("/sys/fs/cgroup/pyrt") else set()
    assert after <= before


def test_device_allow_list_by_ebpf(pyrt):
    # pure cgroup v2: docker's device list is an eBPF program on the container's own
    # cgroup (a foreground container without limits too): nodes can be made, not opened
    out = pyrt.out("run", "--rm", "busybox:latest", "sh", "-c",
                   "mknod /dev/k c 10 232 && echo made; (: < /dev/k) 2>&1; (: > /dev/null) && echo null-ok")
    made, refused, null = out.splitlines()
    assert made == "made" and "Operation not permitted" in refused and null == "null-ok"
    out = pyrt.out("run", "--rm", "--device", "/dev/kmsg:w", "busybox:latest", "sh", "-c",
                   "(: > /dev/kmsg) && echo kmsg-ok")
    assert out == "kmsg-ok"


def test_limits_written_to_cgroup2(pyrt):
    pyrt("run", "-d", "--name", "lim", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20",
         "busybox:latest", "sleep", "1000")
    cg = cgroup_dir(pyrt.inspect("lim")["State"]["Pid"])
    assert read(os.path.join(cg, "memory.max")) == str(64 << 20)
    assert read(os.path.join(cg, "cpu.max")) == "50000 100000"
    assert read(os.path.join(cg, "pids.max")) == "20"
    pyrt("rm", "-f", "lim")
    assert not os.path.exists(cg)
    pyrt("run", "-d", "--name", "lim", "--memory", "64m", "--memory-swap", "96m", "--memory-reservation", "32m",
         "--cpu-shares", "512", "--cpuset-cpus", "1", "busybox:latest", "sleep", "1000")
    cg = cgroup_dir(pyrt.inspect("lim")["State"]["Pid"])
    assert read(os.path.join(cg, "memory.swap.max")) == str(32 << 20)
    assert read(os.path.join(cg, "memory.low")) == str(32 << 20)
    assert read(os.path.join(cg, "cpu.weight")) != "100"  # converted from 512 shares, as runc does
    assert read(os.path.join(cg, "cpuset.cpus")) == "1"
    assert pyrt.out("exec", "lim", "grep", "Cpus_allowed_list", "/proc/self/status").split() == \
        ["Cpus_allowed_list:", "1"]
    # the container sees itself at the root of its own cgroup namespace
    assert pyrt.out("exec", "lim", "cat", "/proc/self/cgroup") == "0::/"
    pyrt("rm", "-f", "lim")
    assert not os.path.exists(cg)


def test_oom_killed(pyrt):
    p = pyrt("run", "--name", "oom", "--memory", "32m", "--memory-swap", "32m", "busybox:latest",
             "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1", check=False)
    assert p.returncode == 137, p.stderr
    state = pyrt.inspect("oom")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137


def test_fork_bomb_contained(pyrt):
    pyrt("run", "-d", "--name", "bomb", "--pids-limit", "30", "busybox:latest", "sh", "-c",
         "(i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done) 2>/dev/null; sleep 1000")
    cg = cgroup_dir(pyrt.inspect("bomb")["State"]["Pid"])
    for _ in range(200):  # the refusals the pids controller counted show it held
        events = dict(line.split() for line in read(os.path.join(cg, "pids.events")).splitlines())
        if int(events["max"]) > 0:
            break
        time.sleep(0.1)
    assert int(events["max"]) > 0
    assert int(read(os.path.join(cg, "pids.current"))) <= 30
    pyrt("rm", "-f", "bomb")
    assert not os.path.exists(cg)


def test_cpu_usage_from_cpu_stat(pyrt):
    # v2 has no cpuacct: CPU time comes from cpu.stat, which every cgroup has
    pyrt("run", "-d", "--name", "busy", "busybox:latest", "sh", "-c",
         "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000")
    time.sleep(2)
    stats = pyrt.out("stats", "--no-stream", "--format", "{{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", "busy")
    assert stats and "--" not in stats, stats
    pyrt("rm", "-f", "busy")


def test_init_from_a_sealed_copy(pyrt):
    # 6.1 knows no MFD_EXEC (6.3): the memfd is made without it
    out = pyrt.out("run", "--rm", "--init", "busybox:latest", "readlink", "/proc/1/exe")
    assert out.startswith("/memfd:pyrt-init"), out


def test_workdir_through_an_fd_is_refused(pyrt):
    p = pyrt("run", "--rm", "-w", "/proc/self/fd/3", "busybox:latest", "ls", "../../..", check=False)
    assert p.returncode != 0 and "chdir" in p.stderr, p


@pytest.mark.parametrize("manager", ["systemd", "cgroupfs"])
def test_block_io_limits_in_io_max(pyrt, manager):
    st = os.stat("/dev/vda")
    majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    pyrt("--cgroup-manager", manager, "run", "-d", "--name", "io", "--device-read-bps", "/dev/vda:1mb",
         "--device-write-iops", "/dev/vda:100", "busybox:latest", "sleep", "1000")
    cg = cgroup_dir(pyrt.inspect("io")["State"]["Pid"])
    assert read(os.path.join(cg, "io.max")) == f"{majmin} rbps=1048576 wbps=max riops=max wiops=100"
    pyrt("rm", "-f", "io")
