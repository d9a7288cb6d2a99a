"""Image archives: the OCI image layout (a directory or a tar of one: `oci-layout`,
`index.json`, `blobs/sha256/...`) and docker-archive (`manifest.json` with Config,
RepoTags and Layers, layer tars, config JSON), as `docker save`, `podman save`,
`skopeo copy` and `umoci` write them.

Reading (`open_archive`) validates the structure and yields `ImagePlan`s: the config
and manifest (read, digest-checked), and for each layer a way to open its blob; the
caller (pyrt.images.ingest) streams the blobs into the store. A tar file is read in place by
offset; a stream (a pipe) or a compressed tar is read once as it comes, its layers
written to files the store then links (StreamSource). Writing them (`docker save`) is
save.py's."""
from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import tarfile
import tempfile
from dataclasses import dataclass, field

from pyrt import compression
from pyrt.errors import ImageFormatError, InvalidArgument, SyscallError
from pyrt.oci import mediatypes as mt
from pyrt.oci.digest import digest_hex, is_hex64, sha256_bytes
from pyrt.oci.image import (load_json, manifest_json, parse_config, parse_index, parse_manifest,
                            platform_matches)
from pyrt.oci.reference import parse_reference

MAX_JSON = 32 << 20           # a manifest, index or config larger than this is refused
MAX_INDEX_DEPTH = 4
PLATFORM = ("linux", "amd64")


@dataclass
class LayerPlan:
    member: str                   # name of the blob in the archive
    media_type: str
    diff_id: str
    digest: str | None            # None: computed when the blob is read (docker-archive)
    size: int
    open: object = None           # () -> binary file object
    chain_id: str = ""
    # () -> (path, "sha256:<hex>") of a file in the store's temp dir that holds the blob and
    # may be linked into the store (a streamed archive's member), or None: read it with open
    spooled: object = None


@dataclass
class ImagePlan:
    config: bytes
    config_digest: str
    config_media_type: str
    layers: list
    names: list = field(default_factory=list)         # "repository:tag"
    manifest: bytes | None = None                      # None: made after the layers are read
    manifest_digest: str | None = None
    manifest_media_type: str = mt.OCI_MANIFEST
    source: str = ""

    def build_manifest(self):
        if self.manifest is None:
            self.manifest = manifest_json(
                {"mediaType": self.config_media_type, "digest": self.config_digest,
                 "size": len(self.config)},
                [{"mediaType": lp.media_type, "digest": lp.digest, "size": lp.size}
                 for lp in self.layers])
            self.manifest_digest = sha256_bytes(self.manifest)
            self.manifest_media_type = mt.OCI_MANIFEST


# -- sources: a directory or a tar, read by member name ------------------------------------

def _norm_member(name: str, archive: str) -> str:
    """A member name made relative and normalized; traversal is refused."""
    if "\x00" in name:
        raise ImageFormatError(f"invalid member name {name!r} in {archive}")
    if name.startswith("/"):
        raise ImageFormatError(f"path traversal in {archive}: absolute member name {name!r}")
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise ImageFormatError(f"path traversal in {archive}: member name {name!r} contains '..'")
        parts.append(p)
    return "/".join(parts)


class _Slice(io.RawIOBase):
    """A read-only window [offset, offset+size) of a file, with its own descriptor."""

    def __init__(self, path, offset, size):
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._off, self._end = offset, offset + size

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self._end - self._off)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._off)
        if not data:
            raise ImageFormatError("truncated archive: unexpected end of data")
        b[:len(data)] = data
        self._off += len(data)
        return len(data)

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


class _Members:
    """Members of a tar by name: {name: (type, where the data is, size, linkname)}, links
    followed inside the archive. Subclasses say how a member's data is opened."""

    label = ""
    members: dict

    def _resolve(self, name: str, depth: int = 0):
        name = _norm_member(name, self.label)
        m = self.members.get(name)
        if m is None:
            return None, name
        typ = m[0]
        if typ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            if depth > 16:
                raise ImageFormatError(f"too many levels of links at {name!r} in {self.label}")
            if typ == tarfile.SYMTYPE:
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m[3]))
                if target.startswith("../") or target == ".." or target.startswith("/"):
                    raise ImageFormatError(f"path traversal in {self.label}: {name!r} links to {m[3]!r}")
            else:
                target = m[3]
            return self._resolve(target, depth + 1)
        return m, name

    def _regular(self, name):
        m, _ = self._resolve(name)
        if m is None or m[0] not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
            return None
        return m

    def exists(self, name):
        return self._regular(name) is not None

    def size(self, name):
        m, _ = self._resolve(name)
        return m[2]

    def open(self, name):
        m = self._regular(name)
        if m is None:
            raise ImageFormatError(f"missing file {name!r} in {self.label}")
        return self._open_data(m[1], m[2])

    def spooled(self, name):
        return None

    def close(self):
        pass

    @staticmethod
    def _check_link(ti, label):
        if ti.issym() and ti.linkname.startswith("/"):
            raise ImageFormatError(f"path traversal in {label}: member {ti.name!r} "
                                   f"links to {ti.linkname!r}")


class TarSource(_Members):
    """A tar archive indexed by member name (data offsets), read without extracting."""

    def __init__(self, path: str, label: str | None = None):
        self.path = path
        self.label = label or path
        self.members: dict[str, tuple] = {}
        try:
            size = os.path.getsize(path)
            with tarfile.open(path, "r:") as tf:
                last_end = 0
                for ti in tf:
                    name = _norm_member(ti.name, self.label)
                    self._check_link(ti, self.label)
                    if ti.isreg():
                        end = ti.offset_data + ti.size
                        if end > size:
                            raise ImageFormatError(f"truncated archive {self.label}: member {ti.name!r} "
                                                   f"needs {end} bytes, the file has {size}")
                    last_end = ti.offset_data + ((ti.size + 511) // 512) * 512 if ti.isreg() \
                        else ti.offset_data
                    if name:
                        self.members[name] = (ti.type, ti.offset_data, ti.size, ti.linkname)
        except tarfile.TarError as e:
            raise ImageFormatError(f"truncated or corrupt tar {self.label}: {e}") from None
        if not self.members:
            raise ImageFormatError(f"{self.label} is empty or not a tar archive")
        # tar writers end with zero blocks: their absence means the archive was cut
        with open(path, "rb") as f:
            f.seek(last_end)
            tail = f.read(512)
        if len(tail) < 512 or tail.strip(b"\x00"):
            raise ImageFormatError(f"truncated archive {self.label}: no end-of-archive marker "
                                   f"after the last member")

    def _open_data(self, offset, size):
        return io.BufferedReader(_Slice(self.path, offset, size), 1 << 20)


class StreamSource(_Members):
    """A tar archive read once from a stream (a pipe; compressed or not), as it comes:
    small members are kept in memory, the others (layers) written once to files in
    `tmp_dir` and hashed on the way, so that a layer is linked into the store, not
    copied again (tmp_dir must be on the store's filesystem)."""

    SMALL = 256 << 10          # a member this size or smaller stays in memory ...
    MEMORY = 64 << 20          # ... while they add up to no more than this

    def __init__(self, f, tmp_dir: str, label: str = "<stream>"):
        self.label = label
        self.tmp_dir = tmp_dir
        self.members: dict[str, tuple] = {}
        self._digests: dict[str, str] = {}
        self._memory = 0
        try:
            self._read(f)
        except BaseException:
            self.close()
            raise

    def _read(self, f):
        label = self.label
        head = compression.read_head(f)
        if not head:
            raise ImageFormatError(f"{label} is empty")
        kind = compression.sniff(head)
        raw = compression.Prefixed(head, f)
        stream = decompressed(raw, kind, label) if kind else raw
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for ti in tf:
                    name = _norm_member(ti.name, label)
                    self._check_link(ti, label)
                    where = self._take(tf.extractfile(ti), ti.size) if ti.isreg() else None
                    if name:
                        self.members[name] = (ti.type, where, ti.size, ti.linkname)
                # tar writers end with zero blocks, which the reader consumed without
                # moving its offset: their absence means the archive was cut
                ended = tf.fileobj.tell() >= tf.offset + tarfile.BLOCKSIZE
        except tarfile.TarError as e:
            raise ImageFormatError(f"truncated or corrupt tar {label}: {e}") from None
        except (EOFError, OSError, ValueError) as e:  # the decompressor's
            if isinstance(e, (ImageFormatError, SyscallError)):  # ours: a bad archive, a full disk
                raise
            raise ImageFormatError(f"truncated or corrupt {kind or 'tar'} stream {label}: {e}") from None
        if not self.members:
            raise ImageFormatError(f"{label} is empty or not a tar archive")
        if not ended:
            raise ImageFormatError(f"truncated archive {label}: no end-of-archive marker "
                                   f"after the last member")

    def _take(self, data, size):
        """The member's bytes, or the path of the file they were written to."""
        if size <= self.SMALL and self._memory + size <= self.MEMORY:
            self._memory += size
            return data.read()
        import hashlib
        fd, path = tempfile.mkstemp(prefix="member-", dir=self.tmp_dir)
        self._digests[path] = None  # removed by close() whatever happens next
        h = hashlib.sha256()
        buf = bytearray(compression.CHUNK)
        view = memoryview(buf)
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    n = data.readinto(view)
                    if not n:
                        break
                    h.update(view[:n])
                    out.write(view[:n])
        except OSError as e:  # a full disk says so (never "bad archive")
            if isinstance(e, SyscallError) or e.errno is None:
                raise
            raise SyscallError(e.errno, "write", self.tmp_dir) from None
        self._digests[path] = "sha256:" + h.hexdigest()
        return path

    def _open_data(self, where, size):
        if isinstance(where, bytes):
            return io.BytesIO(where)
        return open(where, "rb", buffering=1 << 20)

    def spooled(self, name):
        m = self._regular(name)
        if m is None or isinstance(m[1], bytes):
            return None
        return m[1], self._digests[m[1]]

    def close(self):
        for path in self._digests:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._digests.clear()


class DirSource:
    """A directory, read by relative names walked with O_NOFOLLOW (nothing outside it)."""

    def __init__(self, path: str):
        self.path = path
        self.label = path
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _open_fd(self, name):
        parts = _norm_member(name, self.label).split("/")
        fd = os.dup(self._fd)
        try:
            for p in parts[:-1]:
                nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)

    def exists(self, name):
        try:
            fd = self._open_fd(name)
        except OSError:
            return False
        try:
            import stat
            return stat.S_ISREG(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    def size(self, name):
        fd = self._open_fd(name)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def open(self, name):
        try:
            fd = self._open_fd(name)
        except OSError as e:
            raise ImageFormatError(f"missing file {name!r} in {self.label}: {e.strerror}") from None
        return os.fdopen(fd, "rb", buffering=1 << 20)

    def spooled(self, name):
        return None

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_small(src, name, what, limit=MAX_JSON) -> bytes:
    if not src.exists(name):
        raise ImageFormatError(f"missing {what} ({name}) in {src.label}")
    with src.open(name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ImageFormatError(f"{what} ({name}) in {src.label} is larger than {limit} bytes")
    return data


# -- opening -----------------------------------------------------------------------------

@contextlib.contextmanager
def open_archive(path_or_fileobj, tmp_dir: str):
    """Yields (format, [ImagePlan]) for a docker-archive or OCI layout: a directory or a
    tar file, read in place; a compressed tar file or a binary file object, read once
    as a stream (its large members written to `tmp_dir`, on the store's filesystem)."""
    if not isinstance(path_or_fileobj, (str, os.PathLike)):
        src = StreamSource(path_or_fileobj, tmp_dir)
    else:
        path = label = os.fspath(path_or_fileobj)
        if not os.path.exists(path):
            raise InvalidArgument(f"{path}: no such file or directory")
        if os.path.isdir(path):
            src = DirSource(path)
        else:
            with open(path, "rb") as f:
                head = f.read(compression.HEAD_SIZE)
                if not head:
                    raise ImageFormatError(f"{label} is empty")
                f.seek(0)
                src = StreamSource(f, tmp_dir, label) if compression.sniff(head) else None
            if src is None:
                src = TarSource(path, label)
    try:
        if src.exists("index.json") and (src.exists("oci-layout") or not src.exists("manifest.json")):
            yield "oci", read_oci(src)
        elif src.exists("manifest.json"):
            yield "docker-archive", read_docker_archive(src)
        else:
            raise ImageFormatError(f"{src.label} is neither an OCI image layout (no index.json) nor a "
                                   "docker-archive (no manifest.json)")
    finally:
        src.close()


def decompressed(f, comp, label):
    """compression.open_reader(f, comp), its errors an ImageFormatError naming `label`."""
    try:
        return compression.open_reader(f, comp)
    except ImportError as e:
        raise ImageFormatError(f"{label}: {e}") from None
    except ValueError:
        raise ImageFormatError(f"{label}: unsupported compression {comp}") from None


# -- OCI layout ------------------------------------------------------------------------------

def _blob_name(digest: str, what: str) -> str:
    return "blobs/sha256/" + digest_hex(digest, f"digest of {what}")


def _read_blob(src, desc: dict, what: str) -> bytes:
    name = _blob_name(desc["digest"], what)
    if not src.exists(name):
        raise ImageFormatError(f"missing blob {desc['digest']} ({what}) in {src.label}")
    size = src.size(name)
    if size != desc["size"]:
        raise ImageFormatError(f"wrong size for {what} {desc['digest']}: the descriptor says "
                               f"{desc['size']} bytes, the blob has {size}")
    data = _read_small(src, name, what)
    got = sha256_bytes(data)
    if got != desc["digest"]:
        raise ImageFormatError(f"digest mismatch for {what}: expected {desc['digest']}, got {got}")
    return data


def _names_from_annotations(ann: dict | None) -> list:
    if not ann:
        return []
    full = ann.get(mt.ANNOTATION_CONTAINERD_NAME)
    ref = ann.get(mt.ANNOTATION_REF_NAME)
    for cand in (full, ref):
        if not cand or ("/" not in cand and ":" not in cand and cand == ref):
            continue  # a bare ref.name is a tag without a repository (as docker reads it)
        try:
            r = parse_reference(cand)
        except InvalidArgument:
            continue
        if r.tag:
            return [f"{r.repository}:{r.tag}"]
    return []


def read_oci(src) -> list:
    if src.exists("oci-layout"):
        layout = load_json(_read_small(src, "oci-layout", "oci-layout file"), "oci-layout file")
        if not isinstance(layout.get("imageLayoutVersion"), str):
            raise ImageFormatError(f"invalid oci-layout file in {src.label}: no imageLayoutVersion")
    index = parse_index(_read_small(src, "index.json", "index.json"), f"index.json of {src.label}")
    plans: dict[str, ImagePlan] = {}
    order = []
    for i, entry in enumerate(index["manifests"]):
        desc, manifest_bytes = _resolve_manifest(src, entry, f"index.json entry {i}", 0)
        names = _names_from_annotations(entry.get("annotations"))
        plan = plans.get(desc["digest"])
        if plan is None:
            plan = _plan_from_manifest(src, desc, manifest_bytes)
            plans[desc["digest"]] = plan
            order.append(desc["digest"])
        for n in names:
            if n not in plan.names:
                plan.names.append(n)
    if not order:
        raise ImageFormatError(f"{src.label}: index.json lists no images")
    return [plans[d] for d in order]


def _resolve_manifest(src, desc, what, depth):
    media_type = desc["mediaType"]
    if media_type in mt.INDEX_TYPES:
        if depth >= MAX_INDEX_DEPTH:
            raise ImageFormatError(f"{what}: image indexes nested too deep")
        data = _read_blob(src, desc, f"image index ({what})")
        index = parse_index(data, f"image index {desc['digest']}")
        for i, m in enumerate(index["manifests"]):
            if m["mediaType"] in mt.MANIFEST_TYPES and platform_matches(m.get("platform"), *PLATFORM):
                return _resolve_manifest(src, m, f"{what} -> entry {i}", depth + 1)
        for i, m in enumerate(index["manifests"]):  # a nested index for the platform
            if m["mediaType"] in mt.INDEX_TYPES and (m.get("platform") is None or
                                                     platform_matches(m.get("platform"), *PLATFORM)):
                return _resolve_manifest(src, m, f"{what} -> entry {i}", depth + 1)
        if len(index["manifests"]) == 1 and index["manifests"][0].get("platform") is None \
                and index["manifests"][0]["mediaType"] in mt.MANIFEST_TYPES:
            return _resolve_manifest(src, index["manifests"][0], f"{what} -> entry 0", depth + 1)
        raise ImageFormatError(f"image index {desc['digest']} has no image for "
                               f"{PLATFORM[0]}/{PLATFORM[1]}")
    if media_type not in mt.MANIFEST_TYPES:
        raise ImageFormatError(f"{what}: unknown media type {media_type!r}")
    data = _read_blob(src, desc, f"manifest ({what})")
    return desc, data


def _plan_from_manifest(src, desc, data) -> ImagePlan:
    what = f"manifest {desc['digest']}"
    manifest = parse_manifest(data, what)
    if manifest.get("mediaType") and manifest["mediaType"] != desc["mediaType"]:
        raise ImageFormatError(f"{what}: its mediaType {manifest['mediaType']!r} differs from its "
                               f"descriptor's {desc['mediaType']!r}")
    cdesc = manifest["config"]
    config = _read_blob(src, cdesc, f"config of {what}")
    cfg = parse_config(config, f"config {cdesc['digest']}")
    diff_ids = cfg["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise ImageFormatError(f"{what} names {len(manifest['layers'])} layers but its config has "
                               f"{len(diff_ids)} diff_ids")
    layers = []
    for i, (ld, diff_id) in enumerate(zip(manifest["layers"], diff_ids)):
        name = _blob_name(ld["digest"], f"layer {i}")
        if not src.exists(name):
            raise ImageFormatError(f"missing blob {ld['digest']} (layer {i} of {what}) in {src.label}")
        size = src.size(name)
        if size != ld["size"]:
            raise ImageFormatError(f"wrong size for layer {i} ({ld['digest']}) of {what}: the "
                                   f"descriptor says {ld['size']} bytes, the blob has {size}")
        layers.append(LayerPlan(member=name, media_type=ld["mediaType"], diff_id=diff_id,
                                digest=ld["digest"], size=ld["size"],
                                open=(lambda n=name: src.open(n)),
                                spooled=(lambda n=name: src.spooled(n))))
    return ImagePlan(config=config, config_digest=cdesc["digest"], config_media_type=cdesc["mediaType"],
                     layers=layers, manifest=data, manifest_digest=desc["digest"],
                     manifest_media_type=desc["mediaType"], source=src.label)


# -- docker-archive ------------------------------------------------------------------------------

def _hex_in_name(name: str):
    """The digest a docker-archive member name claims (`<hex>.json`, `<hex>.tar`,
    `blobs/sha256/<hex>`), or None."""
    base = posixpath.basename(name)
    for suffix in (".json", ".tar"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    if base.startswith("sha256:"):
        base = base[7:]
    return base if is_hex64(base) else None


def read_docker_archive(src) -> list:
    data = _read_small(src, "manifest.json", "manifest.json")
    try:
        entries = json.loads(data)
    except ValueError as e:
        raise ImageFormatError(f"invalid JSON in manifest.json of {src.label}: {e}") from None
    if not isinstance(entries, list) or not entries:
        raise ImageFormatError(f"invalid manifest.json in {src.label}: expected a non-empty list")
    plans = []
    for i, e in enumerate(entries):
        what = f"manifest.json entry {i}"
        if not isinstance(e, dict) or not isinstance(e.get("Config"), str) \
                or not isinstance(e.get("Layers"), list) \
                or not all(isinstance(x, str) for x in e["Layers"]):
            raise ImageFormatError(f"invalid {what} in {src.label}: needs Config and Layers")
        cname = _norm_member(e["Config"], src.label)
        config = _read_small(src, cname, f"config of {what}")
        config_digest = sha256_bytes(config)
        claimed = _hex_in_name(cname)
        if claimed and "sha256:" + claimed != config_digest:
            raise ImageFormatError(f"digest mismatch for config {cname}: its name says sha256:{claimed}, "
                                   f"its content is {config_digest}")
        cfg = parse_config(config, f"config {cname}")
        diff_ids = cfg["rootfs"]["diff_ids"]
        if len(diff_ids) != len(e["Layers"]):
            raise ImageFormatError(f"{what} lists {len(e['Layers'])} layers but its config has "
                                   f"{len(diff_ids)} diff_ids")
        layers = []
        for j, (lname, diff_id) in enumerate(zip(e["Layers"], diff_ids)):
            lname = _norm_member(lname, src.label)
            if not src.exists(lname):
                raise ImageFormatError(f"missing layer {lname} ({what}) in {src.label}")
            size = src.size(lname)
            with src.open(lname) as f:
                head = f.read(compression.HEAD_SIZE)
            comp = compression.sniff(head)
            if comp not in ("", "gzip", "zstd"):
                raise ImageFormatError(f"layer {lname} in {src.label}: unsupported compression {comp}")
            digest = diff_id if comp == "" else None
            claimed = _hex_in_name(lname)
            if claimed and lname.startswith("blobs/sha256/"):
                digest = "sha256:" + claimed
            layers.append(LayerPlan(member=lname, media_type=mt.OCI_LAYER_FOR[comp], diff_id=diff_id,
                                    digest=digest, size=size, open=(lambda n=lname: src.open(n)),
                                    spooled=(lambda n=lname: src.spooled(n))))
        names = []
        for t in e.get("RepoTags") or []:
            if not isinstance(t, str):
                raise ImageFormatError(f"invalid RepoTags in {what}")
            try:
                r = parse_reference(t)
            except InvalidArgument as ex:
                raise ImageFormatError(f"invalid RepoTags in {what}: {ex}") from None
            if r.tag:
                names.append(f"{r.repository}:{r.tag}")
        plans.append(ImagePlan(config=config, config_digest=config_digest, config_media_type=mt.OCI_CONFIG,
                               layers=layers, names=names, source=src.label))
    return plans
