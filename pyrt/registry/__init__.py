"""OCI registries (the distribution API): pull, push, login, logout.

    client.py    HTTP (httpx): scheme choice, auth challenges, errors
    auth.py      credential files (auth.json, docker's config.json)
    pull.py      manifest resolution, parallel resumable downloads, unpack as they arrive
    push.py      blob upload (mount, monolithic, chunked) and the manifest
    progress.py  the per-layer lines and bars of the CLI

This module holds what they share: where a reference lives (`remote_reference`).
httpx is imported only by client.py, so nothing here slows `pyrt run` down."""
from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass

from pyrt.errors import Conflict, ImageFormatError, InvalidArgument, LayerError, RegistryError
from pyrt.oci.reference import DOCKER_HUB, parse_reference
from pyrt.registry import auth

DOCKER_HUB_API = "registry-1.docker.io"


def api_host(host: str) -> str:
    """Where a registry's API answers: Docker Hub's is not at docker.io."""
    return DOCKER_HUB_API if host == DOCKER_HUB else host


@dataclass(frozen=True)
class RemoteRef:
    host: str            # the registry as written (docker.io for Docker Hub)
    path: str            # the repository inside it: "ns/name", "library/busybox"
    tag: str | None
    digest: str | None
    repository: str      # the local name: the reference's repository as given

    @property
    def api_host(self) -> str:
        return api_host(self.host)

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when given, else the tag."""
        return self.digest or self.tag

    def __str__(self):
        return f"{self.host}/{self.path}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


def remote_reference(ref: str, require_host: bool = False) -> RemoteRef:
    """Where `ref` lives: a first component with a '.' or ':', or `localhost`, is a
    registry host; anything else is on Docker Hub, one-component names under
    `library/` (as docker reads them). `require_host`: refuse a name without a host."""
    r = parse_reference(ref)
    first, sep, rest = r.repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    elif require_host:
        raise InvalidArgument(f"{ref!r} names no registry: give it as host[:port]/name[:tag]")
    else:
        host, path = DOCKER_HUB, r.repository
    if host in (DOCKER_HUB, "index.docker.io"):
        host = DOCKER_HUB
        if "/" not in path:
            path = "library/" + path
    return RemoteRef(host=host, path=path, tag=r.tag, digest=r.digest, repository=r.repository)


@contextlib.contextmanager
def failing_as(what: str):
    """pyrt errors raised inside come out with `what: ` in front of their message
    (`pull localhost:5000/x:1: manifest unknown (HTTP 404)`), same class."""
    try:
        yield
    except (RegistryError, ImageFormatError, InvalidArgument, LayerError, Conflict) as e:
        err = type(e)(f"{what}: {e}")
        err.__dict__.update(e.__dict__)
        raise err from None


def record_sources(tx, digests, host: str, path: str) -> None:
    """Notes that these blobs are in repository `path` of `host` (push mounts them
    from there into other repositories of that registry)."""
    tx.executemany("INSERT OR IGNORE INTO blob_sources (digest, registry, repository) VALUES (?,?,?)",
                   [(d, host, path) for d in digests])


def known_sources(db, digest: str, host: str) -> list[str]:
    """Repositories of `host` known to hold the blob, most recent first."""
    return [r[0] for r in db.query("SELECT repository FROM blob_sources WHERE digest=? AND registry=? "
                                   "ORDER BY rowid DESC", (digest, host))]


def with_tag(repository: str, tag: str | None) -> str:
    """docker SDK's (repository, tag) as one reference; a sha256: "tag" is a digest."""
    if not tag:
        return repository
    return f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"


def credentials_from(auth_config) -> tuple | None:
    """docker SDK's auth_config {"username": ..., "password": ...} as (user, password)."""
    if not auth_config:
        return None
    if not isinstance(auth_config, dict) or "username" not in auth_config:
        raise InvalidArgument("auth_config must be a dict with 'username' and 'password'")
    return auth_config["username"], auth_config.get("password") or ""


def login(registry: str, username: str, password: str, tls_verify=None) -> str:
    """Checks the credentials against the registry (GET /v2/ with them, or a token
    from its token server). Returns the registry host as credentials are keyed."""
    from pyrt.registry.client import Client  # httpx: imported on use (see above)
    host = auth.host_of(registry)
    with failing_as(f"login {host}"), Client(host, api_host(host), tls_verify=tls_verify,
                                             credentials=(username, password)) as client:
        client.login()
    return host


def lock_partial(f, path) -> bool:
    """An exclusive lock on a partial download, still named `path` once locked (a
    pull holds it while it writes the file)."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except (BlockingIOError, FileNotFoundError):
        return False


def prune_downloads(root: str) -> int:
    """Removes the partial downloads of the store at `root` that no pull is writing;
    returns the bytes freed."""
    d = os.path.join(root, "downloads")
    freed = 0
    for name in os.listdir(d) if os.path.isdir(d) else ():
        path = os.path.join(d, name)
        try:
            with open(path, "rb") as f:
                if lock_partial(f, path):
                    freed += os.fstat(f.fileno()).st_size
                    os.unlink(path)
        except FileNotFoundError:
            pass
    return freed
