"""pyrt.HostRoot: the host's own programs as a read-only container root, with a
private /tmp and home: the host's Python runs in it, nothing of the host is
writable, the caller's home and the host's secrets are not there, no network, no
host fds, docker's devices, the default seccomp profile; the CLI's --host-root and
a Pool of 1000 runs that leaves nothing behind."""
from __future__ import annotations

import json
import os
import sys

import pytest

import pyrt
from clitools import cli, error, ok
from pyrt.errors import InvalidArgument

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
needs_python = pytest.mark.skipif(PYTHON is None, reason="no /usr/bin/python3 on this host")


def run(argv, **kw):
    kw.setdefault("rootfs", pyrt.HostRoot())
    return pyrt.run(argv, capture_output=True, text=True, **kw)


def py(code, **kw):
    r = run([PYTHON, "-c", code], **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout


@needs_python
def test_host_python_runs():
    out = json.loads(py("import ssl, sqlite3, json, ctypes, zlib, os, sys; "
                        "print(json.dumps([sys.executable, os.getuid(), os.environ['HOME'], os.getcwd(), "
                        "ssl.create_default_context().cert_store_stats()['x509_ca'] > 0]))"))
    assert out == [PYTHON, 0, "/root", "/", os.path.exists("/etc/ssl/certs/ca-certificates.crt")]


def test_calling_interpreter_with_its_packages():
    """python=True: the interpreter running this (maybe in a venv outside /usr)
    brings its prefix, so pyrt itself imports inside."""
    r = run([sys.executable, "-c", "import sys, pyrt; print(sys.prefix, pyrt.__version__)"],
            rootfs=pyrt.HostRoot(python=True))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{sys.prefix} {pyrt.__version__}\n"


@needs_python
def test_nothing_of_the_host_is_writable():
    code = r"""
import errno, os
for p in ("/usr/pyrt-evil", "/etc/pyrt-evil", "/pyrt-evil", "/bin/pyrt-evil", "/var/pyrt-evil",
          "/etc/ld.so.cache"):
    try:
        open(p, "a").close()
        print("wrote", p)
    except OSError as e:
        print(errno.errorcode[e.errno], p)
for p in ("/tmp/a", "/root/a", "/home/a"):
    open(p, "w").write("x")
    print("ok", p)
rw = []
for line in open("/proc/self/mountinfo"):
    f = line.split()
    fstype = f[f.index("-") + 1]
    if "rw" in f[5].split(","):
        rw.append([f[4], fstype, f[3]])
print(rw)
"""
    lines = py(code).splitlines()
    assert lines[:6] == ["EROFS /usr/pyrt-evil", "EROFS /etc/pyrt-evil", "EROFS /pyrt-evil",
                         "EROFS /bin/pyrt-evil", "EROFS /var/pyrt-evil", "EROFS /etc/ld.so.cache"]
    assert lines[6:9] == ["ok /tmp/a", "ok /root/a", "ok /home/a"]
    fresh = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/dev/mqueue": "mqueue",
             "/tmp": "tmpfs", "/home": "tmpfs", "/root": "tmpfs"}
    for point, fstype, root in eval(lines[9]):
        if root == "/null":  # a masked /proc file: a null device node bound over it
            assert point.startswith("/proc/") and fstype in ("tmpfs", "devtmpfs"), point
        else:
            assert fresh.get(point) == fstype and root == "/", (point, fstype, root)
    assert not os.path.exists("/usr/pyrt-evil")
    assert py("import os; print(os.listdir('/tmp'), os.listdir('/root'))") == "[] []\n"  # private to each


@needs_python
def test_caller_home_and_host_secrets_are_not_there(tmp_shm):
    home = os.path.expanduser("~")
    code = ("import os, json; print(json.dumps({p: os.path.exists(p) for p in ["
            "'/etc/shadow', '/etc/gshadow', '/etc/ssl/private', '/etc/ssh', '/etc/sudoers', '/etc/machine-id', "
            "'/var/lib', '/var/log', '/run/pyrt', '/opt', '/srv', '/mnt/x', " + repr(home) + "]} | "
            "{'home': sorted(os.listdir(" + repr(home) + ")) if os.path.isdir(" + repr(home) + ") else [],"
            " '/home': os.listdir('/home'), 'passwd': open('/etc/passwd').read()}))")
    out = json.loads(py(code))
    assert not any(v for k, v in out.items() if k.startswith("/") and k != home), out
    assert out["home"] == [] and out["/home"] == []
    assert out["passwd"].splitlines()[0] == "root:x:0:0:root:/root:/bin/sh"
    assert len(out["passwd"].splitlines()) == 2
    # a bound dir is there (read-only when asked), and only it
    with open(os.path.join(tmp_shm, "input.txt"), "w") as f:
        f.write("data\n")
    out = py("import os; print(open('/work/input.txt').read().strip(), os.access('/work', os.W_OK)); "
             "open('/work/out.txt', 'w')", mounts=[pyrt.Bind(tmp_shm, "/work", readonly=False)])
    assert out == "data True\n" and os.path.exists(os.path.join(tmp_shm, "out.txt"))
    r = run([PYTHON, "-c", "open('/work/out2.txt', 'w')"], mounts=[pyrt.Bind(tmp_shm, "/work", readonly=True)])
    assert r.returncode == 1 and "Read-only file system" in r.stderr


def test_etc_entries_are_chosen():
    with pytest.raises(InvalidArgument, match="never taken from the host"):
        pyrt.HostRoot(etc=["shadow"])
    with pytest.raises(InvalidArgument, match="never taken from the host"):
        pyrt.HostRoot(etc=["ssl/private"])
    with pytest.raises(InvalidArgument, match="relative to /etc"):
        pyrt.HostRoot(etc=["../root"])
    with pytest.raises(InvalidArgument, match="not taken from the host"):
        pyrt.HostRoot(dirs=["/usr", "/home"])
    # a pattern that matches the shadow files leaves them out
    r = run(["/bin/sh", "-c", "ls /etc"], rootfs=pyrt.HostRoot(etc=["*shadow*"]))
    assert r.returncode == 0 and set(r.stdout.split()) == {"group", "hosts", "passwd"}
    # an entry that not every host user may read is an error, never bound
    private = sorted(n for n in os.listdir("/etc") if os.path.isfile(os.path.join("/etc", n))
                     and not os.path.islink(os.path.join("/etc", n))
                     and not os.stat(os.path.join("/etc", n)).st_mode & 0o004
                     and n not in pyrt.HostRoot._FORBIDDEN)
    if private:
        with pytest.raises(InvalidArgument, match="not readable by every host user"):
            run(["/bin/true"], rootfs=pyrt.HostRoot(etc=[private[0]]))


def test_mount_inside_a_host_dir_must_exist(tmp_shm):
    with pytest.raises(InvalidArgument, match="inside the host's read-only /usr"):
        run(["/bin/true"], mounts=[pyrt.Bind(tmp_shm, "/usr/pyrt-nosuch")])
    # a new top-level path is made in the skeleton
    r = run(["/bin/sh", "-c", "ls /data/in"], mounts=[pyrt.Bind(tmp_shm, "/data/in")])
    assert r.returncode == 0


@needs_python
def test_isolation_of_the_sandbox():
    extra = os.open("/etc/hostname" if os.path.exists("/etc/hostname") else "/dev/null", os.O_RDONLY)
    os.set_inheritable(extra, True)
    try:
        out = json.loads(py(r"""
import json, os, socket, subprocess
net = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    reach = True
except OSError:
    reach = False
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
userns = subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode == 0
fds = sorted(os.listdir("/proc/self/fd"))
os.mknod("/dev/pyrt-disk", 0o600 | 0o060000, DISK)  # the host's root filesystem's device, as a node
try:
    os.close(os.open("/dev/pyrt-disk", os.O_RDONLY))
    disk = "opened"
except OSError as e:
    disk = e.strerror
print(json.dumps({"net": net, "reach": reach, "fds": fds, "disk": disk,
                  "dev": sorted(os.listdir("/dev")), "seccomp": status["Seccomp"].strip(),
                  "nnp": status["NoNewPrivs"].strip(), "userns": userns}))
""".replace("DISK", str(os.stat("/").st_dev))))
    finally:
        os.close(extra)
    assert out["net"] == ["lo"] and not out["reach"]
    if os.major(os.stat("/").st_dev):  # a real disk under / (not an overlay's anonymous device)
        assert out["disk"] == "Operation not permitted"  # docker's device list: no host disk
    assert set(out["fds"]) <= {"0", "1", "2", "3"}
    assert set(out["dev"]) - {"pyrt-disk"} <= {"fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
                                               "stderr", "stdin", "stdout", "tty", "urandom", "zero", "console"}
    assert out["nnp"] == "1" and not out["userns"]
    from pyrt.launch import seccomp
    if seccomp.available():
        assert out["seccomp"] == "2"


def test_cli_host_root(tmp_shm):
    with open(os.path.join(tmp_shm, "script.sh"), "w") as f:
        f.write("echo from the script in $(pwd); touch /usr/x 2>/dev/null || echo usr is read-only\n")
    r = cli(os.path.join(tmp_shm, "store"), "run", "--host-root", "-v", f"{tmp_shm}:/work:ro", "-w", "/work",
            "--", "sh", "script.sh")
    assert ok(r) == "from the script in /work\nusr is read-only\n"
    if PYTHON:
        r = cli(os.path.join(tmp_shm, "store"), "run", "--host-root", "python3", "-c", "print(6 * 7)")
        assert ok(r) == "42\n"
    error(cli(os.path.join(tmp_shm, "store"), "run", "--host-root", "--rootfs", tmp_shm, "true"),
          status=125, match="not both")
    error(cli(os.path.join(tmp_shm, "store"), "run", "--host-root"), status=125, match="needs a command")
    r = cli(os.path.join(tmp_shm, "store"), "run", "--host-root", "/nosuch/program")
    assert r.returncode == 127
    out = os.path.join(tmp_shm, "bench.json")
    r = cli(os.path.join(tmp_shm, "store"), "bench", "--host-root", "--runs", "2", "--warmups", "0", "-o", out,
            "--", "sh", "-c", "touch /usr/x 2>/dev/null || exit 0; exit 1")
    ok(r)
    with open(out) as f:
        assert json.load(f)["metadata"]["pyrt_rootfs"] == "host-root"
    assert not os.path.exists(os.path.join(tmp_shm, "store", "containers"))  # no store needed


def test_pool_of_1000_runs_leaves_nothing(leak_check):
    """Every tenth run is the host's Python, the others echo (the suite's time)."""
    from pyrt.pool.children import devnull
    hostroot = pyrt.HostRoot()
    pyrt.run(["/bin/true"], rootfs=hostroot)  # one-time set-up (device cgroup, skeleton) first
    devnull()  # the one /dev/null fd of every pool in this process, kept open by design
    skeletons = sorted(os.listdir(os.path.dirname(hostroot.prepare()[0])))
    leak_check.reset()
    with pyrt.Pool(rootfs=hostroot, size=4) as pool:
        dirs = pool_cgroup_dirs(pool)
        for i in range(1000):
            if PYTHON and i % 10 == 0:
                argv = [PYTHON, "-I", "-S", "-c", "import sys; sys.stdout.write(sys.argv[1])", str(i)]
            else:
                argv = ["/bin/echo", "-n", str(i)]
            r = pool.run(argv)
            assert (r.returncode, r.stdout) == (0, str(i).encode()), r
    assert not any(os.path.isdir(d) for d in dirs)
    leak_check.assert_clean(fds=True)
    assert sorted(os.listdir(os.path.dirname(hostroot.prepare()[0]))) == skeletons


def pool_cgroup_dirs(pool) -> list:
    from pyrt.cgroups.cgroup import layout
    lay = layout()
    mounts = set(lay.v1.values()) | ({lay.unified} if lay.unified else set())
    return [os.path.join(m, pool._cg_parent) for m in sorted(mounts)]


def test_skeleton_is_remade_when_gone(tmp_shm):
    import shutil
    mounts = [pyrt.Bind(tmp_shm, f"/mnt/{os.path.basename(tmp_shm)}")]  # a layout of this test's own
    skeleton = pyrt.HostRoot().prepare(mounts)[0]
    assert os.path.isdir(os.path.join(skeleton, "mnt", os.path.basename(tmp_shm)))
    shutil.rmtree(skeleton)
    assert run(["/bin/true"], mounts=mounts).returncode == 0
    assert os.path.isdir(skeleton)  # the same name: made from the same layout
    shutil.rmtree(skeleton)
