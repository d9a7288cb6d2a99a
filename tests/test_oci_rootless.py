"""pyrt-runtime's cgroups for an ordinary user (as runc --rootless and crun under
systemd). This host has no systemd, so no user has a delegated subtree: as the
test user (usertools), a config that asks for resources (or --systemd-cgroup) is
refused with one line that says how to get delegation and leaves no state, one
without resources runs without a cgroup. Where the user has a subtree (the
guest's tests/vm/guest/test_rootless.py runs it) the container is in a scope of
the user's systemd instance: the paths pyrt would use are checked here by
parsing configs as that user would, and a cgroupsPath that points out of the
delegated subtree is refused either way."""
from __future__ import annotations

import json
import os

import pytest

from pyrt.ocirt.defaults import default_config

pytestmark = pytest.mark.timeout(300)

BASE = "user.slice/user-1000.slice/user@1000.service"  # a user's delegated subtree
ESCAPES = ["../../system.slice/x", "a/../../../b", "./x", "/sys/fs/cgroup/x", "/user.slice/user-0.slice/x",
           "/system.slice/docker.service", "/", "machine.slice:libpod:x", "a/../../user-1001.slice"]
SYSTEMD_ESCAPES = ["../x.slice:pfx:name", "user.slice:../..:x", "user.slice:pfx:../x", "user.slice:pfx:a/b",
                   "/user.slice:pfx:x", "-.slice:pfx:x", "user.slice:pfx:x.slice", "a:b", "x"]


def _bundle(user, user_rootfs, args, edit=None):
    n = len([d for d in os.listdir(user.base) if d.startswith("bundle")])
    bundle = user.mkdir(f"bundle{n}", 0o755)
    cfg = default_config(rootless=True)
    cfg["root"] = {"path": user_rootfs, "readonly": True}
    cfg["process"]["args"] = list(args)
    cfg["process"]["terminal"] = False
    for k, own in (("uidMappings", user.uid), ("gidMappings", user.gid)):
        cfg["linux"][k] = [{"containerID": 0, "hostID": own, "size": 1}]
    if edit:
        edit(cfg)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return bundle


def _state(user):
    d = os.path.join(user.runtime_dir, "pyrt-runtime")
    return os.listdir(d) if os.path.isdir(d) else []


def _one_line(r) -> str:
    err = r.stderr.decode()
    assert r.returncode != 0 and err.count("\n") == 1, (r.returncode, err)
    return err


def test_resources_without_delegation_say_how(user, user_rootfs):
    def limits(cfg):
        cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 20}}
    bundle = _bundle(user, user_rootfs, ["true"], limits)
    for argv in (["run", "--bundle", bundle, "l1"], ["create", "--bundle", bundle, "l2"]):
        err = _one_line(user.runtime(*argv))
        assert "linux.resources" in err and "loginctl enable-linger" in err and "Delegate=" in err, err
        assert _state(user) == []
    # --systemd-cgroup: not here (no systemd), one line either way
    err = _one_line(user.runtime("--systemd-cgroup", "run", "--bundle", _bundle(user, user_rootfs, ["true"]), "l3"))
    assert "--systemd-cgroup" in err, err
    assert _state(user) == []


def test_no_resources_runs_without_a_cgroup(user, user_rootfs):
    def devices_only(cfg):  # device rules alone need no cgroup: the user namespace keeps devices out
        cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    with open("/proc/self/cgroup") as f:
        ours = f.read()
    for edit in (None, devices_only):
        bundle = _bundle(user, user_rootfs, ["sh", "-c", "echo ran"], edit)
        r = user.runtime("run", "--bundle", bundle, "n1")
        assert r.returncode == 0 and r.stdout == b"ran\n", r.stderr
        assert _state(user) == []
    with open("/proc/self/cgroup") as f:
        assert f.read() == ours


@pytest.mark.parametrize("cpath", ESCAPES)
def test_cgroups_path_cannot_leave_the_users_subtree(user, user_rootfs, cpath):
    """An absolute cgroupsPath (another user's, root's, the hierarchy's root), '..'
    or a systemd path: refused with one line before anything is made, delegation
    or not."""
    def edit(cfg):
        cfg["linux"]["cgroupsPath"] = cpath
    err = _one_line(user.runtime("run", "--bundle", _bundle(user, user_rootfs, ["true"], edit), "e1"))
    assert "linux.cgroupsPath" in err, err
    assert _state(user) == []


# -- the paths an ordinary user with a delegated subtree gets (parsed as that user) ------------

@pytest.fixture
def as_delegated_user(monkeypatch):
    """This process as uid 1000 inside BASE, for pyrt.ocirt.spec.parse."""
    from pyrt.cgroups import delegation
    for f in ("geteuid", "getuid", "getegid", "getgid"):
        monkeypatch.setattr(os, f, lambda: 1000)
    monkeypatch.setattr(delegation, "delegated_root", lambda: BASE)


def _parse(cpath, systemd=False):
    from pyrt.ocirt import spec as rs
    cfg = default_config(rootless=True)
    cfg["root"] = {"path": "/"}
    for k in ("uidMappings", "gidMappings"):
        cfg["linux"][k] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    if cpath is not None:
        cfg["linux"]["cgroupsPath"] = cpath
    return rs.parse(cfg, "/", container_id="c1", systemd_cgroup=systemd)


@pytest.mark.parametrize("cpath, systemd, scope, cgroup", [
    (None, False, "user.slice/pyrt-runtime-c1.scope", "container"),
    ("inner", False, "user.slice/pyrt-runtime-c1.scope", "inner"),
    ("a/b", False, "user.slice/pyrt-runtime-c1.scope", "a/b"),
    (None, True, "user.slice/pyrt-runtime-c1.scope", "container"),
    ("user.slice:libpod:c9", True, "user.slice/libpod-c9.scope", "container"),
    (":mine:", True, "user.slice/mine-c1.scope", "container"),
    ("app-pods.slice::c9", True, "app.slice/app-pods.slice/c9.scope", "container"),
])
def test_user_scope_paths(as_delegated_user, cpath, systemd, scope, cgroup):
    from pyrt.ocirt import spec as rs
    plan = rs.Plan()
    rs._user_cgroups(plan, cpath or "", "c1", systemd)
    assert plan.systemd_scope == f"{BASE}/{scope}"
    assert plan.systemd_unit == scope.rsplit("/", 1)[1]
    assert f"{plan.cgroup_parent}/{plan.cgroup_name}" == f"{BASE}/{scope}/{cgroup}"


@pytest.mark.parametrize("cpath", ESCAPES)
def test_user_cgroups_path_escapes_refused(as_delegated_user, cpath):
    from pyrt.errors import ConfigError
    with pytest.raises(ConfigError, match="linux.cgroupsPath"):
        _parse(cpath)


@pytest.mark.parametrize("cpath", SYSTEMD_ESCAPES)
def test_user_systemd_cgroups_path_escapes_refused(as_delegated_user, cpath):
    from pyrt.errors import ConfigError
    with pytest.raises(ConfigError, match="linux.cgroupsPath"):
        _parse(cpath, True)
