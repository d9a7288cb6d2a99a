"""Building and checking test images, shared by the test modules: layer tars
(`layer_tar` with keyword options, `make_tar` with positional ones), the base tar of
the session's test rootfs plus test files (`write_base_tar`; the `base_tar` fixture
in conftest.py), OCI image layouts written by hand (`OCIBuilder`) and the layers of a
saved one (`saved_layers`), scripts that make
layered images and change containers (LAYER2, LAYER3, CHANGES), and store
consistency checks (`check_store`, `check_consistent`, `store_state`)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MTIME = 1700000000
LAYER_TYPES = {None: "application/vnd.oci.image.layer.v1.tar",
               "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


# -- layer tars and the base tar ------------------------------------------------------------------

def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _add(tf, kind, name, data=b"", mode=None, uid=0, gid=0, link="", xattrs=None):
    ti = tarfile.TarInfo(name)
    ti.mtime = MTIME
    ti.uid, ti.gid, ti.uname, ti.gname = uid, gid, "", ""
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    payload = None
    if kind == "file":
        payload = data if isinstance(data, bytes) else data.encode()
        ti.size = len(payload)
        ti.mode = 0o644 if mode is None else mode
    elif kind == "dir":
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755 if mode is None else mode
    elif kind == "symlink":
        ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, link, 0o777
    elif kind == "hardlink":
        ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, link, 0o644
    elif kind == "whiteout":
        d, _, base = name.rpartition("/")
        ti.name = (d + "/" if d else "") + ".wh." + base
        ti.mode, payload = 0o644, b""
    elif kind == "opaque":
        ti.name, ti.mode, payload = name.rstrip("/") + "/.wh..wh..opq", 0o644, b""
    else:
        raise ValueError(kind)
    tf.addfile(ti, io.BytesIO(payload) if payload is not None else None)


def layer_tar(entries) -> bytes:
    """A layer tar: entries are (kind, name, **options) tuples for `_add`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, *rest in entries:
            _add(tf, kind, name, **(rest[0] if rest else {}))
    return buf.getvalue()


# Files the base image adds to the busybox rootfs (paths relative to /).
BASE_EXTRA = [
    ("dir", "data"),
    ("file", "data/a", {"data": "a\n"}),
    ("file", "data/b", {"data": "b\n"}),
    ("file", "data/hl1", {"data": "shared\n"}),
    ("hardlink", "data/hl2", {"link": "data/hl1"}),
    ("file", "data/owned", {"data": "o\n", "mode": 0o640, "uid": 1000, "gid": 1000}),
    ("file", "data/suid", {"data": "s\n", "mode": 0o4755}),
    ("file", "data/xattr", {"data": "x\n", "xattrs": {"user.test": "hello"}}),
    ("symlink", "data/link", {"link": "a"}),
    ("dir", "data/sub"),
    ("file", "data/sub/x", {"data": "x\n"}),
    ("file", "data/sub/y", {"data": "y\n"}),
    ("dir", "data/sub/deep"),
    ("file", "data/sub/deep/z", {"data": "z\n"}),
    ("dir", "keep"),
    ("file", "keep/k1", {"data": "k1\n"}),
    ("file", "keep/k2", {"data": "k2\n"}),
    ("dir", "gone"),
    ("file", "gone/g1", {"data": "g1\n"}),
    ("file", "gone/g2", {"data": "g2\n"}),
    ("dir", "tree"),
    ("file", "tree/t1", {"data": "t1\n"}),
    ("dir", "tree/t2"),
    ("file", "tree/t2/t3", {"data": "t3\n"}),
]


def write_base_tar(rootfs: str, out: str) -> str:
    """The busybox rootfs (entries without a ./ prefix, owners kept) plus BASE_EXTRA."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                ti = tf.gettarinfo(full, arcname=os.path.relpath(full, rootfs))
                ti.uname = ti.gname = ""
                if ti.isfile():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
        for kind, name, *rest in BASE_EXTRA:
            _add(tf, kind, name, **(rest[0] if rest else {}))
    return out


def make_tar(entries) -> bytes:
    """A layer tar from entries:
    ("file", name, data[, mode]) ("dir", name[, mode]) ("symlink", name, target)
    ("hardlink", name, target) ("whiteout", path) ("opaque", dir)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.uid = ti.gid = 0
            data = None
            if kind == "file":
                data = e[2] if isinstance(e[2], bytes) else e[2].encode()
                ti.size = len(data)
                ti.mode = e[3] if len(e) > 3 else 0o644
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = e[2] if len(e) > 2 else 0o755
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e[2]
                ti.mode = 0o777
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e[2]
                ti.mode = 0o644
            elif kind == "whiteout":
                d, _, base = name.rpartition("/")
                ti.name = (d + "/" if d else "") + ".wh." + base
                ti.size = 0
                ti.mode = 0o644
                data = b""
            elif kind == "opaque":
                ti.name = name.rstrip("/") + "/.wh..wh..opq"
                ti.size = 0
                ti.mode = 0o644
                data = b""
            else:
                raise ValueError(kind)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data: bytes, compression) -> bytes:
    if compression is None:
        return data
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(compression)


def tar_dir(path: str, out: str) -> str:
    """A tar of a directory tree (as `tar -C path -cf out .`)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(path, arcname=".")
    return out


def saved_layers(saved_tar: str) -> list[str]:
    """The layer digests of the one image in a saved tar (`pyrt save`: an OCI
    layout), bottom first."""
    with tarfile.open(saved_tar) as tf:
        (m,) = json.load(tf.extractfile("index.json"))["manifests"]
        manifest = json.load(tf.extractfile(f"blobs/sha256/{m['digest'][7:]}"))
        return [d["digest"] for d in manifest["layers"]]


class OCIBuilder:
    """Writes an OCI image layout by hand (so tests control every byte)."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.entries = []

    def blob(self, data: bytes) -> str:
        d = sha(data)
        with open(os.path.join(self.path, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return d

    def blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest[7:])

    def image(self, layers, compression="gzip", ref=None, config=None, manifest_hook=None,
              config_hook=None, add_entry=True, platform=None):
        """layers: list of uncompressed tar bytes. Returns a dict describing it."""
        descs, diff_ids = [], []
        for tar in layers:
            comp = compress(tar, compression)
            descs.append({"mediaType": LAYER_TYPES[compression], "digest": self.blob(comp), "size": len(comp)})
            diff_ids.append(sha(tar))
        cfg = {"created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
               "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
               "rootfs": {"type": "layers", "diff_ids": diff_ids},
               "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
                           for i in range(len(layers))]}
        cfg.update(config or {})
        if config_hook:
            config_hook(cfg)
        cfg_bytes = json.dumps(cfg).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": self.blob(cfg_bytes), "size": len(cfg_bytes)},
                    "layers": descs}
        if manifest_hook:
            manifest_hook(manifest)
        mbytes = json.dumps(manifest).encode()
        entry = {"mediaType": OCI_MANIFEST, "digest": self.blob(mbytes), "size": len(mbytes)}
        if platform:
            entry["platform"] = platform
        if ref:
            entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
        if add_entry:
            self.entries.append(entry)
        return {"id": sha(cfg_bytes), "manifest": entry["digest"], "entry": entry,
                "layers": [d["digest"] for d in descs], "diff_ids": diff_ids, "config": cfg}

    def index_blob(self, entries, ref=None):
        idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        data = json.dumps(idx).encode()
        e = {"mediaType": OCI_INDEX, "digest": self.blob(data), "size": len(data)}
        if ref:
            e["annotations"] = {"org.opencontainers.image.ref.name": ref}
        self.entries.append(e)
        return e

    def write(self, index_hook=None):
        idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}
        if index_hook:
            index_hook(idx)
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(idx, f)
        return self.path

    def tar(self, out):
        names = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            for n in filenames:
                names.append(os.path.relpath(os.path.join(dirpath, n), self.path))
        with tarfile.open(out, "w") as tf:
            for n in sorted(names):
                tf.add(os.path.join(self.path, n), arcname=n)
        return out


def store_state(rt):
    """Everything in the store but the database files (listed with mode and size,
    files hashed), plus every row of the database."""
    root = rt.store.root
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if rel.startswith("pyrt.db"):
                continue
            st = os.lstat(p)
            extra = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            files.append((rel, st.st_mode, st.st_uid, st.st_gid, extra))
    return sorted(files), rt.store.db.dump()


def check_consistent(rt):
    """Every row points at files that exist; every snapshot and blob has a row."""
    store = rt.store
    db = store.db
    layers = {r["chain_id"] for r in db.query("SELECT chain_id FROM layers")}
    for cid in layers:
        assert os.path.isdir(store.snapshots.path(cid)), cid
    assert {"sha256:" + n for n in store.snapshots.names()} == layers
    for r in db.query("SELECT id, manifest_digest FROM images"):
        assert store.blobs.exists(r["id"]) and store.blobs.exists(r["manifest_digest"])
        assert sha(store.blobs.read(r["id"])) == r["id"]
    for r in db.query("SELECT digest FROM image_layers UNION SELECT digest FROM layers"):
        assert store.blobs.exists(r["digest"]), r["digest"]
    for d in store.blobs.digests():
        with open(store.blobs.path(d), "rb") as f:
            assert sha(f.read()) == d
    assert os.listdir(os.path.join(store.root, "tmp")) == []
    assert not [n for n in os.listdir(store.snapshots.dir) if n.startswith(".")]


def base_entries(tag="base"):
    return [("dir", "bin"), ("file", "bin/hello", f"#!/bin/sh\necho {tag}\n", 0o755),
            ("dir", "etc"), ("file", "etc/os-release", f"NAME={tag}\n"),
            ("file", "etc/motd", "hello\n"), ("dir", "data"), ("file", "data/a", "a\n"),
            ("file", "data/b", "b\n")]

# -- layered images and container changes ------------------------------------------------------

# Run in containers of base:1 and committed: base:2 and layered:3 (see build_layered in containertools.py).
LAYER2 = "set -e; echo l2 > /data/l2new; echo b2 > /data/b; rm /data/a; mkdir /l2dir; echo f > /l2dir/f"
LAYER3 = ("set -e; rm -rf /gone; rm -rf /data/sub; mkdir /data/sub; echo n > /data/sub/n; "
          "chmod 600 /keep/k2")


# Run in containers of the layered image: writes, deletes, renames, chmod, chown,
# hardlinks, removes whole dirs and recreates one (an opaque dir in overlay mode).
CHANGES = """set -e
echo new > /data/added
echo more >> /data/b
rm /data/l2new
mv /keep/k1 /keep/k1-renamed
chmod 700 /data/suid
chown 1000:1000 /data/xattr
ln /data/added /data/added-link
rm -rf /tree
rm -rf /l2dir
mkdir /l2dir
echo fresh > /l2dir/fresh
mkdir /gone
echo back > /gone/back
"""
CHANGES_DIFF = ["C /data", "A /data/added", "A /data/added-link", "C /data/b", "D /data/l2new",
                "C /data/suid", "C /data/xattr", "A /gone", "A /gone/back", "C /keep", "D /keep/k1",
                "A /keep/k1-renamed", "C /l2dir", "D /l2dir/f", "A /l2dir/fresh", "D /tree"]


# -- store consistency -------------------------------------------------------------------------------

def check_store(rt):
    """The store is consistent: rows point at files and every file has a row; no
    container dir without a row; no temp files left."""
    store, db = rt.store, rt.store.db
    layers = {r["chain_id"] for r in db.query("SELECT chain_id FROM layers")}
    assert {"sha256:" + n for n in store.snapshots.names()} == layers
    for r in db.query("SELECT id, manifest_digest FROM images"):
        assert store.blobs.exists(r["id"]) and store.blobs.exists(r["manifest_digest"])
        assert sha(store.blobs.read(r["id"])) == r["id"]
    for r in db.query("SELECT digest FROM image_layers UNION SELECT digest FROM layers"):
        assert store.blobs.exists(r["digest"]), r["digest"]
    for r in db.query("SELECT image_id FROM containers"):
        assert db.query_one("SELECT 1 FROM images WHERE id=?", (r["image_id"],))
    rows = {r["id"] for r in db.query("SELECT id FROM containers")}
    cdir = os.path.join(store.root, "containers")
    assert set(os.listdir(cdir) if os.path.isdir(cdir) else ()) == rows
    assert os.listdir(os.path.join(store.root, "tmp")) == []
