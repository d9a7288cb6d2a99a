"""Image references: `name[:tag][@sha256:...]`, with docker's grammar."""
from __future__ import annotations

import re

from pyrt.errors import InvalidArgument

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_TAG = "latest"
DOCKER_HUB = "docker.io"  # the registry of a name without one


def _split_domain(name: str):
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return "", name


def validate_repository(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 255:
        raise InvalidArgument(f"invalid repository name {name!r}")
    domain, path = _split_domain(name)
    if (domain and not _DOMAIN_RE.fullmatch(domain)) or not _PATH_RE.fullmatch(path):
        raise InvalidArgument(
            f"invalid repository name {name!r}: must be lowercase letters, digits and separators "
            "(., _, __, -) in /-separated components, optionally after a registry host")
    return name


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise InvalidArgument(f"invalid tag {tag!r}: up to 128 letters, digits, '_', '.' and '-', "
                              "not starting with '.' or '-'")
    return tag


class Reference:
    """An immutable value, as a frozen dataclass would be (written out: importing
    dataclasses costs a `pyrt run` more than the rest of its imports, measured)."""
    __slots__ = ("repository", "tag", "digest")

    def __init__(self, repository: str, tag: str | None = None, digest: str | None = None):
        object.__setattr__(self, "repository", repository)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "digest", digest)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")

    def _key(self):
        return (self.repository, self.tag, self.digest)

    def __eq__(self, other):
        return self._key() == other._key() if type(other) is Reference else NotImplemented

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"Reference(repository={self.repository!r}, tag={self.tag!r}, digest={self.digest!r})"

    def __str__(self):
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def name(self) -> str:
        """`repository:tag` (tag defaulting to latest)."""
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"


def parse_reference(ref: str, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parses `name[:tag][@digest]`; raises InvalidArgument when it is not one."""
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument(f"invalid image reference {ref!r}")
    name, digest = ref, None
    if "@" in ref:
        name, _, digest = ref.partition("@")
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidArgument(f"invalid image reference {ref!r}: bad digest {digest!r}")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        validate_tag(tag)
    try:
        validate_repository(name)
    except InvalidArgument:
        raise InvalidArgument(f"invalid image reference {ref!r}") from None
    if tag is None and digest is None:
        tag = default_tag
    return Reference(name, tag, digest)


def equivalent_repositories(repository: str) -> list[str]:
    """Names under which the same repository may be stored, `repository` first:
    `busybox` ~ `docker.io/library/busybox` ~ `localhost/busybox`."""
    out = [repository]
    domain, path = _split_domain(repository)
    if not domain:
        if "/" not in path:
            out.append("docker.io/library/" + path)
        out.append("docker.io/" + path)
        out.append("localhost/" + path)
    elif domain in ("docker.io", "index.docker.io"):
        short = path[len("library/"):] if path.startswith("library/") else path
        out.append(short)
        out.append("docker.io/" + path)
    elif domain == "localhost":
        out.append(path)
    seen, uniq = set(), []
    for r in out:
        if r not in seen:
            seen.add(r)
            uniq.append(r)
    return uniq
