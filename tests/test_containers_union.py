"""The union filesystem of containers from images, on both storage drivers (overlay and
copy): image snapshots never modified, whiteouts and opaque dirs, changes kept across
a restart, diff and commit (their layers, reproducible digests), intermediate images."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import types

import pytest

import helpers
import pyrt
from pyrt.errors import ContainerNotFound
from imagetools import CHANGES, CHANGES_DIFF, check_store
from containertools import run_in, sh, build_layered, load_oci_image, snapshots_state, blob_members, is_whiteout, opaque, diff_lines, HARDLINKS, HARDLINKS_DIFF
from containertools import rt, drt  # noqa: F401,F811 (fixtures)


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
