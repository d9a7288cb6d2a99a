"""The HTTP side of the registry API, with httpx: which scheme to use, the auth
challenges (Basic, and Bearer tokens fetched from the realm and cached per scope),
and errors turned into one-line RegistryErrors.

Scheme: https, verified. A registry that may be reached insecurely (tls_verify
False, a loopback host, or one listed in the insecure-registries setting) is tried
over https without verification first, then over plain http, as docker does.

Credentials go to the registry itself (the scheme and host /v2/ answered on) and
to the token server its own challenge names, nowhere else: an upload Location or
a redirect to another host gets no Authorization header, a challenge from another
host is not followed, and a token server reached over plain http gets no
credentials unless the registry may be reached insecurely."""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import threading

import httpx

from pyrt.errors import InvalidArgument, RegistryError

REGISTRIES_CONF = "/etc/pyrt/registries.json"
TIMEOUT = httpx.Timeout(60.0, connect=15.0)
_PARAM_RE = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def insecure_registries() -> set[str]:
    """The "insecure-registries" of $PYRT_REGISTRIES_CONF (default /etc/pyrt/registries.json)."""
    path = os.environ.get("PYRT_REGISTRIES_CONF") or REGISTRIES_CONF
    try:
        with open(path) as f:
            conf = json.load(f)
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"registries configuration {path}: {e}") from None
    hosts = conf.get("insecure-registries", []) if isinstance(conf, dict) else None
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise InvalidArgument(f"registries configuration {path}: \"insecure-registries\" must be a list of hosts")
    return set(hosts)


def _hostname(host: str) -> str:
    """`host[:port]` without the port (`[::1]:5000` -> `::1`)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port."""
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin(url) -> tuple:
    """(scheme, host, port) of a URL, the port filled in."""
    u = httpx.URL(str(url))
    return u.scheme, u.host, u.port or {"https": 443, "http": 80}.get(u.scheme)


def parse_challenge(header: str):
    """("bearer"|"basic"|..., {param: value}) of a WWW-Authenticate header."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                            for m in _PARAM_RE.finditer(rest)}


def reason(exc: Exception) -> str:
    """An httpx transport error as a short cause: `Name or service not known`."""
    text = str(exc) or type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", text)


def error_message(r: httpx.Response) -> str:
    """`manifest unknown (HTTP 404)`, `unauthorized: authentication required (HTTP 401)`:
    the registry's error list (code, message) when it sent one."""
    parts = []
    try:
        errors = json.loads(r.read()).get("errors") or []
    except (ValueError, AttributeError, httpx.HTTPError):
        errors = []
    for e in errors if isinstance(errors, list) else []:
        if not isinstance(e, dict):
            continue
        code = str(e.get("code") or "").lower().replace("_", " ")
        msg = str(e.get("message") or "")
        parts.append(f"{code}: {msg}" if code and msg and code != msg.lower() else msg or code)
    text = "; ".join(p for p in parts if p) or r.reason_phrase.lower() or "error"
    return f"{text} (HTTP {r.status_code})"


class Client:
    """Requests to one registry. `credentials`: (user, password) or None.
    `request` answers 401s by fetching what the challenge asks for, once."""

    def __init__(self, host: str, api_host: str | None = None, *, tls_verify=None, credentials=None):
        self.host = host
        self.api_host = api_host or host
        self.insecure = tls_verify is False or (tls_verify is None and (
            is_loopback(self.api_host) or host in insecure_registries()))
        self.credentials = credentials
        self.base = None            # "scheme://host", once /v2/ answered
        self._challenge = None      # (scheme, params) of the registry's 401
        self._tokens = {}           # scope tuple -> bearer token
        self._lock = threading.Lock()
        self._http = httpx.Client(verify=not self.insecure, timeout=TIMEOUT, follow_redirects=True)

    def close(self):
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- connecting --------------------------------------------------------------------

    def connect(self) -> None:
        """GET /v2/ over the first scheme that answers; learns the auth challenge."""
        if self.base:
            return
        last = None
        for scheme in ("https", "http") if self.insecure else ("https",):
            try:
                r = self._http.get(f"{scheme}://{self.api_host}/v2/")
            except httpx.TransportError as e:
                last = e
                continue
            if r.status_code not in (200, 401):
                raise RegistryError(f"registry {self.host}: /v2/ answered {error_message(r)}", r.status_code)
            self.base = f"{scheme}://{self.api_host}"
            self._learn(r)
            return
        raise RegistryError(f"cannot reach registry {self.host}: {reason(last)}")

    def _own(self, url) -> bool:
        """Whether `url` is the registry's own (where its credentials may go)."""
        return self.base is not None and origin(url) == origin(self.base)

    def _learn(self, r) -> None:
        header = r.headers.get("www-authenticate")
        if r.status_code == 401 and header and self._own(r.url):  # not another host's (a redirect's)
            self._challenge = parse_challenge(header)

    # -- requests ----------------------------------------------------------------------

    def request(self, method: str, url: str, *, scope=(), headers=None, content=None, params=None,
                stream=False) -> httpx.Response:
        """`url`: a path (/v2/...) or a full URL (an upload Location). `content`: bytes,
        or a function returning the body (called again when the request is retried)."""
        self.connect()
        if url.startswith("/"):
            url = self.base + url
        own = self._own(url)  # an upload Location may name another host: no credentials there
        for attempt in (0, 1):
            h = dict(headers or {})
            auth = self._authorization(tuple(scope)) if own else None
            if auth:
                h["Authorization"] = auth
            body = content() if callable(content) else content
            try:
                req = self._http.build_request(method, url, headers=h, content=body, params=params)
                r = self._http.send(req, stream=stream)
            except httpx.TransportError as e:
                raise RegistryError(f"cannot reach registry {self.host}: {reason(e)}") from None
            if r.status_code == 401 and attempt == 0 and own and self._own(r.url) and \
                    self._renew(r, tuple(scope), bool(auth)):
                r.close()
                continue
            return r

    def check(self, r: httpx.Response, *ok: int) -> httpx.Response:
        """`r` when its status is one of `ok` (default: any 2xx), else a RegistryError."""
        if (r.status_code in ok) if ok else r.is_success:
            return r
        try:
            msg = error_message(r)
        finally:
            r.close()
        raise RegistryError(msg, r.status_code)

    def _renew(self, r, scope, sent_auth) -> bool:
        """After a 401: True when a retry may succeed (a token to fetch, or
        credentials not sent yet)."""
        self._learn(r)
        if self._challenge is None:
            return False
        if self._challenge[0] == "bearer":
            with self._lock:
                self._tokens.pop(scope, None)
            return True
        return self._challenge[0] == "basic" and self.credentials is not None and not sent_auth

    def _authorization(self, scope):
        if self._challenge is None:
            return None
        kind = self._challenge[0]
        if kind == "basic" and self.credentials:
            user, password = self.credentials
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if kind == "bearer":
            with self._lock:
                token = self._tokens.get(scope)
                if token is None:
                    token = self._tokens[scope] = self._fetch_token(scope)
            return f"Bearer {token}"
        return None

    def _fetch_token(self, scope) -> str:
        params = self._challenge[1]
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host}: its Bearer challenge names no realm")
        scheme = origin(realm)[0] if "://" in realm else ""
        if scheme not in ("https", "http"):
            raise RegistryError(f"registry {self.host}: its token server {realm!r} is not an http(s) URL")
        if scheme == "http" and self.credentials and not self.insecure:
            raise RegistryError(f"registry {self.host}: its token server {realm} is plain http: credentials "
                                "are sent only over https (unless the registry is marked insecure)")
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scope]
        if self.credentials:
            query.append(("account", self.credentials[0]))
        try:
            r = self._http.get(realm, params=query, auth=self.credentials or None)
        except httpx.TransportError as e:
            raise RegistryError(f"cannot reach the token server {realm}: {reason(e)}") from None
        if r.status_code != 200:
            raise RegistryError(error_message(r), r.status_code)
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token server {realm} sent no token")
        return token

    def login(self) -> None:
        """Checks the credentials: a token (Bearer) or GET /v2/ (Basic) with them."""
        self.connect()
        if self._challenge is None:
            return  # the registry asks for no credentials
        if self._challenge[0] == "bearer":
            self._fetch_token(())
        else:
            self.check(self.request("GET", "/v2/"))
