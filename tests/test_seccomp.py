"""Seccomp: containers from images get pyrt's default profile (pyrt/seccomp.py, an
allow-list), their exec'd processes too, and so do pyrt.run/pyrt.spawn unless given
seccomp=None; `--security-opt seccomp=unconfined|PROFILE.json`, cap_add allowing the
calls of a capability, privileged containers unfiltered. The attacks run a small
static C probe (tests/probes/seccomp_probe.c) inside real containers."""
from __future__ import annotations

import errno
import json
import os
import stat
import shutil
import subprocess

import pytest

import helpers
import pyrt
from pyrt.launch import seccomp
from clitools import error, ok

pytestmark = pytest.mark.skipif(not seccomp.available(), reason="pyrt was built without libseccomp")

PROBE_SRC = os.path.join(os.path.dirname(__file__), "probes", "seccomp_probe.c")


@pytest.fixture(scope="session")
def probe_rootfs(shm_base, rootfs):
    """A copy of the test rootfs with the probe as /probe (compiled once a session)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the seccomp probe")
    root = helpers.copy_tree(rootfs, os.path.join(shm_base, "rootfs-seccomp"))
    r = subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(root, "probe"), PROBE_SRC, "-lpthread"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"building the probe (gcc -static, libc6-dev): {r.stderr}"
    return root


def probe(root, *checks, **options) -> dict:
    """{check: 0 or the errno it failed with} from inside a new container."""
    r = pyrt.run(["/probe", *checks], root, capture_output=True, text=True, **options)
    assert r.returncode == 0, r.stderr
    return {k: int(v) for k, v in (line.split("=") for line in r.stdout.split())}


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
    # filtered by default; seccomp=None (or "unconfined", or privileged) opts out
    assert pyrt.run(argv, rootfs, capture_output=True).stdout.split() == [b"Seccomp:", b"2"]
    assert pyrt.run(argv, rootfs, capture_output=True, seccomp="default").stdout.split() == [b"Seccomp:", b"2"]
    for opts in ({"seccomp": None}, {"seccomp": "unconfined"}, {"privileged": True}):
        assert pyrt.run(argv, rootfs, capture_output=True, **opts).stdout.split() == [b"Seccomp:", b"0"], opts
    with pytest.raises(pyrt.errors.PyrtError, match="SCMP_ACT_NOPE"):
        pyrt.run(argv, rootfs, seccomp={"defaultAction": "SCMP_ACT_NOPE"})


ATTACKS = ["io_uring_setup", "vsock", "vsock_high_bits", "personality_no_aslr", "unshare_user", "clone_newuser",
           "clone3", "syscall_1000", "mount_tmpfs",
           # the same through the 32-bit and x32 entries (other syscall numbers)
           "i386_io_uring_setup", "i386_1000", "x32_io_uring_setup", "x32_1000"]
ORDINARY = ["files", "fork", "thread", "unix_socket", "personality_query", "i386_getpid"]


def test_attacks_fail_under_the_default_profile(probe_rootfs):
    got = probe(probe_rootfs, *ATTACKS, *ORDINARY)
    assert got == {
        "io_uring_setup": errno.EPERM,
        "vsock": errno.EPERM,
        "vsock_high_bits": errno.EPERM,  # not AF_VSOCK | 1 << 32 either (the kernel reads an int)
        "personality_no_aslr": errno.EPERM,
        "unshare_user": errno.EPERM,
        "clone_newuser": errno.EPERM,
        "clone3": errno.ENOSYS,  # so that the C library falls back to clone
        "syscall_1000": errno.ENOSYS,  # unknown to the profile: ENOSYS, not EPERM
        "mount_tmpfs": errno.EPERM,
        "i386_io_uring_setup": errno.EPERM, "i386_1000": errno.ENOSYS,
        "x32_io_uring_setup": errno.EPERM, "x32_1000": errno.ENOSYS,
        # the ordinary work goes on (threads: glibc's clone3 -> clone fallback)
        "files": 0, "fork": 0, "thread": 0, "unix_socket": 0, "personality_query": 0, "i386_getpid": 0}
    # so does a shell's (busybox or the host's binaries)
    r = pyrt.run(["/bin/sh", "-c", "echo a | cat > /dev/null && ls / > /dev/null && echo done"], probe_rootfs,
                 capture_output=True)
    assert r.stdout == b"done\n" and r.returncode == 0, r.stderr


def test_probe_detects_what_an_unfiltered_container_may_do(probe_rootfs):
    # the same probe without a filter: io_uring and the personality get through, so
    # the EPERMs above are the filter's (and an unknown syscall is ENOSYS anyway)
    got = probe(probe_rootfs, "io_uring_setup", "personality_no_aslr", "syscall_1000", "clone3", seccomp=None)
    assert got == {"io_uring_setup": 0, "personality_no_aslr": 0, "syscall_1000": errno.ENOSYS, "clone3": 0}


def test_unknown_syscalls_get_enosys_from_the_filter(probe_rootfs):
    # a profile that denies with EACCES: what is denied says EACCES, what is newer
    # than every syscall the profile names says ENOSYS, on each architecture (the
    # stub before libseccomp's program, csrc/seccomp.c); so for OCI bundles' profiles
    profile = dict(seccomp.default_profile(), defaultErrnoRet=errno.EACCES)
    got = probe(probe_rootfs, "io_uring_setup", "syscall_1000", "i386_io_uring_setup", "i386_1000",
                "x32_io_uring_setup", "x32_1000", "thread", seccomp=profile)
    assert got == {"io_uring_setup": errno.EACCES, "syscall_1000": errno.ENOSYS,
                   "i386_io_uring_setup": errno.EACCES, "i386_1000": errno.ENOSYS,
                   "x32_io_uring_setup": errno.EACCES, "x32_1000": errno.ENOSYS, "thread": 0}
    # a profile that allows by default is left as it is
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["io_uring_setup"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]}
    assert probe(probe_rootfs, "io_uring_setup", "syscall_1000", seccomp=profile) == {
        "io_uring_setup": errno.EACCES, "syscall_1000": errno.ENOSYS}


def test_cap_add_allows_the_calls_of_the_capability(probe_rootfs):
    got = probe(probe_rootfs, "mount_tmpfs", "unshare_user", "clone3", "io_uring_setup", "vsock",
                cap_add=["SYS_ADMIN"])
    # SYS_ADMIN: mounts, namespaces and clone3; io_uring and vsock stay denied
    assert got["mount_tmpfs"] == 0 and got["unshare_user"] == 0 and got["clone3"] == 0
    assert got["io_uring_setup"] == errno.EPERM and got["vsock"] == errno.EPERM


def test_exec_and_containers_from_images(store, probe_rootfs):
    # the same filter for a container from an image (here: the probe copied in)
    ok(store.cli("run", "-d", "--name", "p1", "base:1", "sleep", "100"))
    with open(os.path.join(probe_rootfs, "probe"), "rb") as f:
        data = f.read()
    r = store.cli("exec", "-i", "p1", "sh", "-c", "cat > /probe && chmod 755 /probe && /probe io_uring_setup "
                  "syscall_1000 thread", input=data)
    assert ok(r).split() == [f"io_uring_setup={errno.EPERM}", f"syscall_1000={errno.ENOSYS}", "thread=0"]


def test_profile_rules():
    prof = seccomp.default_profile()
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO" and prof["defaultErrnoRet"] == errno.EPERM
    allowed = {n for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"read", "execve", "futex", "ptrace", "clone", "socket", "personality"} <= allowed
    assert not allowed & {"keyctl", "unshare", "mount", "kexec_load", "clone3", "open_by_handle_at",
                          "io_uring_setup", "bpf", "init_module", "reboot", "settimeofday"}
    lifted = {n for r in seccomp.default_profile(["CAP_SYS_ADMIN"])["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
              for n in r["names"]}
    assert {"unshare", "clone3", "mount", "umount2", "setns"} <= lifted and "keyctl" not in lifted
    for cap, call in (("SYS_PTRACE", "kcmp"), ("SYS_MODULE", "init_module"), ("SYS_TIME", "settimeofday"),
                      ("SYS_BOOT", "reboot"), ("SYS_NICE", "mbind"), ("SYS_PACCT", "acct"), ("SYS_RAWIO", "iopl"),
                      ("SYSLOG", "syslog"), ("BPF", "bpf"), ("PERFMON", "perf_event_open")):
        names = {n for r in seccomp.default_profile([cap])["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
                 for n in r["names"]}
        assert call in names and call not in allowed, cap
    assert seccomp.filter_for(privileged=True) is None and seccomp.filter_for(profile="unconfined") is None


def test_the_compiled_default_profile_is_cached_only_where_nobody_else_writes(tmp_shm, monkeypatch):
    """The default filter is compiled once and kept in a cache file; a cache directory
    another user (or everyone) could write is neither read nor written."""
    from pyrt.launch import seccomp
    fresh = seccomp.filter_for(("SYS_NICE",), False, None)
    cache = os.path.join(tmp_shm, "cache")
    monkeypatch.setattr(seccomp, "_cache_dir", lambda: cache)
    seccomp._compiled.cache_clear()
    try:
        assert seccomp.filter_for(("SYS_NICE",), False, None) == fresh
        files = os.listdir(cache)
        assert len(files) == 1 and stat.S_IMODE(os.stat(cache).st_mode) == 0o700
        # a tampered cache in a directory others can write is ignored
        path = os.path.join(cache, files[0])
        with open(path, "r+b") as f:
            f.seek(4)
            f.write(b"\x06\x00\x00\x00\x00\x00\xff\x7f")  # "allow everything" first
        os.chmod(cache, 0o777)
        seccomp._compiled.cache_clear()
        assert seccomp.filter_for(("SYS_NICE",), False, None) == fresh
    finally:
        os.chmod(cache, 0o700)
        seccomp._compiled.cache_clear()


def test_cap_names_never_become_a_cache_path(tmp_shm, monkeypatch):
    """--cap-add ../x (refused later as no capability) must not name a cache file
    outside the cache directory: names that are not plain are compiled uncached."""
    from pyrt.launch import seccomp
    cache = os.path.join(tmp_shm, "cache", "pyrt")
    monkeypatch.setattr(seccomp, "_cache_dir", lambda: cache)
    seccomp._compiled.cache_clear()
    try:
        seccomp.filter_for(("../../escaped",), False, None)
        seccomp.filter_for(("SYS_NICE", "a/b"), False, None)
        assert [files for _, _, files in os.walk(tmp_shm) if files] == []
    finally:
        seccomp._compiled.cache_clear()
