"""Registry credentials, kept as docker's config.json keeps them:
`{"auths": {"host:port": {"auth": base64("user:password")}}}`.

pyrt writes `$REGISTRY_AUTH_FILE`, else `~/.config/pyrt/auth.json` (mode 0600,
replaced atomically). Lookups read that file first, then podman's
`${XDG_RUNTIME_DIR}/containers/auth.json` and docker's `~/.docker/config.json`."""
from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile

from pyrt.errors import InvalidArgument
from pyrt.oci.reference import DOCKER_HUB

# names Docker Hub goes by in credential files
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "docker.io"}


def auth_file() -> str:
    """The file `login` writes and `logout` edits."""
    return os.environ.get("REGISTRY_AUTH_FILE") or os.path.expanduser("~/.config/pyrt/auth.json")


def _lookup_files() -> list[str]:
    files = [auth_file()]
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    files.append(os.path.expanduser("~/.docker/config.json"))
    return files


def host_of(key: str) -> str:
    """A key of "auths" as a registry host: docker writes `https://index.docker.io/v1/`."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
    key = key.split("/", 1)[0]
    return DOCKER_HUB if key in _HUB_ALIASES else key


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"credentials file {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("auths", {}), dict):
        raise InvalidArgument(f"credentials file {path}: expected {{\"auths\": {{...}}}}")
    return data


def _decode(entry, path: str, key: str):
    if not isinstance(entry, dict) or not entry.get("auth"):
        return None  # e.g. a credential helper's placeholder
    try:
        user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise InvalidArgument(f"credentials file {path}: the entry for {key} is not base64(user:password)")
    return user, password


def lookup(host: str, logins=None):
    """(user, password) for a registry: from `logins` {host: (user, password)} (a
    Runtime's), else from the first file that has it; None when none does."""
    host = host_of(host)
    if logins and host in logins:
        return logins[host]
    for path in _lookup_files():
        for key, entry in _read(path).get("auths", {}).items():
            if host_of(key) == host:
                found = _decode(entry, path, key)
                if found:
                    return found
    return None


def _write(path: str, data: dict) -> None:
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save(host: str, user: str, password: str) -> str:
    """Stores the credentials for `host` (replacing any); returns the file."""
    path = auth_file()
    data = _read(path)
    auths = {k: v for k, v in data.get("auths", {}).items() if host_of(k) != host_of(host)}
    auths[host_of(host)] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    data["auths"] = auths
    _write(path, data)
    return path


def remove(host: str) -> bool:
    """Drops the credentials for `host` from pyrt's file; False if it had none."""
    path = auth_file()
    data = _read(path)
    auths = data.get("auths", {})
    keep = {k: v for k, v in auths.items() if host_of(k) != host_of(host)}
    if len(keep) == len(auths):
        return False
    data["auths"] = keep
    _write(path, data)
    return True
