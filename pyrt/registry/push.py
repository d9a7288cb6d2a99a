"""`push`: an image of the store to a registry.

Each blob (the config and the layers, WORKERS at a time) is skipped when the
registry has it (HEAD); mounted from another repository of the same registry when
pyrt knows one holds it (pulled from or pushed there: the blob_sources table) —
the registry answers 202 when it will not, and the blob is then uploaded; else
uploaded, in one PUT up to the chunk size, in PATCHes of that size beyond. Then the
manifest, byte for byte as stored: the image id and the manifest digest survive
the round trip."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx

from pyrt.errors import ImageFormatError, InvalidArgument, RegistryError
from pyrt.oci.image import parse_manifest
from pyrt.registry import auth, failing_as, known_sources, record_sources, remote_reference
from pyrt.registry.client import Client
from pyrt.registry.progress import Silent

WORKERS = 4
RETRIES = 3             # a blob whose upload broke (connection, 5xx) starts over this many times
CHUNK_SIZE = 32 << 20   # blobs up to this size go in one PUT; $PYRT_PUSH_CHUNK_SIZE overrides
READ_SIZE = 1 << 20


def chunk_size() -> int:
    value = os.environ.get("PYRT_PUSH_CHUNK_SIZE")
    if not value:
        return CHUNK_SIZE
    if not value.isdigit() or int(value) <= 0:
        raise InvalidArgument(f"PYRT_PUSH_CHUNK_SIZE={value!r}: expected a positive number of bytes")
    return int(value)


def push(images, ref: str, dest: str | None = None, *, tls_verify=None, credentials=None, progress=None) -> str:
    """Pushes image `ref` of the store to `dest` (host[:port]/name[:tag]; default
    `ref` itself, which must then name a registry). Returns the manifest digest."""
    progress = progress or Silent()
    with failing_as(f"push {dest or ref}"):
        img = images.get(ref)
        target = remote_reference(dest or ref, require_host=True)
        if target.digest:
            raise InvalidArgument("a push goes to a tag, not to a digest")
        store = images.store
        manifest = store.blobs.read(img.manifest_digest)
        parsed = parse_manifest(manifest, f"manifest {img.manifest_digest}")
        blobs = list({d["digest"]: d for d in [parsed["config"], *parsed["layers"]]}.values())
        scope = (f"repository:{target.path}:pull,push",)
        limit = chunk_size()
        with Client(target.host, target.api_host, tls_verify=tls_verify,
                    credentials=credentials or auth.lookup(target.host, images.runtime.logins)) as client:
            progress.message(f"The push refers to repository [{target.host}/{target.path}]")
            client.connect()
            cancel = threading.Event()
            pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="pyrt-push")
            try:
                futures = [pool.submit(_push_blob_retrying, client, target, d, store, scope, limit, progress,
                                       cancel) for d in blobs]
                for fut in as_completed(futures):
                    fut.result()
            finally:
                cancel.set()  # on an error, the other uploads stop at their next read
                pool.shutdown(cancel_futures=True)
            progress.message("Writing manifest")
            r = client.request("PUT", f"/v2/{target.path}/manifests/{target.tag}", scope=scope,
                               headers={"Content-Type": img.manifest_media_type}, content=manifest)
            client.check(r)
            got = r.headers.get("docker-content-digest")
            if got and got != img.manifest_digest:
                raise RegistryError(f"the registry stored the manifest as {got}, not {img.manifest_digest}")
        with store.transaction() as tx:
            record_sources(tx, [d["digest"] for d in blobs], target.host, target.path)
    progress.message(f"{target.tag}: digest: {img.manifest_digest} size: {len(manifest)}")
    return img.manifest_digest


def _push_blob_retrying(client, target, desc, store, scope, limit, progress, cancel) -> None:
    """_push_blob, started over (in a new upload) after a broken connection or a
    server error, RETRIES times."""
    for attempt in range(RETRIES + 1):
        try:
            return _push_blob(client, target, desc, store, scope, limit, progress, cancel)
        except RegistryError as e:
            transient = e.status is None or e.status >= 500
            if not transient or attempt == RETRIES or cancel.is_set():
                raise
            progress.layer(desc["digest"], f"Retrying ({attempt + 1}/{RETRIES}): {e}")
            time.sleep(0.2 * (attempt + 1))


def _push_blob(client, target, desc, store, scope, limit, progress, cancel) -> None:
    digest, size = desc["digest"], desc["size"]
    base = f"/v2/{target.path}/blobs/"
    if client.request("HEAD", base + digest, scope=scope).status_code == 200:
        progress.layer(digest, "Layer already exists")
        return
    progress.layer(digest, "Preparing")
    location = None
    for repo in known_sources(store.db, digest, target.host):
        if repo == target.path:
            continue
        r = client.request("POST", base + "uploads/", params={"mount": digest, "from": repo},
                           scope=scope + (f"repository:{repo}:pull",))
        if r.status_code == 201:
            progress.layer(digest, f"Mounted from {repo}")
            return
        location = client.check(r, 202).headers.get("location")
        break  # the registry would not mount it: upload where it said
    if location is None:
        location = client.check(client.request("POST", base + "uploads/", scope=scope), 202).headers.get("location")
    path = store.blobs.path(digest)
    if os.path.getsize(path) != size:
        raise ImageFormatError(f"blob {digest} in the store is not {size} bytes long")
    sent = [0]

    def body(offset, n):
        """The bytes [offset, offset+n) of the blob, read as httpx sends them."""
        with open(path, "rb") as f:
            f.seek(offset)
            while n:
                if cancel.is_set():
                    raise RegistryError("upload cancelled")
                data = f.read(min(READ_SIZE, n))
                n -= len(data)
                sent[0] += len(data)
                progress.layer(digest, "Pushing", sent[0], size)
                yield data

    offset = 0
    while size - offset > limit:  # chunked: each PATCH answers where the next goes
        n = limit
        r = client.request("PATCH", _url(client, location), scope=scope, content=lambda o=offset, n=n: body(o, n),
                           headers={"Content-Type": "application/octet-stream", "Content-Length": str(n),
                                    "Content-Range": f"{offset}-{offset + n - 1}"})
        location = client.check(r, 202).headers.get("location")
        offset += n
    n = size - offset
    r = client.request("PUT", _url(client, location, digest), scope=scope, content=lambda: body(offset, n),
                       headers={"Content-Type": "application/octet-stream", "Content-Length": str(n)})
    client.check(r, 201)
    progress.layer(digest, "Pushed")


def _url(client, location, digest=None) -> str:
    """An upload Location (maybe relative, with its own query) as a URL, plus ?digest=."""
    if not location:
        raise RegistryError("the registry answered an upload request without a Location")
    url = httpx.URL(client.base).join(location)
    return str(url.copy_merge_params({"digest": digest}) if digest else url)
