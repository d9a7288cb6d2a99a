"""pyrt-runtime's native cgroup side (csrc/rt_resources.c, csrc/rt_cgroup_make.c,
csrc/rt_cgroup_user.c) against the Python it replaces: for a table of configs,
linux.resources validated by both (pyrt.ocirt.resources.parse_resources with the
linux.devices of pyrt.ocirt.mounts.device) must give the same validated form or the
same error line; cgroups made by both (Cgroup.create with
accounting=resource_controllers, apply_resources, spawn_fds) the same directories,
the same limit files, the same errors, and nothing left after a failure. The C
side runs in tests/probes/rt_cgroup_probe.c, built here from csrc/ and yajl.

The host's own layout is used (hybrid here: v1 controllers and an empty cgroup2),
and in a private mount namespace its parts alone: without the cgroup2 mount (as a
v1 host) and without the v1 ones (as a pure cgroup2 host), the Python side given
the same Layout (v1_only(), v2_only())."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from pyrt.cgroups.cgroup import Cgroup, Limits, cpu_shares_to_weight, layout, prune
from pyrt.cgroups.oci import apply_resources, resource_controllers
from pyrt.errors import PyrtError

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "csrc")
PARENT = f"pyrt-tests-{os.getpid()}/rtcg"
NAME = "ctr"

with open(os.path.join(HERE, "probes", "rt_cgroup_probe.sources")) as _f:  # the guest's probe uses it too
    C_SOURCES = [ln.strip() for ln in _f if ln.strip() and not ln.startswith("#")]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("no gcc to build the probe")
    out = str(tmp_path_factory.mktemp("rtcg") / "rt_cgroup_probe")
    r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-I", SRC, "-o", out,
                        os.path.join(HERE, "probes", "rt_cgroup_probe.c")] +
                       [os.path.join(SRC, f) for f in C_SOURCES] + ["-lyajl", "-lm"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if "yajl" in r.stderr and "No such file" in r.stderr:
            pytest.skip("yajl's headers are not installed")
        pytest.fail(f"cannot build the probe: {r.stderr[-2000:]}")
    return out


def run_probe(probe, *args, ns=None):
    """(ok, stdout, error line); ns: "v1" or "v2" runs it in a mount namespace
    where the host's other cgroup hierarchies are gone."""
    argv = [probe, *args]
    if ns:
        lay = layout()
        gone = sorted(set(lay.v1.values())) if ns == "v2" else [lay.unified]
        gone += ["/sys/fs/cgroup/systemd"] if ns == "v2" and os.path.ismount("/sys/fs/cgroup/systemd") else []
        script = "".join(f"umount -l {m} && " for m in gone) + 'exec "$@"'
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode == 0, p.stdout, p.stderr.rstrip("\n")


def write_config(tmp_path, linux_text: str) -> str:
    path = os.path.join(tmp_path, "config.json")
    with open(path, "w") as f:
        f.write('{"ociVersion": "1.0.2", "linux": ' + linux_text + "}")
    return path


# -- the Python side ------------------------------------------------------------------------

def py_devices(linux, dev_is_fs=True):
    """spec.py's device list (what parse_resources is given)."""
    from pyrt.ocirt import mounts as ocimounts
    devices, names = [], set()
    for i, d in enumerate(linux.get("devices") or []):
        devices.append(ocimounts.device(d, f"linux.devices[{i}]"))
        names.add(devices[-1][0])
    if dev_is_fs:
        for p, kind, major, minor in ocimounts.DEFAULT_DEVICES:
            if p.encode() not in names:
                devices.append((p.encode(), ocimounts.DEV_KIND[kind] | 0o666, major, minor, 0, 0))
    return devices


def py_parse(linux_text, dev_is_fs=True):
    """("ok", resources) or ("error", line) or ("crash", exception type name)."""
    from pyrt.ocirt.resources import parse_resources
    linux = json.loads(linux_text)
    try:
        if not isinstance(linux, dict):
            linux = {}
        return "ok", parse_resources(linux.get("resources") or {}, py_devices(linux, dev_is_fs))
    except PyrtError as e:
        return "error", str(e)
    except (AttributeError, TypeError) as e:
        return "crash", type(e).__name__


def normal(res):
    """The validated form as JSON sees it (tuples as lists)."""
    return json.loads(json.dumps(res))


# -- validation: the table ------------------------------------------------------------------

BIG = str(2 ** 70)
PARSE = [
    # nothing, and the empty forms of each part
    '{}', '{"resources": null}', '{"resources": {}}', '{"resources": 0}', '{"resources": []}',
    '{"resources": {"memory": null, "cpu": {}, "pids": 0, "devices": [], "blockIO": "", "unified": false}}',
    # types
    '{"resources": 5}', '{"resources": "x"}', '{"resources": [1]}', '{"resources": true}',
    '{"resources": {"pids": [1]}}', '{"resources": {"blockIO": 3}}', '{"resources": {"unified": [1]}}',
    '{"resources": {"memory": "x"}}', '{"resources": {"memory": [1]}}', '{"resources": {"cpu": 5}}',
    '{"resources": {"memory": {"limit": "1g"}}}', '{"resources": {"memory": {"limit": 1.5}}}',
    '{"resources": {"memory": {"limit": true}}}', '{"resources": {"memory": {"limit": [1]}}}',
    # unsupported
    '{"resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}}', '{"resources": {"network": {"classID": 1}}}',
    '{"resources": {"rdma": {"x": {}}}}', '{"resources": {"rdma": {}, "network": null, "hugepageLimits": []}}',
    '{"resources": {"memory": {"kernel": 5}}}', '{"resources": {"memory": {"kernelTCP": true}}}',
    '{"resources": {"memory": {"kernel": -1, "kernelTCP": 0}}}', '{"resources": {"memory": {"kernel": -1.0}}}',
    '{"resources": {"memory": {"kernel": false, "kernelTCP": 0.0}}}', '{"resources": {"memory": {"kernel": "0"}}}',
    '{"resources": {"cpu": {"realtimeRuntime": 1}}}', '{"resources": {"cpu": {"realtimePeriod": 0, "realtimeRuntime": 0}}}',
    # memory
    '{"resources": {"memory": {"limit": 1048576000, "reservation": 524288000, "swap": 2097152000, '
    '"swappiness": 10, "disableOOMKiller": true}}}',
    '{"resources": {"memory": {"limit": 0, "reservation": -5, "swap": 0}}}',
    '{"resources": {"memory": {"limit": -1, "swap": -1}}}', '{"resources": {"memory": {"swap": -2}}}',
    '{"resources": {"memory": {"limit": 100000000, "swap": 99999999}}}',
    '{"resources": {"memory": {"limit": 100000000, "swap": 100000000}}}',
    '{"resources": {"memory": {"limit": ' + BIG + ', "swap": ' + BIG + '1}}}',
    '{"resources": {"memory": {"limit": ' + BIG + '1, "swap": ' + BIG + '}}}',
    '{"resources": {"memory": {"limit": -' + BIG + '}}}', '{"resources": {"memory": {"limit": -0}}}',
    '{"resources": {"memory": {"swappiness": 101}}}', '{"resources": {"memory": {"swappiness": -1}}}',
    '{"resources": {"memory": {"swappiness": 0}}}', '{"resources": {"memory": {"swappiness": 1e2}}}',
    '{"resources": {"memory": {"disableOOMKiller": "yes"}}}', '{"resources": {"memory": {"disableOOMKiller": 0.0}}}',
    '{"resources": {"memory": {"limit": 5, "limit": 7}}}',
    # cpu
    '{"resources": {"cpu": {"shares": 1024, "quota": 50000, "period": 100000}}}',
    '{"resources": {"cpu": {"shares": -1}}}', '{"resources": {"cpu": {"shares": 0, "quota": 0, "period": 0}}}',
    '{"resources": {"cpu": {"shares": "x"}}}', '{"resources": {"cpu": {"quota": -1}}}',
    '{"resources": {"cpu": {"quota": 0.0}}}', '{"resources": {"cpu": {"quota": false}}}',
    '{"resources": {"cpu": {"quota": 1.5}}}', '{"resources": {"cpu": {"quota": -' + BIG + '}}}',
    '{"resources": {"cpu": {"period": 999}}}', '{"resources": {"cpu": {"period": 1000001}}}',
    '{"resources": {"cpu": {"period": 1000}}}', '{"resources": {"cpu": {"shares": ' + BIG + '}}}',
    # cpusets
    '{"resources": {"cpu": {"cpus": "0-3,5", "mems": "0"}}}', '{"resources": {"cpu": {"cpus": " 3 , 1-2, 1 "}}}',
    '{"resources": {"cpu": {"cpus": 2}}}', '{"resources": {"cpu": {"cpus": [0, "2-3", 1]}}}',
    '{"resources": {"cpu": {"cpus": [true]}}}', '{"resources": {"cpu": {"cpus": [1.5]}}}',
    '{"resources": {"cpu": {"cpus": [null, 2]}}}', '{"resources": {"cpu": {"cpus": [[1]]}}}',
    '{"resources": {"cpu": {"cpus": [{"a": 1}]}}}', '{"resources": {"cpu": {"cpus": 1.5}}}',
    '{"resources": {"cpu": {"cpus": true}}}', '{"resources": {"cpu": {"cpus": {"a": [1, "x"]}}}}',
    '{"resources": {"cpu": {"cpus": "3-1"}}}', '{"resources": {"cpu": {"cpus": "0-65536"}}}',
    '{"resources": {"cpu": {"cpus": "65535"}}}', '{"resources": {"cpu": {"cpus": "65536"}}}',
    '{"resources": {"cpu": {"cpus": "99999999999999999999999-1"}}}', '{"resources": {"cpu": {"cpus": "1-"}}}',
    '{"resources": {"cpu": {"cpus": "-1"}}}', '{"resources": {"cpu": {"cpus": "1,,2"}}}',
    '{"resources": {"cpu": {"cpus": "   "}}}', '{"resources": {"cpu": {"cpus": "a"}}}',
    '{"resources": {"cpu": {"cpus": "0\\t1"}}}', '{"resources": {"cpu": {"cpus": "1-3,\\u0663"}}}',
    '{"resources": {"cpu": {"cpus": "\\uff11-\\uff13"}}}', '{"resources": {"cpu": {"cpus": "0x1"}}}',
    '{"resources": {"cpu": {"cpus": "1\'2"}}}', '{"resources": {"cpu": {"mems": "0-1,\\"x"}}}',
    '{"resources": {"cpu": {"mems": "\\u00e9\\u2028\\u0085"}}}', '{"resources": {"cpu": {"mems": 0}}}',
    '{"resources": {"cpu": {"mems": [' + ", ".join(str(i) for i in range(0, 3000, 2)) + ']}}}',
    '{"resources": {"cpu": {"cpus": [1e400, -0.0, 1e16, 1.5e-7, 0.0001, 123456789012345678]}}}',
    # pids
    '{"resources": {"pids": {"limit": 100}}}', '{"resources": {"pids": {"limit": -1}}}',
    '{"resources": {"pids": {"limit": -2}}}', '{"resources": {"pids": {"limit": 0}}}',
    '{"resources": {"pids": {"limit": "5"}}}', '{"resources": {"pids": {"limit": ' + BIG + '}}}',
    # devices
    '{"resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, '
    '"minor": 229, "access": "rw"}]}}',
    '{"resources": {"devices": [{"allow": true}]}}', '{"resources": {"devices": [{"type": "u"}]}}',
    '{"resources": {"devices": [{"type": 5}]}}', '{"resources": {"devices": [{"type": ["c"]}]}}',
    '{"resources": {"devices": [{"type": {"x": "c\'"}}]}}', '{"resources": {"devices": [{"type": 1.0}]}}',
    '{"resources": {"devices": [{"type": ""}]}}', '{"resources": {"devices": [{"access": "rwx"}]}}',
    '{"resources": {"devices": [{"access": 7}]}}', '{"resources": {"devices": [{"access": ""}]}}',
    '{"resources": {"devices": [{"access": "mmrr"}]}}', '{"resources": {"devices": [{"access": "wm"}]}}',
    '{"resources": {"devices": [{"type": "b", "major": -1, "minor": -1.0}]}}',
    '{"resources": {"devices": [{"type": "b", "major": -2}]}}', '{"resources": {"devices": [{"type": "b", "minor": "1"}]}}',
    '{"resources": {"devices": [{"type": "c", "major": true}]}}',
    '{"resources": {"devices": [{"type": "c", "major": ' + BIG + ', "minor": 0}]}}',
    '{"resources": {"devices": [{"type": "a", "major": 5, "minor": 6}]}}',
    '{"resources": {"devices": [{"type": "c", "major": 1, "minor": 3, "allow": 1}, 5]}}',
    '{"resources": {"devices": [null]}}', '{"resources": {"devices": {"type": "c"}}}',
    '{"resources": {"devices": "abc"}}', '{"resources": {"devices": 5}}',
    '{"resources": {"devices": [' + ", ".join('{"type": "c", "major": %d, "minor": %d, "allow": %s}'
                                              % (i % 300, i, "true" if i % 3 else "false")
                                              for i in range(2000)) + ']}}',
    # linux.devices (what they add to the rules, and their own checks)
    '{"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}, {"path": "/dev/sda", "type": "b", '
    '"major": 8, "minor": 0}, {"path": "/dev/p", "type": "p"}, {"path": "/dev//./null", "type": "u", "major": 1, '
    '"minor": 3}], "resources": {"devices": [{"allow": false}]}}',
    '{"devices": [{"path": "dev/x", "type": "c"}], "resources": {}}',
    '{"devices": [{"path": "/dev/x", "type": "q"}]}', '{"devices": [{"path": "/dev/x", "type": "c", "major": null}]}',
    '{"devices": [{"path": "/dev/x", "type": "c", "minor": -3}]}',
    '{"devices": [{"path": "/dev/x", "type": "c", "fileMode": 4096}]}',
    '{"devices": [{"path": "/dev/x", "type": "c", "fileMode": %d}]}' % 0o20666,
    '{"devices": [{"path": "/dev/x", "type": "c", "fileMode": 65536}]}',
    '{"devices": [{"path": "/dev/x", "type": "c", "fileMode": null, "uid": -1}]}',
    '{"devices": [{"path": "/dev/x", "type": "c", "gid": "0"}]}', '{"devices": [5]}',
    '{"devices": [{"path": "/dev/x", "type": "p", "major": "junk"}], "resources": {"devices": [{}]}}',
    '{"devices": [{"path": "//dev/null", "type": "c", "major": 1, "minor": 3}], "resources": {"devices": [{}]}}',
    # blockIO
    '{"resources": {"blockIO": {"weight": 500, "leafWeight": 300, "weightDevice": [{"major": 8, "minor": 0, '
    '"weight": 100, "leafWeight": 0}, {"major": 8, "minor": 16, "leafWeight": 20}], "throttleReadBpsDevice": '
    '[{"major": 8, "minor": 0, "rate": 1048576}], "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}, '
    '{"major": 4095, "minor": 1048575, "rate": 18446744073709551615}]}}}',
    '{"resources": {"blockIO": {"weight": 9}}}', '{"resources": {"blockIO": {"weight": 1001}}}',
    '{"resources": {"blockIO": {"weight": 0, "leafWeight": 0.0}}}', '{"resources": {"blockIO": {"leafWeight": "5"}}}',
    '{"resources": {"blockIO": {"weightDevice": {"major": 8}}}}', '{"resources": {"blockIO": {"weightDevice": [5]}}}',
    '{"resources": {"blockIO": {"weightDevice": [{"minor": 0}]}}}',
    '{"resources": {"blockIO": {"weightDevice": [{"major": 4096, "minor": 0}]}}}',
    '{"resources": {"blockIO": {"weightDevice": [{"major": 8, "minor": 1048576}]}}}',
    '{"resources": {"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 5}]}}}',
    '{"resources": {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}}}',
    '{"resources": {"blockIO": {"throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}}}',
    '{"resources": {"blockIO": {"throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 18446744073709551616}]}}}',
    '{"resources": {"blockIO": {"throttleReadIOPSDevice": "8:0 100"}}}',
    # unified
    '{"resources": {"unified": {"memory.high": "100000000", "pids.max": "10"}}}',
    '{"resources": {"unified": {"../../cgroup.procs": "1"}}}', '{"resources": {"unified": {".hidden": "1"}}}',
    '{"resources": {"unified": {"a/b": "1"}}}', '{"resources": {"unified": {"memory.high": 5}}}',
    '{"resources": {"unified": {"memory.high": null}}}', '{"resources": {"unified": {"": "x"}}}',
    '{"resources": {"unified": {"x\\ny": "1"}}}',
    # cgroup.* files that act on processes or the tree are no limits (a host pid moved in)
    '{"resources": {"unified": {"cgroup.procs": "1"}}}', '{"resources": {"unified": {"cgroup.threads": "1"}}}',
    '{"resources": {"unified": {"cgroup.kill": "1"}}}', '{"resources": {"unified": {"cgroup.freeze": "1"}}}',
    '{"resources": {"unified": {"cgroup.subtree_control": "+memory"}}}',
    '{"resources": {"unified": {"cgroup.max.depth": "2", "cgroup.max.descendants": "5"}}}',
    # memory bounded to int64 (a v1 kernel takes more as 0)
    '{"resources": {"memory": {"limit": %d}}}' % (2 ** 63 - 1), '{"resources": {"memory": {"limit": %d}}}' % 2 ** 63,
    '{"resources": {"memory": {"swap": %d}}}' % 2 ** 64,
    '{"resources": {"unified": {"a": "1", "b": "2", "a": "3"}}}', '{"resources": {"unified": {"a": 1, "a": "3"}}}',
    # everything at once, and the first error of several
    '{"resources": {"memory": {"limit": 100000000}, "cpu": {"shares": 2}, "pids": {"limit": 5}, "devices": '
    '[{"allow": false}], "blockIO": {"weight": 10}, "unified": {"io.max": "x"}}}',
    '{"resources": {"memory": {"limit": "x"}, "cpu": {"shares": "y"}}}',
    '{"resources": {"cpu": {"shares": "y"}, "pids": {"limit": "z"}, "devices": [5]}}',
    '{"resources": {"devices": [5], "blockIO": {"weight": 1}, "unified": {"/": "1"}}}',
    # repeated keys: the last one counts
    '{"resources": {"pids": {"limit": 5}, "pids": {"limit": "x"}}}',
    '{"resources": {"pids": {"limit": "x"}, "pids": {"limit": 5}}}',
]


@pytest.mark.parametrize("linux", PARSE, ids=range(len(PARSE)))
def test_parse_matches_python(probe, tmp_path, linux):
    ok, out, err = run_probe(probe, "parse", write_config(tmp_path, linux))
    kind, want = py_parse(linux)
    if kind == "ok":
        assert ok, err
        assert json.loads(out.splitlines()[0]) == normal(want)
        any_, any_nodev = out.splitlines()[1].split()
        assert any_ == f"any={int(bool(want))}"
        assert any_nodev == f"any_nodev={int(bool({k: v for k, v in want.items() if k != 'devices'}))}"
    elif kind == "error":
        assert not ok and err == want
    else:
        # Python fails there with an internal error (iterating or reading a value of
        # the wrong type); the native side names the field instead
        assert not ok and err.startswith("config.json: linux.") and "\n" not in err, err


@pytest.mark.parametrize("linux", [
    '{"devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}], "resources": {"devices": [{}]}}',
    '{"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}], "resources": {"devices": [{}]}}',
])
def test_parse_without_own_dev(probe, tmp_path, linux):
    """/dev not the container's own (a bind mount): no default devices added."""
    ok, out, err = run_probe(probe, "parse", write_config(tmp_path, linux), "nodevfs")
    kind, want = py_parse(linux, dev_is_fs=False)
    assert kind == "ok" and ok, err
    assert json.loads(out.splitlines()[0]) == normal(want)


def test_weights_match_python(probe):
    """cgroup2's cpu.weight from cpu.shares: every value of the range, as Python."""
    p = subprocess.run([probe, "weights"], capture_output=True, text=True, check=True)
    got = [int(x) for x in p.stdout.split()]
    assert got == [cpu_shares_to_weight(s) for s in range(262146)]


# -- making cgroups -----------------------------------------------------------------------------

SETTINGS = {
    "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.swappiness",
    "memory.oom_control", "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpuset.cpus", "cpuset.mems",
    "pids.max", "devices.list", "blkio.weight", "blkio.bfq.weight", "blkio.weight_device",
    "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device", "blkio.throttle.read_iops_device",
    "blkio.throttle.write_iops_device", "memory.max", "memory.swap.max", "memory.low", "memory.high", "cpu.weight",
    "cpu.max", "io.max", "io.weight", "io.bfq.weight", "cgroup.subtree_control", "cgroup.max.depth",
    "cgroup.max.descendants",
}


def _mounts(lay):
    return ([lay.unified] if lay.unified else []) + sorted(set(lay.v1.values()))


def snapshot(lay):
    """{path: sorted listing or file text} of the test cgroup in every hierarchy
    (its settings files), and of each level of the parent (their settings)."""
    snap = {}
    for mount in _mounts(lay):
        parts = PARENT.split("/") + [NAME]
        for i in range(1, len(parts) + 1):
            d = os.path.join(mount, *parts[:i])
            if not os.path.isdir(d):
                break
            names = sorted(os.listdir(d))
            if i == len(parts):
                snap[d] = names
            for n in names:
                if n in SETTINGS or (i == len(parts) and n.startswith("hugetlb.") and n.endswith(".max")):
                    try:
                        with open(os.path.join(d, n)) as f:
                            snap[os.path.join(d, n)] = f.read()
                    except OSError as e:
                        snap[os.path.join(d, n)] = f"unreadable: {e.errno}"
    return snap


def leftovers(lay):
    return [os.path.join(m, PARENT, NAME) for m in _mounts(lay) if os.path.isdir(os.path.join(m, PARENT, NAME))]


def remove_test_cgroup(lay):
    for d in leftovers(lay):
        os.rmdir(d)


def py_create(linux_text, lay, ignore_devices=False, host=None):
    """Python's create on the layout `lay`: ("ok", snapshot of the `host` layout's
    hierarchies) or ("error", line); the cgroup removed."""
    from pyrt.ocirt.resources import parse_resources
    linux = json.loads(linux_text)
    res = parse_resources(linux.get("resources") or {}, py_devices(linux))
    if ignore_devices:
        res = {k: v for k, v in res.items() if k != "devices"}
    cg = None
    try:
        cg = Cgroup.create(NAME, Limits(), PARENT, layout=lay, accounting=resource_controllers(res), devices=None)
        apply_resources(cg, res)
        cg.spawn_fds()
        cg.close_fds(force=True)
        return "ok", snapshot(host or lay)
    except PyrtError as e:
        return "error", str(e)
    except OverflowError as e:  # a device number beyond 64 bits for the eBPF program
        return "crash", type(e).__name__
    finally:
        if cg is not None:
            cg.remove()
        remove_test_cgroup(host or lay)


def c_create(probe, tmp_path, linux_text, lay, ns=None, ignore_devices=False):
    args = ["create", write_config(tmp_path, linux_text), NAME, PARENT] + (["ignore-devices"] if ignore_devices else [])
    try:
        ok, out, err = run_probe(probe, *args, ns=ns)
        if not ok:
            assert not leftovers(lay), f"left after a failure: {leftovers(lay)}"
            return "error", err, None
        return "ok", snapshot(lay), json.loads(out)
    finally:
        remove_test_cgroup(lay)


@pytest.fixture(scope="module")
def cgroup_host():
    if os.geteuid() != 0:
        pytest.skip("making cgroups needs root")
    lay = layout()
    if lay.mode == "none":
        pytest.skip("no cgroup hierarchy is mounted")
    try:
        yield lay
    finally:
        prune(PARENT.split("/")[0], remove_parent=True)


def block_device():
    """A block device of this host ("MAJ:MIN" parts), for the throttles."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("vd", "sd", "nvme", "xvd")):
            with open(f"/sys/block/{name}/dev") as f:
                return [int(x) for x in f.read().split(":")]
    return [7, 0]


MAJ, MIN = block_device()
CREATE = [
    '{}',
    '{"resources": {"memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200, "swappiness": 10, '
    '"disableOOMKiller": true}}}',
    '{"resources": {"memory": {"limit": 104857600, "swap": -1}}}',
    '{"resources": {"memory": {"swap": 104857600}}}',
    '{"resources": {"cpu": {"shares": 512, "quota": 50000, "period": 250000}}}',
    '{"resources": {"cpu": {"quota": -1}}}', '{"resources": {"cpu": {"period": 50000}}}',
    '{"resources": {"cpu": {"shares": 100000000}}}',
    '{"resources": {"cpu": {"cpus": "0", "mems": "0"}}}', '{"resources": {"cpu": {"cpus": "0-1023"}}}',
    '{"resources": {"pids": {"limit": 64}}}', '{"resources": {"pids": {"limit": -1}}}',
    '{"resources": {"devices": [{"allow": false}, {"allow": true, "type": "c", "major": 10, "minor": 229, '
    '"access": "rw"}, {"allow": false, "type": "b", "access": "m"}]}}',
    '{"resources": {"devices": [{"allow": true, "type": "c", "major": ' + BIG + ', "minor": 1}]}}',
    '{"resources": {"devices": [' + ", ".join('{"type": "c", "major": %d, "minor": %d, "allow": true}' % (i % 250, i)
                                              for i in range(300)) + ']}}',
    '{"resources": {"blockIO": {"throttleReadBpsDevice": [{"major": %d, "minor": %d, "rate": 1048576}], '
    '"throttleWriteIOPSDevice": [{"major": %d, "minor": %d, "rate": 100}]}}}' % (MAJ, MIN, MAJ, MIN),
    '{"resources": {"blockIO": {"throttleReadBpsDevice": [{"major": 4000, "minor": 5, "rate": 1}]}}}',
    '{"resources": {"blockIO": {"weight": 500}}}', '{"resources": {"blockIO": {"leafWeight": 500}}}',
    '{"resources": {"blockIO": {"weightDevice": [{"major": %d, "minor": %d, "weight": 200}]}}}' % (MAJ, MIN),
    '{"resources": {"blockIO": {"weightDevice": [{"major": %d, "minor": %d, "leafWeight": 200}]}}}' % (MAJ, MIN),
    '{"resources": {"unified": {"cgroup.max.depth": "3", "cgroup.max.descendants": "7"}}}',
    '{"resources": {"unified": {"memory.high": "100000000"}}}', '{"resources": {"unified": {"": "x"}}}',
    '{"resources": {"unified": {"cgroup.max.depth": "x\'y\\n"}}}',
    '{"resources": {"unified": {"cgroup.max.descendants": "junk"}}}',
    # what the kernel refuses: Python's digits reach it (memory is bounded to int64 before)
    '{"resources": {"memory": {"limit": %d}}}' % (2 ** 63 - 1),
    '{"resources": {"pids": {"limit": ' + BIG + '}}}', '{"resources": {"cpu": {"quota": ' + BIG + '}}}',
    '{"resources": {"cpu": {"quota": -' + BIG + '}}}', '{"resources": {"cpu": {"shares": ' + BIG + '}}}',
    '{"resources": {"memory": {"limit": 1}}}',
    # a failure after some limits are written: nothing left
    '{"resources": {"memory": {"limit": 104857600}, "cpu": {"shares": 512}, "pids": {"limit": 5}, "unified": '
    '{"no.such.file": "1"}}}',
]


def _compare(probe, tmp_path, lay, linux, ns=None, py_layout=None, ignore_devices=False):
    want = py_create(linux, py_layout or lay, ignore_devices, host=lay)
    got = c_create(probe, tmp_path, linux, lay, ns, ignore_devices)
    if want[0] == "crash":  # Python's internal error; the native side says what
        assert got[0] == "error" and "\n" not in got[1], got
        return got
    assert got[:2] == want, (got[1], want[1])
    return got


@pytest.mark.parametrize("linux", CREATE, ids=range(len(CREATE)))
def test_create_matches_python(probe, tmp_path, cgroup_host, linux):
    got = _compare(probe, tmp_path, cgroup_host, linux)
    if got[0] == "ok":
        info = got[2]
        assert info["cgroup_fd"] == bool(cgroup_host.unified)
        assert info["fds"] == len(set(info["v1"].values()))


@pytest.mark.parametrize("linux", [CREATE[12], '{"resources": {"devices": [{"allow": false}], "pids": {"limit": 5}}}'])
def test_create_ignore_devices(probe, tmp_path, cgroup_host, linux):
    """An ordinary user's: no device cgroup (as operations.py drops "devices")."""
    _compare(probe, tmp_path, cgroup_host, linux, ignore_devices=True)


@pytest.mark.parametrize("linux", [CREATE[0], CREATE[1], CREATE[4], CREATE[8], CREATE[10], CREATE[12], CREATE[15],
                                   CREATE[17]])
def test_create_as_on_v1_host(probe, tmp_path, cgroup_host, linux):
    """Without the cgroup2 mount: every useful v1 hierarchy is joined."""
    if not (cgroup_host.unified and cgroup_host.v1):
        pytest.skip("needs a hybrid host")
    _compare(probe, tmp_path, cgroup_host, linux, ns="v1", py_layout=cgroup_host.v1_only())


@pytest.mark.parametrize("linux", [CREATE[0], CREATE[1], CREATE[2], CREATE[4], CREATE[5], CREATE[7], CREATE[8],
                                   CREATE[10], CREATE[11], CREATE[12], CREATE[13], CREATE[15], CREATE[17],
                                   CREATE[14], CREATE[18], CREATE[21], CREATE[22],
                                   '{"resources": {"devices": [' + ", ".join(['{"type": "b", "major": 8}'] * 4200) + ']}}'])
def test_create_as_on_v2_host(probe, tmp_path, cgroup_host, linux):
    """Without the v1 mounts (the cgroup2 code paths: subtree_control, cpu.max,
    io.max, the devices eBPF program); controllers this host keeps in v1 are
    missing there, which both sides must report alike."""
    if not (cgroup_host.unified and cgroup_host.v1):
        pytest.skip("needs a hybrid host")
    _compare(probe, tmp_path, cgroup_host, linux, ns="v2", py_layout=cgroup_host.v2_only())


@pytest.mark.parametrize("name,parent", [
    ("", PARENT), ("a/b", PARENT), ("..", PARENT), ("-x", PARENT), ("x y", PARENT), ("ok", "a//b"), ("ok", "../x"),
    ("ok", "/abs"), ("ok", "a/./b"), ("é", PARENT), ("x" * 300, PARENT), ("ok", "p'q"),
])
def test_create_names(probe, tmp_path, cgroup_host, name, parent):
    """Names are checked before anything is made (hostile cgroupsPath parts)."""
    try:
        Cgroup.create(name, Limits(), parent, devices=None).remove()
        want = None
    except PyrtError as e:
        want = str(e)
    ok, _, err = run_probe(probe, "create", write_config(tmp_path, "{}"), name, parent)
    if want is None:  # a long name: made by both (and removed)
        assert ok, err
        Cgroup.open(name, parent).remove()
    else:
        assert not ok and err == want


def test_create_leftovers(probe, tmp_path, cgroup_host):
    """An empty leftover of the name is replaced; one with a process is refused."""
    cfg = write_config(tmp_path, '{"resources": {"pids": {"limit": 9}}}')
    try:
        for mount in _mounts(cgroup_host):
            os.makedirs(os.path.join(mount, PARENT, NAME), exist_ok=True)
        ok, out, err = run_probe(probe, "create", cfg, NAME, PARENT)
        assert ok, err
        with open(os.path.join(json.loads(out)["v1"].get("pids") or json.loads(out)["v2"], "pids.max")) as f:
            assert f.read().strip() == "9"
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            first = cgroup_host.unified or cgroup_host.v1["pids"]  # the hierarchy made first
            with open(os.path.join(first, PARENT, NAME, "cgroup.procs"), "w") as f:
                f.write(str(sleeper.pid))
            try:
                Cgroup.create(NAME, Limits(pids_limit=9), PARENT, devices=None)
                want = None
            except PyrtError as e:
                want = str(e)
            ok, _, err = run_probe(probe, "create", cfg, NAME, PARENT)
            assert not ok and err == want and "has processes" in err
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        try:
            Cgroup.open(NAME, PARENT).remove()
        except PyrtError:
            pass
    assert not leftovers(cgroup_host)


# -- an ordinary user ----------------------------------------------------------------------------

def test_require_as_ordinary_user(probe, user):
    """Without a delegated subtree (this host: no systemd user instance), the same
    one-line refusal as delegation.require."""
    shutil.copy(probe, os.path.join(user.base, "probe"))
    os.chmod(os.path.join(user.base, "probe"), 0o755)
    for what in ("linux.resources", "--systemd-cgroup"):
        c = user.run([os.path.join(user.base, "probe"), "require", what])
        py = user.py("import sys\nfrom pyrt.cgroups import delegation\nfrom pyrt.errors import PyrtError\n"
                     "try:\n    delegation.require(sys.argv[1])\n    print('ok')\n"
                     "except PyrtError as e:\n    print(e, file=sys.stderr)\n    sys.exit(1)\n", what)
        assert (c.returncode, c.stdout, c.stderr) == (py.returncode, py.stdout, py.stderr)
    c = user.run([os.path.join(user.base, "probe"), "delegated"])
    py = user.py("from pyrt.cgroups import delegation\nprint(delegation.delegated_root())")
    assert c.stdout == py.stdout


def test_require_as_root(probe):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    assert run_probe(probe, "require", "linux.resources")[:2] == (True, "ok\n")


# -- memory safety ---------------------------------------------------------------------------------

def test_sanitizers(tmp_path, cgroup_host):
    """The probe built with AddressSanitizer, UBSan and LeakSanitizer: the whole
    validation table and the cgroups made, with no report (hostile values reach
    every path: huge numbers, long lists, repr of odd strings, failures midway)."""
    if not shutil.which("gcc"):
        pytest.skip("no gcc")
    exe = str(tmp_path / "probe-asan")
    r = subprocess.run(["gcc", "-g", "-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-D_GNU_SOURCE",
                        "-I", SRC, "-o", exe, os.path.join(HERE, "probes", "rt_cgroup_probe.c")] +
                       [os.path.join(SRC, f) for f in C_SOURCES] + ["-lyajl", "-lm"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no sanitizers here: {r.stderr[-300:]}")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    reports = []
    try:
        for i, linux in enumerate(PARSE + CREATE):
            cfg = write_config(tmp_path, linux)
            args = ["parse", cfg] if i < len(PARSE) else ["create", cfg, NAME, PARENT]
            p = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120)
            if p.returncode not in (0, 1) or "Sanitizer" in p.stderr or "runtime error" in p.stderr:
                reports.append((linux[:80], p.stderr[-1500:]))
            remove_test_cgroup(cgroup_host)
    finally:
        remove_test_cgroup(cgroup_host)
    assert not reports


def _placeholders():
    """Live `sleep infinity` processes (systemd.py's placeholders)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmd == b"sleep\0infinity\0" and state != "Z":
            out.append(int(pid))
    return out


def test_start_unit_without_systemd(probe):
    """Where no systemd answers on the bus: the same line as systemd.py's
    start_unit, and its placeholder process is not left behind. (The guest suite,
    tests/vm/guest/test_native_cgroup.py, starts real scopes.)"""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs this host: the guest suite covers it")
    from pyrt.cgroups import systemd as cgroup_systemd
    before = _placeholders()
    unit = f"pyrt-rtcg-{os.getpid()}.scope"
    try:
        cgroup_systemd.start_unit(unit, "machine.slice", layout().unified or "/sys/fs/cgroup", "pyrt test")
        pytest.skip("a bus answered")
    except PyrtError as e:
        want = str(e)
    ok, _, err = run_probe(probe, "start-unit", unit, "machine.slice", "pyrt test")
    assert not ok and err == want
    import time
    for _ in range(100):
        if _placeholders() == before:
            break
        time.sleep(0.02)
    assert _placeholders() == before
