"""Archives: the OCI image layout and docker-archive, read and written; round trips
keep digests; bad input leaves the store exactly as it was; interop with podman,
skopeo and umoci (skipped only when the tool is absent)."""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from pyrt.errors import ImageFormatError
from imagetools import (OCIBuilder, OCI_INDEX, OCI_MANIFEST, base_entries, check_consistent, make_tar, sha, store_state,
                        tar_dir)


def _tool(name):
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed")
    return path


def layered_entries(salt=""):
    """Three layers with whiteouts, an opaque dir and hardlinks (`salt` makes the
    upper two unique)."""
    l1 = base_entries() + [("dir", "opq"), ("file", "opq/old1", "1"), ("file", "opq/old2", "2"),
                           ("file", "data/big", "x" * 10000), ("hardlink", "data/big-link", "data/big")]
    l2 = [("whiteout", "etc/motd"), ("opaque", "opq"), ("dir", "opq"), ("file", "opq/new", "new\n"),
          ("file", "data/h1", "shared content\n"), ("hardlink", "data/h2", "data/h1")]
    l3 = [("whiteout", "data/a"), ("file", "data/c", "c\n")]
    if salt:
        l2.append(("file", "salt2", salt))
        l3.append(("file", "salt3", salt))
    return [make_tar(e) for e in (l1, l2, l3)]


def _layout(tmp, name="layout", compression="gzip", ref="multi:1", salt=""):
    b = OCIBuilder(os.path.join(tmp, name))
    info = b.image(layered_entries(salt), compression=compression, ref=ref)
    b.write()
    return b, info


def _ids(img):
    return (img.id, img.manifest_digest, [lyr["digest"] for lyr in img.layers],
            [lyr["diff_id"] for lyr in img.layers])


def _snapshot_view(img):
    """What each layer's snapshot holds (name -> kind/content), bottom-up."""
    out = []
    for layer in img.layers:
        view = {}
        root = layer["path"]
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                rel = os.path.relpath(p, root)
                st = os.lstat(p)
                if stat.S_ISCHR(st.st_mode):
                    view[rel] = ("whiteout", st.st_rdev)
                elif stat.S_ISDIR(st.st_mode):
                    try:
                        opq = os.getxattr(p, "trusted.overlay.opaque")
                    except OSError:
                        opq = None
                    view[rel] = ("dir", opq)
                elif stat.S_ISLNK(st.st_mode):
                    view[rel] = ("link", os.readlink(p))
                else:
                    with open(p, "rb") as f:
                        view[rel] = ("file", f.read(), st.st_nlink)
        out.append(view)
    return out


# -- reading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_load_oci_layout_dir_and_tar(rt, tmp_shm, compression):
    b, info = _layout(tmp_shm, compression=compression)
    imgs = rt.images.load(b.path)
    assert len(imgs) == 1
    img = imgs[0]
    assert img.tags == ["multi:1"]
    assert _ids(img) == (info["id"], info["manifest"], info["layers"], info["diff_ids"])
    views = _snapshot_view(img)
    assert views[1]["etc/motd"] == ("whiteout", 0)
    assert views[1]["opq"] == ("dir", b"y")
    assert views[1]["data/h1"][2] == 2  # hardlinked to data/h2
    assert views[0]["data/big"][2] == 2
    assert views[2]["data/a"] == ("whiteout", 0)
    # the same layout as a tar, into a second store
    from pyrt.runtime import Runtime
    other = Runtime(os.path.join(tmp_shm, "other"))
    try:
        img2 = other.images.load(b.tar(os.path.join(tmp_shm, "layout.tar")))[0]
        assert _ids(img2) == _ids(img)
        check_consistent(other)
    finally:
        other.close()
    check_consistent(rt)


def test_load_index_with_several_images_and_nested_platform_index(rt, tmp_shm):
    b = OCIBuilder(os.path.join(tmp_shm, "layout"))
    base = make_tar(base_entries())
    one = b.image([base], ref="one:1")
    two = b.image([base, make_tar([("file", "two", "2")])], ref="docker.io/library/two:2")
    untagged = b.image([make_tar([("file", "u", "u")])])
    arm = b.image([make_tar([("file", "arm", "arm")])], add_entry=False,
                  platform={"os": "linux", "architecture": "arm64"})
    amd = b.image([make_tar([("file", "amd", "amd")])], add_entry=False,
                  platform={"os": "linux", "architecture": "amd64"})
    arm["entry"]["platform"] = {"os": "linux", "architecture": "arm64"}
    amd["entry"]["platform"] = {"os": "linux", "architecture": "amd64"}
    os.unlink(b.blob_path(arm["layers"][0]))  # only the chosen platform's blobs are needed
    b.index_blob([arm["entry"], amd["entry"]], ref="multiarch:latest")
    b.write()
    imgs = rt.images.load(b.path)
    assert [i.id for i in imgs] == [one["id"], two["id"], untagged["id"], amd["id"]]
    assert imgs[0].tags == ["one:1"] and imgs[1].tags == ["docker.io/library/two:2"]
    assert imgs[2].tags == [] and imgs[3].tags == ["multiarch:latest"]
    assert rt.images.get("two:2").id == two["id"]
    assert imgs[0].layers[0]["path"] == imgs[1].layers[0]["path"]


def test_bare_ref_name_is_a_tag_without_repository(rt, tmp_shm):
    b = OCIBuilder(os.path.join(tmp_shm, "layout"))
    info = b.image([make_tar(base_entries())], ref="latest")
    b.write()
    img = rt.images.load(b.path)[0]
    assert img.id == info["id"] and img.tags == []


def test_load_from_file_object_and_compressed_outer_tar(rt, tmp_shm):
    b, info = _layout(tmp_shm)
    t = b.tar(os.path.join(tmp_shm, "l.tar"))
    with open(t, "rb") as f:
        data = f.read()
    img = rt.images.load(io.BytesIO(gzip.compress(data)))[0]
    assert img.id == info["id"]
    check_consistent(rt)


# -- round trips -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dest", ["tar", "dir"])
def test_oci_round_trip_keeps_every_digest(rt, rt2, tmp_shm, dest):
    b, info = _layout(tmp_shm, compression="zstd")
    img = rt.images.load(b.path)[0]
    rt.images.tag(img.id, "again", "2")
    out = os.path.join(tmp_shm, "out.tar" if dest == "tar" else "outdir/")
    rt.images.save(["multi:1", "again:2"], out)
    loaded = rt2.images.load(out)
    assert len(loaded) == 1
    assert _ids(loaded[0]) == _ids(img)
    assert sorted(loaded[0].tags) == ["again:2", "multi:1"]
    assert _snapshot_view(loaded[0]) == _snapshot_view(img)
    check_consistent(rt2)


def test_docker_archive_round_trip(rt, rt2, tmp_shm):
    b, info = _layout(tmp_shm, compression="gzip")
    img = rt.images.load(b.path)[0]
    out = os.path.join(tmp_shm, "da.tar")
    rt.images.save(["multi:1"], out, format="docker-archive")
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["multi:1"]
        assert manifest[0]["Config"] == img.id[7:] + ".json"
        for name, diff_id in zip(manifest[0]["Layers"], info["diff_ids"]):
            assert sha(tf.extractfile(name).read()) == diff_id  # uncompressed, as docker writes them
    loaded = rt2.images.load(out)[0]
    assert loaded.id == img.id and loaded.tags == ["multi:1"]
    assert [lyr["diff_id"] for lyr in loaded.layers] == info["diff_ids"]
    assert [lyr["digest"] for lyr in loaded.layers] == info["diff_ids"]  # docker-archive layers are plain tars
    assert _snapshot_view(loaded) == _snapshot_view(img)
    # and back again: now every digest is stable
    out2 = os.path.join(tmp_shm, "da2.tar")
    rt2.images.save([loaded.id], out2, format="docker-archive")
    from pyrt.runtime import Runtime
    third = Runtime(os.path.join(tmp_shm, "third"))
    try:
        again = third.images.load(out2)[0]
        assert _ids(again) == _ids(loaded) and again.tags == []
    finally:
        third.close()


def test_save_by_id_is_untagged_and_several_images_share_blobs(rt, tmp_shm):
    b = OCIBuilder(os.path.join(tmp_shm, "layout"))
    base = make_tar(base_entries())
    b.image([base], ref="one:1")
    b.image([base, make_tar([("file", "two", "2")])], ref="two:1")
    b.write()
    one, two = rt.images.load(b.path)
    out = os.path.join(tmp_shm, "o.tar")
    rt.images.save([one.id, "two:1"], out)
    with tarfile.open(out) as tf:
        names = tf.getnames()
        index = json.load(tf.extractfile("index.json"))
    assert len([n for n in names if n.startswith("blobs/sha256/") and len(n) > 20]) == 6  # 2 configs, 2 manifests, 2 layers
    refs = [(m.get("annotations") or {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]]
    assert refs == [None, "two:1"]


def test_save_errors(rt, tmp_shm):
    from pyrt.errors import ImageNotFound, InvalidArgument
    with pytest.raises(ImageNotFound):
        rt.images.save(["nothere"], os.path.join(tmp_shm, "x.tar"))
    with pytest.raises(InvalidArgument):
        rt.images.save([], os.path.join(tmp_shm, "x.tar"))
    rt.images.import_image(io.BytesIO(make_tar(base_entries())), "a")
    with pytest.raises(InvalidArgument):
        rt.images.save(["a"], tmp_shm, format="docker-archive")
    with pytest.raises(InvalidArgument):
        rt.images.save(["a"], os.path.join(tmp_shm, "x.tar"), format="zip")
    assert not os.path.exists(os.path.join(tmp_shm, "x.tar"))
    assert [n for n in os.listdir(tmp_shm) if n.startswith(".pyrt-save")] == []


# -- bad input -------------------------------------------------------------------------------------------

def _rewrite_json(path, fn):
    with open(path) as f:
        obj = json.load(f)
    fn(obj)
    with open(path, "w") as f:
        json.dump(obj, f)


def _bad_layouts(tmp):
    """(name, path, expected message regex) for every kind of bad input."""
    cases = []

    def fresh(name, **kw):
        return _layout(tmp, name=name, salt=name, **kw)

    b, info = fresh("digest")
    with open(b.blob_path(info["layers"][1]), "r+b") as f:
        f.seek(30)
        byte = f.read(1)
        f.seek(30)
        f.write(bytes([byte[0] ^ 0xff]))
    cases.append(("digest mismatch", b.path, "digest mismatch"))

    b, info = fresh("size")
    with open(b.blob_path(info["layers"][2]), "ab") as f:
        f.write(b"extra")
    cases.append(("wrong size", b.path, "wrong size"))

    b = OCIBuilder(os.path.join(tmp, "size2"))
    layers = layered_entries("size2")
    b.image(layers, ref="x:1", manifest_hook=lambda m: m["layers"][0].update(size=m["layers"][0]["size"] - 1))
    b.write()
    cases.append(("descriptor size", b.path, "wrong size"))

    b, info = fresh("missing")
    os.unlink(b.blob_path(info["layers"][2]))
    cases.append(("missing blob", b.path, "missing blob"))

    b, info = fresh("missingconfig")
    os.unlink(b.blob_path(info["id"]))
    cases.append(("missing config", b.path, "missing blob"))

    b = OCIBuilder(os.path.join(tmp, "mediatype"))
    salt = "mediatype"
    b.image(layered_entries(salt), manifest_hook=lambda m: m["layers"][1].update(mediaType="application/x-weird"))
    b.write()
    cases.append(("unknown layer media type", b.path, "unknown media type"))

    b = OCIBuilder(os.path.join(tmp, "mediatype2"))
    salt = "mediatype2"
    info = b.image(layered_entries(salt))
    b.write(index_hook=lambda idx: idx["manifests"][0].update(mediaType="application/x-weird"))
    cases.append(("unknown manifest media type", b.path, "unknown media type"))

    b, info = fresh("badjson")
    with open(os.path.join(b.path, "index.json"), "w") as f:
        f.write('{"schemaVersion": 2, "manifests": [')
    cases.append(("invalid index JSON", b.path, "invalid JSON"))

    b = OCIBuilder(os.path.join(tmp, "badconfig"))
    cfg = b"{not json"
    d = b.blob(cfg)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": len(cfg)},
         "layers": []}
    mb = json.dumps(m).encode()
    b.entries.append({"mediaType": OCI_MANIFEST, "digest": b.blob(mb), "size": len(mb)})
    b.write()
    cases.append(("invalid config JSON", b.path, "invalid JSON"))

    b = OCIBuilder(os.path.join(tmp, "fakeindex"))
    inner = b.image([make_tar(base_entries())], add_entry=False)
    idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [inner["entry"]]}).encode()
    b.entries.append({"mediaType": OCI_MANIFEST, "digest": b.blob(idx), "size": len(idx)})
    b.write()
    cases.append(("manifest that is an index", b.path, "index"))

    b = OCIBuilder(os.path.join(tmp, "diffid"))
    salt = "diffid"
    b.image(layered_entries(salt), config_hook=lambda c: c["rootfs"]["diff_ids"].__setitem__(1, sha(b"other")))
    b.write()
    cases.append(("diff_id mismatch", b.path, "diff_id"))

    b = OCIBuilder(os.path.join(tmp, "count"))
    salt = "count"
    b.image(layered_entries(salt), config_hook=lambda c: c["rootfs"]["diff_ids"].pop())
    b.write()
    cases.append(("layer count", b.path, "diff_ids"))

    b = OCIBuilder(os.path.join(tmp, "baddigest"))
    salt = "baddigest"
    b.image(layered_entries(salt), manifest_hook=lambda m: m["layers"][0].update(digest="sha256:../../../etc/passwd"))
    b.write()
    cases.append(("malformed digest", b.path, "invalid digest"))

    b = OCIBuilder(os.path.join(tmp, "hostile"))
    b.image([make_tar(base_entries()), make_tar([("file", "../../escape", "x")])])
    b.write()
    cases.append(("hostile layer", b.path, "layer sha256:[0-9a-f]{64} rejected|a layer rejected"))

    # tars of layouts: truncated, traversal in member names
    b, info = fresh("trunc")
    t = b.tar(os.path.join(tmp, "full.tar"))
    with open(t, "rb") as f:
        data = f.read()
    with tarfile.open(t) as tf:
        last = tf.getmembers()[-1]
    end = last.offset_data + (last.size + 511) // 512 * 512
    for i, cut in enumerate((len(data) // 2, last.offset_data + last.size // 2, end)):
        p = os.path.join(tmp, f"trunc{i}.tar")
        with open(p, "wb") as f:
            f.write(data[:cut])
        cases.append((f"truncated tar {i}", p, "truncated|missing|corrupt"))

    p = os.path.join(tmp, "traversal.tar")
    with tarfile.open(p, "w") as tf, tarfile.open(t) as src:
        for m in src.getmembers():
            tf.addfile(m, src.extractfile(m))
        ti = tarfile.TarInfo("../../evil")
        ti.size = 4
        tf.addfile(ti, io.BytesIO(b"evil"))
    cases.append(("traversal member", p, "path traversal"))

    p = os.path.join(tmp, "traversal-abs.tar")
    with tarfile.open(p, "w") as tf, tarfile.open(t) as src:
        for m in src.getmembers():
            tf.addfile(m, src.extractfile(m))
        ti = tarfile.TarInfo("/etc/evil")
        ti.size = 4
        tf.addfile(ti, io.BytesIO(b"evil"))
    cases.append(("absolute member", p, "path traversal"))

    # docker-archives
    def docker_archive(name, manifest, files):
        p = os.path.join(tmp, name)
        with tarfile.open(p, "w") as tf:
            for n, data in list(files.items()) + [("manifest.json", json.dumps(manifest).encode())]:
                ti = tarfile.TarInfo(n)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        return p
    layer = make_tar(base_entries())
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    cases.append(("docker traversal", docker_archive(
        "da-trav.tar", [{"Config": sha(cfg)[7:] + ".json", "RepoTags": ["x:1"], "Layers": ["../../etc/passwd"]}],
        {sha(cfg)[7:] + ".json": cfg, "l.tar": layer}), "path traversal"))
    cases.append(("docker config digest", docker_archive(
        "da-cfg.tar", [{"Config": "0" * 64 + ".json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}],
        {"0" * 64 + ".json": cfg, "l.tar": layer}), "digest mismatch"))
    other = make_tar([("file", "x", "x")])
    cases.append(("docker layer digest", docker_archive(
        "da-layer.tar", [{"Config": sha(cfg)[7:] + ".json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}],
        {sha(cfg)[7:] + ".json": cfg, "l.tar": other}), "digest mismatch"))
    cases.append(("docker missing layer", docker_archive(
        "da-miss.tar", [{"Config": sha(cfg)[7:] + ".json", "RepoTags": ["x:1"], "Layers": ["nothere.tar"]}],
        {sha(cfg)[7:] + ".json": cfg}), "missing"))
    cases.append(("docker bad json", docker_archive(
        "da-json.tar", {"not": "a list"}, {"l.tar": layer}), "invalid manifest.json"))
    cases.append(("docker bad tag", docker_archive(
        "da-tag.tar", [{"Config": sha(cfg)[7:] + ".json", "RepoTags": ["BAD TAG"], "Layers": ["l.tar"]}],
        {sha(cfg)[7:] + ".json": cfg, "l.tar": layer}), "RepoTags"))
    p = os.path.join(tmp, "da-symlink.tar")
    with tarfile.open(p, "w") as tf:
        for n, data in ((sha(cfg)[7:] + ".json", cfg),
                        ("manifest.json", json.dumps([{"Config": sha(cfg)[7:] + ".json", "RepoTags": ["x:1"],
                                                        "Layers": ["l/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("l/layer.tar")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "../../../etc/passwd"
        tf.addfile(ti)
    cases.append(("docker symlink traversal", p, "path traversal"))

    p = os.path.join(tmp, "notanarchive.tar")
    with open(p, "wb") as f:
        f.write(b"hello world" * 100)
    cases.append(("not a tar", p, "tar"))
    p = os.path.join(tmp, "emptydir")
    os.mkdir(p)
    cases.append(("empty dir", p, "neither"))
    return cases


def test_bad_input_leaves_the_store_as_it_was(rt, tmp_shm):
    # a store with something in it, sharing the base layer of the bad inputs
    good, _ = _layout(tmp_shm, name="good", ref="good:1")
    rt.images.load(good.path)
    before = store_state(rt)
    os.mkdir(os.path.join(tmp_shm, "cases"))
    cases = _bad_layouts(os.path.join(tmp_shm, "cases"))
    failures = []
    for name, path, pattern in cases:
        try:
            rt.images.load(path)
        except ImageFormatError as e:
            import re
            msg = str(e)
            if "\n" in msg or not re.search(pattern, msg):
                failures.append(f"{name}: unexpected message {msg!r}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"{name}: {type(e).__name__}: {e}")
        else:
            failures.append(f"{name}: loaded")
        if store_state(rt) != before:
            failures.append(f"{name}: the store changed")
            before = store_state(rt)
    assert not failures, "\n".join(failures)
    assert os.path.exists(os.path.join(tmp_shm, "cases"))
    assert not os.path.exists(os.path.join(tmp_shm, "escape"))
    assert not os.path.exists(os.path.join(os.path.dirname(tmp_shm), "evil"))
    check_consistent(rt)


def test_cli_bad_input_one_line_error(rt, tmp_shm):
    import sys
    b, info = _layout(tmp_shm)
    os.unlink(b.blob_path(info["layers"][0]))
    r = subprocess.run([sys.executable, "-m", "pyrt.cli.main", "--root", rt.root, "load", "-i", b.path],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "missing blob" in r.stderr, r.stderr


# -- interop -------------------------------------------------------------------------------------------

@pytest.fixture
def podman(tmp_shm):
    import tempfile
    exe = _tool("podman")
    base = os.path.join(tmp_shm, "podman")
    os.makedirs(base)
    runroot = tempfile.mkdtemp(prefix="prun-", dir="/dev/shm")  # podman wants it short
    cmd = [exe, "--root", os.path.join(base, "root"), "--runroot", runroot,
           "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]

    def run(*args, check=True):
        r = subprocess.run(cmd + list(args), capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {r.stderr}")
        return r
    try:
        yield run
    finally:
        run("rm", "-a", "-f", check=False)
        run("rmi", "-a", "-f", check=False)
        shutil.rmtree(runroot, ignore_errors=True)


def test_podman_save_then_pyrt_load(rt, tmp_shm, podman, rootfs):
    tar = tar_dir(rootfs, os.path.join(tmp_shm, "rootfs.tar"))
    podman("import", "--change", "CMD [\"/bin/sh\"]", tar, "localhost/bb:1")
    pid = podman("images", "--no-trunc", "--format", "{{.ID}}").stdout.strip()
    da = os.path.join(tmp_shm, "podman-da.tar")
    oa = os.path.join(tmp_shm, "podman-oci.tar")
    podman("save", "-o", da, "localhost/bb:1")
    podman("save", "--format", "oci-archive", "-o", oa, "localhost/bb:1")
    img = rt.images.load(da)[0]
    assert img.tags == ["localhost/bb:1"]
    assert img.id.endswith(pid.replace("sha256:", ""))
    assert rt.images.get("bb:1").id == img.id  # localhost/ is implied
    assert os.path.isfile(os.path.join(img.layers[0]["path"], "bin", "busybox"))
    img2 = rt.images.load(oa)[0]
    assert img2.id == img.id and img2.tags == ["localhost/bb:1"]
    check_consistent(rt)


def test_pyrt_docker_archive_accepted_by_podman_and_skopeo(rt, tmp_shm, podman):
    skopeo = _tool("skopeo")
    b, info = _layout(tmp_shm, compression="gzip", ref="localhost/multi:1")
    img = rt.images.load(b.path)[0]
    out = os.path.join(tmp_shm, "pyrt-da.tar")
    rt.images.save(["localhost/multi:1"], out, format="docker-archive")
    r = subprocess.run([skopeo, "inspect", f"docker-archive:{out}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["Layers"] == info["diff_ids"]
    r = subprocess.run([skopeo, "inspect", "--config", f"docker-archive:{out}"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["rootfs"]["diff_ids"] == info["diff_ids"]
    r = podman("load", "-i", out)
    assert "localhost/multi:1" in r.stdout
    pid = podman("images", "--no-trunc", "--format", "{{.ID}}", "localhost/multi:1").stdout.strip()
    assert pid.replace("sha256:", "") == img.id[7:]
    # the files podman sees are what pyrt's layers say (whiteouts applied)
    podman("create", "--name", "c1", "localhost/multi:1", "/bin/hello")
    exported = os.path.join(tmp_shm, "exp.tar")
    podman("export", "-o", exported, "c1")
    with tarfile.open(exported) as tf:
        names = {n.lstrip("./") for n in tf.getnames()}
    assert "etc/motd" not in names and "data/a" not in names
    assert {"data/b", "data/c", "opq/new", "data/h2", "bin/hello"} <= names
    assert "opq/old1" not in names


def test_pyrt_oci_accepted_by_skopeo_and_umoci(rt, tmp_shm):
    skopeo = _tool("skopeo")
    umoci = _tool("umoci")
    b, info = _layout(tmp_shm, compression="gzip", ref="multi:1")
    img = rt.images.load(b.path)[0]
    rt.images.tag(img.id, "plain", "v1")
    out = os.path.join(tmp_shm, "oci-out")
    rt.images.save(["multi:1", "plain:v1"], out + "/")
    r = subprocess.run([skopeo, "inspect", f"oci:{out}:multi:1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Layers"] == info["layers"]
    r = subprocess.run([skopeo, "inspect", f"oci:{out}:plain:v1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bundle = os.path.join(tmp_shm, "bundle")
    r = subprocess.run([umoci, "unpack", "--image", f"{out}:multi:1", bundle], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rootfs = os.path.join(bundle, "rootfs")
    assert not os.path.lexists(os.path.join(rootfs, "etc", "motd"))
    assert not os.path.lexists(os.path.join(rootfs, "data", "a"))
    assert not os.path.lexists(os.path.join(rootfs, "opq", "old1"))
    with open(os.path.join(rootfs, "opq", "new")) as f:
        assert f.read() == "new\n"
    assert os.stat(os.path.join(rootfs, "data", "h1")).st_ino == os.stat(os.path.join(rootfs, "data", "h2")).st_ino
    # and the tar form
    tout = os.path.join(tmp_shm, "oci-out.tar")
    rt.images.save(["multi:1"], tout)
    r = subprocess.run([skopeo, "inspect", f"oci-archive:{tout}:multi:1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_skopeo_zstd_copy_then_pyrt_load(rt, rt2, tmp_shm):
    skopeo = _tool("skopeo")
    b, info = _layout(tmp_shm, compression="gzip", ref="multi:1")
    img = rt.images.load(b.path)[0]
    out = os.path.join(tmp_shm, "src")
    rt.images.save(["multi:1"], out + "/")
    dst = os.path.join(tmp_shm, "zstd")
    r = subprocess.run([skopeo, "copy", "--dest-compress-format", "zstd", f"oci:{out}:multi:1",
                        f"oci:{dst}:localhost/zstd:1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loaded = rt2.images.load(dst)[0]
    assert loaded.tags == ["localhost/zstd:1"]
    assert [lyr["media_type"] for lyr in loaded.layers] == ["application/vnd.oci.image.layer.v1.tar+zstd"] * 3
    assert loaded.id == img.id  # the config (diff_ids) is the same
    assert [lyr["diff_id"] for lyr in loaded.layers] == info["diff_ids"]
    assert _snapshot_view(loaded) == _snapshot_view(img)
    # into the first store: the same image, its layers already there
    again = rt.images.load(dst)[0]
    assert again.id == img.id
    check_consistent(rt2)
    # zstd layers saved as a docker-archive are written uncompressed
    da = os.path.join(tmp_shm, "zstd-da.tar")
    rt2.images.save(["localhost/zstd:1"], da, format="docker-archive")
    with tarfile.open(da) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        assert [sha(tf.extractfile(n).read()) for n in manifest[0]["Layers"]] == info["diff_ids"]


def test_umoci_made_image_with_whiteouts_loads(rt, tmp_shm):
    umoci = _tool("umoci")
    lay = os.path.join(tmp_shm, "umoci-layout")

    def u(*args):
        r = subprocess.run([umoci, *args], capture_output=True, text=True)
        assert r.returncode == 0, f"umoci {args}: {r.stderr}"
    u("init", "--layout", lay)
    u("new", "--image", f"{lay}:t")
    bundle = os.path.join(tmp_shm, "b")
    u("unpack", "--image", f"{lay}:t", bundle)
    root = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(root, "d"))
    for n in ("keep", "gone"):
        with open(os.path.join(root, "d", n), "w") as f:
            f.write(n)
    os.link(os.path.join(root, "d", "keep"), os.path.join(root, "d", "keep-link"))
    os.makedirs(os.path.join(root, "o"))
    with open(os.path.join(root, "o", "old"), "w") as f:
        f.write("old")
    u("repack", "--refresh-bundle", "--image", f"{lay}:t", bundle)
    os.unlink(os.path.join(root, "d", "gone"))
    u("repack", "--refresh-bundle", "--image", f"{lay}:t", bundle)
    u("tag", "--image", f"{lay}:t", "localhost/umoci:1")
    imgs = rt.images.load(lay)
    by_tag = {t: i for i in imgs for t in i.tags}
    img = by_tag["localhost/umoci:1"]
    assert len(img.layers) == 2
    top = img.layers[-1]["path"]
    st = os.lstat(os.path.join(top, "d", "gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.stat(os.path.join(img.layers[0]["path"], "d", "keep")).st_nlink == 2
    check_consistent(rt)
