"""Images: `Runtime(root).images`, an `ImageCollection` with the docker SDK's names
(load, list, get, tag, remove, prune, save, history, import_image, create), and
`Image` objects (.id, .short_id, .tags, .config, .attrs, .manifest, .layers, ...).

Every change is one write transaction of the store's database; files are staged
first and renamed into place inside that transaction (see pyrt.store)."""
from __future__ import annotations

import json
import os
import re
import time

from pyrt import compression

from pyrt.images import deletion
from pyrt.errors import (Conflict, ImageFormatError, ImageNotFound, InvalidArgument, LayerError, StoreChanged,
                         Unsupported)
from pyrt.oci import mediatypes as mt
from pyrt.oci.config import apply_changes
from pyrt.oci.digest import DIGEST_RE, chain_id as _chain_id, is_digest, sha256_bytes
from pyrt.oci.image import dumps, manifest_json, parse_time, rfc3339
from pyrt.images.fromhost import build_host_rootfs
from pyrt.oci.reference import (DEFAULT_TAG, equivalent_repositories, parse_reference,
                            validate_repository, validate_tag)
from pyrt.launch.spec import DEFAULT_PATH
from pyrt.filters import all_labels_match, wanted_filters
from pyrt.store.layers import rmtree, tree_size

# The archive formats (pyrt.images.archive, .save), the ingest path (pyrt.images.ingest)
# and copy are imported in the functions that load, save or make images: `pyrt run`
# looks images up and needs none of them (measured: tarfile, dataclasses and hashlib's
# OpenSSL cost more than the rest of its imports).

_HEX_PREFIX_RE = re.compile(r"(?:sha256:)?([0-9a-f]{4,64})")


def _short(image_id: str) -> str:
    return image_id[7:19]


class Layer(dict):
    """One layer of an image: a dict (digest, diff_id, chain_id, size, media_type,
    unpacked_size, path = its snapshot dir) whose keys also read as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Image:
    """An image of the store. Attributes are read from the database when the object is
    made; `reload()` refreshes them."""

    def __init__(self, collection: "ImageCollection", image_id: str):
        self.collection = collection
        self.id = image_id
        self.loaded_tags = None  # set by load(): the names the archive gave it
        self.reload()

    def reload(self):
        db = self.collection.store.db
        row = db.query_one("SELECT * FROM images WHERE id=?", (self.id,))
        if row is None:
            raise ImageNotFound(f"image {self.id} not found (removed)")
        self._row = row
        self.config = json.loads(row["config"])
        self.parent = row["parent"]
        self.created = row["created"]
        self.size = row["size"]
        self.manifest_digest = row["manifest_digest"]
        self.manifest_media_type = row["manifest_media_type"]
        self.tags = [f"{r['repository']}:{r['tag']}" for r in db.query(
            "SELECT repository, tag FROM tags WHERE image_id=? ORDER BY repository, tag", (self.id,))]
        snaps = self.collection.store.snapshots
        self.layers = [
            Layer(digest=r["digest"], diff_id=r["diff_id"], chain_id=r["chain_id"],
                  size=r["size"], media_type=r["media_type"], unpacked_size=r["unpacked_size"],
                  path=snaps.path(r["chain_id"]))
            for r in db.query(
                "SELECT il.digest, il.size, il.media_type, il.chain_id, l.diff_id, l.unpacked_size "
                "FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id "
                "WHERE il.image_id=? ORDER BY il.position", (self.id,))]
        return self

    def __repr__(self):
        return f"<Image: '{', '.join(self.tags) or self.short_id}'>"

    def __eq__(self, other):
        return isinstance(other, Image) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    @property
    def short_id(self) -> str:
        """`sha256:` and the first 12 hex digits (docker SDK)."""
        return self.id[:19]

    @property
    def labels(self) -> dict:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    @property
    def manifest(self) -> dict:
        return json.loads(self.collection.store.blobs.read(self.manifest_digest))

    @property
    def layer_paths(self) -> list:
        """Snapshot directories, bottom-up."""
        return [layer["path"] for layer in self.layers]

    @property
    def attrs(self) -> dict:
        cfg = self.config
        repos = sorted({t.rpartition(":")[0] for t in self.tags})
        history = cfg.get("history") or []
        lower = [layer["path"] for layer in reversed(self.layers)]
        return {
            "Id": self.id,
            "RepoTags": list(self.tags),
            "RepoDigests": [f"{r}@{self.manifest_digest}" for r in repos],
            "Parent": self.parent or "",
            "Comment": (history[-1].get("comment", "") if history else "") or "",
            "Created": cfg.get("created") or rfc3339(self.created),
            "Author": cfg.get("author", ""),
            "Config": cfg.get("config") or {},
            "Architecture": cfg.get("architecture", ""),
            "Variant": cfg.get("variant", ""),
            "Os": cfg.get("os", ""),
            "Size": self.size,
            "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(lower)}},
            "RootFS": {"Type": "layers", "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or [])},
            "Manifest": {"Digest": self.manifest_digest, "MediaType": self.manifest_media_type},
            "Metadata": {"LastTagTime": rfc3339(self._row["loaded"])},
        }

    def history(self) -> list:
        return self.collection.history(self.id)

    def tag(self, repository, tag=None) -> bool:
        r = self.collection.tag(self.id, repository, tag)
        self.reload()
        return r

    def save(self, path, format="oci"):
        return self.collection.save([self.id], path, format=format)


class ImageCollection:
    """The images of a Runtime's store (`Runtime(root).images`), or of `store` alone
    (no logins for pull and push)."""

    def __init__(self, runtime=None, *, store=None, builder=None):
        """builder: what `build` calls, (runtime, path, **options) -> (Image, output)
        (pyrt.dockerfile.build, which runs containers: a layer above the images)."""
        self.runtime = runtime
        self._store = store
        self._builder = builder

    @property
    def store(self):
        return self._store if self._store is not None else self.runtime.store

    # -- lookup --------------------------------------------------------------------------

    def _resolve(self, ref):
        """(image id, matched "repo:tag" or None) for a reference."""
        if isinstance(ref, Image):
            ref = ref.id
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidArgument(f"invalid image reference {ref!r}")
        ref = ref.strip()
        db = self.store.db
        if DIGEST_RE.fullmatch(ref):
            if db.query_one("SELECT 1 FROM images WHERE id=?", (ref,)):
                return ref, None
            raise ImageNotFound(f"image {ref} not found")
        parsed = None
        if not ref.startswith("sha256:"):
            try:
                parsed = parse_reference(ref)
            except InvalidArgument:
                parsed = None
        if parsed is not None:
            if parsed.digest:
                rows = db.query("SELECT id FROM images WHERE manifest_digest=? OR id=?",
                                (parsed.digest, parsed.digest))
                if rows:
                    return rows[0]["id"], None
            else:
                for repo in equivalent_repositories(parsed.repository):
                    row = db.query_one("SELECT image_id FROM tags WHERE repository=? AND tag=?",
                                       (repo, parsed.tag))
                    if row:
                        return row["image_id"], f"{repo}:{parsed.tag}"
        m = _HEX_PREFIX_RE.fullmatch(ref)
        if m:
            p = "sha256:" + m.group(1)
            rows = db.query("SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                            (p, p + "g"))
            if len(rows) == 1:
                return rows[0]["id"], None
            if len(rows) > 1:
                shown = ", ".join(_short(r["id"]) for r in rows[:5])
                raise InvalidArgument(f"image id prefix {ref!r} is ambiguous: it matches {shown}"
                                      f"{' and more' if len(rows) > 5 else ''}; give more digits")
        if parsed is None and not m:
            raise InvalidArgument(f"invalid image reference {ref!r}")
        raise ImageNotFound(f"image {ref!r} not found")

    def get(self, ref) -> Image:
        """By `name`, `name:tag` (tag defaults to latest), `name@sha256:...`, full id
        `sha256:...`, or an unambiguous id prefix of at least 4 hex digits."""
        return Image(self, self._resolve(ref)[0])

    def exists(self, ref) -> bool:
        try:
            self._resolve(ref)
            return True
        except (ImageNotFound, InvalidArgument):
            return False

    FILTERS = ("dangling", "reference", "label", "before", "since")

    def list(self, all=False, name=None, filters=None) -> list:
        """Tagged images and dangling ones (untagged leaves); `all` adds intermediate
        images (untagged parents of other images). `name` filters by repository (or
        repository:tag, shell wildcards allowed). `filters` as the docker SDK takes
        them: {"dangling": True, "reference": "app:*", "label": "k" or "k=v",
        "before": image, "since": image}. Newest first."""
        wanted = wanted_filters(filters, self.FILTERS, "image")
        dangling = {str(v).lower() in ("1", "true") for v in wanted.get("dangling", ())}
        before = min((self.get(r).created for r in wanted.get("before", ())), default=None)
        since = max((self.get(r).created for r in wanted.get("since", ())), default=None)
        db = self.store.db
        rows = db.query("SELECT i.id, i.created, (SELECT COUNT(*) FROM images c WHERE c.parent = i.id) AS children, "
                        "(SELECT COUNT(*) FROM tags t WHERE t.image_id = i.id) AS ntags "
                        "FROM images i ORDER BY i.created DESC, i.id")
        out = []
        for r in rows:
            is_dangling = not r["ntags"] and not r["children"]
            if dangling and is_dangling not in dangling:
                continue
            if not all and not r["ntags"] and r["children"]:
                continue
            if (before is not None and r["created"] >= before) or (since is not None and r["created"] <= since):
                continue
            img = Image(self, r["id"])
            if name and not _name_matches(img.tags, name):
                continue
            if "reference" in wanted and not any(_name_matches(img.tags, p) for p in wanted["reference"]):
                continue
            if "label" in wanted and not all_labels_match(img.labels, wanted["label"]):
                continue
            out.append(img)
        return out

    # -- tags ----------------------------------------------------------------------------

    def tag(self, ref, repository, tag=None) -> bool:
        """Tags an image as repository:tag (tag defaults to latest; `repository` may
        carry it as `name:tag`)."""
        image_id, _ = self._resolve(ref)
        if tag is None:
            slash, colon = repository.rfind("/"), repository.rfind(":")
            if colon > slash:
                repository, tag = repository[:colon], repository[colon + 1:]
            else:
                tag = DEFAULT_TAG
        validate_repository(repository)
        validate_tag(tag)
        try:
            with self.store.transaction() as tx:
                if tx.query_one("SELECT 1 FROM images WHERE id=?", (image_id,)) is None:
                    raise ImageNotFound(f"image {image_id} not found (removed meanwhile)")
                tx.execute("INSERT OR REPLACE INTO tags (repository, tag, image_id, created) VALUES (?,?,?,?)",
                           (repository, tag, image_id, time.time()))
        except _sqlite_errors() as e:
            raise Conflict(f"tagging {image_id} as {repository}:{tag}: {e}") from None
        return True
    # -- removal (pyrt.images.deletion) ----------------------------------------------------

    def remove(self, ref, force=False, noprune=False) -> list:
        """docker rmi: removing by name untags; the image itself is deleted when no tag
        is left, no container uses it and no child image depends on it (removing by id
        deletes it, untagging all its names if `force` when it has several). Untagged
        parents left without children are deleted too (unless `noprune`). Returns
        [{"Untagged": name} | {"Deleted": id}, ...]."""
        return deletion.remove(self, ref, force=force, noprune=noprune)

    def prune(self, all=False, filters=None) -> dict:
        """Deletes dangling images (untagged, no children, no container), or with
        `all` every image no container uses (and no child of a used image depends on).
        Also removes files no row refers to (left by a crash). Returns
        {"ImagesDeleted": [...], "SpaceReclaimed": bytes}."""
        return deletion.prune(self, all=all, filters=filters)

    # -- loading ---------------------------------------------------------------------------

    def load(self, data, progress=None) -> list:
        """Loads a docker-archive (as `docker save`/`podman save` write it) or an OCI image
        layout (a directory or a tar; index.json with one or more images, indexes
        resolved for linux/amd64), from a path or a binary file object. Returns the
        images, each with the names the archive gives it. On any error nothing is left
        in the store."""
        from pyrt.images import archive as _archive
        from pyrt.images.ingest import Ingest
        store = self.store
        tmp = store.mkdtemp("load-")
        try:
            with _archive.open_archive(data, tmp) as (fmt, plans):
                for attempt in range(5):
                    try:
                        Ingest(self.store).load(plans, progress)
                        break
                    except StoreChanged:  # another process removed a layer we meant to share
                        if attempt == 4:
                            raise
        finally:
            rmtree(tmp)
        by_id, out = {}, []
        for plan in plans:
            img = by_id.get(plan.config_digest)
            if img is None:
                img = by_id[plan.config_digest] = Image(self, plan.config_digest)
                img.loaded_tags = []
                out.append(img)
            img.loaded_tags += [n for n in plan.names if n not in img.loaded_tags]
        return out

    # -- new images ------------------------------------------------------------------------

    def create(self, parent, layer, *, config_changes=None, comment=None, created_by=None, author=None,
               repository=None, tag=None, snapshot_dir=None, unpacked_size=None, created=None) -> Image:
        """A new image: `parent`'s layers (an Image, a reference, or None for none)
        plus `layer` on top, a dict {digest, diff_id, size, media_type, path} as
        `pyrt.store.commit.write_layer_blob` returns it (the temp blob at `path` is
        moved into the store), or None for a config-only image (its history entry
        says `empty_layer`). The layer's snapshot is unpacked from the blob, or taken
        from `snapshot_dir` (moved) when the caller has it ready. The config is the
        parent's with the diff_id and a history entry appended, `created` set and
        `config_changes` applied (a dict of Cmd/Entrypoint/Env/WorkingDir/User/
        ExposedPorts/Volumes/Labels/StopSignal, or docker `--change` lines). One
        transaction; tagged repository:tag when given. `created`: the config's time
        (seconds; default now), for images that must come out the same each time."""
        from pyrt.images import archive as _archive
        from pyrt.images.ingest import Ingest, adopt_blob, unpack_one
        import copy
        store = self.store
        if repository is not None:
            if tag is None:
                slash, colon = repository.rfind("/"), repository.rfind(":")
                if colon > slash:
                    repository, tag = repository[:colon], repository[colon + 1:]
            tag = tag or DEFAULT_TAG
            validate_repository(repository)
            validate_tag(tag)
        parent_img = None
        if parent is not None:
            parent_img = parent if isinstance(parent, Image) else self.get(parent)
            parent_img.reload()
        if layer is not None:
            for key in ("digest", "diff_id", "size", "path"):
                if key not in layer:
                    raise InvalidArgument(f"layer description lacks {key!r}")
            digest, diff_id = layer["digest"], layer["diff_id"]
            if not is_digest(digest) or not is_digest(diff_id):
                raise InvalidArgument(f"invalid layer digest {digest!r} or diff_id {diff_id!r}")
            media_type = layer.get("media_type") or mt.OCI_LAYER_GZIP
            if mt.layer_compression(media_type) is None:
                raise InvalidArgument(f"unknown layer media type {media_type!r}")
        now = time.time()
        created = rfc3339(now if created is None else created)
        if parent_img is not None:
            cfg = copy.deepcopy(parent_img.config)
            parent_layers = parent_img.layers
        else:
            cfg = {"architecture": "amd64", "os": "linux", "config": {},
                   "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
            parent_layers = []
        cfg["created"] = created
        if author:
            cfg["author"] = author
        cfg["config"] = apply_changes(cfg.get("config"), config_changes)
        cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        cfg["rootfs"]["diff_ids"] = list(cfg["rootfs"].get("diff_ids") or []) + ([diff_id] if layer else [])
        hist = {"created": created}
        if author:
            hist["author"] = author
        if created_by:
            hist["created_by"] = created_by
        if comment:
            hist["comment"] = comment
        if layer is None:
            hist["empty_layer"] = True
        cfg["history"] = list(cfg.get("history") or []) + [hist]
        config_bytes = dumps(cfg)
        config_digest = sha256_bytes(config_bytes)
        layer_descs = [{"mediaType": lyr["media_type"], "digest": lyr["digest"], "size": lyr["size"]}
                       for lyr in parent_layers]
        if layer is not None:
            layer_descs.append({"mediaType": media_type, "digest": digest, "size": layer["size"]})
            top_chain = _chain_id(parent_layers[-1]["chain_id"] if parent_layers else None, diff_id)
        manifest = manifest_json({"mediaType": mt.OCI_CONFIG, "digest": config_digest,
                                  "size": len(config_bytes)}, layer_descs)

        plan = _archive.ImagePlan(config=config_bytes, config_digest=config_digest,
                                  config_media_type=mt.OCI_CONFIG, layers=[],
                                  names=[f"{repository}:{tag}"] if repository else [],
                                  manifest=manifest, manifest_digest=sha256_bytes(manifest),
                                  manifest_media_type=mt.OCI_MANIFEST, source="commit")
        for lyr in parent_layers:
            plan.layers.append(_archive.LayerPlan(member="", media_type=lyr["media_type"],
                                                  diff_id=lyr["diff_id"], digest=lyr["digest"],
                                                  size=lyr["size"], chain_id=lyr["chain_id"]))
        if layer is not None:
            plan.layers.append(_archive.LayerPlan(member="", media_type=media_type, diff_id=diff_id,
                                                  digest=digest, size=layer["size"], chain_id=top_chain))
        ingest = Ingest(store)
        with store.staging() as st:
            if layer is not None:
                adopt_blob(st, layer["path"], digest, layer["size"])
            st.write_blob(config_bytes, expected_digest=config_digest, what="image config")
            st.write_blob(manifest, expected_digest=plan.manifest_digest, what="manifest")
            sizes = {}
            have = layer is None or store.db.query_one("SELECT 1 FROM layers WHERE chain_id=?",
                                                       (top_chain,)) is not None
            if not have:
                if snapshot_dir is not None:
                    st.adopt_snapshot(top_chain, snapshot_dir)
                    snapshot_dir = None
                    sizes[top_chain] = unpacked_size if unpacked_size is not None \
                        else tree_size(st.snapshots[top_chain])
                else:
                    dest = st.new_snapshot(top_chain)
                    got, size = unpack_one(st.blob_path(digest), dest, media_type, diff_id)
                    sizes[top_chain] = size
            needed_chains = {lp.chain_id for lp in plan.layers}
            needed_blobs = {lp.digest for lp in plan.layers}
            with ingest.transaction(st, "while creating the image", Conflict) as tx:
                st.place(tx, needed_blobs, needed_chains)
                ingest.record(tx, plan, sizes, now, parent=parent_img.id if parent_img is not None else None)
        if snapshot_dir is not None and os.path.isdir(snapshot_dir):
            rmtree(snapshot_dir)  # the store has this layer already; the caller gave it away
        return Image(self, config_digest)

    def build(self, path, tag=None, dockerfile="Dockerfile", buildargs=None, nocache=False, target=None,
              quiet=False, rm=True, log=None, network_mode=None):
        """docker build (see pyrt.dockerfile): the Dockerfile (relative to the context
        `path`) run step by step; `tag` a name or a list of names. Returns (Image,
        [{"stream": text}, ...]); `log`, if given, is called with each of those
        as the build goes. RUN steps use the network of a default container (the
        default network, pyrt.network) unless network_mode names another, "none"
        or "host"."""
        if self._builder is None:
            raise Unsupported("this image collection has no builder: build through Runtime(root).images")
        return self._builder(self.runtime, path, tags=tag, dockerfile=dockerfile, buildargs=buildargs,
                     nocache=nocache, target=target, quiet=quiet, rm=rm, log=log, network_mode=network_mode)

    def import_image(self, src, repository=None, tag=None, changes=(), message=None, progress=None) -> Image:
        """A rootfs tar (plain, gzip, zstd, bzip2 or xz; a path or a binary file object)
        or a directory becomes a one-layer image (docker import). `changes`: docker
        `--change` lines or a dict of config keys."""
        from pyrt.images import archive as _archive
        from pyrt.images.ingest import unpack_one
        store = self.store
        tmp = store.mkdtemp("import-")
        try:
            if isinstance(src, (str, os.PathLike)) and os.path.isdir(src):
                layer = _write_dir_layer(os.fspath(src), tmp)
                created_by = f"pyrt import {os.fspath(src)}"
                return self.create(None, layer, config_changes=changes, comment=message or "Imported",
                                   created_by=created_by, repository=repository, tag=tag)
            label = os.fspath(src) if isinstance(src, (str, os.PathLike)) else "<stream>"
            f = open(src, "rb") if isinstance(src, (str, os.PathLike)) else src
            try:
                head = _peek(f)
                comp = compression.sniff(head)
                if comp in ("bzip2", "xz"):
                    f = _archive.decompressed(f, comp, label)
                    comp = ""
                blob = store.blobs.write(_Progressed(f, progress, "copying"), tmp, what=f"tar {label}")
            finally:
                if isinstance(src, (str, os.PathLike)):
                    f.close()
            media_type = mt.OCI_LAYER_FOR[comp]
            snap = os.path.join(tmp, "snapshot")
            os.mkdir(snap, 0o700)
            try:
                diff_id, size = unpack_one(blob.path, snap, media_type, None)
            except LayerError as e:
                raise ImageFormatError(f"{label}: {e}") from e
            layer = {"digest": blob.digest, "diff_id": diff_id, "size": blob.size,
                     "media_type": media_type, "path": blob.path}
            return self.create(None, layer, config_changes=changes, comment=message or "Imported",
                               created_by=f"pyrt import {label}", repository=repository, tag=tag,
                               snapshot_dir=snap, unpacked_size=size)
        finally:
            rmtree(tmp)

    def from_host(self, repository_tag, paths, progress=None, *, venv=None, certs=None, tzdata=False) -> Image:
        """An image made of host programs (and directories) plus the shared libraries
        they need, what a Python among them needs to run (asked of it), `venv`'s
        packages at the same path, CA certificates (certs: None = when there is a
        Python) and time zone data (tzdata=True); see pyrt.images.fromhost. The same
        host files give the same image id."""
        if isinstance(paths, str):
            paths = [paths]
        paths = list(paths or ())
        if not paths and venv is None:
            raise InvalidArgument("from-host needs a program (or a venv)")
        ref = parse_reference(repository_tag)
        store = self.store
        tmp = store.mkdtemp("fromhost-")
        try:
            root = os.path.join(tmp, "rootfs")
            made = build_host_rootfs(root, paths, venv=venv, certs=certs, tzdata=tzdata)
            changes = {"Env": [f"{k}={v}" for k, v in made.env.items()], "Cmd": made.cmd}
            layer = _write_dir_layer(root, tmp)
            words = list(paths) + ([f"--venv {os.fspath(venv)}"] if venv is not None else []) + \
                (["--with-certs"] if certs else ["--no-certs"] if certs is False else []) + \
                (["--with-tzdata"] if tzdata else [])
            return self.create(None, layer, config_changes=changes, comment="from host",
                               created_by="pyrt image from-host " + " ".join(words),
                               repository=ref.repository, tag=ref.tag, created=made.created)
        finally:
            from pyrt.store.layers import rmtree
            rmtree(tmp)

    def bootstrap(self, repository_tag, suite=None, include=(), variant="minbase", mirror=None,
                  components=None, progress=None) -> Image:
        """A Debian base image made by mmdebstrap from the mirror the host's apt uses
        (pyrt.images.bootstrap): `suite` (default: the host's release), `include`
        packages, `variant` (minbase: what debian:SUITE images hold). One layer;
        Env PATH, Cmd /bin/bash; the same mirror state gives the same image id."""
        from pyrt.images.bootstrap import make_tar
        from pyrt.store.commit import write_tar_blob
        ref = parse_reference(repository_tag)
        tmp = self.store.mkdtemp("bootstrap-")
        try:
            made = make_tar(tmp, suite=suite, include=include, variant=variant, mirror=mirror,
                            components=components, progress=progress)
            size = os.path.getsize(made.tar)
            layer = write_tar_blob(made.tar, tmp, progress=(lambda n: progress("compressing", n, size))
                                   if progress else None)
            os.unlink(made.tar)
            changes = {"Env": ["PATH=" + DEFAULT_PATH], "Cmd": ["/bin/bash"]}
            return self.create(None, layer, config_changes=changes, comment="bootstrapped with mmdebstrap",
                               created_by="pyrt image bootstrap " + " ".join(made.words),
                               repository=ref.repository, tag=ref.tag, created=made.created)
        finally:
            rmtree(tmp)

    # -- saving -------------------------------------------------------------------------------

    def save(self, refs, path, format="oci", progress=None) -> None:
        """Writes the images to `path`: format "oci" (an OCI image layout: a tar, or a
        directory when `path` is one or ends with '/') or "docker-archive" (a tar).
        Images named by name:tag keep that name; by id, they are saved untagged."""
        from pyrt.images import save as _save
        if isinstance(refs, (str, Image)):
            refs = [refs]
        if not refs:
            raise InvalidArgument("save needs at least one image")
        fmt = {"oci": "oci", "oci-archive": "oci", "oci-dir": "oci", "docker-archive": "docker-archive",
               "docker": "docker-archive"}.get(format)
        if fmt is None:
            raise InvalidArgument(f"unknown save format {format!r}: expected oci or docker-archive")
        path = os.fspath(path)
        as_dir = fmt == "oci" and (path.endswith("/") or os.path.isdir(path) or format == "oci-dir")
        if fmt == "docker-archive" and os.path.isdir(path):
            raise InvalidArgument(f"{path} is a directory: a docker-archive is a tar file")
        items, by_id = [], {}
        for ref in refs:
            image_id, matched = self._resolve(ref)
            if image_id not in by_id:
                img = Image(self, image_id)
                item = _save.SaveItem(
                    image_id=image_id, config=img._row["config"].encode("utf-8"),
                    manifest=self.store.blobs.read(img.manifest_digest),
                    manifest_digest=img.manifest_digest, manifest_media_type=img.manifest_media_type,
                    layers=[{**lyr, "path": self.store.blobs.path(lyr["digest"])} for lyr in img.layers],
                    names=[])
                by_id[image_id] = item
                items.append(item)
            if matched and matched not in by_id[image_id].names:
                by_id[image_id].names.append(matched)
        for it in items:
            if sha256_bytes(it.config) != it.image_id:
                raise ImageFormatError(f"image {it.image_id}: stored config does not match its id")
        if fmt == "oci":
            _save.write_oci(items, path.rstrip("/") if as_dir and path != "/" else path, as_dir,
                               progress=progress)
        else:
            tmp = self.store.mkdtemp("save-")
            try:
                _save.write_docker_archive(items, path, tmp, progress=progress)
            finally:
                rmtree(tmp)

    # -- history, inspect, df -----------------------------------------------------------

    def history(self, ref) -> list:
        """docker history: one entry per history item, newest first: Id (the image
        that ends there, or "<missing>"), Created (seconds), CreatedBy, Size (of the
        layer it made, 0 for empty layers), Comment, Tags."""
        img = ref if isinstance(ref, Image) else self.get(ref)
        cfg = img.config
        hist = [h for h in (cfg.get("history") or []) if isinstance(h, dict)]
        layers = img.layers
        nonempty = [h for h in hist if not h.get("empty_layer")]
        if len(nonempty) != len(layers):  # no (or inconsistent) history: one row per layer
            hist = [{"created": cfg.get("created")} for _ in layers]
        # ancestors: an image with n history entries ends at entry n-1
        ends = {}
        db = self.store.db
        cur = img.id
        seen = set()
        while cur and cur not in seen:
            seen.add(cur)
            row = db.query_one("SELECT config, parent FROM images WHERE id=?", (cur,))
            if row is None:
                break
            n = len(json.loads(row["config"]).get("history") or [])
            if n:
                ends.setdefault(n - 1, cur)
            cur = row["parent"]
        ends.setdefault(len(hist) - 1, img.id)
        rows, li = [], 0
        for i, h in enumerate(hist):
            size = 0
            if not h.get("empty_layer"):
                size = layers[li]["unpacked_size"] if li < len(layers) else 0
                li += 1
            image_id = ends.get(i, "<missing>")
            tags = []
            if image_id != "<missing>":
                tags = [f"{r['repository']}:{r['tag']}" for r in db.query(
                    "SELECT repository, tag FROM tags WHERE image_id=?", (image_id,))]
            rows.append({"Id": image_id, "Created": parse_time(h.get("created")) or 0,
                         "CreatedBy": h.get("created_by", ""), "Size": size,
                         "Comment": h.get("comment", ""), "Tags": tags or None})
        rows.reverse()
        return rows

    def inspect(self, ref) -> dict:
        return self.get(ref).attrs

    def df(self) -> dict:
        """Disk use: images (count, active = used by a container, size with shared
        layers counted once, reclaimable) and layers (count, unpacked size, size of
        the stored blobs)."""
        db = self.store.db
        images = db.query("SELECT id FROM images")
        active = {r[0] for r in db.query("SELECT DISTINCT image_id FROM containers WHERE image_id IS NOT NULL")}
        layers = db.query("SELECT chain_id, unpacked_size FROM layers")
        total = sum(r["unpacked_size"] for r in layers)
        used = db.query("SELECT DISTINCT l.chain_id, l.unpacked_size FROM layers l "
                        "JOIN image_layers il ON il.chain_id = l.chain_id "
                        "JOIN containers c ON c.image_id = il.image_id")
        used_size = sum(r["unpacked_size"] for r in used)
        per_image = db.query("SELECT il.image_id, SUM(l.unpacked_size) AS s FROM image_layers il "
                             "JOIN layers l ON l.chain_id = il.chain_id GROUP BY il.image_id")
        naive = sum(r["s"] or 0 for r in per_image)
        blobs = 0
        for d in self.store.blobs.digests():
            try:
                blobs += os.path.getsize(self.store.blobs.path(d))
            except OSError:
                pass
        return {
            "images": {"count": len(images), "active": len(active & {r[0] for r in images}),
                       "size": total, "reclaimable": total - used_size, "shared": naive - total},
            "layers": {"count": len(layers), "size": total, "blobs_size": blobs},
        }

    def shared_sizes(self) -> dict:
        """image id -> bytes of its layers that other images use too."""
        db = self.store.db
        rows = db.query(
            "SELECT il.image_id AS image_id, SUM(l.unpacked_size) AS s FROM image_layers il "
            "JOIN layers l ON l.chain_id = il.chain_id "
            "WHERE (SELECT COUNT(DISTINCT x.image_id) FROM image_layers x WHERE x.chain_id = il.chain_id) > 1 "
            "GROUP BY il.image_id")
        return {r["image_id"]: r["s"] or 0 for r in rows}

    # -- registry (pyrt.registry does the work; imported on use, it needs httpx) ----------

    def pull(self, repository, tag=None, platform=None, tls_verify=None, auth_config=None, progress=None) -> Image:
        """docker SDK's pull: `repository` (`host[:port]/name`, or a Docker Hub name;
        it may carry the tag or `@sha256:...`) at `tag`; an index resolved for
        `platform` ("os/arch[/variant]", default linux/amd64). `auth_config`
        {"username", "password"}, else the Runtime's login, else the stored
        credentials. `progress`: a pyrt.registry.progress reporter. Returns the Image."""
        from pyrt.registry import credentials_from, with_tag
        from pyrt.registry.pull import pull
        return pull(self, with_tag(repository, tag), platform=platform, tls_verify=tls_verify,
                    credentials=credentials_from(auth_config), progress=progress)

    def push(self, repository, tag=None, destination=None, tls_verify=None, auth_config=None,
             progress=None) -> str:
        """docker SDK's push of image `repository[:tag]` to the registry its name
        names, or to `destination` (`host[:port]/name[:tag]`). Returns the pushed
        manifest's digest (the SDK returns the daemon's progress text instead)."""
        from pyrt.registry import credentials_from, with_tag
        from pyrt.registry.push import push
        return push(self, with_tag(repository, tag), destination, tls_verify=tls_verify,
                    credentials=credentials_from(auth_config), progress=progress)


# -- helpers -------------------------------------------------------------------------------------


def _sqlite_errors():
    import sqlite3
    return sqlite3.IntegrityError


def _name_matches(tags, pattern) -> bool:
    import fnmatch
    for t in tags:
        repo, _, tg = t.rpartition(":")
        if ":" in pattern.rpartition("/")[2]:
            candidates = [t]
            pats = [pattern]
        else:
            candidates = [repo]
            pats = equivalent_repositories(pattern) if not any(c in pattern for c in "*?[") else [pattern]
        for c in candidates:
            if any(fnmatch.fnmatchcase(c, p) for p in pats):
                return True
    return False


def _peek(f) -> bytes:
    peek = getattr(f, "peek", None)
    if peek is not None:
        return peek(compression.HEAD_SIZE)[:compression.HEAD_SIZE]
    pos = f.tell()
    head = f.read(compression.HEAD_SIZE)
    f.seek(pos)
    return head


class _Progressed:
    def __init__(self, f, progress, phase):
        self.f, self.progress, self.phase, self.done = f, progress, phase, 0
        self.total = 0
        try:
            self.total = os.fstat(f.fileno()).st_size
        except Exception:
            pass

    def readinto(self, b):
        n = self.f.readinto(b) if hasattr(self.f, "readinto") else None
        if n is None:
            data = self.f.read(len(b))
            n = len(data)
            b[:n] = data
        self.done += n or 0
        if self.progress:
            self.progress(self.phase, self.done, self.total)
        return n


def _write_dir_layer(path, out_dir) -> dict:
    """A gzip layer blob of a directory tree (C writer). An ordinary user's is read
    in its user namespace: its own files become root's (pyrt.launch.userns)."""
    from pyrt.launch.userns import in_userns
    from pyrt.store.commit import write_layer_blob  # on use: its threads, zlib, ... (`pyrt images` lists)
    return in_userns(write_layer_blob, path, out_dir, compression="gzip")
