"""pyrt as an ordinary user (rootless): each test runs pyrt as the test user
(usertools.USER, with a subordinate range; usertools.USER_NOSUB without one) in
a subprocess, and checks from here, as root, what it did on the host."""
from __future__ import annotations

import json
import os
import stat

import pytest

import usertools

pytestmark = pytest.mark.timeout(300)

# Prints a JSON object of what the container saw.
LOOK = r"""
import json, os, sys, pyrt
r = pyrt.run(["/bin/sh", "-c", sys.argv[2]], rootfs=sys.argv[1], capture_output=True, **json.loads(sys.argv[3]))
print(json.dumps({"rc": r.returncode, "out": r.stdout.decode(), "err": r.stderr.decode()}))
"""


def look(u, rootfs, script, **kw):
    r = u.py(LOOK, rootfs, script, json.dumps(kw))
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout), r.stderr.decode()


def test_run_maps_the_subordinate_range(user, user_rootfs):
    base = usertools.subid_base(user.name)
    got, err = look(user, user_rootfs, "id; cat /proc/self/uid_map /proc/self/gid_map; "
                                        "cat /proc/self/setgroups; stat -c '%u:%g' /home/user /bin/busybox")
    assert got["rc"] == 0 and err == "", (got, err)
    lines = got["out"].splitlines()
    assert lines[0].startswith("uid=0(root) gid=0(root)")
    maps = [ln.split() for ln in lines[1:5]]
    assert maps == [["0", str(user.uid), "1"], ["1", str(base), "65536"],
                    ["0", str(user.gid), "1"], ["1", str(base), "65536"]]
    assert lines[5] == "allow"
    assert lines[6:] == ["1000:1000", "0:0"]  # the shifted owners, seen unshifted


def test_run_namespaces_proc_sys_dev(user, user_rootfs):
    got, err = look(user, user_rootfs, """
        echo pid=$$ host=$(hostname)
        ls /proc/1/ns >/dev/null && echo proc-ok
        touch /sys/x 2>/dev/null || echo sys-ro
        for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done
        head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok
        grep -E ' /dev/(null|zero|tty) ' /proc/self/mountinfo | grep -c 'nosuid.*noexec\\|noexec.*nosuid'
        mknod /tmp/n c 1 3 2>/dev/null && echo MKNOD || echo no-mknod
        cat /proc/self/status | grep -E '^(NoNewPrivs|Seccomp):'
        ip link 2>/dev/null | grep -c '^[0-9]' || cat /proc/net/dev | tail -n +3 | wc -l
    """, hostname="box")
    out = got["out"].split("\n")
    assert got["rc"] == 0, got
    assert out[0] == "pid=1 host=box"
    assert "proc-ok" in out and "sys-ro" in out and "null-ok" in out
    assert not [ln for ln in out if ln.startswith("missing")]
    assert "4" in out and "3" in out  # 4 bytes of zero; three device binds with nosuid,noexec
    assert "no-mknod" in out and "MKNOD" not in out
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    assert out[-2] == "1"  # only lo: a network namespace of its own


def test_run_exit_status_and_user(user, user_rootfs):
    got, _ = look(user, user_rootfs, "id -u; id -g; exit 7", user="1000:1000")
    assert got["rc"] == 7 and got["out"].split() == ["1000", "1000"]


def test_writes_land_in_the_users_ids(user, user_rootfs, tmp_shm):
    """A bind mount and an overlay upper: what the container's root and its uid
    1000 write is the user's own and its subordinate uid on the host."""
    data = user.mkdir("data", 0o777)
    upper, work = user.mkdir("upper", 0o755), user.mkdir("work", 0o700)
    r = user.py(r"""
        import sys, pyrt
        ov = pyrt.Overlay([sys.argv[1]], sys.argv[3], sys.argv[4])
        m = [pyrt.Bind(sys.argv[2], "/data")]
        for u in ("0:0", "1000:1000"):
            r = pyrt.run(["sh", "-c", "touch /data/f$(id -u) /tmp/t$(id -u)"], rootfs=ov, mounts=m, user=u)
            assert r.returncode == 0, r
        """, user_rootfs, data, upper, work)
    assert r.returncode == 0, r.stderr.decode()
    base = usertools.subid_base(user.name)
    assert (os.stat(os.path.join(data, "f0")).st_uid, os.stat(os.path.join(data, "f1000")).st_uid) == \
        (user.uid, base + 999)
    assert os.stat(os.path.join(upper, "tmp", "t0")).st_uid == user.uid
    assert os.stat(os.path.join(upper, "tmp", "t1000")).st_gid == base + 999


def test_spawn_and_pool(user, user_rootfs):
    r = user.py(r"""
        import sys, pyrt
        p = pyrt.spawn(["sleep", "30"], rootfs=sys.argv[1], stdout=pyrt.DEVNULL)
        assert p.poll() is None
        p.kill()
        assert p.wait(timeout=30) == -9
        with pyrt.Pool(rootfs=sys.argv[1], size=2) as pool:
            for i in range(4):
                r = pool.run(["/bin/sh", "-c", "id -u; echo $$"], capture_output=True)
                assert r.returncode == 0 and r.stdout == b"0\n1\n", r
                assert r.usage is not None
        try:
            pyrt.Pool(rootfs=sys.argv[1], size=1, memory="64m")
        except pyrt.errors.CgroupError as e:
            print("limit:", e)
        import os
        print("children:", os.listdir(f"/proc/{os.getpid()}/task/{os.getpid()}") and
              open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split())
        """, user_rootfs)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode().splitlines()
    assert out[0].startswith("limit: pool limits: Operation not permitted (cgroups for an ordinary user need")
    assert "loginctl enable-linger" in out[0]
    assert out[1] == "children: []"


def test_cli_run_rootfs(user, user_rootfs):
    r = user.pyrt("run", "--rm", "--rootfs", user_rootfs, "--hostname", "h", "--", "sh", "-c", "hostname; id -u")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"h\n0\n", b"")
    r = user.pyrt("run", "--rm", "--rootfs", user_rootfs, "--", "sh", "-c", "exit 3")
    assert r.returncode == 3


def test_no_subordinate_range_maps_the_caller_only(user_nosub, user_rootfs):
    u = user_nosub
    r = u.py(r"""
        import sys, pyrt
        for i in range(2):
            r = pyrt.run(["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/setgroups"], rootfs=sys.argv[1],
                         capture_output=True)
            print(r.returncode, r.stdout.split())
        try:
            pyrt.run(["true"], rootfs=sys.argv[1], user="1000")
        except pyrt.errors.InvalidArgument as e:
            print("refused:", e)
        """, user_rootfs)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("pyrt: only your own id is mapped in containers (as root): "
                                                    f"no subordinate ids for {u.name} in /etc/subuid")
    assert "usermod --add-subuids" in err
    out = r.stdout.decode().splitlines()
    assert out[0] == out[1] == f"0 [b'0', b'0', b'{u.uid}', b'1', b'deny']"
    assert out[2].startswith("refused: user 1000:0: uid 1000 is not mapped in the container's user namespace "
                             "(it has uids 0-0)")


def test_no_newuidmap(user, user_rootfs, tmp_shm):
    """Without the helpers (hidden here by empty files bound over them in a mount
    namespace of the command's own) the caller's id only, and the line says why."""
    empty = os.path.join(tmp_shm, "empty")
    open(empty, "w").close()
    hide = []
    for name in ("newuidmap", "newgidmap"):
        for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"):
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.path.realpath(p) not in hide:
                hide.append(os.path.realpath(p))
    script = "; ".join(f"mount --bind {empty} {p}" for p in hide)
    import subprocess
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script + '; exec "$@"', "sh",
           "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--", "env", "-i",
           *[f"{k}={v}" for k, v in user.env.items()], user.python, "-c",
           "import sys, pyrt; print(pyrt.run(['true'], rootfs=sys.argv[1]).returncode)", user_rootfs]
    r = subprocess.run(cmd, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"0\n"
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "newuidmap and newgidmap not found (install the package uidmap)" in err


def test_explicit_maps_outside_the_range_are_refused(user, user_rootfs):
    base = usertools.subid_base(user.name)
    r = user.py(r"""
        import sys, pyrt
        base = int(sys.argv[2])
        for m in ([(0, 0, 1)], [(0, base, 65537)], [(0, base - 65536, 10)]):
            try:
                pyrt.run(["true"], rootfs=sys.argv[1], uidmap=m)
                print("RAN", m)
            except pyrt.errors.InvalidArgument as e:
                print(e)
        import os
        m = [(0, os.getuid(), 1), (1, base, 10)]
        r = pyrt.run(["sh", "-c", "cat /proc/self/uid_map"], rootfs=sys.argv[1], capture_output=True,
                     uidmap=m, gidmap=[(0, os.getgid(), 1), (1, base, 10)])
        print(r.stdout.split())
        """, user_rootfs, base)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode().splitlines()
    assert out[0] == f"uid map 0 0 1: host uids 0-0 are not yours (not your own uid and outside {user.name}'s " \
                     "ranges in /etc/subuid)"
    assert out[1].startswith(f"uid map 0 {base} 65537: host uids {base}-{base + 65536} are not yours")
    assert out[2].startswith(f"uid map 0 {base - 65536} 10: host uids")
    assert out[3] == f"[b'0', b'{user.uid}', b'1', b'1', b'{base}', b'10']"


def test_newuidmap_refusal_reaches_python(user, user_rootfs):
    """A map the helper refuses (past pyrt's own check, by a spec made by hand):
    its complaint becomes the SpawnError, and nothing is left running."""
    r = user.py(r"""
        import os, sys, pyrt
        from pyrt import _core
        from pyrt.launch.process import build_spec
        spec = build_spec(["true"], sys.argv[1])
        spec.userns_fd = -1
        spec.uid_map = b"0 0 1\n"
        try:
            _core.spawn(spec)
        except pyrt.errors.SpawnError as e:
            print(type(e).__mro__[1].__name__, e.op, "|", e)
        print(open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split())
        """, user_rootfs)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode().splitlines()
    assert out[0].startswith("SpawnError uid map (newuidmap) | uid map (newuidmap) ")
    assert "Operation not permitted" in out[0]
    assert out[1] == "[]"


def test_container_root_gets_nothing_of_the_hosts(user, user_rootfs, tmp_shm):
    """The container's root is the user: a root-owned host file bound in stays
    unreadable, host-root-owned files cannot be chowned, a setuid-root program
    of the rootfs gives the container's root (the user) and no more."""
    secret = os.path.join(tmp_shm, "secret")
    with open(secret, "w") as f:
        f.write("s")
    os.chmod(secret, 0o600)
    shared = os.path.join(tmp_shm, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    r = user.py(r"""
        import sys, pyrt
        m = [pyrt.Bind(sys.argv[2], "/secret"), pyrt.Bind(sys.argv[3], "/shared")]
        r = pyrt.run(["sh", "-c", "cat /secret 2>&1; chown 0 /secret 2>&1; chmod 777 /secret 2>&1; "
                      "touch /shared/mine; chown 1000 /shared/mine; stat -c %u /secret; "
                      "cat /proc/1/status | grep ^CapEff"],
                     rootfs=sys.argv[1], mounts=m, capture_output=True, cap_add=["ALL"])
        print(r.stdout.decode(), end="")
        """, user_rootfs, secret, shared)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "Permission denied" in out and "Operation not permitted" in out
    assert "\n65534\n" in out  # host root: not mapped, nobody
    st = os.stat(secret)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert os.stat(os.path.join(shared, "mine")).st_uid == usertools.subid_base(user.name) + 999


# -- pyrt-runtime as an ordinary user (runc --rootless) ---------------------------------------------

def _bundle(user, user_rootfs, args, edit=None):
    n = len([d for d in os.listdir(user.base) if d.startswith("bundle")])
    bundle = user.mkdir(f"bundle{n}", 0o755)
    r = user.runtime("spec", "--rootless", "--bundle", bundle)
    assert r.returncode == 0, r.stderr
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": user_rootfs, "readonly": True}
    cfg["process"]["args"] = list(args)
    cfg["process"]["terminal"] = False
    if edit:
        edit(cfg)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    return bundle


def test_runtime_rootless_run_and_lifecycle(user, user_rootfs):
    bundle = _bundle(user, user_rootfs, ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"])
    r = user.runtime("run", "--bundle", bundle, "r1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["0", "0", str(user.uid), "1", "pyrt"]
    state_dir = os.path.join(user.runtime_dir, "pyrt-runtime")
    st = os.stat(state_dir)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700)
    bundle = _bundle(user, user_rootfs, ["sleep", "60"])
    assert user.runtime("create", "--bundle", bundle, "r2", capture=False).returncode == 0
    try:
        assert json.loads(user.runtime("state", "r2").stdout)["status"] == "created"
        assert user.runtime("start", "r2").returncode == 0
        assert json.loads(user.runtime("state", "r2").stdout)["status"] == "running"
        assert user.runtime("kill", "r2", "KILL").returncode == 0
        import helpers
        helpers.wait_for(lambda: json.loads(user.runtime("state", "r2").stdout)["status"] == "stopped",
                         what="r2 to stop")
    finally:
        r = user.runtime("delete", "--force", "r2")
    assert r.returncode == 0, r.stderr
    assert os.listdir(state_dir) == []


def test_runtime_rootless_subordinate_mappings(user, user_rootfs):
    base = usertools.subid_base(user.name)

    def edit(cfg):
        for k, own in (("uidMappings", user.uid), ("gidMappings", user.gid)):
            cfg["linux"][k] = [{"containerID": 0, "hostID": own, "size": 1},
                               {"containerID": 1, "hostID": base, "size": 65536}]
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle = _bundle(user, user_rootfs, ["sh", "-c", "id -u; cat /proc/self/uid_map"], edit)
    r = user.runtime("run", "--bundle", bundle, "r3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["1000", "0", str(user.uid), "1", "1", str(base), "65536"]

    def bad(cfg):
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    bundle = _bundle(user, user_rootfs, ["true"], bad)
    r = user.runtime("run", "--bundle", bundle, "r4")
    assert r.returncode != 0
    assert "host uids 0-0 are not yours" in r.stderr.decode()


def test_runtime_rootless_refusals(user, user_rootfs):
    def limits(cfg):
        cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    bundle = _bundle(user, user_rootfs, ["true"], limits)
    r = user.runtime("run", "--bundle", bundle, "r5")
    err = r.stderr.decode()
    assert r.returncode != 0 and "linux.resources" in err and "loginctl enable-linger" in err, err

    def no_userns(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "user"]
        del cfg["linux"]["uidMappings"], cfg["linux"]["gidMappings"]
    bundle = _bundle(user, user_rootfs, ["true"], no_userns)
    r = user.runtime("run", "--bundle", bundle, "r6")
    assert r.returncode != 0 and "an ordinary user needs a user namespace" in r.stderr.decode()
    assert os.listdir(os.path.join(user.runtime_dir, "pyrt-runtime")) == []


def test_spawn_from_another_process_mount_namespace(user, user_rootfs, tmp_shm):
    """SETUP_JOIN_MNT: a container cloned from the user and mount namespaces of a
    process named by a pidfd (a holder in the shared user namespace with a mount
    namespace of its own: how a FUSE root made there is reached). It sees the
    holder's mounts; the user's own namespace sees none of them."""
    target = user.mkdir("target", 0o755)
    r = user.py(r"""
        import os, signal, sys, pyrt
        from pyrt import _core, sys as psys
        from pyrt.launch import userns
        from pyrt.launch.process import run
        from pyrt.launch.spec import build_spec
        rootfs, target = sys.argv[1], sys.argv[2]
        ufd = userns.shared_fd(userns.maps_for_caller())
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the holder: its mounts live in its own mount namespace only
            try:
                os.close(r)
                psys.setns(ufd, psys.CLONE_NEWUSER)
                psys.unshare(psys.CLONE_NEWNS)
                psys.mount(None, "/", None, psys.MS_REC | psys.MS_PRIVATE)
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
                psys.mount(rootfs, target, None, psys.MS_BIND | psys.MS_REC)
                psys.mount("tmpfs", target + "/tmp", "tmpfs", 0, "mode=1777")
                with open(target + "/tmp/marker", "w") as f:
                    f.write("held\n")
                os.write(w, b"R")
                signal.pause()
            except BaseException as e:
                print("holder:", repr(e), file=sys.stderr)
            finally:
                os._exit(0)
        os.close(w)
        try:
            assert os.read(r, 1) == b"R"
            pidfd = os.pidfd_open(pid)
            argv = ["sh", "-c", "cat /tmp/marker; id -u"]
            spec = build_spec(argv, target)
            spec.userns_fd, spec.setup = pidfd, spec.setup | _core.SETUP_JOIN_MNT
            out = run(argv, spec=spec, capture_output=True)
            print(out.returncode, out.stdout.decode().split(), out.stderr.decode())
            print("host sees", os.listdir(target))
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        spec = build_spec(argv, target)  # the holder gone: one clear error
        spec.userns_fd, spec.setup = pidfd, spec.setup | _core.SETUP_JOIN_MNT
        try:
            run(argv, spec=spec)
        except pyrt.errors.SpawnError as e:
            print("after:", e.op, e.errno, e)
        """, user_rootfs, target)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "0 ['held', '0'] ", lines
    assert lines[1] == "host sees []"
    assert lines[2].startswith("after: setns 3 ") and "the user and mount namespaces to clone from" in lines[2], lines
