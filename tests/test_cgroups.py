"""pyrt.cgroups.cgroup: limits parsing and conversion, layout detection, and real cgroups
(created, joined by pyrt.spawn, measured, frozen, killed and removed) on every
layout this host can show: the host's own (v1, v2 or hybrid), and on a hybrid
host also its v1 part alone (as on a v1 host) and its cgroup2 part alone.

Every cgroup lives under a parent private to this test run; each test checks that
nothing is left under it, and the module removes the parent at the end."""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import subprocess
import sys
import time

import pytest

import helpers
import pyrt
from pyrt.cgroups import cgroup as cgroups
from pyrt.cgroups.cgroup import (Cgroup, CgroupError, ControllerUnavailable, Layout, Limits, cpu_shares_to_weight,
                          format_cpuset, parse_bytes, parse_cpuset)
from pyrt.cgroups.layout import parse_mountinfo
from pyrt.errors import Conflict, InvalidArgument

PARENT = f"pyrt-tests-{os.getpid()}/cg"
MiB = 1 << 20

# polls from 5 ms, doubling up to 100 ms
wait_for = functools.partial(helpers.wait_for, interval=0.005, max_interval=0.1)


# -- pure parts: parsing, validation, conversion ----------------------------------------

@pytest.mark.parametrize("text,value", [
    ("256m", 256 * MiB), ("256M", 256 * MiB), ("1g", 1 << 30), ("1.5g", 3 << 29), ("1.5GiB", 3 << 29),
    ("512k", 512 << 10), ("512kb", 512 << 10), ("100b", 100), ("4096", 4096), ("256 MB", 256 * MiB),
    ("2t", 2 << 40), (0, 0), (12345, 12345),
])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "x", "m", "-1", "-5m", "256q", "256ib", "1.2.3m", "12 34", None, -3, True])
def test_parse_bytes_rejects(text):
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_bytes(text)


def test_cpuset_lists():
    assert parse_cpuset("0-3,5") == {0, 1, 2, 3, 5}
    assert parse_cpuset(2) == {2}
    assert parse_cpuset([3, 1]) == {1, 3}
    assert format_cpuset({0, 1, 2, 3, 5, 7, 8}) == "0-3,5,7-8"
    for bad in ("", "a", "3-1", "0,,1", "1-", "-1"):
        with pytest.raises(InvalidArgument, match="cpuset cpus"):
            parse_cpuset(bad)


def test_cpu_shares_to_weight_as_runc():
    # the fixed points of runc >= 1.3.2's conversion, and monotony between them
    assert cpu_shares_to_weight(0) == 0
    assert cpu_shares_to_weight(2) == 1
    assert cpu_shares_to_weight(1024) == 100
    assert cpu_shares_to_weight(262144) == 10000
    weights = [cpu_shares_to_weight(s) for s in range(2, 262145, 97)]
    assert weights == sorted(weights) and all(1 <= w <= 10000 for w in weights)


def test_limits_empty_and_controllers():
    assert Limits().empty()
    assert Limits(memory_swap=None, pids_limit=0, cpu_shares=0).empty()
    assert Limits(pids_limit=-1).empty()
    lim = Limits(memory="64m", cpus=0.5, cpuset_cpus="0", pids_limit=10)
    assert not lim.empty()
    assert lim.controllers() == {"memory", "cpu", "cpuset", "pids"}
    assert Limits(cpu_shares=512).controllers() == {"cpu"}
    assert Limits(memory="64m") == Limits(memory=64 * MiB)


def test_limits_settings_v1_and_v2():
    lim = Limits(memory="64m", cpus=1.5, cpu_shares=512, cpuset_cpus="0", cpuset_mems="0", pids_limit=50,
                 memory_reservation="32m")
    v1 = {f: v for _, f, v, _ in lim.v1_settings()}
    assert v1 == {
        "cpuset.cpus": "0", "cpuset.mems": "0", "memory.limit_in_bytes": str(64 * MiB),
        "memory.memsw.limit_in_bytes": str(128 * MiB),  # docker's default: twice the memory
        "memory.soft_limit_in_bytes": str(32 * MiB), "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "150000", "cpu.shares": "512", "pids.max": "50",
    }
    v2 = {f: v for _, f, v, _ in lim.v2_settings()}
    assert v2 == {
        "cpuset.cpus": "0", "cpuset.mems": "0", "memory.max": str(64 * MiB), "memory.swap.max": str(64 * MiB),
        "memory.low": str(32 * MiB), "cpu.max": "150000 100000", "cpu.weight": str(cpu_shares_to_weight(512)),
        "pids.max": "50",
    }
    # the limit comes before the swap limit (v1 wants memsw >= limit at every step)
    files = [f for _, f, _, _ in lim.v1_settings()]
    assert files.index("memory.limit_in_bytes") < files.index("memory.memsw.limit_in_bytes")


def test_limits_swap_semantics():
    no_swap = Limits(memory="64m", memory_swap="64m")
    assert ("memory", "memory.memsw.limit_in_bytes", str(64 * MiB), True) in no_swap.v1_settings()
    assert ("memory", "memory.swap.max", "0", True) in no_swap.v2_settings()
    unlimited = Limits(memory="64m", memory_swap=-1)
    assert ("memory", "memory.memsw.limit_in_bytes", "-1", True) in unlimited.v1_settings()
    assert ("memory", "memory.swap.max", "max", True) in unlimited.v2_settings()
    some = Limits(memory="64m", memory_swap="100m")
    assert ("memory", "memory.swap.max", str(36 * MiB), True) in some.v2_settings()
    assert Limits(cpus=0.01).cpu_quota == 1000


def test_limits_from_docker_names():
    lim = Limits.from_docker(mem_limit="256m", memswap_limit="256m", nano_cpus=1_500_000_000,
                             cpuset_cpus="0", pids_limit=100)
    assert (lim.memory, lim.memory_swap, lim.cpus, lim.cpuset_cpus, lim.pids_limit) == \
        (256 * MiB, 256 * MiB, 1.5, "0", 100)


@pytest.mark.parametrize("kwargs,message", [
    (dict(memory="-5m"), "must not be negative"),
    (dict(memory=-1), "must not be negative"),
    (dict(memory="0"), "must be positive"),
    (dict(memory="5m"), "minimum memory limit allowed is 6MB"),
    (dict(memory="lots"), "invalid size 'lots'"),
    (dict(memory="64m", memory_swap="32m"), "at least the memory limit"),
    (dict(memory_swap="64m"), "needs a memory limit"),
    (dict(memory="64m", memory_reservation="128m"), "above the memory limit"),
    (dict(memory_reservation="1m"), "minimum memory reservation"),
    (dict(cpus=0), "range of CPUs is from 0.01"),
    (dict(cpus=-1), "range of CPUs is from 0.01"),
    (dict(cpus="many"), "invalid cpus"),
    (dict(cpus=float("nan")), "range of CPUs"),
    (dict(cpu_shares=-2), "must not be negative"),
    (dict(cpuset_cpus="0-"), "invalid value '0-' for cpuset cpus"),
    (dict(cpuset_mems="x"), "cpuset mems"),
    (dict(pids_limit=-5), "invalid pids_limit"),
    (dict(pids_limit="some"), "invalid pids_limit"),
])
def test_limits_reject_bad_input(kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        Limits(**kwargs)


def test_cpus_above_host_count():
    n = len(os.sched_getaffinity(0))
    assert Limits(cpus=n).cpus == n
    with pytest.raises(InvalidArgument, match=rf"from 0.01 to {n}.00, as there .* only {n} CPU"):
        Limits(cpus=n + 0.5)


def test_cpu_shares_clamped_like_docker():
    assert Limits(cpu_shares=1).cpu_shares == 2
    assert Limits(cpu_shares=10**7).cpu_shares == 262144


# -- layout detection ---------------------------------------------------------------

MI_V2 = """\
24 31 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""
MI_V1 = """\
25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
27 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset,clone_children
31 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
"""
MI_HYBRID = MI_V1 + """\
32 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:16 - cgroup2 cgroup2 rw,nsdelegate
40 1 0:30 / /mnt/with\\040space rw,relatime - cgroup2 cgroup2 rw
"""


def test_parse_mountinfo_layouts():
    v2 = parse_mountinfo(MI_V2)
    assert (v2.mode, v2.unified, v2.v1) == ("v2", "/sys/fs/cgroup", {})
    v1 = parse_mountinfo(MI_V1)
    assert v1.mode == "v1" and v1.unified is None
    assert v1.v1["cpu"] == v1.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert v1.v1["cpuset"] == "/sys/fs/cgroup/cpuset" and "name=systemd" not in v1.v1
    assert "systemd" not in v1.v1 and "xattr" not in v1.v1 and "clone_children" not in v1.v1
    hy = parse_mountinfo(MI_HYBRID)
    assert (hy.mode, hy.unified) == ("hybrid", "/sys/fs/cgroup/unified")
    assert hy.v1 == v1.v1
    assert parse_mountinfo("").mode == "none"


def test_layout_where_and_describe():
    lay = Layout("/nonexistent-cgroup2", {"memory": "/m"}, v2_controllers={"cpu", "pids"})
    assert lay.mode == "hybrid"
    assert (lay.where("memory"), lay.where("cpu"), lay.where("cpuset")) == ("v1", "v2", None)
    assert "cgroup v1: memory" in lay.describe() and "cpu, pids" in lay.describe()
    assert lay.v1_only().mode == "v1" and lay.v2_only().mode == "v2"


def test_host_layout_detected_once():
    lay = cgroups.layout()
    assert cgroups.layout() is lay
    assert lay.mode in ("v1", "v2", "hybrid")
    with open("/proc/self/mountinfo") as f:
        text = f.read()
    assert (" - cgroup2 " in text) == bool(lay.unified)
    if lay.v1:
        assert " - cgroup " in text


# -- real cgroups -----------------------------------------------------------------------

def _layouts():
    lay = cgroups.layout()
    out = [pytest.param(lay, id=f"host-{lay.mode}")]
    if lay.mode == "hybrid":
        out.append(pytest.param(lay.v1_only(), id="v1-part"))
        out.append(pytest.param(lay.v2_only(), id="cgroup2-part"))
    return out


LAYOUTS = _layouts()


def _all_mounts():
    lay = cgroups.layout()
    return sorted(set(lay.v1.values()) | ({lay.unified} if lay.unified else set()))


def _children_under_parent():
    left = []
    for mount in _all_mounts():
        top = os.path.join(mount, PARENT)
        if os.path.isdir(top):
            left += [os.path.join(top, d) for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))]
    return left


@pytest.fixture(scope="module")
def as_root():
    if os.geteuid() != 0:
        pytest.skip("real cgroups need root")
    if cgroups.layout().mode == "none":
        pytest.skip("no cgroup hierarchy is mounted")
    yield
    cgroups.prune(PARENT, layout=cgroups.layout(), remove_parent=True)
    top = PARENT.split("/")[0]
    for mount in _all_mounts():
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(os.path.join(mount, top))
    left = [m for m in _all_mounts() if os.path.exists(os.path.join(m, top))]
    assert not left, f"test cgroup parents left in {left}"


class Made:
    """Creates cgroups for one test and removes every one of them afterwards (the
    processes in them killed first), even when the test failed."""

    def __init__(self):
        self.cgroups, self.procs = [], []

    def cgroup(self, limits=None, layout=None, name=None, **kwargs) -> Cgroup:
        name = name or f"c{len(self.cgroups)}"
        cg = Cgroup.create(name, limits, PARENT, layout=layout, **kwargs)
        self.cgroups.append(cg)
        return cg

    def spawn(self, script, rootfs, cg, **kwargs) -> pyrt.Process:
        kwargs.setdefault("stdout", pyrt.DEVNULL)
        kwargs.setdefault("stderr", pyrt.DEVNULL)
        p = pyrt.spawn(["sh", "-c", script], rootfs, cgroup=cg, **kwargs)
        self.procs.append(p)
        return p

    def cleanup(self):
        errors = []
        for p in self.procs:
            with contextlib.suppress(OSError):
                p.kill()
        for cg in self.cgroups:
            try:
                cg.remove()
            except Exception as e:  # keep going: everything must go
                errors.append(e)
        for p in self.procs:
            p.wait()
            for f in (p.stdout, p.stderr, p.stdin):
                if f:
                    f.close()
        return errors


@pytest.fixture
def made(as_root):
    m = Made()
    try:
        yield m
    finally:
        errors = m.cleanup()
        left = _children_under_parent()
        if left:
            cgroups.prune(PARENT, layout=cgroups.layout())
        assert not errors, f"cgroup removal failed: {errors}"
        assert not left, f"cgroups left behind: {left}"


def _need(lay: Layout, *controllers):
    missing = [c for c in controllers if lay.where(c) is None]
    if missing:
        pytest.skip(f"this layout has no {', '.join(missing)} controller")


def _file(cg: Cgroup, controller: str, fname: str) -> str:
    d = cg.v1_dirs.get(controller) or cg.v2_dir
    with open(os.path.join(d, fname)) as f:
        return f.read().strip()


@pytest.mark.parametrize("lay", LAYOUTS)
def test_create_writes_limits_and_remove_leaves_nothing(made, lay):
    wanted = dict(memory="64m", memory_reservation="32m", cpus=0.5, cpu_shares=512, cpuset_cpus="0",
                  pids_limit=50)
    usable = {k: v for k, v in wanted.items()
              if lay.where({"memory": "memory", "memory_reservation": "memory", "cpus": "cpu",
                            "cpu_shares": "cpu", "cpuset_cpus": "cpuset", "pids_limit": "pids"}[k])}
    cg = made.cgroup(Limits(**usable), lay)
    assert all(os.path.isdir(d) for d in cg.dirs)
    assert cg.procs() == []
    if lay.unified:
        assert cg.v2_dir == os.path.join(lay.unified, PARENT, "c0")
    expect = {("memory", "memory.limit_in_bytes"): str(64 * MiB),
              ("memory", "memory.soft_limit_in_bytes"): str(32 * MiB),
              ("cpu", "cpu.cfs_quota_us"): "50000", ("cpu", "cpu.cfs_period_us"): "100000",
              ("cpu", "cpu.shares"): "512", ("cpuset", "cpuset.cpus"): "0", ("pids", "pids.max"): "50"}
    for (ctrl, fname), value in expect.items():
        where = lay.where(ctrl)
        if where == "v1":
            assert _file(cg, ctrl, fname) == value, fname
        elif where == "v2":
            v2 = {f: v for c, f, v, _ in cg.limits.v2_settings() if c == ctrl}
            for f, v in v2.items():
                assert _file(cg, ctrl, f) == v, f
    if lay.where("cpuset") == "v1":  # copied from the parent: a v1 cpuset needs both
        assert _file(cg, "cpuset", "cpuset.mems") != ""
    if lay.where("memory") == "v1" and os.path.exists(os.path.join(cg.v1_dirs["memory"],
                                                                   "memory.memsw.limit_in_bytes")):
        assert _file(cg, "memory", "memory.memsw.limit_in_bytes") == str(128 * MiB)
    dirs = cg.dirs
    cg.remove()
    assert not any(os.path.exists(d) for d in dirs)
    cg.remove()  # removing again is fine


@pytest.mark.parametrize("lay", LAYOUTS)
def test_hierarchies_joined(made, lay):
    """Only what is needed: on a hybrid host, no v1 hierarchy without a limit in it."""
    cg = made.cgroup(None, lay)
    if lay.mode == "hybrid":
        assert cg.v1_dirs == {} and cg.v2_dir
    elif lay.mode == "v1":
        assert {"cpuacct", "freezer"} & set(cg.v1_dirs) == {"cpuacct", "freezer"} & set(lay.v1)
    if lay.mode == "hybrid" and lay.where("pids") == "v1":
        cg2 = made.cgroup(Limits(pids_limit=10), lay)
        assert set(cg2.v1_dirs) == {"pids"}
        cg3 = made.cgroup(Limits(pids_limit=10), lay, accounting=("memory",))
        assert set(cg3.v1_dirs) == {"pids", "memory"}
        assert cg3.oom_path == os.path.join(cg3.v1_dirs["memory"], "memory.oom_control")
        assert cg2.oom_path is None


@pytest.mark.parametrize("lay", LAYOUTS)
def test_joined_by_spawn(made, lay, rootfs):
    cg = made.cgroup(Limits(pids_limit=100) if lay.where("pids") else None, lay)
    p = made.spawn("sleep 1000", rootfs, cg)
    assert wait_for(lambda: p.pid in cg.procs(), what="the container in cgroup.procs")
    with open(f"/proc/{p.pid}/cgroup") as f:
        mine = f.read()
    for d in cg.dirs:
        rel = "/" + os.path.relpath(d, next(m for m in _all_mounts() if d.startswith(m + "/")))
        assert rel in mine, (d, mine)
    cg.kill_all()
    assert cg.procs() == []
    assert p.wait() == -9


def test_spawn_fds_shared_and_closed(made):
    cg = made.cgroup(None, cgroups.layout())
    fd1, procs1 = cg.spawn_fds()
    fd2, procs2 = cg.spawn_fds()
    assert (fd1, procs1) == (fd2, procs2)
    opened = [fd for fd in [fd1] + procs1 if fd >= 0]
    assert opened
    cg.close_fds()
    assert all(os.path.exists(f"/proc/self/fd/{fd}") for fd in opened)  # one user left
    cg.close_fds()
    assert not any(os.readlink(f"/proc/self/fd/{fd}").startswith(tuple(cg.dirs))
                   for fd in opened if os.path.exists(f"/proc/self/fd/{fd}"))
    cg.spawn_fds()
    cg.remove()  # closes them too
    assert cg._fds is None


@pytest.mark.parametrize("lay", LAYOUTS)
def test_memory_hog_is_oom_killed(made, lay, rootfs):
    _need(lay, "memory")
    cg = made.cgroup(Limits(memory="32m"), lay)
    assert not cg.oom_killed()
    assert cg.oom_path and os.path.exists(cg.oom_path)
    # command substitution keeps all 200 MB in the shell's memory
    p = made.spawn("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}", rootfs, cg,
                   stdout=pyrt.PIPE)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == -9, out  # SIGKILL: the shell's exit status 137
    assert out == b""
    assert cg.oom_killed()
    s = cg.stats()
    assert s["oom_kill"] >= 1
    assert s["memory_limit"] == 32 * MiB
    assert 0 < s["memory_peak"] <= 32 * MiB


@pytest.mark.parametrize("lay", LAYOUTS)
def test_fork_bomb_contained_by_pids_limit(made, lay, rootfs):
    _need(lay, "pids")
    cg = made.cgroup(Limits(pids_limit=50), lay)
    # the bomb starts in a subshell (a failed fork kills a shell); pid 1 stays, as sleep
    p = made.spawn("(b() { b | b & }; b); exec sleep 1000", rootfs, cg)
    d = cg.v1_dirs.get("pids") or cg.v2_dir

    def hit_limit():
        s = cg.stats()
        assert s["pids_current"] <= 50
        with open(os.path.join(d, "pids.events")) as f:
            return int(f.read().split()[1]) > 0  # "max N": forks refused
    wait_for(hit_limit, what="the fork bomb to reach the pids limit")
    assert cg.stats()["pids_limit"] == 50
    # the host still forks
    assert subprocess.run(["true"]).returncode == 0
    assert pyrt.run(["true"], rootfs).returncode == 0
    cg.kill_all()
    assert cg.procs() == []
    assert p.wait() == -9


@pytest.mark.parametrize("lay", LAYOUTS)
def test_cpu_quota_throttles(made, lay, rootfs):
    _need(lay, "cpu")
    cg = made.cgroup(Limits(cpus=0.5), lay)
    p = made.spawn("while :; do :; done", rootfs, cg)
    # the throttled time is added when a throttled period ends: wait for both
    s = wait_for(lambda: (lambda s: s if (s["cpu_nr_throttled"] or 0) > 0 and (s["cpu_throttled_ns"] or 0) > 0
                          else None)(cg.stats()), what="throttling in cpu.stat")
    assert s["cpu_nr_periods"] >= s["cpu_nr_throttled"] > 0
    p.kill()
    p.wait()


@pytest.mark.parametrize("lay", LAYOUTS)
def test_cpuset_applied(made, lay, rootfs):
    _need(lay, "cpuset")
    cg = made.cgroup(Limits(cpuset_cpus="0"), lay)
    r = pyrt.run(["sh", "-c", "grep Cpus_allowed_list /proc/self/status"], rootfs, cgroup=cg,
                 capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Cpus_allowed_list:", "0"]


def test_cpuset_out_of_range_changes_nothing(as_root):
    lay = cgroups.layout()
    _need(lay, "cpuset")
    with pytest.raises(InvalidArgument, match=r"requested CPUs are not available - requested 4096, available: "):
        Cgroup.create("bad", Limits(cpuset_cpus="4096"), PARENT)
    with pytest.raises(InvalidArgument, match="requested memory nodes are not available"):
        Cgroup.create("bad", Limits(cpuset_mems="1000"), PARENT)
    assert not Cgroup.exists("bad", PARENT)


def test_missing_controller_named(as_root):
    lay = cgroups.layout()
    only_v2 = Layout(lay.unified or "/nonexistent", None, v2_controllers=())
    for limits, ctrl in ((Limits(pids_limit=5), "pids"), (Limits(memory="64m"), "memory"),
                         (Limits(cpus=0.5), "cpu"), (Limits(cpuset_cpus="0"), "cpuset")):
        with pytest.raises(ControllerUnavailable,
                           match=f"cgroup controller '{ctrl}' is not available on this host") as e:
            Cgroup.create("missing", limits, PARENT, layout=only_v2)
        assert e.value.controller == ctrl and e.value.errno == errno.ENODEV
    with pytest.raises(ControllerUnavailable, match="'memory' is not available.*no cgroup hierarchy"):
        Cgroup.create("missing", Limits(memory="64m"), PARENT, layout=Layout(None, None))
    assert not Cgroup.exists("missing", PARENT)


def test_bad_names(as_root):
    for name in ("", "..", "a/b", "-x", "x y", "../../etc"):
        with pytest.raises(InvalidArgument, match="invalid cgroup name"):
            Cgroup.create(name, None, PARENT)
    with pytest.raises(InvalidArgument, match="invalid cgroup parent"):
        Cgroup.create("ok", None, "../up")
    with pytest.raises(InvalidArgument, match="unknown cgroup controller"):
        Cgroup.create("ok", None, PARENT, accounting=("bogus",))


@pytest.mark.parametrize("lay", LAYOUTS)
def test_stats_cpu_usage_grows(made, lay, rootfs):
    cg = made.cgroup(Limits(memory="64m", pids_limit=20) if lay.where("memory") and lay.where("pids")
                     else None, lay, accounting=("memory",) if lay.where("memory") == "v1" else ())
    s0 = cg.stats()
    assert set(s0) == set(cgroups.STAT_KEYS)
    assert s0["cpu_usage_ns"] == 0
    p = made.spawn("while :; do :; done", rootfs, cg)
    wait_for(lambda: cg.stats()["cpu_usage_ns"] > 50_000_000, what="50 ms of cpu time")
    s1 = cg.stats()
    wait_for(lambda: cg.stats()["cpu_usage_ns"] > s1["cpu_usage_ns"], what="more cpu time")
    s = cg.stats()
    assert s["cpu_user_ns"] > 0 and s["cpu_system_ns"] >= 0
    # v2 splits the total (cputime_adjust); v1's tick-sampled split is scaled to it
    assert abs(s["cpu_user_ns"] + s["cpu_system_ns"] - s["cpu_usage_ns"]) <= 0.05 * s["cpu_usage_ns"] + 10_000_000
    if lay.where("memory"):
        assert 0 < s["memory_usage"] <= s["memory_peak"]
        assert s["oom_kill"] == 0
    if lay.where("pids"):
        assert s["pids_current"] >= 1 and s["pids_limit"] == 20
    else:
        assert s["pids_current"] is None
    p.kill()
    p.wait()
    assert cg.stats()["cpu_usage_ns"] >= s["cpu_usage_ns"]  # readable after the end too


@pytest.mark.parametrize("lay", LAYOUTS)
def test_freeze_and_thaw(made, lay, rootfs):
    cg = made.cgroup(None, lay)
    if not (cg._v2_has("cgroup.freeze") or "freezer" in cg.v1_dirs):
        pytest.skip("no freezer in this layout")
    p = made.spawn("while :; do :; done", rootfs, cg)
    wait_for(lambda: (cg.stats()["cpu_usage_ns"] or 0) > 10_000_000, what="the loop to run")
    cg.freeze()
    assert cg.frozen()
    before = cg.stats()["cpu_usage_ns"]
    time.sleep(0.2)
    assert cg.stats()["cpu_usage_ns"] == before  # nothing ran while frozen
    assert p.poll() is None
    cg.thaw()
    assert not cg.frozen()
    wait_for(lambda: cg.stats()["cpu_usage_ns"] > before, what="the loop to run again")
    cg.freeze()
    cg.kill_all()  # also works on a frozen cgroup
    assert p.wait() == -9
    assert cg.procs() == []


@pytest.mark.parametrize("lay", LAYOUTS)
def test_kill_all_many_processes(made, lay, rootfs):
    cg = made.cgroup(None, lay)
    p = made.spawn("for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; sleep 1000", rootfs, cg)
    wait_for(lambda: len(cg.procs()) >= 9, what="nine processes")
    cg.kill_all()
    assert cg.procs() == []
    assert p.wait() == -9


@contextlib.contextmanager
def subreaper():
    """This process adopts the orphans of its descendants for a while (so that a
    test reaps them itself)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) failed")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.mark.parametrize("lay", LAYOUTS)
def test_kill_all_without_pid_namespace(made, lay, rootfs):
    """Processes that outlive the shell (no pid namespace to end them) are killed
    too. They are orphans: this process adopts and reaps them."""
    with subreaper():
        cg = made.cgroup(None, lay)
        p = made.spawn("sleep 1000 & sleep 1000 & sleep 1000", rootfs, cg, namespaces=("mount", "uts", "ipc"))
        pids = wait_for(lambda: len(cg.procs()) >= 3 and cg.procs(), what="three processes")
        others = [pid for pid in pids if pid != p.pid]
        try:
            cg.kill_all()
            assert cg.procs() == []
            assert p.wait() == -9
        finally:
            p.kill()
            p.wait()  # its orphans are ours from now on
            for pid in others:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)


@pytest.mark.parametrize("lay", LAYOUTS)
def test_remove_kills_what_is_left(made, lay, rootfs):
    cg = made.cgroup(None, lay)
    p = made.spawn("sleep 1000", rootfs, cg)
    wait_for(lambda: cg.procs(), what="the container")
    dirs = cg.dirs
    cg.remove()
    assert not any(os.path.exists(d) for d in dirs)
    assert p.wait() == -9


def test_open_from_another_process(made, rootfs):
    lay = cgroups.layout()
    cg = made.cgroup(Limits(pids_limit=30) if lay.where("pids") else None, lay, name="shared")
    p = made.spawn("sleep 1000", rootfs, cg)
    wait_for(lambda: cg.procs(), what="the container")
    again = Cgroup.open("shared", PARENT)
    assert sorted(again.dirs) == sorted(cg.dirs)
    assert again.procs() == cg.procs() == [p.pid]
    code = ("import json, sys; from pyrt.cgroups.cgroup import Cgroup; "
            f"cg = Cgroup.open('shared', {PARENT!r}); "
            "print(json.dumps([cg.procs(), cg.stats()['pids_limit'], cg.oom_killed()]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    import json
    procs, pids_limit, oom = json.loads(r.stdout)
    assert procs == [p.pid] and oom is False
    assert pids_limit == (30 if lay.where("pids") else None)
    # another process kills and removes it
    code = f"from pyrt.cgroups.cgroup import Cgroup; Cgroup.open('shared', {PARENT!r}).remove()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert p.wait() == -9
    assert not Cgroup.exists("shared", PARENT)
    with pytest.raises(CgroupError) as e:
        Cgroup.open("shared", PARENT)
    assert e.value.errno == errno.ENOENT


def test_leftover_replaced_busy_one_refused(made, rootfs):
    lay = cgroups.layout()
    first = made.cgroup(None, lay, name="dup")
    second = made.cgroup(None, lay, name="dup")  # empty leftover: replaced
    assert second.dirs == first.dirs
    p = made.spawn("sleep 1000", rootfs, second)
    wait_for(lambda: second.procs(), what="the container")
    with pytest.raises(Conflict, match="already exists and has processes"):
        Cgroup.create("dup", None, PARENT)
    assert second.procs() == [p.pid]


def test_failed_create_rolls_back(as_root, monkeypatch):
    lay = cgroups.layout()
    _need(lay, "pids")
    real = cgroups._write

    def failing(path, value):
        if path.endswith("pids.max"):
            raise CgroupError(errno.EINVAL, f"write {value!r} to", path)
        return real(path, value)
    monkeypatch.setattr(cgroups, "_write", failing)
    with pytest.raises(CgroupError, match="pids.max"):
        Cgroup.create("rollback", Limits(pids_limit=7, memory="64m") if lay.where("memory")
                      else Limits(pids_limit=7), PARENT)
    assert not Cgroup.exists("rollback", PARENT)
    assert _children_under_parent() == []


def test_errors_are_one_line_and_pickle():
    import pickle
    e = CgroupError(errno.EBUSY, "remove cgroup", "/sys/fs/cgroup/x", "it still has processes")
    assert str(e) == 'remove cgroup "/sys/fs/cgroup/x": Device or resource busy (it still has processes)'
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and isinstance(e2, OSError)
    u = pickle.loads(pickle.dumps(ControllerUnavailable("pids", "detail")))
    assert str(u) == "cgroup controller 'pids' is not available on this host (detail)"


# -- cgroup v2 with controllers, on a stand-in directory tree -----------------------------
# (this host's cgroup2 hierarchy may hold no controller: the writes a v2 host gets are
# checked on a plain directory, with _write recording them)

@pytest.fixture
def fake_v2(tmp_path, monkeypatch):
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cpuset.cpus.effective").write_text("0-3\n")
    (root / "cpuset.mems.effective").write_text("0\n")
    writes = []

    def write(path, value):
        if not os.path.isdir(os.path.dirname(path)):
            raise CgroupError(errno.ENOENT, "open", path)
        writes.append((os.path.relpath(path, root), value))
        if path.endswith("cgroup.subtree_control"):
            old = open(path).read().split() if os.path.exists(path) else []
            value = " ".join(old + [value[1:]])
        with open(path, "w") as f:
            f.write(value)
    monkeypatch.setattr(cgroups, "_write", write)

    def set_devices(self, rules):  # a directory is no cgroup2 to attach the eBPF device filter to
        writes.append((os.path.relpath(self.v2_dir, root) + "/<device filter>", tuple(rules)))
        return "bpf"
    monkeypatch.setattr(Cgroup, "set_devices", set_devices)
    return Layout(str(root), None), root, writes


def test_v2_enables_controllers_and_writes_limits(fake_v2):
    lay, root, writes = fake_v2
    lim = Limits(memory="64m", memory_reservation="32m", cpus=1.5, cpu_shares=2048, cpuset_cpus="1-2",
                 pids_limit=100)
    cg = Cgroup.create("box", lim, "pyrt/sub", layout=lay)
    assert cg.v2_dir == str(root / "pyrt/sub/box") and cg.v1_dirs == {}
    enabling = [(p, v) for p, v in writes if p.endswith("subtree_control")]
    for level in ("cgroup.subtree_control", "pyrt/cgroup.subtree_control", "pyrt/sub/cgroup.subtree_control"):
        assert {v for p, v in enabling if p == level} == {"+cpu", "+cpuset", "+memory", "+pids"}, level
    from pyrt.cgroups.devices import DEFAULT_RULES
    assert writes[-1] == ("pyrt/sub/box/<device filter>", DEFAULT_RULES)  # docker's devices, last
    limits = {p.split("/")[-1]: v for p, v in writes[:-1] if p.startswith("pyrt/sub/box/")}
    assert limits == {"cpuset.cpus": "1-2", "memory.max": str(64 * MiB), "memory.low": str(32 * MiB),
                      "cpu.max": "150000 100000", "cpu.weight": str(cpu_shares_to_weight(2048)),
                      "pids.max": "100"}  # memory.swap.max: absent here (no swap accounting), skipped
    writes.clear()
    Cgroup.create("box2", Limits(pids_limit=5), "pyrt/sub", layout=lay, devices=None)
    assert writes == [("pyrt/sub/box2/pids.max", "5")]  # already enabled: not written again
    with pytest.raises(InvalidArgument, match="requested 7, available: 0-3"):
        Cgroup.create("box3", Limits(cpuset_cpus="7"), "pyrt/sub", layout=lay)


def test_v2_no_internal_processes_hint(fake_v2, monkeypatch):
    lay, root, writes = fake_v2

    def busy(path, value):
        raise CgroupError(errno.EBUSY, f"write {value!r} to", path)
    monkeypatch.setattr(cgroups, "_write", busy)
    with pytest.raises(CgroupError, match="no-internal-processes") as e:
        Cgroup.create("box", Limits(pids_limit=5), "pyrt", layout=lay)
    assert e.value.errno == errno.EBUSY
    assert not (root / "pyrt" / "box").exists()


def test_v2_stats_and_oom(fake_v2):
    lay, root, writes = fake_v2
    cg = Cgroup.create("box", Limits(memory="64m"), "pyrt", layout=lay)
    d = root / "pyrt" / "box"
    (d / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\n"
                                "nr_throttled 3\nthrottled_usec 700\n")
    (d / "memory.current").write_text("1048576\n")
    (d / "memory.peak").write_text("2097152\n")
    (d / "memory.max").write_text(f"{64 * MiB}\n")
    (d / "memory.stat").write_text("anon 100\ninactive_file 4096\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n")
    (d / "pids.current").write_text("3\n")
    (d / "pids.max").write_text("max\n")
    assert cg.oom_path == str(d / "memory.events")
    assert cg.stats() == {
        "cpu_usage_ns": 2_500_000, "cpu_user_ns": 2_000_000, "cpu_system_ns": 500_000, "cpu_nr_periods": 10,
        "cpu_nr_throttled": 3, "cpu_throttled_ns": 700_000, "memory_usage": MiB, "memory_peak": 2 * MiB,
        "memory_limit": 64 * MiB, "memory_cache": 4096, "pids_current": 3, "pids_limit": None, "oom_kill": 0,
    }
    assert not cg.oom_killed()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert cg.oom_killed()
    (d / "cgroup.kill").write_text("")
    (d / "cgroup.procs").write_text("")
    cg.kill_all()
    assert ("pyrt/box/cgroup.kill", "1") in writes
