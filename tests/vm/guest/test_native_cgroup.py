"""pyrt-runtime's native cgroup side on a pure cgroup v2 host under systemd (the
guest): the probe tests/probes/rt_cgroup_probe.c (built statically on the host by
run.sh into bin/) against the installed pyrt's Python it mirrors. Cgroups made by
both (Cgroup.create with accounting=resource_controllers, apply_resources) must
have the same directories, controllers enabled and limit files, or fail with the
same line and leave nothing; the device rules (an eBPF program here) must allow
and refuse the same opens; a transient scope started by both (busctl
StartTransientUnit, Delegate=yes) must look the same; and an ordinary user gets
the same refusal outside its delegated subtree and the same subtree inside."""
import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "bin", "rt_cgroup_probe")
PARENT = f"pyrt-guest-rtcg-{os.getpid()}"
NAME = "ctr"
CG = "/sys/fs/cgroup"

pytestmark = pytest.mark.skipif(not os.path.exists(PROBE), reason="no probe (run.sh builds it where gcc is)")


def probe(*args):
    p = subprocess.run([PROBE, *args], capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode == 0, p.stdout, p.stderr.rstrip("\n")


def config(tmp_path, resources, devices=None):
    path = os.path.join(tmp_path, "config.json")
    linux = {"resources": resources}
    if devices:
        linux["devices"] = devices
    with open(path, "w") as f:
        json.dump({"ociVersion": "1.0.2", "linux": linux}, f)
    return path, linux


def snapshot(parent=PARENT):
    snap = {}
    d = os.path.join(CG, parent)
    with open(os.path.join(d, "cgroup.subtree_control")) as f:
        snap["parent subtree_control"] = f.read()
    d = os.path.join(d, NAME)
    names = sorted(os.listdir(d))
    snap["files"] = names
    for n in names:
        if n.split(".")[0] in ("memory", "cpu", "cpuset", "pids", "io", "hugetlb") and \
                not n.endswith((".stat", ".current", ".events", ".pressure", ".peak", ".events.local",
                                ".numa_stat", ".effective", ".rsvd.current", ".rsvd.max", ".local_events")):
            try:
                with open(os.path.join(d, n)) as f:
                    snap[n] = f.read()
            except OSError as e:
                snap[n] = f"unreadable {e.errno}"
    return snap


def gone(parent=PARENT):
    d = os.path.join(CG, parent, NAME)
    if os.path.isdir(d):
        os.rmdir(d)


def py_make(linux, parent=PARENT):
    from pyrt.cgroups.cgroup import Cgroup, Limits
    from pyrt.cgroups.oci import apply_resources, resource_controllers
    from pyrt.errors import PyrtError
    from pyrt.ocirt import mounts as ocimounts
    from pyrt.ocirt.resources import parse_resources
    devices = [ocimounts.device(d, "x") for d in linux.get("devices") or []]
    res = parse_resources(linux.get("resources") or {}, devices)
    try:
        cg = Cgroup.create(NAME, Limits(), parent, accounting=resource_controllers(res), devices=None)
    except PyrtError as e:
        return "error", str(e)
    try:
        apply_resources(cg, res)
        return "ok", snapshot(parent)
    except PyrtError as e:
        gone(parent)
        return "error", str(e)


def c_make(cfg, parent=PARENT):
    ok, out, err = probe("create", cfg, NAME, parent)
    if not ok:
        assert not os.path.isdir(os.path.join(CG, parent, NAME)), "left after a failure"
        return "error", err
    return "ok", snapshot(parent)


def vda():
    with open("/sys/block/vda/dev") as f:
        return [int(x) for x in f.read().split(":")]


MAJ, MIN = vda()
CASES = [
    {},
    {"memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200, "swappiness": 10,
                "disableOOMKiller": True}},
    {"memory": {"limit": 104857600, "swap": -1}}, {"memory": {"swap": 104857600}},
    {"cpu": {"shares": 512, "quota": 50000, "period": 250000}}, {"cpu": {"quota": -1}}, {"cpu": {"shares": 3}},
    {"cpu": {"shares": 100000000}}, {"cpu": {"cpus": "0", "mems": "0"}}, {"cpu": {"cpus": "0-1023"}},
    {"pids": {"limit": 64}}, {"pids": {"limit": -1}},
    {"blockIO": {"throttleReadBpsDevice": [{"major": MAJ, "minor": MIN, "rate": 1048576}],
                 "throttleWriteIOPSDevice": [{"major": MAJ, "minor": MIN, "rate": 100}]}},
    {"blockIO": {"weight": 500}}, {"blockIO": {"leafWeight": 500}},
    {"blockIO": {"weightDevice": [{"major": MAJ, "minor": MIN, "weight": 200}]}},
    {"unified": {"memory.high": "100000000", "pids.max": "7", "cgroup.max.depth": "2"}},
    {"unified": {"memory.oom.group": "x"}}, {"memory": {"limit": 2 ** 70}}, {"pids": {"limit": 2 ** 70}},
    {"memory": {"limit": 104857600}, "pids": {"limit": 5}, "unified": {"no.such.file": "1"}},
]


@pytest.mark.parametrize("res", CASES, ids=range(len(CASES)))
def test_create_matches_python(tmp_path, res):
    cfg, linux = config(tmp_path, res)
    try:
        want = py_make(linux)
        gone()
        got = c_make(cfg)
        assert got == want
    finally:
        gone()


def test_devices_program_matches_python(tmp_path):
    """The device rules as an eBPF program: the same opens allowed and refused in
    a cgroup made by either side."""
    res = {"devices": [{"allow": False}, {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "r"},
                       {"allow": False, "type": "c", "major": 1, "minor": 5}]}
    cfg, linux = config(tmp_path, res, devices=[{"path": "/dev/vda", "type": "b", "major": MAJ, "minor": MIN}])
    script = ('echo $$ > "$1/cgroup.procs" || exit 9; for d in /dev/null /dev/zero /dev/urandom /dev/vda /dev/kmsg; '
              'do if head -c1 "$d" >/dev/null 2>&1; then echo "$d yes"; else echo "$d no"; fi; done')

    def opens():
        p = subprocess.run(["sh", "-c", script, "sh", os.path.join(CG, PARENT, NAME)], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    try:
        assert py_make(linux)[0] == "ok"
        want = opens()
        gone()
        assert c_make(cfg)[0] == "ok"
        assert opens() == want
        # the spec's deny of /dev/zero stands before the defaults allow it again;
        # linux.devices' /dev/vda is allowed; /dev/kmsg is in no rule
        assert want.split("\n")[:5] == ["/dev/null yes", "/dev/zero yes", "/dev/urandom yes", "/dev/vda yes",
                                        "/dev/kmsg no"]
    finally:
        gone()


def _scope_facts(unit, scope):
    d = os.path.join(CG, scope)
    with open(os.path.join(d, "supervisor", "cgroup.procs")) as f:
        pids = f.read().split()
    with open(f"/proc/{pids[0]}/comm") as f:
        comm = f.read().strip()
    with open(os.path.join(d, "cgroup.procs")) as f:
        own = f.read().split()
    show = subprocess.run(["systemctl", "show", "-p", "Delegate", "-p", "Slice", "-p", "Description", "--value",
                           unit], capture_output=True, text=True, check=True).stdout.split("\n")
    return {"placeholders": len(pids), "comm": comm, "own": own, "show": show[:3]}, int(pids[0])


def _dead(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_start_unit_matches_python(tmp_path):
    """A transient scope with Delegate=yes, its placeholder in supervisor/; a
    container cgroup made below it with limits; stopping it removes it all."""
    from pyrt.cgroups import systemd as cgroup_systemd
    cfg, _ = config(tmp_path, {"memory": {"limit": 67108864}, "pids": {"limit": 20}})
    facts = []
    for side in ("python", "c"):
        unit = f"pyrt-rtcg-{side}-{os.getpid()}.scope"
        scope = f"machine.slice/{unit}"
        try:
            if side == "python":
                cgroup_systemd.start_unit(unit, "machine.slice", CG, "pyrt rtcg test")
            else:
                ok, _, err = probe("start-unit", unit, "machine.slice", "pyrt rtcg test")
                assert ok, err
            f, pid = _scope_facts(unit, scope)
            ok, out, err = probe("create", cfg, "container", scope)
            assert ok, err
            with open(os.path.join(CG, scope, "container", "memory.max")) as fh:
                f["memory.max"] = fh.read()
            with open(os.path.join(CG, scope, "cgroup.subtree_control")) as fh:
                f["subtree_control"] = fh.read()
            os.rmdir(os.path.join(CG, scope, "container"))
            facts.append(f)
        finally:
            probe("stop-unit", unit, scope)
        assert not os.path.isdir(os.path.join(CG, scope))
        for _ in range(200):
            if _dead(pid):
                break
            subprocess.run(["sleep", "0.05"])
        assert _dead(pid)
    assert facts[0] == facts[1]
    assert sorted(facts[0]["show"]) == ["machine.slice", "pyrt rtcg test", "yes"] and facts[0]["placeholders"] == 1 and facts[0]["comm"] == "sleep"


# -- the ordinary user ------------------------------------------------------------------------

USER = "tester"


def as_tester(argv, manager=False):
    import pwd
    pw = pwd.getpwnam(USER)
    env = {"HOME": pw.pw_dir, "USER": USER, "LOGNAME": USER, "XDG_RUNTIME_DIR": f"/run/user/{pw.pw_uid}",
           "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    if manager:  # inside its systemd instance: the subtree systemd delegates to it
        argv = ["systemd-run", "--user", "--wait", "--pipe", "--quiet", "--collect", f"--setenv=PATH={env['PATH']}",
                "--", *argv]
    cmd = ["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/")


@pytest.fixture
def user_probe():
    path = f"/tmp/rt_cgroup_probe-{os.getpid()}"
    shutil.copy(PROBE, path)
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        os.unlink(path)


PY_REQUIRE = ("import sys\nfrom pyrt.cgroups import delegation\nfrom pyrt.errors import PyrtError\ntry:\n"
              "    delegation.require('linux.resources')\n    print('ok')\nexcept PyrtError as e:\n"
              "    print(e, file=sys.stderr)\n    sys.exit(1)\n")
PY_ROOT = "from pyrt.cgroups import delegation\nprint(delegation.delegated_root())"


def test_delegation_matches_python(user_probe):
    for manager in (False, True):
        c = as_tester([user_probe, "require", "linux.resources"], manager)
        py = as_tester(["python3", "-c", PY_REQUIRE], manager)
        assert (c.returncode, c.stdout, c.stderr) == (py.returncode, py.stdout, py.stderr)
        assert c.returncode == (0 if manager else 1)
        c = as_tester([user_probe, "delegated"], manager)
        py = as_tester(["python3", "-c", PY_ROOT], manager)
        assert c.stdout == py.stdout and (c.stdout.strip() != "None") == manager


def test_user_scope_with_limits(user_probe, tmp_path):
    """Inside its delegated subtree the user's own systemd instance starts the
    scope (on its bus); the container's cgroup below it takes its limits."""
    base = as_tester([user_probe, "delegated"], manager=True).stdout.strip()
    unit = f"pyrt-rtcg-{os.getpid()}.scope"
    scope = f"{base}/user.slice/{unit}"
    cfg = os.path.join("/tmp", f"rtcg-{os.getpid()}.json")
    with open(cfg, "w") as f:
        json.dump({"ociVersion": "1.0.2", "linux": {"resources": {"pids": {"limit": 11}, "memory": {"limit": 67108864}}}},
                  f)
    os.chmod(cfg, 0o644)
    script = (f'set -e; "$0" start-unit {unit} user.slice test {scope}; "$0" create {cfg} container {scope}; '
              f'cat {CG}/{scope}/container/pids.max {CG}/{scope}/container/memory.max; '
              f'rmdir {CG}/{scope}/container; "$0" stop-unit {unit} {scope}')
    try:
        p = as_tester(["sh", "-c", script, user_probe], manager=True)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0] == "ok" and json.loads(lines[1])["v2"] == f"{CG}/{scope}/container", lines
        assert lines[2:] == ["11", "67108864", "ok"]
        assert not os.path.isdir(os.path.join(CG, scope))
    finally:
        os.unlink(cfg)


@pytest.fixture(scope="module", autouse=True)
def _parent():
    os.makedirs(os.path.join(CG, PARENT), exist_ok=True)
    try:
        yield
    finally:
        gone()
        os.rmdir(os.path.join(CG, PARENT))
