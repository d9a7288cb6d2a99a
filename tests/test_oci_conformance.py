"""pyrt-runtime against the OCI runtime spec (runtime.md, config.md,
config-linux.md): bundles written straight from the spec's shapes
(ocitools.spec_config, not podman's or `pyrt-runtime spec`'s configs), each verb
run, and what the spec requires checked from inside the container by a small
static probe (busybox-static: sh, cat, hostname, stat) and from the host.

Each test names the MUSTs it covers; README.md ("pyrt-runtime and the OCI runtime
spec") lists every MUST with its test, or the reason pyrt does not meet it.
"""
from __future__ import annotations

import json
import os
import signal
import uuid

import pytest

import helpers
from ocitools import run_to_end, spec_config, wait_stopped, write_bundle


@pytest.fixture
def rt(oci_rt, rootfs_kind):
    if rootfs_kind != "busybox":
        pytest.skip("the conformance probe is busybox-static (apt-get install busybox-static)")
    return oci_rt


def _sh(script):
    return ["/bin/sh", "-c", script]


def _mountinfo_points(text):
    return [line.split()[4] for line in text.splitlines() if len(line.split()) > 4]


# -- runtime.md: state and the operations on each status ---------------------------------

def test_state_of_each_status(rt, rootfs, tmp_shm):
    """state MUST carry ociVersion, id, status, pid (created and running), bundle
    (absolute), annotations; create MUST leave status created without running the
    program; start MUST make it running; a stopped process MUST make it stopped."""
    marker = os.path.join(tmp_shm, "ran")
    cfg = spec_config(rootfs, _sh("read x < /dev/null; sleep 1000"), annotations={"org.example.k": "v"})
    bundle = write_bundle(tmp_shm, cfg)
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    st = rt.state(cid)
    assert st["ociVersion"] == "1.1.0" and st["id"] == cid and st["status"] == "created"
    assert st["pid"] > 0 and st["bundle"] == bundle and os.path.isabs(st["bundle"])
    assert st["annotations"] == {"org.example.k": "v"}
    # not run yet: the process still is pyrt's waiting child, not sh
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()
    assert not os.path.exists(marker)
    assert rt("start", cid).returncode == 0
    st = rt.state(cid)
    assert st["status"] == "running" and st["pid"] > 0
    assert rt("kill", cid, "KILL").returncode == 0
    assert wait_stopped(rt, cid)["status"] == "stopped"
    assert rt("delete", cid).returncode == 0
    assert rt("state", cid).returncode != 0  # gone: MUST generate an error


def test_operations_refused_by_status(rt, rootfs, tmp_shm):
    """start of a started container, kill of a stopped one, delete of a running one,
    state/start/kill/delete of an unknown one, create with a taken or invalid id:
    each MUST generate an error and have no effect."""
    bundle = write_bundle(tmp_shm, spec_config(rootfs, ["sleep", "1000"]))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    again = rt.create(cid, bundle)
    assert again.returncode != 0 and rt.state(cid)["status"] == "created"  # the first one untouched
    assert rt("start", cid).returncode == 0
    pid = rt.state(cid)["pid"]
    started_twice = rt("start", cid)
    assert started_twice.returncode != 0 and rt.state(cid) == dict(rt.state(cid), status="running", pid=pid)
    refused = rt("delete", cid)
    assert refused.returncode != 0 and rt.state(cid)["status"] == "running"
    assert rt("kill", cid, "KILL").returncode == 0
    wait_stopped(rt, cid)
    assert rt("kill", cid, "TERM").returncode != 0  # not running
    assert rt("start", cid).returncode != 0
    assert rt("delete", cid).returncode == 0
    for verb in (["state"], ["start"], ["kill"], ["delete"]):
        assert rt(*verb, f"nosuch-{uuid.uuid4().hex[:6]}").returncode != 0, verb
    for bad in ("../x", "a/b", ""):
        assert rt("create", "--bundle", bundle, bad).returncode != 0, bad
    assert rt("create").returncode != 0 and rt("start").returncode != 0  # no id given


def test_kill_of_a_created_container(rt, rootfs, tmp_shm):
    """kill MUST send the signal to a created (not yet started) container's process;
    it then is stopped and its program never ran."""
    bundle = write_bundle(tmp_shm, spec_config(rootfs, _sh("echo ran")))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("kill", cid, "KILL").returncode == 0
    assert wait_stopped(rt, cid)["pid"] == 0
    assert rt("delete", cid).returncode == 0
    assert rt.output(cid, bundle) == b""


def test_config_changes_after_create_do_not_matter(rt, rootfs, tmp_shm):
    """Updates to config.json after create MUST NOT affect the container."""
    bundle = write_bundle(tmp_shm, spec_config(rootfs, _sh("echo first")))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec_config(rootfs, _sh("echo second")), f)
    assert rt("start", cid).returncode == 0
    wait_stopped(rt, cid)
    assert rt("delete", cid).returncode == 0
    assert rt.output(cid, bundle) == b"first\n"


# -- config.md: mounts, hostname ----------------------------------------------------------

def test_mounts_in_the_listed_order(rt, rootfs_copy, tmp_shm):
    """The runtime MUST mount entries in the listed order: later ones over earlier
    ones, every one after the root. (A copy of the rootfs: the new mount points
    are made in it.)"""
    rootfs = rootfs_copy
    src = os.path.join(tmp_shm, "src")
    os.mkdir(src)
    with open(os.path.join(src, "from-bind"), "w") as f:
        f.write("bind\n")
    mounts = spec_config(rootfs, [])["mounts"] + [
        {"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/m/inner", "type": "bind", "source": src, "options": ["rbind", "ro"]},
        {"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["size=2m"]},
        {"destination": "/z", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/a", "type": "tmpfs", "source": "tmpfs"},
    ]
    cfg = spec_config(rootfs, _sh("cat /proc/self/mountinfo; echo ---; ls /m; echo ---; cat /m/inner/from-bind"),
                      mounts=mounts)
    info, listing, inner = run_to_end(rt, write_bundle(tmp_shm, cfg)).split("---\n")
    points = _mountinfo_points(info)
    assert points[0] == "/"
    want = [m["destination"] for m in mounts]
    got = [p for p in points if p in want]
    assert got == want  # mountinfo lists mounts in the order they were made
    assert listing.split() == []  # the second /m hides the first and what was mounted in it
    assert inner == ""  # (cat failed: /m/inner is hidden)


def test_hostname_set_and_empty(rt, rootfs, tmp_shm):
    """hostname: set in the container's uts namespace, "" included; never on the host."""
    host = os.uname().nodename
    for name in ("conformance-host", ""):
        cfg = spec_config(rootfs, _sh("cat /proc/sys/kernel/hostname"), hostname=name)
        assert run_to_end(rt, write_bundle(tmp_shm, cfg)) == name + "\n"
    assert os.uname().nodename == host
    # without a uts namespace a hostname cannot be set: an error, not the host's changed
    cfg = spec_config(rootfs, ["true"], namespaces=("pid", "mount"), hostname="nope")
    cid = rt.new_id()
    assert rt.create(cid, write_bundle(tmp_shm, cfg)).returncode != 0
    assert os.uname().nodename == host


# -- config-linux.md: namespaces ---------------------------------------------------------------

def _holder(rt, rootfs, tmp_shm, **kw):
    """A running container to join the namespaces of: (id, pid)."""
    cid = rt.new_id()
    assert rt.create(cid, write_bundle(tmp_shm, spec_config(rootfs, ["sleep", "1000"], **kw))).returncode == 0
    assert rt("start", cid).returncode == 0
    return cid, rt.state(cid)["pid"]


def _ns(pid, kind):
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def test_namespaces_new_joined_and_inherited(rt, rootfs, tmp_shm):
    """A type with a path MUST be joined; without one MUST be new; a type not
    listed MUST be inherited from the runtime."""
    _, hpid = _holder(rt, rootfs, tmp_shm, hostname="holder")
    ns = [{"type": "mount"}, {"type": "pid"}, {"type": "network", "path": f"/proc/{hpid}/ns/net"},
          {"type": "uts", "path": f"/proc/{hpid}/ns/uts"}]
    cfg = spec_config(rootfs, _sh("for t in mnt pid net uts ipc; do stat -L -c %i /proc/self/ns/$t; done; hostname"))
    cfg["linux"]["namespaces"] = ns
    out = run_to_end(rt, write_bundle(tmp_shm, cfg)).split()
    mnt, pid, net, uts, ipc = (int(x) for x in out[:5])
    assert net == _ns(hpid, "net") and uts == _ns(hpid, "uts") and out[5] == "holder"
    assert mnt not in (_ns(os.getpid(), "mnt"), _ns(hpid, "mnt")) and pid != _ns(os.getpid(), "pid")
    assert ipc == _ns(os.getpid(), "ipc")  # not listed: the runtime's


def test_namespace_path_errors(rt, rootfs, tmp_shm):
    """A path that is no namespace, or one of another type, MUST be an error; a type
    given twice MUST be an error."""
    not_ns = os.path.join(tmp_shm, "plain-file")
    open(not_ns, "w").close()
    bad = [
        [{"type": "mount"}, {"type": "network", "path": not_ns}],
        [{"type": "mount"}, {"type": "network", "path": f"/proc/{os.getpid()}/ns/uts"}],
        [{"type": "mount"}, {"type": "uts"}, {"type": "uts"}],
        [{"type": "mount"}, {"type": "network", "path": "/no/such/ns"}],
    ]
    for namespaces in bad:
        cfg = spec_config(rootfs, ["true"])
        cfg["linux"]["namespaces"] = namespaces
        cid = rt.new_id()
        p = rt.create(cid, write_bundle(tmp_shm, cfg))
        assert p.returncode != 0, namespaces
        assert rt("state", cid).returncode != 0  # nothing left of it


def test_join_a_mount_namespace_by_path(rt, rootfs_copy, tmp_shm):
    """A mount namespace joined by path: the root and cwd resolve in it after setns
    (here the holder's root, where /bin/sh is the holder's busybox); pyrt mounts
    nothing in a namespace it did not create, and a config asking for mounts there
    is refused."""
    _, hpid = _holder(rt, rootfs_copy, tmp_shm)
    before = helpers.mountinfo(hpid)
    with open(f"/proc/{hpid}/root/holder-was-here", "w"):
        pass
    cfg = spec_config("/", _sh("stat -L -c %i /proc/self/ns/mnt; pwd; ls /holder-was-here"), mounts=[])
    cfg["process"]["cwd"] = "/bin"
    cfg["linux"]["namespaces"] = [{"type": "mount", "path": f"/proc/{hpid}/ns/mnt"},
                                  {"type": "pid", "path": f"/proc/{hpid}/ns/pid"}]
    out = run_to_end(rt, write_bundle(tmp_shm, cfg)).split()
    assert int(out[0]) == _ns(hpid, "mnt") and out[1] == "/bin" and out[2] == "/holder-was-here"
    assert helpers.mountinfo(hpid) == before
    cfg["mounts"] = [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]
    cid = rt.new_id()
    p = rt.create(cid, write_bundle(tmp_shm, cfg))
    assert p.returncode == 1 and b"mounts" in p.stderr and b"did not create" in p.stderr
    assert helpers.mountinfo(hpid) == before


def test_without_a_mount_namespace(rt, rootfs, tmp_shm):
    """No mount namespace in the config: the container inherits the runtime's (the
    spec's rule), runs chroot'ed in root.path, and nothing is mounted on the host:
    a config with mounts, masks, a read-only root, devices or sysctls is refused."""
    ours = _ns(os.getpid(), "mnt")
    before = helpers.mountinfo()
    cfg = spec_config(rootfs, _sh("[ -e /proc/self ] && echo proc || echo noproc; ls /bin/busybox; pwd"),
                      namespaces=("pid", "uts", "ipc"), mounts=[])
    cfg["process"]["cwd"] = "/etc"
    out = run_to_end(rt, write_bundle(tmp_shm, cfg)).split()
    # the rootfs has no /proc mounted (nothing is mounted); the probe must not write
    # to the shared rootfs (no /dev there either: a redirection would make a file)
    assert out == ["noproc", "/bin/busybox", "/etc"]
    assert helpers.mountinfo() == before and _ns(os.getpid(), "mnt") == ours
    # the same through a path that names the runtime's own mount namespace (an
    # attack on runtimes that set up the root in a joined one): chroot, no mount
    cfg["linux"]["namespaces"] = [{"type": "mount", "path": f"/proc/{os.getpid()}/ns/mnt"}, {"type": "pid"}]
    assert run_to_end(rt, write_bundle(tmp_shm, cfg)).split() == ["noproc", "/bin/busybox", "/etc"]
    assert helpers.mountinfo() == before
    asks = [("mounts", {"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}),
            ("maskedPaths", {"linux": {"maskedPaths": ["/etc"]}}),
            ("readonlyPaths", {"linux": {"readonlyPaths": ["/etc"]}}),
            ("root.readonly", {"root": {"path": rootfs, "readonly": True}}),
            ("rootfsPropagation", {"linux": {"rootfsPropagation": "shared"}}),
            ("devices", {"linux": {"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]}}),
            ("sysctl", {"linux": {"sysctl": {"kernel.shmmax": "1"}}})]
    for field, edit in asks:
        cfg = spec_config(rootfs, ["true"], namespaces=("pid", "ipc"), mounts=[])
        for k, v in edit.items():
            if k == "linux":
                cfg["linux"].update(v)
            else:
                cfg[k] = v
        cid = rt.new_id()
        p = rt.create(cid, write_bundle(tmp_shm, cfg))
        assert p.returncode == 1 and field.encode() in p.stderr, (field, p.stderr)
        assert helpers.mountinfo() == before


# -- config-linux.md: cgroups ---------------------------------------------------------------

def _proc_cgroups(pid) -> dict:
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in (ctrls.split(",") if ctrls else [""]):
                out[c] = path
    return out


def test_cgroups_path_absolute_and_relative(rt, rootfs, tmp_shm):
    """An absolute cgroupsPath MUST be taken relative to the cgroups mount point (of
    every hierarchy: the v1 controllers and cgroup2); a relative one is below
    pyrt-runtime's own place (the spec lets the runtime choose); the same value MUST
    attach to the same place; the resources are written there; a path the runtime
    finds invalid MUST be an error."""
    from pyrt.cgroups.cgroup import layout, prune
    lay = layout()
    if lay.mode == "none":
        pytest.skip("no cgroup hierarchy")
    tag = uuid.uuid4().hex[:8]
    cases = [(f"/pyrt-conf-{tag}", f"/pyrt-conf-{tag}"),
             (f"/pyrt-conf-{tag}-p/c", f"/pyrt-conf-{tag}-p/c"),
             (f"rel-{tag}/c", f"/pyrt-runtime/rel-{tag}/c")]
    try:
        for given, want in cases:
            cfg = spec_config(rootfs, ["sleep", "1000"], linux={
                "cgroupsPath": given, "resources": {"memory": {"limit": 48 << 20}, "pids": {"limit": 17}}})
            bundle = write_bundle(tmp_shm, cfg)
            cid = rt.new_id()
            assert rt.create(cid, bundle).returncode == 0
            pid = rt.state(cid)["pid"]
            cgs = _proc_cgroups(pid)
            joined = [c for c in ("", "memory", "pids") if (c == "" and lay.unified) or c in lay.v1]
            for c in joined:
                assert cgs[c] == want, (given, c, cgs)
            mem_dir = os.path.join(lay.v1["memory"], want.lstrip("/")) if "memory" in lay.v1 else \
                os.path.join(lay.unified, want.lstrip("/"))
            fname = "memory.limit_in_bytes" if "memory" in lay.v1 else "memory.max"
            with open(os.path.join(mem_dir, fname)) as f:
                assert int(f.read()) == 48 << 20
            assert rt("delete", "--force", cid).returncode == 0
            assert not os.path.exists(mem_dir)
        for bad in ("/a/../b", "../up", "/"):
            cfg = spec_config(rootfs, ["true"], linux={"cgroupsPath": bad})
            assert rt.create(rt.new_id(), write_bundle(tmp_shm, cfg)).returncode != 0, bad
    finally:
        for parent in (f"pyrt-conf-{tag}-p", f"pyrt-runtime/rel-{tag}"):
            prune(parent, remove_parent=True)


# -- config-linux.md: rootfs propagation, masked and read-only paths, devices ----------------

def test_rootfs_propagation(rt, rootfs, tmp_shm):
    """rootfsPropagation: the container's / is shared, slave, private or
    unbindable as asked (its mountinfo line's optional fields)."""
    want = {"shared": "shared:", "private": None, "unbindable": "unbindable", "slave": "master:"}
    for prop, tag in want.items():
        cfg = spec_config(rootfs, _sh("awk '$5 == \"/\"' /proc/self/mountinfo"), linux={"rootfsPropagation": prop})
        line = run_to_end(rt, write_bundle(tmp_shm, cfg)).strip()
        fields = line.split(" - ")[0].split()[6:]
        if tag is None:
            assert fields == [], (prop, line)
        else:
            assert any(f.startswith(tag) for f in fields), (prop, line)
    cfg = spec_config(rootfs, ["true"], linux={"rootfsPropagation": "everywhere"})
    assert rt.create(rt.new_id(), write_bundle(tmp_shm, cfg)).returncode != 0


def test_masked_and_readonly_paths(rt, rootfs_copy, tmp_shm):
    """maskedPaths cannot be read, readonlyPaths cannot be written, through
    symlinks too; the values MUST be absolute paths."""
    r = rootfs_copy
    for d in ("masked-dir", "ro-dir"):
        os.mkdir(os.path.join(r, d))
        with open(os.path.join(r, d, "secret"), "w") as f:
            f.write("secret\n")
    for name in ("masked-file", "ro-file", "linked-file"):
        with open(os.path.join(r, name), "w") as f:
            f.write("secret\n")
    os.symlink("/linked-file", os.path.join(r, "masked-link"))
    script = ("cat /masked-file; ls /masked-dir; cat /masked-link; echo ---; "
              "for p in /ro-file /ro-dir/new; do echo x > $p && echo wrote $p; done; cat /ro-dir/secret")
    cfg = spec_config(r, _sh(script), linux={"maskedPaths": ["/masked-dir", "/masked-file", "/masked-link",
                                                             "/no-such-path"],
                                            "readonlyPaths": ["/ro-file", "/ro-dir"]})
    masked, ro = run_to_end(rt, write_bundle(tmp_shm, cfg)).split("---\n")
    assert masked == ""
    assert "wrote" not in ro and ro == "secret\n"
    with open(os.path.join(r, "linked-file")) as f:  # the host's copy untouched
        assert f.read() == "secret\n"
    for field in ("maskedPaths", "readonlyPaths"):
        cfg = spec_config(r, ["true"], linux={field: ["relative/path"]})
        p = rt.create(rt.new_id(), write_bundle(tmp_shm, cfg))
        assert p.returncode == 1 and field.encode() in p.stderr


def test_default_devices_and_a_taken_device_path(rt, rootfs_copy, tmp_shm):
    """The default devices MUST be there (null, zero, full, random, urandom, tty,
    ptmx to pts/ptmx); a device whose path holds another file MUST be an error."""
    script = "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; readlink /dev/ptmx"
    out = run_to_end(rt, write_bundle(tmp_shm, spec_config(rootfs_copy, _sh(script)))).splitlines()
    want = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8", "urandom": "1:9", "tty": "5:0"}
    for line, (name, numbers) in zip(out, want.items()):
        path, kind, nums = line.split(" ", 1)[0], line.split(" ", 1)[1].rsplit(" ", 1)[0], line.rsplit(" ", 1)[1]
        major, minor = (int(x, 16) for x in nums.split(":"))
        assert path == f"/dev/{name}" and kind == "character special file" and f"{major}:{minor}" == numbers
    assert out[-1] == "pts/ptmx"
    # a regular file where the config wants a device (the root's own /dev, no tmpfs there)
    os.makedirs(os.path.join(rootfs_copy, "dev"), exist_ok=True)
    with open(os.path.join(rootfs_copy, "dev", "mydev"), "w") as f:
        f.write("not a device\n")
    mounts = [m for m in spec_config(rootfs_copy, [])["mounts"] if m["destination"] == "/proc"]
    cfg = spec_config(rootfs_copy, ["true"], mounts=mounts,
                      linux={"devices": [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3}]})
    p = rt.create(rt.new_id(), write_bundle(tmp_shm, cfg))
    assert p.returncode == 1 and b"/dev/mydev" in p.stderr


# -- config.md: hooks ---------------------------------------------------------------------------

def _hook(log, kind, extra="", **kw):
    """A hook that appends "kind <its stdin>" to the log (run by the host's sh)."""
    return dict({"path": "/bin/sh", "args": ["sh", "-c", f'{extra}printf "{kind} %s\\n" "$(cat)" >> {log}']}, **kw)


def _log(log):
    with open(log) as f:
        return [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in f.read().splitlines()]


def test_hooks_order_state_and_namespaces(rt, rootfs_copy, tmp_shm):
    """Hooks MUST be called in the listed order, each kind at its step, with the
    state on stdin; poststart after the program started and before start returns;
    poststop after delete; startContainer in the container's namespaces (its path
    resolved there); a hook's env is only what it lists."""
    log = os.path.join(tmp_shm, "hooks.log")
    hooks = {
        "prestart": [_hook(log, "prestart1"), _hook(log, "prestart2")],
        "createRuntime": [_hook(log, "createRuntime")],
        "createContainer": [_hook(log, "createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /started-state; env > /started-env"],
                            "env": ["ONLY=this"]}],
        "poststart": [_hook(log, "poststart")],
        "poststop": [_hook(log, "poststop")],
    }
    cfg = spec_config(rootfs_copy, _sh("cat /started-state; echo; cat /started-env; sleep 1000"), hooks=hooks)
    bundle = write_bundle(tmp_shm, cfg)
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert [k for k, _ in _log(log)] == ["prestart1", "prestart2", "createRuntime", "createContainer"]
    for kind, st in _log(log):
        assert st["id"] == cid and st["status"] == "created" and st["pid"] > 0 and st["bundle"] == bundle
    assert rt("start", cid).returncode == 0
    assert [k for k, _ in _log(log)][-1] == "poststart" and _log(log)[-1][1]["status"] == "running"
    helpers.wait_for(lambda: b"ONLY=this" in rt.output(cid, bundle), what="the program's output")
    started, env = rt.output(cid, bundle).decode().split("\n", 1)
    assert json.loads(started)["id"] == cid
    # (sh adds PWD, SHLVL and, with none given, its own default PATH: not the container's)
    assert [e for e in env.split() if e.split("=")[0] not in ("PWD", "SHLVL", "PATH")] == ["ONLY=this"]
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin" not in env.split()
    assert not os.path.exists(os.path.join(tmp_shm, "started-state"))  # written in the container's root
    assert rt("delete", "--force", cid).returncode == 0
    kinds = [k for k, _ in _log(log)]
    assert kinds[-1] == "poststop" and _log(log)[-1][1]["status"] == "stopped"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_create_hook(rt, rootfs, tmp_shm, kind):
    """A failing prestart, createRuntime or createContainer hook: create MUST fail,
    the container be stopped and destroyed, and the poststop hooks run."""
    log = os.path.join(tmp_shm, "hooks.log")
    hooks = {kind: [{"path": "/bin/false"}], "poststop": [_hook(log, "poststop")]}
    bundle = write_bundle(tmp_shm, spec_config(rootfs, ["true"], hooks=hooks))
    cid = rt.new_id()
    p = rt.create(cid, bundle)
    assert p.returncode == 1 and f"{kind} hook /bin/false".encode() in p.stderr
    assert rt("state", cid).returncode != 0
    assert [k for k, _ in _log(log)] == ["poststop"]


def test_failing_start_and_stop_hooks(rt, rootfs, tmp_shm):
    """A failing startContainer hook: start fails, the container is destroyed and the
    poststop hooks run; a failing poststart or poststop hook only warns."""
    log = os.path.join(tmp_shm, "hooks.log")
    hooks = {"startContainer": [{"path": "/bin/false"}], "poststop": [_hook(log, "poststop")]}
    bundle = write_bundle(tmp_shm, spec_config(rootfs, _sh("echo ran"), hooks=hooks))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    p = rt("start", cid)
    assert p.returncode == 1 and b"startContainer hook /bin/false" in p.stderr
    assert rt("state", cid).returncode != 0 and [k for k, _ in _log(log)] == ["poststop"]
    assert rt.output(cid, bundle) == b""  # the program never ran

    hooks = {"poststart": [{"path": "/bin/false"}, _hook(log, "poststart")],
             "poststop": [{"path": "/bin/false"}, _hook(log, "poststop")]}
    bundle = write_bundle(tmp_shm, spec_config(rootfs, ["sleep", "1000"], hooks=hooks))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    p = rt("start", cid)
    assert p.returncode == 0 and b"warning" in p.stderr and rt.state(cid)["status"] == "running"
    p = rt("delete", "--force", cid)
    assert p.returncode == 0 and b"warning" in p.stderr
    assert [k for k, _ in _log(log)][-2:] == ["poststart", "poststop"]  # the next hooks still ran


def test_hook_timeout_and_hook_fields(rt, rootfs, tmp_shm):
    """A hook past its timeout fails (the lifecycle's failure rule); timeout MUST be
    greater than zero; path MUST be absolute."""
    hooks = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "60"], "timeout": 1}]}
    cid = rt.new_id()
    p = rt.create(cid, write_bundle(tmp_shm, spec_config(rootfs, ["true"], hooks=hooks)))
    assert p.returncode == 1 and b"timed out" in p.stderr
    assert rt("state", cid).returncode != 0
    for bad in ({"path": "/bin/true", "timeout": 0}, {"path": "bin/true"}, {"path": "/bin/true", "timeout": 10**30}):
        p = rt.create(rt.new_id(), write_bundle(tmp_shm, spec_config(rootfs, ["true"], hooks={"prestart": [bad]})))
        assert p.returncode == 1 and b"hooks.prestart[0]" in p.stderr


def test_process_fields_must(rt, rootfs, tmp_shm):
    """process.cwd MUST be absolute; args MUST not be empty; rlimits: an unknown type
    or a duplicated one MUST be an error; each given one is set."""
    bad = [("cwd", {"cwd": "relative"}), ("args", {"args": []}),
           ("rlimits", {"rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]}),
           ("rlimits", {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}] * 2})]
    for field, edit in bad:
        cfg = spec_config(rootfs, ["true"])
        cfg["process"].update(edit)
        p = rt.create(rt.new_id(), write_bundle(tmp_shm, cfg))
        assert p.returncode == 1 and field.encode() in p.stderr, (field, p.stderr)
    cfg = spec_config(rootfs, _sh("ulimit -n"))
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 88}]
    assert run_to_end(rt, write_bundle(tmp_shm, cfg)) == "77\n"


def test_root_readonly(rt, rootfs, tmp_shm):
    """root.readonly true: the root filesystem MUST be read-only in the container."""
    cfg = spec_config(rootfs, _sh("touch /x 2>/dev/null && echo wrote || echo refused"))
    cfg["root"]["readonly"] = True
    assert run_to_end(rt, write_bundle(tmp_shm, cfg)) == "refused\n"
    assert not os.path.exists(os.path.join(rootfs, "x"))


def test_kill_sends_the_signal(rt, rootfs, tmp_shm):
    """kill MUST send the given signal to the container's process (a trap reports it)."""
    script = "trap 'echo got-usr1; exit 0' USR1; echo ready; while :; do sleep 0.05; done"
    bundle = write_bundle(tmp_shm, spec_config(rootfs, _sh(script)))
    cid = rt.new_id()
    assert rt.create(cid, bundle).returncode == 0
    assert rt("start", cid).returncode == 0
    helpers.wait_for(lambda: b"ready" in rt.output(cid, bundle), what="the trap")
    assert rt("kill", cid, str(int(signal.SIGUSR1))).returncode == 0
    wait_stopped(rt, cid)
    assert rt("delete", cid).returncode == 0
    assert rt.output(cid, bundle) == b"ready\ngot-usr1\n"


def test_what_pyrt_cannot_apply_is_an_error(rt, rootfs, tmp_shm):
    """A runtime unable to create the environment the config asks for MUST generate
    an error (intelRdt: MUST when no resctrl is usable): never silently ignored."""
    asks = [("intelRdt", {"intelRdt": {"closID": "x"}}), ("blockIO", {"resources": {"blockIO": {"weight": 10}}}),
            ("hugepageLimits", {"resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]}}),
            ("network", {"resources": {"network": {"classID": 1}}}), ("timeOffsets", {"timeOffsets": {
                "monotonic": {"secs": 1}}})]
    for field, linux in asks:
        cid = rt.new_id()
        p = rt.create(cid, write_bundle(tmp_shm, spec_config(rootfs, ["true"], linux=linux)))
        assert p.returncode == 1 and field.encode() in p.stderr, (field, p.stderr)
        assert rt("state", cid).returncode != 0
