"""Registries for the tests of pyrt.registry.

- `docker_registry(base, htpasswd=None)`: Debian's /usr/bin/docker-registry (the
  CNCF distribution registry) serving plain HTTP on 127.0.0.1 and a free port,
  storage under `base` (on /dev/shm); with (user, password), behind htpasswd Basic
  auth. A context manager: always terminated and waited for. `.log()` is its
  access log, one `METHOD PATH STATUS` line per request.
- `FakeRegistry`: a small scriptable registry (http.server in a thread) for what a
  real one will not do: serve wrong bytes, cut a blob mid-way, break an upload,
  demand Bearer tokens from its token endpoint, answer 404/401. It takes uploads
  (monolithic and chunked) and manifests, and records every request (method,
  path, headers)."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import itertools
import json
import os
import re
import socket
import subprocess
import threading
import time

import httpx

REGISTRY = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


class DockerRegistry:
    def __init__(self, proc, port, logfile):
        self.proc, self.port, self.logfile = proc, port, logfile
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"

    def log(self) -> list[str]:
        """`METHOD PATH STATUS` of every request served so far."""
        with open(self.logfile) as f:
            return [" ".join(m.groups()) for m in re.finditer(r'"(\w+) (\S+) HTTP/[\d.]+" (\d+)', f.read())]


@contextlib.contextmanager
def docker_registry(base: str, htpasswd=None):
    os.makedirs(base, exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd:
        line = subprocess.run(["htpasswd", "-Bbn", *htpasswd], check=True, capture_output=True,
                              text=True).stdout.strip()
        with open(os.path.join(base, "htpasswd"), "w") as f:
            f.write(line + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: pyrt-tests\n    path: {base}/htpasswd\n"
    config = os.path.join(base, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {base}/data\n"
                f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: pyrt-tests\n{auth}")
    logfile = os.path.join(base, "registry.log")
    with open(logfile, "w") as out:
        proc = subprocess.Popen([REGISTRY, "serve", config], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v2/")
        yield DockerRegistry(proc, port, logfile)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the fake registry -----------------------------------------------------------------------------

class FakeRegistry:
    """Serves `manifests` {(repository, tag or digest): (bytes, media type)} and
    `blobs` {digest: bytes}. Scripting:
    - wrong[digest] = bytes: served instead of the blob (same length or not);
    - cut[digest] = n: the next n answers for that blob stop half-way (connection closed);
    - stall[digest] = seconds: each answer for that blob pauses half-way that long;
    - status[path] = code: that path answers `code` with a registry error body;
    - bearer = (user, password) or "anonymous": /v2/ demands a Bearer token from /token
      (given for those Basic credentials, or to anyone);
    - ignore_range: answer a Range request with the whole blob (200);
    - cut_uploads = n: the next n upload requests (PATCH, PUT of a blob) are read, then
      the connection is closed without an answer;
    - upload_host = "host:port": upload Locations name that host (another registry);
    - redirect[digest] = url: GETs of that blob answer 307 to `url`;
    - realm = url: the token server the Bearer challenge names (default its /token).
    `requests`: [(method, path, headers dict)] of every request, token requests included."""

    def __init__(self, address="127.0.0.1"):
        self.manifests, self.blobs, self.wrong, self.cut, self.status = {}, {}, {}, {}, {}
        self.stall = {}
        self.bearer = None
        self.ignore_range = False
        self.cut_uploads = 0
        self.upload_host = None
        self.redirect = {}
        self.realm = None
        self.uploads = {}  # upload id -> bytes so far
        self._upload_ids = itertools.count()
        self.requests = []
        self.tokens_issued = []
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self, body=True)

            def do_HEAD(self):
                fake._handle(self, body=False)

            def do_POST(self):
                fake._upload(self)

            do_PATCH = do_PUT = do_POST

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.host = f"{address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- content --------------------------------------------------------------------------

    def add_blob(self, data: bytes) -> dict:
        d = sha(data)
        self.blobs[d] = data
        return d

    def add_image(self, repo, tag, layers, config=None, media_type=OCI_MANIFEST, platform=None):
        """layers: [(compressed blob, diff_id)]. Returns {"id", "manifest", "layers"}."""
        cfg = {"architecture": (platform or "linux/amd64").split("/")[1], "os": "linux",
               "config": {"Cmd": ["/bin/sh"]},
               "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]}}
        cfg.update(config or {})
        cfg_bytes = json.dumps(cfg).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": OCI_CONFIG, "digest": self.add_blob(cfg_bytes), "size": len(cfg_bytes)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": self.add_blob(blob), "size": len(blob)}
                       for blob, _ in layers]}).encode()
        self.add_manifest(repo, tag, manifest, media_type)
        return {"id": sha(cfg_bytes), "manifest": sha(manifest), "layers": [sha(b) for b, _ in layers]}

    def add_manifest(self, repo, tag, data: bytes, media_type: str) -> str:
        self.manifests[(repo, sha(data))] = (data, media_type)
        if tag:
            self.manifests[(repo, tag)] = (data, media_type)
        return sha(data)

    def blob_requests(self, digest=None) -> list:
        return [(m, p, h) for m, p, h in self.requests if "/blobs/" in p and (digest is None or p.endswith(digest))]

    # -- serving ---------------------------------------------------------------------------

    def _error(self, h, code, err, message, extra=None):
        body = json.dumps({"errors": [{"code": err, "message": message}]}).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _authorized(self, h) -> bool:
        if self.bearer is None:
            return True
        got = h.headers.get("Authorization", "")
        if got.startswith("Bearer ") and got[7:] in self.tokens_issued:
            return True
        realm = self.realm or f"http://{self.host}/token"
        self._error(h, 401, "UNAUTHORIZED", "authentication required",
                    {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"'})
        return False

    def _token(self, h):
        if self.bearer != "anonymous":
            want = "Basic " + base64.b64encode(":".join(self.bearer).encode()).decode()
            if h.headers.get("Authorization") != want:
                return self._error(h, 401, "UNAUTHORIZED", "invalid credentials")
        token = f"token-{len(self.tokens_issued)}"
        self.tokens_issued.append(token)
        self._send(h, json.dumps({"token": token}).encode(), "application/json")

    def _send(self, h, data, content_type, code=200, extra=None, body=True):
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _handle(self, h, body):
        path = h.path.split("?")[0]
        with self._lock:
            self.requests.append((h.command, h.path, dict(h.headers)))
        if path == "/token":
            return self._token(h)
        if not self._authorized(h):
            return
        if path in self.status:
            code = self.status[path]
            err = {401: ("UNAUTHORIZED", "authentication required"), 404: ("NAME_UNKNOWN", "scripted 404")}
            return self._error(h, code, *err.get(code, ("DENIED", "scripted failure")))
        if path == "/v2/":
            return self._send(h, b"{}", "application/json", body=body)
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if m is None:
            return self._error(h, 404, "NAME_UNKNOWN", "repository name not known to registry")
        repo, kind, ref = m.groups()
        if kind == "manifests":
            found = self.manifests.get((repo, ref))
            if found is None:
                return self._error(h, 404, "MANIFEST_UNKNOWN", "manifest unknown")
            return self._send(h, found[0], found[1], extra={"Docker-Content-Digest": sha(found[0])}, body=body)
        if ref in self.redirect and h.command == "GET":
            return self._send(h, b"", "text/plain", 307, {"Location": self.redirect[ref]})
        if ref not in self.blobs:
            return self._error(h, 404, "BLOB_UNKNOWN", "blob unknown to registry")
        self._blob(h, ref, self.wrong.get(ref, self.blobs[ref]), body)

    def _upload(self, h):
        """POST .../blobs/uploads/ starts an upload, PATCH appends, PUT ?digest= ends
        it (with a last chunk); PUT .../manifests/TAG stores a manifest."""
        path, _, query = h.path.partition("?")
        data = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self._lock:
            self.requests.append((h.command, h.path, dict(h.headers)))
            cut = h.command in ("PATCH", "PUT") and "/blobs/uploads/" in path and self.cut_uploads > 0
            if cut:
                self.cut_uploads -= 1
        if cut:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if not self._authorized(h):
            return
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path)
        if m and h.command == "PUT":
            digest = self.add_manifest(m.group(1), m.group(2), data, h.headers.get("Content-Type", ""))
            return self._send(h, b"", "text/plain", 201, {"Docker-Content-Digest": digest})
        m = re.fullmatch(r"/v2/(.+)/blobs/uploads/([^/]*)", path)
        if m is None:
            return self._error(h, 404, "NAME_UNKNOWN", "repository name not known to registry")
        repo, uid = m.groups()
        if h.command == "POST":
            uid = f"u{next(self._upload_ids)}"
            self.uploads[uid] = data
            where = f"http://{self.upload_host}" if self.upload_host else ""
            return self._send(h, b"", "text/plain", 202, {"Location": f"{where}/v2/{repo}/blobs/uploads/{uid}"})
        if uid not in self.uploads:
            return self._error(h, 404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        self.uploads[uid] += data
        if h.command == "PATCH":
            return self._send(h, b"", "text/plain", 202, {"Location": f"/v2/{repo}/blobs/uploads/{uid}"})
        want = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("digest", "").replace("%3A", ":")
        got = self.uploads.pop(uid)
        if sha(got) != want:
            return self._error(h, 400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        self.blobs[want] = got
        return self._send(h, b"", "text/plain", 201, {"Docker-Content-Digest": want})

    def _blob(self, h, digest, data, body):
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
        if m and not self.ignore_range:
            start = int(m.group(1))
        part = data[start:]
        extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        with self._lock:
            cut = self.cut.get(digest, 0)
            if cut:
                self.cut[digest] = cut - 1
        stall = self.stall.get(digest)
        if not (cut or stall) or not body:
            return self._send(h, part, "application/octet-stream", 206 if start else 200, extra, body)
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(part)))
        for k, v in extra.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(part[:len(part) // 2])
        h.wfile.flush()
        if cut:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        time.sleep(stall)
        h.wfile.write(part[len(part) // 2:])
