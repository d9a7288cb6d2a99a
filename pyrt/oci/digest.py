"""Content digests. Only sha256 is accepted; a digest is validated before any path is
built from it."""
from __future__ import annotations

import re

from pyrt.errors import ImageFormatError

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")


def is_digest(value) -> bool:
    return isinstance(value, str) and DIGEST_RE.fullmatch(value) is not None


def validate_digest(value, what: str = "digest") -> str:
    """Returns `value` if it is `sha256:<64 lowercase hex>`, else raises ImageFormatError."""
    if not is_digest(value):
        shown = value if isinstance(value, str) and len(value) < 200 else repr(value)[:200]
        raise ImageFormatError(f"invalid {what} {shown!r}: expected sha256:<64 hex digits>")
    return value


def digest_hex(value, what: str = "digest") -> str:
    """The 64 hex digits of a validated digest."""
    return validate_digest(value, what)[7:]


def is_hex64(value) -> bool:
    return isinstance(value, str) and _HEX_RE.fullmatch(value) is not None


def sha256_bytes(data: bytes) -> str:
    import hashlib  # here: most commands never hash (measured: it loads OpenSSL)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(parent_chain_id: str | None, diff_id: str) -> str:
    """OCI chain ID: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    validate_digest(diff_id, "diff_id")
    if parent_chain_id is None:
        return diff_id
    return sha256_bytes(f"{parent_chain_id} {diff_id}".encode())


def chain_ids(diff_ids) -> list[str]:
    out, parent = [], None
    for d in diff_ids:
        parent = chain_id(parent, d)
        out.append(parent)
    return out
