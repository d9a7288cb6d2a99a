"""The image store: import, create (commit), tags, rmi/prune semantics, reference
resolution, layer sharing, df, from_host, concurrency and crash safety, the CLI.

Stores live on /dev/shm (tmp_shm). Test images are made of tars built here."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from pyrt.errors import Conflict, ImageFormatError, ImageNotFound, InvalidArgument, PyrtError
from imagetools import OCIBuilder, base_entries, check_consistent, make_tar, sha, store_state, tar_dir

# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture
def rootfs_tar(rootfs, tmp_shm):
    return tar_dir(rootfs, os.path.join(tmp_shm, "rootfs.tar"))


@pytest.fixture
def two_images(rt, tmp_shm):
    """base:1 (one layer) and child:1 (base's layer + one more), from an OCI layout."""
    b = OCIBuilder(os.path.join(tmp_shm, "layout"))
    base = make_tar(base_entries())
    top = make_tar([("file", "data/c", "c\n"), ("whiteout", "etc/motd")])
    a = b.image([base], ref="base:1")
    c = b.image([base, top], ref="child:1")
    b.write()
    imgs = rt.images.load(b.path)
    return a, c, imgs


# -- the store -------------------------------------------------------------------------------------

def test_store_layout_modes_and_db(rt):
    store = rt.store
    for d in ("", "blobs", "blobs/sha256", "snapshots", "tmp"):
        assert stat.S_IMODE(os.stat(os.path.join(store.root, d)).st_mode) == 0o700, d
    assert store.db.query_one("PRAGMA journal_mode")[0] == "wal"
    assert store.db.query_one("PRAGMA foreign_keys")[0] == 1
    tables = set(store.db.dump())
    assert {"layers", "images", "image_layers", "tags", "containers"} <= tables
    cols = {r[1] for r in store.db.query("PRAGMA table_info(containers)")}
    assert {"id", "name", "image_id", "created", "config", "state"} <= cols


def test_a_store_made_before_a_table_was_added_gets_it_on_open(tmp_shm):
    """A store whose schema version is current but which lacks a table, index or view
    of the schema (made before it was added): the next open creates it, rows kept."""
    import sqlite3
    from pyrt.runtime import Runtime
    from pyrt.store.db import SCHEMA_NAMES
    root = os.path.join(tmp_shm, "store")
    r = Runtime(root)
    r.store.db.query("SELECT 1")
    r.close()
    conn = sqlite3.connect(os.path.join(root, "pyrt.db"))
    conn.execute("INSERT INTO tags VALUES ('kept', '1', 'sha256:x', 0)")
    conn.execute("DROP TABLE blob_sources")
    conn.execute("DROP INDEX tags_image")
    conn.commit()
    conn.close()
    r = Runtime(root)
    try:
        names = {row[0] for row in r.store.db.query("SELECT name FROM sqlite_master")}
        assert SCHEMA_NAMES <= names and {"blob_sources", "tags_image"} <= names
        assert [tuple(t) for t in r.store.db.query("SELECT repository, tag FROM tags")] == [("kept", "1")]
    finally:
        r.close()


def test_stale_temp_entries_removed_on_open(tmp_shm):
    from pyrt.runtime import Runtime
    root = os.path.join(tmp_shm, "store")
    r = Runtime(root)
    r.store  # creates it
    r.close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    os.mkdir(os.path.join(root, "tmp", f"{dead}-stage-x"))
    os.mkdir(os.path.join(root, "snapshots", f".tmp-{dead}-y"))
    mine = os.path.join(root, "tmp", f"{os.getpid()}-keep")
    os.mkdir(mine)
    r = Runtime(root)
    try:
        r.store
        assert os.listdir(os.path.join(root, "tmp")) == [os.path.basename(mine)]
        assert os.listdir(os.path.join(root, "snapshots")) == []
    finally:
        os.rmdir(mine)
        r.close()


def test_blob_digest_validated_before_paths(rt):
    for bad in ("sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:" + "0" * 32, "../x", ""):
        with pytest.raises(ImageFormatError):
            rt.store.blobs.path(bad)


# -- import, get, tags -------------------------------------------------------------------------------

def test_import_rootfs_tar(rt, rootfs_tar, rootfs):
    img = rt.images.import_image(rootfs_tar, "myos", "1", changes=["CMD [\"/bin/sh\"]", "ENV A=1 B=\"two words\"",
                                                                    "WORKDIR /srv", "LABEL k=v"])
    assert img.tags == ["myos:1"]
    assert img.id.startswith("sha256:") and len(img.id) == 71
    assert img.short_id == img.id[:19]
    assert sha(rt.store.blobs.read(img.id)) == img.id
    cfg = img.config["config"]
    assert cfg["Cmd"] == ["/bin/sh"] and cfg["WorkingDir"] == "/srv" and cfg["Labels"] == {"k": "v"}
    assert "A=1" in cfg["Env"] and "B=two words" in cfg["Env"]
    assert len(img.layers) == 1
    layer = img.layers[0]
    assert layer.path == layer["path"] == rt.store.snapshots.path(layer["chain_id"])
    assert layer["chain_id"] == layer["diff_id"] == img.config["rootfs"]["diff_ids"][0]
    with open(os.path.join(layer["path"], "etc", "passwd")) as f, open(os.path.join(rootfs, "etc", "passwd")) as g:
        assert f.read() == g.read()
    assert img.size > 0 and img.parent is None
    assert img.history()[0]["Comment"] == "Imported"
    m = img.manifest
    assert m["config"]["digest"] == img.id and m["layers"][0]["digest"] == layer["digest"]
    check_consistent(rt)


def test_import_directory_and_compressed_tar(rt, rootfs, tmp_shm):
    a = rt.images.import_image(rootfs, "fromdir")
    assert a.tags == ["fromdir:latest"]
    assert os.path.isfile(os.path.join(a.layers[0]["path"], "etc", "passwd"))
    tarpath = os.path.join(tmp_shm, "r.tar.gz")
    with open(tarpath, "wb") as f:
        f.write(gzip.compress(make_tar(base_entries("gz")), mtime=0))
    b = rt.images.import_image(tarpath, "fromgz", "x")
    assert b.layers[0]["media_type"].endswith("+gzip")
    with open(os.path.join(b.layers[0]["path"], "etc", "os-release")) as f:
        assert f.read() == "NAME=gz\n"
    # a file object works too
    with open(tarpath, "rb") as f:
        c = rt.images.import_image(f)
    assert c.tags == [] and c.layers[0]["chain_id"] == b.layers[0]["chain_id"]
    assert c.layers[0]["path"] == b.layers[0]["path"]  # the same layer is unpacked once
    check_consistent(rt)


def test_import_bad_tar_leaves_store_unchanged(rt, tmp_shm):
    rt.images.import_image(io.BytesIO(make_tar(base_entries())), "ok")
    before = store_state(rt)
    bad = make_tar([("file", "x", "data" * 1000)])[:1500]
    with pytest.raises(PyrtError):
        rt.images.import_image(io.BytesIO(bad), "bad")
    hostile = make_tar([("file", "../escape", "x")])
    with pytest.raises(PyrtError):
        rt.images.import_image(io.BytesIO(hostile), "bad")
    assert store_state(rt) == before
    assert not os.path.exists(os.path.join(tmp_shm, "escape"))


def test_get_by_every_kind_of_reference(rt, two_images):
    a, c, _ = two_images
    imgs = rt.images
    assert imgs.get("base:1").id == a["id"]
    assert imgs.get(a["id"]).id == a["id"]
    assert imgs.get(a["id"][7:]).id == a["id"]
    assert imgs.get(a["id"][7:11]).id == a["id"] or a["id"][7:11] == c["id"][7:11]
    assert imgs.get(a["id"][:19]).id == a["id"]
    assert imgs.get(f"base@{a['manifest']}").id == a["id"]
    assert imgs.get("docker.io/library/base:1").id == a["id"]
    imgs.tag("base:1", "base")
    assert imgs.get("base").id == a["id"]  # the default tag is latest
    with pytest.raises(ImageNotFound):
        imgs.get("child")  # no child:latest
    with pytest.raises(ImageNotFound):
        imgs.get("nothere:1")
    with pytest.raises(ImageNotFound):
        imgs.get("sha256:" + "0" * 64)
    with pytest.raises(InvalidArgument):
        imgs.get("Bad Name!")
    # a name is looked up before an id prefix
    imgs.tag("child:1", c["id"][7:11], "latest")
    assert imgs.get(c["id"][7:11]).id == c["id"]


def test_ambiguous_prefix_guaranteed(rt, tmp_shm):
    """Two configs brute-forced to share a 4-digit id prefix."""
    b = OCIBuilder(os.path.join(tmp_shm, "layout"))
    base = make_tar(base_entries())
    diff = sha(base)
    found = {}
    i = 0
    while True:
        i += 1
        cfg = {"created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
               "config": {"Labels": {"n": str(i)}}, "rootfs": {"type": "layers", "diff_ids": [diff]},
               "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "layer 0"}]}
        d = sha(json.dumps(cfg).encode())[7:11]
        if d in found:
            pair = [found[d], cfg]
            break
        found[d] = cfg
    infos = [b.image([base], config_hook=lambda c, p=p: (c.clear(), c.update(p))) for p in pair]
    b.write()
    rt.images.load(b.path)
    prefix = infos[0]["id"][7:11]
    assert infos[1]["id"][7:11] == prefix
    with pytest.raises(InvalidArgument, match="ambiguous"):
        rt.images.get(prefix)
    with pytest.raises(InvalidArgument, match="ambiguous"):
        rt.images.remove(prefix)
    common = os.path.commonprefix([infos[0]["id"], infos[1]["id"]])
    assert rt.images.get(infos[0]["id"][:len(common) + 1]).id == infos[0]["id"]


def test_tag_list_and_validation(rt, two_images):
    a, c, _ = two_images
    imgs = rt.images
    assert imgs.tag(a["id"][7:19], "myrepo/base", "v2")
    assert imgs.tag("base:1", "localhost:5000/x/y:z")
    assert sorted(imgs.get("base:1").tags) == ["base:1", "localhost:5000/x/y:z", "myrepo/base:v2"]
    for bad_repo, bad_tag in (("UPPER", "x"), ("a b", "x"), ("ok", "-bad"), ("ok", "a" * 129), ("", "x")):
        with pytest.raises(InvalidArgument):
            imgs.tag("base:1", bad_repo, bad_tag)
    # moving a tag leaves the old image untagged (dangling)
    imgs.tag("child:1", "base", "1")
    assert imgs.get("base:1").id == c["id"]
    names = {t for i in imgs.list() for t in i.tags}
    assert "base:1" in names and "child:1" in names
    assert [i.id for i in imgs.list(name="child")] == [c["id"]]
    assert {i.id for i in imgs.list(name="myrepo/*")} == {a["id"]}


# -- create (commit) ---------------------------------------------------------------------------------

def _upper_with_changes(path):
    """An overlay-style upper dir: a new file, a whiteout (0:0 char device), an opaque dir."""
    os.makedirs(os.path.join(path, "etc"))
    with open(os.path.join(path, "new.txt"), "w") as f:
        f.write("new\n")
    os.mknod(os.path.join(path, "etc", "motd"), stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.makedirs(os.path.join(path, "data"))
    os.setxattr(os.path.join(path, "data"), "trusted.overlay.opaque", b"y")
    with open(os.path.join(path, "data", "only"), "w") as f:
        f.write("only\n")
    return path


@pytest.fixture
def created(rt, two_images, tmp_shm):
    """myos:2, created from base:1 with a layer written from an upper dir (with a
    whiteout and an opaque dir) and config changes: (parent, layer, image)."""
    from pyrt.store.commit import write_layer_blob
    parent = rt.images.get("base:1")
    upper = _upper_with_changes(os.path.join(tmp_shm, "upper"))
    out = rt.store.mkdtemp("t-")
    layer = write_layer_blob(upper, out)
    img = rt.images.create(parent, layer, config_changes={"Cmd": ["/bin/hello"], "Env": ["PATH=/usr/bin:/bin"],
                                                          "WorkingDir": "/data", "Labels": {"x": "y"},
                                                          "ExposedPorts": ["80"], "User": "1000"},
                           comment="add new", created_by="sh -c edit", author="me", repository="myos", tag="2")
    os.rmdir(out)
    return parent, layer, img


def test_create_from_parent_commit_semantics(rt, created):
    parent, layer, img = created
    assert not os.path.exists(layer["path"])  # moved into the store
    assert img.parent == parent.id and img.tags == ["myos:2"]
    cfg = img.config
    assert cfg["rootfs"]["diff_ids"] == parent.config["rootfs"]["diff_ids"] + [layer["diff_id"]]
    assert cfg["history"][-1]["comment"] == "add new" and cfg["history"][-1]["created_by"] == "sh -c edit"
    assert cfg["author"] == "me"
    cc = cfg["config"]
    assert cc["Cmd"] == ["/bin/hello"] and cc["Env"] == ["PATH=/usr/bin:/bin"] and cc["WorkingDir"] == "/data"
    assert cc["ExposedPorts"] == {"80/tcp": {}} and cc["User"] == "1000" and cc["Labels"] == {"x": "y"}
    assert [lyr["path"] for lyr in img.layers[:1]] == [lyr["path"] for lyr in parent.layers]
    top = img.layers[-1]["path"]
    st = os.lstat(os.path.join(top, "etc", "motd"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # whiteout, overlay form
    assert os.getxattr(os.path.join(top, "data"), "trusted.overlay.opaque") == b"y"
    assert img.manifest["layers"][-1]["digest"] == layer["digest"]
    h = img.history()
    assert h[0]["Id"] == img.id and h[0]["Comment"] == "add new" and h[1]["Id"] == parent.id
    check_consistent(rt)


def test_create_untagged_intermediate_is_listed_with_all_only(rt, created, tmp_shm):
    from pyrt.store.commit import write_layer_blob
    parent, layer, img = created
    # an untagged intermediate: listed with all=True only
    out = rt.store.mkdtemp("t-")
    os.makedirs(os.path.join(tmp_shm, "u2"))
    with open(os.path.join(tmp_shm, "u2", "more"), "w") as f:
        f.write("more")
    mid = rt.images.create(img, write_layer_blob(os.path.join(tmp_shm, "u2"), out))
    os.makedirs(os.path.join(tmp_shm, "u3"))
    top_img = rt.images.create(mid, write_layer_blob(os.path.join(tmp_shm, "u3"), out), repository="myos:3")
    os.rmdir(out)
    assert top_img.parent == mid.id
    assert mid.id not in [i.id for i in rt.images.list()]
    assert mid.id in [i.id for i in rt.images.list(all=True)]
    rt.images.tag(mid.id, "promoted")
    assert mid.id in [i.id for i in rt.images.list()]
    check_consistent(rt)


def test_create_with_string_changes_and_ready_snapshot(rt, two_images, tmp_shm):
    from pyrt.store.commit import write_layer_blob
    upper = os.path.join(tmp_shm, "upper")
    os.makedirs(upper)
    with open(os.path.join(upper, "f"), "w") as f:
        f.write("f")
    out = rt.store.mkdtemp("t-")
    layer = write_layer_blob(upper, out, compression=None)
    snap = os.path.join(tmp_shm, "ready")
    os.makedirs(snap)
    with open(os.path.join(snap, "f"), "w") as f:
        f.write("f")
    img = rt.images.create("base:1", layer, config_changes=["CMD echo hi", "ENV X=1"], snapshot_dir=snap)
    assert img.config["config"]["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert "X=1" in img.config["config"]["Env"]
    assert not os.path.exists(snap)
    assert os.path.isfile(os.path.join(img.layers[-1]["path"], "f"))
    layer = write_layer_blob(upper, out, compression=None)
    with pytest.raises(InvalidArgument):
        rt.images.create("base:1", dict(layer, digest="sha256:" + "0" * 64))
    os.unlink(layer["path"])
    os.rmdir(out)


# -- rmi, prune --------------------------------------------------------------------------------------

def _add_container(rt, image_id, name="c1"):
    cid = hashlib.sha256(name.encode()).hexdigest()
    with rt.store.transaction() as tx:
        tx.execute("INSERT INTO containers (id, name, image_id, created, config, state) VALUES (?,?,?,?,?,?)",
                   (cid, name, image_id, time.time(), "{}", "{}"))
    return cid


def test_rmi_docker_semantics(rt, two_images):
    a, c, _ = two_images
    imgs = rt.images
    imgs.tag("base:1", "other", "x")
    assert imgs.remove("other:x") == [{"Untagged": "other:x"}]
    assert imgs.get("base:1")
    imgs.tag("base:1", "other", "x")
    with pytest.raises(Conflict, match="several"):
        imgs.remove(a["id"])
    cid = _add_container(rt, c["id"], "web")
    with pytest.raises(Conflict, match="web"):
        imgs.remove("child:1")
    with pytest.raises(Conflict, match="web"):
        imgs.remove(c["id"])
    # forced: untagged, kept while the container needs it
    assert imgs.remove("child:1", force=True) == [{"Untagged": "child:1"}]
    assert imgs.get(c["id"]).tags == []
    assert imgs.prune()["ImagesDeleted"] == []
    with rt.store.transaction() as tx:
        tx.execute("DELETE FROM containers WHERE id=?", (cid,))
    r = imgs.prune()
    assert {"Deleted": c["id"]} in r["ImagesDeleted"] and r["SpaceReclaimed"] > 0
    res = imgs.remove(a["id"], force=True)
    assert {"Deleted": a["id"]} in res and {"Untagged": "base:1"} in res and {"Untagged": "other:x"} in res
    assert imgs.list(all=True) == []
    assert rt.store.db.query("SELECT * FROM layers") == []
    assert rt.store.blobs.digests() == [] and rt.store.snapshots.names() == []
    check_consistent(rt)


def test_rmi_parent_with_children(rt, two_images, tmp_shm):
    from pyrt.store.commit import write_layer_blob
    parent = rt.images.get("base:1")
    os.makedirs(os.path.join(tmp_shm, "u"))
    out = rt.store.mkdtemp("t-")
    child = rt.images.create(parent, write_layer_blob(os.path.join(tmp_shm, "u"), out), repository="kid")
    os.rmdir(out)
    with pytest.raises(Conflict, match="child"):
        rt.images.remove(parent.id, force=True)
    # by name: untagged, kept as the child's intermediate parent
    assert rt.images.remove("base:1") == [{"Untagged": "base:1"}]
    assert parent.id in [i.id for i in rt.images.list(all=True)]
    assert parent.id not in [i.id for i in rt.images.list()]
    # removing the child deletes the untagged parent too (docker's prune of parents)
    res = rt.images.remove("kid")
    assert res == [{"Untagged": "kid:latest"}, {"Deleted": child.id}, {"Deleted": parent.id}]
    check_consistent(rt)


def test_prune_all_keeps_images_in_use(rt, two_images):
    a, c, _ = two_images
    _add_container(rt, a["id"])
    r = rt.images.prune()
    assert r["ImagesDeleted"] == []
    r = rt.images.prune(all=True)
    assert {"Deleted": c["id"]} in r["ImagesDeleted"] and {"Untagged": "child:1"} in r["ImagesDeleted"]
    assert [i.id for i in rt.images.list(all=True)] == [a["id"]]
    check_consistent(rt)


def test_prune_collects_orphan_files(rt, two_images):
    orphan_snap = os.path.join(rt.store.snapshots.dir, "f" * 64)
    os.mkdir(orphan_snap)
    orphan_blob = rt.store.blobs.path(sha(b"orphan"))
    with open(orphan_blob, "wb") as f:
        f.write(b"orphan")
    rt.images.prune()
    assert not os.path.exists(orphan_snap) and not os.path.exists(orphan_blob)
    check_consistent(rt)


# -- sharing and df -------------------------------------------------------------------------------

def test_shared_base_layer_stored_once(rt, two_images):
    a, c, (ia, ic) = two_images
    assert ia.layers[0]["path"] == ic.layers[0]["path"]
    assert ia.layers[0]["digest"] == ic.layers[0]["digest"]
    assert len(rt.store.snapshots.names()) == 2
    df = rt.df()
    base = ia.layers[0]["unpacked_size"]
    top = ic.layers[1]["unpacked_size"]
    assert base > 0
    assert df["images"]["count"] == 2
    assert df["images"]["size"] == base + top          # counted once
    assert df["images"]["shared"] == base
    assert ia.size + ic.size == 2 * base + top
    assert rt.images.shared_sizes() == {ia.id: base, ic.id: base}
    snap = ia.layers[0]["path"]
    rt.images.remove("child:1")
    assert os.path.isdir(snap)  # still used by base:1
    assert len(rt.store.snapshots.names()) == 1
    rt.images.remove("base:1")
    assert not os.path.exists(snap)
    check_consistent(rt)


def test_loading_existing_layers_never_unpacks_again(rt, tmp_shm, monkeypatch):
    b = OCIBuilder(os.path.join(tmp_shm, "l1"))
    base = make_tar(base_entries())
    b.image([base], ref="one:1")
    b.write()
    rt.images.load(b.path)
    b2 = OCIBuilder(os.path.join(tmp_shm, "l2"))
    b2.image([base, make_tar([("file", "x", "x")])], ref="two:1")
    b2.write()
    import pyrt.store.unpack as unpack_mod
    calls = []
    real = unpack_mod.unpack_layer

    def counting(src, dest, **kw):
        calls.append(kw.get("expected_diff_id"))
        return real(src, dest, **kw)
    monkeypatch.setattr(unpack_mod, "unpack_layer", counting)
    if hasattr(unpack_mod, "unpack_layers_parallel"):
        real_par = unpack_mod.unpack_layers_parallel

        def counting_par(jobs):
            calls.extend(["job"] * len(list(jobs)))
            return real_par(jobs)
        monkeypatch.setattr(unpack_mod, "unpack_layers_parallel", counting_par)
    rt.images.load(b2.path)
    assert len(calls) == 1  # only the new top layer


# -- from_host --------------------------------------------------------------------------------------

def test_from_host_busybox(rt):
    import shutil
    bb = shutil.which("busybox")
    if not bb:
        pytest.skip("busybox is not installed")
    img = rt.images.from_host("tools:1", [bb])
    root = img.layers[0]["path"]
    assert os.path.isfile(os.path.join(root, bb.lstrip("/"))) or os.path.isfile(
        os.path.join(root, os.path.realpath(bb).lstrip("/")))
    sh = os.path.join(root, "bin", "sh")
    assert os.path.islink(sh) or os.path.islink(os.path.join(root, "bin"))
    with open(os.path.join(root, "etc", "passwd")) as f:
        assert f.read().startswith("root:x:0:0:")
    assert os.path.isfile(os.path.join(root, "etc", "group"))
    assert img.config["config"]["Cmd"] == [bb]


def test_from_host_dynamic_program_gets_its_libraries(rt):
    prog = sys.executable if os.path.exists(sys.executable) else "/bin/ls"
    prog = "/bin/ls" if os.path.exists("/bin/ls") else prog
    img = rt.images.from_host("ls-image", [prog])
    root = img.layers[0]["path"]
    from pyrt.images.fromhost import _host_libraries, _elf_info
    libs = _host_libraries(os.path.realpath(prog))
    assert libs, "ls should be dynamically linked"
    for lib in libs:
        assert os.path.exists(os.path.join(root, os.path.realpath(lib).lstrip("/"))), lib
        assert os.path.lexists(os.path.join(root, lib.lstrip("/"))), lib
    # the ELF reader finds the same loader as ldd
    interp, needed, _ = _elf_info(os.path.realpath(prog))
    assert interp and any(os.path.basename(lib) == os.path.basename(interp) for lib in libs)
    assert "libc.so.6" in needed


# -- concurrency and crashes ---------------------------------------------------------------------------

_LOADER = r"""
import sys
from pyrt.runtime import Runtime
rt = Runtime(sys.argv[1])
name = sys.argv[4]
for i in range(int(sys.argv[3])):
    rt.images.load(sys.argv[2])
    rt.images.tag(name + ":1", name + "-copy", str(i))
    if i % 2 == 0:  # drop it again: its layers go, unless the other process shares them
        rt.images.remove(name + "-copy:" + str(i))
        rt.images.remove(name + ":1")
print("ok")
"""


def test_two_processes_share_a_store(rt, tmp_shm):
    paths = []
    for name in ("p1", "p2"):
        b = OCIBuilder(os.path.join(tmp_shm, name))
        b.image([make_tar(base_entries()), make_tar([("file", name, name)])], ref=f"{name}:1")
        b.write()
        paths.append(b.path)
    rt.store  # created
    rounds = int(os.environ.get("PYRT_STRESS", "20"))  # raise it to hunt races
    procs = [subprocess.Popen([sys.executable, "-c", _LOADER, rt.root, p, str(rounds), n],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p, n in zip(paths, ("p1", "p2"))]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    kept = rounds // 2 + 1  # the odd rounds' copies and the last p?:1
    assert len(rt.images.get("p1:1").tags) == kept and len(rt.images.get("p2:1").tags) == kept
    assert rt.images.get("p1:1").layers[0]["path"] == rt.images.get("p2:1").layers[0]["path"]
    check_consistent(rt)


def test_failure_inside_the_transaction_rolls_back_files(rt, tmp_shm, monkeypatch):
    rt.images.import_image(io.BytesIO(make_tar(base_entries("first"))), "first")
    before = store_state(rt)
    b = OCIBuilder(os.path.join(tmp_shm, "l"))
    b.image([make_tar(base_entries("x")), make_tar([("file", "y", "y")])], ref="x:1")
    b.write()
    from pyrt.images.ingest import Ingest
    real = Ingest.record

    def failing(self, tx, plan, *a, **kw):
        real(self, tx, plan, *a, **kw)
        raise RuntimeError("simulated crash after the rows")
    monkeypatch.setattr(Ingest, "record", failing)
    with pytest.raises(RuntimeError):
        rt.images.load(b.path)
    assert store_state(rt) == before


_KILLED_LOADER = r"""
import sys
from pyrt.runtime import Runtime
rt = Runtime(sys.argv[1])
print("start", flush=True)
while True:
    rt.images.load(sys.argv[2])
    rt.images.remove("big:1")
"""


def test_kill_9_never_leaves_a_half_imported_image(rt, tmp_shm):
    b = OCIBuilder(os.path.join(tmp_shm, "big"))
    entries = [("dir", "d")] + [("file", f"d/f{i}", os.urandom(2000).hex()) for i in range(400)]
    b.image([make_tar(entries), make_tar([("file", "x", os.urandom(100000).hex())]),
             make_tar([("file", "y", "y" * 300000)])], ref="big:1")
    b.write()
    rt.store
    for delay in (0.05, 0.15, 0.3, 0.45, 0.6):
        p = subprocess.Popen([sys.executable, "-c", _KILLED_LOADER, rt.root, b.path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            p.stdout.readline()
            time.sleep(delay)
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()
        from pyrt.runtime import Runtime
        fresh = Runtime(rt.root)  # cleans the dead process's temp entries
        try:
            images = fresh.images.list(all=True)
            assert len(images) <= 1
            for img in images:  # a visible image is complete
                assert len(img.layers) == 3
                for layer in img.layers:
                    assert os.path.isdir(layer["path"])
                    assert fresh.store.blobs.exists(layer["digest"])
            fresh.images.prune(all=True)
            check_consistent(fresh)
        finally:
            fresh.close()


# -- the CLI ----------------------------------------------------------------------------------------

def pyrt_cli(root, *argv, input=None):
    r = subprocess.run([sys.executable, "-m", "pyrt.cli.main", "--root", root, *argv],
                       capture_output=True, text=True, input=input, cwd="/")
    return r


def test_cli_image_verbs(rt, tmp_shm, rootfs_tar):
    root = rt.root
    r = pyrt_cli(root, "import", "--change", "CMD [\"/bin/sh\"]", "-c", "ENV A=b", rootfs_tar, "myos:1")
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:")
    r = pyrt_cli(root, "images")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:3] == ["myos", "1", image_id[7:19]]
    assert lines[-1].startswith("Total: 1 image")
    r = pyrt_cli(root, "tag", image_id[7:13], "other:2")
    assert r.returncode == 0, r.stderr
    r = pyrt_cli(root, "images", "--format", "json")
    rows = json.loads(r.stdout)
    assert {(x["Repository"], x["Tag"]) for x in rows} == {("myos", "1"), ("other", "2")}
    assert pyrt_cli(root, "images", "-q").stdout.split() == [image_id[7:19]]
    out = os.path.join(tmp_shm, "saved.tar")
    r = pyrt_cli(root, "save", "-o", out, "--format", "docker-archive", "myos:1")
    assert r.returncode == 0, r.stderr and os.path.isfile(out)
    r = pyrt_cli(root, "image", "save", "-o", os.path.join(tmp_shm, "ocidir") + "/", "other:2")
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(os.path.join(tmp_shm, "ocidir", "index.json"))
    r = pyrt_cli(root, "history", "myos:1")
    assert r.returncode == 0 and "IMAGE" in r.stdout.splitlines()[0], r.stderr
    r = pyrt_cli(root, "image", "inspect", "myos:1")
    assert json.loads(r.stdout)[0]["Id"] == image_id
    r = pyrt_cli(root, "system", "df")
    assert r.returncode == 0 and r.stdout.splitlines()[1].split()[:2] == ["Images", "1"], r.stderr + r.stdout
    r = pyrt_cli(root, "rmi", "myos:1")
    assert r.stdout.strip() == "Untagged: myos:1"
    r = pyrt_cli(root, "rmi", "nothere")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not found" in r.stderr
    r = pyrt_cli(root, "rmi", "other:2")
    assert r.stdout.splitlines() == ["Untagged: other:2", f"Deleted: {image_id}"]
    other = os.path.join(tmp_shm, "store-b")
    r = pyrt_cli(other, "load", "-i", out)
    assert r.returncode == 0 and r.stdout.strip() == "Loaded image: myos:1", r.stderr
    r = pyrt_cli(other, "image", "load", "-i", os.path.join(tmp_shm, "ocidir"))
    assert r.stdout.strip() == "Loaded image: other:2", r.stderr
    r = pyrt_cli(other, "image", "prune", "-a", "-f")
    assert r.returncode == 0 and "Total reclaimed space" in r.stdout, r.stderr
    r = pyrt_cli(other, "image", "ls", "-a", "-q")
    assert r.stdout.strip() == ""
    r = pyrt_cli(other, "load", "-i", os.path.join(tmp_shm, "nothere.tar"))
    assert r.returncode == 1 and "no such file" in r.stderr


def test_cli_from_host_and_quiet_progress(rt, tmp_shm):
    import shutil
    bb = shutil.which("busybox") or "/bin/ls"
    r = pyrt_cli(rt.root, "image", "from-host", "tools", bb)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress in a pipe
    assert rt.images.get("tools:latest").id == r.stdout.strip()
