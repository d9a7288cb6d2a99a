"""An ordinary user's store and images (rootless): the store under
$XDG_DATA_HOME, layers unpacked in the user's namespace, containers from images,
commit with the ids shifted back. Each test runs the `pyrt` command (or Python)
as the test user (usertools) and checks the host from here, as root."""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

import imagetools
import usertools
from clitools import HEX64, ok

pytestmark = pytest.mark.timeout(600)


def owners(tree):
    """{(uid, gid)} of every entry below tree."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(tree):
        for n in dirnames + filenames + ["."]:
            st = os.lstat(os.path.join(dirpath, n))
            out.add((st.st_uid, st.st_gid))
    return out


def one_line_error(r, match):
    err = r.stderr.decode()
    assert r.returncode != 0, (r.stdout, err)
    assert err.startswith("pyrt: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def test_store_lives_in_xdg_data_home(user, base_tar):
    r = user.pyrt("import", base_tar, "base:1")
    image_id = ok(r).strip()
    assert image_id.startswith("sha256:") and r.stderr == b""
    st = os.stat(user.store)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700)
    base = usertools.subid_base(user.name)
    (snap,) = os.listdir(os.path.join(user.store, "snapshots"))
    snap = os.path.join(user.store, "snapshots", snap)
    # the layer's owners, shifted: root -> the user, 1000 -> base + 999
    assert os.stat(os.path.join(snap, "bin", "busybox")).st_uid == user.uid
    assert (os.stat(os.path.join(snap, "data", "owned")).st_uid,
            os.stat(os.path.join(snap, "home", "user")).st_gid) == (base + 999, base + 999)
    assert {u for u, g in owners(user.store)} <= {user.uid} | set(range(base, base + usertools.RANGE))
    # a setuid file of the layer stays setuid (it is, in the container) but no other
    # user reaches it: the store is the user's alone
    suid = os.path.join(snap, "data", "suid")
    assert os.stat(suid).st_mode & stat.S_ISUID
    nobody = usertools.ensure_user(usertools.USER_NOSUB, subids=False)
    r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--init-groups",
                        "stat", suid], capture_output=True)
    assert r.returncode != 0 and b"Permission denied" in r.stderr
    # the runtime directory too
    rd = os.path.join(user.runtime_dir, "pyrt")
    r = user.pyrt("run", "--rm", "base:1", "true")
    assert r.returncode == 0, r.stderr
    st = os.stat(rd)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700)


def test_run_image_as_user(user, base_tar):
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "--rm", "base:1", "sh", "-c",
                  "id -u; stat -c '%u:%g %a' /data/owned /data/suid /home/user; "
                  "echo w > /data/new; cat /data/new; cat /proc/self/uid_map | wc -l")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split("\n") == ["0", "1000:1000 640", "0:0 4755", "1000:1000 755", "w", "2", ""]
    assert os.listdir(os.path.join(user.store, "containers")) == []
    assert os.listdir(os.path.join(user.store, "tmp")) == []
    r = user.pyrt("run", "--rm", "--user", "1000", "base:1", "sh", "-c", "id -u; touch /data/x")
    assert r.returncode == 1 and r.stdout == b"1000\n" and b"Permission denied" in r.stderr


def test_detached_container_lifecycle(user, base_tar):
    ok(user.pyrt("import", base_tar, "base:1"))
    cid = ok(user.pyrt("run", "-d", "--name", "c1", "-v", "vol:/vol", "base:1", "sh", "-c",
                       "echo started; echo v > /vol/f; chown 1000 /vol/f; exec sleep 300")).strip()
    assert HEX64.fullmatch(cid)
    try:
        ps = ok(user.pyrt("ps", "--format", "json"))
        assert [c["Names"] for c in json.loads(ps)] == ["c1"]
        r = user.pyrt("exec", "c1", "sh", "-c", "id -u; cat /vol/f; stat -c %u /vol/f")
        assert (r.returncode, r.stdout) == (0, b"0\nv\n1000\n"), r.stderr
        r = user.pyrt("exec", "-u", "1000", "c1", "id", "-u")
        assert r.stdout == b"1000\n", r.stderr
        assert ok(user.pyrt("logs", "c1")) == "started\n"
        assert ok(user.pyrt("stop", "-t", "1", "c1")).strip() == "c1"
        (c,) = json.loads(ok(user.pyrt("ps", "-a", "--format", "json")))
        assert c["Status"].startswith("Exited (137)")
    finally:
        user.pyrt("rm", "-f", "c1")
    vols = os.path.join(user.store, "volumes")
    (vdir,) = os.listdir(vols)
    base = usertools.subid_base(user.name)
    assert os.stat(os.path.join(vols, vdir, "_data", "f")).st_uid == base + 999
    assert os.listdir(os.path.join(user.store, "containers")) == []
    ok(user.pyrt("volume", "rm", "vol"))
    assert os.listdir(vols) == []


# The same changes made as root and as the user, with every time fixed: their
# layers must be the same bytes.
SAME_CHANGES = imagetools.CHANGES.replace("rm /data/l2new\n", "").replace("rm -rf /l2dir\nmkdir /l2dir\n"
                                                                         "echo fresh > /l2dir/fresh\n", "").replace("mkdir /gone\n", "rm -rf /gone\nmkdir /gone\n") + """\
rm -rf /data/sub
mkdir /data/sub
echo n > /data/sub/n
mkfifo /data/fifo
find / -xdev -exec touch -h -d '2001-01-01 00:00:00' {} + 2>/dev/null || true
"""


def test_commit_as_user_equals_commit_as_root(user, store, base_tar):
    # as root
    r = store.cli("run", "--name", "c1", "base:1", "sh", "-c", SAME_CHANGES)
    assert r.returncode == 0, r.stderr
    ok(store.cli("commit", "c1", "mine:1"))
    (root_info,) = json.loads(ok(store.cli("inspect", "mine:1")))
    # as the user
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "--name", "c1", "base:1", "sh", "-c", SAME_CHANGES)
    assert r.returncode == 0, r.stderr
    diff_root = ok(store.cli("diff", "c1")).splitlines()
    diff_user = ok(user.pyrt("diff", "c1")).splitlines()
    assert diff_user == diff_root and "A /data/fifo" in diff_user and "D /data/sub/x" in diff_user
    ok(user.pyrt("commit", "c1", "mine:1"))
    (user_info,) = json.loads(ok(user.pyrt("inspect", "mine:1")))
    assert user_info["RootFS"]["Layers"] == root_info["RootFS"]["Layers"]
    # and the layer blob itself, saved from both stores
    out_root, out_user = os.path.join(user.dir, "root.tar"), os.path.join(user.dir, "user.tar")
    ok(store.cli("save", "-o", out_root, "mine:1"))
    ok(user.pyrt("save", "-o", out_user, "mine:1"))
    assert imagetools.saved_layers(out_root) == imagetools.saved_layers(out_user)
    # a container of the committed image sees the changes with their owners
    r = user.pyrt("run", "--rm", "mine:1", "sh", "-c", "stat -c '%u %a' /data/xattr /data/suid; ls /data/sub")
    assert r.stdout.decode().split("\n") == ["1000 644", "0 700", "n", ""], r.stderr
    ok(user.pyrt("rm", "c1"))
    ok(user.pyrt("rmi", "mine:1"))


def test_save_and_load_between_root_and_user(user, store, tmp_shm):
    saved = os.path.join(user.dir, "base.tar")
    ok(store.cli("save", "-o", saved, "base:1"))
    os.chmod(saved, 0o644)
    (root_info,) = json.loads(ok(store.cli("inspect", "base:1")))
    assert ok(user.pyrt("load", "-i", saved)).strip() == "Loaded image: base:1"
    (user_info,) = json.loads(ok(user.pyrt("inspect", "base:1")))
    assert user_info["Id"] == root_info["Id"]
    back = os.path.join(user.dir, "back.tar")
    ok(user.pyrt("save", "-o", back, "base:1"))
    ok(store.cli("rmi", "base:1"))
    ok(store.cli("load", "-i", back))
    (again,) = json.loads(ok(store.cli("inspect", "base:1")))
    assert again["Id"] == root_info["Id"]


def test_layers_with_devices_whiteouts_and_opaque_dirs(user, base_tar):
    """Device nodes are skipped with a note; whiteouts and opaque directories work
    (overlay with userxattr reads user.overlay.opaque)."""
    lower = imagetools.layer_tar([("dir", "d"), ("file", "d/old", {"data": "old\n"}), ("dir", "o"),
                                  ("file", "o/hidden", {"data": "h\n"}), ("file", "gone", {"data": "g\n"})])
    import io
    import tarfile
    buf = io.BytesIO(imagetools.layer_tar([("whiteout", "gone"), ("opaque", "o"), ("file", "o/new", {"data": "n\n"})]))
    # plus a character and a block device, which an ordinary user cannot make
    out = io.BytesIO()
    with tarfile.open(fileobj=buf) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for ti in src.getmembers():
            dst.addfile(ti, src.extractfile(ti) if ti.isfile() else None)
        for name, kind in (("dev-null", tarfile.CHRTYPE), ("dev-sda", tarfile.BLKTYPE)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.devmajor, ti.devminor, ti.mode = kind, 1, 3, 0o666
            dst.addfile(ti)
    upper = out.getvalue()
    r = user.load_layers(base_tar, [lower, upper], "layered:1")
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "2 device nodes skipped" in err, err
    r = user.pyrt("run", "--rm", "layered:1", "ls", "/", "/o", "/d")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "gone" not in out and "dev-null" not in out and "hidden" not in out
    assert "/o:\nnew\n" in out and "/d:\nold\n" in out


def test_owner_outside_the_range_is_refused(user, tmp_shm):
    tar = os.path.join(user.dir, "far.tar")
    with open(tar, "wb") as f:
        f.write(imagetools.layer_tar([("dir", "etc"), ("file", "etc/far", {"data": "x", "uid": 70000})]))
    os.chmod(tar, 0o644)
    r = user.pyrt("import", tar, "far:1")
    one_line_error(r, 'layer entry "etc/far": its owner is outside the ids mapped for you: containers have '
                      "uids and gids 0-65536")
    assert ok(user.pyrt("images", "-q")) == ""
    for d in ("snapshots", "tmp", "blobs/sha256"):
        assert os.listdir(os.path.join(user.store, d)) == [], d


def test_no_subordinate_range_cannot_unpack_other_owners(user_nosub, base_tar):
    r = user_nosub.pyrt("import", base_tar, "base:1")
    err = r.stderr.decode()
    assert r.returncode == 1 and "its owner is outside the ids mapped for you: containers have uids and gids 0-0" \
        in err and "no subordinate ids for" in err, err


def test_store_directory_of_someone_else(user, tmp_shm):
    theirs = os.path.join(tmp_shm, "theirs")
    os.mkdir(theirs)
    os.chmod(theirs, 0o777)
    r = user.pyrt("--root", theirs, "images")
    one_line_error(r, f"store directory {theirs} is owned by root (uid 0), not by you")
    # a symlink to another user's directory
    os.makedirs(user.data, exist_ok=True)
    os.chown(user.data, user.uid, user.gid)
    other = usertools.ensure_user(usertools.USER_NOSUB, subids=False)
    target = os.path.join(tmp_shm, "other")
    os.mkdir(target, 0o755)
    os.chown(target, other.pw_uid, other.pw_gid)
    os.symlink(target, user.store)
    r = user.pyrt("images")
    one_line_error(r, f"store directory {target} (from {user.store}) is owned by {other.pw_name}")
    assert os.listdir(target) == []
    os.unlink(user.store)
    # a directory of its own inside one another user may change (not sticky)
    shared = os.path.join(tmp_shm, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    mine = os.path.join(shared, "mine")
    os.mkdir(mine, 0o700)
    os.chown(mine, user.uid, user.gid)
    r = user.pyrt("--root", mine, "images")
    one_line_error(r, f"is inside {shared}, which others may write to")


def test_rmi_removes_layers_of_other_owners(user, base_tar):
    """Layers with directories of the user's subordinate ids that only they may
    write (home/user is 0700 of container uid 1000 here): rmi removes them all."""
    r = user.pyrt("import", base_tar, "base:1")
    assert r.returncode == 0, r.stderr
    r = user.pyrt("run", "--name", "c", "base:1", "sh", "-c", "chmod 700 /home/user; echo x > /home/user/f; "
                  "chown 1000 /home/user/f")
    assert r.returncode == 0, r.stderr
    ok(user.pyrt("commit", "c", "b:2"))
    ok(user.pyrt("rm", "c"))
    ok(user.pyrt("rmi", "b:2", "base:1"))
    for d in ("snapshots", "containers", "tmp"):
        assert os.listdir(os.path.join(user.store, d)) == [], d


def test_api_runtime_as_user(user, base_tar):
    """The docker-SDK-shaped API as an ordinary user, with its default store."""
    r = user.py(r"""
        import sys, pyrt
        rt = pyrt.Runtime()
        print(rt.root)
        rt.images.import_image(sys.argv[1], "base", "1")
        print(rt.containers.run("base:1", ["sh", "-c", "id -u; stat -c %u /data/owned"], remove=True).decode(),
              end="")
        c = rt.containers.run("base:1", ["sh", "-c", "echo hi > /data/n; chown 1000 /data/n"], detach=True)
        c.wait()
        print(sorted(d["Path"] for d in c.diff()))
        img = c.commit("mine", "1")
        c.remove()
        print(rt.containers.run(img.id, ["stat", "-c", "%u", "/data/n"], remove=True).decode(), end="")
        with pyrt.Pool("mine:1", size=1) as pool:
            print(pool.run(["cat", "/data/n"], capture_output=True).stdout.decode(), end="")
        rt.close()
        """, base_tar)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split("\n") == [user.store, "0", "1000", "['/data', '/data/n']", "1000", "hi", ""]


def test_cp_and_build_as_user(user, base_tar):
    """pyrt cp in and out of a stopped and a running container, and a build with
    RUN and COPY: the container's owners kept, the user's files become root's."""
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "--name", "c", "base:1", "sh", "-c", "echo s > /data/secret; chown 1000 /data/secret; "
                  "chmod 600 /data/secret")
    assert r.returncode == 0, r.stderr
    out = ok(user.pyrt("cp", "c:/data/secret", "-"))
    import tarfile
    import io
    with tarfile.open(fileobj=io.BytesIO(out.encode())) as tf:
        (ti,) = tf.getmembers()
        assert (ti.name, ti.uid, ti.mode, tf.extractfile(ti).read()) == ("secret", 1000, 0o600, b"s\n")
    src = os.path.join(user.home, "in.txt")
    with open(src, "w") as f:
        f.write("in\n")
    os.chown(src, user.uid, user.gid)
    ok(user.pyrt("cp", src, "c:/data/"))
    dest = os.path.join(user.home, "back")
    ok(user.pyrt("cp", "c:/data/secret", dest))
    assert os.stat(dest).st_uid == user.uid and open(dest).read() == "s\n"
    ok(user.pyrt("run", "-d", "--name", "d", "base:1", "sleep", "300"))
    try:
        ok(user.pyrt("cp", src, "d:/tmp/"))
        assert ok(user.pyrt("exec", "d", "stat", "-c", "%u %n", "/tmp/in.txt")) == "0 /tmp/in.txt\n"
    finally:
        user.pyrt("rm", "-f", "d")
    assert "A /data/in.txt" in ok(user.pyrt("diff", "c"))
    ok(user.pyrt("rm", "c"))
    ctx = user.mkdir("ctx", 0o755)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM base:1\nRUN echo built > /built && chown 1000 /built\nCOPY f /f\n")
    with open(os.path.join(ctx, "f"), "w") as f:
        f.write("f\n")
    for n in ("Dockerfile", "f"):
        os.chown(os.path.join(ctx, n), user.uid, user.gid)
    r = user.pyrt("build", "-t", "b:1", ctx)
    assert r.returncode == 0, r.stderr
    assert ok(user.pyrt("run", "--rm", "b:1", "stat", "-c", "%u %n", "/built", "/f")) == "1000 /built\n0 /f\n"


def test_image_whose_passwd_is_whited_out(user, base_tar):
    """The image's /etc/passwd is read from its layers as the user: a whiteout of
    it (a 0:0 device of mode 0, which the user may not open) means none."""
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "--name", "c", "base:1", "sh", "-c", "rm /etc/passwd; rm -rf /data; mkdir /data")
    assert r.returncode == 0, r.stderr
    ok(user.pyrt("commit", "c", "nopw:1"))
    ok(user.pyrt("rm", "c"))
    r = user.pyrt("run", "--rm", "--user", "1000", "nopw:1", "sh", "-c", "id -u; ls /etc/passwd; ls -A /data")
    assert (r.returncode, r.stdout) == (0, b"1000\n"), r.stderr  # /data: empty (an opaque dir)
    assert b"No such file" in r.stderr
