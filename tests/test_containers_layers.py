"""Images of more than 128 layers, export of a container's whole filesystem (whiteouts
and opaque dirs too), save and load of committed images in both archive formats."""
from __future__ import annotations

import os
import tarfile

import pytest

import pyrt
from imagetools import CHANGES, check_store, layer_tar
from containertools import sh, build_layered, write_oci_layout, load_oci_image, is_whiteout, opaque, diff_lines, HARDLINKS
from containertools import rt, drt  # noqa: F401,F811 (fixtures)


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
