"""pyrt-runtime's native create and run (csrc/rt_config*.c, csrc/rt_create.c)
against its Python implementation (PYRT_RUNTIME_PYTHON=1 forces it): for a table
of configs, valid and hostile, both sides give the same exit status and the same
error line, the same state.json (but for times, pids and the id), and leave
nothing behind (state directory, cgroups, processes, mounts). And the native
side is native for the configs engines and the benchmark send (--debug says
when a config is handed over)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ocitools import runtime_cgroup_dirs


@pytest.fixture
def rt(oci_rt):
    return oci_rt


def _set(keys, value):
    def fn(cfg):
        d = cfg
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value
    return fn


def _del(keys):
    def fn(cfg):
        d = cfg
        for k in keys[:-1]:
            d = d[k]
        d.pop(keys[-1], None)
    return fn


def _ns(*kinds):
    return _set(["linux", "namespaces"], [k if isinstance(k, dict) else {"type": k} for k in kinds])


def _mounts_plus(*extra):
    def fn(cfg):
        cfg["mounts"] = cfg["mounts"] + list(extra)
    return fn


def _seccomp(**kw):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    prof.update(kw)
    return _set(["linux", "seccomp"], prof)


def _both(*fns):
    def fn(cfg):
        for f in fns:
            f(cfg)
    return fn


# (name, edit) — each config is created by both sides, from the same bundle
CASES = [
    ("default", None),
    ("no-resources", _del(["linux", "resources"])),
    ("env-cwd-user", _both(_set(["process", "env"], ["A=1", "PATH=/bin"]), _set(["process", "cwd"], "/tmp"),
                           _set(["process", "user"], {"uid": 1000, "gid": 1000, "additionalGids": [5, 6],
                                                      "umask": 18}))),
    ("caps-unknown-warns", _set(["process", "capabilities", "bounding"], ["CAP_CHOWN", "CAP_BOGUS", "kill"])),
    ("caps-non-ascii", _set(["process", "capabilities", "bounding"], ["CAP_K\u0131LL"])),
    ("caps-not-a-list", _set(["process", "capabilities", "bounding"], "CAP_KILL")),
    ("rlimits", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 50},
                                              {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}])),
    ("rlimit-unknown", _set(["process", "rlimits"], [{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}])),
    ("rlimit-twice", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}] * 2)),
    ("rlimit-soft-above", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}])),
    ("rlimit-negative", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "hard": -1, "soft": 1}])),
    ("rlimit-bool", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "hard": True, "soft": 1}])),
    ("rlimit-huge", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "hard": 2**70, "soft": 1}])),
    ("rlimit-unlimited", _set(["process", "rlimits"], [{"type": "RLIMIT_CORE", "hard": 2**64 - 1,
                                                        "soft": 2**64 - 1}])),
    ("rlimit-soft-huge", _set(["process", "rlimits"], [{"type": "RLIMIT_CORE", "hard": 2**64 - 1,
                                                        "soft": 2**64}])),
    ("uid-huge", _set(["process", "user", "uid"], 2**80)),
    ("uid-huge-negative", _set(["process", "user", "uid"], -2**80)),
    ("caps-bigint-type", _set(["process", "capabilities", "bounding"], [2**70])),
    ("seccomp-value-max", _seccomp(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                                              "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 2**64 - 1}]}])),
    ("seccomp-value-over", _seccomp(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                                               "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 2**64}]}])),
    ("rlimit-type-list", _set(["process", "rlimits"], [{"type": ["x"], "hard": 1, "soft": 1}])),
    ("args-empty", _set(["process", "args"], [])),
    ("program-missing", _set(["process", "args"], ["/nonexistent/prog"])),
    ("mount-fails-in-child", _mounts_plus({"destination": "/tmp", "type": "tmpfs", "source": "t",
                                           "options": ["size=bogus"]})),
    ("hook-fails-after-spawn", _both(_set(["process", "args"], ["/nonexistent/prog"]),
                                     _set(["hooks"], {"prestart": [{"path": "/bin/true"}],
                                                      "poststop": [{"path": "/bin/sh",
                                                                    "args": ["sh", "-c", "echo poststop >&2"]}]}))),
    ("args-not-strings", _set(["process", "args"], ["true", 1])),
    ("env-no-equals", _set(["process", "env"], ["NOPE"])),
    ("env-quote", _set(["process", "env"], ["it's"])),
    ("cwd-relative", _set(["process", "cwd"], "tmp")),
    ("cwd-null", _set(["process", "cwd"], None)),
    ("uid-negative", _set(["process", "user", "uid"], -1)),
    ("uid-string", _set(["process", "user", "uid"], "0")),
    ("uid-float", _set(["process", "user", "uid"], 1.5)),
    ("umask-big", _set(["process", "user", "umask"], 0o1000)),
    ("oom-score", _set(["process", "oomScoreAdj"], 100)),
    ("oom-score-range", _set(["process", "oomScoreAdj"], 5000)),
    ("no-process", _del(["process"])),
    ("terminal-no-socket", _set(["process", "terminal"], True)),
    ("lsm-warns", _both(_set(["process", "apparmorProfile"], "x"), _set(["domainname"], "d"))),
    ("ns-unknown", _ns("pid", "bogus")),
    ("ns-list-type", _ns("pid", {"type": ["mount"]})),
    ("ns-twice", _ns("pid", "mount", "pid")),
    ("ns-path-missing", _ns("mount", {"type": "network", "path": "/nonexistent/ns"})),
    ("ns-join-net", _ns("mount", "pid", {"type": "network", "path": "/proc/self/ns/net"})),
    ("ns-not-object", _ns("mount", "x")),
    ("userns-no-maps", _ns("mount", "user")),
    ("userns-maps", _both(_ns("mount", "user", "pid"), _del(["linux", "resources"]),
                          _set(["linux", "uidMappings"], [{"containerID": 0, "hostID": 100000, "size": 65536}]),
                          _set(["linux", "gidMappings"], [{"containerID": 0, "hostID": 100000, "size": 65536}]))),
    ("maps-without-userns", _set(["linux", "uidMappings"], [{"containerID": 0, "hostID": 1, "size": 1}])),
    ("maps-bad-size", _both(_ns("mount", "user"), _set(["linux", "uidMappings"],
                                                       [{"containerID": 0, "hostID": 1, "size": 0}]))),
    ("hostname-without-uts", _ns("mount", "pid")),
    ("no-mount-ns-chroot", _both(_ns("pid"), _del(["mounts"]), _del(["linux", "maskedPaths"]),
                                 _del(["linux", "readonlyPaths"]), _set(["root", "readonly"], False),
                                 _del(["hostname"]))),
    ("no-mount-ns-mounts", _both(_ns("pid", "uts"))),
    ("root-missing", _set(["root"], {})),
    ("root-not-dir", _set(["root", "path"], "/etc/hostname")),
    ("root-relative-escape", _set(["root", "path"], "../../../../../../../../nonexistent")),
    ("mount-proc-tmpfs", _mounts_plus({"destination": "/proc", "type": "tmpfs", "source": "t"})),
    ("mount-in-proc", _mounts_plus({"destination": "/proc/kcore", "type": "bind", "source": "/dev/null"})),
    ("mount-proc-dotdot", _mounts_plus({"destination": "/tmp/../proc/sysrq-trigger", "type": "bind",
                                        "source": "/dev/null"})),
    ("mount-ok-lxcfs", _mounts_plus({"destination": "/proc/uptime", "type": "bind", "source": "/proc/uptime"})),
    ("mount-no-dest", _mounts_plus({"type": "tmpfs", "source": "t"})),
    ("mount-no-type", _mounts_plus({"destination": "/x", "source": "t"})),
    ("mount-bind-no-source", _mounts_plus({"destination": "/x", "type": "bind"})),
    ("mount-bind-missing", _mounts_plus({"destination": "/x", "type": "bind", "source": "nope/nope"})),
    ("mount-idmap", _mounts_plus({"destination": "/tmp", "type": "tmpfs", "options": ["idmap"]})),
    ("mount-relative-dest", _mounts_plus({"destination": "tmp", "type": "tmpfs", "source": "t",
                                          "options": ["size=1m", "rw", "noatime"]})),
    ("mount-options-not-list", _mounts_plus({"destination": "/tmp", "type": "tmpfs", "options": "ro"})),
    ("devices", _set(["linux", "devices"], [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                             "fileMode": 0o600}])),
    ("device-bad-type", _set(["linux", "devices"], [{"path": "/dev/x", "type": "z"}])),
    ("device-relative", _set(["linux", "devices"], [{"path": "dev/x", "type": "c"}])),
    ("masked-relative", _set(["linux", "maskedPaths"], ["proc/kcore"])),
    ("propagation-bad", _set(["linux", "rootfsPropagation"], "sideways")),
    ("propagation", _set(["linux", "rootfsPropagation"], "rslave")),
    ("sysctl-ok", _set(["linux", "sysctl"], {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000000"})),
    ("sysctl-host", _set(["linux", "sysctl"], {"vm.swappiness": "1"})),
    ("sysctl-hostname", _set(["linux", "sysctl"], {"kernel.hostname": "x"})),
    ("sysctl-not-string", _set(["linux", "sysctl"], {"net.ipv4.ip_forward": 1})),
    ("cgroups-path-abs", _set(["linux", "cgroupsPath"], "/pyrt-parity/inner")),
    ("cgroups-path-rel", _set(["linux", "cgroupsPath"], "parity-rel")),
    ("cgroups-path-systemd", _set(["linux", "cgroupsPath"], "machine.slice:libpod:x")),
    ("cgroups-path-dotdot", _set(["linux", "cgroupsPath"], "/a/../../etc")),
    ("cgroups-path-empty", _set(["linux", "cgroupsPath"], "///")),
    ("personality", _set(["linux", "personality"], {"domain": "LINUX32"})),
    ("seccomp", _seccomp()),
    ("seccomp-action", _seccomp(defaultAction="SCMP_ACT_BOGUS")),
    ("seccomp-notify", _seccomp(defaultAction="SCMP_ACT_NOTIFY")),
    ("seccomp-listener", _seccomp(listenerPath="/x")),
    ("seccomp-arch", _seccomp(architectures=["SCMP_ARCH_NOPE"])),
    ("seccomp-flag", _seccomp(flags=["SECCOMP_FILTER_FLAG_NOPE"])),
    ("seccomp-errno-range", _seccomp(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=70000)),
    ("seccomp-op", _seccomp(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                                       "args": [{"index": 0, "op": "SCMP_CMP_NOPE", "value": 1}]}])),
    ("seccomp-index", _seccomp(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                                          "args": [{"index": 9, "op": "SCMP_CMP_EQ", "value": 1}]}])),
    ("seccomp-args", _seccomp(syscalls=[{"names": ["kill", "nosuchcall"], "action": "SCMP_ACT_ERRNO",
                                         "errnoRet": 1, "args": [{"index": 1, "op": "SCMP_CMP_EQ",
                                                                  "value": 9}]}])),
    ("hooks", _set(["hooks"], {"prestart": [{"path": "/bin/true"}], "createRuntime": [{"path": "/bin/true"}],
                               "poststop": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]})),
    ("hook-fails", _set(["hooks"], {"createRuntime": [{"path": "/bin/false"}],
                                    "poststop": [{"path": "/bin/true"}]})),
    ("hook-kind", _set(["hooks"], {"preStart": [{"path": "/bin/true"}]})),
    ("hook-relative", _set(["hooks"], {"prestart": [{"path": "bin/true"}]})),
    ("hook-timeout", _set(["hooks"], {"prestart": [{"path": "/bin/true", "timeout": 0}]})),
    ("hook-timeout-big", _set(["hooks"], {"prestart": [{"path": "/bin/true", "timeout": 10**9}]})),
    ("annotations", _set(["annotations"], {"a": "b", "c": "d"})),
    ("annotations-list", _set(["annotations"], ["a"])),
    ("version-2", _set(["ociVersion"], "2.0.0")),
    ("version-int", _set(["ociVersion"], 1)),
    ("linux-list", _set(["linux"], ["x"])),
]


def _strip(err: bytes, ids) -> str:
    text = err.decode(errors="replace")
    for i in ids:
        text = text.replace(i, "ID")
    return "\n".join(line for line in text.splitlines() if "debug:" not in line)


def _record(root, cid):
    try:
        with open(os.path.join(root, cid, "state.json")) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    for k in ("created", "pid", "start_time"):
        assert k in rec
        rec.pop(k)
    rec.pop("id")
    if rec.get("cgroup_name") == cid:
        rec["cgroup_name"] = "ID"
    return rec


def _create(rt, bundle, cid, python, *extra, timeout=120):
    env = dict(os.environ, PYRT_RUNTIME_PYTHON="1") if python else {
        k: v for k, v in os.environ.items() if k != "PYRT_RUNTIME_PYTHON"}
    argv = [rt.binary, "--root", rt.root, "--debug", "create", "--bundle", bundle, *extra, cid]
    with open(os.path.join(bundle, "create-%s.err" % cid.replace("/", "_")), "w+b") as err:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                            timeout=timeout).returncode
        err.seek(0)
        return rc, err.read()


def _gone(rt, cid, pid):
    assert not os.path.exists(os.path.join(rt.root, cid)), f"state of {cid} left behind"
    assert not runtime_cgroup_dirs(cid), f"cgroup of {cid} left behind"
    if pid:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "ZX"


def _mountinfo():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" ", 4)[4] for line in f)


def _create_and_remove(rt, bundle, cid, python):
    """create, then (whatever happened) delete --force: (exit status, stderr, record,
    state), and nothing of it left."""
    rc, err = _create(rt, bundle, cid, python)
    raw = _record_raw(rt.root, cid)
    rec = _record(rt.root, cid)
    st = rt.state(cid)["status"] if rc == 0 else None
    rt("delete", "--force", cid)
    _gone(rt, cid, raw.get("pid") if raw else 0)
    return rc, err, rec, st


@pytest.mark.parametrize("name,edit", CASES, ids=[c[0] for c in CASES])
def test_native_and_python_agree(rt, make_bundle, name, edit):
    if os.geteuid() != 0:
        pytest.skip("the native create is root's (an ordinary user's is handed over)")
    bundle = make_bundle(["sleep", "100"], edit=edit)
    before = _mountinfo()
    nid, pid_ = rt.new_id("n"), rt.new_id("p")
    nrc, nerr, nrec, nst = _create_and_remove(rt, bundle, nid, python=False)
    prc, perr, prec, pst = _create_and_remove(rt, bundle, pid_, python=True)
    assert (nrc, _strip(nerr, [nid])) == (prc, _strip(perr, [pid_]))
    assert nrec == prec
    assert nst == pst
    assert _mountinfo() == before


def _record_raw(root, cid):
    try:
        with open(os.path.join(root, cid, "state.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def _raw_bundle(make_bundle, text: bytes):
    bundle = make_bundle(["true"])
    with open(os.path.join(bundle, "config.json"), "wb") as f:
        f.write(text)
    return bundle


RAW = [
    ("comments", b'{"ociVersion": "1.0.0", /* c */ "process": {"args": ["true"]}}'),
    ("duplicate-keys", b'{"ociVersion": "1.0.0", "ociVersion": "2.0.0"}'),
    ("not-json", b'{"ociVersion": '),
    ("not-an-object", b'["ociVersion"]'),
    ("nan", b'{"ociVersion": NaN}'),
    ("nul-escape", b'{"ociVersion": "1.0\\u0000"}'),
    ("deep", b'{"ociVersion": "1.0.0", "annotations": {"a": ' + b"[" * 100 + b"]" * 100 + b'}}'),
    # a million levels: the native reader crashed freeing yajl's tree (it recurses), Python's json
    # raised RecursionError (a traceback): both say it is too deep
    ("very-deep", b'{"ociVersion": "1.0.0", "annotations": {"a": ' + b"[" * 1000000 + b"]" * 1000000 + b'}}'),
    ("very-deep-unclosed", b'{"ociVersion": "1.0.0", "annotations": {"a": ' + b"[" * 1000000 + b'}}'),
    ("empty", b""),
]


@pytest.mark.parametrize("name,text", RAW, ids=[r[0] for r in RAW])
def test_hostile_json_agrees(rt, make_bundle, name, text):
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    bundle = _raw_bundle(make_bundle, text)
    nid, pid_ = rt.new_id("n"), rt.new_id("p")
    nrc, nerr = _create(rt, bundle, nid, python=False)
    prc, perr = _create(rt, bundle, pid_, python=True)
    assert nrc == prc != 0
    assert _strip(nerr, [nid]) == _strip(perr, [pid_])
    assert b"Traceback" not in perr, perr[-2000:]  # a clear error, not a crash
    _gone(rt, nid, 0)
    _gone(rt, pid_, 0)


@pytest.mark.parametrize("kind", ["fifo", "zero", "directory"])
def test_a_config_that_is_no_file_is_refused(rt, make_bundle, tmp_shm, kind):
    """config.json a FIFO (its reading waited for a writer forever), a symlink to
    /dev/zero (read until memory ran out) or a directory: one line, from both sides."""
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    bundle = make_bundle(["true"])
    cfg = os.path.join(bundle, "config.json")
    os.unlink(cfg)
    if kind == "fifo":
        os.mkfifo(cfg)
    elif kind == "zero":
        os.symlink("/dev/zero", cfg)
    else:
        os.mkdir(cfg)
    nid, pid_ = rt.new_id("n"), rt.new_id("p")
    nrc, nerr = _create(rt, bundle, nid, python=False, timeout=30)
    prc, perr = _create(rt, bundle, pid_, python=True, timeout=30)
    assert nrc == prc == 1
    assert _strip(nerr, [nid]) == _strip(perr, [pid_])
    assert b"Traceback" not in perr, perr[-2000:]
    if kind != "directory":
        assert _strip(perr, [pid_]).endswith(f"{cfg}: not a regular file")
    _gone(rt, nid, 0)
    _gone(rt, pid_, 0)


@pytest.mark.parametrize("cid", ["../x", "a/b", ".", "..", "x y", "-", "caf\u00e9"])
def test_bad_ids_agree(rt, make_bundle, cid):
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    bundle = make_bundle(["true"])
    nrc, nerr = _create(rt, bundle, cid, python=False)
    prc, perr = _create(rt, bundle, cid, python=True)
    assert (nrc, _strip(nerr, [])) == (prc, _strip(perr, []))
    if nrc == 0:
        rt.ids.append(cid)


def test_huge_config_agrees(rt, make_bundle):
    """A config past the native reader's 16 MiB goes to Python, which takes it."""
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    bundle = make_bundle(["true"], edit=_set(["annotations"], {"big": "x" * (17 << 20)}))
    nid = rt.new_id("n")
    rc, err = _create(rt, bundle, nid, python=False)
    assert rc == 0, err
    assert b"handed over" in err
    # (the native commands read records of at most 16 MiB: this one is Python's to delete)
    subprocess.run([sys.executable, "-P", "-m", "pyrt.cli.oci_runtime", "--root", rt.root, "delete", nid],
                   check=True, stdin=subprocess.DEVNULL, timeout=120)


def test_symlinked_rootfs_and_bundle(rt, make_bundle, tmp_shm, rootfs):
    """root.path through symlinks: both sides record and use the real path."""
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    link = os.path.join(tmp_shm, "rootlink")
    os.symlink(rootfs, link)
    bundle = make_bundle(["sleep", "100"], root=link)
    nid, pid_ = rt.new_id("n"), rt.new_id("p")
    assert _create(rt, bundle, nid, python=False)[0] == 0
    assert _create(rt, bundle, pid_, python=True)[0] == 0
    assert _record(rt.root, nid) == _record(rt.root, pid_)
    assert _record(rt.root, nid)["rootfs"] == os.path.realpath(rootfs)


def test_a_rootfs_symlink_into_proc_is_refused(rt, make_bundle, rootfs_copy):
    """A symlink planted in the rootfs that leads a mount into /proc counts as /proc."""
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    os.symlink("/proc/sys/kernel", os.path.join(rootfs_copy, "evil"))
    bundle = make_bundle(["true"], root=rootfs_copy, edit=_mounts_plus(
        {"destination": "/evil/core_pattern", "type": "bind", "source": "/dev/null"}))
    nid, pid_ = rt.new_id("n"), rt.new_id("p")
    nrc, nerr = _create(rt, bundle, nid, python=False)
    prc, perr = _create(rt, bundle, pid_, python=True)
    assert nrc == prc == 1
    assert _strip(nerr, [nid]) == _strip(perr, [pid_])
    assert "cannot be mounted because it is inside /proc" in _strip(nerr, [nid])
    _gone(rt, nid, 0)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_namespace_path_that_is_no_namespace_is_refused(rt, make_bundle, tmp_shm, kind):
    """linux.namespaces[].path naming a FIFO (whose open would wait for a writer
    forever), a device (whose open may act: a watchdog starts its timer) or a
    directory: both sides refuse it before opening it, with the same error, and
    leave nothing behind."""
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    if kind == "fifo":
        path = os.path.join(tmp_shm, "nsfifo")
        os.mkfifo(path)
    elif kind == "device":
        path = "/dev/null"
    else:
        path = tmp_shm
    bundle = make_bundle(["true"], edit=_ns("pid", "ipc", "uts", "mount", {"type": "network", "path": path}))
    nid, pid_ = rt.new_id("n"), rt.new_id("p")
    nrc, nerr = _create(rt, bundle, nid, python=False, timeout=30)
    prc, perr = _create(rt, bundle, pid_, python=True, timeout=30)
    assert nrc == prc == 1
    assert _strip(nerr, [nid]) == _strip(perr, [pid_])
    assert f"{path}: not a namespace file" in _strip(nerr, [nid])
    _gone(rt, nid, 0)
    _gone(rt, pid_, 0)


def test_engine_configs_are_native(rt, make_bundle):
    """What `pyrt-runtime spec` and runc spec write is created natively."""
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    bundle = make_bundle(["true"])
    cid = rt.new_id("n")
    rc, err = _create(rt, bundle, cid, python=False)
    assert rc == 0, err
    assert b"handed over" not in err


def _run(rt, bundle, cid, python, *extra):
    """run; stdout and stderr through files (a detached container holds them)."""
    import tempfile
    env = dict(os.environ, PYRT_RUNTIME_PYTHON="1") if python else {
        k: v for k, v in os.environ.items() if k != "PYRT_RUNTIME_PYTHON"}
    with tempfile.TemporaryFile(dir=rt.base) as out, tempfile.TemporaryFile(dir=rt.base) as err:
        rc = subprocess.run([rt.binary, "--root", rt.root, "run", "--bundle", bundle, *extra, cid], env=env,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=120).returncode
        out.seek(0)
        err.seek(0)
        return rc, out.read(), err.read()


@pytest.mark.parametrize("script,code", [("echo out; echo err >&2; exit 7", 7), ("exit 0", 0),
                                         ("/nonexistent", 127)])
def test_run_agrees(rt, make_bundle, script, code):
    """run in the foreground: the container's output and exit status, and nothing
    left (its state, its cgroup), on both sides."""
    if os.geteuid() != 0:
        pytest.skip("the native run is root's")
    bundle = make_bundle(["sh", "-c", script])
    got = []
    for python in (False, True):
        cid = rt.new_id("py" if python else "n")
        rc, out, err = _run(rt, bundle, cid, python)
        got.append((rc, out, err))
        _gone(rt, cid, 0)
    assert got[0] == got[1]
    assert got[0][0] == code


def test_run_detach_and_keep(rt, make_bundle):
    if os.geteuid() != 0:
        pytest.skip("the native run is root's")
    bundle = make_bundle(["sleep", "100"])
    cid = rt.new_id("n")
    rc, out, err = _run(rt, bundle, cid, False, "--detach")
    assert rc == 0, err
    assert rt.state(cid)["status"] == "running"
    assert rt("delete", "--force", cid).returncode == 0
    _gone(rt, cid, 0)
    kept = rt.new_id("n")
    rc, out, err = _run(rt, make_bundle(["true"]), kept, False, "--keep")
    assert rc == 0, err
    assert rt.state(kept)["status"] == "stopped"
    assert rt("delete", kept).returncode == 0
    _gone(rt, kept, 0)


def test_run_forwards_signals(rt, make_bundle):
    """SIGTERM to a foreground run reaches the container, whose status run returns."""
    import signal
    import time
    if os.geteuid() != 0:
        pytest.skip("the native run is root's")
    bundle = make_bundle(["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"])
    cid = rt.new_id("n")
    p = subprocess.Popen([rt.binary, "--root", rt.root, "run", "--bundle", bundle, cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 42
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    _gone(rt, cid, 0)


def test_systemd_cgroup_where_unavailable_agrees(rt, make_bundle):
    """--systemd-cgroup is native too (csrc/rt_config_systemd.c; tests/vm/guest
    compares both sides under systemd): where systemd does not run the host on pure
    cgroup2, both give the same one line and make nothing."""
    from pyrt.ocirt.spec import systemd_unavailable
    if os.geteuid() != 0:
        pytest.skip("the native create is root's")
    if systemd_unavailable() is None:
        pytest.skip("systemd runs this host: tests/vm/guest/test_native_systemd.py compares both sides")
    bundle = make_bundle(["true"], edit=_set(["linux", "cgroupsPath"], "machine.slice:libpod:x"))
    got = []
    for python in (False, True):
        cid = rt.new_id("py" if python else "n")
        env = dict(os.environ, PYRT_RUNTIME_PYTHON="1") if python else {
            k: v for k, v in os.environ.items() if k != "PYRT_RUNTIME_PYTHON"}
        p = subprocess.run([rt.binary, "--root", rt.root, "--systemd-cgroup", "create", "--bundle", bundle, cid],
                           env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        got.append((p.returncode, p.stderr.replace(cid.encode(), b"ID")))
        _gone(rt, cid, 0)
    assert got[0] == got[1]
    assert got[0][0] == 1 and b"systemd cgroups are not available" in got[0][1]
