"""Containers from images, through the Python API: the image config honoured by run,
the union filesystem (image snapshots never modified, whiteouts and opaque dirs),
diff and commit, images of more than 128 layers, the `copy` storage driver, export,
save/load of committed images, names and removal.

Every store lives on /dev/shm (tmp_shm). Test images are built here: a base tar of the
session's busybox rootfs plus test files, layers committed from containers, and OCI
layouts written by hand."""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import types

import pytest

import helpers
import pyrt
from pyrt.containers.model import ContainerError
from pyrt.errors import Conflict, ContainerNotFound, ImageNotFound, InvalidArgument
from imagetools import (CHANGES, CHANGES_DIFF, LAYER2, LAYER3, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
                        check_store, layer_tar, sha)


@pytest.fixture
def rt(tmp_shm):
    r = pyrt.Runtime(os.path.join(tmp_shm, "store"), quiet=True)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(params=["overlay", "copy"])
def drt(request, tmp_shm):
    """A runtime with each storage driver."""
    r = pyrt.Runtime(os.path.join(tmp_shm, "store"), storage_driver=request.param, quiet=True)
    try:
        yield r
    finally:
        r.close()


def run_in(container):
    """Starts a created (or exited) container, waits: (exit code, stdout, stderr)."""
    proc = container.start_process(stdin=pyrt.DEVNULL, stdout=pyrt.PIPE, stderr=pyrt.PIPE)
    out, err = proc.communicate()
    container.finished(proc.returncode)
    return proc.returncode, out.decode(), err.decode()


def sh(rt, image, script, name=None, **kw):
    """A container of `image` that ran `sh -c script` (successfully); it is kept."""
    c = rt.containers.create(image, ["/bin/sh", "-c", script], name=name, **kw)
    rc, out, err = run_in(c)
    assert rc == 0, f"{script!r} failed ({rc}): {err}"
    return c


def build_layered(rt, base_tar):
    """base:1 (the base tar), then base:2 and layered:3 committed from containers:
    3 layers that add, modify and delete files and dirs (and make an opaque dir)."""
    base = rt.images.import_image(base_tar, "base", "1")
    c2 = sh(rt, base, LAYER2)
    img2 = c2.commit("base", "2", message="layer 2")
    c3 = sh(rt, img2, LAYER3)
    img3 = c3.commit("layered", "3", message="layer 3")
    c2.remove()
    c3.remove()
    return img3


def write_oci_layout(path, layers, config=None, ref="oci:1"):
    """An OCI image layout with gzip layers (uncompressed tars given)."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def blob(data):
        d = sha(data)
        with open(os.path.join(blobs, d[7:]), "wb") as f:
            f.write(data)
        return d

    descs, diff_ids = [], []
    for tar in layers:
        comp = gzip.compress(tar, compresslevel=1, mtime=0)
        descs.append({"mediaType": OCI_LAYER_GZIP, "digest": blob(comp), "size": len(comp)})
        diff_ids.append(sha(tar))
    cfg = {"created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
           "config": dict(config or {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin:/usr/bin"]}),
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"} for i in range(len(layers))]}
    cfg_bytes = json.dumps(cfg).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": blob(cfg_bytes), "size": len(cfg_bytes)},
                           "layers": descs}).encode()
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": blob(manifest), "size": len(manifest),
                            "annotations": {"org.opencontainers.image.ref.name": ref}}]}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return sha(cfg_bytes)


# An OCI image on top of the base tar: a layer with whiteouts (a file, a dir), an opaque
# dir with new content, and new files; a third layer that modifies and hardlinks.
OCI_LAYER2 = [
    ("whiteout", "data/b"),
    ("whiteout", "gone"),
    ("dir", "data/sub"),
    ("opaque", "data/sub"),
    ("file", "data/sub/only", {"data": "only\n"}),
    ("dir", "oci"),
    ("file", "oci/f", {"data": "f1\n"}),
]
OCI_LAYER3 = [
    ("file", "oci/f", {"data": "f2\n", "mode": 0o600}),
    ("hardlink", "oci/h", {"link": "oci/f"}),
]


def load_oci_image(rt, base_tar, tmp):
    with open(base_tar, "rb") as f:
        base = f.read()
    image_id = write_oci_layout(os.path.join(tmp, "oci-layout"),
                                [base, layer_tar(OCI_LAYER2), layer_tar(OCI_LAYER3)])
    (img,) = rt.images.load(os.path.join(tmp, "oci-layout"))
    assert img.id == image_id and img.tags == ["oci:1"]
    return img


def snapshots_state(images) -> dict:
    """Every snapshot dir of the images: its tree (type and mode, owner, content hash
    or link target or device, xattrs) plus each entry's mtime and link count."""
    out = {}
    for img in images:
        for layer in img.layers:
            tree = helpers.tree_state(layer.path)
            for rel in tree:
                st = os.lstat(os.path.join(layer.path, rel))
                tree[rel] += (st.st_mtime_ns, st.st_nlink)
            out[layer.path] = tree
    return out


def blob_members(rt, image, index=-1) -> dict:
    """{name: TarInfo} of one layer blob of an image (gzip or plain tar)."""
    layer = image.layers[index]
    with open(rt.store.blobs.path(layer.digest), "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers()}


def is_whiteout(path):
    return os.path.lexists(path) and helpers.is_whiteout(path)


def opaque(path):
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def diff_lines(c):
    return [f"{'CAD'[d['Kind']]} {d['Path']}" for d in c.diff()]


# -- the image config --------------------------------------------------------------------------------

ENTRY = """#!/bin/sh
echo "argv=$*"
echo "uid=$(id -u) gid=$(id -g) user=$(id -un)"
echo "cwd=$(pwd)"
echo "greeting=$GREETING home=$HOME"
"""


@pytest.fixture
def app_image(rt, base_tar):
    """An image whose top layer rewrites /etc/passwd (uid 1000 is "app") and whose
    config has Entrypoint, Cmd, Env, WorkingDir and User."""
    base = rt.images.import_image(base_tar, "base", "1")
    script = ("set -e; echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd; "
              "echo 'app:x:1000:1001:app:/home/app:/bin/sh' >> /etc/passwd; "
              "echo 'root:x:0:' > /etc/group; echo 'appg:x:1001:' >> /etc/group; "
              "mkdir -p /home/app /srv/work; chown 1000:1001 /home/app /srv/work; "
              f"cat > /entry.sh <<'EOF'\n{ENTRY}EOF\nchmod 755 /entry.sh")
    c = sh(rt, base, script)
    img = c.commit("app", "1", changes=['ENTRYPOINT ["/entry.sh"]', 'CMD ["default", "args"]',
                                         "ENV GREETING=hello", "WORKDIR /srv/work", "USER app"])
    c.remove()
    return img


def test_run_honours_image_config(rt, app_image):
    cfg = app_image.config["config"]
    assert cfg["Entrypoint"] == ["/entry.sh"] and cfg["Cmd"] == ["default", "args"]
    assert cfg["WorkingDir"] == "/srv/work" and cfg["User"] == "app" and "GREETING=hello" in cfg["Env"]
    out = rt.containers.run("app:1", remove=True).decode().splitlines()
    assert out == ["argv=default args", "uid=1000 gid=1001 user=app", "cwd=/srv/work",
                   "greeting=hello home=/home/app"]
    # a command replaces Cmd, the entrypoint stays
    out = rt.containers.run("app:1", ["one", "two"], remove=True).decode().splitlines()
    assert out[0] == "argv=one two" and out[1] == "uid=1000 gid=1001 user=app"
    # an entrypoint given here resets Cmd
    assert rt.containers.run("app:1", entrypoint=["/bin/echo"], remove=True) == b"\n"
    out = rt.containers.run("app:1", ["-c", "echo $GREETING; pwd; id -u"], entrypoint=["/bin/sh"], remove=True)
    assert out.decode().split() == ["hello", "/srv/work", "1000"]
    # environment, user and working dir given here win
    out = rt.containers.run("app:1", ["x"], environment={"GREETING": "bye"}, user="0", working_dir="/tmp",
                            remove=True).decode().splitlines()
    assert out == ["argv=x", "uid=0 gid=0 user=root", "cwd=/tmp", "greeting=bye home=/root"]
    out = rt.containers.run("app:1", ["x"], user="app:0", remove=True).decode().splitlines()
    assert out[1] == "uid=1000 gid=0 user=app"
    # the top layer's passwd wins: the base's "user" (uid 1000 there) is not in this image
    with pytest.raises(InvalidArgument, match="user"):
        rt.containers.run("app:1", ["x"], user="user", remove=True)
    # a non-zero exit is a ContainerError carrying the status and stderr; --rm still removes
    with pytest.raises(ContainerError) as ei:
        rt.containers.run("app:1", ["-c", "echo oops >&2; exit 3"], entrypoint=["/bin/sh"], remove=True)
    assert ei.value.exit_status == 3 and b"oops" in ei.value.stderr
    assert rt.containers.list(all=True) == []
    check_store(rt)


def test_container_attrs_and_list(rt, app_image):
    c = rt.containers.create("app:1", name="web", environment=["EXTRA=1"])
    a = c.attrs
    assert a["Name"] == "/web" and a["Image"] == app_image.id and a["State"]["Status"] == "created"
    assert a["Path"] == "/entry.sh" and a["Args"] == ["default", "args"]
    assert a["Config"]["User"] == "app" and a["Config"]["WorkingDir"] == "/srv/work"
    assert "EXTRA=1" in a["Config"]["Env"] and "GREETING=hello" in a["Config"]["Env"]
    assert [x.name for x in rt.containers.list()] == []  # not running
    assert [x.name for x in rt.containers.list(all=True)] == ["web"]
    assert rt.containers.get(c.id[:10]).name == "web" and rt.containers.get("web").id == c.id
    rc, out, _ = run_in(c)
    assert rc == 0 and out.startswith("argv=default args\n")
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 0
    c.remove()
    check_store(rt)


# -- the union filesystem ----------------------------------------------------------------------------

def test_layered_image_snapshots(drt, base_tar):
    """Commits turn container changes into layers: whiteouts and opaque dirs (or
    whiteouts of the old content, with the copy driver) in the snapshots, `.wh.`
    entries in the blobs, and nothing else (not the mount points pyrt adds)."""
    rt = drt
    img = build_layered(rt, base_tar)
    assert len(img.layers) == 3
    l1, l2, l3 = (layer.path for layer in img.layers)
    assert os.path.isfile(os.path.join(l1, "data/a"))
    assert os.path.samefile(os.path.join(l1, "data/hl1"), os.path.join(l1, "data/hl2"))
    assert os.getxattr(os.path.join(l1, "data/xattr"), "user.test") == b"hello"
    st = os.lstat(os.path.join(l1, "data/owned"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o640)
    assert stat.S_IMODE(os.lstat(os.path.join(l1, "data/suid")).st_mode) == 0o4755
    assert is_whiteout(os.path.join(l2, "data/a"))
    assert open(os.path.join(l2, "data/b")).read() == "b2\n"
    assert is_whiteout(os.path.join(l3, "gone"))
    m2, m3 = blob_members(rt, img, 1), blob_members(rt, img, 2)
    assert set(m2) == {"data", "data/.wh.a", "data/b", "data/l2new", "l2dir", "l2dir/f"}
    common3 = {".wh.gone", "data", "data/sub", "data/sub/n", "keep", "keep/k2"}
    if rt.storage_driver == "overlay":
        assert set(m3) == common3 | {"data/sub/.wh..wh..opq"}
        assert opaque(os.path.join(l3, "data/sub")) and os.listdir(os.path.join(l3, "data/sub")) == ["n"]
    else:  # by comparison: the old content of the recreated dir deleted one by one (or opaque)
        assert set(m3) in (common3 | {"data/sub/.wh..wh..opq"},
                           common3 | {"data/sub/.wh.x", "data/sub/.wh.y", "data/sub/.wh.deep"})
    out = rt.containers.run(img, ["sh", "-c", "ls /data /data/sub; ls /gone 2>&1; cat /data/b"], remove=True)
    assert out.decode().split("\n") == [
        "/data:", "b", "hl1", "hl2", "l2new", "link", "owned", "sub", "suid", "xattr", "",
        "/data/sub:", "n", "ls: /gone: No such file or directory", "b2", ""]


# Writing through a hardlink of the image and linking an image file: overlay copies
# the file up (the link is broken, the linked file is changed); the copy driver keeps
# the image's hardlinks in the container's root (both names change, the linked file
# is the same).
HARDLINKS = "set -e; echo changed > /data/hl1; ln /data/owned /data/owned-link"
HARDLINKS_DIFF = {"overlay": ["C /data/hl1", "C /data/owned", "A /data/owned-link"],
                  "copy": ["C /data/hl1", "C /data/hl2", "A /data/owned-link"]}

VIEW = """
cd /
for f in data/b data/hl1 data/hl2 data/added data/added-link data/owned-link; do echo "$f $(cat $f)"; done
ls -A /data /keep /l2dir /gone
ls /tree 2>&1 || true
stat -c '%n %a %u:%g' data/suid data/xattr data/owned data/owned-link
[ data/added -ef data/added-link ] && echo linked
"""


def expected_view(driver):
    hl2 = "changed" if driver == "copy" else "shared"
    return [
        "data/b b2", "more", "data/hl1 changed", f"data/hl2 {hl2}", "data/added new", "data/added-link new",
        "data/owned-link o",
        "/data:", "added", "added-link", "b", "hl1", "hl2", "link", "owned", "owned-link", "sub", "suid", "xattr",
        "", "/gone:", "back", "", "/keep:", "k1-renamed", "k2", "", "/l2dir:", "fresh",
        "ls: /tree: No such file or directory",
        "data/suid 700 0:0", "data/xattr 644 1000:1000", "data/owned 640 1000:1000", "data/owned-link 640 1000:1000",
        "linked"]


def test_union_filesystem_never_modifies_snapshots(drt, base_tar, tmp_shm):
    rt = drt
    img = build_layered(rt, base_tar)
    oci = load_oci_image(rt, base_tar, tmp_shm)
    assert oci.layers[0].chain_id == rt.images.get("base:1").layers[0].chain_id  # shared base snapshot
    before = snapshots_state([img, oci])
    assert len(before) == 5

    # the container sees its changes
    c = rt.containers.create(img, ["sh", "-c", CHANGES + HARDLINKS + VIEW], name="changer")
    rc, out, err = run_in(c)
    assert rc == 0, err
    assert out.splitlines() == expected_view(rt.storage_driver)
    # another container of the image sees the image as it was
    out = rt.containers.run(img, ["sh", "-c", "cat /data/hl1 /data/hl2 /data/b /data/l2new /keep/k1; ls /tree"],
                            remove=True)
    assert out.decode().split() == ["shared", "shared", "b2", "l2", "k1", "t1", "t2"]

    # an OCI image's whiteouts and opaque dir, and changes on top of them
    script = ("set -e; ls -A /data /data/sub /oci; cat /oci/f; stat -c '%a %h' /oci/h; ls /gone 2>&1 || true; "
              "echo w >> /oci/h; rm -rf /data/sub; mkdir /data/sub; touch /data/sub/again; chmod 700 /oci; "
              "chown -R 1000:1000 /keep; ln /keep/k1 /keep/k1-link; mv /keep /keep2; ls -A /data/sub /keep2; "
              "cat /oci/f")
    c3 = rt.containers.create(oci, ["sh", "-c", script])
    rc, out, err = run_in(c3)
    assert rc == 0, err
    # overlay copies up the written name only: the image's hardlink is broken; the
    # copy driver keeps it in the container's root
    linked = ["w"] if rt.storage_driver == "copy" else []
    assert out.splitlines() == [
        "/data:", "a", "hl1", "hl2", "link", "owned", "sub", "suid", "xattr", "",
        "/data/sub:", "only", "", "/oci:", "f", "h", "f2", "600 2", "ls: /gone: No such file or directory",
        "/data/sub:", "again", "", "/keep2:", "k1", "k1-link", "k2", "f2"] + linked

    assert snapshots_state([img, oci]) == before
    for cont in rt.containers.list(all=True):
        cont.remove()
    assert snapshots_state([img, oci]) == before
    check_store(rt)


def test_restarted_container_keeps_its_changes(drt, base_tar):
    rt = drt
    rt.images.import_image(base_tar, "base", "1")
    c = rt.containers.create("base:1", ["sh", "-c", "cat /data/count 2>/dev/null; echo x >> /data/count"])
    assert run_in(c)[:2] == (0, "")
    assert run_in(c)[:2] == (0, "x\n")
    assert run_in(rt.containers.get(c.id))[:2] == (0, "x\nx\n")
    assert diff_lines(c) == ["C /data", "A /data/count"]
    c.remove()
    check_store(rt)


@pytest.fixture(scope="module", params=["overlay", "copy"])
def committed(request, shm_base, base_tar):
    """With each storage driver, a store of its own (made once for the tests below):
    the layered image, a container c1 of it that ran CHANGES + HARDLINKS, and
    committed:1 committed from c1. A namespace: rt, driver, img, before (the image's
    snapshots before), c, diff (c's diff before the commit: lines, entries), new.
    The last test (..._again_...) removes c and checks the store."""
    base = tempfile.mkdtemp(prefix=f"committed-{request.param}-", dir=shm_base)
    rt = pyrt.Runtime(os.path.join(base, "store"), storage_driver=request.param, quiet=True)
    try:
        img = build_layered(rt, base_tar)
        before = snapshots_state([img])
        c = sh(rt, img, CHANGES + HARDLINKS, name="c1")
        diff = (diff_lines(c), c.diff())
        new = c.commit("committed", "1", message="my changes",
                       changes=['CMD ["/bin/sh", "-c", "cat /data/added"]', "ENV A=b", "WORKDIR /l2dir"])
        yield types.SimpleNamespace(rt=rt, driver=rt.storage_driver, img=img, before=before, c=c, diff=diff,
                                    new=new)
        try:
            c.remove()  # (removed by the last test, unless it did not run)
        except ContainerNotFound:
            pass
    finally:
        rt.close()
        helpers.detach_mounts_under(base)
        shutil.rmtree(base, ignore_errors=True)


def test_diff_and_commit(committed):
    """The container's diff (taken before the commit) and the committed image."""
    driver, img, new = committed.driver, committed.img, committed.new
    lines, diff = committed.diff
    assert lines == sorted(CHANGES_DIFF + HARDLINKS_DIFF[driver], key=lambda x: x[2:])
    assert diff[0] == {"Path": "/data", "Kind": 0}

    assert new.tags == ["committed:1"] and new.parent == img.id
    assert [layer.chain_id for layer in new.layers[:3]] == [layer.chain_id for layer in img.layers]
    assert len(new.layers) == 4
    assert new.config["rootfs"]["diff_ids"] == img.config["rootfs"]["diff_ids"] + [new.layers[-1].diff_id]
    hist = new.history()
    assert len(hist) == len(img.history()) + 1
    assert hist[0]["Comment"] == "my changes" and hist[0]["Id"] == new.id and hist[1]["Id"] == img.id
    assert new.attrs["Comment"] == "my changes" and new.attrs["Parent"] == img.id
    cfg = new.config["config"]
    assert cfg["Cmd"] == ["/bin/sh", "-c", "cat /data/added"] and cfg["WorkingDir"] == "/l2dir"
    assert "A=b" in cfg["Env"]


def test_diff_and_commit_layer_contents(committed):
    rt, new = committed.rt, committed.new
    # the committed layer: whiteouts for deletions, an opaque dir (overlay) or
    # whiteouts of its old content (copy), a hardlink kept
    members = blob_members(rt, new)
    assert {"data/.wh.l2new", "keep/.wh.k1", ".wh.tree", "data/added", "gone/back", "l2dir/fresh"} <= set(members)
    assert "l2dir/.wh..wh..opq" in members or "l2dir/.wh.f" in members
    assert not any(n.startswith("proc") or n.startswith("etc/host") or n.startswith("etc/resolv")
                   for n in members), sorted(members)
    links = {members["data/added"].isreg() and members["data/added-link"].islnk(),
             members["data/added-link"].isreg() and members["data/added"].islnk()}
    assert True in links
    assert members["data/xattr"].uid == 1000 and members["data/xattr"].pax_headers.get(
        "SCHILY.xattr.user.test") == "hello"
    snap = new.layers[-1].path
    assert is_whiteout(os.path.join(snap, "data/l2new")) and is_whiteout(os.path.join(snap, "tree"))
    assert os.getxattr(os.path.join(snap, "data/xattr"), "user.test") == b"hello"


def test_diff_and_commit_image_runs_with_the_changes(committed):
    rt, driver = committed.rt, committed.driver
    # a container of the new image sees the changes, deletions included
    assert rt.containers.run("committed:1", remove=True) == b"new\n"
    c2 = rt.containers.create("committed:1", ["sh", "-c", "pwd; echo $A" + VIEW])
    rc, out, err = run_in(c2)
    assert rc == 0, err
    assert out.splitlines() == ["/l2dir", "b"] + expected_view(driver)
    assert c2.diff() == []
    c2.remove()


def test_diff_and_commit_again_gives_the_same_layer(committed):
    rt, img, c, new = committed.rt, committed.img, committed.c, committed.new
    # the same container committed again: the same layer
    again = c.commit(message="again")
    assert again.layers[-1].diff_id == new.layers[-1].diff_id
    assert again.layers[-1].digest == new.layers[-1].digest
    assert again.id != new.id and again.parent == img.id and again.tags == []
    assert rt.store.db.query_one("SELECT COUNT(*) FROM layers")[0] == 4
    assert snapshots_state([img]) == committed.before
    c.remove()
    check_store(rt)


def test_renamed_image_dir_diff_and_commit(drt, base_tar):
    """A dir of the image renamed in a container is wholly in the container's layer
    (overlay is mounted with redirect_dir=off and metacopy=off, whatever the host's
    defaults, so the upper dir reads back as a layer)."""
    rt = drt
    rt.images.import_image(base_tar, "base", "1")
    c = sh(rt, "base:1", "mv /keep /keep2; chmod 600 /data/a")
    if rt.storage_driver == "overlay":
        upper = os.path.join(c.dir, "upper")
        assert sorted(os.listdir(os.path.join(upper, "keep2"))) == ["k1", "k2"]
        for path in ("keep2", "data/a"):
            xattrs = os.listxattr(os.path.join(upper, path))
            assert "trusted.overlay.redirect" not in xattrs and "trusted.overlay.metacopy" not in xattrs
    assert diff_lines(c) == ["C /data", "C /data/a", "D /keep", "A /keep2", "A /keep2/k1", "A /keep2/k2"]
    c.commit("renamed", "1")
    c.remove()
    out = rt.containers.run("renamed:1", ["sh", "-c", "cat /keep2/k1 /keep2/k2 /data/a; ls /keep 2>&1; true"],
                            remove=True)
    assert out == b"k1\nk2\na\nls: /keep: No such file or directory\n"


def test_same_change_same_layer_digest(rt, base_tar):
    """Two containers making the same change (same file times) give the same layer:
    entries sorted, metadata normalized."""
    base = rt.images.import_image(base_tar, "base", "1")
    script = ("set -e; mkdir -p /det/sub; echo same > /det/sub/f; echo more >> /data/b; rm /data/a; "
              "rm -rf /data/sub; mkdir /data/sub; echo s > /data/sub/s; "
              "touch -d '2024-01-01 00:00:00' /det/sub/f /det/sub /det /data/b /data/sub/s /data/sub /data")
    layers = []
    for i in range(2):
        c = sh(rt, base, script, name=f"same{i}")
        layers.append(c.commit().layers[-1])
        c.remove()
    assert layers[0].diff_id == layers[1].diff_id and layers[0].digest == layers[1].digest


def test_deletion_time_does_not_change_the_layer(rt, base_tar):
    base = rt.images.import_image(base_tar, "base", "1")
    layers = []
    for when in (1600000000, 1700000000):
        c = sh(rt, base, "rm /data/a; touch -d '2024-01-01 00:00:00' /data")
        # as if the deletion had been made at another time (no waiting in tests)
        os.utime(os.path.join(c.dir, "upper", "data", "a"), (when, when), follow_symlinks=False)
        layers.append(c.commit().layers[-1])
        c.remove()
    assert layers[0].diff_id == layers[1].diff_id


def test_tag_intermediate_image_by_id_prefix(rt, base_tar):
    base = rt.images.import_image(base_tar, "base", "1")
    c = sh(rt, base, "echo 1 > /one")
    mid = c.commit()  # untagged
    c.remove()
    c = sh(rt, mid, "echo 2 > /two")
    top = c.commit("top", "1")
    c.remove()
    assert top.parent == mid.id and mid.parent == base.id
    assert mid.id not in {i.id for i in rt.images.list()}
    assert mid.id in {i.id for i in rt.images.list(all=True)}
    rt.images.tag(mid.id[7:17], "mid:1")
    listed = {i.id: i.tags for i in rt.images.list()}
    assert listed[mid.id] == ["mid:1"] and listed[top.id] == ["top:1"]
    assert rt.containers.run("mid:1", ["sh", "-c", "cat /one; ls /two 2>&1; true"], remove=True) == \
        b"1\nls: /two: No such file or directory\n"
    assert [h["Tags"] for h in rt.images.history("top:1")][:3] == [["top:1"], ["mid:1"], ["base:1"]]
    check_store(rt)


# -- many layers ---------------------------------------------------------------------------------------

def test_more_than_128_layers(drt, base_tar, tmp_shm):
    rt = drt
    with open(base_tar, "rb") as f:
        tars = [f.read()]
    tars.append(layer_tar([("dir", "layers"), ("file", "layers/f1", {"data": "bottom\n"}),
                           ("file", "layers/gone", {"data": "x\n"})]))
    for i in range(2, 130):
        tars.append(layer_tar([("file", f"layers/f{i}", {"data": f"layer {i}\n"})]))
    tars[-1] = layer_tar([("file", "layers/f129", {"data": "top\n"}), ("whiteout", "layers/gone")])
    image_id = write_oci_layout(os.path.join(tmp_shm, "many"), tars, ref="many:1")
    (img,) = rt.images.load(os.path.join(tmp_shm, "many"))
    assert img.id == image_id and len(img.layers) == 130
    out = rt.containers.run("many:1", ["sh", "-c", "cat /layers/f1 /layers/f64 /layers/f129; ls /layers | wc -l; "
                                                   "ls /layers/gone 2>&1; true"], remove=True)
    assert out.decode().splitlines() == ["bottom", "layer 64", "top", "129",
                                         "ls: /layers/gone: No such file or directory"]
    c = sh(rt, "many:1", "echo new >> /layers/f1; rm /layers/f2")
    assert diff_lines(c) == ["C /layers", "C /layers/f1", "D /layers/f2"]
    more = c.commit("many", "2")
    c.remove()
    assert len(more.layers) == 131
    out = rt.containers.run("many:2", ["sh", "-c", "cat /layers/f1; ls /layers | wc -l"], remove=True)
    assert out.decode().splitlines() == ["bottom", "new", "128"]
    check_store(rt)


# -- export -------------------------------------------------------------------------------------------

def _hidden(rel, hidden) -> bool:
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        p = "/".join(parts[:i])
        if p in hidden or (i < len(parts) and p + "/" in hidden):
            return True
    return False


def union_files(img) -> set:
    """The paths an image shows: its layers merged top-down, whiteouts hiding a path
    below, opaque dirs ("dir/" in `hidden`) hiding what is below them."""
    seen, hidden = set(), set()
    for layer in reversed(img.layers):
        new_hidden = set()
        for dirpath, dirnames, filenames in os.walk(layer.path):
            rel_dir = os.path.relpath(dirpath, layer.path)
            for n in dirnames + filenames:
                rel = n if rel_dir == "." else f"{rel_dir}/{n}"
                if _hidden(rel, hidden):
                    continue
                full = os.path.join(dirpath, n)
                if is_whiteout(full):
                    new_hidden.add(rel)
                    continue
                seen.add(rel)
                if os.path.islink(full) or not os.path.isdir(full):
                    new_hidden.add(rel)
                elif opaque(full):
                    new_hidden.add(rel + "/")
        hidden |= new_hidden
    return seen


def test_export_has_the_whole_filesystem(drt, base_tar, tmp_shm):
    rt = drt
    img = build_layered(rt, base_tar)
    c = sh(rt, img, CHANGES + HARDLINKS, name="exp")
    out = os.path.join(tmp_shm, "export.tar")
    with open(out, "wb") as f:
        c.export(f)
    with tarfile.open(out) as tf:
        members = {m.name.strip("./").rstrip("/"): m for m in tf.getmembers()}
        content = {n: tf.extractfile(m).read() for n, m in members.items() if m.isreg()}
    names = set(members) - {""}
    assert not [n for n in names if ".wh." in os.path.basename(n)]
    assert not [n for n, m in members.items() if m.ischr() and m.devmajor == 0 and m.devminor == 0]
    deleted = {"data/l2new", "keep/k1", "tree", "tree/t1", "tree/t2", "tree/t2/t3", "l2dir/f", "data/a",
               "gone/g1", "data/sub/x"}
    assert not names & deleted
    added = {"data/added", "data/added-link", "keep/k1-renamed", "l2dir/fresh", "gone", "gone/back",
             "data/owned-link"}
    image_paths = {"bin/busybox", "bin/sh", "etc/passwd", "data/b", "data/hl1", "data/hl2", "data/sub/n",
                   "data/link", "keep/k2", "home/user", "tmp"}
    assert added | image_paths <= names
    # the image's files minus the deletions, plus the additions; the rest are the
    # mount points pyrt adds (/etc/hosts, /etc/resolv.conf)
    expected = (union_files(img) - deleted) | added
    assert names - expected <= {"etc/hosts", "etc/resolv.conf"}, names - expected
    assert expected - names == set(), expected - names
    assert content["data/b"] == b"b2\nmore\n" and content.get("data/added", b"new\n") == b"new\n"
    assert content["bin/busybox"] == open(os.path.join(img.layers[0].path, "bin/busybox"), "rb").read()
    assert members["data/suid"].mode == 0o700 and members["data/xattr"].uid == 1000
    assert members["data/link"].issym() and members["data/link"].linkname == "a"
    added_link = members["data/added-link"] if members["data/added-link"].islnk() else members["data/added"]
    assert added_link.islnk()
    c.remove()
    check_store(rt)


def test_export_of_an_image_with_whiteouts_and_an_opaque_dir(drt, base_tar, tmp_shm):
    """An image with whiteouts and an opaque dir, exported as it is."""
    rt = drt
    out = os.path.join(tmp_shm, "export.tar")
    oci = load_oci_image(rt, base_tar, tmp_shm)
    c = rt.containers.create(oci, ["true"])
    with open(out, "wb") as f:
        c.export(f)
    with tarfile.open(out) as tf:
        names = {m.name.strip("./").rstrip("/") for m in tf.getmembers()} - {""}
    assert names - union_files(oci) <= {"etc/hosts", "etc/resolv.conf"} and union_files(oci) <= names
    assert {n for n in names if n.startswith("data/sub/")} == {"data/sub/only"}
    assert not names & {"data/b", "gone", "gone/g1"} and {"oci/f", "oci/h", "data/a"} <= names
    c.remove()
    check_store(rt)


# -- save and load --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["oci", "docker-archive"])
def test_save_load_committed_image(rt, base_tar, tmp_shm, fmt):
    img = build_layered(rt, base_tar)
    c = sh(rt, img, "echo saved > /saved; rm /data/b")
    new = c.commit("saved", "1", message="to save", changes=["CMD cat /saved"])
    c.remove()
    out = os.path.join(tmp_shm, "saved.tar")
    rt.images.save(["saved:1"], out, format=fmt)
    with pyrt.Runtime(os.path.join(tmp_shm, "fresh"), quiet=True) as fresh:
        (loaded,) = fresh.images.load(out)
        assert loaded.id == new.id and loaded.tags == ["saved:1"]
        assert [layer.diff_id for layer in loaded.layers] == [layer.diff_id for layer in new.layers]
        if fmt == "oci":
            assert [layer.digest for layer in loaded.layers] == [layer.digest for layer in new.layers]
            assert loaded.manifest_digest == new.manifest_digest
        assert loaded.config == new.config
        assert fresh.containers.run("saved:1", remove=True) == b"saved\n"
        assert fresh.containers.run("saved:1", ["sh", "-c", "ls /data/b 2>&1; ls /data/sub"], remove=True) == \
            b"ls: /data/b: No such file or directory\nn\n"
        check_store(fresh)


# -- names, unknown objects, removal ---------------------------------------------------------------------

def test_working_dir_never_made_outside_the_root(drt, base_tar, tmp_shm):
    """An image's WorkingDir through an absolute symlink, or with `..`, is made inside
    the container's root, never on the host."""
    rt = drt
    outside = os.path.join(tmp_shm, "outside")
    os.mkdir(outside)
    with open(base_tar, "rb") as f:
        tars = [f.read(), layer_tar([("symlink", "evil", {"link": outside})])]
    write_oci_layout(os.path.join(tmp_shm, "evil"), tars, ref="evil:1",
                     config={"Cmd": ["pwd"], "WorkingDir": "/evil/sub"})
    rt.images.load(os.path.join(tmp_shm, "evil"))
    for workdir in (None, "/../../../../.." + outside + "/dots"):
        c = rt.containers.create("evil:1", working_dir=workdir)
        try:
            run_in(c)
        except pyrt.SpawnError as e:  # not made by the spawn core (reported); never made outside either
            assert e.op == "chdir"
        finally:
            c.remove()
        assert os.listdir(outside) == []
    check_store(rt)


def test_a_name_that_is_another_containers_id_never_stands_in_for_it(rt, base_tar):
    # the attack: name a container with the full id (or an id prefix) of another, so
    # that `rm -f ID` (a detached --rm container's monitor, a script) removes the wrong one
    rt.images.import_image(base_tar, "base", "1")
    victim = rt.containers.create("base:1", ["true"])
    decoy = rt.containers.create("base:1", ["true"], name=victim.id)
    prefix_decoy = rt.containers.create("base:1", ["true"], name=victim.id[:12])
    assert rt.containers.get(victim.id).id == victim.id
    rt.containers.get(victim.id).remove(force=True)
    assert {c.id for c in rt.containers.list(all=True)} == {decoy.id, prefix_decoy.id}
    # once the id is gone, the name still finds its own container, and a name wins over a prefix
    assert rt.containers.get(victim.id).id == decoy.id
    assert rt.containers.get(victim.id[:12]).id == prefix_decoy.id
    decoy.remove()
    prefix_decoy.remove()


def test_name_conflict_changes_nothing(rt, base_tar):
    rt.images.import_image(base_tar, "base", "1")
    c = rt.containers.create("base:1", ["true"], name="web")
    rows = rt.store.db.query("SELECT id, name, config, state FROM containers")
    dirs = sorted(os.listdir(os.path.join(rt.store.root, "containers")))
    with pytest.raises(Conflict, match="web.*already in use"):
        rt.containers.create("base:1", ["false"], name="web")
    with pytest.raises(Conflict, match="already in use"):
        rt.containers.run("base:1", ["true"], name="web", remove=True)
    assert [tuple(r) for r in rt.store.db.query("SELECT id, name, config, state FROM containers")] == \
        [tuple(r) for r in rows]
    assert sorted(os.listdir(os.path.join(rt.store.root, "containers"))) == dirs == [c.id]
    with pytest.raises(InvalidArgument, match="invalid container name"):
        rt.containers.create("base:1", ["true"], name="-bad/name")
    # a generated name, and the name free again once removed
    other = rt.containers.create("base:1", ["true"])
    assert other.name and other.name != "web"
    c.remove()
    again = rt.containers.create("base:1", ["true"], name="web")
    assert again.id != c.id
    again.remove()
    other.remove()
    check_store(rt)


def test_unknown_container_and_image(rt, base_tar):
    with pytest.raises(ContainerNotFound, match="nothere"):
        rt.containers.get("nothere")
    with pytest.raises(ImageNotFound):
        rt.containers.create("nothere:1", ["true"])
    with pytest.raises(ImageNotFound):
        rt.containers.run("nothere", ["true"], remove=True)
    rt.images.import_image(base_tar, "base", "1")
    with pytest.raises(ImageNotFound):
        rt.containers.create("base:2", ["true"])
    with pytest.raises(InvalidArgument, match="no command"):
        rt.containers.create("base:1")  # the imported image has no Cmd
    c = rt.containers.create("base:1", ["true"], name="gone")
    c.remove()
    with pytest.raises(ContainerNotFound):
        rt.containers.get("gone")
    with pytest.raises(ContainerNotFound):
        c.remove()
    assert rt.containers.list(all=True) == []
    check_store(rt)


def test_rm_running_container_needs_force(drt, base_tar):
    rt = drt
    rt.images.import_image(base_tar, "base", "1")
    c = rt.containers.create("base:1", ["sleep", "60"], name="sleeper")
    proc = c.start_process(stdin=pyrt.DEVNULL, stdout=pyrt.DEVNULL)
    try:
        assert [x.name for x in rt.containers.list()] == ["sleeper"]
        assert rt.containers.get("sleeper").status == "running"
        with pytest.raises(Conflict, match="running"):
            rt.containers.get("sleeper").remove()
        with pytest.raises(Conflict, match="running"):
            c.start_process()
        assert os.path.isdir(c.dir) and proc.poll() is None
        rt.containers.get("sleeper").remove(force=True)
        assert proc.wait() == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists(c.dir)
    with pytest.raises(ContainerNotFound):
        rt.containers.get("sleeper")
    assert os.listdir(os.path.join(rt.store.root, "containers")) == []
    check_store(rt)


def test_image_in_use_by_container(rt, base_tar):
    img = build_layered(rt, base_tar)
    c = rt.containers.create("layered:3", ["true"], name="user")
    with pytest.raises(Conflict, match="user"):
        rt.images.remove(img.id)
    with pytest.raises(Conflict):
        rt.images.remove("layered:3")
    c.remove()
    rt.images.remove("layered:3")
    rt.images.remove("base:2")
    rt.images.remove("base:1")
    assert rt.images.list(all=True) == []
    check_store(rt)
    assert os.listdir(rt.store.snapshots.dir) == []
