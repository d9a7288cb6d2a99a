"""Device allow-lists, attacked from inside real containers: root with the default
capabilities (CAP_MKNOD included) may make any device node, but open only docker's
default devices (and those given with devices= / --device). Both enforcements are
tested on this host: the v1 devices controller, and the eBPF program on cgroup2
(forced on the cgroup2 mount of a hybrid host). A static C probe
(tests/probes/devprobe.c) does the mknod and open calls and prints their errno."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

import pyrt
from pyrt import _core
from pyrt.cgroups.cgroup import Cgroup, layout, prune
from pyrt.cgroups.devices import DEFAULT_RULES, parse_device, parse_rule, rules_with, v1_lines
from pyrt.errors import InvalidArgument, SpawnError

PARENT = "pyrt-test-devices"
HERE = os.path.dirname(os.path.abspath(__file__))

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, mknod)")

# The nodes the attack makes: kvm, a virtual console, a loop device, the kernel log.
ATTACK = [("/dev/p_kvm", "c", 10, 232), ("/dev/p_tty0", "c", 4, 0), ("/dev/p_loop0", "b", 7, 0),
          ("/dev/p_kmsg", "c", 1, 11)]
# docker's defaults that must keep working (pyrt's /dev has these)
WORKING = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]


def attack_steps():
    steps = []
    for path, kind, major, minor in ATTACK:
        steps += [f"mk:{path}:{kind}:{major}:{minor}", f"open:{path}:rw", f"open:{path}:r", f"open:{path}:w"]
    steps += [f"open:{p}:rw" for p in WORKING]
    steps += ["mk:/dev/p_null:c:1:3", "open:/dev/p_null:rw", "open:/dev/tty:rw", "open:/dev/ptmx:rw"]
    return steps


def parse(out: str) -> dict:
    res = {}
    for line in out.splitlines():
        step, _, err = line.rpartition(" ")
        res[step] = int(err)
    return res


def assert_defaults_enforced(res: dict, allowed=()):
    """`allowed`: steps a rule beyond the defaults lets through (they must work)."""
    for step in allowed:
        assert res[step] == 0, (step, res)
    for path, kind, major, minor in ATTACK:
        assert res[f"mk:{path}:{kind}:{major}:{minor}"] == 0, res  # mknod itself is allowed (m)
        for how in ("rw", "r", "w"):
            if f"open:{path}:{how}" not in allowed:
                assert res[f"open:{path}:{how}"] == errno.EPERM, (path, how, res)
    for p in WORKING:
        assert res[f"open:{p}:rw"] == 0, (p, res)
    assert res["mk:/dev/p_null:c:1:3"] == 0 and res["open:/dev/p_null:rw"] == 0, res
    # no controlling terminal here: ENXIO, but never EPERM from the device filter
    assert res["open:/dev/tty:rw"] in (0, errno.ENXIO), res
    assert res["open:/dev/ptmx:rw"] == 0, res


@pytest.fixture(scope="module")
def probe(shm_base):
    if not shutil.which("gcc"):
        pytest.skip("no gcc to build the probe")
    out = os.path.join(shm_base, "devprobe")
    if not os.path.exists(out):
        r = subprocess.run(["gcc", "-static", "-O2", "-o", out, os.path.join(HERE, "probes", "devprobe.c")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot build a static probe: {r.stderr.strip()[-300:]}")
    return out


@pytest.fixture
def probe_root(rootfs_copy, probe):
    shutil.copy2(probe, os.path.join(rootfs_copy, "devprobe"))
    return rootfs_copy


@pytest.fixture
def cgroups():
    made = []
    yield made
    for cg in made:
        cg.remove()
    prune(PARENT, remove_parent=True)


def run_probe(root, steps, **kw):
    r = pyrt.run(["/devprobe", *steps], root, capture_output=True, **kw)
    assert r.returncode == 0, r.stderr
    return parse(r.stdout.decode())


# -- the rules and the program -------------------------------------------------------

def test_rules_parse_and_format():
    assert parse_rule("c 1:3 rwm") == ("c", 1, 3, "rwm", True)
    assert parse_rule("c 136:* rw") == ("c", 136, -1, "rw", True)
    assert parse_rule("a") == ("a", -1, -1, "rwm", True)
    with pytest.raises(InvalidArgument):
        parse_rule("x 1:3 rwm")
    with pytest.raises(InvalidArgument):
        parse_rule("c 1:3 rwx")
    lines = v1_lines(DEFAULT_RULES)
    assert lines[0] == ("devices.deny", "a")
    assert ("devices.allow", "c *:* m") in lines and ("devices.allow", "c 136:* rwm") in lines
    d = parse_device("/dev/null:/dev/mine:r")
    assert (d.host_path, d.container_path, d.access, d.rule()) == ("/dev/null", "/dev/mine", "r",
                                                                   ("c", 1, 3, "r", True))
    assert parse_device("/dev/null:rw").container_path == "/dev/null"
    with pytest.raises(InvalidArgument):
        parse_device("/etc/passwd")


def test_program_generation():
    prog = _core.devices_program(list(DEFAULT_RULES))
    assert len(prog) % 8 == 0 and len(prog) // 8 > len(DEFAULT_RULES) * 2
    assert prog[-8:] == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])  # exit
    with pytest.raises(ValueError):
        _core.devices_program([("x", 1, 3, "rwm", True)])
    with pytest.raises(ValueError):
        _core.devices_program([("c", 1, 3, "q", True)])
    with pytest.raises(SpawnError) as e:
        _core.devices_program([("c", -5, 3, "r", True)])
    assert e.value.errno == errno.EINVAL


# -- the eBPF program on cgroup2 -------------------------------------------------------

def v2_layout():
    lay = layout()
    if not lay.unified:
        pytest.skip("no cgroup2 mount")
    return lay.v2_only()


def v1_layout():
    lay = layout()
    if "devices" not in lay.v1:
        pytest.skip("no v1 devices controller")
    return lay.v1_only()


@needs_root
def test_bpf_default_rules(probe_root, cgroups):
    cg = Cgroup.create("bpf", parent=PARENT, layout=v2_layout())
    cgroups.append(cg)
    assert cg.v2_dir and "devices" not in cg.v1_dirs
    assert_defaults_enforced(run_probe(probe_root, attack_steps(), cgroup=cg))


SQUATTED = """
import os, subprocess, sys
import pyrt
from pyrt.cgroups.cgroup import layout
planted = os.path.join(layout().unified, "pyrt", f"run-{os.getpid()}")
os.makedirs(planted)
sleeper = subprocess.Popen(["sleep", "1000"])
try:
    with open(os.path.join(planted, "cgroup.procs"), "w") as f:
        f.write(str(sleeper.pid))
    r = pyrt.run(sys.argv[2:], sys.argv[1], capture_output=True)
    sys.stdout.write(r.stdout.decode())
    sys.exit(r.returncode)
finally:
    sleeper.kill()
    sleeper.wait()
    os.rmdir(planted)
"""


@needs_root
def test_a_squatted_default_device_cgroup_does_not_lift_the_device_list(probe_root):
    """The cgroup a process's containers share for docker's device list is
    pyrt/run-<pid>; one of that name still holding processes (containers of an
    earlier process with the same pid, which outlive it as subprocesses do, or
    anything put there) made pyrt run the next container with no device cgroup at
    all, every device open to its root. Another name is taken instead."""
    v2_layout()
    r = subprocess.run([sys.executable, "-c", SQUATTED, probe_root, "/devprobe", *attack_steps()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert_defaults_enforced(parse(r.stdout))


@needs_root
def test_bpf_allow_rule_opens_the_node(probe_root, cgroups):
    """Positive control: the probe can open /dev/kmsg (1:11) for writing when a rule
    allows it (reading needs CAP_SYSLOG too: not a test of the filter), and a
    /dev/null it made itself only once 1:3 is allowed."""
    rules = [("c", -1, -1, "m", True), ("c", 1, 11, "w", True)]
    cg = Cgroup.create("bpf-kmsg", parent=PARENT, layout=v2_layout(), devices=rules)
    cgroups.append(cg)
    steps = ["mk:/dev/p_kmsg:c:1:11", "open:/dev/p_kmsg:w", "open:/dev/p_kmsg:rw",
             "mk:/dev/p_null:c:1:3", "open:/dev/p_null:rw", "mk:/dev/p_kvm:c:10:232", "open:/dev/p_kvm:rw"]
    res = run_probe(probe_root, steps, cgroup=cg)
    assert res == {"mk:/dev/p_kmsg:c:1:11": 0, "open:/dev/p_kmsg:w": 0, "open:/dev/p_kmsg:rw": errno.EPERM,
                   "mk:/dev/p_null:c:1:3": 0, "open:/dev/p_null:rw": errno.EPERM,
                   "mk:/dev/p_kvm:c:10:232": 0, "open:/dev/p_kvm:rw": errno.EPERM}
    cg2 = Cgroup.create("bpf-null", parent=PARENT, layout=v2_layout(), devices=rules + [parse_rule("c 1:3 rw")])
    cgroups.append(cg2)
    res = run_probe(probe_root, ["mk:/dev/p_null:c:1:3", "open:/dev/p_null:rw"], cgroup=cg2)
    assert res == {"mk:/dev/p_null:c:1:3": 0, "open:/dev/p_null:rw": 0}


@needs_root
def test_bpf_last_rule_wins_and_mknod_can_be_denied(probe_root, cgroups):
    rules = [("a", -1, -1, "rwm", True), ("c", 1, 5, "rwm", False), ("b", -1, -1, "m", False)]
    cg = Cgroup.create("bpf-order", parent=PARENT, layout=v2_layout(), devices=rules)
    cgroups.append(cg)
    res = run_probe(probe_root, ["open:/dev/null:rw", "open:/dev/zero:r", "mk:/dev/p_loop0:b:7:0",
                                 "mk:/dev/p_kmsg:c:1:11", "open:/dev/p_kmsg:w"], cgroup=cg)
    assert res == {"open:/dev/null:rw": 0, "open:/dev/zero:r": errno.EPERM, "mk:/dev/p_loop0:b:7:0": errno.EPERM,
                   "mk:/dev/p_kmsg:c:1:11": 0, "open:/dev/p_kmsg:w": 0}


@needs_root
def test_bpf_parent_program_applies_to_children(probe_root, cgroups):
    """Programs attached with BPF_F_ALLOW_MULTI on an ancestor still run: a child
    cgroup allowing everything cannot undo its parent's filter."""
    lay = v2_layout()
    parent_cg = Cgroup.create("outer", parent=PARENT, layout=lay)
    inner = Cgroup.create("inner", parent=f"{PARENT}/outer", layout=lay, devices=[("a", -1, -1, "rwm", True)])
    cgroups += [inner, parent_cg]
    res = run_probe(probe_root, ["mk:/dev/p_kvm:c:10:232", "open:/dev/p_kvm:rw", "open:/dev/null:rw"],
                    cgroup=inner)
    assert res == {"mk:/dev/p_kvm:c:10:232": 0, "open:/dev/p_kvm:rw": errno.EPERM, "open:/dev/null:rw": 0}


# -- the v1 devices controller ---------------------------------------------------------

@needs_root
def test_v1_default_rules(probe_root, cgroups):
    cg = Cgroup.create("v1", parent=PARENT, layout=v1_layout())
    cgroups.append(cg)
    assert "devices" in cg.v1_dirs and cg.v2_dir is None
    with open(os.path.join(cg.v1_dirs["devices"], "devices.list")) as f:
        listed = f.read().split("\n")
    assert "c 1:3 rwm" in listed and "a *:* rwm" not in listed
    assert_defaults_enforced(run_probe(probe_root, attack_steps(), cgroup=cg))


@needs_root
def test_v1_allow_rule_opens_the_node(probe_root, cgroups):
    rules = list(DEFAULT_RULES) + [("c", 1, 11, "w", True)]
    cg = Cgroup.create("v1-kmsg", parent=PARENT, layout=v1_layout(), devices=rules)
    cgroups.append(cg)
    res = run_probe(probe_root, ["mk:/dev/p_kmsg:c:1:11", "open:/dev/p_kmsg:w", "open:/dev/p_kmsg:rw"],
                    cgroup=cg)
    assert res == {"mk:/dev/p_kmsg:c:1:11": 0, "open:/dev/p_kmsg:w": 0, "open:/dev/p_kmsg:rw": errno.EPERM}


# -- what pyrt starts ------------------------------------------------------------------

@needs_root
def test_run_without_cgroup_gets_the_default_rules(probe_root, cgroups):
    if layout().mode == "none":
        pytest.skip("no cgroup hierarchy")
    assert_defaults_enforced(run_probe(probe_root, attack_steps()))
    # its cgroup is gone with it
    top = os.path.join(layout().unified or layout().v1["devices"], "pyrt")
    left = [n for n in (os.listdir(top) if os.path.isdir(top) else ()) if n.startswith(f"run-{os.getpid()}-")]
    assert not left


@needs_root
def test_run_with_device(probe_root):
    if layout().mode == "none":
        pytest.skip("no cgroup hierarchy")
    res = run_probe(probe_root, ["open:/dev/kmsg:w", "open:/dev/kmsg:rw", "open:/dev/p_null:rw"],
                    devices=["/dev/kmsg:w", "/dev/null:/dev/p_null"])
    assert res == {"open:/dev/kmsg:w": 0, "open:/dev/kmsg:rw": errno.EPERM, "open:/dev/p_null:rw": 0}
    if os.path.exists("/dev/kvm"):
        res = run_probe(probe_root, ["open:/dev/kvm:rw"], devices=["/dev/kvm"])
        assert res == {"open:/dev/kvm:rw": 0}


@needs_root
def test_run_privileged_has_every_device(probe_root):
    res = run_probe(probe_root, ["mk:/dev/p_kmsg:c:1:11", "open:/dev/p_kmsg:rw"], privileged=True)
    assert res == {"mk:/dev/p_kmsg:c:1:11": 0, "open:/dev/p_kmsg:rw": 0}


@pytest.fixture
def probe_image(tmp_shm, rootfs, probe):
    rt = pyrt.Runtime(os.path.join(tmp_shm, "store"), quiet=True)
    tar = os.path.join(tmp_shm, "probe.tar")
    with tarfile.open(tar, "w") as tf:
        for name in ("bin", "etc", "tmp", "dev", "proc", "sys"):
            if os.path.exists(os.path.join(rootfs, name)):
                tf.add(os.path.join(rootfs, name), arcname=name)
        tf.add(probe, arcname="devprobe")
    rt.images.import_image(tar, "probe", "1")
    try:
        yield rt
    finally:
        rt.close()


def run_container(rt, steps, **kw):
    c = rt.containers.create("probe:1", ["/devprobe", *steps], **kw)
    proc = c.start_process(stdin=pyrt.DEVNULL, stdout=pyrt.PIPE, stderr=pyrt.PIPE)
    out, err = proc.communicate()
    c.finished(proc.returncode)
    assert proc.returncode == 0, err
    c.remove()
    return parse(out.decode())


@needs_root
def test_container_default_rules_and_device(probe_image):
    if layout().mode == "none":
        pytest.skip("no cgroup hierarchy")
    assert_defaults_enforced(run_container(probe_image, attack_steps()))
    res = run_container(probe_image, ["open:/dev/kmsg:w", "open:/dev/kmsg:rw"], devices=["/dev/kmsg:w"])
    assert res == {"open:/dev/kmsg:w": 0, "open:/dev/kmsg:rw": errno.EPERM}


@needs_root
def test_container_detached_default_rules(probe_image):
    if layout().mode == "none":
        pytest.skip("no cgroup hierarchy")
    c = probe_image.containers.create("probe:1", ["/devprobe", *attack_steps()])
    c.start()
    assert c.wait()["StatusCode"] == 0
    assert_defaults_enforced(parse(c.logs().decode()))
    c.remove()


def test_cli_device_flag():
    from pyrt.cli.main import build_parser
    args = build_parser().parse_args(["run", "--device", "/dev/kmsg:r", "--device", "/dev/null", "img"])
    assert args.device == ["/dev/kmsg:r", "/dev/null"]


# -- the OCI runtime ---------------------------------------------------------------------

OCI_DEVICES = [{"allow": False, "access": "rwm"},
               {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"}]


@needs_root
def test_oci_resources_devices_on_cgroup2(probe_root, cgroups):
    """linux.resources.devices as pyrt-runtime applies it where the cgroup has no
    v1 devices hierarchy (a cgroup2 host): the eBPF program."""
    from pyrt.ocirt import spec as rs
    res = rs._resources({"devices": OCI_DEVICES}, [])
    cg = Cgroup.create("oci-v2", parent=PARENT, layout=v2_layout(), devices=None,
                       accounting=rs.resource_controllers(res))
    cgroups.append(cg)
    assert "devices" not in cg.v1_dirs
    rs.apply_resources(cg, res)
    res = run_probe(probe_root, attack_steps(), cgroup=cg)
    assert_defaults_enforced(res, allowed=["open:/dev/p_kmsg:w"])  # the spec's allow rule


@needs_root
def test_oci_resources_devices_without_rules_change_nothing(probe_root, cgroups):
    from pyrt.ocirt import spec as rs
    res = rs._resources({}, [])
    assert "devices" not in res
    cg = Cgroup.create("oci-none", parent=PARENT, layout=v2_layout(), devices=None)
    cgroups.append(cg)
    rs.apply_resources(cg, res)
    assert run_probe(probe_root, ["mk:/dev/p_kmsg:c:1:11", "open:/dev/p_kmsg:w"], cgroup=cg) == \
        {"mk:/dev/p_kmsg:c:1:11": 0, "open:/dev/p_kmsg:w": 0}


@needs_root
def test_pyrt_runtime_enforces_devices(probe_root, tmp_shm):
    """pyrt-runtime run with the devices an engine sends (deny all, then its
    defaults): on this host's layout (the v1 controller on v1 and hybrid hosts,
    eBPF on cgroup2)."""
    import json
    import sys
    import uuid
    binary = os.path.join(os.path.dirname(sys.executable), "pyrt-runtime")
    if not os.path.exists(binary) or layout().mode == "none":
        pytest.skip("no pyrt-runtime or no cgroup hierarchy")
    bundle = os.path.join(tmp_shm, "bundle")
    os.mkdir(bundle)
    subprocess.run([binary, "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": probe_root, "readonly": False}
    cfg["process"]["args"] = ["/devprobe", *attack_steps()]
    cfg["process"]["terminal"] = False
    cfg["process"]["capabilities"] = {k: sorted(set(v) | {"CAP_MKNOD"})
                                      for k, v in cfg["process"]["capabilities"].items()}
    cfg["linux"]["resources"] = {"devices": OCI_DEVICES}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    state, cid = os.path.join(tmp_shm, "state"), f"dev-{uuid.uuid4().hex[:12]}"
    try:
        p = subprocess.run([binary, "--root", state, "run", "--bundle", bundle, cid],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr
        res = parse(p.stdout.decode())
    finally:
        subprocess.run([binary, "--root", state, "delete", "--force", cid], capture_output=True)
    assert_defaults_enforced(res, allowed=["open:/dev/p_kmsg:w"])


# -- the warm pool ---------------------------------------------------------------------

@needs_root
@pytest.mark.parametrize("zygote", [False, True], ids=["in-process", "zygote"])
@pytest.mark.parametrize("measure", [False, True], ids=["shared-cgroup", "cgroup-each"])
def test_pool_default_rules(probe_root, measure, zygote):
    """Pool children: in a cgroup each when measured (or limited), else in one
    shared device cgroup where cgroup2 is mounted."""
    from pyrt.pool.pool import Pool
    lay = layout()
    if lay.mode == "none" or (not measure and not lay.unified):
        pytest.skip("no cgroup2 (the shared device cgroup) or no cgroup at all")
    with Pool(rootfs=probe_root, size=1, measure=measure, zygote=zygote) as pool:
        r = pool.run(["/devprobe", *attack_steps()])
    assert r.returncode == 0, r.stderr
    assert_defaults_enforced(parse(r.stdout.decode()))


@needs_root
def test_cli_run_rootfs_with_device(probe_root):
    import sys
    if layout().mode == "none":
        pytest.skip("no cgroup hierarchy")
    cmd = [sys.executable, "-m", "pyrt.cli.main", "run", "--rootfs", probe_root, "--device", "/dev/kmsg:w",
           "/devprobe", "open:/dev/kmsg:w", "open:/dev/kmsg:rw", "mk:/dev/p_kvm:c:10:232", "open:/dev/p_kvm:rw"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONSAFEPATH="1"))
    assert r.returncode == 0, r.stderr
    assert parse(r.stdout) == {"open:/dev/kmsg:w": 0, "open:/dev/kmsg:rw": errno.EPERM,
                               "mk:/dev/p_kvm:c:10:232": 0, "open:/dev/p_kvm:rw": errno.EPERM}


@needs_root
def test_hybrid_falls_back_to_v1_without_cgroup_bpf(probe_root, cgroups, monkeypatch):
    """Where the eBPF program cannot be loaded (a kernel without cgroup bpf) a
    hybrid host uses its v1 devices controller."""
    lay = layout()
    if lay.mode != "hybrid" or "devices" not in lay.v1:
        pytest.skip("needs a hybrid host with the v1 devices controller")

    def no_bpf(fd, path, rules):
        raise SpawnError(errno.EINVAL, "load device filter", path)
    monkeypatch.setattr(_core, "devices_attach", no_bpf)
    cg = Cgroup.create("fallback", parent=PARENT)
    cgroups.append(cg)
    assert cg.v2_dir and "devices" in cg.v1_dirs
    assert_defaults_enforced(run_probe(probe_root, attack_steps(), cgroup=cg))


@needs_root
def test_run_device_cgroup_not_left_behind_on_errors(probe_root):
    lay = layout()
    if lay.mode == "none":
        pytest.skip("no cgroup hierarchy")
    top = os.path.join(lay.unified or lay.v1["devices"], "pyrt")

    def mine():
        return [n for n in (os.listdir(top) if os.path.isdir(top) else ()) if n.startswith(f"run-{os.getpid()}-")]
    with pytest.raises(ValueError):
        pyrt.spawn(["/devprobe"], probe_root, tty=True, stdout=pyrt.PIPE)
    with pytest.raises(pyrt.errors.SpawnError):
        pyrt.run(["/no/such/program"], probe_root)
    assert not mine()
