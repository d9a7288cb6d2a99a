"""Helpers and fixtures shared by the test_containers* modules: runtimes on /dev/shm
(`rt`, and `drt` on each storage driver), layered and OCI-layout test images, what a
snapshot, a layer blob or a container's diff holds."""
from __future__ import annotations
import gzip
import io
import json
import os
import tarfile
import pytest
import helpers
import pyrt
from imagetools import LAYER2, LAYER3, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, layer_tar, sha


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


# Writing through a hardlink of the image and linking an image file: overlay copies
# the file up (the link is broken, the linked file is changed); the copy driver keeps
# the image's hardlinks in the container's root (both names change, the linked file
# is the same).
HARDLINKS = "set -e; echo changed > /data/hl1; ln /data/owned /data/owned-link"
HARDLINKS_DIFF = {"overlay": ["C /data/hl1", "C /data/owned", "A /data/owned-link"],
                  "copy": ["C /data/hl1", "C /data/hl2", "A /data/owned-link"]}
