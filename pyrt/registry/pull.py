"""`pull`: an image from a registry into the store.

The manifest is resolved (an index for the platform), the config read, then the
layer blobs are downloaded WORKERS at a time, each verified (size and sha256) as it
streams, and each is unpacked into its snapshot as soon as it is complete, while the
others still download. Blobs and snapshots the store has are not fetched or
unpacked again. Everything is staged; one transaction at the end places the files
and records the image, so a failed pull leaves nothing but the resumable parts.

Resuming: a blob downloads to `<root>/downloads/<hex>.partial` (kept across
processes; removed once complete, or when stale); the next attempt hashes what is
there and asks for the rest with `Range: bytes=N-`. A connection broken mid-blob is
retried the same way, RETRIES times."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import httpx

from pyrt.images.archive import ImagePlan, LayerPlan
from pyrt.errors import ImageFormatError, InvalidArgument, RegistryError
from pyrt.images.ingest import Ingest, unpack_jobs
from pyrt.oci import mediatypes as mt
from pyrt.oci.digest import chain_ids, is_digest, sha256_bytes
from pyrt.oci.image import load_json, parse_config, parse_index, parse_manifest, platform_matches
from pyrt.registry import auth, failing_as, lock_partial, record_sources, remote_reference
from pyrt.registry.client import Client, reason
from pyrt.registry.progress import Silent

WORKERS = 4                    # blobs downloaded at once
RETRIES = 3                    # a broken connection is resumed this many times
CHUNK = 1 << 20
MAX_JSON = 4 << 20             # largest manifest or config accepted
MAX_INDEX_DEPTH = 4
STALE_PARTIAL = 7 * 86400      # seconds after which an untouched partial download is dropped
DEFAULT_PLATFORM = "linux/amd64"
SCHEMA1_TYPES = ("application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPT = ", ".join([mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST,
                    *SCHEMA1_TYPES])


def parse_platform(text: str):
    """`os/arch[/variant]` -> (os, arch, variant or None)."""
    parts = text.split("/") if isinstance(text, str) else []
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def pull(images, ref: str, *, platform=None, tls_verify=None, credentials=None, progress=None):
    """Pulls `ref` into the store of `images` (an ImageCollection); returns the Image.
    `credentials`: (user, password), else those stored for the registry (pyrt login)."""
    progress = progress or Silent()
    with failing_as(f"pull {ref}"):
        rref = remote_reference(ref)
        plat = parse_platform(platform or DEFAULT_PLATFORM)
        scope = (f"repository:{rref.path}:pull",)
        with Client(rref.host, rref.api_host, tls_verify=tls_verify,
                    credentials=credentials or auth.lookup(rref.host, images.runtime.logins)) as client:
            progress.message(f"Trying to pull {rref}...")
            top_digest, plan = _resolve(client, rref, plat, scope)
            name = f"{rref.repository}:{rref.tag}" if rref.tag and not rref.digest else None
            plan.names = [name] if name else []
            if images.store.db.query_one("SELECT 1 FROM images WHERE id=?", (plan.config_digest,)):
                if name:
                    images.tag(plan.config_digest, name)
                status = "Image is up to date"
            else:
                _store(images, client, rref, plan, scope, progress)
                status = "Downloaded newer image"
    progress.message(f"Digest: {top_digest}")
    progress.message(f"Status: {status} for {name or f'{rref.repository}@{top_digest}'}")
    return images.get(plan.config_digest)


# -- manifests -----------------------------------------------------------------------------

def _resolve(client, rref, plat, scope):
    """(digest the reference names, ImagePlan of the platform's image)."""
    data, media_type, top = _get_manifest(client, rref, rref.reference, scope)
    digest = top
    for _ in range(MAX_INDEX_DEPTH):
        if media_type not in mt.INDEX_TYPES:
            break
        entry = _choose(parse_index(data, f"image index {digest}"), plat, digest)
        data, media_type, digest = _get_manifest(client, rref, entry["digest"], scope)
    else:
        raise ImageFormatError(f"image indexes nested too deep under {top}")
    if media_type in SCHEMA1_TYPES:
        raise ImageFormatError(f"manifest {digest} is a Docker schema 1 manifest, which pyrt does not read "
                               "(push the image again with a current docker, podman or skopeo)")
    manifest = parse_manifest(data, f"manifest {digest}")
    cdesc = manifest["config"]
    config = _read(client, client.request("GET", f"/v2/{rref.path}/blobs/{cdesc['digest']}", scope=scope,
                                          stream=True), f"config {cdesc['digest']}")
    if len(config) != cdesc["size"] or sha256_bytes(config) != cdesc["digest"]:
        raise ImageFormatError(f"digest mismatch for image config: expected {cdesc['digest']} "
                               f"({cdesc['size']} bytes), got {sha256_bytes(config)} ({len(config)} bytes)")
    diff_ids = parse_config(config, f"config {cdesc['digest']}")["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise ImageFormatError(f"manifest {digest} names {len(manifest['layers'])} layers but its config "
                               f"has {len(diff_ids)} diff_ids")
    layers = [LayerPlan(member="", media_type=d["mediaType"], diff_id=diff_id, digest=d["digest"],
                        size=d["size"], chain_id=cid)
              for d, diff_id, cid in zip(manifest["layers"], diff_ids, chain_ids(diff_ids))]
    return top, ImagePlan(config=config, config_digest=cdesc["digest"], config_media_type=cdesc["mediaType"],
                          layers=layers, manifest=data, manifest_digest=digest, manifest_media_type=media_type,
                          source=str(rref))


def _get_manifest(client, rref, reference, scope):
    """(bytes, media type, digest) of a manifest or index, checked against the digest
    when it was asked for by digest (or the registry named one)."""
    r = client.request("GET", f"/v2/{rref.path}/manifests/{reference}", scope=scope,
                       headers={"Accept": ACCEPT}, stream=True)
    header = r.headers.get("content-type", "").split(";")[0].strip()
    claimed = reference if is_digest(reference) else r.headers.get("docker-content-digest")
    data = _read(client, r, f"manifest {reference}")
    digest = sha256_bytes(data)
    if claimed and claimed != digest:
        raise ImageFormatError(f"digest mismatch for manifest {reference}: expected {claimed}, got {digest}")
    return data, _media_type(data, header), digest


def _media_type(data: bytes, header: str) -> str:
    known = mt.INDEX_TYPES | mt.MANIFEST_TYPES | set(SCHEMA1_TYPES)
    if header in known:
        return header
    doc = load_json(data, "manifest")
    if doc.get("mediaType") in known:
        return doc["mediaType"]
    if doc.get("schemaVersion") == 1:
        return SCHEMA1_TYPES[0]
    return mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST


def _read(client, r, what) -> bytes:
    """The body of a small document (at most MAX_JSON bytes)."""
    with contextlib.closing(r):
        client.check(r)
        data = bytearray()
        try:
            for chunk in r.iter_raw(CHUNK):
                data += chunk
                if len(data) > MAX_JSON:
                    raise ImageFormatError(f"{what} is larger than {MAX_JSON} bytes")
        except httpx.TransportError as e:
            raise ImageFormatError(f"{what}: connection broken: {reason(e)}") from None
    return bytes(data)


def _choose(index, plat, digest):
    os_, arch, variant = plat
    for m in index["manifests"]:
        if platform_matches(m.get("platform"), os_, arch, variant):
            return m
    have = ", ".join("/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
                     for p in (m.get("platform") or {} for m in index["manifests"])) or "none"
    raise ImageFormatError(f"no image for {'/'.join(filter(None, plat))} in the index {digest} "
                           f"(it has: {have})")


# -- blobs into the store ------------------------------------------------------------------

def _store(images, client, rref, plan, scope, progress):
    """Downloads and unpacks what the store lacks, then records the image."""
    store = images.store
    known_chains = {lp.chain_id for lp in plan.layers
                    if store.db.query_one("SELECT 1 FROM layers WHERE chain_id=?", (lp.chain_id,))}
    downloads = _downloads_dir(store)
    with store.staging() as st:
        st.write_blob(plan.config, expected_digest=plan.config_digest, what="image config")
        st.write_blob(plan.manifest, expected_digest=plan.manifest_digest, what="manifest")
        fetch, unpack = {}, {}
        for lp in plan.layers:
            have_blob = st.hold_blob(lp.digest)
            if lp.chain_id not in known_chains:
                unpack.setdefault(lp.digest, []).append(lp)
            if not have_blob:
                fetch.setdefault(lp.digest, lp)
            progress.layer(lp.digest, "Pulling fs layer" if lp.chain_id not in known_chains or not have_blob
                           else "Already exists")
        sizes = _fetch_and_unpack(client, rref, scope, st, downloads, fetch, unpack, progress)
        ingest = Ingest(store)
        with ingest.transaction(st, "during the pull") as tx:
            st.place(tx, {lp.digest for lp in plan.layers}, {lp.chain_id for lp in plan.layers})
            ingest.record(tx, plan, sizes, time.time())
            record_sources(tx, [lp.digest for lp in plan.layers] + [plan.config_digest], rref.host, rref.path)


def _fetch_and_unpack(client, rref, scope, st, downloads, fetch, unpack, progress) -> dict:
    """Downloads `fetch` {digest: LayerPlan} in parallel; each layer of `unpack`
    {digest: [LayerPlan]} is unpacked as soon as its blob is in the staging area.
    Returns {chain id: unpacked size}."""
    cancel = threading.Event()
    dl = ThreadPoolExecutor(WORKERS, thread_name_prefix="pyrt-pull")
    up = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="pyrt-unpack")
    downloading, unpacking, sizes = {}, {}, {}

    def start_unpacks(digest) -> set:
        started = set()
        for lp in unpack.get(digest, ()):
            dest = st.new_snapshot(lp.chain_id)
            progress.layer(lp.digest, "Extracting")
            fut = up.submit(unpack_jobs, [(lp, st.blob_path(digest), dest)])
            unpacking[fut] = lp
            started.add(fut)
        return started

    try:
        for digest in unpack:
            if digest not in fetch:
                start_unpacks(digest)
        for lp in fetch.values():
            downloading[dl.submit(_download, client, rref, lp, scope, downloads, st.dir, progress, cancel)] = lp
        pending = set(downloading) | set(unpacking)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut in downloading:
                    lp = downloading[fut]
                    st.adopt_blob(fut.result(), lp.digest, lp.size)
                    progress.layer(lp.digest, "Download complete")
                    pending |= start_unpacks(lp.digest)
                else:
                    lp = unpacking[fut]
                    sizes[lp.chain_id] = fut.result()[0][1]
                    progress.layer(lp.digest, "Pull complete")
    finally:
        cancel.set()  # on an error (or Ctrl-C), running downloads stop at their next chunk
        dl.shutdown(cancel_futures=True)
        up.shutdown(cancel_futures=True)
    return sizes


def _downloads_dir(store) -> str:
    """`<root>/downloads`, without partial downloads nobody touched for STALE_PARTIAL."""
    d = os.path.join(store.root, "downloads")
    os.makedirs(d, mode=0o700, exist_ok=True)
    for name in os.listdir(d):
        p = os.path.join(d, name)
        try:
            if time.time() - os.stat(p).st_mtime > STALE_PARTIAL:
                os.unlink(p)
        except FileNotFoundError:
            pass
    return d


class _Broken(Exception):
    """The connection ended before the blob did: resume it."""


class _Cancelled(Exception):
    pass


class _Partial:
    """A blob file being written: its bytes so far and their running sha256."""

    def __init__(self, f, size, digest):
        self.f, self.size, self.digest = f, size, digest
        self.hash, self.have = hashlib.sha256(), 0
        f.seek(0)
        while self.have <= size:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            self.hash.update(chunk)
            self.have += len(chunk)
        if self.have > size:  # not this blob's prefix
            self.restart()

    def restart(self):
        self.f.seek(0)
        self.f.truncate()
        self.hash, self.have = hashlib.sha256(), 0

    def write(self, chunk):
        if self.have + len(chunk) > self.size:
            raise ImageFormatError(f"wrong size for blob {self.digest}: the registry sent more than "
                                   f"the {self.size} bytes the manifest says")
        self.f.write(chunk)
        self.hash.update(chunk)
        self.have += len(chunk)


def _download(client, rref, lp, scope, downloads, stage_dir, progress, cancel) -> str:
    """The blob of `lp`, complete and verified, as a file in `stage_dir` (moved
    there from its partial download while it is locked: no other pull resumes it)."""
    path = os.path.join(downloads, lp.digest[7:] + ".partial")
    f = open(path, "a+b")
    try:
        if not lock_partial(f, path):  # another pull is fetching this blob: fetch a private copy
            f.close()
            fd, path = tempfile.mkstemp(prefix="download-", dir=stage_dir)
            f = os.fdopen(fd, "w+b")
        part = _Partial(f, lp.size, lp.digest)
        resumed = part.have > 0
        _fetch_retrying(client, rref, lp, scope, part, progress, cancel)
        if resumed and "sha256:" + part.hash.hexdigest() != lp.digest:  # bad bytes kept from before: again
            part.restart()
            _fetch_retrying(client, rref, lp, scope, part, progress, cancel)
        got = "sha256:" + part.hash.hexdigest()
        if got != lp.digest:
            os.unlink(path)  # not resumable: its bytes are wrong
            raise ImageFormatError(f"digest mismatch for layer {lp.digest}: the registry sent {got}")
        f.flush()
        os.fsync(f.fileno())
        dest = os.path.join(stage_dir, "download-" + lp.digest[7:])
        os.rename(path, dest)
        return dest
    finally:
        f.close()


def _fetch_retrying(client, rref, lp, scope, part, progress, cancel) -> None:
    """_fetch, resumed after a broken connection, RETRIES times."""
    for attempt in range(RETRIES + 1):
        try:
            return _fetch(client, rref, lp, scope, part, progress, cancel)
        except _Broken as e:
            if attempt == RETRIES:
                raise ImageFormatError(f"blob {lp.digest}: connection broken {RETRIES + 1} times, "
                                       f"last: {e}") from None
            time.sleep(0.2 * (attempt + 1))


def _fetch(client, rref, lp, scope, part, progress, cancel) -> None:
    """Appends the rest of the blob to `part` (all of it when the registry ignores Range)."""
    if part.have == lp.size:
        return
    headers = {"Range": f"bytes={part.have}-"} if part.have else {}
    r = client.request("GET", f"/v2/{rref.path}/blobs/{lp.digest}", scope=scope, headers=headers, stream=True)
    with contextlib.closing(r):
        client.check(r, 200, 206)
        if r.status_code == 200:  # the whole blob: Range ignored
            part.restart()
        elif not r.headers.get("content-range", "").startswith(f"bytes {part.have}-"):
            raise RegistryError(f"blob {lp.digest}: asked for bytes {part.have}-, the registry sent "
                                f"{r.headers.get('content-range')!r}")
        try:
            for chunk in r.iter_raw():  # as received: a chunk size would hold bytes back on a break
                if cancel.is_set():
                    raise _Cancelled()
                part.write(chunk)
                progress.layer(lp.digest, "Downloading", part.have, lp.size)
        except httpx.TransportError as e:
            raise _Broken(reason(e)) from None
    if part.have < lp.size:
        raise _Broken(f"the registry sent {part.have} of {lp.size} bytes")
