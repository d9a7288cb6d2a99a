"""The spawn core (csrc/spawn.c, mounts.c, resolve.c) through pyrt.run / pyrt.spawn:
every test starts real containers on the test rootfs (see conftest.py)."""
from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import os
import signal
import socket
import stat
import subprocess

import pytest

import helpers
import pyrt
from pyrt.launch import caps
from pyrt.errors import SpawnError
from pyrt.launch.spec import DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS

PID_NS_OFF = ("mount", "uts", "ipc", "cgroup")


def sh(script: str, root, **kwargs) -> pyrt.CompletedProcess:
    """Run a shell script in a container, capturing its output as text."""
    return pyrt.run(["sh", "-c", script], root, capture_output=True, text=True, **kwargs)


def sh_ok(script: str, root, **kwargs) -> str:
    """Run a script that must succeed; its stdout."""
    r = sh(script, root, **kwargs)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    return r.stdout


@contextlib.contextmanager
def spawned(*args, **kwargs):
    """pyrt.spawn, killed, reaped and its pipes closed on the way out."""
    p = pyrt.spawn(*args, **kwargs)
    try:
        yield p
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()


def make_layer(path: str, files: dict[str, str | bytes], symlinks: dict[str, str] = (),
               dirs=()) -> str:
    """A small layer directory: files (relative path -> content), symlinks
    (relative path -> target) and empty directories."""
    os.makedirs(path, exist_ok=True)
    for d in dirs:
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for rel, content in files.items():
        p = os.path.join(path, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
    for rel, target in dict(symlinks).items():
        p = os.path.join(path, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.symlink(target, p)
    return path


def new_overlay(tmp: str, lowers: list[str]) -> pyrt.Overlay:
    upper, work = os.path.join(tmp, "upper"), os.path.join(tmp, "work")
    os.makedirs(upper)
    os.makedirs(work)
    return pyrt.Overlay(lowers, upper, work)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


# -- isolation ------------------------------------------------------------------------

def test_pid_1(rootfs):
    assert sh_ok("echo $$", rootfs) == "1\n"


def test_own_hostname(rootfs):
    host = socket.gethostname()
    out = sh_ok("hostname; cat /proc/sys/kernel/hostname", rootfs, hostname="pyrt-box")
    assert out == "pyrt-box\npyrt-box\n"
    assert socket.gethostname() == host


def test_proc_shows_only_the_containers_processes(rootfs):
    # sh is pid 1, the background sleep pid 2, ls pid 3; the host has many more.
    out = sh_ok("sleep 30 & ls /proc; kill $!", rootfs)
    pids = {e for e in out.split() if e.isdigit()}
    assert pids == {"1", "2", "3"}
    assert len([e for e in os.listdir("/proc") if e.isdigit()]) > 3


def test_no_host_mounts_visible(rootfs):
    lines = sh_ok("cat /proc/self/mountinfo", rootfs).splitlines()
    points = helpers.mount_points(lines)
    allowed = {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"}
    allowed |= {os.fsdecode(p) for p in MASKED_PATHS + READONLY_PATHS}
    assert set(points) <= allowed, set(points) - allowed
    assert points[0] == "/" and "/proc" in points and "/dev" in points
    host_only = set(helpers.mount_points(helpers.mountinfo())) - allowed
    assert host_only, "the host should have mounts of its own to compare with"
    assert not host_only & set(points)
    for line in lines:  # no host path as a mount point or as a mount's source
        assert "/work" not in line and "/sys/fs/cgroup" not in line


def test_network_none_has_only_lo_and_it_is_up(rootfs):
    out = sh_ok("ls /sys/class/net; cat /sys/class/net/lo/flags; cat /proc/net/dev", rootfs, network="none")
    lines = out.splitlines()
    assert lines[0] == "lo"
    assert int(lines[1], 16) & 0x1  # IFF_UP
    ifaces = [line.split(":")[0].strip() for line in lines[2:] if ":" in line]
    assert ifaces == ["lo"]


def test_network_host_shows_the_hosts_interfaces(rootfs):
    host = set(os.listdir("/sys/class/net"))
    assert host - {"lo"}, "this host has no interface but lo"
    out = sh_ok("ls /sys/class/net", rootfs, network="host")
    assert set(out.split()) == host


# -- root filesystems ---------------------------------------------------------------

def test_directory_rootfs_writes_go_to_it(rootfs_copy):
    sh_ok("echo data > /newfile && mkdir -p /d/e && echo x > /d/e/f && rm /etc/group && chmod 600 /etc/hostname",
       rootfs_copy)
    assert read(os.path.join(rootfs_copy, "newfile")) == "data\n"
    assert read(os.path.join(rootfs_copy, "d/e/f")) == "x\n"
    assert not os.path.exists(os.path.join(rootfs_copy, "etc/group"))
    assert stat.S_IMODE(os.stat(os.path.join(rootfs_copy, "etc/hostname")).st_mode) == 0o600


def test_overlay_writes_go_to_the_upper_dir_only(rootfs, tmp_shm):
    l1 = helpers.copy_tree(rootfs, os.path.join(tmp_shm, "l1"))
    with open(os.path.join(l1, "etc/motd"), "w") as f:
        f.write("from l1\n")
    l2 = make_layer(os.path.join(tmp_shm, "l2"), {
        "etc/motd": "from l2\n", "layer2/file": "l2 file\n", "layer2/sub/a": "a", "layer2/sub/b": "b"})
    before = {"l1": helpers.tree_state(l1), "l2": helpers.tree_state(l2)}
    root = new_overlay(tmp_shm, [l2, l1])

    out = sh_ok("""set -e
        cat /etc/motd
        echo new > /newfile
        echo extra >> /etc/passwd
        rm /etc/group
        mv /layer2/file /layer2/renamed
        chmod 600 /etc/motd
        chown 1000:1000 /etc/hostname
        rm -r /layer2/sub
        rm /bin/ls
        mkdir /newdir && echo x > /newdir/f
        ln -s /newfile /newlink
        """, root)
    assert out == "from l2\n"

    # The lower dirs are untouched: content, modes, owners, xattrs.
    assert helpers.tree_state(l1) == before["l1"]
    assert helpers.tree_state(l2) == before["l2"]

    upper = root.upperdir
    assert read(os.path.join(upper, "newfile")) == "new\n"
    assert read(os.path.join(upper, "etc/passwd")) == helpers.PASSWD + "extra\n"
    assert read(os.path.join(upper, "layer2/renamed")) == "l2 file\n"
    assert read(os.path.join(upper, "newdir/f")) == "x\n"
    assert os.readlink(os.path.join(upper, "newlink")) == "/newfile"
    motd = os.stat(os.path.join(upper, "etc/motd"))
    assert stat.S_IMODE(motd.st_mode) == 0o600 and read(os.path.join(upper, "etc/motd")) == "from l2\n"
    assert os.stat(os.path.join(upper, "etc/hostname")).st_uid == 1000
    for gone in ("etc/group", "layer2/file", "layer2/sub", "bin/ls"):
        assert helpers.is_whiteout(os.path.join(upper, gone)), gone

    # A second container on the same layers sees the changes.
    out = sh_ok("""cat /newfile /layer2/renamed
        for p in /etc/group /layer2/file /layer2/sub /bin/ls; do [ -e $p ] && echo "still $p"; done
        stat -c %a /etc/motd
        echo done""", root)
    assert out == "new\nl2 file\n600\ndone\n"
    assert helpers.tree_state(l1) == before["l1"]
    assert helpers.tree_state(l2) == before["l2"]


def test_overlay_without_upper_is_read_only(rootfs, tmp_shm):
    l2 = make_layer(os.path.join(tmp_shm, "l2"), {"extra/file": "extra\n"})
    r = sh("cat /extra/file; cat /etc/hostname; touch /x", pyrt.Overlay([l2, rootfs]))
    assert r.stdout == "extra\npyrt-test\n"
    assert r.returncode != 0 and "Read-only file system" in r.stderr


def test_128_overlay_layers(rootfs, tmp_shm):
    layers = []
    for i in range(128):
        layers.append(make_layer(os.path.join(tmp_shm, "layers", f"{i:03d}"),
                                 {f"layers/f{i:03d}": f"{i}\n", "top": f"{i}\n"}))
    root = new_overlay(tmp_shm, layers[::-1] + [rootfs])  # top-most first
    out = sh_ok("ls /layers | wc -l; cat /top; cat /layers/*", root)
    lines = out.split()
    assert lines[0] == "128"
    assert lines[1] == "127"  # the top-most layer wins
    assert lines[2:] == [str(i) for i in range(128)]


# -- exit status ----------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_codes(rootfs, code):
    assert pyrt.run(["sh", "-c", f"exit {code}"], rootfs).returncode == code


def test_death_by_signal(rootfs):
    # Without a pid namespace the shell is not an init and dies of its own SIGKILL.
    r = sh("kill -9 $$; echo survived", rootfs, namespaces=PID_NS_OFF)
    assert r.returncode == -signal.SIGKILL and r.stdout == ""


def test_pid_1_cannot_sigkill_itself(rootfs):
    # The kernel protects a pid namespace's init from signals it has no handler
    # for, sent from inside the namespace: as in docker, `kill -9 $$` in pid 1
    # does nothing. (From outside, Process.kill works: see test_spawn_api.)
    r = sh("kill -9 $$; echo survived", rootfs)
    assert (r.returncode, r.stdout) == (0, "survived\n")


def test_check_raises_called_process_error(rootfs):
    with pytest.raises(subprocess.CalledProcessError) as e:
        pyrt.run(["sh", "-c", "echo out; exit 3"], rootfs, check=True, capture_output=True)
    assert e.value.returncode == 3 and e.value.stdout == b"out\n"
    assert pyrt.run(["true"], rootfs, check=True).returncode == 0


# -- failures in the child ----------------------------------------------------------

@pytest.mark.parametrize("argv0", ["/bin/nosuch", "nosuch"])
def test_missing_binary(rootfs, argv0):
    with pytest.raises(SpawnError) as e:
        pyrt.run([argv0], rootfs)
    assert str(e.value) == f'exec "{argv0}": No such file or directory'
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOENT
    assert e.value.op == "exec"


@pytest.mark.parametrize("cwd,err", [("/nosuch", errno.ENOENT), ("/etc/passwd", errno.ENOTDIR)])
def test_bad_working_dir(rootfs, cwd, err):
    with pytest.raises(SpawnError) as e:
        pyrt.run(["true"], rootfs, cwd=cwd)
    assert str(e.value) == f'chdir "{cwd}": {os.strerror(err)}'
    assert e.value.errno == err


def test_bind_with_missing_source(overlay_rootfs, tmp_shm):
    missing = os.path.join(tmp_shm, "nosuch")
    with pytest.raises(OSError) as e:
        pyrt.run(["true"], overlay_rootfs, mounts=[pyrt.Bind(missing, "/data")])
    assert e.value.errno == errno.ENOENT and missing in str(e.value)


@pytest.mark.parametrize("position", [0, 1])
def test_overlay_with_missing_lowerdir(rootfs, tmp_shm, position):
    missing = os.path.join(tmp_shm, "nosuch-layer")
    lowers = [rootfs]
    lowers.insert(position, missing)
    with pytest.raises(SpawnError) as e:
        pyrt.run(["true"], new_overlay(tmp_shm, lowers))
    assert e.value.errno == errno.ENOENT
    assert f'"{missing}"' in str(e.value) and "lowerdir" in str(e.value)


# -- process settings -----------------------------------------------------------------

def test_env_is_only_what_was_given_plus_defaults(rootfs, monkeypatch):
    monkeypatch.setenv("PYRT_TEST_HOST_ONLY", "secret")
    r = pyrt.run(["env"], rootfs, env={"FOO": "bar", "EMPTY": "", "SPACED": "a b"}, capture_output=True,
                 text=True)
    assert sorted(r.stdout.splitlines()) == sorted(
        ["FOO=bar", "EMPTY=", "SPACED=a b", f"PATH={DEFAULT_PATH}", "HOME=/root"])
    r = pyrt.run(["env"], rootfs, env={"PATH": "/bin", "HOME": "/tmp"}, capture_output=True, text=True)
    assert sorted(r.stdout.splitlines()) == ["HOME=/tmp", "PATH=/bin"]


def test_cwd(rootfs):
    assert sh_ok("pwd", rootfs, cwd="/etc") == "/etc\n"
    assert sh_ok("pwd", rootfs) == "/\n"


def test_user(rootfs):
    groups = os.getgroups()
    os.setgroups([4, 27])  # the caller's supplementary groups must not follow
    try:
        out = sh_ok("id -u; id -g; id -G; echo $HOME; touch /tmp/mine && echo tmp-ok; touch /etc/x || echo etc-denied",
                 rootfs, user="1000:1000", mounts=[pyrt.Tmpfs("/tmp")])
    finally:
        os.setgroups(groups)
    assert out == "1000\n1000\n1000\n/\ntmp-ok\netc-denied\n"


def test_read_only_root_keeps_tmpfs_writable(rootfs):
    r = sh("touch /x; echo rc=$?; touch /tmp/y && ls /tmp", rootfs, read_only=True,
           mounts=[pyrt.Tmpfs("/tmp")])
    assert r.stdout == "rc=1\ny\n"
    assert "Read-only file system" in r.stderr
    assert not os.path.exists(os.path.join(rootfs, "x"))
    assert os.listdir(os.path.join(rootfs, "tmp")) == []


def test_stdin_input_and_capture_output(rootfs):
    data = os.urandom(1 << 20)  # more than a pipe holds: no deadlock
    r = pyrt.run(["cat"], rootfs, input=data, capture_output=True)
    assert r.returncode == 0 and r.stdout == data and r.stderr == b""
    r = pyrt.run(["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 4"], rootfs, input="hello\n", capture_output=True,
                 text=True)
    assert (r.returncode, r.stdout, r.stderr) == (4, "HELLO\n", "oops\n")


def test_timeout_kills_and_reaps(rootfs, leak_check):
    with pytest.raises(subprocess.TimeoutExpired):
        pyrt.run(["sleep", "60"], rootfs, timeout=0.5)
    assert helpers.children() == leak_check.before.children  # killed and reaped
    leak_check.assert_clean()


def test_spawn_api(rootfs):
    script = 'trap "echo got-usr1; exit 7" USR1; echo ready; while :; do sleep 1 & wait $!; done'
    with spawned(["sh", "-c", script], rootfs, stdout=pyrt.PIPE) as p:
        assert p.pid > 0 and p.poll() is None
        assert p.stdout.readline() == b"ready\n"
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=0.1)
        assert p.poll() is None
        p.send_signal(signal.SIGUSR1)
        assert p.wait() == 7
        assert p.stdout.read() == b"got-usr1\n"
        assert p.poll() == 7
    with spawned(["sleep", "60"], rootfs) as p:
        assert p.poll() is None
        p.kill()
        assert p.wait() == -signal.SIGKILL
        p.send_signal(signal.SIGTERM)  # after the end: nothing to do
        assert p.returncode == -signal.SIGKILL
        assert p.usage is not None


# -- binds ----------------------------------------------------------------------------

@pytest.mark.parametrize("readonly", [False, True], ids=["rw", "ro"])
def test_bind_directory(overlay_rootfs, tmp_shm, readonly):
    data = make_layer(os.path.join(tmp_shm, "data"), {"hello": "hi\n"})
    r = sh("cat /data/hello; echo written > /data/new && echo wrote", overlay_rootfs,
           mounts=[pyrt.Bind(data, "/data", readonly=readonly)])
    assert r.stdout.startswith("hi\n")
    if readonly:
        assert r.stdout == "hi\n" and "Read-only file system" in r.stderr
        assert os.listdir(data) == ["hello"]
    else:
        assert r.stdout == "hi\nwrote\n"
        assert read(os.path.join(data, "new")) == "written\n"


@pytest.mark.parametrize("readonly", [False, True], ids=["rw", "ro"])
def test_bind_file(overlay_rootfs, tmp_shm, readonly):
    conf = os.path.join(tmp_shm, "conf.txt")
    with open(conf, "w") as f:
        f.write("v1\n")
    r = sh("cat /etc/conf.txt; echo v2 > /etc/conf.txt && echo wrote", overlay_rootfs,
           mounts=[pyrt.Bind(conf, "/etc/conf.txt", readonly=readonly)])
    if readonly:
        assert r.stdout == "v1\n" and "Read-only file system" in r.stderr
        assert read(conf) == "v1\n"
    else:
        assert r.stdout == "v1\nwrote\n"
        assert read(conf) == "v2\n"


@pytest.mark.parametrize("link", ["/", "../..", "../../../../../..", "."])
@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_mount_on_symlink_to_the_root_is_refused(rootfs, tmp_shm, leak_check, link, kind):
    layer = make_layer(os.path.join(tmp_shm, "layer"), {}, symlinks={"evil": link, "etc/evil": "../" + link})
    data = make_layer(os.path.join(tmp_shm, "data"), {"marker": "x"})
    host_root = sorted(os.listdir("/"))
    for dest in ("/evil", "/etc/evil"):
        m = pyrt.Bind(data, dest) if kind == "bind" else pyrt.Tmpfs(dest)
        with pytest.raises(SpawnError) as e:
            pyrt.run(["true"], new_overlay(os.path.join(tmp_shm, dest.replace("/", "_")), [layer, rootfs]),
                     mounts=[m])
        assert f'"{dest}"' in str(e.value)
    assert sorted(os.listdir("/")) == host_root
    leak_check.assert_clean()


@pytest.mark.parametrize("link", ["/opt/pyrt-inside", "../../../../../opt/pyrt-inside"])
def test_mount_on_symlink_stays_inside_the_root(rootfs, tmp_shm, link):
    assert not os.path.lexists("/opt/pyrt-inside")
    layer = make_layer(os.path.join(tmp_shm, "layer"), {}, symlinks={"good": link}, dirs=["opt/pyrt-inside"])
    data = make_layer(os.path.join(tmp_shm, "data"), {"marker": "from host\n"})
    out = sh_ok("cat /good/marker /opt/pyrt-inside/marker; cat /proc/self/mountinfo",
             new_overlay(tmp_shm, [layer, rootfs]), mounts=[pyrt.Bind(data, "/good")])
    lines = out.splitlines()
    assert lines[:2] == ["from host", "from host"]
    assert "/opt/pyrt-inside" in helpers.mount_points(lines[2:])
    assert not os.path.lexists("/opt/pyrt-inside")
    assert os.listdir(os.path.join(layer, "opt/pyrt-inside")) == []


# -- privileges -----------------------------------------------------------------------

def test_no_parent_fds_inside(rootfs):
    extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(4)]
    r, w = os.pipe()
    d = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
    for fd in (r, w, d):
        os.set_inheritable(fd, True)  # even inheritable fds stay outside
    try:
        out = sh_ok("ls /proc/self/fd", rootfs)
    finally:
        for fd in extra + [r, w, d]:
            os.close(fd)
    fds = set(out.split())
    assert {"0", "1", "2"} <= fds <= {"0", "1", "2", "3"}  # 3: ls's own directory


def _own_status() -> str:
    return read("/proc/self/status")


def test_capabilities_are_dockers_default_set(rootfs):
    mine = _own_status()
    status = sh_ok("cat /proc/self/status", rootfs)
    default = caps.mask(caps.DEFAULT)
    want = default & helpers.caps_of(mine, "CapPrm")
    assert want != 0
    assert helpers.caps_of(status, "CapEff") == want
    assert helpers.caps_of(status, "CapPrm") == want
    assert helpers.caps_of(status, "CapBnd") == default & helpers.caps_of(mine, "CapBnd")
    assert helpers.caps_of(status, "CapInh") == 0 and helpers.caps_of(status, "CapAmb") == 0
    assert "\nNoNewPrivs:\t1\n" in status


def test_user_1000_has_no_capabilities(rootfs):
    status = sh_ok("cat /proc/self/status", rootfs, user="1000:1000")
    assert helpers.caps_of(status, "CapEff") == 0 and helpers.caps_of(status, "CapPrm") == 0
    assert "\nNoNewPrivs:\t1\n" in status
    assert "\nUid:\t1000\t1000\t1000\t1000\n" in status


def test_masked_paths(rootfs):
    paths = [os.fsdecode(p) for p in MASKED_PATHS]
    script = "; ".join(
        f'if [ -d {p} ]; then echo "{p} dir $(ls -A {p} | wc -l)"; '
        f'elif [ -e {p} ]; then echo "{p} file $(cat {p} | wc -c)"; else echo "{p} missing"; fi'
        for p in paths)
    seen = {}
    for line in sh_ok(script, rootfs).splitlines():
        p, kind, *n = line.split()
        seen[p] = (kind, n)
    nonempty_on_host = 0
    for p in paths:
        if os.path.isdir(p):
            assert seen[p] == ("dir", ["0"]), p
        elif os.path.exists(p):
            assert seen[p] == ("file", ["0"]), p
            with open(p, "rb") as f:
                nonempty_on_host += bool(f.read(1))
    assert nonempty_on_host, "no masked file to compare with on this host"


def test_proc_sys_is_read_only(rootfs):
    host = read("/proc/sys/kernel/hostname")
    r = sh("echo evil > /proc/sys/kernel/hostname || echo refused; cat /proc/sys/kernel/hostname", rootfs,
           hostname="box")
    assert r.stdout == "refused\nbox\n" and "Read-only file system" in r.stderr
    assert read("/proc/sys/kernel/hostname") == host


def test_dev_has_the_standard_nodes_only(rootfs_copy):
    dev = os.path.join(rootfs_copy, "dev")
    os.mknod(os.path.join(dev, "sda"), 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    os.mknod(os.path.join(dev, "mem"), 0o640 | stat.S_IFCHR, os.makedev(1, 1))
    with open(os.path.join(dev, "stale"), "w"):
        pass
    out = sh_ok("""ls -A /dev
        echo --
        for n in null zero full random urandom tty pts/ptmx; do [ -c /dev/$n ] && echo chr $n; done
        for d in pts shm mqueue; do [ -d /dev/$d ] && echo dir $d; done
        [ -L /dev/ptmx ] && echo link ptmx
        head -c 5 /dev/zero | wc -c; head -c 7 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok
        echo x > /dev/full || echo full-fails""", rootfs_copy)
    listing, checks = out.split("--\n")
    assert set(listing.split()) == {"fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
                                    "stdin", "stdout", "tty", "urandom", "zero"}
    assert checks.split("\n") == [
        "chr null", "chr zero", "chr full", "chr random", "chr urandom", "chr tty", "chr pts/ptmx",
        "dir pts", "dir shm", "dir mqueue", "link ptmx", "5", "7", "null-ok", "full-fails", ""]
    assert sorted(os.listdir(dev)) == ["mem", "sda", "stale"]  # the rootfs's /dev is only hidden


# -- user namespaces ------------------------------------------------------------------

def test_user_namespace(rootfs, tmp_shm):
    data = os.path.join(tmp_shm, "data")
    os.mkdir(data)
    os.chown(data, 100000, 100000)
    out = sh_ok("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; touch /srv/made-inside",
             rootfs, uidmap=[(0, 100000, 65536)], gidmap=[(0, 100000, 65536)],
             mounts=[pyrt.Bind(data, "/srv")])
    lines = [line.split() for line in out.splitlines()]
    assert lines == [["0", "100000", "65536"], ["0", "100000", "65536"], ["0"], ["0"]]
    st = os.stat(os.path.join(data, "made-inside"))
    assert (st.st_uid, st.st_gid) == (100000, 100000)  # root inside is 100000 outside


# -- many containers ------------------------------------------------------------------

def test_threads(rootfs):
    def worker(t):
        outs = []
        for i in range(25):
            r = pyrt.run(["echo", f"thread {t} run {i}"], rootfs, capture_output=True)
            outs.append((r.returncode, r.stdout))
        return outs

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    for t, outs in enumerate(results):
        assert outs == [(0, f"thread {t} run {i}\n".encode()) for i in range(25)]


def test_200_spawns_leave_nothing_behind(rootfs, tmp_shm, leak_check):
    root = new_overlay(tmp_shm, [rootfs])
    pyrt.run(["true"], rootfs, capture_output=True)  # one-time initialisation first
    leak_check.reset()
    ok_runs = failures = 0
    for i in range(200):
        if i % 4 == 0:
            with pytest.raises(SpawnError):
                pyrt.run(["/bin/nosuch"], rootfs, capture_output=True)
            failures += 1
            continue
        r = pyrt.run(["sh", "-c", f"echo {i}"], root if i % 4 == 1 else rootfs, capture_output=True,
                     mounts=[pyrt.Tmpfs("/tmp")] if i % 4 == 2 else ())
        assert r.stdout == f"{i}\n".encode()
        ok_runs += 1
    assert (ok_runs, failures) == (150, 50)
    leak_check.assert_clean(fds=True)


def test_mount_destination_through_a_dangling_symlink_is_made_in_the_root(rootfs_copy):
    """As docker does: the symlink's target is created inside the container's root
    (an absolute target from that root, a relative one from the link's directory)."""
    os.symlink("/made/abs", os.path.join(rootfs_copy, "abs"))
    os.symlink("../made/rel", os.path.join(rootfs_copy, "tmp", "rel"))
    os.symlink("loop2", os.path.join(rootfs_copy, "loop1"))
    os.symlink("loop1", os.path.join(rootfs_copy, "loop2"))
    r = pyrt.run(["/bin/sh", "-c", "ls -d /made/abs/in /made/rel; mount | grep -c ' /made/'"], rootfs_copy,
                 mounts=[pyrt.Tmpfs("/abs/in"), pyrt.Tmpfs("/tmp/rel")], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"/made/abs/in", b"/made/rel", b"2"]
    assert os.path.isdir(os.path.join(rootfs_copy, "made", "abs", "in"))  # in the root, not on the host
    assert not os.path.exists("/made")
    with pytest.raises(pyrt.SpawnError, match="loop1/x.*Too many levels of symbolic links"):
        pyrt.run(["/bin/true"], rootfs_copy, mounts=[pyrt.Tmpfs("/loop1/x")])
