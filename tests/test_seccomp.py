"""Seccomp: containers from images get pyrt's default profile (pyrt/seccomp.py), their
exec'd processes too; `--security-opt seccomp=unconfined|PROFILE.json`, cap_add
lifting the rules of a capability, privileged containers unfiltered; the low-level
API takes `seccomp=`."""
from __future__ import annotations

import json
import os

import pytest

import pyrt
from pyrt import seccomp
from test_lifecycle import base_tar, error, ok, store  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(not seccomp.available(), reason="pyrt was built without libseccomp")

# the filter mode of the shell, and whether it may make a user namespace (unprivileged
# elsewhere, so only the filter stops it)
PROBE = "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null && echo userns=yes || echo userns=no"


def test_default_profile(store):
    out = ok(store.cli("run", "--rm", "base:1", "sh", "-c", PROBE + "; mkdir /d && echo mkdir=ok"))
    assert out.split() == ["Seccomp:", "2", "userns=no", "mkdir=ok"]
    # exec'd processes are filtered the same way
    ok(store.cli("run", "-d", "--name", "s1", "base:1", "sleep", "100"))
    assert ok(store.cli("exec", "s1", "sh", "-c", PROBE)).split() == ["Seccomp:", "2", "userns=no"]
    # exec --privileged is not
    assert ok(store.cli("exec", "--privileged", "s1", "sh", "-c", PROBE)).split() == ["Seccomp:", "0", "userns=yes"]


def test_unconfined_privileged_and_cap_add(store):
    for opts in (["--security-opt", "seccomp=unconfined"], ["--privileged"]):
        out = ok(store.cli("run", "--rm", *opts, "base:1", "sh", "-c", PROBE))
        assert out.split() == ["Seccomp:", "0", "userns=yes"], opts
    # CAP_SYS_ADMIN lifts the namespace rules (the filter stays)
    out = ok(store.cli("run", "--rm", "--cap-add", "SYS_ADMIN", "base:1", "sh", "-c", PROBE))
    assert out.split() == ["Seccomp:", "2", "userns=yes"]


def test_custom_profile(store, tmp_shm):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    path = os.path.join(tmp_shm, "profile.json")
    with open(path, "w") as f:
        json.dump(profile, f)
    r = store.cli("run", "--rm", "--security-opt", f"seccomp={path}", "base:1", "sh", "-c",
                  "mkdir /d 2>&1; unshare -U true && echo userns=yes")
    assert "Permission denied" in ok(r) and "userns=yes" in ok(r)  # only what the profile says


def test_bad_security_opts_change_nothing(store, tmp_shm):
    bad_json = os.path.join(tmp_shm, "bad.json")
    with open(bad_json, "w") as f:
        f.write("{nope")
    bad_action = os.path.join(tmp_shm, "bad-action.json")
    with open(bad_action, "w") as f:
        json.dump({"defaultAction": "SCMP_ACT_NOPE"}, f)
    before = store.snapshot()
    for opt, match in ((f"seccomp={tmp_shm}/missing.json", "No such file"), (f"seccomp={bad_json}", "not JSON"),
                       (f"seccomp={bad_action}", "SCMP_ACT_NOPE"), ("apparmor=x", "unsupported --security-opt")):
        error(store.cli("run", "--rm", "--security-opt", opt, "base:1", "true"), status=125, match=match)
        error(store.cli("create", "--security-opt", opt, "base:1", "true"), match=match)
    assert store.snapshot() == before


def test_low_level_api(rootfs):
    argv = ["/bin/sh", "-c", "grep Seccomp: /proc/self/status"]
    assert pyrt.run(argv, rootfs, capture_output=True).stdout.split() == [b"Seccomp:", b"0"]
    assert pyrt.run(argv, rootfs, capture_output=True, seccomp="default").stdout.split() == [b"Seccomp:", b"2"]
    with pytest.raises(pyrt.errors.PyrtError, match="SCMP_ACT_NOPE"):
        pyrt.run(argv, rootfs, seccomp={"defaultAction": "SCMP_ACT_NOPE"})


def test_profile_rules():
    prof = seccomp.default_profile()
    denied = {n for r in prof["syscalls"] for n in r["names"]}
    assert {"keyctl", "unshare", "mount", "kexec_load", "clone3", "open_by_handle_at"} <= denied
    assert "ptrace" not in denied and "read" not in denied
    lifted = {n for r in seccomp.default_profile(["CAP_SYS_ADMIN"])["syscalls"] for n in r["names"]}
    assert "unshare" not in lifted and "clone3" not in lifted and "keyctl" in lifted
    assert seccomp.filter_for(privileged=True) is None and seccomp.filter_for(profile="unconfined") is None
