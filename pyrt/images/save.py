"""Writing image archives (`docker save`): the OCI image layout, as a directory or a
tar of one, and docker-archive; each goes to a temp name and is renamed when complete.
Reading them is archive.py's."""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass

from pyrt import compression
from pyrt.errors import ImageFormatError
from pyrt.images.archive import decompressed
from pyrt.oci import mediatypes as mt
from pyrt.oci.digest import digest_hex, sha256_bytes
from pyrt.oci.image import dumps, parse_index
from pyrt.oci.reference import parse_reference


@dataclass
class SaveItem:
    """One image to save: its blobs (paths in the store) and names."""
    image_id: str
    config: bytes
    manifest: bytes
    manifest_digest: str
    manifest_media_type: str
    layers: list            # [{digest, diff_id, media_type, size, path}]
    names: list             # ["repo:tag", ...]


def _tarinfo(name, size, mode=0o644, typ=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name)
    ti.size = size if typ == tarfile.REGTYPE else 0
    ti.mode = mode
    ti.type = typ
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


class _TarOut:
    def __init__(self, path):
        self.final = path
        d = os.path.dirname(os.path.abspath(path))
        fd, self.tmp = tempfile.mkstemp(prefix=".pyrt-save-", dir=d)
        self.f = os.fdopen(fd, "wb")
        self.tf = tarfile.open(fileobj=self.f, mode="w", format=tarfile.PAX_FORMAT)
        self.tf.copybufsize = 1 << 20
        self.dirs = set()

    def mkdir(self, name):
        if name not in self.dirs:
            self.dirs.add(name)
            self.tf.addfile(_tarinfo(name, 0, 0o755, tarfile.DIRTYPE))

    def add_bytes(self, name, data):
        self.tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))

    def add_file(self, name, path, size=None):
        with open(path, "rb") as f:
            if size is None:
                size = os.fstat(f.fileno()).st_size
            self.tf.addfile(_tarinfo(name, size), f)

    def finish(self):
        self.tf.close()
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.chmod(self.tmp, 0o644 & ~_umask())
        os.rename(self.tmp, self.final)

    def abort(self):
        try:
            self.tf.close()
        except Exception:
            pass
        try:
            self.f.close()
        except Exception:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def _index_entries(items):
    entries = []
    for it in items:
        base = {"mediaType": it.manifest_media_type, "digest": it.manifest_digest, "size": len(it.manifest)}
        if not it.names:
            entries.append(base)
        for n in it.names:
            entries.append({**base, "annotations": {mt.ANNOTATION_CONTAINERD_NAME: n,
                                                    mt.ANNOTATION_REF_NAME: n}})
    return entries


def write_oci(items, dest: str, as_dir: bool, progress=None) -> None:
    """Writes an OCI image layout: a directory (`as_dir`; an existing layout is added
    to, replacing entries of the same names) or a tar."""
    blobs = {}  # digest -> (path or bytes)
    for it in items:
        blobs.setdefault(it.manifest_digest, it.manifest)
        blobs.setdefault(sha256_bytes(it.config), it.config)
        for layer in it.layers:
            blobs.setdefault(layer["digest"], layer["path"])
    total = sum(len(v) if isinstance(v, bytes) else os.path.getsize(v) for v in blobs.values())
    done = 0
    layout = dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION})
    if as_dir:
        os.makedirs(os.path.join(dest, "blobs", "sha256"), exist_ok=True)
        old = []
        ip = os.path.join(dest, "index.json")
        if os.path.exists(ip):
            with open(ip, "rb") as f:
                prev = parse_index(f.read(), f"existing {ip}")
            names = {n for it in items for n in it.names}
            old = [m for m in prev["manifests"]
                   if (m.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) not in names]
        for digest, v in blobs.items():
            bp = os.path.join(dest, "blobs", "sha256", digest_hex(digest))
            if not os.path.exists(bp):
                _copy_atomic(v, bp)
            done += len(v) if isinstance(v, bytes) else os.path.getsize(v)
            if progress:
                progress("writing", done, total)
        _write_atomic(os.path.join(dest, "oci-layout"), layout)
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": old + _index_entries(items)}
        _write_atomic(ip, dumps(index))
        return
    out = _TarOut(dest)
    try:
        out.add_bytes("oci-layout", layout)
        out.mkdir("blobs/")
        out.mkdir("blobs/sha256/")
        for digest, v in blobs.items():
            name = "blobs/sha256/" + digest_hex(digest)
            if isinstance(v, bytes):
                out.add_bytes(name, v)
                done += len(v)
            else:
                out.add_file(name, v)
                done += os.path.getsize(v)
            if progress:
                progress("writing", done, total)
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": _index_entries(items)}
        out.add_bytes("index.json", dumps(index))
        out.finish()
    except BaseException:
        out.abort()
        raise


def write_docker_archive(items, dest: str, tmp_dir: str, progress=None) -> None:
    """Writes a docker-archive tar: `<config hex>.json`, `<diff_id hex>.tar`
    (uncompressed, as docker writes them) and manifest.json."""
    out = _TarOut(dest)
    try:
        manifest = []
        written = set()
        total = sum(layer["size"] for it in items for layer in it.layers)
        done = 0
        for it in items:
            cname = digest_hex(sha256_bytes(it.config)) + ".json"
            if cname not in written:
                out.add_bytes(cname, it.config)
                written.add(cname)
            lnames = []
            for layer in it.layers:
                lname = digest_hex(layer["diff_id"]) + ".tar"
                lnames.append(lname)
                if lname not in written:
                    _add_uncompressed_layer(out, lname, layer, tmp_dir)
                    written.add(lname)
                done += layer["size"]
                if progress:
                    progress("writing", done, total)
            manifest.append({"Config": cname, "RepoTags": list(it.names) or None, "Layers": lnames})
        out.add_bytes("manifest.json", dumps(manifest))
        repos = {}
        for it in items:
            for n in it.names:
                r = parse_reference(n)
                if it.layers:
                    repos.setdefault(r.repository, {})[r.tag] = digest_hex(it.layers[-1]["diff_id"])
        if repos:
            out.add_bytes("repositories", dumps(repos))
        out.finish()
    except BaseException:
        out.abort()
        raise


def _add_uncompressed_layer(out, name, layer, tmp_dir):
    comp = mt.layer_compression(layer["media_type"])
    if comp is None:
        with open(layer["path"], "rb") as f:
            comp = compression.sniff(f.read(compression.HEAD_SIZE))
    if not comp:
        out.add_file(name, layer["path"])
        return
    import hashlib
    fd, tmp = tempfile.mkstemp(prefix="layer-", dir=tmp_dir)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as w, open(layer["path"], "rb") as r:
            reader = decompressed(r, comp, f"layer {layer['digest']}")
            for chunk in iter(lambda: reader.read(compression.CHUNK), b""):
                h.update(chunk)
                w.write(chunk)
        got = "sha256:" + h.hexdigest()
        if got != layer["diff_id"]:
            raise ImageFormatError(f"layer {layer['digest']}: uncompressed content is {got}, its "
                                   f"diff_id says {layer['diff_id']}")
        out.add_file(name, tmp)
    finally:
        os.unlink(tmp)


def _write_atomic(path, data: bytes):
    _copy_atomic(data, path)


def _copy_atomic(src, path):
    """Write `src` (bytes, or the path of a file to copy) to `path` through a
    fsync'd temp file renamed into place: `path` is never seen half-written."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as w:
            if isinstance(src, bytes):
                w.write(src)
            else:
                import shutil
                with open(src, "rb") as r:
                    shutil.copyfileobj(r, w, 1 << 20)
            w.flush()
            os.fsync(w.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
