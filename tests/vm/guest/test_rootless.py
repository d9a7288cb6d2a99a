"""pyrt as an ordinary user on Debian 12 (kernel 6.1, systemd, pure cgroup v2): the
guest's `tester` (uid 1000, linger, subordinate ids 100000-165535) runs the
README's ordinary-user quick start, pyrt.run, a pool, the container life cycle,
commit and save, and pyrt-runtime, with its store in ~/.local/share/pyrt. On 6.1
the overlay inside the user namespace goes through mount(2) with userxattr."""
import json
import os
import pwd
import re
import shutil
import subprocess
import textwrap

import pytest

USER = "tester"
PW = pwd.getpwnam(USER)
HOME = PW.pw_dir
STORE = os.path.join(HOME, ".local", "share", "pyrt")
RUN = f"/run/user/{PW.pw_uid}"
ENV = {"HOME": HOME, "USER": USER, "LOGNAME": USER, "XDG_RUNTIME_DIR": RUN, "LANG": "C.UTF-8",
       "PATH": "/usr/local/bin:/usr/bin:/bin"}


def as_tester(argv, input=None, timeout=600):
    """argv as tester (runuser: no login session, its own environment)."""
    cmd = ["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in ENV.items()], *argv]
    return subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, cwd="/")


def tpyrt(*args, check=True, timeout=600):
    p = as_tester(["pyrt", *args], timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"pyrt {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def tpy(code, *args):
    p = as_tester(["python3", "-c", textwrap.dedent(code), *map(str, args)])
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module", autouse=True)
def fresh_store():
    """tester's store, empty before and removed after (as root: it holds files of
    tester's subordinate ids)."""
    shutil.rmtree(STORE, ignore_errors=True)
    os.makedirs(RUN, exist_ok=True)  # linger made it; be sure
    yield
    ids = tpyrt("ps", "-aq", check=False).stdout.split()
    if ids:
        tpyrt("rm", "-f", *ids, check=False)
    shutil.rmtree(STORE, ignore_errors=True)


@pytest.fixture(scope="module")
def user_rootfs():
    """A busybox rootfs of tester's own."""
    root = os.path.join(HOME, "rootfs")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "home/user"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", applet))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    subprocess.run(["chown", "-R", f"{USER}:{USER}", root], check=True)
    os.chown(os.path.join(root, "home/user"), 100999, 100999)  # container uid 1000
    yield root
    shutil.rmtree(root, ignore_errors=True)


def quick_start_commands():
    text = open(os.environ["PYRT_README"]).read()
    block = text.split("## Quick start as an ordinary user", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [ln.strip() for ln in block.strip().splitlines()]
    kept = [ln for ln in lines if not ln.startswith(("sudo ", "python3 -m pip"))]
    assert kept and kept[0].startswith("pyrt "), lines
    return " && ".join(kept)


def test_readme_ordinary_user_quick_start():
    p = as_tester(["sh", "-c", quick_start_commands()])
    assert p.returncode == 0, p.stderr
    assert "as uid 0" in p.stdout and "bin" in p.stdout.split(), p.stdout
    st = os.stat(STORE)
    assert (st.st_uid, st.st_mode & 0o777) == (PW.pw_uid, 0o700)
    assert open(os.path.join(STORE, "storage-driver")).read().strip() == "overlay"


def test_pyrt_run_and_pool(user_rootfs):
    out = tpy(r"""
        import sys, pyrt
        r = pyrt.run(["sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /home/user; ls /dev"],
                     rootfs=sys.argv[1], capture_output=True)
        print(r.returncode, r.stdout.split())
        print(pyrt.run(["sh", "-c", "exit 5"], rootfs=sys.argv[1]).returncode)
        with pyrt.Pool(rootfs=sys.argv[1], size=2) as pool:
            print([pool.run(["id", "-u"], capture_output=True).stdout for _ in range(3)])
        try:
            pyrt.Pool(rootfs=sys.argv[1], size=1, memory="32m")
        except pyrt.errors.CgroupError as e:
            print("limit:", e)
        """, user_rootfs).splitlines()
    rc, words = out[0].split(" ", 1)
    assert rc == "0" and eval(words)[:8] == [b"0", b"0", b"1000", b"1", b"1", b"100000", b"65536", b"1000"]
    for node in (b"null", b"zero", b"urandom", b"tty"):
        assert node in eval(words)
    assert out[1] == "5"
    assert out[2] == "[b'0\\n', b'0\\n', b'0\\n']"
    assert out[3].startswith("limit: pool limits: Operation not permitted") and "enable-linger" in out[3]


def test_container_life_cycle_commit_save():
    tpyrt("image", "from-host", "bb:1", "/bin/busybox")
    assert tpyrt("run", "--rm", "bb:1", "sh", "-c", "id -u").stdout == "0\n"
    cid = tpyrt("run", "-d", "--name", "c1", "-v", "vol:/vol", "bb:1", "sh", "-c",
                "echo up; mkdir /data; echo x > /data/x; chown 1000 /data/x; chmod 600 /data/x; "
                "rm /etc/passwd; touch /vol/v; exec sleep 600").stdout.strip()
    assert len(cid) == 64
    assert tpyrt("exec", "c1", "stat", "-c", "%u %a", "/data/x").stdout == "1000 600\n"
    assert tpyrt("logs", "c1").stdout == "up\n"
    assert tpyrt("stop", "-t", "1", "c1").stdout.strip() == "c1"
    diff = tpyrt("diff", "c1").stdout.split("\n")
    assert "A /data/x" in diff and "D /etc/passwd" in diff
    tpyrt("commit", "c1", "mine:1")
    out = tpyrt("run", "--rm", "mine:1", "sh", "-c", "stat -c '%u %a' /data/x; ls /etc/passwd 2>&1; true").stdout
    assert out.startswith("1000 600\n") and "No such file" in out
    saved = os.path.join(HOME, "mine.tar")
    tpyrt("save", "-o", saved, "mine:1")
    assert os.stat(saved).st_uid == PW.pw_uid
    tpyrt("rm", "c1")
    tpyrt("volume", "rm", "vol")
    tpyrt("rmi", "mine:1")
    assert tpyrt("load", "-i", saved).stdout.strip() == "Loaded image: mine:1"
    tpyrt("rmi", "mine:1", "bb:1")
    for d in ("containers", "volumes", "tmp"):
        assert os.listdir(os.path.join(STORE, d)) == [], d
    # every file of the store is tester's or one of its subordinate ids'
    for dirpath, dirnames, filenames in os.walk(STORE):
        for n in dirnames + filenames:
            uid = os.lstat(os.path.join(dirpath, n)).st_uid
            assert uid == PW.pw_uid or 100000 <= uid < 165536, (dirpath, n, uid)


def test_limit_without_delegation_says_how():
    """runuser starts tester's commands in the job's system service, outside
    user@1000.service: no cgroup of its own to delegate, so a limit says how."""
    tpyrt("image", "from-host", "bb:2", "/bin/busybox")
    p = tpyrt("run", "--rm", "--memory", "32m", "bb:2", "true", check=False)
    assert p.returncode == 125 and p.stderr.count("\n") == 1 and "loginctl enable-linger" in p.stderr, p.stderr
    tpyrt("rmi", "bb:2")


def test_oci_runtime_rootless(user_rootfs):
    bundle = os.path.join(HOME, "bundle")
    shutil.rmtree(bundle, ignore_errors=True)
    os.mkdir(bundle)
    os.chown(bundle, PW.pw_uid, PW.pw_gid)
    assert as_tester(["sh", "-c", f"cd {bundle} && pyrt-runtime spec --rootless"]).returncode == 0
    cfg_path = os.path.join(bundle, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["root"] = {"path": user_rootfs, "readonly": True}
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map"]
    for k in ("uidMappings", "gidMappings"):
        cfg["linux"][k] = [{"containerID": 0, "hostID": 1000, "size": 1},
                           {"containerID": 1, "hostID": 100000, "size": 65536}]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    p = as_tester(["pyrt-runtime", "run", "--bundle", bundle, "g1"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0", "1000", "1", "1", "100000", "65536"]
    shutil.rmtree(bundle, ignore_errors=True)


def in_user_manager(argv, timeout=600):
    """argv as tester inside its systemd instance (a transient service of
    user@1000.service, the subtree systemd delegates to it), stdio passed through."""
    return as_tester(["systemd-run", "--user", "--wait", "--pipe", "--quiet", "--collect",
                      f"--setenv=PATH={ENV['PATH']}", "--", *argv], timeout=timeout)


def test_limits_with_systemd_delegation():
    """Inside its delegated subtree tester's containers get a scope of its systemd
    instance each, with their limits, stats and OOM record; rm removes it. (One
    script in one transient service: a detached container's monitor must not
    outlive the service, which systemd would then stop with it.)"""
    tpyrt("image", "from-host", "bb:3", "/bin/busybox")
    script = """set -e
    pyrt run -d --name lim --memory 48m --pids-limit 20 bb:3 sleep 600 >/dev/null
    pid=$(pyrt inspect -f '{{.State.Pid}}' lim)
    cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup)
    echo "$cg"; cat "$cg/memory.max" "$cg/pids.max"
    pyrt stats --no-stream --format '{{.PIDs}}' lim
    pyrt rm -f lim >/dev/null
    test -e "$cg" && echo left || echo gone
    """
    try:
        p = in_user_manager(["sh", "-c", textwrap.dedent(script)])
        assert p.returncode == 0, p.stdout + p.stderr
        cg, mem, pids, n, gone = p.stdout.split()
        assert re.fullmatch(r"/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/user.slice/"
                            r"pyrt-[0-9a-f]{64}.scope/container", cg), cg
        assert (mem, pids, n, gone) == (str(48 << 20), "20", "1", "gone")
        # a foreground one, killed by its memory limit
        p = in_user_manager(["pyrt", "run", "--rm", "--memory", "16m", "bb:3", "sh", "-c",
                             "head -c 64m /dev/zero | tail > /dev/null"])
        assert p.returncode == 137, (p.returncode, p.stderr)
    finally:
        tpyrt("rm", "-f", "lim", check=False)
        tpyrt("rmi", "bb:3", check=False)


def test_pool_limits_with_systemd_delegation(user_rootfs):
    """Inside its delegated subtree tester's pool gets a scope of its systemd
    instance, its containers' cgroups below it with the pool's limits and
    measures (CPU and the memory peak from the cgroup, OOM); closing the pool stops the
    scope."""
    code = """
    import os, sys, pyrt
    with pyrt.Pool(rootfs=sys.argv[1], size=1, memory="16m", pids_limit=20, measure=True) as pool:
        parent = "/sys/fs/cgroup/" + pool._cg_parent
        r = pool.run(["sh", "-c", "echo hi"], capture_output=True)
        print(parent, r.returncode, r.stdout.decode().strip(), r.usage.source, (r.usage.peak_memory or 0) > 0)
        slots = sorted(d for d in os.listdir(parent) if d.startswith("c"))
        print(open(os.path.join(parent, slots[0], "memory.max")).read().strip(),
              open(os.path.join(parent, slots[0], "pids.max")).read().strip())
        r = pool.run(["sh", "-c", "head -c 64m /dev/zero | tail > /dev/null"])
        print(r.returncode, r.usage.oom_killed)
    print(os.path.exists(parent))
    """
    p = in_user_manager(["python3", "-c", textwrap.dedent(code), user_rootfs])
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    parent, rc, out, source, peak = lines[0].split()
    assert re.fullmatch(r"/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/user.slice/"
                        r"pyrt-pool-[0-9a-f-]+.scope", parent), parent
    assert (rc, out, source, peak) == ("0", "hi", "cgroup", "True"), p.stdout  # a memory peak for a user too
    assert lines[1:] == [f"{16 << 20} 20", "137 True", "False"], lines


def test_oci_runtime_limits_with_systemd_delegation(user_rootfs):
    """pyrt-runtime as tester inside its delegated subtree (runc --rootless under
    systemd): each container in a scope of tester's systemd instance, with and
    without --systemd-cgroup (cgroupsPath slice:prefix:name names a slice of the
    user's instance, whatever it is called), its limits written there; the native
    delete stops the scope; a foreground run is killed by its memory limit. A
    cgroupsPath that points elsewhere is refused."""
    bundle = os.path.join(HOME, "bundle-lim")
    shutil.rmtree(bundle, ignore_errors=True)
    os.mkdir(bundle)
    os.chown(bundle, PW.pw_uid, PW.pw_gid)
    assert as_tester(["pyrt-runtime", "spec", "--rootless", "--bundle", bundle]).returncode == 0
    cfg_path = os.path.join(bundle, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["root"] = {"path": user_rootfs, "readonly": True}
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sleep", "600"]
    cfg["linux"]["resources"] = {"memory": {"limit": 48 << 20}, "pids": {"limit": 20}}

    def write(**linux):
        c = json.loads(json.dumps(cfg))
        c["linux"].update(linux)
        with open(cfg_path, "w") as f:
            json.dump(c, f)

    script = """set -e
    rt() { pyrt-runtime $FLAGS "$@"; }
    rt create --bundle {bundle} $ID </dev/null >/dev/null 2>&1
    rt start $ID
    pid=$(rt state $ID | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])')
    cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup)
    echo "$cg"; cat "$cg/memory.max" "$cg/pids.max"
    rt ps --format json $ID | grep -q "$pid" && echo listed
    rt delete --force $ID
    test -e "$(echo "$cg" | sed 's|\\.scope/.*|.scope|')" && echo left || echo gone
    test -e "$XDG_RUNTIME_DIR/pyrt-runtime/$ID" && echo state || echo nostate
    """.replace("{bundle}", bundle)
    base = r"/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/"
    cases = [("", "r1", None, "user.slice/pyrt-runtime-r1.scope/container"),
             ("", "r7", "inner/leaf", "user.slice/pyrt-runtime-r7.scope/inner/leaf"),  # below the scope
             ("--systemd-cgroup", "r2", "user.slice:mine:r2", "user.slice/mine-r2.scope/container"),
             ("--systemd-cgroup", "r3", None, "user.slice/pyrt-runtime-r3.scope/container"),
             # a slice named as root's user-0.slice: tester's own instance's, below its subtree
             ("--systemd-cgroup", "r4", "user-0.slice:evil:r4", "user.slice/user-0.slice/evil-r4.scope/container")]
    try:
        for flags, cid, cpath, scope in cases:
            write(**({"cgroupsPath": cpath} if cpath else {}))
            p = in_user_manager(["env", f"FLAGS={flags}", f"ID={cid}", "sh", "-c", textwrap.dedent(script)])
            assert p.returncode == 0, (flags, cid, p.stdout + p.stderr)
            cg, mem, pids, listed, gone, nostate = p.stdout.split()
            assert cg == base + scope, (flags, cg)
            assert (mem, pids, listed, gone, nostate) == (str(48 << 20), "20", "listed", "gone", "nostate"), p.stdout
        # a foreground run, killed by its memory limit; nothing left after it
        cfg["process"]["args"] = ["sh", "-c", "head -c 64m /dev/zero | tail > /dev/null"]
        cfg["linux"]["resources"] = {"memory": {"limit": 16 << 20, "swap": 16 << 20}}
        for flags in ([], ["--systemd-cgroup"]):
            write()
            p = in_user_manager(["pyrt-runtime", *flags, "run", "--bundle", bundle, "r5"])
            assert p.returncode == 137, (flags, p.returncode, p.stderr)
        p = as_tester(["sh", "-c", "ls -d /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/"
                                   "user.slice/*.scope 2>/dev/null | grep -E 'pyrt-runtime|mine|evil' || true"])
        assert p.stdout == "", p.stdout
        # out of tester's subtree: refused, one line each, nothing made
        for flags, cpath in (([], "../../../../system.slice/x"), ([], "/system.slice/x"),
                             ([], "/user.slice/user-0.slice/x"), (["--systemd-cgroup"], "../system.slice:a:b"),
                             (["--systemd-cgroup"], "user.slice:a:../../b")):
            write(cgroupsPath=cpath)
            p = in_user_manager(["pyrt-runtime", *flags, "run", "--bundle", bundle, "r6"])
            assert p.returncode != 0 and "linux.cgroupsPath" in p.stderr, (cpath, p.stderr)
            assert p.stderr.count("\n") == 1, p.stderr
    finally:
        for cid in ("r1", "r2", "r3", "r4", "r5", "r6", "r7"):
            in_user_manager(["pyrt-runtime", "delete", "--force", cid])
        shutil.rmtree(bundle, ignore_errors=True)
