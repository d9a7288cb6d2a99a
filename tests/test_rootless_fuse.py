"""The fuse-overlayfs storage driver (pyrt.launch.fuse), for an ordinary user whose
kernel refuses overlay in a user namespace: run as the test user (usertools),
checked from here as root (nothing mounted on the host, no daemon left)."""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import time

import pytest

import imagetools
from clitools import ok

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not shutil.which("fuse-overlayfs") or not os.access("/dev/fuse", os.W_OK),
                                 reason="fuse-overlayfs and /dev/fuse are needed (tests/install-deps.sh)")]

FUSE = {"PYRT_STORAGE_DRIVER": "fuse-overlayfs", "PYRT_DEFAULT_NETWORK": "none"}


@pytest.fixture(autouse=True)
def _removed(user):
    """Every container of the test removed after it, on failure too."""
    yield
    ids = user.pyrt("ps", "-aq").stdout.decode().split()
    if ids:
        user.pyrt("rm", "-f", *ids)


def _daemons(user) -> list[int]:
    """The pids of the test user's fuse-overlayfs processes on its store."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            st = os.stat(f"/proc/{pid}")
        except OSError:
            continue
        if st.st_uid == user.uid and os.path.basename(argv[0]) == b"fuse-overlayfs" and \
                os.fsencode(user.store) in b" ".join(argv):
            out.append(int(pid))
    return out


def _fuse_mounts() -> list[str]:
    """FUSE mounts in the user's mount namespace (the test session's, where its
    commands run) and in the host's."""
    out = []
    for path in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(path) as f:
            out += [ln for ln in f if "fuse-overlayfs" in ln or " fuse." in ln]
    return out


def test_run_and_write(user, base_tar):
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "--name", "c1", "base:1", "sh", "-c",
                  "id -u; echo w > /data/x; cat /data/x; stat -c '%u:%g' /data/owned; "
                  "grep -c fuse /proc/self/mountinfo", env=FUSE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["0", "w", "1000:1000", "1"], r.stdout
    assert r.stderr == b""
    (c,) = json.loads(ok(user.pyrt("inspect", "c1")))
    assert c["Driver"] == "fuse-overlayfs"
    with open(os.path.join(user.store, "containers", c["Id"], "upper", "data", "x")) as f:
        assert f.read() == "w\n"
    assert _daemons(user) == [] and _fuse_mounts() == []
    ok(user.pyrt("rm", "c1", env=FUSE))
    assert os.listdir(os.path.join(user.store, "containers")) == []


# the same changes under both drivers: deletions of the image's files and dirs, a
# dir made again over one of the image's (opaque), new dirs (not opaque), a new file
# deleted again (no whiteout), owners, a fifo; every time fixed
CHANGES = """\
echo new > /data/new
chown 1000:1000 /data/new
rm -f /data/owned
mkdir -p /data/sub2/deeper && echo n > /data/sub2/deeper/n
rm -rf /home/user && mkdir /home/user && echo again > /home/user/f
rm -rf /tree && mkdir /tree && echo x > /tree/only
touch /tmp/gone && rm /tmp/gone
mkfifo /data/fifo
find / -xdev ! -name 'hl*' ! -name suid -exec touch -h -d '2001-01-01 00:00:00' {} + 2>/dev/null || true
find / -xdev ! -name 'hl*' ! -name suid -exec touch -h -d '2001-01-01 00:00:00' {} + 2>/dev/null || true
touch -d '2001-01-01 00:00:00' /tmp/done /tmp
"""


def _top_layer_entries(saved_tar):
    top = imagetools.saved_layers(saved_tar)[-1]
    with tarfile.open(saved_tar) as tf, tarfile.open(fileobj=tf.extractfile(f"blobs/sha256/{top[7:]}")) as layer:
        return sorted((t.name, t.type, t.mode, t.uid, t.gid, t.mtime, t.size, dict(t.pax_headers)) for t in layer)


def test_diff_and_commit_equal_the_kernel_drivers(user, base_tar):
    """The same changes made under the kernel's overlay and under fuse-overlayfs:
    the same diff (running and stopped), the same committed layer."""
    ok(user.pyrt("import", base_tar, "base:1"))
    kernel = {"PYRT_STORAGE_DRIVER": "overlay", "PYRT_DEFAULT_NETWORK": "none"}
    for name, env in (("k", kernel), ("f", FUSE)):
        r = user.pyrt("run", "-d", "--name", name, "base:1", "sh", "-c", CHANGES + "sleep 60", env=env)
        assert r.returncode == 0, r.stderr
    for _ in range(600):  # the changes made (the sleep started)
        if all("A /tmp/done" in ok(user.pyrt("diff", n)) for n in ("k", "f")):
            break
        time.sleep(0.05)
    running = ok(user.pyrt("diff", "f"))
    kernel_diff = ok(user.pyrt("diff", "k"))
    assert set(running.splitlines()) ^ set(kernel_diff.splitlines()) == set()
    assert running == kernel_diff
    assert "A /data/sub2/deeper/n" in running and "D /data/owned" in running and ".wh." not in running
    assert len(_daemons(user)) == 1
    for n in ("k", "f"):
        ok(user.pyrt("stop", "-t", "1", n))
    assert _daemons(user) == [] and _fuse_mounts() == []
    stopped = ok(user.pyrt("diff", "f"))
    assert stopped == ok(user.pyrt("diff", "k")) == running
    ok(user.pyrt("commit", "k", "mine:k"))
    ok(user.pyrt("commit", "f", "mine:f"))
    out_k, out_f = os.path.join(user.dir, "k.tar"), os.path.join(user.dir, "f.tar")
    ok(user.pyrt("save", "-o", out_k, "mine:k"))
    ok(user.pyrt("save", "-o", out_f, "mine:f"))
    assert _top_layer_entries(out_f) == _top_layer_entries(out_k)
    assert imagetools.saved_layers(out_f) == imagetools.saved_layers(out_k)
    # the committed image runs under fuse-overlayfs as it does under the kernel's
    for env in (kernel, FUSE):
        r = user.pyrt("run", "--rm", "mine:f", "sh", "-c", "cat /tree/only; test -e /tree/t1 || echo no-t1; "
                      "ls /home/user; cat /data/sub2/deeper/n", env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split() == ["x", "no-t1", "f", "n"]
    for n in ("k", "f"):
        ok(user.pyrt("rm", n))
    assert _daemons(user) == [] and os.listdir(os.path.join(user.store, "containers")) == []
    for env, mode in ((kernel, b"4755\n"), (FUSE, b"755\n")):  # a documented difference
        r = user.pyrt("run", "--rm", "base:1", "sh", "-c", "touch /data/suid; stat -c %a /data/suid", env=env)
        assert r.stdout == mode, r


def test_layers_with_whiteouts_and_opaque_dirs(user, base_tar):
    lower = imagetools.layer_tar([("dir", "d"), ("file", "d/old", {"data": "old\n"}), ("dir", "o"),
                                  ("file", "o/hidden", {"data": "h\n"}), ("file", "gone", {"data": "g\n"})])
    upper = imagetools.layer_tar([("whiteout", "gone"), ("opaque", "o"), ("file", "o/new", {"data": "n\n"})])
    user.load_layers(base_tar, [lower, upper], "layered:1")
    r = user.pyrt("run", "--name", "l", "layered:1", "sh", "-c",
                  "ls / /o /d; rm -r /o; mkdir /o; echo again > /o/again; echo g2 > /gone", env=FUSE)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "gone" not in out and "hidden" not in out
    assert "/o:\nnew\n" in out and "/d:\nold\n" in out
    r = user.pyrt("start", "-a", "l", env=FUSE)  # the upper dir read back by fuse-overlayfs, normalized or not
    ok(user.pyrt("diff", "l"))
    r = user.pyrt("run", "--rm", "layered:1", "true", env=FUSE)
    assert r.returncode == 0, r.stderr
    diff = ok(user.pyrt("diff", "l")).splitlines()
    assert "A /o/again" in diff and "D /o/new" in diff and "A /gone" in diff, diff
    ok(user.pyrt("commit", "l", "layered:2"))
    r = user.pyrt("run", "--rm", "layered:2", "sh", "-c", "ls /o; cat /gone", env=FUSE)
    assert (r.returncode, r.stdout) == (0, b"again\ng2\n"), r.stderr
    ok(user.pyrt("rm", "l"))
    assert _daemons(user) == [] and _fuse_mounts() == []


def test_detached_restart_cp_export_rm(user, base_tar, tmp_shm):
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "-d", "--name", "d", "--restart", "on-failure:2", "base:1", "sh", "-c",
                  "echo run >> /data/runs; test $(wc -l < /data/runs) -ge 3 || exit 1; sleep 60", env=FUSE)
    assert r.returncode == 0, r.stderr
    for _ in range(300):
        (c,) = json.loads(ok(user.pyrt("inspect", "d")))
        if c["RestartCount"] == 2:
            break
        time.sleep(0.05)
    assert c["RestartCount"] == 2 and c["State"]["Running"], c["State"]
    assert len(_daemons(user)) == 1 and _fuse_mounts() == []
    for _ in range(300):  # the third run has written its line
        r = user.pyrt("exec", "d", "cat", "/data/runs")
        if r.stdout == b"run\nrun\nrun\n":
            break
        time.sleep(0.05)
    assert r.stdout == b"run\nrun\nrun\n", r.stderr
    dest = user.mkdir("out", 0o755)
    ok(user.pyrt("cp", "d:/data/runs", os.path.join(dest, "running")))
    ok(user.pyrt("stop", "-t", "1", "d"))
    assert _daemons(user) == []
    ok(user.pyrt("cp", "d:/data/runs", os.path.join(dest, "stopped")))
    src = os.path.join(dest, "in")
    with open(src, "w") as f:
        f.write("copied in\n")
    os.chown(src, user.uid, user.gid)
    ok(user.pyrt("cp", src, "d:/data/in"))
    assert _daemons(user) == []
    tar = os.path.join(dest, "export.tar")
    ok(user.pyrt("export", "-o", tar, "d"))
    with tarfile.open(tar) as tf:
        assert tf.extractfile("data/in").read() == b"copied in\n"
        assert tf.extractfile("data/runs").read() == b"run\nrun\nrun\n"
        assert "data/owned" in tf.getnames()
    for name in ("running", "stopped"):
        with open(os.path.join(dest, name)) as f:
            assert f.read() == "run\nrun\nrun\n"
    assert _daemons(user) == []
    r = user.pyrt("run", "-d", "--name", "e", "base:1", "sleep", "60", env=FUSE)
    assert r.returncode == 0, r.stderr
    assert len(_daemons(user)) == 1
    ok(user.pyrt("rm", "-f", "d", "e"))
    assert _daemons(user) == [] and _fuse_mounts() == []
    assert os.listdir(os.path.join(user.store, "containers")) == []


def test_fallbacks_say_so_once(user, base_tar):
    """A kernel that refuses overlay (forced: PYRT_NO_OVERLAY=1): fuse-overlayfs,
    one line that says so, the first time only; without fuse-overlayfs too
    (PYRT_NO_FUSE_OVERLAYFS=1): copy, one line with both reasons."""
    ok(user.pyrt("import", base_tar, "base:1"))
    env = {"PYRT_NO_OVERLAY": "1", "PYRT_DEFAULT_NETWORK": "none"}
    r = user.pyrt("run", "--rm", "base:1", "cat", "/etc/hostname", env=env)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "PYRT_NO_OVERLAY=1" in err and "using the fuse-overlayfs storage driver" in err
    r = user.pyrt("run", "--rm", "base:1", "true", env=env)
    assert (r.returncode, r.stderr) == (0, b"")
    assert ok(user.pyrt("info", "--format", "{{.Driver}}")).strip() == "fuse-overlayfs"
    other = os.path.join(user.dir, "other")
    env2 = dict(env, PYRT_NO_FUSE_OVERLAYFS="1")
    ok(user.pyrt("--root", other, "import", base_tar, "base:1"))
    r = user.pyrt("--root", other, "run", "--rm", "base:1", "true", env=env2)
    err = r.stderr.decode()
    assert r.returncode == 0 and err.count("\n") == 1, err
    assert "PYRT_NO_OVERLAY=1; nor is fuse-overlayfs: PYRT_NO_FUSE_OVERLAYFS=1" in err
    assert "using the copy storage driver" in err


def test_missing_program_and_bad_paths(user, base_tar):
    """fuse-overlayfs asked for where it cannot run, or a store path it cannot
    take: one line, non-zero, nothing made; root is refused the driver."""
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.py(r"""
        import pyrt.launch.fuse as f
        f.PROGRAM = "fuse-overlayfs-missing"
        import pyrt
        rt = pyrt.Runtime(storage_driver="fuse-overlayfs")
        try:
            rt.containers.run("base:1", ["true"], network_mode="none", remove=True)
        except pyrt.errors.PyrtError as e:
            print("refused:", e)
        print(rt.containers.list(all=True))
        """)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().splitlines()
    assert out[0] == ("refused: cannot mount the container's root with fuse-overlayfs: fuse-overlayfs-missing not "
                      "found (install the package fuse-overlayfs)"), out
    assert out[1] == "[]"
    assert _daemons(user) == []
    odd = os.path.join(user.dir, "a,b")
    ok(user.pyrt("--root", odd, "import", base_tar, "base:1"))
    r = user.pyrt("--root", odd, "run", "--rm", "base:1", "true", env=FUSE)
    err = r.stderr.decode()
    assert r.returncode != 0 and err.count("\n") == 1 and "cannot use the path" in err and "','" in err, err
    assert os.listdir(os.path.join(odd, "containers")) == []
    from pyrt.errors import InvalidArgument
    from pyrt.runtime import Runtime
    with pytest.raises(InvalidArgument, match="for an ordinary user"):
        Runtime(os.path.join(user.dir, "rootstore"), storage_driver="fuse-overlayfs")


def test_daemon_killed_while_running(user, base_tar):
    """The daemon killed under a running container: the container is killed (a
    clean failure), its keeper ends, nothing is left; the next start mounts again."""
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "-d", "--name", "v", "base:1", "sleep", "60", env=FUSE)
    assert r.returncode == 0, r.stderr
    (daemon,) = _daemons(user)
    os.kill(daemon, 9)
    r = user.pyrt("wait", "v", timeout=60)
    assert r.stdout == b"137\n", r
    for _ in range(200):
        if not _daemons(user):
            break
        time.sleep(0.05)
    assert _daemons(user) == [] and _fuse_mounts() == []
    ok(user.pyrt("start", "v"))  # a new keeper, a new daemon
    assert len(_daemons(user)) == 1
    ok(user.pyrt("rm", "-f", "v"))
    assert _daemons(user) == [] and _fuse_mounts() == []


def test_hostile_layer_symlinks(user, base_tar, tmp_shm):
    """A layer whose directories are symlinks out of the root (absolute and
    relative) under a later layer's real directory: fuse-overlayfs stops the merge
    at the symlink; a write lands in the upper dir, no host file is reached."""
    secret = os.path.join(tmp_shm, "host-secret")
    os.makedirs(secret)
    with open(os.path.join(secret, "s"), "w") as f:
        f.write("host\n")
    os.chmod(secret, 0o777)
    evil = imagetools.layer_tar([("symlink", "a", {"link": secret}), ("symlink", "b", {"link": "../../../../" + secret}),
                                 ("symlink", "c", {"link": "/etc"})])
    over = imagetools.layer_tar([("dir", "a"), ("dir", "b"), ("dir", "c"), ("file", "a/mine", {"data": "m\n"})])
    user.load_layers(base_tar, [evil, over], "evil:1")
    r = user.pyrt("run", "--name", "h", "evil:1", "sh", "-c",
                  "ls /a /b /c; cat /a/s /b/s 2>&1; echo pwn > /a/s; echo pwn > /b/s; echo pwn > /c/passwd; "
                  "ls /c", env=FUSE)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "host" not in out and "root:" not in out, out
    with open(os.path.join(secret, "s")) as f:
        assert f.read() == "host\n"
    assert os.listdir(secret) == ["s"]
    diff = ok(user.pyrt("diff", "h")).splitlines()
    assert {"A /a/s", "A /b/s", "A /c/passwd"} <= set(diff), diff
    ok(user.pyrt("rm", "h"))
    assert _daemons(user) == []


def test_failed_start_leaves_nothing(user, base_tar):
    """A start that fails after the union is mounted (no such program), in the
    foreground and detached: one line, the daemon gone, nothing mounted."""
    ok(user.pyrt("import", base_tar, "base:1"))
    for detach in ([], ["-d"]):
        r = user.pyrt("run", *detach, "--name", "bad", "base:1", "/no/such/program", env=FUSE)
        assert r.returncode != 0 and b"/no/such/program" in r.stderr, r
        assert _daemons(user) == [] and _fuse_mounts() == []
        user.pyrt("rm", "-f", "bad")  # (a foreground run removes what it made)
    assert os.listdir(os.path.join(user.store, "containers")) == []


def test_export_of_a_running_container(user, base_tar, tmp_shm):
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "-d", "--name", "x", "base:1", "sh", "-c", "echo live > /data/live; sleep 60", env=FUSE)
    assert r.returncode == 0, r.stderr
    for _ in range(200):
        if "/data/live" in ok(user.pyrt("diff", "x")):
            break
        time.sleep(0.05)
    tar = os.path.join(user.mkdir("out", 0o755), "x.tar")
    ok(user.pyrt("export", "-o", tar, "x"))
    with tarfile.open(tar) as tf:
        assert tf.extractfile("data/live").read() == b"live\n"
        assert not [n for n in tf.getnames() if ".wh." in n]
    assert len(_daemons(user)) == 1  # the container's own
    ok(user.pyrt("rm", "-f", "x"))
    assert _daemons(user) == [] and _fuse_mounts() == []


def test_build_under_fuse_overlayfs(user, base_tar):
    """`pyrt build` runs its RUN steps in fuse-overlayfs containers and commits
    them: the layer is the kernel overlay's."""
    ok(user.pyrt("import", base_tar, "base:1"))
    ctx = user.mkdir("ctx", 0o755)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM base:1\nRUN mkdir -p /b/c && echo built > /b/c/built && chown 1000 /b/c/built && "
                "rm -rf /tree && mkdir /tree && touch -d '2001-01-01 00:00:00' /b/c/built /b/c /b /tree\n")
    os.chown(os.path.join(ctx, "Dockerfile"), user.uid, user.gid)
    ids = {}
    for tag, env in (("f", FUSE), ("k", {"PYRT_STORAGE_DRIVER": "overlay"})):
        r = user.pyrt("build", "--no-cache", "-t", f"b:{tag}", ctx, env=env)
        assert r.returncode == 0, r.stderr
        (img,) = json.loads(ok(user.pyrt("image", "inspect", f"b:{tag}")))
        ids[tag] = img["RootFS"]["Layers"]
    assert ids["f"] == ids["k"]
    r = user.pyrt("run", "--rm", "b:f", "sh", "-c", "stat -c '%u' /b/c/built; ls -A /tree", env=FUSE)
    assert (r.returncode, r.stdout) == (0, b"1000\n"), r.stderr
    assert _daemons(user) == [] and os.listdir(os.path.join(user.store, "containers")) == []
